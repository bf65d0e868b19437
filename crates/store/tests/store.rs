//! Runs the store conformance suite against the SQLite store, each check on a fresh database file.

use sundial_store::conformance::{run, CHECKS};
use sundial_store::SqliteStore;

#[tokio::test]
async fn sqlite_passes_the_conformance_suite() {
    for check in CHECKS {
        let directory = tempfile::tempdir().expect("temporary directory");
        let store = SqliteStore::open(&directory.path().join("sundial.db")).expect("open store");
        run(check, &store).await;
    }
}

#[tokio::test]
async fn sqlite_reopens_an_existing_database() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("sundial.db");
    {
        let store = SqliteStore::open(&path).expect("open store");
        run("agents_and_keys", &store).await;
    }
    let store = SqliteStore::open(&path).expect("reopen store");
    use sundial_store::Store;
    assert!(store.agent_get("a").await.expect("get").is_some(), "data lost across reopen");
}
