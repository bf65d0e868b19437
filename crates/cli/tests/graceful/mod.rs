//! A routine stop loses nothing: on SIGTERM the server takes no more work, hands back the claims it has not
//! started, lets running executions finish and records them, and exits 0; a second signal stops it at once.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};

use crate::support::{eventually, Server};

const KEY: &str = "sk_test_graceful";

/// A job that runs for `seconds` and returns "finished"; created inactive, run by a trigger.
fn slow_job(name: &str, seconds: u64) -> Value {
    json!({
        "name": name,
        "schedule": {"type": "interval", "seconds": 3600},
        "timeout": 60,
        "activate": false,
        "code": format!(
            "async () => {{ await new Promise((resolve) => setTimeout(resolve, {})); return 'finished'; }}",
            seconds * 1000
        ),
    })
}

/// Creates `body` and triggers it; answers (job id, execution id) once the execution runs.
async fn start_running(server: &Server, body: Value) -> (String, String) {
    let (status, job) = server.post("/v1/agents/default/jobs", body).await;
    assert_eq!(status, 201, "{job}");
    let job_id = job["id"].as_str().expect("id").to_owned();
    let (status, execution) = server.post(&format!("/v1/agents/default/jobs/{job_id}/trigger"), json!({})).await;
    assert_eq!(status, 202, "{execution}");
    let execution_id = execution["id"].as_str().expect("id").to_owned();
    eventually(15, "the execution to run", || async {
        let (_, execution) = server.get(&format!("/v1/agents/default/executions/{execution_id}")).await;
        (execution["status"] == "running").then_some(())
    })
    .await;
    (job_id, execution_id)
}

/// The statuses of a job's executions.
async fn statuses(server: &Server, job_id: &str) -> Vec<String> {
    let (_, history) = server.get(&format!("/v1/agents/default/jobs/{job_id}/executions")).await;
    history["executions"]
        .as_array()
        .expect("executions")
        .iter()
        .filter_map(|execution| execution["status"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_running_executions_finish_and_hands_back_the_rest() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let mut server = Server::start_with(directory.path(), KEY, &["--shutdown-grace", "20"]);
    // A once job due a little after the signal: claimed ahead (the lookahead), not started when the node stops.
    let due = Utc::now() + chrono::Duration::milliseconds(4500);
    let once = json!({
        "name": "after-restart",
        "schedule": {"type": "once", "executeAt": sundial_core::wire::instant(due)},
        "code": "async () => 'once'",
    });
    let (status, once) = server.post("/v1/agents/default/jobs", once).await;
    assert_eq!(status, 201, "{once}");
    let once_id = once["id"].as_str().expect("id").to_owned();
    let (job_id, execution_id) = start_running(&server, slow_job("slow", 3)).await;

    let signalled = Instant::now();
    server.terminate();
    let status = tokio::task::block_in_place(|| server.wait_exit(25)).expect("the server exits within its grace");
    let took = signalled.elapsed();
    assert!(status.success(), "a graceful stop exits 0, not {status}");
    assert!(took >= Duration::from_millis(1500), "the server did not wait for the running execution ({took:?})");

    // Restarted on the same data: the run finished on the old node, and the handed-back slot fires once.
    let server = Server::start(directory.path(), KEY);
    let (_, execution) = server.get(&format!("/v1/agents/default/executions/{execution_id}")).await;
    assert_eq!(execution["status"], "completed", "{execution}");
    assert_eq!(execution["result"], "finished");
    assert_eq!(statuses(&server, &job_id).await, ["completed"], "no retry of a run that finished");
    let once_runs = eventually(20, "the once job to run after the restart", || async {
        let runs = statuses(&server, &once_id).await;
        (runs.first().map(String::as_str) == Some("completed")).then_some(runs)
    })
    .await;
    assert_eq!(once_runs, ["completed"], "the once job ran exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_signal_sent_to_every_process_of_the_service_still_lets_runs_finish() {
    // systemd's default KillMode signals the server and its sandbox workers alike (so does a Ctrl-C in a terminal,
    // to its foreground process group): the workers must leave the decision to the server.
    let directory = tempfile::tempdir().expect("temporary directory");
    let mut server = Server::start_with(directory.path(), KEY, &["--shutdown-grace", "20"]);
    let (job_id, execution_id) = start_running(&server, slow_job("slow-everywhere", 2)).await;
    let server_pid = libc::pid_t::try_from(server.child.id()).expect("pid");
    let workers = crate::support::children_of(server_pid);
    assert!(!workers.is_empty(), "the server has sandbox workers");
    for worker in workers {
        // SAFETY: signalling a process of the server this test started.
        unsafe {
            libc::kill(worker, libc::SIGINT);
            libc::kill(worker, libc::SIGHUP);
        }
    }
    server.signal_every_process(libc::SIGTERM);
    let status = tokio::task::block_in_place(|| server.wait_exit(25)).expect("the server exits within its grace");
    assert!(status.success(), "a graceful stop exits 0, not {status}");

    let server = Server::start(directory.path(), KEY);
    let (_, execution) = server.get(&format!("/v1/agents/default/executions/{execution_id}")).await;
    assert_eq!(execution["status"], "completed", "{execution}");
    assert_eq!(execution["result"], "finished");
    assert_eq!(statuses(&server, &job_id).await, ["completed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_at_once_and_the_grace_period_bounds_the_wait() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let mut server = Server::start_with(directory.path(), KEY, &["--shutdown-grace", "60"]);
    start_running(&server, slow_job("very-slow", 30)).await;
    server.terminate();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(server.child.try_wait().expect("wait").is_none(), "the first signal stopped the server at once");
    let signalled = Instant::now();
    server.terminate();
    let status = tokio::task::block_in_place(|| server.wait_exit(10)).expect("a second signal stops the server");
    assert!(!status.success(), "a stop that cut runs off exits non-zero");
    assert!(signalled.elapsed() < Duration::from_secs(5), "the second signal waited {:?}", signalled.elapsed());

    // With a short grace the wait ends, the run is left to its lease, and the next start abandons and retries it.
    let mut server = Server::start_with(directory.path(), KEY, &["--shutdown-grace", "1"]);
    let (job_id, _) = start_running(&server, slow_job("too-slow", 30)).await;
    let signalled = Instant::now();
    server.terminate();
    let status = tokio::task::block_in_place(|| server.wait_exit(15)).expect("the grace period ends the wait");
    assert!(status.success(), "{status}");
    assert!(signalled.elapsed() < Duration::from_secs(8), "the stop waited {:?}", signalled.elapsed());
    let server = Server::start(directory.path(), KEY);
    let runs = statuses(&server, &job_id).await;
    assert!(runs.iter().any(|status| status == "abandoned"), "the run cut off by the grace period: {runs:?}");
}
