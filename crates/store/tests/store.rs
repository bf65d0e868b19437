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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_call_in_a_group_commit_does_not_undo_the_others() {
    use std::sync::Arc;
    use sundial_store::{Agent, Store, StoreError};
    let directory = tempfile::tempdir().expect("temporary directory");
    let store = Arc::new(SqliteStore::open(&directory.path().join("sundial.db")).expect("open store"));
    let now = chrono::Utc::now();
    // 200 concurrent calls share transactions; every fifth one collides with an earlier agent id.
    let calls: Vec<_> = (0..200)
        .map(|index| {
            let store = store.clone();
            let id = if index % 5 == 4 { format!("agent-{}", index - 1) } else { format!("agent-{index}") };
            tokio::spawn(async move { store.agent_insert(&Agent::new(id, now)).await })
        })
        .collect();
    let mut conflicts = 0;
    for call in calls {
        match call.await.expect("task") {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => conflicts += 1,
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!(conflicts, 40);
    assert_eq!(store.agent_list().await.expect("list").len(), 160, "a failed call rolled back its neighbours");
    // A call alone in its transaction runs without a savepoint: when it fails, the transaction is rolled back, and the
    // next call (the first of another transaction) writes as usual.
    for _ in 0..3 {
        let conflict = store.agent_insert(&Agent::new("agent-0".to_owned(), now)).await;
        assert!(matches!(conflict, Err(StoreError::Conflict(_))), "{conflict:?}");
    }
    store.agent_insert(&Agent::new("agent-after".to_owned(), now)).await.expect("the next call writes");
    assert_eq!(store.agent_list().await.expect("list").len(), 161);
}
