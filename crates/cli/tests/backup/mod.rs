//! `sundial backup` takes a consistent copy of the SQLite database while the server serves and fires, and a server
//! started on a restored copy resumes from the backup's instant: slots due after it fire once, runs the copy saw as
//! running are abandoned and retried, and no message of a finished run is sent again.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};

use crate::support::{binary, eventually, send, Server};

const KEY: &str = "sk_test_backup";

/// Every execution of agent `default`.
async fn executions(server: &Server) -> Vec<Value> {
    let (status, page) = server.get("/v1/agents/default/executions?limit=10000").await;
    assert_eq!(status, 200, "{page}");
    page["executions"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_serving_restores_to_a_server_that_resumes() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let mut server = Server::start(directory.path(), KEY);
    // A ticker every second for user u1: below the default guardrail for jobs made for a user (60 s).
    let settings = json!({"minRecurringIntervalSeconds": 1});
    let (status, _) = send(server.request(reqwest::Method::PUT, "/v1/agents/default/settings").json(&settings)).await;
    assert_eq!(status, 200);
    let create = |body: Value| {
        send(server.request(reqwest::Method::POST, "/v1/agents/default/jobs").header("X-User-Id", "u1").json(&body))
    };
    // Busy while it is copied: a job sending a message every second, and a long run in flight.
    let (status, ticker) = create(json!({
        "name": "ticker",
        "schedule": {"type": "interval", "seconds": 1},
        "code": "async (job) => { const user = await job.user(); await user.send([{ type: 'text', text: job.execution.occurrenceId }]); }",
    }))
    .await;
    assert_eq!(status, 201, "{ticker}");
    let (status, slow) = create(json!({
        "name": "slow",
        "schedule": {"type": "interval", "seconds": 3600},
        "activate": false,
        "code": "async () => { await new Promise((resolve) => setTimeout(resolve, 4000)); return 'finished'; }",
    }))
    .await;
    assert_eq!(status, 201, "{slow}");
    let slow_id = slow["id"].as_str().expect("id").to_owned();
    let (status, running) = server.post(&format!("/v1/agents/default/jobs/{slow_id}/trigger"), json!({})).await;
    assert_eq!(status, 202, "{running}");
    let running_id = running["id"].as_str().expect("id").to_owned();
    // Once jobs due after the backup.
    let due = Utc::now() + chrono::Duration::seconds(4);
    let mut once_ids = Vec::new();
    for index in 0..5 {
        let at = due + chrono::Duration::milliseconds(300 * index);
        let (status, once) = create(json!({
            "name": format!("after-{index}"),
            "schedule": {"type": "once", "executeAt": sundial_core::wire::instant(at)},
            "code": "async () => 'ran'",
        }))
        .await;
        assert_eq!(status, 201, "{once}");
        once_ids.push(once["id"].as_str().expect("id").to_owned());
    }
    eventually(10, "the slow run to start", || async {
        let (_, execution) = server.get(&format!("/v1/agents/default/executions/{running_id}")).await;
        (execution["status"] == "running").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let copy = directory.path().join("copy.db");
    let output = Command::new(binary())
        .arg("backup")
        .arg(&copy)
        .arg("--data-dir")
        .arg(directory.path())
        .output()
        .expect("run sundial backup");
    assert!(output.status.success(), "sundial backup failed: {}", String::from_utf8_lossy(&output.stderr));
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("is a consistent copy of"), "{said}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("backup: "), "no progress was reported");
    let again = Command::new(binary()).arg("backup").arg(&copy).arg("--data-dir").arg(directory.path()).output();
    assert!(!again.expect("run sundial backup").status.success(), "a backup overwrote an existing file");
    // The machine is lost after the backup.
    server.kill();

    let restored = tempfile::tempdir().expect("temporary directory");
    std::fs::copy(&copy, restored.path().join("sundial.db")).expect("restore the copy");
    let server = Server::start(restored.path(), KEY);
    // The run the copy saw as running is abandoned and retried to completion.
    let retried = eventually(20, "the slow run to be retried", || async {
        let (_, history) = server.get(&format!("/v1/agents/default/jobs/{slow_id}/executions")).await;
        let runs = history["executions"].as_array().cloned().unwrap_or_default();
        runs.iter().any(|run| run["status"] == "completed").then_some(runs)
    })
    .await;
    let statuses: Vec<&str> = retried.iter().filter_map(|run| run["status"].as_str()).collect();
    assert!(statuses.contains(&"abandoned"), "{statuses:?}");
    // Every once job due after the backup runs exactly once.
    for once_id in &once_ids {
        let runs = eventually(20, "a once job to run", || async {
            let (_, history) = server.get(&format!("/v1/agents/default/jobs/{once_id}/executions")).await;
            let runs = history["executions"].as_array().cloned().unwrap_or_default();
            (!runs.is_empty() && runs.iter().all(|run| run["status"] == "completed")).then_some(runs)
        })
        .await;
        assert_eq!(runs.len(), 1, "{once_id} ran {} times", runs.len());
    }
    // The ticker goes on; no occurrence is run twice and no message is sent twice.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut per_slot: HashMap<(String, String), usize> = HashMap::new();
    for execution in executions(&server).await.iter().filter(|execution| execution["trigger"] == "schedule") {
        let key = (
            execution["jobId"].as_str().unwrap_or_default().to_owned(),
            execution["scheduledFor"].as_str().unwrap_or_default().to_owned(),
        );
        *per_slot.entry(key).or_default() += 1;
    }
    assert!(per_slot.values().all(|runs| *runs == 1), "a slot fired twice: {per_slot:?}");
    let (_, conversation) = server.get("/v1/agents/default/users/u1/messages?limit=1000").await;
    let texts: Vec<&str> = conversation["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|message| message["content"]["text"].as_str())
        .collect();
    let mut seen = std::collections::HashSet::new();
    assert!(texts.iter().all(|text| seen.insert(*text)), "a message was sent twice: {texts:?}");
    assert!(texts.len() >= 3, "the ticker did not go on: {texts:?}");
}
