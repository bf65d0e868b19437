//! End-to-end tests: the engine on a hand-moved clock with the real SQLite store and real sandbox workers, and the
//! real `sundial` binary over HTTP on a random port (first run, API, CLI, bad input, `kill -9` and restart).

mod backup;
mod cluster;
mod contract;
mod data;
mod graceful;
mod lua_cli;
mod security;
mod support;
mod ui;

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sundial_core::{ExecutionStatus, JobStatus, Trigger};
use support::{eventually, send, statuses, Server, TestEngine};

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("instant").with_timezone(&Utc)
}

const REMINDER: &str = "async (jobInstance) => {
    const user = await jobInstance.user();
    await user.send([{ type: 'text', text: jobInstance.metadata.message }]);
    return { success: true };
}";

// --- the engine on a hand-moved clock ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_job_runs_every_n_seconds_and_sees_its_updated_metadata() {
    let start = utc("2030-01-01T00:00:00Z");
    let mut test = TestEngine::start(start).await;
    let code = "async (job) => {
        const runs = (job.metadata.runCount || 0) + 1;
        await job.updateMetadata({ runCount: runs, lastRun: job.execution.scheduledFor });
        return { runs };
    }";
    let job = test
        .create(json!({"name": "counter", "schedule": {"type": "interval", "seconds": 60}, "code": code}), None)
        .await;
    assert_eq!(job.job.next_run_at, Some(utc("2030-01-01T00:01:00Z")), "the grid is anchored at activation");
    for run in 1..=3 {
        test.advance(60.0).await;
        test.wait_final(&job.job.id, run).await;
    }
    let executions = test.wait_final(&job.job.id, 3).await;
    let slots: Vec<_> = executions.iter().map(|execution| execution.scheduled_for).collect();
    assert_eq!(
        slots,
        [Some(utc("2030-01-01T00:01:00Z")), Some(utc("2030-01-01T00:02:00Z")), Some(utc("2030-01-01T00:03:00Z"))]
    );
    let results: Vec<_> = executions.iter().map(|execution| execution.result.clone()).collect();
    assert_eq!(results, [Some(json!({"runs": 1})), Some(json!({"runs": 2})), Some(json!({"runs": 3}))]);
    let stored = test.engine.job(&TestEngine::caller(None), &job.job.id).await.expect("job");
    assert_eq!(stored.metadata.get("runCount"), Some(&json!(3)));
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_due_at_the_same_instant_start_in_job_order_slot_after_slot() {
    // One worker, so the order in which the runs write is the order in which they started.
    let start = utc("2030-01-01T00:00:00Z");
    let mut test = TestEngine::start_with_workers(start, 1).await;
    let code = "async (job) => { await Data.create('starts', { job: job.id, slot: job.execution.scheduledFor }); }";
    let mut jobs = Vec::new();
    for index in 0..12 {
        let body =
            json!({"name": format!("tick-{index}"), "schedule": {"type": "interval", "seconds": 60}, "code": code});
        jobs.push(test.create(body, None).await.job.id);
    }
    const SLOTS: usize = 3;
    for _ in 0..SLOTS {
        test.advance(60.0).await;
    }
    for job in &jobs {
        test.wait_final(job, SLOTS).await;
    }
    let page = test.store.data_entry_list("a", "starts", None, 0, 100).await.expect("list");
    let mut by_slot: Vec<(String, Vec<String>)> = Vec::new();
    for entry in &page.items {
        let slot = entry.data["slot"].as_str().expect("slot").to_owned();
        let job = entry.data["job"].as_str().expect("job").to_owned();
        match by_slot.last_mut() {
            Some((last, order)) if *last == slot => order.push(job),
            _ => by_slot.push((slot, vec![job])),
        }
    }
    let mut expected = jobs.clone();
    expected.sort();
    assert_eq!(by_slot.len(), SLOTS, "each slot's runs started together: {by_slot:?}");
    for (slot, order) in &by_slot {
        assert_eq!(order, &expected, "slot {slot}: runs due at the same instant start in job order");
    }
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_job_with_a_timezone_fires_at_local_instants_across_dst() {
    // 2025-03-09 is the spring-forward day in New York: 02:30 does not exist and fires at 03:00 EDT (07:00Z).
    let start = utc("2025-03-07T12:00:00Z");
    let mut test = TestEngine::start(start).await;
    let schedule = json!({"type": "cron", "expression": "30 2 * * *", "timezone": "America/New_York"});
    let job = test.create(json!({"name": "nightly", "schedule": schedule, "code": "async () => 'ok'"}), None).await;
    let expected = ["2025-03-08T07:30:00Z", "2025-03-09T07:00:00Z", "2025-03-10T06:30:00Z"];
    for (index, instant) in expected.iter().enumerate() {
        test.clock.set(utc(instant) - chrono::Duration::seconds(1));
        tokio::time::sleep(Duration::from_millis(30)).await;
        test.advance(2.0).await;
        test.wait_final(&job.job.id, index + 1).await;
    }
    let executions = test.executions(&job.job.id).await;
    let fired: Vec<_> = executions.iter().map(|execution| execution.scheduled_for).collect();
    assert_eq!(fired, expected.iter().map(|text| Some(utc(text))).collect::<Vec<_>>());
    assert!(executions.iter().all(|execution| execution.status == ExecutionStatus::Completed));
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_give_exactly_max_attempts_plus_one_executions() {
    let start = utc("2030-01-01T00:00:00Z");
    let mut test = TestEngine::start(start).await;
    let body = json!({
        "name": "always-throws",
        "schedule": {"type": "once", "executeAt": "2030-01-01T00:00:10Z"},
        "retry": {"maxAttempts": 2, "backoffSeconds": 1},
        "code": "async () => { throw new Error('boom'); }",
    });
    let job = test.create(body, None).await;
    test.advance(10.5).await;
    test.wait_final(&job.job.id, 1).await;
    test.advance(1.2).await;
    test.wait_final(&job.job.id, 2).await;
    test.advance(1.2).await;
    test.wait_final(&job.job.id, 3).await;
    test.advance(30.0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let executions = test.executions(&job.job.id).await;
    assert_eq!(statuses(&executions), [ExecutionStatus::Failed; 3]);
    let retries: Vec<_> = executions.iter().map(|execution| (execution.retry_count, execution.trigger)).collect();
    assert_eq!(retries, [(0, Trigger::Schedule), (1, Trigger::Retry), (2, Trigger::Retry)]);
    for execution in &executions {
        assert_eq!(execution.error.as_deref().and_then(|error| error.lines().next()), Some("Error: boom"));
        assert_eq!(execution.occurrence_id, executions[0].occurrence_id, "retries belong to the same occurrence");
    }
    let stored = test.engine.job(&TestEngine::caller(None), &job.job.id).await.expect("job");
    assert_eq!((stored.active, stored.status), (false, JobStatus::Failed));
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recurring_schedules_end_after_max_runs_or_at_until_and_the_job_completes() {
    let start = utc("2030-01-01T00:00:00Z");
    let mut test = TestEngine::start(start).await;
    let counted = test
        .create(
            json!({"name": "three-times", "schedule": {"type": "interval", "seconds": 5, "maxRuns": 3},
                   "code": "async (job) => job.execution.occurrenceId"}),
            None,
        )
        .await;
    let until = test
        .create(
            json!({"name": "until", "schedule": {"type": "cron", "expression": "*/10 * * * * *", "timezone": "Europe/Paris",
                   "until": "2030-01-01T00:00:35Z"}, "code": "async () => 'tock'"}),
            None,
        )
        .await;
    let described =
        |detail: &sundial_scheduler::JobDetail| sundial_core::describe::describe(&detail.versions[0].schedule);
    assert_eq!(described(&counted), "every 5 seconds, 3 times");
    assert_eq!(described(&until), "every 10 seconds (Europe/Paris), until Tue 1 Jan 2030 at 01:00:35 (Europe/Paris)");
    for second in [5.2, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0] {
        test.advance(second).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    test.wait_final(&counted.job.id, 3).await;
    test.wait_final(&until.job.id, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (detail, slots) in
        [(&counted, ["00:00:05", "00:00:10", "00:00:15"]), (&until, ["00:00:10", "00:00:20", "00:00:30"])]
    {
        let executions = test.executions(&detail.job.id).await;
        assert_eq!(statuses(&executions), [ExecutionStatus::Completed; 3], "{}", detail.job.name);
        let fired: Vec<String> = executions
            .iter()
            .filter_map(|execution| execution.scheduled_for)
            .map(|slot| slot.format("%H:%M:%S").to_string())
            .collect();
        assert_eq!(fired, slots, "{}", detail.job.name);
        let stored = test.engine.job(&TestEngine::caller(None), &detail.job.id).await.expect("job");
        assert_eq!((stored.active, stored.status, stored.next_run_at), (false, JobStatus::Completed, None));
    }
    // An end before the first run is refused rather than making a job that never runs.
    let refused = test
        .engine
        .create_job(
            &TestEngine::caller(None),
            sundial_scheduler::NewJob::parse(
                &json!({"name": "never", "schedule": {"type": "interval", "seconds": 60, "until": "2030-01-01T00:00:30Z"},
                        "code": "async () => 1"}),
                test.engine.config(),
            )
            .expect("a valid request"),
        )
        .await
        .expect_err("an end before the first run");
    assert!(refused.to_string().contains("schedule.until"), "{refused}");
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_deactivates_itself_stops_and_a_once_job_can_delete_itself() {
    let start = utc("2030-01-01T00:00:00Z");
    let mut test = TestEngine::start(start).await;
    let stopper = "async (job) => {
        const runs = (job.metadata.runs || 0) + 1;
        await job.updateMetadata({ runs });
        if (runs >= 2) { await job.deactivate(); return { action: 'completed', stopped: true }; }
        return { action: 'processed' };
    }";
    let recurring = test
        .create(json!({"name": "stopper", "schedule": {"type": "interval", "seconds": 5}, "code": stopper}), None)
        .await;
    let deleter = "async (job) => { await job.delete(); return 'done'; }";
    let once = test
        .create(json!({"name": "self-deleting", "schedule": {"type": "once", "executeAt": "2030-01-01T00:00:03Z"}, "code": deleter}), Some("u1"))
        .await;
    test.advance(5.5).await;
    test.wait_final(&recurring.job.id, 1).await;
    test.advance(5.0).await;
    test.wait_final(&recurring.job.id, 2).await;
    test.advance(20.0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let executions = test.executions(&recurring.job.id).await;
    assert_eq!(executions.len(), 2, "the job ran after it deactivated itself: {:?}", statuses(&executions));
    assert_eq!(executions[1].result, Some(json!({"action": "completed", "stopped": true})));
    let stored = test.engine.job(&TestEngine::caller(None), &recurring.job.id).await.expect("job");
    assert_eq!((stored.active, stored.status), (false, JobStatus::Inactive));

    let gone = test.engine.job(&TestEngine::caller(None), &once.job.id).await;
    assert!(
        matches!(gone, Err(sundial_scheduler::EngineError::NotFound("job"))),
        "job.delete() did not delete: {gone:?}"
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_end_runs_as_timeout_or_killed_and_the_next_job_runs_normally() {
    let start = utc("2030-01-01T00:00:00Z");
    let mut test = TestEngine::start(start).await;
    let cases = [
        ("spin", "async () => { while (true) {} }", ExecutionStatus::Timeout),
        ("native-join", "async () => { const a = []; a.length = 2**32 - 1; return a.join(','); }", ExecutionStatus::Timeout),
        ("never-settles", "async () => { await new Promise(() => {}); }", ExecutionStatus::Timeout),
        ("allocation-bomb", "async () => { const chunks = []; while (true) chunks.push('x'.repeat(1 << 20) + chunks.length); }", ExecutionStatus::Killed),
        (
            "caught-allocation-bomb",
            "async () => { try { const chunks = []; while (true) chunks.push(new Array(1 << 20).fill(1)); } catch (e) { return 'survived'; } }",
            ExecutionStatus::Killed,
        ),
        // A free variable is refused when the job is created; one reached through `eval` still fails when it runs.
        ("free-variable", "async (job) => { await eval('user').send('hi'); }", ExecutionStatus::Failed),
        ("fine", "async (job) => ({ ok: true, name: job.name })", ExecutionStatus::Completed),
    ];
    for (name, code, expected) in cases {
        let body = json!({"name": name, "schedule": {"type": "interval", "seconds": 3600}, "timeout": 1, "code": code, "activate": false});
        let job = test.create(body, None).await;
        test.engine.trigger(&TestEngine::caller(None), &job.job.id, None).await.expect("trigger");
        let executions = test.wait_final(&job.job.id, 1).await;
        let execution = &executions[0];
        assert_eq!(execution.status, expected, "{name}: {:?}", execution.error);
        assert_eq!(execution.trigger, Trigger::Manual);
        if expected == ExecutionStatus::Timeout {
            assert!(execution.duration_ms.is_some_and(|ms| ms >= 1000), "{name} stopped before its timeout");
        }
        if name == "free-variable" {
            let first_line = execution.error.as_deref().and_then(|error| error.lines().next());
            assert_eq!(first_line, Some("ReferenceError: user is not defined"));
        }
        if name == "fine" {
            assert_eq!(execution.result, Some(json!({"ok": true, "name": "fine"})));
        }
    }
    // A worker stuck in a native call is killed and replaced; a worker whose run hit the interrupt or the memory cap
    // puts its world back and goes on.
    let restarts = test.engine.pool().stats().restarts;
    assert!((1..3).contains(&restarts), "{restarts} workers replaced");
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_due_while_the_previous_run_runs_is_recorded_as_skipped() {
    let start = utc("2030-01-01T00:00:00Z");
    let mut test = TestEngine::start(start).await;
    let code = "async () => { await new Promise((resolve) => setTimeout(resolve, 1500)); return 'slow'; }";
    let job =
        test.create(json!({"name": "slow", "schedule": {"type": "interval", "seconds": 1}, "code": code}), None).await;
    test.advance(1.05).await;
    eventually(10, "the first run to start", || async {
        let executions = test.executions(&job.job.id).await;
        executions.iter().any(|execution| execution.status == ExecutionStatus::Running).then_some(())
    })
    .await;
    test.advance(1.0).await;
    let executions = test.wait_final(&job.job.id, 2).await;
    assert!(statuses(&executions).contains(&ExecutionStatus::Skipped), "{:?}", statuses(&executions));
    let completed = test.wait_final(&job.job.id, 2).await;
    assert!(
        statuses(&completed).contains(&ExecutionStatus::Completed)
            || statuses(&completed).contains(&ExecutionStatus::Skipped)
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_slots_after_downtime_run_once_and_are_counted() {
    let start = utc("2030-01-01T00:00:00Z");
    let mut test = TestEngine::start(start).await;
    let job = test
        .create(
            json!({"name": "minutely", "schedule": {"type": "interval", "seconds": 60}, "code": "async () => 1"}),
            None,
        )
        .await;
    // Ten and a half minutes pass at once, as if no scheduler had run: slots 00:01 … 00:10 are all missed.
    test.clock.advance(chrono::Duration::seconds(630));
    test.engine.wake();
    let executions = test.wait_final(&job.job.id, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(executions.len(), 1, "run_once makes one catch-up run");
    assert_eq!(executions[0].scheduled_for, Some(utc("2030-01-01T00:10:00Z")), "the newest missed slot runs");
    let stored = test.engine.job(&TestEngine::caller(None), &job.job.id).await.expect("job");
    assert_eq!(stored.missed_slots, 9);
    assert_eq!(stored.next_run_at, Some(utc("2030-01-01T00:11:00Z")));
    test.stop().await;
}

// --- the real binary over HTTP ---

fn reminder_body(execute_at: DateTime<Utc>, message: &str) -> Value {
    json!({
        "name": "user-reminder",
        "metadata": {"message": message},
        "schedule": {"type": "once", "executeAt": sundial_core::wire::instant(execute_at)},
        "code": REMINDER,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_reminder_fires_on_time_and_reaches_the_users_conversation() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(directory.path(), "sk_test_reminder");
    let (status, _) =
        send(server.request(reqwest::Method::PUT, "/v1/agents/default/users/u1").json(&json!({"name": "Ada"}))).await;
    assert_eq!(status, 200);
    // Instants travel with millisecond precision.
    let due = chrono::SubsecRound::trunc_subsecs(Utc::now() + chrono::Duration::seconds(2), 3);
    let request = server
        .request(reqwest::Method::POST, "/v1/agents/default/jobs")
        .header("X-User-Id", "u1")
        .json(&reminder_body(due, "Team meeting in 10 minutes"));
    let (status, job) = send(request).await;
    assert_eq!(status, 201, "{job}");
    assert_eq!((job["dynamic"].clone(), job["userId"].clone()), (json!(true), json!("u1")));
    let job_id = job["id"].as_str().expect("id").to_owned();

    let messages = eventually(15, "the reminder message", || async {
        let (_, answer) = server.get("/v1/agents/default/users/u1/messages").await;
        let messages = answer["messages"].as_array().cloned().unwrap_or_default();
        (!messages.is_empty()).then_some(messages)
    })
    .await;
    assert_eq!(messages[0]["content"], json!({"type": "text", "text": "Team meeting in 10 minutes"}));

    let job = eventually(10, "the job to complete", || async {
        let (_, job) = server.get(&format!("/v1/agents/default/jobs/{job_id}")).await;
        (job["status"] == "completed").then_some(job)
    })
    .await;
    assert_eq!(job["active"], json!(false));
    let execution = &job["lastExecution"];
    assert_eq!(execution["status"], "completed");
    assert_eq!(execution["result"], json!({"success": true}));
    let started = utc(execution["startedAt"].as_str().expect("startedAt"));
    assert!(started >= due, "fired early: {started} < {due}");

    let (status, history) = server.get(&format!("/v1/agents/default/jobs/{job_id}/executions")).await;
    assert_eq!((status, history["total"].clone()), (200, json!(1)));
    let execution_id = history["executions"][0]["executionId"].as_str().expect("executionId");
    let (status, one) = server.get(&format!("/v1/agents/default/executions/{execution_id}")).await;
    assert_eq!((status, one["logs"].is_array()), (200, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_tokens_and_tenancy() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(directory.path(), "sk_test_tenancy");
    let (status, created) = server.post("/v1/agents", json!({"agentId": "other"})).await;
    assert_eq!(status, 201, "{created}");
    let other_key = created["key"]["key"].as_str().expect("key").to_owned();
    let (status, _) = server.post("/v1/agents", json!({"agentId": "other"})).await;
    assert_eq!(status, 409);

    // A user token creates dynamic jobs of its user, and sees only its own user.
    let (status, token) = server.post("/v1/agents/default/users/u7/tokens", json!({})).await;
    assert_eq!(status, 201, "{token}");
    let token = token["token"].as_str().expect("token").to_owned();
    let as_user = |method, path: &str| {
        reqwest::Client::new().request(method, format!("{}{}", server.url, path)).bearer_auth(&token)
    };
    let later = Utc::now() + chrono::Duration::hours(1);
    let (status, job) =
        send(as_user(reqwest::Method::POST, "/v1/agents/default/jobs").json(&reminder_body(later, "hi"))).await;
    assert_eq!(status, 201, "{job}");
    assert_eq!((job["dynamic"].clone(), job["userId"].clone()), (json!(true), json!("u7")));
    let job_id = job["id"].as_str().expect("id").to_owned();
    let (status, _) = send(as_user(reqwest::Method::GET, "/v1/agents/default/users/u8")).await;
    assert_eq!(status, 404, "a user token read another user");
    let (status, _) = send(as_user(reqwest::Method::POST, "/v1/agents/default/users/u8/tokens")).await;
    assert_eq!(status, 403, "a user token minted a token");

    // Another agent's key sees nothing of agent default: 404, as if it did not exist.
    let other = |method, path: &str| {
        reqwest::Client::new().request(method, format!("{}{}", server.url, path)).bearer_auth(&other_key)
    };
    let (status, body) = send(other(reqwest::Method::GET, &format!("/v1/agents/default/jobs/{job_id}"))).await;
    assert_eq!((status, body["code"].clone()), (404, json!("agent_not_found")));
    let (status, body) = send(other(reqwest::Method::GET, &format!("/v1/agents/other/jobs/{job_id}"))).await;
    assert_eq!((status, body["code"].clone()), (404, json!("job_not_found")));
    let (status, body) = send(other(reqwest::Method::GET, "/v1/agents")).await;
    assert_eq!((status, body["code"].clone()), (403, json!("forbidden")));

    // Revoked keys stop working.
    let (status, key) = server.post("/v1/agents/other/keys", json!({})).await;
    assert_eq!(status, 201);
    let key_id = key["id"].as_str().expect("id");
    let (status, _) = send(server.request(reqwest::Method::DELETE, &format!("/v1/agents/other/keys/{key_id}"))).await;
    assert_eq!(status, 200);
    let revoked = reqwest::Client::new()
        .get(format!("{}/v1/agents/other/jobs", server.url))
        .bearer_auth(key["key"].as_str().unwrap_or_default());
    let (status, body) = send(revoked).await;
    assert_eq!((status, body["code"].clone()), (401, json!("unauthorized")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_4xx_with_a_stable_code() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(directory.path(), "sk_test_bad_input");
    let good = json!({"name": "ok", "schedule": {"type": "interval", "seconds": 60}, "code": "async () => 1"});
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    let cases: Vec<(&str, Value, u16, &str, &str)> = vec![
        ("wrong name type", with("name", json!(5)), 400, "invalid_request", "name: must be a string, got number"),
        (
            "missing schedule",
            json!({"name": "x", "code": "async () => 1"}),
            400,
            "invalid_schedule",
            "schedule: is required",
        ),
        (
            "bad cron",
            with("schedule", json!({"type": "cron", "expression": "* * * *"})),
            400,
            "invalid_schedule",
            "schedule.expression: expected 5 or 6 fields, got 4",
        ),
        (
            "unknown zone",
            with("schedule", json!({"type": "cron", "expression": "0 9 * * *", "timezone": "Mars/Base"})),
            400,
            "invalid_schedule",
            "schedule.timezone: unknown IANA zone \"Mars/Base\"",
        ),
        (
            "executeAt not a date",
            with("schedule", json!({"type": "once", "executeAt": "tomorrow"})),
            400,
            "invalid_schedule",
            "schedule.executeAt",
        ),
        (
            "interval 0",
            with("schedule", json!({"type": "interval", "seconds": 0})),
            400,
            "invalid_schedule",
            "schedule.seconds: must be at least 1",
        ),
        ("unknown type", with("schedule", json!({"type": "weekly"})), 400, "invalid_schedule", "schedule.type"),
        (
            "timeout 0",
            with("timeout", json!(0)),
            400,
            "invalid_request",
            "timeout: must be a whole number of seconds between 1 and 600",
        ),
        (
            "timeout 10000",
            with("timeout", json!(10000)),
            400,
            "invalid_request",
            "timeout: must be a whole number of seconds between 1 and 600",
        ),
        ("retry as a string", with("retry", json!("3")), 400, "invalid_request", "retry: must be an object"),
        (
            "metadata as an array",
            with("metadata", json!([1])),
            400,
            "invalid_request",
            "metadata: must be an object, got array",
        ),
        (
            "code not a function",
            with("code", json!("console.log(1)")),
            400,
            "invalid_request",
            "code: must be the source of a JavaScript function",
        ),
        ("body not an object", json!([1, 2]), 400, "invalid_request", "body: must be a JSON object, got array"),
    ];
    for (name, body, status, code, message) in cases {
        let (got, answer) = server.post("/v1/agents/default/jobs", body).await;
        assert_eq!(got, status, "{name}: {answer}");
        assert_eq!(answer["code"], code, "{name}: {answer}");
        let text = answer["message"].as_str().unwrap_or_default();
        assert!(text.starts_with(message), "{name}: message {text:?} does not start with {message:?}");
    }

    let malformed = server.request(reqwest::Method::POST, "/v1/agents/default/jobs").body("{\"name\": ");
    let (status, answer) = send(malformed).await;
    assert_eq!((status, answer["code"].clone()), (400, json!("invalid_json")), "{answer}");

    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(10 * 1024 * 1024));
    let (status, answer) = send(server.request(reqwest::Method::POST, "/v1/agents/default/jobs").body(huge)).await;
    assert_eq!((status, answer["code"].clone()), (413, json!("payload_too_large")), "{answer}");

    let (status, answer) = server.get("/v1/agents/default/jobs/job_doesnotexist").await;
    assert_eq!((status, answer["code"].clone()), (404, json!("job_not_found")));
    let (status, answer) = server.get("/v1/agents/default/executions/exe_nope").await;
    assert_eq!((status, answer["code"].clone()), (404, json!("execution_not_found")));
    let (status, answer) = server.get("/v1/agents/default/jobs?limit=many").await;
    assert_eq!((status, answer["code"].clone()), (400, json!("invalid_request")));
    let (status, answer) = send(reqwest::Client::new().get(format!("{}/v1/agents/default/jobs", server.url))).await;
    assert_eq!((status, answer["code"].clone()), (401, json!("unauthorized")));
    let (status, answer) = server.get("/v1/nothing-here").await;
    assert_eq!((status, answer["code"].clone()), (404, json!("route_not_found")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_endpoints_and_the_openapi_document() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(directory.path(), "sk_test_ops");
    let (status, _) = send(reqwest::Client::new().get(format!("{}/healthz", server.url))).await;
    assert_eq!(status, 200);
    let (status, _) = send(reqwest::Client::new().get(format!("{}/readyz", server.url))).await;
    assert_eq!(status, 200);
    let (status, document) = send(reqwest::Client::new().get(format!("{}/v1/openapi.json", server.url))).await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.1.0");
    for path in [
        "/v1/agents/{agentId}/jobs",
        "/v1/agents/{agentId}/jobs/{jobId}/trigger",
        "/v1/agents/{agentId}/executions/{executionId}",
    ] {
        assert!(document["paths"].get(path).is_some(), "{path} missing from the OpenAPI document");
    }
    // The routed operations and the documented ones are the same set, both ways: every documented operation is
    // routed (answers anything but route_not_found / 405), and on every documented path each method the document
    // does not list answers 405 method_not_allowed.
    let mut operation_count = 0;
    for (path, operations) in document["paths"].as_object().expect("paths") {
        assert!(path.starts_with("/v1/"), "{path} is not a native route");
        let concrete = path.replace("{agentId}", "default").replace('{', "x-").replace('}', "");
        let documented = operations.as_object().expect("operations");
        for method in ["get", "put", "post", "delete", "patch"] {
            let request_method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            if documented.contains_key(method) {
                operation_count += 1;
                let operation = &documented[method];
                assert!(operation["operationId"].is_string(), "{method} {path} has no operationId");
                assert!(operation["responses"]["400"].is_object(), "{method} {path} documents no errors");
                if path.ends_with("/stream") {
                    continue;
                }
                let (status, answer) = send(server.request(request_method, &concrete).json(&json!({}))).await;
                assert!(
                    status != 405 && answer["code"] != "route_not_found",
                    "{method} {path} is documented but not routed"
                );
            } else {
                let (status, answer) = send(server.request(request_method, &concrete).json(&json!({}))).await;
                assert_eq!(
                    (status, answer["code"].clone()),
                    (405, json!("method_not_allowed")),
                    "{method} {path} is routed but not documented"
                );
            }
        }
        // Every path parameter is declared.
        for name in path.split('{').skip(1).filter_map(|rest| rest.split('}').next()) {
            for (method, operation) in documented {
                let declared = operation["parameters"]
                    .as_array()
                    .is_some_and(|parameters| parameters.iter().any(|p| p["name"] == name && p["in"] == "path"));
                assert!(declared, "{method} {path} does not declare its path parameter {name}");
            }
        }
    }
    assert!(operation_count >= 49, "only {operation_count} operations documented");
    let created = &document["paths"]["/v1/agents/{agentId}/jobs"]["post"]["responses"]["201"];
    assert_eq!(created["links"]["GetJob"]["operationId"], "get_job", "a created job links to the operations on it");
    let job = json!({"name": "now", "schedule": {"type": "interval", "seconds": 3600}, "code": "async () => 1"});
    let (_, job) = server.post("/v1/agents/default/jobs", job).await;
    let job_id = job["id"].as_str().expect("id");
    let (status, execution) = server.post(&format!("/v1/agents/default/jobs/{job_id}/trigger"), json!({})).await;
    assert_eq!(status, 202);
    assert!(matches!(execution["status"].as_str(), Some("pending" | "running")), "{execution}");
    eventually(10, "the triggered run", || async {
        let (_, history) = server.get(&format!("/v1/agents/default/jobs/{job_id}/executions?status=completed")).await;
        (history["total"] == 1).then_some(())
    })
    .await;
    let (status, preview) = server.get(&format!("/v1/agents/default/jobs/{job_id}/preview?n=3")).await;
    assert_eq!((status, preview["fires"].as_array().map(Vec::len)), (200, Some(3)));
    let metrics = reqwest::get(format!("{}/metrics", server.url)).await.expect("metrics").text().await.expect("text");
    for name in [
        "sundial_fires_total",
        "sundial_fire_lateness_seconds",
        "sundial_executions_total",
        "sundial_skipped_slots_total",
        "sundial_queue_depth",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics:\n{metrics}");
    }
    assert!(metrics.contains("status=\"completed\""), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_jobs_are_due_then_restart_runs_every_occurrence_once() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let mut server = Server::start(directory.path(), "sk_test_kill");
    let base = Utc::now() + chrono::Duration::milliseconds(1500);
    let jobs: Vec<Value> = (0..60)
        .map(|index| {
            json!({
                "name": format!("once-{index}"),
                "metadata": {"i": index},
                "schedule": {"type": "once", "executeAt": sundial_core::wire::instant(base + chrono::Duration::milliseconds(50 * index))},
                "code": "async (job) => ({ i: job.metadata.i, t: Date.now() })",
            })
        })
        .collect();
    let due_ms: Vec<i64> =
        (0..60).map(|index| (base + chrono::Duration::milliseconds(50 * index)).timestamp_millis()).collect();
    let (status, created) = server.post("/v1/agents/default/jobs/batch?view=ids", json!({"jobs": jobs})).await;
    assert_eq!(status, 201, "{created}");
    let first = created["jobs"][0].as_object().cloned().unwrap_or_default();
    assert_eq!(first.keys().collect::<Vec<_>>(), ["id", "nextRunAt"], "view=ids answers ids and next runs only");
    let ids: Vec<String> = created["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|job| job["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    let interval =
        json!({"name": "every-second", "schedule": {"type": "interval", "seconds": 1}, "code": "async () => 1"});
    let (_, interval) = server.post("/v1/agents/default/jobs", interval).await;
    let interval_id = interval["id"].as_str().expect("id").to_owned();

    // Kill in the middle of the due window (1.5 s .. 4.5 s from now), then restart on the same data.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let server = Server::start(directory.path(), "sk_test_kill");

    for (id, due_ms) in ids.iter().zip(&due_ms) {
        // Nothing is lost: a run the kill cut off was abandoned and retried once.
        let history = eventually(30, "every once job to complete", || async {
            let (_, history) = server.get(&format!("/v1/agents/default/jobs/{id}/executions")).await;
            let executions = history["executions"].as_array().cloned().unwrap_or_default();
            let done = executions.iter().any(|execution| execution["status"] == "completed");
            done.then_some(executions)
        })
        .await;
        let scheduled: Vec<&Value> = history.iter().filter(|execution| execution["trigger"] == "schedule").collect();
        assert_eq!(scheduled.len(), 1, "job {id} fired {} times: {history:?}", scheduled.len());
        let completed: Vec<&Value> = history.iter().filter(|execution| execution["status"] == "completed").collect();
        assert_eq!(completed.len(), 1, "job {id} completed twice: {history:?}");
        // Handed to its worker ahead of time, the code still never starts before its instant.
        let started = completed[0]["result"]["t"].as_i64().expect("the code's start time");
        assert!(started >= *due_ms, "job {id} ran {} ms early", due_ms - started);
        for execution in &history {
            if let (Some(started), Some(due)) = (execution["startedAt"].as_str(), execution["dueAt"].as_str()) {
                assert!(utc(started) >= utc(due), "job {id} recorded a start before its due time: {execution}");
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, history) = server.get(&format!("/v1/agents/default/jobs/{interval_id}/executions?limit=1000")).await;
    let mut slots = HashSet::new();
    for execution in history["executions"].as_array().expect("executions") {
        if execution["trigger"] == "schedule" {
            let slot = execution["scheduledFor"].as_str().unwrap_or_default().to_owned();
            assert!(slots.insert(slot.clone()), "slot {slot} of the interval job fired twice");
        }
    }
    assert!(slots.len() >= 3, "the interval job kept firing after the restart: {slots:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_stream_delivers_new_messages_as_server_sent_events() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(directory.path(), "sk_test_sse");
    let mut response = server
        .request(reqwest::Method::GET, "/v1/agents/default/users/u5/messages/stream")
        .send()
        .await
        .expect("stream");
    assert_eq!(response.status(), 200);
    let body = reminder_body(Utc::now(), "streamed hello");
    let request =
        server.request(reqwest::Method::POST, "/v1/agents/default/jobs").header("X-User-Id", "u5").json(&body);
    let (status, _) = send(request).await;
    assert_eq!(status, 201);
    let mut received = String::new();
    let read = tokio::time::timeout(Duration::from_secs(15), async {
        while let Ok(Some(chunk)) = response.chunk().await {
            received.push_str(&String::from_utf8_lossy(&chunk));
            if received.contains("streamed hello") {
                return;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no message event arrived: {received:?}");
    assert!(received.contains("event: message"), "{received}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_lists_triggers_and_reads_jobs() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(directory.path(), "sk_test_cli");
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(support::binary())
            .args(args)
            .env("SUNDIAL_SERVER", &server.url)
            .env("SUNDIAL_API_KEY", &server.key)
            .output()
            .expect("run sundial");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, out, err) = cli(&[
        "jobs",
        "create",
        "--name",
        "cli-job",
        "--every",
        "3600",
        "--code",
        "async (job) => ({ hello: job.name })",
        "--json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let job: Value = serde_json::from_str(&out).expect("json job");
    let job_id = job["id"].as_str().expect("id").to_owned();
    let (code, out, _) = cli(&["jobs", "list"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("cli-job") && out.contains("every 3600s"), "{out}");
    let (code, out, err) = cli(&["jobs", "trigger", &job_id]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("triggered job"), "{out}");
    let history = eventually(10, "the run in history", || {
        let (code, out, _) = cli(&["jobs", "history", &job_id, "--json"]);
        async move {
            let history: Value = serde_json::from_str(&out).ok()?;
            (code == Some(0) && history["executions"][0]["status"] == "completed").then_some(history)
        }
    })
    .await;
    let execution_id = history["executions"][0]["id"].as_str().expect("id").to_owned();
    let (code, out, _) = cli(&["jobs", "logs", &execution_id]);
    assert_eq!(code, Some(0));
    assert!(out.contains("completed") && out.contains("hello"), "{out}");
    let (code, out, _) = cli(&["jobs", "preview", &job_id, "-n", "2"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("UTC"), "{out}");
    let (code, _, err) = cli(&["jobs", "get", "job_missing"]);
    assert_eq!(code, Some(3), "not found exits 3: {err}");
    let (code, _, err) = cli(&["jobs", "create", "--name", "bad", "--cron", "* * *", "--code", "async () => 1"]);
    assert_eq!(code, Some(2), "bad input exits 2");
    assert!(err.contains("schedule.expression"), "{err}");
    let (code, out, _) = cli(&["jobs", "deactivate", &job_id, "--json"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("\"inactive\""), "{out}");
    let (code, out, _) = cli(&["jobs", "delete", &job_id]);
    assert_eq!(code, Some(0));
    assert!(out.contains("deactivated") || out.contains("deleted"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_publish_patch_metadata_and_triggering_a_given_version() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(directory.path(), "sk_test_versions");
    let body = json!({"name": "versioned", "schedule": {"type": "interval", "seconds": 3600}, "code": "async (job) => ['v1', job.activeVersion.version]", "metadata": {"a": 1}});
    let (_, job) = server.post("/v1/agents/default/jobs", body).await;
    let job_id = job["id"].as_str().expect("id").to_owned();
    let first_version = job["activeVersion"]["id"].as_str().expect("version id").to_owned();
    assert_eq!(job["activeVersion"]["version"], "1.0.0");

    // A code change through PATCH makes version 1.0.1 and publishes it; the name changes in place.
    let patch = server
        .request(reqwest::Method::PATCH, &format!("/v1/agents/default/jobs/{job_id}"))
        .json(&json!({"code": "async () => 'v2'", "name": "renamed"}));
    let (status, job) = send(patch).await;
    assert_eq!(status, 200, "{job}");
    assert_eq!((job["name"].clone(), job["activeVersion"]["version"].clone()), (json!("renamed"), json!("1.0.1")));
    let (status, added) = server
        .post(
            &format!("/v1/agents/default/jobs/{job_id}/versions"),
            json!({"version": "2.0.0", "code": "async (job) => ['v3', job.activeVersion.version]"}),
        )
        .await;
    assert_eq!((status, added["active"].clone()), (201, json!(false)), "{added}");
    let (status, conflict) =
        server.post(&format!("/v1/agents/default/jobs/{job_id}/versions"), json!({"version": "2.0.0"})).await;
    assert_eq!((status, conflict["code"].clone()), (409, json!("conflict")));
    let (status, versions) = server.get(&format!("/v1/agents/default/jobs/{job_id}/versions")).await;
    let names: Vec<_> =
        versions["versions"].as_array().expect("versions").iter().map(|version| version["version"].clone()).collect();
    assert_eq!((status, names), (200, vec![json!("1.0.0"), json!("1.0.1"), json!("2.0.0")]));
    let (status, code) = server.get(&format!("/v1/agents/default/jobs/{job_id}/versions/1.0.1/code")).await;
    assert_eq!((status, code), (200, json!("async () => 'v2'")));

    // Triggering the old version runs its code, and `job.activeVersion` is the version the run runs; publishing
    // 2.0.0 makes it the default.
    let (_, old) =
        server.post(&format!("/v1/agents/default/jobs/{job_id}/trigger"), json!({"versionId": first_version})).await;
    let (status, job) =
        server.post(&format!("/v1/agents/default/jobs/{job_id}/versions/2.0.0/publish"), json!({})).await;
    assert_eq!((status, job["activeVersion"]["version"].clone()), (200, json!("2.0.0")));
    let (_, new) = server.post(&format!("/v1/agents/default/jobs/{job_id}/trigger"), json!({})).await;
    for (execution, expected) in [(&old, json!(["v1", "1.0.0"])), (&new, json!(["v3", "2.0.0"]))] {
        let id = execution["id"].as_str().expect("id").to_owned();
        let done = eventually(10, "the triggered run", || async {
            let (_, one) = server.get(&format!("/v1/agents/default/executions/{id}")).await;
            (one["status"] == "completed").then_some(one)
        })
        .await;
        assert_eq!(done["result"], expected);
    }

    // Metadata: PATCH merges, PUT replaces.
    let merge = server
        .request(reqwest::Method::PATCH, &format!("/v1/agents/default/jobs/{job_id}/metadata"))
        .json(&json!({"b": 2}));
    let (_, merged) = send(merge).await;
    assert_eq!(merged["metadata"], json!({"a": 1, "b": 2}));
    let replace = server
        .request(reqwest::Method::PUT, &format!("/v1/agents/default/jobs/{job_id}/metadata"))
        .json(&json!({"c": 3}));
    let (_, replaced) = send(replace).await;
    assert_eq!(replaced["metadata"], json!({"c": 3}));

    // A pre-defined job with versions is deactivated, not deleted; a dynamic one is deleted.
    let (_, deletion) =
        send(server.request(reqwest::Method::DELETE, &format!("/v1/agents/default/jobs/{job_id}"))).await;
    assert_eq!((deletion["deleted"].clone(), deletion["deactivated"].clone()), (json!(false), json!(true)));
    let dynamic = server
        .request(reqwest::Method::POST, "/v1/agents/default/jobs")
        .header("X-User-Id", "u1")
        .json(&reminder_body(Utc::now() + chrono::Duration::hours(1), "x"));
    let (_, dynamic) = send(dynamic).await;
    let dynamic_id = dynamic["id"].as_str().expect("id");
    let (_, deletion) =
        send(server.request(reqwest::Method::DELETE, &format!("/v1/agents/default/jobs/{dynamic_id}"))).await;
    assert_eq!(deletion["deleted"], json!(true));
    let (status, _) = server.get(&format!("/v1/agents/default/jobs/{dynamic_id}")).await;
    assert_eq!(status, 404);
}

/// Pids of this process's children whose command line contains `worker` (the sandbox workers).
fn worker_pids() -> Vec<u32> {
    let me = std::process::id();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
        let parent = after_name.split_whitespace().nth(1).and_then(|field| field.parse::<u32>().ok());
        let command = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if parent == Some(me) && String::from_utf8_lossy(&command).contains("worker") {
            pids.push(pid);
        }
    }
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_worker_fails_its_run_and_the_engine_lives_on() {
    let start = utc("2030-01-01T00:00:00Z");
    let mut test = TestEngine::start(start).await;
    let body = json!({"name": "victim", "schedule": {"type": "interval", "seconds": 3600}, "timeout": 60, "activate": false,
        "code": "async () => { await new Promise((resolve) => setTimeout(resolve, 30000)); }"});
    let job = test.create(body, None).await;
    test.engine.trigger(&TestEngine::caller(None), &job.job.id, None).await.expect("trigger");
    eventually(10, "the run to start", || async {
        let executions = test.executions(&job.job.id).await;
        executions.iter().any(|execution| execution.status == ExecutionStatus::Running).then_some(())
    })
    .await;
    // The worker process dies the way a failed engine assertion kills it: abort().
    let pids = worker_pids();
    assert!(!pids.is_empty(), "no sandbox worker processes found");
    for pid in pids {
        let _ = std::process::Command::new("kill").args(["-ABRT", &pid.to_string()]).status();
    }
    let executions = test.wait_final(&job.job.id, 1).await;
    assert_eq!(executions[0].status, ExecutionStatus::Failed);
    let error = executions[0].error.clone().unwrap_or_default();
    assert!(error.contains("crashed") && error.contains("signal 6"), "{error}");

    let fine = json!({"name": "after", "schedule": {"type": "interval", "seconds": 3600}, "activate": false, "code": "async () => 'alive'"});
    let fine = test.create(fine, None).await;
    test.engine.trigger(&TestEngine::caller(None), &fine.job.id, None).await.expect("trigger");
    let executions = test.wait_final(&fine.job.id, 1).await;
    assert_eq!(
        (executions[0].status, executions[0].result.clone()),
        (ExecutionStatus::Completed, Some(json!("alive")))
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_variables_reach_env_and_quotas_answer_429() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let server = Server::start_with(directory.path(), "sk_test_env", &["--max-creations-per-minute", "3"]);
    let put = server.request(reqwest::Method::PUT, "/v1/agents/default/env").json(&json!({"GREETING": "hello"}));
    let (status, _) = send(put).await;
    assert_eq!(status, 200);
    let bad = server.request(reqwest::Method::PUT, "/v1/agents/default/env").json(&json!({"N": 1}));
    let (status, answer) = send(bad).await;
    assert_eq!((status, answer["field"].clone()), (400, json!("N")));
    let body = json!({"name": "env", "schedule": {"type": "interval", "seconds": 3600}, "activate": false,
        "code": "async () => ({ greeting: env('GREETING'), missing: env('HOME') === undefined })"});
    let (_, job) = server.post("/v1/agents/default/jobs", body.clone()).await;
    let job_id = job["id"].as_str().expect("id").to_owned();
    let (_, execution) = server.post(&format!("/v1/agents/default/jobs/{job_id}/trigger"), json!({})).await;
    let id = execution["id"].as_str().expect("id").to_owned();
    let done = eventually(10, "the run", || async {
        let (_, one) = server.get(&format!("/v1/agents/default/executions/{id}")).await;
        (one["status"] == "completed").then_some(one)
    })
    .await;
    assert_eq!(done["result"], json!({"greeting": "hello", "missing": true}));

    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response =
            server.request(reqwest::Method::POST, "/v1/agents/default/jobs").json(&body).send().await.expect("post");
        statuses.push((response.status().as_u16(), response.headers().contains_key("retry-after")));
    }
    assert_eq!(statuses, [(201, false), (201, false), (429, true)], "the fourth creation in a minute is refused");
}

/// A webhook receiver on loopback that records every POST body and answers 500 to the first `failures` of them.
async fn webhook_receiver(failures: usize) -> (String, std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>) {
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<Vec<(String, Value)>>> = Arc::new(Mutex::new(Vec::new()));
    let record = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<Value>| {
            let record = record.clone();
            async move {
                let id = headers.get("x-sundial-message-id").and_then(|value| value.to_str().ok()).unwrap_or_default();
                let mut seen = record.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                seen.push((id.to_owned(), body));
                if seen.len() <= failures {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{address}/hook"), received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_the_agents_webhook_once_with_retries() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(directory.path(), "sk_test_webhook");
    let (url, received) = webhook_receiver(1).await;
    let put = server.request(reqwest::Method::PUT, "/v1/agents/default/settings").json(&json!({"webhookUrl": url}));
    let (status, settings) = send(put).await;
    assert_eq!(status, 200, "{settings}");
    let bad =
        server.request(reqwest::Method::PUT, "/v1/agents/default/settings").json(&json!({"webhookUrl": "gopher://x"}));
    let (status, answer) = send(bad).await;
    assert_eq!((status, answer["field"].clone()), (400, json!("webhookUrl")));

    let request = server
        .request(reqwest::Method::POST, "/v1/agents/default/jobs")
        .header("X-User-Id", "u9")
        .json(&reminder_body(Utc::now(), "ping via webhook"));
    let (status, _) = send(request).await;
    assert_eq!(status, 201);
    let message = eventually(20, "the delivery to succeed", || async {
        let (_, answer) = server.get("/v1/agents/default/users/u9/messages").await;
        let message = answer["messages"].get(0).cloned()?;
        (message["delivery"] == "delivered").then_some(message)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let seen = received.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    assert_eq!(seen.len(), 2, "one failed attempt, then one delivery, and nothing after: {seen:?}");
    for (id, body) in &seen {
        assert_eq!(id, message["id"].as_str().unwrap_or_default());
        assert_eq!(body["message"], json!({"type": "text", "text": "ping via webhook"}));
        assert_eq!((body["userId"].clone(), body["agentId"].clone()), (json!("u9"), json!("default")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_from_jobs_reaches_only_allow_listed_public_hosts() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(directory.path(), "sk_test_fetch");
    let (receiver, received) = webhook_receiver(0).await;
    let port = receiver.rsplit(':').next().and_then(|rest| rest.split('/').next()).unwrap_or("80").to_owned();
    let settings = json!({"fetchAllowList": ["localhost", "127.0.0.1", "api.example.com"]});
    let (status, _) = send(server.request(reqwest::Method::PUT, "/v1/agents/default/settings").json(&settings)).await;
    assert_eq!(status, 200);
    let cases = [
        (format!("http://localhost:{port}/hook"), "fetch: localhost resolves to"),
        (
            format!("http://127.0.0.1:{port}/hook"),
            "fetch: 127.0.0.1 resolves to 127.0.0.1, which is not a public address",
        ),
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "fetch: host 169.254.169.254 is not on this agent's allow-list",
        ),
        (
            "https://not-listed.example.net/".to_owned(),
            "fetch: host not-listed.example.net is not on this agent's allow-list",
        ),
        ("file:///etc/passwd".to_owned(), "fetch: only http and https URLs are allowed"),
    ];
    for (url, expected) in cases {
        let code = format!("async () => {{ const response = await fetch({url:?}, {{ method: 'POST', body: '{{}}' }}); return response.status; }}");
        let body = json!({"name": "fetcher", "schedule": {"type": "interval", "seconds": 3600}, "activate": false, "code": code});
        let (_, job) = server.post("/v1/agents/default/jobs", body).await;
        let job_id = job["id"].as_str().expect("id").to_owned();
        let (_, execution) = server.post(&format!("/v1/agents/default/jobs/{job_id}/trigger"), json!({})).await;
        let id = execution["id"].as_str().expect("id").to_owned();
        let done = eventually(10, "the fetch run", || async {
            let (_, one) = server.get(&format!("/v1/agents/default/executions/{id}")).await;
            (one["status"] == "failed").then_some(one)
        })
        .await;
        let error = done["error"].as_str().unwrap_or_default();
        assert!(error.starts_with(&format!("Error: {expected}")), "{url}: {error}");
    }
    assert!(
        received.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).is_empty(),
        "a loopback fetch got through"
    );
}

const HEALTH_JOB: &str = r#"import { User } from 'lua-cli';

const PREFIX = 'health:';

async function check() {
  return 'ok';
}

export default {
  name: 'health-check',
  description: 'System health monitoring',
  schedule: { type: 'interval', seconds: 3600 },
  timeout: 5,
  metadata: { owner: 'ops' },
  execute: async (job) => {
    let noUser = '';
    try { await job.user(); } catch (error) { noUser = error.message; }
    const user = await User.get('u1');
    await user.send([{ type: 'text', text: PREFIX + (await check()) }]);
    return { noUser, owner: job.metadata.owner };
  },
};
"#;

const LUA_ARTIFACT: &str = r#"var n=Object.defineProperty;var e={};module.exports.default={__lua_primitive__:{version:"2.0.0",kind:"job",name:"nightly-report",description:"d",exportName:"default"},primitive:{name:"nightly-report",description:"d",schedule:{type:"cron",expression:"0 3 * * *",timezone:"Europe/London"},timeout:30,execute:async t=>({ok:!0,name:t.name})}};"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_creates_versions_only_on_change_and_runs_module_jobs() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(directory.path(), "sk_test_deploy");
    let project = tempfile::tempdir().expect("project");
    std::fs::create_dir_all(project.path().join("jobs")).expect("jobs folder");
    std::fs::write(project.path().join("jobs/health.mjs"), HEALTH_JOB).expect("write");
    std::fs::write(project.path().join("jobs/report.cjs"), LUA_ARTIFACT).expect("write");
    std::fs::create_dir_all(project.path().join("node_modules/x")).expect("node_modules");
    std::fs::write(project.path().join("node_modules/x/index.js"), "this is not a job").expect("write");
    let deploy = |args: &[&str]| {
        let output = std::process::Command::new(support::binary())
            .arg("deploy")
            .arg(project.path())
            .args(args)
            .arg("--json")
            .env("SUNDIAL_SERVER", &server.url)
            .env("SUNDIAL_API_KEY", &server.key)
            .output()
            .expect("run sundial deploy");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        (
            output.status.code(),
            serde_json::from_str::<Value>(&stdout).unwrap_or(Value::String(stdout)),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let actions = |answer: &Value| -> Vec<(String, String, String)> {
        answer["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|job| {
                (
                    job["name"].as_str().unwrap_or_default().to_owned(),
                    job["action"].as_str().unwrap_or_default().to_owned(),
                    job["version"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let (code, first, err) = deploy(&[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        actions(&first),
        [
            ("health-check".into(), "created".into(), "1.0.0".into()),
            ("nightly-report".into(), "created".into(), "1.0.0".into())
        ]
    );
    let (_, again, _) = deploy(&[]);
    assert_eq!(
        actions(&again),
        [
            ("health-check".into(), "unchanged".into(), "1.0.0".into()),
            ("nightly-report".into(), "unchanged".into(), "1.0.0".into())
        ]
    );

    std::fs::write(project.path().join("jobs/health.mjs"), HEALTH_JOB.replace("timeout: 5", "timeout: 7"))
        .expect("write");
    let (code, updated, err) = deploy(&["--activate"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(actions(&updated)[0], ("health-check".into(), "updated".into(), "1.0.1".into()));
    assert_eq!(actions(&updated)[1], ("nightly-report".into(), "unchanged".into(), "1.0.0".into()));
    let health_id = updated["jobs"][0]["jobId"].as_str().expect("id").to_owned();
    let (_, job) = server.get(&format!("/v1/agents/default/jobs/{health_id}")).await;
    assert_eq!(
        (job["active"].clone(), job["dynamic"].clone(), job["activeVersion"]["timeout"].clone()),
        (json!(true), json!(false), json!(7))
    );
    let report_id = updated["jobs"][1]["jobId"].as_str().expect("id").to_owned();
    let (_, report) = server.get(&format!("/v1/agents/default/jobs/{report_id}")).await;
    assert_eq!(report["schedule"], json!({"type": "cron", "expression": "0 3 * * *", "timezone": "Europe/London"}));

    // The module job runs with its module scope; job.user() throws the clear error; User.get works.
    for (job_id, expected) in [
        (&health_id, json!({"noUser": "job health-check has no user context; use User.get(userId)", "owner": "ops"})),
        (&report_id, json!({"ok": true, "name": "nightly-report"})),
    ] {
        let (_, execution) = server.post(&format!("/v1/agents/default/jobs/{job_id}/trigger"), json!({})).await;
        let id = execution["id"].as_str().expect("id").to_owned();
        let done = eventually(10, "the module job run", || async {
            let (_, one) = server.get(&format!("/v1/agents/default/executions/{id}")).await;
            matches!(one["status"].as_str(), Some("completed" | "failed")).then_some(one)
        })
        .await;
        assert_eq!(done["result"], expected, "{done}");
    }
    let (_, messages) = server.get("/v1/agents/default/users/u1/messages").await;
    assert_eq!(messages["messages"][0]["content"]["text"], "health:ok");

    // A broken file fails the whole deploy with its name, and changes nothing.
    std::fs::write(
        project.path().join("jobs/broken.mjs"),
        "export default { name: 'broken', execute: async () => 1 };",
    )
    .expect("write");
    let (code, _, err) = deploy(&["--activate"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("broken.mjs"), "{err}");
    let (_, listed) = server.get("/v1/agents/default/jobs").await;
    assert_eq!(listed["jobs"].as_array().map(Vec::len), Some(2), "a failed deploy created a job");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_clock_jumps_never_fire_a_slot_twice() {
    let start = utc("2030-01-01T00:00:00Z");
    let mut test = TestEngine::start(start).await;
    let job = test
        .create(
            json!({"name": "steady", "schedule": {"type": "interval", "seconds": 10}, "code": "async () => 1"}),
            None,
        )
        .await;
    for run in 1..=3 {
        test.advance(10.0).await;
        test.wait_final(&job.job.id, run).await;
    }
    // The clock steps back a minute, then runs forward over the slots that already fired.
    test.clock.advance(chrono::Duration::seconds(-60));
    test.engine.wake();
    tokio::time::sleep(Duration::from_millis(100)).await;
    test.advance(60.0).await;
    test.advance(10.0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let executions = test.executions(&job.job.id).await;
    let mut slots: Vec<_> = executions.iter().filter_map(|execution| execution.scheduled_for).collect();
    let count = slots.len();
    slots.dedup();
    assert_eq!(slots.len(), count, "a slot fired twice: {slots:?}");
    assert_eq!(slots[..3], [utc("2030-01-01T00:00:10Z"), utc("2030-01-01T00:00:20Z"), utc("2030-01-01T00:00:30Z")]);
    assert_eq!(slots.last(), Some(&utc("2030-01-01T00:00:40Z")), "the grid resumes where it was: {slots:?}");
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_object_in_a_job_has_lua_clis_methods() {
    let start = utc("2030-01-01T00:00:00Z");
    let mut test = TestEngine::start(start).await;
    let data = json!({"name": "Ada", "plan": "free", "visits": 1}).as_object().cloned().unwrap_or_default();
    test.store.user_put("a", "u1", &data, start).await.expect("user");
    let code = "async (job) => {
        const user = await job.user();
        const before = { data: user.data, profile: user._luaProfile, name: user.name };
        const patched = await user.patch({ set: { plan: 'pro' }, unset: ['visits'] });
        const unset = await patched.unset('plan');
        unset.city = 'Paris';
        const saved = await unset.save();
        const cleared = await (await User.get('u1')).clear();
        return { before, patched: patched.data, unset: unset.data, saved: saved.data, cleared: cleared.data };
    }";
    let body =
        json!({"name": "profile", "schedule": {"type": "interval", "seconds": 3600}, "activate": false, "code": code});
    let job = test.create(body, Some("u1")).await;
    test.engine.trigger(&TestEngine::caller(Some("u1")), &job.job.id, None).await.expect("trigger");
    let executions = test.wait_final(&job.job.id, 1).await;
    assert_eq!(executions[0].status, ExecutionStatus::Completed, "{:?}", executions[0].error);
    assert_eq!(
        executions[0].result,
        Some(json!({
            "before": {"data": {"name": "Ada", "plan": "free", "visits": 1},
                       "profile": {"userId": "u1", "fullName": "Ada", "mobileNumbers": [], "emailAddresses": []}, "name": "Ada"},
            "patched": {"name": "Ada", "plan": "pro"},
            "unset": {"name": "Ada", "city": "Paris"},
            "saved": {"name": "Ada", "city": "Paris"},
            "cleared": {},
        }))
    );
    test.stop().await;
}

/// lua-cli's `compressForPush`: gzip, then base64.
fn compress_for_push(source: &str) -> String {
    use base64::Engine as _;
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(source.as_bytes()).expect("gzip");
    base64::engine::general_purpose::STANDARD.encode(encoder.finish().expect("gzip"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_cli_job_code_that_is_not_a_function_gets_a_clear_400() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(directory.path(), "sk_test_lua_code");
    let body = |code: String| {
        json!({"dynamic": true, "name": "r", "schedule": {"type": "interval", "seconds": 60}, "activate": true,
               "version": {"version": "1.0.0", "code": code}})
    };
    let cases = [
        (compress_for_push("42"), "version.code: must be the source of a JavaScript function"),
        ("not base64 at all!".to_owned(), "version.code: must be base64 of gzipped JavaScript"),
        (compress_for_push("").chars().rev().collect::<String>(), "version.code: must be"),
    ];
    for (code, expected) in cases {
        let (status, answer) = server.post("/developer/jobs/default", body(code)).await;
        assert_eq!(status, 400, "{answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(expected), "{message:?} does not start with {expected:?}");
    }
    let (status, answer) = server.post("/developer/jobs/default", body(compress_for_push("async (job) => 1"))).await;
    assert_eq!((status, answer["success"].clone()), (201, json!(true)), "{answer}");
    assert_eq!(answer["data"]["activeVersion"]["version"], "1.0.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_downtime_is_counted_without_walking_every_slot_and_catches_up_the_newest() {
    let start = utc("2030-01-01T00:00:00Z");
    let mut test = TestEngine::start(start).await;
    let job = test
        .create(
            json!({"name": "every-second", "schedule": {"type": "interval", "seconds": 1}, "code": "async () => 1"}),
            None,
        )
        .await;
    // The first slot (00:00:01) lies within the lookahead, so it is recorded at once, before the downtime: wait for
    // it, so that what follows does not depend on how quickly the scheduler woke up.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while test.executions(&job.job.id).await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "the first slot was not recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Four hours without a scheduler: 14,400 slots, far more than are walked one by one.
    test.clock.advance(chrono::Duration::hours(4));
    test.engine.wake();
    test.wait_final(&job.job.id, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The recorded slot runs, late. Of the rest, slots older than five seconds are missed: 00:00:02 … 03:59:54.
    // run_once runs the newest of them; the slots from 03:59:55 on are merely late and run as usual.
    let executions = test.executions(&job.job.id).await;
    let mut slots: Vec<_> = executions.iter().filter_map(|execution| execution.scheduled_for).collect();
    slots.sort();
    assert_eq!(slots.first(), Some(&utc("2030-01-01T00:00:01Z")), "the slot recorded before the downtime did not run");
    assert_eq!(slots.get(1), Some(&utc("2030-01-01T03:59:54Z")), "the catch-up run is not the newest missed slot");
    let stored = test.engine.job(&TestEngine::caller(None), &job.job.id).await.expect("job");
    assert_eq!(stored.missed_slots, 14_392, "every missed slot but the one caught up is counted");
    test.stop().await;
}

/// docs/configuration.md lists every setting of `sundial serve --help` (flag, variable, config key, default) and
/// nothing else, and the real config-file parser takes every key it lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_reference_lists_every_setting() {
    let help = std::process::Command::new(support::binary()).args(["serve", "--help"]).output().expect("serve --help");
    let help = String::from_utf8_lossy(&help.stdout).replace('\n', " ");
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md"))
        .expect("docs/configuration.md");
    let rows: Vec<&str> = page.lines().filter(|line| line.starts_with("| `--")).collect();
    let mut flags = Vec::new();
    for part in help.split("      --").skip(1) {
        let flag = part.split_whitespace().next().unwrap_or_default().to_owned();
        if flag == "help" {
            continue;
        }
        let env = part.split("[env: ").nth(1).and_then(|rest| rest.split('=').next()).unwrap_or_default();
        let row = rows
            .iter()
            .find(|row| row.starts_with(&format!("| `--{flag}` ")))
            .unwrap_or_else(|| panic!("--{flag} is missing from docs/configuration.md"));
        assert!(row.contains(&format!("`{env}`")), "--{flag}: the page does not name {env}: {row}");
        if flag != "config" {
            assert!(row.contains(&format!("`{}`", flag.replace('-', "_"))), "--{flag}: no config key: {row}");
        }
        let default = part.split("Default: ").nth(1).map(|rest| rest.split([' ', '[']).next().unwrap_or_default());
        if let Some(default) = default.filter(|default| !default.is_empty()) {
            let default = default.trim_end_matches('.');
            assert!(row.contains(default), "--{flag}: the page does not give its default {default}: {row}");
        }
        flags.push(flag);
    }
    assert_eq!(rows.len(), flags.len(), "the page lists a setting serve does not have");

    // Every key the page lists is one the config file takes.
    let directory = tempfile::tempdir().expect("temporary directory");
    let config = directory.path().join("sundial.toml");
    let data = directory.path().join("data");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\nlisten = \"127.0.0.1:0\"\nworkers = 1\nmax_timeout = 300\nmemory_limit_mb = 32\n\
             min_interval = 1\nlog_format = \"json\"\nlease_seconds = 5\nmax_active_jobs = 10\n\
             max_creations_per_minute = 10\nshutdown_grace = 5\n"
        ),
    )
    .expect("write config");
    let keys = ["data_dir", "listen", "workers", "max_timeout", "memory_limit_mb", "min_interval", "log_format"];
    for key in keys.iter().chain(&["lease_seconds", "max_active_jobs", "max_creations_per_minute", "shutdown_grace"]) {
        assert!(rows.iter().any(|row| row.contains(&format!("`{key}`"))), "{key} is not on the page");
    }
    let mut server = std::process::Command::new(support::binary())
        .args(["serve", "--config"])
        .arg(&config)
        .env("SUNDIAL_API_KEY", "sk_test_config")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start sundial serve");
    let stdout = server.stdout.take().expect("stdout");
    let listening = std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .map_while(Result::ok)
        .any(|line| line.starts_with("sundial: listening on"));
    let _ = server.kill();
    let _ = server.wait();
    assert!(listening, "the server refused a config file with the keys the page lists");
}
