//! The scheduler's run loop.
//!
//! The loop, per node:
//!
//! * **Record and claim** — active jobs whose next slot falls within `now + lookahead` get their slots recorded as
//!   occurrences with a pending execution each, and their `next_run_at` advanced, in one transaction per batch (the
//!   store's compare-and-set makes a slot recorded exactly once). Slots long past (downtime) go through the misfire
//!   policy. Then pending executions due within the lookahead (slots, retries, manual triggers) are claimed under
//!   a lease and handed to the timer. The task repeats at once while a burst is being recorded, and otherwise
//!   sleeps for the poll interval or until a change wakes it (a new job, a trigger, a retry).
//! * **Fire** — the timer keeps the claimed executions in an in-memory heap and does no store I/O of its own: a
//!   fire lead before each instant, it hands the execution to the dispatcher, which takes them in order (by
//!   instant, then by job), starts them in batches (one store write moves a batch to `running`, or `skipped` by the
//!   overlap policy) a bounded window ahead of free sandbox workers, and hands each to a worker as soon as one is
//!   free — in turn between the agents with due work, each running at most its share of the workers ([`Shares`]);
//!   the worker sets the run up and starts the job's code on the instant. Outcomes, with the retry and effect
//!   on the job each implies, are recorded in batches too (one store write for the outcomes of a few ms).
//!
//! Beside them run a heartbeat that extends this node's leases and an upkeep task that prunes old executions.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use sundial_core::policy::{Misfire, MAX_CATCH_UP_RUNS};
use sundial_core::{after_outcome, Execution, ExecutionStatus, Job, JobVersion, LogLine, Trigger};
use sundial_sandbox::{OutcomeStatus, RunRequest};
use sundial_store::{new_id, DueJob, ExecutionFinish, OccurrenceRecord, StartOutcome};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::engine::Engine;
use crate::host::{ExecutionHost, HostAdapter};

/// Slots older than this when recorded count as missed (downtime), not merely late.
const MISFIRE_THRESHOLD_SECONDS: i64 = 5;
/// At most this many slots of one job are recorded per pass (a 1-second interval with a long lookahead).
const MAX_SLOTS_PER_PASS: usize = 1000;
/// Tries to record an outcome while the store is unreachable (≈ 14 s in all).
const FINISH_ATTEMPTS: u32 = 10;
/// How long after a slot comes within the lookahead the loop records it, so that slots due within this much of
/// each other are recorded in one pass.
const RECORD_COALESCE_MS: i64 = 100;
/// Batch sizes of the record and claim steps (one store call each per pass of the loop).
const RECORD_BATCH: usize = 500;
const CLAIM_BATCH: usize = 1000;

/// The running scheduler: stop it gracefully with [`SchedulerHandle::drain`], or at once with
/// [`SchedulerHandle::shutdown`].
pub struct SchedulerHandle {
    engine: Engine,
    /// Stops taking work: the record-and-claim loop, the timer and the dispatcher.
    stop_intake: watch::Sender<bool>,
    intake: Vec<JoinHandle<()>>,
    /// Stops the rest: outcome recording, the heartbeat, upkeep and webhook delivery.
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// What a graceful stop did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Claims on executions this node had not started, handed back for any node to take at once.
    pub handed_back: u64,
    /// Runs that had not finished when the grace period ended (their node's lease runs out; they are abandoned
    /// and retried per their policy, by another node or by this one's next start).
    pub unfinished: usize,
}

impl SchedulerHandle {
    /// Stops the loop, the heartbeat and upkeep at once. Running executions finish on their own tasks.
    pub async fn shutdown(self) {
        self.engine.shared.in_flight.draining.store(true, std::sync::atomic::Ordering::SeqCst);
        self.engine.shared.in_flight.cut_off.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = self.stop_intake.send(true);
        let _ = self.stop.send(true);
        for task in self.intake.into_iter().chain(self.tasks) {
            let _ = task.await;
        }
    }

    /// Stops gracefully (a routine restart must lose nothing): takes no more work; starts what it has already
    /// marked running; hands back the claims it has not started, so another node or the next start takes them at
    /// once rather than after a lease; lets running executions finish and records their outcomes, for at most
    /// `grace`, while the heartbeat keeps this node's leases; then stops the rest and flushes the store.
    pub async fn drain(self, grace: StdDuration) -> Drained {
        let deadline = tokio::time::Instant::now() + grace;
        let engine = self.engine.clone();
        engine.shared.in_flight.draining.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = self.stop_intake.send(true);
        for task in self.intake {
            let _ = tokio::time::timeout_at(deadline, task).await;
        }
        let node = engine.config().node_id.clone();
        let mut drained = Drained::default();
        match engine.store().executions_hand_back(&node).await {
            Ok(count) => drained.handed_back = count,
            Err(error) => tracing::error!(%error, "cannot hand back claims; they are taken over when their lease ends"),
        }
        drained.unfinished = engine.shared.in_flight.wait_until_idle(deadline).await;
        engine.shared.in_flight.cut_off.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        // A durable write last: it takes every outcome recorded without waiting for the disk with it, and hands
        // back anything claimed meanwhile.
        match engine.store().executions_hand_back(&node).await {
            Ok(count) => drained.handed_back += count,
            Err(error) => tracing::error!(%error, "cannot flush the store"),
        }
        drained
    }
}

/// Runs this node has handed to sandbox workers and not yet recorded, and whether the node is stopping.
#[derive(Default)]
pub(crate) struct InFlight {
    runs: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
    /// Set when the node stops: no run is started any more.
    pub(crate) draining: std::sync::atomic::AtomicBool,
    /// Set when the grace period of a stop is over: the workers are about to be stopped, and what that does to a
    /// run is not its outcome. Such a run stays `running` under this node's lease, and is abandoned and retried
    /// per its policy when the lease ends, like a run of a node that died.
    pub(crate) cut_off: std::sync::atomic::AtomicBool,
}

/// Sandbox workers shared between agents: each agent runs at most [`Engine::runs_per_agent`] executions at once,
/// and a free worker goes to the agents with due work in turn, so one agent's burst delays another agent's runs by
/// at most one run's length.
#[derive(Default)]
pub(crate) struct Shares {
    /// Runs on workers, by agent.
    running: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    /// Told when a run of any agent ends.
    freed: tokio::sync::Notify,
}

impl Shares {
    fn running(&self, agent: &str) -> usize {
        self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(agent).copied().unwrap_or(0)
    }
}

/// One run of an agent on a worker, counted in its share until dropped (when the worker is done with it).
pub(crate) struct Share {
    engine: Engine,
    agent: String,
}

impl Share {
    fn enter(engine: &Engine, agent: &str) -> Share {
        let shares = &engine.shared.shares;
        *shares
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(agent.to_owned())
            .or_insert(0) += 1;
        Share { engine: engine.clone(), agent: agent.to_owned() }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let shares = &self.engine.shared.shares;
        {
            let mut running = shares.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(count) = running.get_mut(&self.agent) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    running.remove(&self.agent);
                }
            }
        }
        shares.freed.notify_waiters();
    }
}

/// Counts one run from the moment it is handed to a worker (before its task starts, so a stop that looks at the
/// count cannot miss it) until its outcome is recorded.
pub(crate) struct InFlightRun(Engine);

impl InFlightRun {
    pub(crate) fn enter(engine: &Engine) -> InFlightRun {
        engine.shared.in_flight.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlightRun(engine.clone())
    }
}

impl InFlight {
    /// Waits until no run is in flight or `deadline` passes; answers how many are still running.
    async fn wait_until_idle(&self, deadline: tokio::time::Instant) -> usize {
        loop {
            let idle = self.idle.notified();
            let runs = self.runs.load(std::sync::atomic::Ordering::SeqCst);
            if runs == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.runs.load(std::sync::atomic::Ordering::SeqCst);
            }
        }
    }
}

impl Drop for InFlightRun {
    fn drop(&mut self) {
        let in_flight = &self.0.shared.in_flight;
        if in_flight.runs.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            in_flight.idle.notify_waiters();
        }
    }
}

impl Engine {
    /// The most executions one agent runs at once on this node: the configured share, or three quarters of the
    /// sandbox workers (at least one), so that another agent's due run always finds a worker.
    pub fn runs_per_agent(&self) -> usize {
        let workers = self.shared.pool.stats().workers.max(1);
        self.config().max_runs_per_agent.unwrap_or(workers * 3 / 4).clamp(1, workers)
    }

    /// Waits until `agent` is under its share, then counts a run of it.
    async fn share(&self, agent: &str) -> Share {
        let shares = &self.shared.shares;
        loop {
            let freed = shares.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if shares.running(agent) < self.runs_per_agent() {
                return Share::enter(self, agent);
            }
            freed.await;
        }
    }

    /// Recovers from an earlier run (claims released, orphaned runs abandoned and retried), then starts the loop,
    /// the heartbeat and upkeep.
    pub async fn start(&self) -> Result<SchedulerHandle, sundial_store::StoreError> {
        self.recover().await?;
        let (stop_intake, intake_stopped) = watch::channel(false);
        let (stop, stopped) = watch::channel(false);
        let (timer, claimed) = mpsc::unbounded_channel();
        let (fire, fired) = mpsc::unbounded_channel();
        let (outcomes, recorded) = mpsc::unbounded_channel();
        let _ = self.shared.outcomes.set(outcomes);
        let intake = vec![
            tokio::spawn(claim_loop(self.clone(), timer, intake_stopped.clone())),
            tokio::spawn(fire_loop(self.clone(), claimed, fire, intake_stopped.clone())),
            tokio::spawn(dispatch_loop(self.clone(), fired, intake_stopped, stopped.clone())),
        ];
        let tasks = vec![
            tokio::spawn(record_outcomes(self.clone(), recorded, stopped.clone())),
            tokio::spawn(heartbeat(self.clone(), stopped.clone())),
            tokio::spawn(upkeep(self.clone(), stopped.clone())),
            tokio::spawn(crate::outbound::deliver_webhooks(self.clone(), stopped)),
        ];
        Ok(SchedulerHandle { engine: self.clone(), stop_intake, intake, stop, tasks })
    }

    /// Releases claims of earlier processes and finishes their running executions as `abandoned` (with retries
    /// per policy): on a single node every earlier owner is dead; with several, only those whose lease expired.
    async fn recover(&self) -> Result<(), sundial_store::StoreError> {
        let store = self.store();
        let node = &self.config().node_id;
        if self.config().single_node {
            store.executions_release_claims(node).await?;
        }
        let live_owner = self.config().single_node.then_some(node.as_str());
        let orphans = store.executions_orphaned(self.now(), live_owner).await?;
        for orphan in orphans {
            self.abandon(orphan).await?;
        }
        Ok(())
    }

    /// Marks a running execution whose node is gone as `abandoned`, retrying it per its job's policy. Its error says
    /// which node ran it and when that node's lease ended.
    pub async fn abandon(&self, orphan: sundial_store::Orphan) -> Result<(), sundial_store::StoreError> {
        let sundial_store::Orphan { execution, owner, lease_until } = orphan;
        let store = self.store();
        let job = store.job_get(&execution.agent_id, &execution.job_id).await?;
        let version = store.version_get(&execution.job_id, &execution.version_id).await?;
        let (Some(job), Some(version)) = (job, version) else {
            let finish = plain_finish(&execution, ExecutionStatus::Abandoned, self.now());
            store.execution_finish(&finish).await?;
            return Ok(());
        };
        let outcome = RunOutcome {
            status: ExecutionStatus::Abandoned,
            result: None,
            error: Some(match (owner, lease_until) {
                (Some(owner), Some(until)) => format!(
                    "the node running this execution ({owner}) stopped before it finished: its lease ended at {}",
                    sundial_core::wire::instant(until)
                ),
                _ => "the node running this execution stopped before it finished".into(),
            }),
            logs: Vec::new(),
            duration_ms: None,
        };
        self.finish(&execution, &job, &version, outcome, None).await;
        Ok(())
    }

    /// Plans the slots of one due job: which to record and run, which are missed, and the next slot.
    fn plan(&self, due: &DueJob, now: DateTime<Utc>, horizon: DateTime<Utc>) -> Option<OccurrenceRecord> {
        let job = &due.job;
        let expected = job.next_run_at?;
        let compiled = match self.compiled_schedule(&due.version) {
            Ok(compiled) => compiled,
            Err(error) => {
                tracing::error!(job = %job.id, %error, "stored schedule no longer compiles; no further slots");
                return Some(OccurrenceRecord {
                    job_id: job.id.clone(),
                    expected_next_run_at: expected,
                    next_run_at: None,
                    missed: 0,
                    slots: Vec::new(),
                });
            }
        };
        if !due.version.schedule.is_recurring() {
            // A once job has one slot; a past-due once job always runs.
            return Some(OccurrenceRecord {
                job_id: job.id.clone(),
                expected_next_run_at: expected,
                next_run_at: None,
                missed: 0,
                slots: vec![first_attempt(job, &due.version.id, Trigger::Schedule, Some(expected), expected, now)],
            });
        }
        let misfire_before = now - Duration::seconds(MISFIRE_THRESHOLD_SECONDS);
        let mut slots = Vec::new();
        let mut missed_slots = Vec::new();
        let mut missed_count = 0u64;
        let mut jumped = false;
        let grace = Duration::seconds(job.policy.misfire_grace_seconds.min(i64::MAX as u64 / 1000) as i64);
        let mut slot = Some(expected);
        while let Some(at) = slot {
            if at > horizon || slots.len() >= MAX_SLOTS_PER_PASS {
                break;
            }
            if at < misfire_before {
                missed_count += 1;
                if missed_slots.len() as u64 >= MAX_CATCH_UP_RUNS {
                    missed_slots.remove(0);
                }
                missed_slots.push(at);
                // Far behind: count the old part of the gap instead of walking it slot by slot, and walk only the
                // last grace period, where the newest missed slots (the ones a catch-up may run) are.
                let resume = misfire_before - grace;
                if missed_count > 10_000 && !jumped && resume > at {
                    jumped = true;
                    missed_count += compiled.count_slots(at, resume, job.anchor_at, u64::MAX / 2);
                    slot = compiled.next_after(resume, job.anchor_at);
                    continue;
                }
            } else {
                slots.push(at);
            }
            slot = compiled.next_after(at, job.anchor_at);
        }
        let caught_up: Vec<DateTime<Utc>> = match job.policy.misfire {
            Misfire::Skip => Vec::new(),
            Misfire::RunAll => missed_slots,
            Misfire::RunOnce => missed_slots
                .last()
                .filter(|newest| now - **newest <= grace)
                .map(|newest| vec![*newest])
                .unwrap_or_default(),
        };
        let missed = missed_count - caught_up.len() as u64;
        if missed > 0 {
            self.shared.metrics.missed(missed);
            tracing::info!(job = %job.id, missed, "slots missed while no scheduler ran");
        }
        let executions = caught_up
            .into_iter()
            .chain(slots)
            .map(|at| first_attempt(job, &due.version.id, Trigger::Schedule, Some(at), at, now))
            .collect();
        Some(OccurrenceRecord {
            job_id: job.id.clone(),
            expected_next_run_at: expected,
            next_run_at: slot,
            missed,
            slots: executions,
        })
    }

    /// Records one batch of due slots, then claims one batch of due executions. Answers what was claimed and
    /// whether more work may be waiting (the loop then fires what is due and comes back at once instead of sleeping).
    async fn record_and_claim(&self) -> Result<(Vec<Execution>, bool), sundial_store::StoreError> {
        let store = self.store();
        let now = self.now();
        let horizon = now + self.config().lookahead;
        let due = store.jobs_due(horizon, RECORD_BATCH).await?;
        let records: Vec<OccurrenceRecord> = due.iter().filter_map(|due| self.plan(due, now, horizon)).collect();
        let applied = if records.is_empty() { 0 } else { store.occurrences_record(&records, now).await? };
        let more_slots = due.len() == RECORD_BATCH && applied > 0;
        let lease_until = now + self.config().lease;
        let claimed = store.executions_claim(horizon, &self.config().node_id, lease_until, now, CLAIM_BATCH).await?;
        let more_claims = claimed.len() == CLAIM_BATCH;
        Ok((claimed, more_slots || more_claims))
    }

    /// Starts a batch of fired executions in one store write; answers those that are to run now. A slot waiting
    /// behind a running one (`queue_one`) is retried on its own; a failed write leaves the batch to a later claim
    /// (the claims' lease runs out and any node claims them again).
    async fn start_batch(self, batch: Vec<Fired>) -> Vec<sundial_store::Started> {
        let now = self.now();
        let lease_until = now + self.config().lease;
        let starts: Vec<(String, DateTime<Utc>)> =
            batch.iter().map(|fired| (fired.id.clone(), now.max(fired.due_at))).collect();
        let outcomes = match self.store().executions_start(&starts, &self.config().node_id, lease_until).await {
            Ok(outcomes) => outcomes,
            Err(error) => {
                tracing::error!(%error, executions = batch.len(), "cannot start executions; leaving them to a later claim");
                return Vec::new();
            }
        };
        let mut started = Vec::with_capacity(outcomes.len());
        for (fired, outcome) in batch.into_iter().zip(outcomes) {
            match outcome {
                StartOutcome::Started(one) => started.push(*one),
                StartOutcome::NotRun(status) => self.shared.metrics.finished(status),
                StartOutcome::Busy => {
                    let engine = self.clone();
                    tokio::spawn(async move {
                        engine.shared.clock.sleep_until(engine.now() + Duration::milliseconds(200)).await;
                        engine.dispatch(fired).await;
                    });
                }
                StartOutcome::Gone => {}
            }
        }
        started
    }

    /// Starts and runs one execution on its own (a slot that waited behind a running one): the store moves it to
    /// `running` only once a worker is reserved for it, so an execution still waiting for a worker stays a pending
    /// claim that another node may take over.
    ///
    /// It counts as in flight before it looks whether the node is stopping: either a stop sees it and waits for it,
    /// or it sees the stop and leaves its claim to be handed back — never a run started after the stop stopped
    /// waiting.
    async fn dispatch(self, fired: Fired) {
        let Fired { id: execution_id, due_at, agent } = fired;
        let store = self.store().clone();
        loop {
            let in_flight = InFlightRun::enter(&self);
            if self.shared.in_flight.draining.load(std::sync::atomic::Ordering::SeqCst) {
                // The node is stopping: the claim is handed back with the others.
                return;
            }
            let share = self.share(&agent).await;
            let Some(reservation) = self.reserve(&execution_id).await else { return };
            if self.shared.in_flight.cut_off.load(std::sync::atomic::Ordering::SeqCst) {
                // The stop's grace ended while this waited for a worker: its claim was handed back.
                return;
            }
            let now = self.now();
            let lease_until = now + self.config().lease;
            let started_at = now.max(due_at);
            match store.execution_start(&execution_id, &self.config().node_id, lease_until, started_at).await {
                Ok(StartOutcome::Started(started)) => {
                    self.run(*started, reservation, in_flight, share).await;
                    return;
                }
                Ok(StartOutcome::NotRun(status)) => {
                    self.shared.metrics.finished(status);
                    return;
                }
                Ok(StartOutcome::Busy) => {
                    drop((reservation, in_flight, share));
                    self.shared.clock.sleep_until(now + Duration::milliseconds(200)).await;
                }
                Ok(StartOutcome::Gone) => return,
                Err(error) => {
                    // The claim's lease runs out and the execution is claimed again (by any node).
                    tracing::error!(execution = %execution_id, %error, "cannot start execution; leaving it to a later claim");
                    return;
                }
            }
        }
    }

    /// Reserves a sandbox worker for an execution, or answers `None` (logged) when the pool cannot give one.
    async fn reserve(&self, execution_id: &str) -> Option<sundial_sandbox::Reservation> {
        match self.shared.pool.reserve().await {
            Ok(reservation) => Some(reservation),
            Err(error) => {
                tracing::error!(execution = %execution_id, %error, "no sandbox worker available");
                None
            }
        }
    }

    /// Runs a started execution on its reserved worker and records the outcome; `_in_flight` counts it until then,
    /// so a node that stops gracefully waits for it, and `share` counts it in its agent's share while it runs.
    async fn run(
        &self,
        started: sundial_store::Started,
        reservation: sundial_sandbox::Reservation,
        _in_flight: InFlightRun,
        share: Share,
    ) {
        let sundial_store::Started { execution, job, version, .. } = started;
        let started = execution.started_at.unwrap_or_else(|| self.now());
        if execution.trigger == Trigger::Schedule {
            let lateness = (started - execution.due_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
            self.shared.metrics.fired(lateness);
        }
        let env = self.agent_env(&job.agent_id, job.authority).await;
        // A run dispatched ahead of its instant starts on it (never more than the fire lead ahead, whatever the
        // clock says).
        let ahead = (started - self.now()).clamp(Duration::zero(), self.config().fire_lead);
        let request = RunRequest {
            code: version.code.clone(),
            job: sandbox_job(&job, &execution),
            env: (*env).clone(),
            timeout: StdDuration::from_secs(u64::from(version.timeout_seconds)),
            kind: match version.kind {
                sundial_core::CodeKind::Function => sundial_sandbox::CodeKind::Function,
                sundial_core::CodeKind::Module => sundial_sandbox::CodeKind::Module,
            },
            start_at: ahead
                .to_std()
                .ok()
                .filter(|ahead| !ahead.is_zero())
                .map(|ahead| std::time::Instant::now() + ahead),
        };
        let host = Arc::new(HostAdapter(Arc::new(ExecutionHost::new(self.clone(), &job, &execution))));
        let outcome = reservation.run(request, host).await;
        drop(share);
        if self.shared.in_flight.cut_off.load(std::sync::atomic::Ordering::SeqCst) {
            tracing::warn!(execution = %execution.id, "run cut off by the node stopping; left to its lease");
            return;
        }
        let status = match outcome.status {
            OutcomeStatus::Completed => ExecutionStatus::Completed,
            OutcomeStatus::Failed => ExecutionStatus::Failed,
            OutcomeStatus::Timeout => ExecutionStatus::Timeout,
            OutcomeStatus::Killed => ExecutionStatus::Killed,
        };
        let outcome = RunOutcome {
            status,
            result: outcome.result,
            error: outcome.error,
            logs: outcome
                .logs
                .into_iter()
                .map(|line| LogLine { level: line.level, message: line.message, at: line.at })
                .collect(),
            duration_ms: Some(outcome.duration.as_millis() as i64),
        };
        let owner = Some(self.config().node_id.clone());
        self.finish(&execution, &job, &version, outcome, owner).await;
    }

    /// Whether `execution` is an attempt at the last slot of a schedule that ends (`until`, `maxRuns`): after it the
    /// job ends like a once job.
    fn is_last_slot(&self, execution: &Execution, job: &Job, version: &JobVersion) -> bool {
        if execution.trigger == Trigger::Manual || !version.schedule.bounds().is_some_and(|bounds| bounds.is_bounded())
        {
            return false;
        }
        let Some(slot) = execution.scheduled_for else { return false };
        self.compiled_schedule(version).is_ok_and(|compiled| compiled.next_after(slot, job.anchor_at).is_none())
    }

    /// Records a final outcome with its retry and job effect (the one decision of `after_outcome`).
    async fn finish(
        &self,
        execution: &Execution,
        job: &Job,
        version: &JobVersion,
        outcome: RunOutcome,
        lease_owner: Option<String>,
    ) {
        let now = self.now();
        let jitter = jitter_of(&execution.id);
        let after = after_outcome(
            outcome.status,
            execution,
            version.retry.as_ref(),
            !version.schedule.is_recurring() || self.is_last_slot(execution, job, version),
            &job.policy,
            job.consecutive_failures,
            now,
            jitter,
        );
        let retry = after.retry_at.map(|due_at| Execution {
            id: new_id("exe"),
            status: ExecutionStatus::Pending,
            trigger: if execution.trigger == Trigger::Manual { Trigger::Manual } else { Trigger::Retry },
            due_at,
            started_at: None,
            completed_at: None,
            duration_ms: None,
            result: None,
            error: None,
            retry_count: execution.retry_count + 1,
            logs: Vec::new(),
            created_at: now,
            ..execution.clone()
        });
        let has_retry = retry.is_some();
        let finish = ExecutionFinish {
            id: execution.id.clone(),
            status: outcome.status,
            result: outcome.result,
            error: outcome.error,
            logs: outcome.logs,
            completed_at: now,
            duration_ms: outcome.duration_ms,
            retry,
            job_effect: after.job,
            lease_owner,
        };
        // A store outage (a database restart) should not cost a finished run: keep trying for about a lease. If
        // another node abandoned the run meanwhile, the fenced write is refused and its retry stands.
        let mut attempt = 0u32;
        loop {
            let written = match (attempt, self.shared.outcomes.get()) {
                (0, Some(outcomes)) => {
                    let (reply, answer) = tokio::sync::oneshot::channel();
                    match outcomes.send((finish.clone(), reply)) {
                        Ok(()) => answer.await.unwrap_or(Err(sundial_store::StoreError::Closed)),
                        Err(_) => self.store().execution_finish(&finish).await,
                    }
                }
                _ => self.store().execution_finish(&finish).await,
            };
            match written {
                Ok(true) => self.shared.metrics.finished(outcome.status),
                Ok(false) => {
                    self.shared.metrics.refused_late_result();
                    tracing::warn!(execution = %execution.id, "late result refused: the execution is no longer ours");
                    let note = format!(
                        "late result refused: node {} finished this run ({}) after another node had taken it over",
                        self.config().node_id,
                        outcome.status.as_str()
                    );
                    if let Err(error) = self.store().execution_note(&execution.id, &note).await {
                        tracing::warn!(%error, "cannot record the refused late result");
                    }
                }
                Err(error) if attempt < FINISH_ATTEMPTS => {
                    attempt += 1;
                    tracing::warn!(execution = %execution.id, %error, attempt, "cannot record execution outcome yet");
                    tokio::time::sleep(StdDuration::from_millis(250 * u64::from(attempt))).await;
                    continue;
                }
                Err(error) => tracing::error!(execution = %execution.id, %error, "cannot record execution outcome"),
            }
            break;
        }
        if has_retry {
            self.wake();
        }
    }
}

/// An outcome waiting to be recorded, with the answer its run waits for.
type PendingOutcome = (ExecutionFinish, tokio::sync::oneshot::Sender<sundial_store::Result<bool>>);

/// Where runs hand their outcomes to [`record_outcomes`].
pub(crate) type Outcomes = mpsc::UnboundedSender<PendingOutcome>;

/// The most outcomes one store write records, and how long the first of them waits for others.
const OUTCOME_BATCH: usize = 128;

/// Records the outcomes of runs in batches, one store write each: a run's outcome waits at most
/// [`OUTCOME_LINGER`] for others to share its write. A batch that fails answers each of its runs with the error, and
/// each retries on its own.
async fn record_outcomes(
    engine: Engine,
    mut outcomes: mpsc::UnboundedReceiver<PendingOutcome>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut stopping = false;
    loop {
        let first = if stopping {
            // Stopping: record what was handed over already, then end (later outcomes are written one by one).
            match outcomes.try_recv() {
                Ok(first) => first,
                Err(_) => return,
            }
        } else {
            tokio::select! {
                first = outcomes.recv() => match first {
                    Some(first) => first,
                    None => return,
                },
                _ = stopped.changed() => {
                    stopping = true;
                    continue;
                }
            }
        };
        let mut batch = vec![first];
        let linger = tokio::time::sleep(engine.config().outcome_linger.to_std().unwrap_or_default());
        tokio::pin!(linger);
        while batch.len() < OUTCOME_BATCH {
            tokio::select! {
                next = outcomes.recv() => match next {
                    Some(next) => batch.push(next),
                    None => break,
                },
                _ = &mut linger => break,
            }
        }
        let (finishes, replies): (Vec<ExecutionFinish>, Vec<_>) = batch.into_iter().unzip();
        match engine.store().executions_finish(&finishes).await {
            Ok(recorded) => {
                for (reply, recorded) in replies.into_iter().zip(recorded) {
                    let _ = reply.send(Ok(recorded));
                }
            }
            Err(error) => {
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// The first attempt of a new occurrence (a scheduled slot) or of a manual trigger: pending, due at `due_at`.
pub(crate) fn first_attempt(
    job: &Job,
    version_id: &str,
    trigger: Trigger,
    scheduled_for: Option<DateTime<Utc>>,
    due_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Execution {
    Execution {
        id: new_id("exe"),
        agent_id: job.agent_id.clone(),
        job_id: job.id.clone(),
        version_id: version_id.to_owned(),
        occurrence_id: new_id("occ"),
        status: ExecutionStatus::Pending,
        trigger,
        scheduled_for,
        due_at,
        started_at: None,
        completed_at: None,
        duration_ms: None,
        result: None,
        error: None,
        retry_count: 0,
        logs: Vec::new(),
        created_at: now,
    }
}

/// What a run produced, before it is recorded.
struct RunOutcome {
    status: ExecutionStatus,
    result: Option<Value>,
    error: Option<String>,
    logs: Vec<LogLine>,
    duration_ms: Option<i64>,
}

fn plain_finish(execution: &Execution, status: ExecutionStatus, now: DateTime<Utc>) -> ExecutionFinish {
    ExecutionFinish {
        id: execution.id.clone(),
        status,
        result: None,
        error: None,
        logs: Vec::new(),
        completed_at: now,
        duration_ms: None,
        retry: None,
        job_effect: sundial_core::JobEffect::None,
        lease_owner: None,
    }
}

/// A number in `[0, 1)` derived from an id, so backoff jitter needs no random source and is reproducible.
fn jitter_of(id: &str) -> f64 {
    let hash =
        id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3));
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// The `job` object job code receives (SPEC §5), as JSON text. Its `data` (the full Job) and `activeVersion` (the
/// version the run runs) are left out: the sandbox asks for them (`job.data`, `job.version`) only when job code reads
/// them, which few jobs do; building them for every run cost more than the run.
fn sandbox_job(job: &Job, execution: &Execution) -> String {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct SandboxJob<'a> {
        id: &'a str,
        name: &'a str,
        metadata: &'a sundial_core::JsonObject,
        user_id: Option<&'a str>,
        execution: SandboxExecution<'a>,
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct SandboxExecution<'a> {
        id: &'a str,
        occurrence_id: &'a str,
        scheduled_for: Option<String>,
        retry_count: u32,
        trigger: &'a str,
    }
    let object = SandboxJob {
        id: &job.id,
        name: &job.name,
        metadata: &job.metadata,
        user_id: job.user_id.as_deref(),
        execution: SandboxExecution {
            id: &execution.id,
            occurrence_id: &execution.occurrence_id,
            scheduled_for: execution.scheduled_for.map(sundial_core::wire::instant),
            retry_count: execution.retry_count,
            trigger: execution.trigger.as_str(),
        },
    };
    serde_json::to_string(&object).unwrap_or_else(|_| "null".to_owned())
}

/// Records slots and claims executions, handing what it claimed to the timer.
async fn claim_loop(engine: Engine, timer: mpsc::UnboundedSender<Vec<Execution>>, mut stopped: watch::Receiver<bool>) {
    loop {
        if *stopped.borrow() {
            return;
        }
        let mut more = false;
        match engine.record_and_claim().await {
            Ok((claimed, more_work)) => {
                more = more_work;
                if !claimed.is_empty() && timer.send(claimed).is_err() {
                    return;
                }
            }
            Err(error) => tracing::error!(%error, "scheduler pass failed; retrying"),
        }
        if more {
            // A backlog (a burst of slots): keep recording and claiming; the timer fires as instants come.
            tokio::task::yield_now().await;
            continue;
        }
        // Wake when the next slot comes within the lookahead (a little after, so that slots due close together are
        // recorded in one pass), or after the poll interval, whichever is first: slots are then recorded at a steady
        // moment before they are due instead of whenever a poll happens to come.
        let now = engine.now();
        let mut wake_at = now + engine.config().poll_interval;
        if let Ok(Some(next_slot)) = engine.store().next_slot_at().await {
            let enters = next_slot - engine.config().lookahead + Duration::milliseconds(RECORD_COALESCE_MS);
            wake_at = wake_at.min(enters.max(now));
        }
        let sleep = engine.shared.clock.sleep_until(wake_at);
        tokio::select! {
            _ = sleep => {}
            _ = engine.shared.wake.notified() => {}
            _ = stopped.changed() => {}
        }
    }
}

/// An execution due at an instant, ordered by its instant, then by its job (so that the runs of recurring jobs due
/// at the same instant keep the same order from slot to slot), then by its id; with its agent.
type Due = Reverse<(DateTime<Utc>, String, String, String)>;

/// An execution the timer handed to the dispatcher: due at `due_at`, of `agent`.
#[derive(Clone, Debug)]
pub(crate) struct Fired {
    id: String,
    due_at: DateTime<Utc>,
    agent: String,
}

/// Keeps the claimed executions on a heap and hands each to the dispatcher a start lead before its instant, in order.
async fn fire_loop(
    engine: Engine,
    mut claimed: mpsc::UnboundedReceiver<Vec<Execution>>,
    fire: mpsc::UnboundedSender<Fired>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut heap: BinaryHeap<Due> = BinaryHeap::new();
    let mut queued: HashSet<String> = HashSet::new();
    let lead = engine.config().start_lead.max(engine.config().fire_lead);
    loop {
        let horizon = engine.now() + lead;
        while let Some(Reverse((due_at, ..))) = heap.peek() {
            if *due_at > horizon {
                break;
            }
            let Some(Reverse((due_at, _, id, agent))) = heap.pop() else { break };
            queued.remove(&id);
            if fire.send(Fired { id, due_at, agent }).is_err() {
                return;
            }
        }
        let next = heap.peek().map(|Reverse((due_at, ..))| *due_at - lead);
        let sleep = async {
            match next {
                Some(at) => engine.shared.clock.sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            batch = claimed.recv() => match batch {
                Some(batch) => {
                    for execution in batch {
                        if queued.insert(execution.id.clone()) {
                            heap.push(Reverse((execution.due_at, execution.job_id, execution.id, execution.agent_id)));
                        }
                    }
                }
                None => return,
            },
            _ = stopped.changed() => return,
        }
    }
}

/// Most executions one start batch carries.
const START_BATCH: usize = 128;

/// Takes the fired executions in order, starts them in batches (one store write each) a start lead before their
/// instant, and hands each started one to a sandbox worker a fire lead before its instant, or as soon as a worker is
/// free after that, so that under a burst they start in the order they fell due (first come, first served) rather
/// than in whatever order tasks get polled, and no worker waits for a store write.
///
/// Workers are shared between agents ([`Shares`]): a free worker goes to the next agent in turn that has a due run
/// and is under its share ([`Engine::runs_per_agent`]), so a burst of one agent — even of runs that compute for
/// seconds — delays another agent's run by at most one run's length, and never by the burst's length.
///
/// An agent's executions are started (marked `running`) at most a window of sixteen per run of its share ahead of
/// a free worker: enough to keep its workers busy while the next batch is written, few enough that `running` still
/// means a worker is about to take it (a few milliseconds of work under a burst). One batch is written at a time, so
/// the window is also what a burst can start per store round trip: with eight per worker, the starts, not the
/// workers, paced W1's drain and left a third of the CPU idle. Under a burst an agent's next executions are started
/// once half its window is handed over, not as soon as one run is: a batch then carries at least half a window,
/// where topping the window up after every write made batches as small as the writes were quick, and a store write
/// each few runs. A run cut off by the node's death before its worker took it is abandoned and retried like any
/// other. When the intake stops (`intake`), it starts nothing more and hands to workers what it has already started,
/// then ends; `stopped` ends it at once.
async fn dispatch_loop(
    engine: Engine,
    mut fired: mpsc::UnboundedReceiver<Fired>,
    mut intake: watch::Receiver<bool>,
    mut stopped: watch::Receiver<bool>,
) {
    use futures_util::future::{BoxFuture, FutureExt};
    use std::collections::{HashMap, VecDeque};

    let share = engine.runs_per_agent();
    let window = (share * 16).max(32);
    // Fired executions not started yet, by agent, each in the order they fell due.
    let mut queue: HashMap<String, VecDeque<Fired>> = HashMap::new();
    // Started executions by agent, and the agents with any, in turn.
    let mut ready: HashMap<String, VecDeque<sundial_store::Started>> = HashMap::new();
    let mut turn: VecDeque<String> = VecDeque::new();
    let mut starting: Option<BoxFuture<'static, Vec<sundial_store::Started>>> = None;
    let mut reserving: Option<(String, BoxFuture<'static, Option<sundial_sandbox::Reservation>>)> = None;
    let mut draining = false;
    loop {
        // Registered before the shares are read, so a run that ends meanwhile still wakes the loop.
        let freed = engine.shared.shares.freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        if draining && starting.is_none() && reserving.is_none() && ready.is_empty() {
            return;
        }
        // With a coalescing window, a batch is written once the first queued execution is due within what is left of
        // the start lead (or the batch is full): the executions handed over meanwhile share its write.
        let now = engine.now();
        let mut write_at: Option<DateTime<Utc>> = None;
        if !draining && starting.is_none() && !queue.is_empty() {
            let queued: usize = queue.values().map(VecDeque::len).sum();
            let earliest = queue.values().filter_map(|fired| fired.front().map(|fired| fired.due_at)).min();
            let coalesce_until = earliest.map(|due| due - engine.config().start_lead + engine.config().start_coalesce);
            match coalesce_until.filter(|until| *until > now && queued < START_BATCH) {
                Some(until) => write_at = Some(until),
                None => {
                    let batch = startable(&mut queue, &ready, window);
                    if !batch.is_empty() {
                        starting = Some(engine.clone().start_batch(batch).boxed());
                    }
                }
            }
        }
        // The next started execution goes to a worker a fire lead before its instant, not earlier: the first agent
        // in turn that has one due and is under its share.
        let mut next_due: Option<DateTime<Utc>> = None;
        if reserving.is_none() {
            let chosen = turn.iter().position(|agent| {
                let Some(at) = ready.get(agent).and_then(VecDeque::front).map(|started| started.execution.due_at)
                else {
                    return false;
                };
                if engine.shared.shares.running(agent) >= share {
                    return false;
                }
                let hand_over_at = at - engine.config().fire_lead;
                if hand_over_at <= now {
                    return true;
                }
                next_due = Some(next_due.map_or(hand_over_at, |next| next.min(hand_over_at)));
                false
            });
            if let Some(agent) = chosen.and_then(|index| turn.remove(index)) {
                turn.push_back(agent.clone());
                let (engine, id) = (engine.clone(), ready[&agent].front().map(|s| s.execution.id.clone()));
                let id = id.unwrap_or_default();
                reserving = Some((agent, async move { engine.reserve(&id).await }.boxed()));
                next_due = None;
            }
        }
        let waiting_for_share = reserving.is_none() && !ready.is_empty();
        let wake_at = match (next_due, write_at) {
            (Some(due), Some(write)) => Some(due.min(write)),
            (due, write) => due.or(write),
        };
        let wait_for_instant = async {
            match wake_at {
                Some(at) => engine.shared.clock.sleep_until(at).await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = stopped.changed() => {
                if !ready.is_empty() || starting.is_some() {
                    let left: Vec<&str> =
                        ready.values().flatten().map(|started| started.execution.id.as_str()).collect();
                    tracing::error!(
                        ?left,
                        starting = starting.is_some(),
                        "stopped with runs started but not handed to a worker; they are left to their lease"
                    );
                }
                return;
            }
            _ = intake.changed(), if !draining => {
                // What was fired but not started is a claim: handed back with the others.
                draining = true;
                queue.clear();
            }
            _ = wait_for_instant => {}
            _ = &mut freed, if waiting_for_share => {}
            next = fired.recv(), if !draining => match next {
                Some(next) => {
                    queue.entry(next.agent.clone()).or_default().push_back(next);
                    while let Ok(next) = fired.try_recv() {
                        queue.entry(next.agent.clone()).or_default().push_back(next);
                    }
                }
                // The timer ended (the intake is stopping): start nothing more, but hand over what is started.
                None => {
                    draining = true;
                    queue.clear();
                }
            },
            started = async { starting.as_mut().expect("guarded").await }, if starting.is_some() => {
                starting = None;
                for one in started {
                    let agent = one.execution.agent_id.clone();
                    let runs = ready.entry(agent.clone()).or_default();
                    if runs.is_empty() && !turn.contains(&agent) {
                        turn.push_back(agent);
                    }
                    runs.push_back(one);
                }
            }
            reservation = async { reserving.as_mut().expect("guarded").1.as_mut().await }, if reserving.is_some() => {
                let Some((agent, _)) = reserving.take() else { continue };
                let next = ready.get_mut(&agent).and_then(VecDeque::pop_front);
                match (reservation, next) {
                    (Some(reservation), Some(started)) => {
                        let engine = engine.clone();
                        let in_flight = InFlightRun::enter(&engine);
                        let share = Share::enter(&engine, &agent);
                        tokio::spawn(async move { engine.run(started, reservation, in_flight, share).await });
                    }
                    (None, Some(started)) => {
                        if let Some(runs) = ready.get_mut(&agent) {
                            runs.push_front(started);
                        }
                        tokio::time::sleep(StdDuration::from_millis(100)).await;
                    }
                    (_, None) => {}
                }
                if ready.get(&agent).is_some_and(VecDeque::is_empty) {
                    ready.remove(&agent);
                    turn.retain(|other| *other != agent);
                }
            }
        }
    }
}

/// Takes the next start batch out of `queue`, in the order the executions fell due across agents: the executions of
/// agents that have at most half their window started and waiting for a worker, up to a full window each and
/// [`START_BATCH`] in all. The others stay queued in their order. Its cost is the batch's size times the number of
/// agents with work queued, never the length of the queue.
fn startable(
    queue: &mut std::collections::HashMap<String, std::collections::VecDeque<Fired>>,
    ready: &std::collections::HashMap<String, std::collections::VecDeque<sundial_store::Started>>,
    window: usize,
) -> Vec<Fired> {
    let waiting = |agent: &str| ready.get(agent).map_or(0, std::collections::VecDeque::len);
    let mut room: Vec<(String, usize)> = queue
        .keys()
        .filter(|agent| waiting(agent) <= window / 2)
        .map(|agent| (agent.clone(), window - waiting(agent)))
        .collect();
    let mut batch = Vec::new();
    while batch.len() < START_BATCH {
        // The agent whose next execution fell due first, among those with room.
        let next = room
            .iter_mut()
            .filter(|(_, left)| *left > 0)
            .filter_map(|(agent, left)| queue.get(agent.as_str())?.front().map(|fired| (fired.due_at, agent, left)))
            .min_by_key(|(due_at, ..)| *due_at);
        let Some((_, agent, left)) = next else { break };
        let Some(fired) = queue.get_mut(agent.as_str()).and_then(std::collections::VecDeque::pop_front) else { break };
        *left -= 1;
        batch.push(fired);
    }
    queue.retain(|_, fired| !fired.is_empty());
    batch
}

/// Extends this node's leases, then abandons (and retries per policy) running executions whose lease ran out —
/// their node stopped heartbeating. After this node could not reach the store, it waits one lease before sweeping:
/// an outage of the store expires every node's leases at once, and the live nodes need a moment to renew theirs.
async fn heartbeat(engine: Engine, mut stopped: watch::Receiver<bool>) {
    let every = (engine.config().lease / 3).to_std().unwrap_or(StdDuration::from_secs(10));
    let mut sweep_not_before = engine.now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopped.changed() => return,
        }
        let now = engine.now();
        let lease_until = now + engine.config().lease;
        if let Err(error) = engine.store().executions_heartbeat(&engine.config().node_id, lease_until).await {
            tracing::error!(%error, "lease heartbeat failed");
            sweep_not_before = now + engine.config().lease;
            continue;
        }
        if now < sweep_not_before {
            continue;
        }
        match engine.store().executions_orphaned(now, None).await {
            Ok(orphans) => {
                for orphan in orphans {
                    tracing::warn!(
                        execution = %orphan.execution.id,
                        node = orphan.owner.as_deref().unwrap_or("-"),
                        "lease expired: abandoning the execution of a stopped node"
                    );
                    if let Err(error) = engine.abandon(orphan).await {
                        tracing::error!(%error, "cannot abandon an orphaned execution");
                    }
                }
            }
            Err(error) => tracing::error!(%error, "cannot look for orphaned executions"),
        }
    }
}

async fn upkeep(engine: Engine, mut stopped: watch::Receiver<bool>) {
    loop {
        let before = engine.now() - engine.config().retention;
        match engine.store().executions_prune(before, engine.config().keep_per_job).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "pruned old executions"),
            Err(error) => tracing::error!(%error, "pruning executions failed"),
        }
        if let Err(error) = engine.store().idempotency_prune(engine.now() - Duration::hours(24)).await {
            tracing::error!(%error, "pruning idempotency keys failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(StdDuration::from_secs(3600)) => {}
            _ = stopped.changed() => return,
        }
    }
}
