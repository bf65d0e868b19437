//! End-to-end tests of the sandbox: real worker processes started by a real pool, with a fake host that records calls.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde_json::{json, Value};
mod source;

use sundial_sandbox::{CodeKind, Host, Outcome, OutcomeStatus, Pool, PoolConfig, RunRequest, SandboxError, TestAction};

/// A stand-in for the server: answers host calls from a fixed script and records them in order.
#[derive(Default)]
struct FakeHost {
    calls: Mutex<Vec<(String, Value)>>,
}

impl FakeHost {
    fn calls(&self) -> Vec<(String, Value)> {
        self.calls.lock().unwrap().clone()
    }
}

impl Host for FakeHost {
    fn call(&self, method: String, args: Value) -> BoxFuture<'static, Result<Value, String>> {
        self.calls.lock().unwrap().push((method.clone(), args.clone()));
        Box::pin(async move {
            match method.as_str() {
                "job.user" => Ok(json!({ "userId": "user_1", "name": "Ann" })),
                "user.send" => Ok(json!(true)),
                "user.update" => Ok(json!({ "userId": args["userId"], "plan": args["data"]["plan"] })),
                "User.get" => Ok(json!({ "userId": args["userId"], "name": "Bob" })),
                "job.updateMetadata" => {
                    let mut metadata = json!({ "message": "Team meeting in 10 minutes" });
                    if let (Some(target), Some(patch)) = (metadata.as_object_mut(), args["patch"].as_object()) {
                        target.extend(patch.clone());
                    }
                    Ok(json!({ "metadata": metadata }))
                }
                "Jobs.create" => Ok(json!({
                    "id": "job_2",
                    "name": args["config"]["name"],
                    "metadata": args["config"]["metadata"],
                    "activeVersion": null,
                    "active": true,
                })),
                "job.deactivate" => Ok(json!({ "id": args["jobId"], "name": "reminder", "active": false })),
                "job.data" => Ok(json!({ "id": args["jobId"], "name": "reminder", "active": true, "versions": [] })),
                "fetch" => Ok(json!({
                    "url": args["args"][0],
                    "status": 201,
                    "statusText": "Created",
                    "headers": [["content-type", "application/json"], ["set-cookie", "a=1"], ["set-cookie", "b=2"]],
                    "body": "{\"echo\":true}",
                    "redirected": false,
                })),
                "Data.search" => Ok(json!([{ "id": "t1", "data": { "status": "open" }, "score": 0.9 }])),
                "Products.get" => Ok(json!({ "data": [{ "price": 2 }, { "price": 3.5 }], "total": 2 })),
                "Data.get" => {
                    if args["args"][0] == "boom" {
                        return Err("collection boom is unavailable".to_owned());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(Value::Null)
                }
                _ => Ok(Value::Null),
            }
        })
    }
}

fn config(workers: usize) -> PoolConfig {
    let mut config = PoolConfig::new(env!("CARGO_BIN_EXE_sundial-sandbox-worker").into(), Vec::new());
    config.workers = workers;
    config
}

async fn pool(workers: usize) -> Pool {
    Pool::start(config(workers)).await.expect("the pool starts")
}

/// The job object of the seed's reminder, as the scheduler would pass it.
fn job() -> Value {
    json!({
        "id": "job_1",
        "name": "reminder",
        "metadata": { "message": "Team meeting in 10 minutes" },
        "activeVersion": { "id": "ver_1", "version": "1.0.0", "schedule": { "type": "once" } },
        "data": { "id": "job_1", "name": "reminder", "active": true },
        "userId": "user_1",
        "execution": {
            "id": "exe_1",
            "occurrenceId": "occ_1",
            "scheduledFor": "2025-01-01T00:00:00Z",
            "retryCount": 0,
            "trigger": "schedule",
        },
    })
}

fn request(code: &str) -> RunRequest {
    RunRequest {
        code: code.to_owned(),
        job: job().to_string(),
        env: [("API_BASE".to_owned(), "https://example.test".to_owned())].into(),
        timeout: Duration::from_secs(5),
        kind: CodeKind::Function,
        start_at: None,
    }
}

/// A run of a whole job file.
fn module_request(code: &str) -> RunRequest {
    RunRequest { kind: CodeKind::Module, ..request(code) }
}

async fn run_module(pool: &Pool, host: &Arc<FakeHost>, code: &str) -> Outcome {
    pool.run(module_request(code), host.clone()).await
}

async fn describe(pool: &Pool, code: &str) -> Result<Value, String> {
    pool.describe(code.to_owned(), CodeKind::Module, Duration::from_secs(5)).await
}

async fn run(pool: &Pool, code: &str) -> Outcome {
    pool.run(request(code), Arc::new(FakeHost::default())).await
}

async fn run_with(pool: &Pool, host: &Arc<FakeHost>, code: &str) -> Outcome {
    pool.run(request(code), host.clone()).await
}

fn first_line(outcome: &Outcome) -> &str {
    outcome.error.as_deref().unwrap_or("").lines().next().unwrap_or("")
}

#[track_caller]
fn assert_completed(outcome: &Outcome, expected: Value) {
    assert_eq!(outcome.status, OutcomeStatus::Completed, "error: {:?}", outcome.error);
    assert_eq!(outcome.result, Some(expected));
}

#[tokio::test]
async fn the_three_function_forms_run() {
    let pool = pool(2).await;
    let forms = [
        "async (job) => job.id",
        "async job=>(job.id)",
        "(job) => { return job.id; }",
        "async function (job) { return job.id; }",
        "function execute(job) { return job.id }",
        "execute(job) { return job.id; }",
        "async execute(job) {\n  return job.id;\n}",
        "  async (job) => job.id  // trailing comment\n",
        "async (job) => job.id;",
        // As people paste it: comments before and after, a directive, semicolons.
        "// note\nasync (job) => job.id",
        "/*! license: MIT */\n/* another */ async function execute(job) { return job.id }; // after\n",
        "\"use strict\";\nasync (job) => job.id;;",
        "'use strict'\n// why\nasync execute(job) { return job.id }",
    ];
    for code in forms {
        let outcome = run(&pool, code).await;
        assert_completed(&outcome, json!("job_1"));
    }
}

#[tokio::test]
async fn a_use_strict_directive_before_the_function_makes_it_strict() {
    let pool = pool(1).await;
    let strict = run(&pool, "\"use strict\";\n(job) => (function () { return this === undefined; })()").await;
    assert_completed(&strict, json!(true));
    let sloppy = run(&pool, "(job) => (function () { return this === undefined; })()").await;
    assert_completed(&sloppy, json!(false));
}

/// The names job code may use without declaring them (`source::SANDBOX_GLOBALS`, by which job code is checked when a
/// job is created) are the sandbox's real globals: every one exists in a run, and every global of a run is listed.
#[tokio::test]
async fn the_globals_the_creation_check_knows_are_the_sandboxs() {
    let pool = pool(1).await;
    let outcome = run(&pool, "async () => Object.getOwnPropertyNames(globalThis)").await;
    let Some(Value::Array(names)) = outcome.result.clone() else { panic!("no list of globals: {outcome:?}") };
    let real: std::collections::BTreeSet<String> =
        names.iter().filter_map(|name| name.as_str()).map(str::to_owned).collect();
    let known: std::collections::BTreeSet<String> =
        sundial_sandbox::source::SANDBOX_GLOBALS.iter().map(|name| (*name).to_owned()).collect();
    let unknown: Vec<&String> = real.difference(&known).collect();
    let missing: Vec<&String> = known.difference(&real).collect();
    assert!(unknown.is_empty(), "globals of the sandbox the creation check would refuse: {unknown:?}");
    assert!(missing.is_empty(), "names the creation check accepts that a run lacks: {missing:?}");
}

#[tokio::test]
async fn the_seed_reminder_sends_its_message_to_the_user() {
    let pool = pool(1).await;
    let host = Arc::new(FakeHost::default());
    let code = "async (jobInstance) => { const user = await jobInstance.user(); \
                await user.send([{type:'text', text: jobInstance.metadata.message}]); return {success:true}; }";
    let outcome = run_with(&pool, &host, code).await;
    assert_completed(&outcome, json!({ "success": true }));
    assert_eq!(
        host.calls(),
        vec![
            ("job.user".to_owned(), json!({ "jobId": "job_1" })),
            (
                "user.send".to_owned(),
                json!({ "userId": "user_1", "messages": [{ "type": "text", "text": "Team meeting in 10 minutes" }] })
            ),
        ]
    );
}

#[tokio::test]
async fn the_job_object_carries_its_fields() {
    let pool = pool(1).await;
    let outcome = run(
        &pool,
        "async (job) => ({ id: job.id, name: job.name, metadata: job.metadata, version: job.activeVersion.version, \
         active: job.data.active, execution: job.execution })",
    )
    .await;
    assert_completed(
        &outcome,
        json!({
            "id": "job_1",
            "name": "reminder",
            "metadata": { "message": "Team meeting in 10 minutes" },
            "version": "1.0.0",
            "active": true,
            "execution": job()["execution"],
        }),
    );
}

#[tokio::test]
async fn a_free_variable_fails_with_the_seeds_reference_error() {
    let pool = pool(1).await;
    let outcome = run(&pool, "async (job) => { const user = await job.user(); await user.send(userMessage); }").await;
    assert_eq!(outcome.status, OutcomeStatus::Failed);
    assert_eq!(first_line(&outcome), "ReferenceError: userMessage is not defined");
}

#[tokio::test]
async fn thrown_errors_and_rejections_fail_the_run() {
    let pool = pool(1).await;
    let cases = [
        ("() => { throw new Error('boom') }", "Error: boom"),
        ("async () => { throw new TypeError('bad input') }", "TypeError: bad input"),
        ("() => Promise.reject(new RangeError('too far'))", "RangeError: too far"),
        ("async () => { await null; throw 'plain string' }", "plain string"),
        ("async () => { throw { code: 42 } }", "{\"code\":42}"),
    ];
    for (code, expected) in cases {
        let outcome = run(&pool, code).await;
        assert_eq!(outcome.status, OutcomeStatus::Failed, "{code}");
        assert_eq!(first_line(&outcome), expected, "{code}");
    }
}

#[tokio::test]
async fn code_that_is_not_a_function_fails_clearly() {
    let pool = pool(1).await;
    for code in ["42", "console.log(1)", "async (job => {", ""] {
        let outcome = run(&pool, code).await;
        assert_eq!(outcome.status, OutcomeStatus::Failed, "{code}");
        let error = outcome.error.unwrap_or_default();
        assert!(error.starts_with("code must be a JavaScript function: "), "{code}: {error}");
    }
}

#[tokio::test]
async fn an_endless_loop_times_out_and_keeps_its_logs() {
    let pool = pool(1).await;
    let mut request = request("() => { console.log('about to spin'); while (true) {} }");
    request.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let outcome = pool.run(request, Arc::new(FakeHost::default())).await;
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert_eq!(outcome.status, OutcomeStatus::Timeout);
    assert_eq!(outcome.error.as_deref(), Some("execution timed out after 1s"));
    assert_eq!(outcome.logs.len(), 1);
    assert_eq!(outcome.logs[0].message, "about to spin");
    assert_completed(&run(&pool, "() => 'still here'").await, json!("still here"));
}

#[tokio::test]
async fn a_native_call_that_ignores_the_deadline_is_killed_by_the_pool() {
    let pool = pool(1).await;
    let mut request =
        request("() => { console.log('joining'); const a = []; a.length = 2**32 - 1; return a.join(','); }");
    request.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let outcome = pool.run(request, Arc::new(FakeHost::default())).await;
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert_eq!(outcome.status, OutcomeStatus::Timeout);
    assert_eq!(outcome.error.as_deref(), Some("execution timed out after 1s"));
    assert_eq!(outcome.logs.first().map(|line| line.message.as_str()), Some("joining"));

    assert_completed(&run(&pool, "async () => 1 + 1").await, json!(2));
    assert!(pool.stats().restarts >= 1);
}

#[tokio::test]
async fn a_promise_that_never_settles_times_out() {
    let pool = pool(1).await;
    let mut request = request("async () => { await new Promise(() => {}); }");
    request.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let outcome = pool.run(request, Arc::new(FakeHost::default())).await;
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert_eq!(outcome.status, OutcomeStatus::Timeout);
}

#[tokio::test]
async fn an_allocation_bomb_is_killed() {
    let pool = pool(1).await;
    let outcome = run(&pool, "() => { const a = []; while (true) a.push('x'.repeat(1024) + Math.random()); }").await;
    assert_eq!(outcome.status, OutcomeStatus::Killed, "error: {:?}", outcome.error);
    assert_eq!(outcome.error.as_deref(), Some("memory limit of 64 MiB exceeded"));
    assert_completed(&run(&pool, "() => 'fresh worker'").await, json!("fresh worker"));
}

#[tokio::test]
async fn an_allocation_bomb_that_catches_out_of_memory_is_still_killed() {
    let pool = pool(1).await;
    let code = "() => { let a = []; \
                try { while (true) a.push('x'.repeat(1024) + Math.random()); } catch (e) { a = null; } \
                return { survived: true }; }";
    let outcome = run(&pool, code).await;
    assert_eq!(outcome.status, OutcomeStatus::Killed, "result: {:?}", outcome.result);
    assert_eq!(outcome.result, None);
}

#[tokio::test]
async fn a_crashed_worker_fails_its_run_and_is_replaced() {
    let pool = pool(2).await;
    let before = pool.stats().restarts;
    let outcome = pool.run_test_action(TestAction::Abort).await;
    assert_eq!(outcome.status, OutcomeStatus::Failed);
    assert_eq!(outcome.error.as_deref(), Some("sandbox worker crashed (signal 6)"));

    for _ in 0..4 {
        assert_completed(&run(&pool, "() => 'ok'").await, json!("ok"));
    }
    assert_eq!(pool.stats().restarts, before + 1);
}

#[tokio::test]
async fn the_seccomp_filter_is_active_and_refuses_files() {
    let pool = pool(1).await;
    let kernel_has_seccomp = std::fs::read_to_string("/proc/self/status")
        .map(|status| status.lines().any(|line| line.starts_with("Seccomp:")))
        .unwrap_or(false);
    if !kernel_has_seccomp {
        assert!(!pool.stats().seccomp);
        return;
    }
    assert!(pool.stats().seccomp, "the worker should run under its seccomp filter");
    let outcome = pool.run_test_action(TestAction::OpenFile { path: "/proc/self/status".into() }).await;
    assert_eq!(outcome.status, OutcomeStatus::Completed, "error: {:?}", outcome.error);
    let result = outcome.result.unwrap_or_default();
    assert_eq!(result["opened"], json!(false));
    assert!(result["error"].as_str().unwrap_or("").contains("Operation not permitted"), "{result}");
    // Jobs still run under the filter, timers and host calls included.
    let host = Arc::new(FakeHost::default());
    let outcome = run_with(
        &pool,
        &host,
        "async (job) => { await new Promise(r => setTimeout(r, 10)); \
                                          return (await job.user()).name; }",
    )
    .await;
    assert_completed(&outcome, json!("Ann"));
}

#[tokio::test]
async fn console_output_is_captured_and_bounded() {
    let pool = pool(1).await;
    let outcome = run(
        &pool,
        "() => { console.log('plain', 1, {a: [1, 'x']}, null, undefined); console.info('info'); \
         console.warn('warn'); console.error(new Error('shown')); console.debug('%s=%d', 'n', 5); }",
    )
    .await;
    assert_eq!(outcome.status, OutcomeStatus::Completed, "error: {:?}", outcome.error);
    let lines: Vec<(&str, &str)> =
        outcome.logs.iter().map(|line| (line.level.as_str(), line.message.lines().next().unwrap_or(""))).collect();
    assert_eq!(
        lines,
        vec![
            ("log", "plain 1 { a: [ 1, 'x' ] } null undefined"),
            ("info", "info"),
            ("warn", "warn"),
            ("error", "Error: shown"),
            ("log", "n=5"),
        ]
    );
    assert!(outcome.logs.iter().all(|line| line.at > 1_600_000_000_000));

    let outcome = run(&pool, "() => { for (let i = 0; i < 1005; i++) console.log('line', i); return 'done'; }").await;
    assert_completed(&outcome, json!("done"));
    assert_eq!(outcome.logs.len(), 1001);
    assert_eq!(outcome.logs[999].message, "line 999");
    assert_eq!(outcome.logs[1000].message, "… 5 more log lines dropped (limit 1000 lines)");

    let outcome = run(&pool, "() => { console.log('é'.repeat(10000)); }").await;
    let message = &outcome.logs[0].message;
    assert!(message.len() < 8 * 1024 + 64, "{} bytes", message.len());
    assert!(message.ends_with("more bytes]"), "{}", &message[message.len() - 40..]);
}

#[tokio::test]
async fn a_result_over_the_cap_fails() {
    let pool = pool(1).await;
    let outcome = run(&pool, "() => 'x'.repeat(1024 * 1024)").await;
    assert_eq!(outcome.status, OutcomeStatus::Failed);
    assert_eq!(outcome.error.as_deref(), Some("result exceeds 1048576 bytes"));
    let outcome = run(&pool, "() => 'é'.repeat(600 * 1024)").await;
    assert_eq!(outcome.error.as_deref(), Some("result exceeds 1048576 bytes"));
    let outcome = run(&pool, "() => 'x'.repeat(1000)").await;
    assert_completed(&outcome, json!("x".repeat(1000)));
}

#[tokio::test]
async fn results_are_json() {
    let pool = pool(1).await;
    assert_completed(
        &run(&pool, "() => ({ when: new Date(0), n: NaN, lone: '\\ud800', nested: [1, { ok: true }] })").await,
        json!({ "when": "1970-01-01T00:00:00.000Z", "n": null, "lone": "\u{fffd}", "nested": [1, { "ok": true }] }),
    );
    let outcome = run(&pool, "() => 10n").await;
    assert_eq!(outcome.status, OutcomeStatus::Failed);
    assert!(first_line(&outcome).starts_with("result is not serializable: TypeError"), "{:?}", outcome.error);
    let outcome = run(&pool, "() => undefined").await;
    assert_eq!((outcome.status, outcome.result), (OutcomeStatus::Completed, None));
}

#[tokio::test]
async fn every_run_gets_a_fresh_context() {
    let pool = pool(1).await;
    let first = run(&pool, "() => { globalThis.leak = 'secret'; Object.prototype.polluted = 1; return typeof leak; }");
    assert_completed(&first.await, json!("string"));
    let second = run(&pool, "() => [typeof leak, typeof ({}).polluted]").await;
    assert_completed(&second, json!(["undefined", "undefined"]));
}

#[tokio::test]
async fn work_left_behind_by_a_run_does_not_harm_the_worker() {
    let pool = pool(1).await;
    let code = "async (job) => { setTimeout(() => {}, 60000); setInterval(() => {}, 1); job.user(); Data.get('slow'); \
                new Promise(() => {}); Promise.reject(new Error('unhandled')); \
                globalThis.cycle = {}; cycle.self = cycle; return 'left'; }";
    assert_completed(&run(&pool, code).await, json!("left"));
    assert_completed(&run(&pool, "() => typeof cycle").await, json!("undefined"));
    assert_eq!(pool.stats().restarts, 0);
}

#[tokio::test]
async fn nothing_of_an_earlier_run_acts_in_a_later_one() {
    // One worker, one kept runtime: a timer, a host call and a finalizer left behind by a run must neither log nor
    // call the host on behalf of the next run.
    let pool = pool(1).await;
    let first_host = Arc::new(FakeHost::default());
    let code = "async (job) => { setTimeout(() => { console.log('late'); job.updateMetadata({ late: true }); }, 30); \
                new FinalizationRegistry(() => { console.log('finalized'); job.delete(); }).register({}, 1); \
                return 'first'; }";
    assert_completed(&run_with(&pool, &first_host, code).await, json!("first"));
    let second_host = Arc::new(FakeHost::default());
    let code = "async () => { await new Promise((resolve) => setTimeout(resolve, 120)); return 'second'; }";
    let second = run_with(&pool, &second_host, code).await;
    assert_completed(&second, json!("second"));
    assert!(second.logs.is_empty(), "{:?}", second.logs);
    assert!(second_host.calls().is_empty(), "{:?}", second_host.calls());
    assert_eq!(pool.stats().restarts, 0);
}

#[tokio::test]
async fn a_run_handed_over_early_starts_on_its_instant() {
    let pool = pool(1).await;
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let start_at = Instant::now() + Duration::from_millis(80);
    let early = RunRequest { start_at: Some(start_at), ..request("() => Date.now()") };
    let outcome = pool.run(early, Arc::new(FakeHost::default())).await;
    assert_eq!(outcome.status, OutcomeStatus::Completed, "{:?}", outcome.error);
    let started: i64 = serde_json::from_value(outcome.result.clone().unwrap()).unwrap();
    assert!(started >= before + 79, "the code started {} ms after the request, before its instant", started - before);
    assert!(Instant::now() >= start_at);
    // The time limit and the duration count from the instant, not from the hand-over.
    let waiting = RunRequest {
        start_at: Some(Instant::now() + Duration::from_millis(300)),
        timeout: Duration::from_millis(200),
        ..request("() => 'in time'")
    };
    assert_completed(&pool.run(waiting, Arc::new(FakeHost::default())).await, json!("in time"));
}

#[tokio::test]
async fn library_globals_load_on_first_use_and_can_be_replaced() {
    let pool = pool(1).await;
    let code = "async () => { const before = typeof URL; URL = 5; const replaced = URL; \
                const lua = await import('lua-cli'); \
                return [before, replaced, typeof fetch, typeof TextEncoder, typeof lua.LuaJob, \
                        Object.keys(globalThis).includes('console')]; }";
    assert_completed(&run(&pool, code).await, json!(["function", 5, "function", "function", "function", false]));
    let code = "() => { globalThis.console = { log: () => 'mine' }; return [console.log(), typeof URLSearchParams]; }";
    assert_completed(&run(&pool, code).await, json!(["mine", "function"]));
    // A function job that never touches the library can still import the built-in module.
    let code = "async () => { const { defineJob } = await import('sundial'); return typeof defineJob; }";
    assert_completed(&run(&pool, code).await, json!("function"));
}

#[tokio::test]
async fn job_code_cannot_run_the_prelude_again() {
    let pool = pool(1).await;
    let code = "async () => { const prelude = await import('sundial:prelude'); \
                try { prelude.default({}, '() => 1', '{}', '{}', {}); return 'ran'; } catch (e) { return e.message; } }";
    assert_completed(&run(&pool, code).await, json!("the sandbox prelude has already run"));
}

#[tokio::test]
async fn a_cancelled_run_replaces_its_worker() {
    let pool = pool(1).await;
    let cancelled = tokio::time::timeout(Duration::from_millis(300), run(&pool, "() => { while (true) {} }")).await;
    assert!(cancelled.is_err());
    assert_completed(&run(&pool, "() => 'next'").await, json!("next"));
    assert_eq!(pool.stats().restarts, 1);
    assert_eq!(pool.stats().busy, 0);
}

#[tokio::test]
async fn env_reads_the_agents_variables_only() {
    let pool = pool(1).await;
    let outcome = run(&pool, "() => [env('API_BASE'), env('PATH'), env('HOME'), typeof process]").await;
    assert_completed(&outcome, json!(["https://example.test", null, null, "undefined"]));
}

#[tokio::test]
async fn update_metadata_updates_the_job_object() {
    let pool = pool(1).await;
    let host = Arc::new(FakeHost::default());
    let outcome = run_with(
        &pool,
        &host,
        "async (job) => { await job.updateMetadata({ runCount: (job.metadata.runCount || 0) + 1 }); \
         return job.metadata; }",
    )
    .await;
    assert_completed(&outcome, json!({ "message": "Team meeting in 10 minutes", "runCount": 1 }));
    assert_eq!(
        host.calls(),
        vec![("job.updateMetadata".to_owned(), json!({ "jobId": "job_1", "patch": { "runCount": 1 } }))]
    );
}

#[tokio::test]
async fn jobs_create_sends_the_function_source() {
    let pool = pool(1).await;
    let host = Arc::new(FakeHost::default());
    let code = "async () => { const created = await Jobs.create({ name: 'follow-up', metadata: { n: 1 }, \
                schedule: { type: 'once', executeAt: new Date(0) }, \
                execute: async (jobInstance) => { return jobInstance.metadata.n; } }); \
                const stopped = await created.deactivate(); \
                return { id: created.id, name: created.name, same: stopped === created, active: created.data.active }; }";
    let outcome = run_with(&pool, &host, code).await;
    assert_completed(&outcome, json!({ "id": "job_2", "name": "follow-up", "same": true, "active": false }));
    let calls = host.calls();
    assert_eq!(calls[0].0, "Jobs.create");
    assert_eq!(
        calls[0].1,
        json!({
            "config": { "name": "follow-up", "metadata": { "n": 1 },
                        "schedule": { "type": "once", "executeAt": "1970-01-01T00:00:00.000Z" } },
            "code": "async (jobInstance) => { return jobInstance.metadata.n; }",
        })
    );
    assert_eq!(calls[1], ("job.deactivate".to_owned(), json!({ "jobId": "job_2" })));

    let outcome = run(&pool, "() => Jobs.create({ name: 'x' })").await;
    assert_eq!(first_line(&outcome), "TypeError: Jobs.create: config.execute must be a function");
}

#[tokio::test]
async fn host_calls_cover_users_data_and_fetch() {
    let pool = pool(1).await;
    let host = Arc::new(FakeHost::default());
    let code =
        "async () => { const bob = await User.get('user_9'); const upgraded = await bob.update({ plan: 'pro' }); \
                await Data.create('tickets', { open: true }, 'search text'); await fetch('https://example.test/x'); \
                await Products.search('shoes', undefined); return [bob.name, upgraded.plan, typeof upgraded.send]; }";
    let outcome = run_with(&pool, &host, code).await;
    assert_completed(&outcome, json!(["Bob", "pro", "function"]));
    assert_eq!(
        host.calls(),
        vec![
            ("User.get".to_owned(), json!({ "userId": "user_9" })),
            ("user.update".to_owned(), json!({ "userId": "user_9", "data": { "plan": "pro" } })),
            ("Data.create".to_owned(), json!({ "args": ["tickets", { "open": true }, "search text"] })),
            ("fetch".to_owned(), json!({ "args": ["https://example.test/x"] })),
            ("Products.search".to_owned(), json!({ "args": ["shoes"] })),
        ]
    );
}

#[tokio::test]
async fn list_answers_work_in_the_seeds_and_lua_clis_shapes() {
    let pool = pool(1).await;
    let code = "async () => { const tickets = await Data.search('tickets', 'T-1', 1); \
                const products = await Products.get(1, 100); \
                return { seed: tickets.data[0].data.status, cli: tickets[0].id, n: tickets.data.length, \
                         total: products.reduce((sum, p) => sum + (p.price || 0), 0), count: products.length, \
                         pages: products.total, json: JSON.stringify(tickets).startsWith('[') }; }";
    assert_completed(
        &run(&pool, code).await,
        json!({ "seed": "open", "cli": "t1", "n": 1, "total": 5.5, "count": 2, "pages": 2, "json": true }),
    );
}

#[tokio::test]
async fn host_call_arguments_ignore_a_polluted_json() {
    let pool = pool(1).await;
    let host = Arc::new(FakeHost::default());
    let code = "async () => { Object.prototype.toJSON = () => ({ userId: 'victim' }); \
                JSON.stringify = () => '{\"userId\":\"victim\"}'; \
                Array.prototype.toJSON = () => 'evil'; \
                return (await User.get('user_2')).userId; }";
    let outcome = run_with(&pool, &host, code).await;
    assert_completed(&outcome, json!("user_2"));
    assert_eq!(host.calls(), vec![("User.get".to_owned(), json!({ "userId": "user_2" }))]);
}

#[tokio::test]
async fn a_host_error_rejects_with_an_error() {
    let pool = pool(1).await;
    let outcome = run(
        &pool,
        "async () => { try { await Data.get('boom'); } catch (e) { return [e instanceof Error, e.message]; } }",
    )
    .await;
    assert_completed(&outcome, json!([true, "collection boom is unavailable"]));
    let outcome = run(&pool, "async () => { await Data.get('boom'); }").await;
    assert_eq!(first_line(&outcome), "Error: collection boom is unavailable");
}

#[tokio::test]
async fn host_calls_in_flight_are_capped() {
    let pool = pool(1).await;
    let code = "async () => { const calls = []; \
                for (let i = 0; i < 65; i++) calls.push(Data.get('slow').then(() => 'ok', (e) => e.message)); \
                const results = await Promise.all(calls); \
                return [results.filter((r) => r === 'ok').length, results.find((r) => r !== 'ok')]; }";
    let outcome = run(&pool, code).await;
    assert_eq!(outcome.status, OutcomeStatus::Completed, "error: {:?}", outcome.error);
    let result = outcome.result.unwrap_or_default();
    assert_eq!(result[0], json!(64));
    assert!(result[1].as_str().unwrap_or("").contains("too many host calls in flight (limit 64)"), "{result}");
}

#[tokio::test]
async fn timers_run_in_the_event_loop() {
    let pool = pool(1).await;
    let code = "async () => { const order = []; \
                await new Promise((resolve) => setTimeout(resolve, 50)); \
                const cancelled = setTimeout(() => order.push('cancelled'), 10); clearTimeout(cancelled); \
                let ticks = 0; const id = setInterval(() => { ticks++; if (ticks === 3) clearInterval(id); }, 5); \
                queueMicrotask(() => order.push('microtask')); \
                await new Promise((resolve) => setTimeout(resolve, 100)); \
                setTimeout(() => { throw new Error('in a timer'); }, 0); \
                await new Promise((resolve) => setTimeout(resolve, 20)); \
                return { order, ticks }; }";
    let outcome = run(&pool, code).await;
    assert_completed(&outcome, json!({ "order": ["microtask"], "ticks": 3 }));
    assert_eq!(outcome.logs.len(), 1);
    assert_eq!(
        (outcome.logs[0].level.as_str(), first_line_of(&outcome.logs[0].message)),
        ("error", "Uncaught Error: in a timer")
    );
}

fn first_line_of(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

#[tokio::test]
async fn performance_now_is_coarsened_to_milliseconds() {
    let pool = pool(1).await;
    let code = "() => { const samples = []; for (let i = 0; i < 2000; i++) samples.push(performance.now()); \
                return samples.every(Number.isInteger) && samples.every((s, i) => i === 0 || s >= samples[i - 1]); }";
    assert_completed(&run(&pool, code).await, json!(true));
}

#[tokio::test]
async fn browser_globals_behave() {
    let pool = pool(1).await;
    let code = r#"() => {
        const plain = new URL('../b/c?x=1 2&y=%41#frag', 'https://User:pw@Example.COM:443/a/d/e').href;
        const url = new URL(plain);
        url.searchParams.append('z', 'a&b');
        const bytes = new TextEncoder().encode('hé€😀');
        return {
            plain,
            href: url.href,
            parts: [url.protocol, url.host, url.pathname, url.search, url.hash, url.origin, url.searchParams.get('y')],
            relative: new URL('/root', 'http://a.test:8080/x/y').href,
            params: new URLSearchParams({ q: 'a b', n: '1' }).toString(),
            bytes: Array.from(bytes),
            text: new TextDecoder().decode(bytes),
            base64: [btoa('hello'), atob('aGVsbG8=')],
            uuid: /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(crypto.randomUUID()),
            random: crypto.getRandomValues(new Uint32Array(4)).length,
            clone: structuredClone({ a: [1, { b: 2 }] }),
            invalid: URL.canParse('not a url'),
        };
    }"#;
    assert_completed(
        &run(&pool, code).await,
        json!({
            "plain": "https://User:pw@example.com/a/b/c?x=1%202&y=%41#frag",
            // Changing `searchParams` re-serializes the query as a form, as in browsers.
            "href": "https://User:pw@example.com/a/b/c?x=1+2&y=A&z=a%26b#frag",
            "parts": ["https:", "example.com", "/a/b/c", "?x=1+2&y=A&z=a%26b", "#frag", "https://example.com", "A"],
            "relative": "http://a.test:8080/root",
            "params": "q=a+b&n=1",
            "bytes": [104, 195, 169, 226, 130, 172, 240, 159, 152, 128],
            "text": "hé€😀",
            "base64": ["aGVsbG8=", "hello"],
            "uuid": true,
            "random": 4,
            "clone": { "a": [1, { "b": 2 }] },
            "invalid": false,
        }),
    );
}

#[tokio::test]
async fn parallel_runs_share_the_pool() {
    let pool = pool(4).await;
    let host: Arc<dyn Host> = Arc::new(FakeHost::default());
    let runs = (0..8).map(|i| {
        let pool = pool.clone();
        let host = host.clone();
        tokio::spawn(async move {
            let code = format!("async () => {{ await new Promise(r => setTimeout(r, 100)); return {i}; }}");
            pool.run(request(&code), host).await
        })
    });
    let outcomes = futures_util::future::join_all(runs).await;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let outcome = outcome.expect("the task finishes");
        assert_completed(&outcome, json!(i));
    }
    let stats = pool.stats();
    assert_eq!((stats.workers, stats.restarts), (4, 0));
}

/// One CPU slot for four workers: runs that wait on timers, on the host, or that compute for long still run side by
/// side — each holds the slot a moment at most — and every one of them started before the first one ended.
#[tokio::test]
async fn a_cpu_slot_is_not_held_by_runs_that_wait_or_compute_for_long() {
    let mut config = config(4);
    config.cpu_slots = 1;
    let pool = Pool::start(config).await.expect("the pool starts");
    let host: Arc<dyn Host> = Arc::new(FakeHost::default());
    let waits = [
        "await new Promise(r => setTimeout(r, 400));",
        "await Data.get('notes', 'a'); await new Promise(r => setTimeout(r, 400));",
        "while (Date.now() - started < 400) {}",
        "while (Date.now() - started < 400) {}",
    ];
    let runs = waits.iter().map(|wait| {
        let (pool, host) = (pool.clone(), host.clone());
        let code = format!("async () => {{ const started = Date.now(); {wait} return [started, Date.now()]; }}");
        tokio::spawn(async move { pool.run(request(&code), host).await })
    });
    let mut spans = Vec::new();
    for outcome in futures_util::future::join_all(runs).await {
        let outcome = outcome.expect("the task finishes");
        assert_eq!(outcome.status, OutcomeStatus::Completed, "error: {:?}", outcome.error);
        let span: (u64, u64) = serde_json::from_value(outcome.result.expect("a result")).expect("two instants");
        spans.push(span);
    }
    let last_start = spans.iter().map(|span| span.0).max();
    let first_end = spans.iter().map(|span| span.1).min();
    assert!(last_start < first_end, "the runs did not overlap: {spans:?}");
    // And the slot is free again: a run after them needs no wait for it.
    assert_completed(&run(&pool, "() => 'after'").await, json!("after"));
}

#[tokio::test]
async fn waiting_for_a_free_worker_does_not_count_against_the_timeout() {
    let pool = pool(1).await;
    let host: Arc<dyn Host> = Arc::new(FakeHost::default());
    let runs = (0..3).map(|_| {
        let mut request = request("async () => { await new Promise(r => setTimeout(r, 1000)); return 'slept'; }");
        request.timeout = Duration::from_secs(2);
        pool.run(request, host.clone())
    });
    for outcome in futures_util::future::join_all(runs).await {
        assert_completed(&outcome, json!("slept"));
    }
}

#[tokio::test]
async fn a_missing_worker_program_is_a_start_error() {
    let config = PoolConfig::new("/nonexistent/sundial-sandbox-worker".into(), Vec::new());
    match Pool::start(config).await {
        Err(SandboxError::Spawn { .. }) => {}
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a pool without a worker program started"),
    }
}

#[tokio::test]
async fn a_shut_down_pool_fails_runs() {
    let pool = pool(1).await;
    pool.shutdown().await;
    let outcome = run(&pool, "() => 1").await;
    assert_eq!(outcome.status, OutcomeStatus::Failed);
    assert!(outcome.error.unwrap_or_default().contains("shut down"));
}

/// lua-cli's compiled artifact for a `new LuaJob({...})`, as esbuild writes it (CommonJS, minified), with a
/// module-level helper that `execute` uses.
const LUA_CLI_ARTIFACT: &str = r#""use strict";var n=Object.defineProperty;var r=Object.getOwnPropertyDescriptor;var i=Object.getOwnPropertyNames;var s=Object.prototype.hasOwnProperty;var a=(e,t)=>{for(var o in t)n(e,o,{get:t[o],enumerable:!0})},c=(e,t,o,u)=>{if(t&&typeof t=="object"||typeof t=="function")for(let l of i(t))!s.call(e,l)&&l!==o&&n(e,l,{get:()=>t[l],enumerable:!(u=r(t,l))||u.enumerable});return e};var p=e=>c(n({},"__esModule",{value:!0}),e);var m={};a(m,{default:()=>d});module.exports=p(m);var f=require("lua-cli"),g=e=>`checked ${e}`;var d={__lua_primitive__:{version:"2.0.0",kind:"job",name:"health-check",description:"d",exportName:"default"},primitive:{name:"health-check",description:"d",schedule:{type:"interval",seconds:300},timeout:30,execute:async t=>({ok:!0,name:t.name,note:g(t.id),lib:typeof f.LuaJob})}};0&&(module.exports={});
"#;

#[tokio::test]
async fn an_es_module_job_keeps_its_module_scope() {
    let pool = pool(1).await;
    let host = Arc::new(FakeHost::default());
    let code = r#"
        import { LuaJob, User, env } from 'lua-cli';
        import { Data } from 'sundial';

        const PREFIX = 'Reminder: ';
        const started = await Promise.resolve('loaded');
        function format(text) {
            return PREFIX + text;
        }

        export default {
            name: 'daily-reminder',
            description: 'Sends the reminder',
            schedule: { type: 'cron', expression: '0 9 * * *', timezone: 'Europe/Paris' },
            async execute(job) {
                const user = await job.user();
                const bob = await User.get('user_2');
                console.log(format(job.metadata.message));
                return { text: format(job.metadata.message), users: [user.name, bob.name], started, name: this.name,
                         env: env('API_BASE'), imports: [typeof LuaJob, typeof Data.search] };
            },
        };
    "#;
    let outcome = run_module(&pool, &host, code).await;
    assert_completed(
        &outcome,
        json!({
            "text": "Reminder: Team meeting in 10 minutes",
            "users": ["Ann", "Bob"],
            "started": "loaded",
            "name": "daily-reminder",
            "env": "https://example.test",
            "imports": ["function", "function"],
        }),
    );
    assert_eq!(outcome.logs.len(), 1);
    assert_eq!(outcome.logs[0].message, "Reminder: Team meeting in 10 minutes");
    let methods: Vec<String> = host.calls().into_iter().map(|(method, _)| method).collect();
    assert_eq!(methods, ["job.user", "User.get"]);
}

#[tokio::test]
async fn a_lua_job_default_export_runs() {
    let pool = pool(1).await;
    let host = Arc::new(FakeHost::default());
    let code = r#"
        import { LuaJob, defineJob } from 'lua-cli/skill';
        const limit = 3;
        const healthCheck = new LuaJob({
            name: 'health-check',
            description: 'Checks the shop',
            schedule: { type: 'interval', seconds: 60 },
            timeout: 30,
            retry: { maxAttempts: 2 },
            execute: async (job) => ({
                id: job.id,
                name: healthCheck.getName(),
                timeout: healthCheck.getTimeout(),
                retry: healthCheck.getRetry(),
                limit,
                same: defineJob(healthCheck) === healthCheck,
            }),
        });
        export default healthCheck;
    "#;
    assert_completed(
        &run_module(&pool, &host, code).await,
        json!({ "id": "job_1", "name": "health-check", "timeout": 30, "retry": { "maxAttempts": 2 }, "limit": 3,
                "same": true }),
    );
}

#[tokio::test]
async fn a_lua_cli_artifact_runs() {
    let pool = pool(1).await;
    let host = Arc::new(FakeHost::default());
    assert_completed(
        &run_module(&pool, &host, LUA_CLI_ARTIFACT).await,
        json!({ "ok": true, "name": "reminder", "note": "checked job_1", "lib": "function" }),
    );
    // A hand-written CommonJS file: `module.exports` is the definition, `exports`, `__dirname` and `__filename` exist.
    let code = "const where = [__dirname, __filename, typeof exports];\n\
                module.exports = { name: 'cjs', schedule: { type: 'interval', seconds: 60 },\n\
                  execute: async function (job) {\n\
                    return { where, name: this.name, user: (await job.user()).name };\n\
                  } };";
    assert_completed(
        &run_module(&pool, &host, code).await,
        json!({ "where": ["/", "/index.js", "object"], "name": "cjs", "user": "Ann" }),
    );
}

#[tokio::test]
async fn imports_other_than_lua_cli_fail_clearly() {
    let pool = pool(1).await;
    let host = Arc::new(FakeHost::default());
    let definition = "export default { name: 'x', schedule: { type: 'interval', seconds: 60 }, execute: () => 1 };";
    let cases = [
        (format!("import fs from 'fs';\n{definition}"), r#"import of "fs" is not available in jobs"#),
        (
            format!("import {{ helper }} from './helper.js';\n{definition}"),
            r#"import of "./helper.js" is not available in jobs"#,
        ),
        (
            "const z = require(\"zod\");\nmodule.exports.default = { name: 'x', schedule: {}, execute() {} };"
                .to_owned(),
            r#"require of "zod" is not available in jobs"#,
        ),
    ];
    for (code, expected) in &cases {
        let outcome = run_module(&pool, &host, code).await;
        assert_eq!(outcome.status, OutcomeStatus::Failed, "{code}");
        assert_eq!(outcome.error.as_deref(), Some(*expected), "{code}");
        assert_eq!(describe(&pool, code).await.as_ref().map_err(String::as_str), Err(*expected), "{code}");
    }
    let code = format!("import {{ LuaAgent }} from 'lua-cli';\n{definition}");
    let error = describe(&pool, &code).await.unwrap_err();
    assert!(error.contains("LuaAgent") && error.contains("lua-cli"), "{error}");
    // Inside `execute`, a dynamic import fails the same way, with a code job code can test.
    let code = "export default { name: 'x', schedule: { type: 'interval', seconds: 60 }, \
                async execute() { try { await import('node:child_process'); } \
                catch (e) { return [e.code, e.message]; } } };";
    assert_completed(
        &run_module(&pool, &host, code).await,
        json!(["ERR_IMPORT_NOT_AVAILABLE", "import of \"node:child_process\" is not available in jobs"]),
    );
    assert!(host.calls().is_empty());
}

#[tokio::test]
async fn describe_reads_each_form_of_job_file() {
    let pool = pool(1).await;
    let code = r#"
        export default {
            name: 'launch',
            description: 'One-off launch message',
            schedule: { type: 'once', executeAt: new Date('2030-01-01T00:00:00Z') },
            retry: { maxAttempts: 3, backoffSeconds: 10 },
            metadata: { channel: 'news', skip: undefined, helper: () => 1 },
            execute: async () => 'sent',
        };
    "#;
    assert_eq!(
        describe(&pool, code).await,
        Ok(json!({
            "name": "launch",
            "description": "One-off launch message",
            "schedule": { "type": "once", "executeAt": "2030-01-01T00:00:00.000Z" },
            "retry": { "maxAttempts": 3, "backoffSeconds": 10 },
            "metadata": { "channel": "news" },
        }))
    );

    let code = "import { LuaJob } from 'lua-cli';\n\
                export default new LuaJob({ name: 'nightly', schedule: { type: 'cron', expression: '0 3 * * *' }, \
                timeout: 120, execute: async () => 1 });";
    assert_eq!(
        describe(&pool, code).await,
        Ok(json!({ "name": "nightly", "schedule": { "type": "cron", "expression": "0 3 * * *" }, "timeout": 120 }))
    );

    let code = "import { defineJob } from 'sundial';\n\
                export default defineJob({ name: 'defined', schedule: { type: 'interval', seconds: 30 }, \
                execute() {} });";
    assert_eq!(
        describe(&pool, code).await,
        Ok(json!({ "name": "defined", "schedule": { "type": "interval", "seconds": 30 } }))
    );
    // The TypeScript SDK's package name, as a job file written against it imports it.
    let code = "import { defineJob } from '@sundial/jobs';\n\
                export default defineJob({ name: 'sdk', schedule: { type: 'interval', seconds: 60 }, execute() {} });";
    assert_eq!(
        describe(&pool, code).await,
        Ok(json!({ "name": "sdk", "schedule": { "type": "interval", "seconds": 60 } }))
    );

    assert_eq!(
        describe(&pool, LUA_CLI_ARTIFACT).await,
        Ok(json!({
            "name": "health-check",
            "description": "d",
            "schedule": { "type": "interval", "seconds": 300 },
            "timeout": 30,
        }))
    );
}

#[tokio::test]
async fn describe_never_runs_execute() {
    let pool = pool(1).await;
    let code = r#"
        const state = { ran: false };
        let hostError = null;
        try {
            await User.get('user_2');
        } catch (error) {
            hostError = error.message;
        }
        console.log('loading');
        export default {
            name: 'side-effects',
            schedule: { type: 'interval', seconds: 60 },
            metadata: { state, hostError },
            async execute(job) {
                state.ran = true;
                console.log('executed');
                await job.user();
                await User.get('user_3');
            },
        };
    "#;
    let outcome = pool.describe_outcome(code.to_owned(), CodeKind::Module, Duration::from_secs(5)).await;
    assert_completed(
        &outcome,
        json!({
            "name": "side-effects",
            "schedule": { "type": "interval", "seconds": 60 },
            "metadata": {
                "state": { "ran": false },
                "hostError": "User.get: host calls are not available while describing a job",
            },
        }),
    );
    let logs: Vec<&str> = outcome.logs.iter().map(|line| line.message.as_str()).collect();
    assert_eq!(logs, ["loading"]);

    // The same file run for real does call `execute`, and the host.
    let host = Arc::new(FakeHost::default());
    let outcome = run_module(&pool, &host, code).await;
    assert_eq!(outcome.status, OutcomeStatus::Completed, "error: {:?}", outcome.error);
    let logs: Vec<&str> = outcome.logs.iter().map(|line| line.message.as_str()).collect();
    assert_eq!(logs, ["loading", "executed"]);
    let methods: Vec<String> = host.calls().into_iter().map(|(method, _)| method).collect();
    assert_eq!(methods, ["User.get", "job.user", "User.get"]);
}

#[tokio::test]
async fn describe_errors_are_clear() {
    let pool = pool(1).await;
    let schedule = "schedule: { type: 'interval', seconds: 60 }";
    let cases = [
        (
            "export const job = { name: 'x' };".to_owned(),
            "the module has no default export (expected export default {name, schedule, execute})",
        ),
        (
            "export default 42;".to_owned(),
            "the default export is not a job definition (expected {name, schedule, execute})",
        ),
        (
            "export default { hello: 'world' };".to_owned(),
            "the default export is not a job definition (expected {name, schedule, execute})",
        ),
        (
            "module.exports = {};".to_owned(),
            "the default export is not a job definition (expected {name, schedule, execute})",
        ),
        (format!("export default {{ name: 'x', {schedule}, execute: 'run' }};"), "the job's execute is not a function"),
        (format!("export default {{ name: '  ', {schedule}, execute() {{}} }};"), "the job's name is missing or empty"),
        (format!("export default {{ {schedule}, execute() {{}} }};"), "the job's name is missing or empty"),
        (
            "export default { name: 'x', execute() {} };".to_owned(),
            "the job's schedule is missing or not an object (expected {type: 'cron' | 'once' | 'interval', …})",
        ),
        (
            format!("import {{ LuaJob }} from 'lua-cli';\nexport default new LuaJob({{ name: 'x', {schedule} }});"),
            "the job's execute is not a function",
        ),
        (
            "module.exports.default = { __lua_primitive__: { kind: 'tool', name: 't' }, primitive: {} };".to_owned(),
            "the module is a lua-cli tool, not a job",
        ),
    ];
    for (code, expected) in &cases {
        assert_eq!(describe(&pool, code).await.as_ref().map_err(String::as_str), Err(*expected), "{code}");
    }

    // Syntax errors name their line, in both forms.
    let code = "export default {\n  name: 'x',\n  schedule: { type: 'once' }\n  execute() {}\n};";
    let error = describe(&pool, code).await.unwrap_err();
    assert!(error.starts_with("SyntaxError: ") && error.ends_with("(line 4, column 3)"), "{error}");
    let code = "module.exports = {\n  name: 'x'\n  schedule: {} };";
    let error = describe(&pool, code).await.unwrap_err();
    assert!(error.starts_with("SyntaxError: ") && error.ends_with("(line 3, column 3)"), "{error}");
    let code = "module.exports = { name: 'x', schedule: {}, execute() {} ;";
    let error = describe(&pool, code).await.unwrap_err();
    assert!(error.starts_with("SyntaxError: ") && error.contains("(line 1, column "), "{error}");

    // A top-level exception is reported like a job's own.
    let error = describe(&pool, "throw new TypeError('bad config');\nexport default {};").await.unwrap_err();
    assert_eq!(error.lines().next(), Some("TypeError: bad config"));

    let error = pool.describe("async () => 1".into(), CodeKind::Function, Duration::from_secs(5)).await.unwrap_err();
    assert!(error.contains("only a module job can be described"), "{error}");
}

#[tokio::test]
async fn module_jobs_keep_the_limits() {
    let pool = pool(1).await;
    let spin = "let n = 0;\nwhile (true) { n++; }\nexport default { name: 'x', schedule: {}, execute() {} };";
    let started = Instant::now();
    let error = pool.describe(spin.into(), CodeKind::Module, Duration::from_secs(1)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert_eq!(error, "loading the job module timed out after 1s");

    let mut request = module_request(spin);
    request.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let outcome = pool.run(request, Arc::new(FakeHost::default())).await;
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert_eq!(outcome.status, OutcomeStatus::Timeout);
    assert_eq!(outcome.error.as_deref(), Some("execution timed out after 1s"));

    // The CommonJS form and `execute` itself are bounded too.
    let mut request = module_request("module.exports = { name: 'x', schedule: {}, execute() { for (;;) {} } };");
    request.timeout = Duration::from_secs(1);
    assert_eq!(pool.run(request, Arc::new(FakeHost::default())).await.status, OutcomeStatus::Timeout);

    let bomb = "const a = [];\nwhile (true) a.push('x'.repeat(1024) + Math.random());\nexport default {};";
    let outcome = run_module(&pool, &Arc::new(FakeHost::default()), bomb).await;
    assert_eq!(outcome.status, OutcomeStatus::Killed, "error: {:?}", outcome.error);
    let error = describe(&pool, bomb).await.unwrap_err();
    assert_eq!(error, "loading the job module exceeded the memory limit of 64 MiB");

    assert_eq!(
        describe(&pool, "export default { name: 'after', schedule: {}, execute() {} };").await.unwrap()["name"],
        "after"
    );
}

#[tokio::test]
async fn fetch_answers_a_web_style_response() {
    let pool = pool(1).await;
    let host = Arc::new(FakeHost::default());
    let code = "async () => {
        const response = await fetch(new URL('https://api.example.com/x'), {
            method: 'POST', headers: new Headers([['X-Key', 'k']]), body: JSON.stringify({ a: 1 }),
        });
        const body = await response.json();
        let again = 'no error';
        try { await response.text(); } catch (error) { again = error.message; }
        return { ok: response.ok, status: response.status, type: response.headers.get('Content-Type'),
                 cookies: response.headers.get('set-cookie'), body, again, used: response.bodyUsed };
    }";
    let outcome = run_with(&pool, &host, code).await;
    assert_completed(
        &outcome,
        json!({"ok": true, "status": 201, "type": "application/json", "cookies": "a=1, b=2", "body": {"echo": true},
               "again": "fetch: the response body was already read", "used": true}),
    );
    let calls = host.calls();
    assert_eq!(calls[0].0, "fetch");
    assert_eq!(calls[0].1["args"][0], json!("https://api.example.com/x"));
    assert_eq!(calls[0].1["args"][1]["headers"], json!([["x-key", "k"]]));
    assert_eq!(calls[0].1["args"][1]["method"], json!("POST"));
}

#[tokio::test]
async fn error_stacks_show_the_jobs_frames_and_never_the_preludes() {
    let pool = pool(1).await;
    let code = "async (job) => {\n  const load = async () => Data.get('boom');\n  await load();\n}";
    let outcome = run(&pool, code).await;
    assert_eq!(outcome.status, OutcomeStatus::Failed);
    let error = outcome.error.unwrap_or_default();
    assert_eq!(error.lines().next(), Some("Error: collection boom is unavailable"));
    // The error was made by the prelude's host-call code: none of its frames may show, named or not.
    assert!(!error.contains("prelude") && !error.contains("<null>"), "{error}");
}

#[tokio::test]
async fn every_run_draws_its_own_random_numbers_and_time_origin() {
    // Every run starts from the same snapshot of the world: what the engine would carry over from it (its random
    // state, the time the world was built) must be each run's own.
    let pool = pool(1).await;
    let code = "() => ({ random: [Math.random(), Math.random()], origin: performance.timeOrigin, now: Date.now() })";
    let first = run(&pool, code).await.result.expect("a result");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = run(&pool, code).await.result.expect("a result");
    assert_ne!(first["random"], second["random"]);
    assert!(first["random"][0] != first["random"][1]);
    for value in first["random"].as_array().unwrap().iter().chain(second["random"].as_array().unwrap()) {
        let value = value.as_f64().unwrap();
        assert!((0.0..1.0).contains(&value), "{value}");
    }
    assert!(second["origin"].as_f64() > first["origin"].as_f64(), "{first} {second}");
    assert!((second["now"].as_f64().unwrap() - second["origin"].as_f64().unwrap()).abs() < 1000.0);
}

#[tokio::test]
async fn a_function_the_worker_ran_before_runs_from_its_kept_bytecode_exactly_as_the_first_time() {
    // One worker, each text twice: the second run of a text reads the bytecode the first one kept.
    let pool = pool(1).await;
    let counting = "async (job) => { globalThis.count = (globalThis.count || 0) + 1; return [count, job.id]; }";
    let method = "async execute(job) { return job.name; }";
    let sloppy = "() => { try { undeclared = 1; return 'sloppy'; } catch { return 'strict'; } }";
    let strict = format!("'use strict';\n{sloppy}");
    for _ in 0..2 {
        // Nothing of the first run survives into the second: the kept bytecode is code, not state.
        assert_completed(&run(&pool, counting).await, json!([1, "job_1"]));
        assert_completed(&run(&pool, method).await, json!("reminder"));
        // Strictness belongs to the text kept: the same function with and without "use strict" stay apart.
        assert_completed(&run(&pool, &strict).await, json!("strict"));
        assert_completed(&run(&pool, sloppy).await, json!("sloppy"));
        // Code that does not compile is refused the same way each time (nothing is kept for it).
        let broken = run(&pool, "(job) => { return job. }").await;
        assert_eq!(broken.status, OutcomeStatus::Failed);
        assert!(first_line(&broken).starts_with("code must be a JavaScript function"), "{:?}", broken.error);
    }
    assert_eq!(pool.stats().restarts, 0);
}

#[tokio::test]
async fn a_run_that_hits_a_limit_does_not_cost_the_worker() {
    let pool = pool(1).await;
    let mut spin = request("() => { globalThis.mark = 1; while (true) {} }");
    spin.timeout = Duration::from_millis(300);
    assert_eq!(pool.run(spin, Arc::new(FakeHost::default())).await.status, OutcomeStatus::Timeout);
    let bomb = run(&pool, "() => { globalThis.mark = 2; const a = []; while (true) a.push('x'.repeat(4096)); }").await;
    assert_eq!(bomb.status, OutcomeStatus::Killed);
    // The same worker goes on, from a world that neither run touched, with its whole memory cap.
    let code = "() => { const a = []; for (let i = 0; i < 1000; i++) a.push('y'.repeat(32 * 1024)); \
                return [typeof mark, a.length]; }";
    assert_completed(&run(&pool, code).await, json!(["undefined", 1000]));
    assert_eq!(pool.stats().restarts, 0);
}

#[tokio::test]
async fn job_data_is_asked_of_the_host_when_first_read() {
    let pool = pool(1).await;
    let host = Arc::new(FakeHost::default());
    let mut without_data = job();
    without_data.as_object_mut().unwrap().remove("data");
    let code = "async (job) => { const keys = Object.keys(job); const first = job.data; const again = job.data; \
                const user = await job.user(); job.data = 5; \
                return [keys, first.active, first === again, user.name, job.data, JSON.stringify(job).length > 0]; }";
    let lazy = RunRequest { job: without_data.to_string(), ..request(code) };
    let outcome = pool.run(lazy, host.clone()).await;
    assert_completed(
        &outcome,
        json!([["id", "name", "metadata", "activeVersion", "data", "execution"], true, true, "Ann", 5, true]),
    );
    let methods: Vec<String> = host.calls().into_iter().map(|(method, _)| method).collect();
    assert_eq!(methods, ["job.data", "job.user"], "job.data is asked once, when first read");
    assert_eq!(host.calls()[0].1, json!({ "jobId": "job_1" }));
    // A job that never reads it never asks.
    let host = Arc::new(FakeHost::default());
    let lazy = RunRequest { job: without_data.to_string(), ..request("(job) => job.name") };
    assert_completed(&pool.run(lazy, host.clone()).await, json!("reminder"));
    assert!(host.calls().is_empty());
}
