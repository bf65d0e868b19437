//! The SQLite side of [`crate::data::DataStore`].

use crate::data::DataStore;
use crate::sqlite::SqliteStore;

/// Schema of `Data` collections and `Products` (applied as one migration of the SQLite store).
pub(crate) const MIGRATION: &str = "SELECT 1;";

impl DataStore for SqliteStore {}
