//! Micro-benchmarks of one sandbox run: the round trip from `Pool::run` to its `Outcome` through a real worker
//! process (the request frame, the QuickJS execution, the result frame), with a pool of one pre-started worker.
//!
//! Run with `cargo bench -p sundial-sandbox --bench run`. Every iteration runs a job whose result depends on the
//! iteration (`job.metadata.i`) and checks it, so nothing is cached or skipped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::future::BoxFuture;
use serde_json::{json, Value};
use sundial_sandbox::{Host, Outcome, OutcomeStatus, Pool, PoolConfig, RunRequest};
use tokio::runtime::Runtime;

/// The smallest job: read the job object, return a small object.
const TRIVIAL: &str = "async (job) => ({ i: job.metadata.i, t: Date.now() })";

/// A job that does a little work: builds and sums an array, logs a line, returns a JSON result.
const SMALL_WORK: &str = "async (job) => { \
     const items = Array.from({ length: 100 }, (_, k) => ({ k, square: k * k })); \
     const total = items.reduce((sum, item) => sum + item.square, 0); \
     console.log('processed', items.length, 'items for', job.name, job.metadata.i); \
     return { i: job.metadata.i, total, first: items.slice(0, 5), at: new Date().toISOString() }; }";

/// The seed's reminder: two host calls (`job.user`, `user.send`) answered by the server side of the pool.
const HOST_CALLS: &str = "async (job) => { const user = await job.user(); \
     await user.send([{ type: 'text', text: job.metadata.message }]); return { i: job.metadata.i, sent: true }; }";

/// Answers the reminder's host calls at once, as a server with everything in memory would.
struct ImmediateHost;

impl Host for ImmediateHost {
    fn call(&self, method: String, _args: Value) -> BoxFuture<'static, Result<Value, String>> {
        Box::pin(async move {
            match method.as_str() {
                "job.user" => Ok(json!({ "userId": "user_1", "name": "Ann" })),
                "user.send" => Ok(json!(true)),
                other => Err(format!("{other} is not available in this benchmark")),
            }
        })
    }
}

/// A run request of `code` whose job carries `i` in its metadata, shaped as the scheduler builds it.
fn request(code: &str, i: u64) -> RunRequest {
    RunRequest {
        code: code.to_owned(),
        job: json!({
            "id": "job_1",
            "name": "reminder",
            "metadata": { "message": "Team meeting in 10 minutes", "i": i },
            "activeVersion": { "id": "ver_1", "version": "1.0.0", "schedule": { "type": "interval", "seconds": 60 } },
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
        .to_string(),
        env: [("API_BASE".to_owned(), "https://example.test".to_owned())].into(),
        timeout: Duration::from_secs(5),
        // A function job (the default kind), started at once.
        ..RunRequest::default()
    }
}

#[track_caller]
fn check(outcome: &Outcome, i: u64, logs: usize) {
    assert_eq!(outcome.status, OutcomeStatus::Completed, "error: {:?}", outcome.error);
    assert_eq!(outcome.result.as_ref().map(|result| &result["i"]), Some(&json!(i)), "the result is not this run's");
    assert_eq!(outcome.logs.len(), logs, "logs: {:?}", outcome.logs);
}

/// A pool of one pre-started worker, the runtime that drives it, and the host that answers its calls.
struct Fixture {
    runtime: Runtime,
    pool: Pool,
    host: Arc<ImmediateHost>,
}

impl Fixture {
    fn start() -> Fixture {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        let mut config = PoolConfig::new(env!("CARGO_BIN_EXE_sundial-sandbox-worker").into(), Vec::new());
        config.workers = 1;
        let pool = runtime.block_on(Pool::start(config)).expect("the pool starts");
        Fixture { runtime, pool, host: Arc::new(ImmediateHost) }
    }

    /// Times `iterations` runs of `code`, one after another, each checked (`logs`: the console lines it writes).
    fn time_runs(&self, code: &str, logs: usize, iterations: u64) -> Duration {
        self.runtime.block_on(async {
            let mut total = Duration::ZERO;
            for i in 0..iterations {
                let request = request(code, i);
                let started = Instant::now();
                let outcome = self.pool.run(request, self.host.clone()).await;
                total += started.elapsed();
                check(&outcome, i, logs);
            }
            total
        })
    }
}

fn one_run(c: &mut Criterion) {
    let fixture = Fixture::start();
    let cases = [("trivial", TRIVIAL, 0), ("small_work_and_log", SMALL_WORK, 1), ("two_host_calls", HOST_CALLS, 0)];
    let mut group = c.benchmark_group("sandbox_run");
    for (name, code, logs) in cases {
        group.bench_function(name, |b| b.iter_custom(|iterations| fixture.time_runs(code, logs, iterations)));
    }
    group.finish();
    assert_eq!(fixture.pool.stats().restarts, 0, "a worker was replaced during the benchmark");
    fixture.runtime.block_on(fixture.pool.shutdown());
}

criterion_group!(benches, one_run);
criterion_main!(benches);
