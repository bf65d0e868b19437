//! Several nodes on one PostgreSQL database: every slot fired once through a `kill -9` of a node and a restart of the
//! database, and the killed node's running executions retried. Needs `SUNDIAL_TEST_DATABASE_URL`.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};

use crate::support::{eventually, Server};

/// The database URL for these tests, or `None` (the test says it was skipped).
fn database_url() -> Option<String> {
    let url = std::env::var("SUNDIAL_TEST_DATABASE_URL").ok().filter(|url| !url.is_empty());
    if url.is_none() {
        eprintln!("skipped: SUNDIAL_TEST_DATABASE_URL is not set");
    }
    url
}

/// Restarts the local PostgreSQL cluster, if this machine manages one with pg_ctlcluster.
fn restart_database() -> bool {
    let Ok(mut versions) = std::fs::read_dir("/etc/postgresql") else { return false };
    let Some(Ok(version)) = versions.next() else { return false };
    let version = version.file_name().to_string_lossy().into_owned();
    std::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "restart"])
        .status()
        .is_ok_and(|status| status.success())
}

/// Every execution of agent `default`, read through node `server`.
async fn all_executions(server: &Server) -> Vec<Value> {
    let mut executions = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/agents/default/executions?limit=5000&cursor={cursor}"),
            None => "/v1/agents/default/executions?limit=5000".to_owned(),
        };
        let (status, page) = server.get(&path).await;
        assert_eq!(status, 200, "{page}");
        executions.extend(page["executions"].as_array().cloned().unwrap_or_default());
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return executions,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_fire_every_slot_once_through_a_node_kill_and_a_database_restart() {
    let Some(url) = database_url() else { return };
    let schema = format!("cluster_{}", std::process::id());
    let key = "sk_test_cluster";
    let flags = ["--database", url.as_str(), "--database-schema", schema.as_str(), "--lease-seconds", "3"];
    let directories: Vec<tempfile::TempDir> =
        (0..3).map(|_| tempfile::tempdir().expect("temporary directory")).collect();
    let mut nodes: Vec<Server> =
        directories.iter().map(|directory| Server::start_with(directory.path(), key, &flags)).collect();

    // W2-like: jobs evenly spread over six seconds, each running ~150 ms (so the killed node has runs in flight),
    // retried once after an abandoned run.
    let count = 400;
    let start = Utc::now() + chrono::Duration::milliseconds(2500);
    let jobs: Vec<Value> = (0..count)
        .map(|index| {
            let due = start + chrono::Duration::milliseconds(6000 * index / count);
            json!({
                "name": format!("spread-{index}"),
                "metadata": {"i": index},
                "schedule": {"type": "once", "executeAt": sundial_core::wire::instant(due)},
                "retry": {"maxAttempts": 2, "backoffSeconds": 1},
                "code": "async (job) => { await new Promise((resolve) => setTimeout(resolve, 150)); return { i: job.metadata.i }; }",
            })
        })
        .collect();
    let (status, created) = nodes[0].post("/v1/agents/default/jobs/batch", json!({"jobs": jobs})).await;
    assert_eq!(status, 201, "{created}");

    // Kill a node in the middle of the window, restart the database, then bring the node back.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    nodes[1].kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarted = restart_database();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    nodes[1] = Server::start_with(directories[1].path(), key, &flags);

    eventually(90, "every job to complete", || async {
        let executions = all_executions(&nodes[0]).await;
        let mut completed: HashMap<String, usize> = HashMap::new();
        for execution in &executions {
            if execution["status"] == "completed" {
                *completed.entry(execution["jobId"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
            }
        }
        (completed.len() == count as usize).then_some(())
    })
    .await;
    // Settle, so that a late duplicate would show up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let executions = all_executions(&nodes[0]).await;
    assert!(executions.len() >= count as usize);

    let mut scheduled: HashMap<String, usize> = HashMap::new();
    let mut completed_occurrences: HashMap<String, usize> = HashMap::new();
    for execution in &executions {
        if execution["trigger"] == "schedule" {
            *scheduled.entry(execution["jobId"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
        }
        if execution["status"] == "completed" {
            *completed_occurrences
                .entry(execution["occurrenceId"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
    }
    assert_eq!(scheduled.len(), count as usize, "an occurrence was lost");
    let twice: Vec<_> = scheduled.iter().filter(|(_, fired)| **fired > 1).collect();
    assert!(twice.is_empty(), "slots fired twice: {twice:?}");
    let completed_twice: Vec<_> = completed_occurrences.iter().filter(|(_, done)| **done > 1).collect();
    assert!(completed_twice.is_empty(), "occurrences completed twice: {completed_twice:?}");
    // Runs cut off by the kill (or by the database restart) were abandoned and retried to completion.
    for abandoned in executions.iter().filter(|execution| execution["status"] == "abandoned") {
        let occurrence = abandoned["occurrenceId"].as_str().unwrap_or_default();
        assert_eq!(
            completed_occurrences.get(occurrence),
            Some(&1),
            "abandoned run {abandoned} was not retried to completion"
        );
    }
    let abandoned = executions.iter().filter(|execution| execution["status"] == "abandoned").count();
    eprintln!("cluster: {} executions, {abandoned} abandoned, database restarted: {restarted}", executions.len());
    assert!(abandoned >= 1, "the killed node had runs in flight; they must show up as abandoned and retried");
    drop(nodes);
    drop_schema(&url, &schema);
}

/// Drops the test's schema (best effort, with the PostgreSQL client).
fn drop_schema(url: &str, schema: &str) {
    let _ = std::process::Command::new("psql")
        .args([url, "-q", "-c", &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")])
        .stdout(std::process::Stdio::null())
        .status();
}
