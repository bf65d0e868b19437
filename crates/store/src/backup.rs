//! Online backups of the SQLite database: a consistent copy taken while the server serves and fires.
//!
//! The copy is `VACUUM INTO` a new file, run on a connection of its own. It reads one snapshot of the database (WAL
//! mode lets it read while the server writes, and the server's writes never wait for it), so the copy is what the
//! database was at one instant: every slot recorded by then, every execution as it stood, every message sent. The
//! copy is compact (free pages left out) and synced to disk before the function returns.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use crate::sqlite::database;
use crate::{Result, StoreError};

/// Copies the database file `source` into the new file `target` while other processes may use it; `progress`
/// hears, about four times a second, how many bytes of the copy are written and how large the database is (the
/// copy ends up smaller when the database has free pages). Answers the copy's size in bytes.
pub fn backup(source: &Path, target: &Path, mut progress: impl FnMut(u64, u64)) -> Result<u64> {
    if !source.exists() {
        return Err(StoreError::Database(format!("no database at {}", source.display())));
    }
    if target.exists() {
        return Err(StoreError::Conflict(format!("the backup file {}", target.display())));
    }
    let target_text = target
        .to_str()
        .ok_or_else(|| StoreError::Database(format!("the backup path {} is not UTF-8", target.display())))?
        .to_owned();
    let total = file_size(source) + file_size(&wal_of(source));
    let connection = Connection::open(source).map_err(database)?;
    connection.busy_timeout(Duration::from_secs(30)).map_err(database)?;
    // The copy runs on a thread of its own; this one reports how far it got.
    let copying = std::thread::spawn(move || connection.execute("VACUUM INTO ?1", [target_text.as_str()]));
    while !copying.is_finished() {
        progress(file_size(target), total);
        std::thread::sleep(Duration::from_millis(250));
    }
    let copied = match copying.join() {
        Ok(result) => result.map(|_| ()).map_err(database),
        Err(_) => Err(StoreError::Database("the backup thread failed".into())),
    };
    if let Err(error) = copied {
        let _ = std::fs::remove_file(target);
        return Err(error);
    }
    std::fs::File::open(target).and_then(|file| file.sync_all()).map_err(database)?;
    let size = file_size(target);
    progress(size, total);
    Ok(size)
}

fn wal_of(database: &Path) -> std::path::PathBuf {
    let mut wal = database.as_os_str().to_owned();
    wal.push("-wal");
    wal.into()
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|metadata| metadata.len()).unwrap_or(0)
}
