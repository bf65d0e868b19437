//! The workloads themselves: what each creates, how long it waits, what it reads back and reports
//! (`bench/workloads.md` for W1–W4; W5 and W6 are Sundial's own).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::api::{Api, WireExecution};
use super::server::CpuParts;
use super::stats::{account_once, account_recurring, round1, Start, Stats};
use super::{progress, Run, Workload};

/// Every job's code: read the clock first, return `(i, now)` — the execution record is the shared store.
pub const CODE: &str = "async (job) => ({ i: job.metadata.i, t: Date.now() })";

/// The first due time is this long after scheduling starts (W1, W2, W6).
const LEAD_MS: i64 = 3000;
/// A job not started this long after the last due time is missed.
const GRACE_MS: i64 = 60_000;
/// Wait after everything ran before counting, so that late duplicates show up.
const SETTLE: Duration = Duration::from_millis(1500);
/// How often `/metrics` is read while waiting for runs.
const METRICS_POLL: Duration = Duration::from_millis(200);
/// How often the executions are read back while waiting for stragglers.
const READ_POLL: Duration = Duration::from_secs(2);
/// Deletes in flight at once.
const DELETES_IN_FLIGHT: usize = 50;
/// Jobs per agent in W5 (the server's default active-jobs quota per agent).
const JOBS_PER_AGENT: usize = 100_000;

/// Runs the workload of `run`.
pub async fn run(run: &mut Run<'_>) -> anyhow::Result<()> {
    match run.workload {
        Workload::W1 => burst(run).await,
        Workload::W2 => spread(run, false).await,
        Workload::W3 => recurring(run).await,
        Workload::W4 => memory(run).await,
        Workload::W5 => million(run).await,
        Workload::W6 => spread(run, true).await,
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn elapsed_ms(since: Instant) -> f64 {
    round1(since.elapsed().as_secs_f64() * 1000.0)
}

async fn sleep_until_ms(ms: i64) {
    let wait = ms - now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
}

fn once_job(prefix: &str, index: usize, due_ms: i64) -> Value {
    json!({
        "name": format!("{prefix}-{index}"),
        "schedule": {"type": "once", "executeAt": rfc3339(due_ms)},
        "code": CODE,
        "metadata": {"i": index},
    })
}

fn interval_job(prefix: &str, index: usize, seconds: u64) -> Value {
    json!({
        "name": format!("{prefix}-{index}"),
        "schedule": {"type": "interval", "seconds": seconds},
        "code": CODE,
        "metadata": {"i": index},
    })
}

/// Job id → index.
fn index_of(ids: &[String]) -> HashMap<&str, usize> {
    ids.iter().enumerate().map(|(index, id)| (id.as_str(), index)).collect()
}

/// The executions of known jobs as starts (or non-starts) by job index.
fn starts_of(executions: &[WireExecution], index: &HashMap<&str, usize>) -> Vec<Start> {
    executions
        .iter()
        .filter_map(|execution| {
            let job = *index.get(execution.job_id.as_str())?;
            Some(Start { index: job, at_ms: execution.code_time_ms(), started: execution.started() })
        })
        .collect()
}

/// Counts of executions by status.
fn statuses(executions: &[WireExecution]) -> Value {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for execution in executions {
        *counts.entry(execution.status.as_str()).or_default() += 1;
    }
    json!(counts)
}

/// For reference: the server's own view (`startedAt − dueAt`) and how long after the server started an
/// execution its code read the clock (`t − startedAt`: the hand-off to the sandbox).
fn server_side(executions: &[WireExecution]) -> (Stats, Stats) {
    let mut lateness = Vec::new();
    let mut hand_off = Vec::new();
    for execution in executions {
        let Some(started) = execution.started_at.filter(|_| execution.started()) else { continue };
        let started = started.timestamp_millis() as f64;
        lateness.push(started - execution.due_at.timestamp_millis() as f64);
        if let Some(t) = execution.code_time_ms() {
            hand_off.push(t - started);
        }
    }
    (Stats::of(&lateness), Stats::of(&hand_off))
}

/// How far the jobs are in a read-back: how many ran (their code returned a start), and whether nothing more can
/// happen (every job has an execution and none is pending or running).
fn standing(executions: &[WireExecution], index: &HashMap<&str, usize>) -> (usize, bool) {
    let mut ran = HashSet::new();
    let mut seen = HashSet::new();
    let mut open = false;
    for execution in executions {
        let Some(job) = index.get(execution.job_id.as_str()) else { continue };
        seen.insert(*job);
        if execution.code_time_ms().is_some() {
            ran.insert(*job);
        }
        open |= matches!(execution.status.as_str(), "pending" | "running");
    }
    (ran.len(), seen.len() == index.len() && !open)
}

/// Waits for the jobs of `index` to run, from `not_before_ms` on: with a `/metrics` `baseline`, first until that
/// many more executions finished; then it reads the executions back until every job ran, nothing more can happen,
/// or `deadline_ms` passed; settles and reads them a last time. Returns them and whether the deadline came first.
async fn wait_for_runs(
    api: &Api,
    baseline: Option<f64>,
    index: &HashMap<&str, usize>,
    not_before_ms: i64,
    deadline_ms: i64,
) -> anyhow::Result<(Vec<WireExecution>, bool)> {
    let expected = index.len();
    sleep_until_ms(not_before_ms).await;
    if let Some(baseline) = baseline {
        wait_for_outcomes(api, baseline, expected, deadline_ms).await;
    }
    loop {
        let (ran, settled) = standing(&api.executions().await?, index);
        let timed_out = now_ms() >= deadline_ms;
        if ran >= expected || settled || timed_out {
            if ran < expected {
                let why = if timed_out { "the deadline passed" } else { "nothing is pending or running" };
                progress(format_args!("{why} with {ran} of {expected} jobs run"));
            }
            tokio::time::sleep(SETTLE).await;
            return Ok((api.executions().await?, timed_out && ran < expected));
        }
        progress(format_args!("{ran} of {expected} jobs run; waiting"));
        let left = Duration::from_millis((deadline_ms - now_ms()).max(0) as u64);
        tokio::time::sleep(READ_POLL.min(left)).await;
    }
}

/// Waits until `/metrics` counts `expected` more recorded outcomes than `baseline`, or `deadline_ms` passes.
async fn wait_for_outcomes(api: &Api, baseline: f64, expected: usize, deadline_ms: i64) {
    while now_ms() < deadline_ms {
        if api.finished_executions().await.unwrap_or(0.0) - baseline >= expected as f64 {
            return;
        }
        tokio::time::sleep(METRICS_POLL).await;
    }
}

/// Deletes the run's jobs from a server the bench does not own (an owned server goes away with its data).
async fn clean_up(run: &mut Run<'_>, api: &Api, ids: &[String]) {
    if run.owns_server() {
        run.put("cleanup", "server and data directory removed after the run");
        return;
    }
    let began = Instant::now();
    let deleting = api.delete_jobs(ids, DELETES_IN_FLIGHT);
    match tokio::time::timeout(run.time_left().saturating_sub(Duration::from_secs(5)), deleting).await {
        Ok((gone, error)) => {
            run.put("cleanup_deleted", gone);
            if let Some(error) = error {
                run.put("cleanup_error", error);
            }
        }
        Err(_) => run.put("cleanup_error", "the hard limit came before every job was deleted"),
    }
    run.put("cleanup_ms", elapsed_ms(began));
}

/// Creates the jobs and times it.
async fn create(run: &mut Run<'_>, api: &Api, jobs: Vec<Value>) -> anyhow::Result<(Vec<String>, f64)> {
    let count = jobs.len();
    let began = Instant::now();
    let ids = api.create_jobs(jobs, run.args.batch_for(run.workload), run.args.concurrency).await?;
    let took = elapsed_ms(began);
    progress(format_args!("created {count} jobs in {took} ms"));
    Ok((ids, took))
}

/// W1: 10,000 one-time jobs all due at T = start + 3 s.
async fn burst(run: &mut Run<'_>) -> anyhow::Result<()> {
    const N: usize = 10_000;
    run.configure("n", N);
    run.configure("lead_ms", LEAD_MS);
    let api = run.agent("w1").await?;
    let baseline = api.finished_executions().await?;
    let due = now_ms() + LEAD_MS;
    let prefix = format!("w1-{}", run.tag);
    let jobs = (0..N).map(|index| once_job(&prefix, index, due)).collect();
    let before = run.target.cpu_parts();
    let database_before = run.database_snapshot().await;
    let (ids, schedule_ms) = create(run, &api, jobs).await?;
    let created = now_ms();
    let after_create = run.target.cpu_parts();
    run.put("schedule_ms", schedule_ms);
    run.put("scheduled_before_due", created < due);
    let index = index_of(&ids);
    let deadline = due + GRACE_MS;
    sleep_until_ms(due).await;
    let (pg_at_due, server_at_due) = (super::server::postgres_cpu_seconds(), run.target.cpu_seconds());
    wait_for_outcomes(&api, baseline, N, deadline).await;
    if run.database.is_some() {
        let pg = super::server::postgres_cpu_seconds() - pg_at_due;
        let server = run.target.cpu_seconds().zip(server_at_due).map(|(now, then)| now - then);
        run.put(
            "cpu_us_per_execution_after_due",
            json!({"database": round1(pg * 1e6 / N as f64), "server": server.map(|s| round1(s * 1e6 / N as f64))}),
        );
    }
    if let (Some(before), Some(after_create), Some(recorded)) = (before, after_create, run.target.cpu_parts()) {
        put_cpu_per_execution(run, N, &after_create.since(&before), &recorded.since(&after_create));
    }
    let database_after = run.database_settled().await;
    run.put_database(N, database_before, database_after);
    let (executions, timed_out) = wait_for_runs(&api, None, &index, due, deadline).await?;
    let account = account_once(&vec![due as f64; N], &starts_of(&executions, &index), deadline as f64);
    let firsts: Vec<f64> = account.first_start_ms.iter().flatten().copied().collect();
    let earliest = firsts.iter().copied().reduce(f64::min);
    let latest = firsts.iter().copied().reduce(f64::max);
    run.put("ran", account.ran);
    run.put("missed", account.missed);
    run.put("duplicates", account.duplicates);
    run.put("early", account.early);
    run.put("lateness_ms", Stats::of(&account.lateness_ms).to_json());
    run.put("first_start_ms", json!(earliest.map(|first| round1(first - due as f64))));
    run.put("drain_ms", json!(latest.map(|last| round1(last - due as f64))));
    let throughput = match (earliest, latest) {
        (Some(earliest), Some(latest)) => {
            let span = latest - earliest.min(due as f64);
            (span > 0.0).then(|| round1(account.ran as f64 / (span / 1000.0)))
        }
        _ => None,
    };
    run.put("throughput_jobs_per_s", json!(throughput));
    let (server_lateness, hand_off) = server_side(&executions);
    run.put("server_lateness_ms", server_lateness.to_json());
    run.put("start_to_code_ms", hand_off.to_json());
    run.put("statuses", statuses(&executions));
    run.put("timed_out", timed_out);
    clean_up(run, &api, &ids).await;
    Ok(())
}

/// Reports the server's CPU per execution from creation to recorded outcome (`creating`: while the jobs were
/// created; `running`: from then until the last outcome was recorded), and its parts: `http` is the runtime's
/// threads while creating (requests, parsing, validation), `store` the SQLite writer thread in both phases,
/// `scheduler` the runtime's threads while running (recording slots, claiming, dispatching, the pool's hand-offs,
/// the host calls and outcomes), `worker` the sandbox workers.
fn put_cpu_per_execution(run: &mut Run<'_>, executions: usize, creating: &CpuParts, running: &CpuParts) {
    let micros = |seconds: f64| round1(seconds * 1e6 / executions as f64);
    run.put("server_cpu_us_per_execution", micros(creating.total() + running.total()));
    run.put(
        "server_cpu_us_per_execution_parts",
        json!({
            "http": micros(creating.runtime),
            "store": micros(creating.store + running.store),
            "scheduler": micros(running.runtime),
            "worker": micros(creating.workers + running.workers),
        }),
    );
}

/// W2 (and W6 with `crash`): 20,000 one-time jobs spread evenly over 10 s from T₀ = start + 3 s; W6 kills the
/// server with SIGKILL half-way and restarts it on the same data directory.
async fn spread(run: &mut Run<'_>, crash: bool) -> anyhow::Result<()> {
    const N: usize = 20_000;
    const SPREAD_MS: i64 = 10_000;
    run.configure("n", N);
    run.configure("lead_ms", LEAD_MS);
    run.configure("spread_ms", SPREAD_MS);
    if crash {
        run.target.owned().context("W6 kills and restarts the server, which is not possible with --server")?;
    }
    let label = if crash { "w6" } else { "w2" };
    let mut api = run.agent(label).await?;
    let baseline = api.finished_executions().await?;
    let first_due = now_ms() + LEAD_MS;
    let due: Vec<i64> = (0..N).map(|index| first_due + SPREAD_MS * index as i64 / N as i64).collect();
    let last_due = due.last().copied().unwrap_or(first_due);
    let prefix = format!("{label}-{}", run.tag);
    let jobs = due.iter().enumerate().map(|(index, due)| once_job(&prefix, index, *due)).collect();
    let database_before = run.database_snapshot().await;
    let (ids, schedule_ms) = create(run, &api, jobs).await?;
    let created = now_ms();
    run.put("schedule_ms", schedule_ms);
    run.put("scheduled_before_due", created < first_due);
    let index = index_of(&ids);
    let deadline = last_due + GRACE_MS;
    let mut restarted_at = None;
    // A restarted server's metrics start again from zero: W6 waits on the executions alone.
    let mut baseline = Some(baseline);
    if crash {
        let kill_at = first_due + SPREAD_MS / 2;
        sleep_until_ms(kill_at).await;
        let server = run.target.owned()?;
        let killed = now_ms();
        server.kill().await?;
        progress("killed the server with SIGKILL; restarting it");
        let spawned = now_ms();
        let ready = server.spawn().await?;
        api = api.at(run.target.base_url());
        restarted_at = Some(spawned);
        baseline = None;
        run.put("killed_at_ms", killed - first_due);
        run.put("restart_ready_ms", round1(ready.as_secs_f64() * 1000.0));
        run.put("down_ms", now_ms() - killed);
    }
    if let (Some(baseline), false) = (baseline, crash) {
        // What the database did for the runs, before the executions are read back.
        sleep_until_ms(last_due).await;
        wait_for_outcomes(&api, baseline, N, deadline).await;
        let database_after = run.database_settled().await;
        run.put_database(N, database_before, database_after);
    }
    let (executions, timed_out) = wait_for_runs(&api, baseline, &index, last_due, deadline).await?;
    let due_ms: Vec<f64> = due.iter().map(|due| *due as f64).collect();
    let account = account_once(&due_ms, &starts_of(&executions, &index), deadline as f64);
    run.put("ran", account.ran);
    run.put("missed", account.missed);
    run.put("duplicates", account.duplicates);
    run.put("early", account.early);
    run.put("lateness_ms", Stats::of(&account.lateness_ms).to_json());
    // The job's clock reads whole milliseconds: the share of runs that read one or more past their instant says
    // how far p99 is from moving.
    let late = account.lateness_ms.iter().filter(|lateness| **lateness >= 1.0).count();
    let share = late as f64 / account.lateness_ms.len().max(1) as f64;
    run.put("late_1ms_share", (share * 1e4).round() / 1e4);
    let (server_lateness, hand_off) = server_side(&executions);
    run.put("server_lateness_ms", server_lateness.to_json());
    run.put("start_to_code_ms", hand_off.to_json());
    run.put("statuses", statuses(&executions));
    if let Some(spawned) = restarted_at {
        // Lost: the job's code never returned a start. Fired twice: the scheduler started the job's slot more than
        // once (trigger `schedule`); a retry of a run the crash abandoned is not a second scheduled start, but it
        // counts in `duplicates` (starts of any trigger beyond the first).
        let mut scheduled_starts = vec![0usize; N];
        for execution in executions.iter().filter(|execution| execution.started() && execution.trigger == "schedule") {
            if let Some(job) = index.get(execution.job_id.as_str()) {
                scheduled_starts[*job] += 1;
            }
        }
        run.put("lost", account.missed);
        run.put("fired_twice", scheduled_starts.iter().filter(|starts| **starts > 1).count());
        run.put("started_more_than_once", account.started_more_than_once);
        run.put("never_started_by_server", account.never_started);
        let completed: HashSet<usize> = executions
            .iter()
            .filter(|execution| execution.status == "completed")
            .filter_map(|execution| index.get(execution.job_id.as_str()).copied())
            .collect();
        run.put("not_completed", N - completed.len());
        let after_restart = executions
            .iter()
            .filter_map(WireExecution::code_time_ms)
            .filter(|start| *start >= spawned as f64)
            .reduce(f64::min);
        run.put("restart_to_first_fire_ms", json!(after_restart.map(|first| round1(first - spawned as f64))));
    }
    run.put("timed_out", timed_out);
    clean_up(run, &api, &ids).await;
    Ok(())
}

/// W3: 1,000 jobs every second for R + 10.5 s, then deleted. The jobs are created back to back, one per request
/// (four in flight), as the workload says: each is anchored when it is created. `--batch 1000` creates them in one
/// request instead, with one anchor: a burst of 1,000 runs every second.
async fn recurring(run: &mut Run<'_>) -> anyhow::Result<()> {
    const JOBS: usize = 1000;
    const INTERVAL_MS: i64 = 1000;
    const WINDOW_MS: i64 = 10_000;
    run.configure("jobs", JOBS);
    run.configure("interval_ms", INTERVAL_MS);
    run.configure("schedule", "{type: interval, seconds: 1}: a fixed grid anchor + k·1 s, anchored at creation");
    let api = run.agent("w3").await?;
    let prefix = format!("w3-{}", run.tag);
    let jobs = (0..JOBS).map(|index| interval_job(&prefix, index, (INTERVAL_MS / 1000) as u64)).collect();
    let (ids, register_ms) = create(run, &api, jobs).await?;
    let returned = now_ms();
    run.put("register_ms", register_ms);
    let until = returned + WINDOW_MS + INTERVAL_MS / 2;
    sleep_until_ms(until).await;
    let began = Instant::now();
    // Leave time to read the runs back even when deleting is slow.
    let budget = run.time_left().saturating_sub(Duration::from_secs(30));
    match tokio::time::timeout(budget, api.delete_jobs(&ids, DELETES_IN_FLIGHT)).await {
        Ok((gone, error)) => {
            run.put("deleted", gone);
            if let Some(error) = error {
                run.put("delete_error", error);
            }
        }
        Err(_) => run.put("delete_error", "deleting did not finish before the hard limit"),
    }
    run.put("delete_ms", elapsed_ms(began));
    tokio::time::sleep(SETTLE).await;
    let executions = api.executions().await?;
    let index = index_of(&ids);
    let starts = starts_of(&executions, &index);
    let account = account_recurring(JOBS, &starts, returned as f64, INTERVAL_MS as f64, until as f64);
    run.put("total_runs", account.total_runs);
    run.put("runs_per_job", Stats::of(&account.runs_per_job).to_json());
    run.put("jobs_with_exactly_10_runs", account.runs_per_job.iter().filter(|runs| **runs == 10.0).count());
    run.put("jobs_with_zero_runs", account.jobs_with_zero_runs);
    run.put("drift_ms", Stats::of(&account.drift_ms).to_json());
    let abs_drift: Vec<f64> = account.drift_ms.iter().map(|drift| drift.abs()).collect();
    run.put("abs_drift_ms", Stats::of(&abs_drift).to_json());
    run.put("abs_gap_error_ms", Stats::of(&account.abs_gap_error_ms).to_json());
    run.put("first_run_delay_ms", Stats::of(&account.first_run_delay_ms).to_json());
    run.put("counted_until_ms", WINDOW_MS + INTERVAL_MS / 2);
    // For reference: the code's start against the slot it ran, and slots run twice.
    let mut slot_lateness = Vec::new();
    let mut early = 0usize;
    let mut slots: HashMap<(&str, i64), usize> = HashMap::new();
    for execution in executions.iter().filter(|execution| execution.started()) {
        let (Some(slot), Some(start)) = (execution.scheduled_for, execution.code_time_ms()) else { continue };
        if start > until as f64 {
            continue;
        }
        let slot = slot.timestamp_millis();
        slot_lateness.push(start - slot as f64);
        early += usize::from(start < slot as f64);
        *slots.entry((execution.job_id.as_str(), slot)).or_default() += 1;
    }
    run.put("slot_lateness_ms", Stats::of(&slot_lateness).to_json());
    run.put("early", early);
    run.put("duplicates", slots.values().map(|count| count - 1).sum::<usize>());
    let (server_lateness, hand_off) = server_side(&executions);
    run.put("server_lateness_ms", server_lateness.to_json());
    run.put("start_to_code_ms", hand_off.to_json());
    run.put("statuses", statuses(&executions));
    Ok(())
}

/// Server RSS (and its workers') and database size, in MB.
fn footprint(run: &Run<'_>) -> (Option<f64>, Option<f64>, Option<f64>) {
    (run.target.rss_mb(), run.target.workers_rss_mb(), run.target.database_mb())
}

fn delta(before: Option<f64>, after: Option<f64>) -> Value {
    json!(before.zip(after).map(|(before, after)| round1(after - before)))
}

fn mb(value: Option<f64>) -> Value {
    json!(value.map(round1))
}

/// W4: 100,000 one-time jobs due in an hour; memory and database growth.
async fn memory(run: &mut Run<'_>) -> anyhow::Result<()> {
    const N: usize = 100_000;
    const DELAY_MS: i64 = 3_600_000;
    run.configure("n", N);
    run.configure("delay_ms", DELAY_MS);
    let api = run.agent("w4").await?;
    let (rss_before, workers_before, db_before) = footprint(run);
    let due = now_ms() + DELAY_MS;
    let prefix = format!("w4-{}", run.tag);
    let jobs = (0..N).map(|index| once_job(&prefix, index, due)).collect();
    let (ids, schedule_ms) = create(run, &api, jobs).await?;
    run.put("schedule_ms", schedule_ms);
    run.put("schedule_rate_jobs_per_s", round1(N as f64 / (schedule_ms / 1000.0)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_after, workers_after, db_after) = footprint(run);
    // The contract's "client" is the scheduler process: for Sundial the server (its RSS is also under server_*).
    for prefix in ["client_rss_mb", "server_rss_mb"] {
        run.put(&format!("{prefix}_before"), mb(rss_before));
        run.put(&format!("{prefix}_after"), mb(rss_after));
        run.put(&format!("{prefix}_delta"), delta(rss_before, rss_after));
    }
    run.put("workers_rss_mb_before", mb(workers_before));
    run.put("workers_rss_mb_after", mb(workers_after));
    run.put("server_db_mb_before", mb(db_before));
    run.put("server_db_mb_after", mb(db_after));
    run.put("server_db_mb_delta", delta(db_before, db_after));
    let executions = api.executions().await?;
    let ran_early =
        executions.iter().filter(|execution| !matches!(execution.status.as_str(), "pending" | "cancelled")).count();
    run.put("ran_early", ran_early);
    run.put("executions_recorded", executions.len());
    clean_up(run, &api, &ids).await;
    Ok(())
}

/// W5: `--n` one-time jobs an hour ahead (over agents of at most 100,000 jobs, the default quota); server RSS; then
/// a restart (SIGTERM, start again on the same data) with a few jobs due about 2 s after it: restart to first fire.
async fn million(run: &mut Run<'_>) -> anyhow::Result<()> {
    const DELAY_MS: i64 = 3_600_000;
    const PROBES: usize = 10;
    const PROBE_LEAD_MS: i64 = 2000;
    let n = run.args.n;
    let agents = n.div_ceil(JOBS_PER_AGENT).max(1);
    run.configure("n", n);
    run.configure("delay_ms", DELAY_MS);
    run.configure("agents", agents);
    let (rss_before, workers_before, db_before) = footprint(run);
    let due = now_ms() + DELAY_MS;
    let began = Instant::now();
    let mut all_ids = Vec::with_capacity(n);
    let mut clients = Vec::with_capacity(agents);
    for agent in 0..agents {
        let api = run.agent(&format!("w5-{agent}")).await?;
        let first = agent * JOBS_PER_AGENT;
        let count = JOBS_PER_AGENT.min(n - first);
        let prefix = format!("w5-{}", run.tag);
        let jobs = (first..first + count).map(|index| once_job(&prefix, index, due)).collect();
        let (ids, _) = create(run, &api, jobs).await?;
        clients.push(api);
        all_ids.push(ids);
        run.put("created", first + count);
    }
    let schedule_ms = elapsed_ms(began);
    run.put("schedule_ms", schedule_ms);
    run.put("schedule_rate_jobs_per_s", round1(n as f64 / (schedule_ms / 1000.0)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_after, workers_after, db_after) = footprint(run);
    run.put("server_rss_mb_before", mb(rss_before));
    run.put("server_rss_mb_after", mb(rss_after));
    run.put("server_rss_mb_delta", delta(rss_before, rss_after));
    run.put("workers_rss_mb_before", mb(workers_before));
    run.put("workers_rss_mb_after", mb(workers_after));
    run.put("server_db_mb_before", mb(db_before));
    run.put("server_db_mb_after", mb(db_after));
    run.put("server_db_mb_delta", delta(db_before, db_after));
    progress(format_args!("server RSS after {n} jobs: {:?} MB", rss_after.map(round1)));

    if !run.owns_server() {
        run.put("restart", "skipped: the bench does not own the server (--server)");
        for (api, ids) in clients.iter().zip(&all_ids) {
            clean_up(run, api, ids).await;
        }
        return Ok(());
    }
    let probe = run.agent("w5-probe").await?;
    let probe_due = now_ms() + PROBE_LEAD_MS;
    let prefix = format!("w5-probe-{}", run.tag);
    let jobs = (0..PROBES).map(|index| once_job(&prefix, index, probe_due)).collect();
    probe.create_jobs(jobs, PROBES, 1).await?;
    let server = run.target.owned()?;
    let shutdown = server.stop().await?;
    let spawned = now_ms();
    let ready = server.spawn().await?;
    let probe = probe.at(run.target.base_url());
    run.put("shutdown_ms", round1(shutdown.as_secs_f64() * 1000.0));
    run.put("restart_ready_ms", round1(ready.as_secs_f64() * 1000.0));
    run.put("probe_due_after_restart_ms", probe_due - spawned);
    let deadline = Instant::now() + Duration::from_secs(60).min(run.time_left());
    let mut first_fire = None;
    let mut probe_lateness = Vec::new();
    while Instant::now() < deadline {
        let executions = probe.executions().await?;
        let starts: Vec<f64> = executions.iter().filter_map(WireExecution::code_time_ms).collect();
        if starts.len() >= PROBES {
            first_fire = starts.iter().copied().reduce(f64::min);
            probe_lateness = starts.iter().map(|start| start - probe_due as f64).collect();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    run.put("restart_to_first_fire_ms", json!(first_fire.map(|first| round1(first - spawned as f64))));
    run.put("probe_lateness_ms", Stats::of(&probe_lateness).to_json());
    run.put("server_rss_mb_after_restart", mb(run.target.rss_mb()));
    run.put("timed_out", first_fire.is_none());
    run.put("cleanup", "server and data directory removed after the run");
    Ok(())
}
