//! The agent's platform data as job code and tools see it: `Data` collections and `Products`.

use async_trait::async_trait;

/// Storage of `Data` collections and `Products`; every [`crate::Store`] implements it.
#[async_trait]
pub trait DataStore: Send + Sync + 'static {}
