//! The scheduler's hot path on PostgreSQL, set-based: recording a batch of slots, claiming, starting and finishing
//! executions each take a fixed number of statements whatever the size of the batch — the rows go as arrays bound to
//! `unnest` — so the database's work per execution is the rows themselves, not round trips, plans and commits.
//!
//! What each reads is bounded by the batch, never by what the database holds: claims read the partial index of
//! unclaimed pending executions (and that of expired claims), which hold only executions waiting to run; every other
//! statement finds its rows by primary key. The lock order of the crate holds throughout: a batch locks its jobs in
//! id order, then its executions in id order.
//!
//! These are the scheduler's own bookkeeping, committed without waiting for the disk (`synchronous_commit = off`),
//! as the SQLite store commits them: a crash of the database's machine may lose the last fraction of a second of
//! them, which the scheduler recovers from — a lost slot record is recorded again (the lost commit did not advance
//! its job either), a lost start leaves a claim that runs again, a lost outcome leaves a running execution that is
//! abandoned and retried per its policy. What a client is told is stored (jobs, messages) commits synchronously, and
//! with it everything before it.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sundial_core::policy::Overlap;
use sundial_core::{Execution, ExecutionStatus, Job, JobEffect, JobVersion, Trigger};
use sundial_store::{ExecutionFinish, OccurrenceRecord, Result, StartOutcome, Started};
use tokio_postgres::types::{Json, ToSql};

use crate::store::{
    execution_from_row, job_from_row, version_from_row, EXECUTION_COLUMNS, EXECUTION_WIDTH, JOB_COLUMNS, JOB_WIDTH,
    VERSION_COLUMNS,
};
use crate::{get, jsonb, millis, opt_millis, query, query_one, text, Db, Tx};

/// The columns of `executions` an insert from arrays fills, in [`ExecutionArrays`] order.
const INSERTED_COLUMNS: &str = "id, agent_id, job_id, version_id, occurrence_id, status, trigger, scheduled_for, \
     due_at, started_at, completed_at, duration_ms, result, error, retry_count, logs, created_at";

/// Executions as parallel arrays, one per column, for `unnest`.
#[derive(Default)]
pub(crate) struct ExecutionArrays {
    id: Vec<String>,
    agent_id: Vec<String>,
    job_id: Vec<String>,
    version_id: Vec<String>,
    occurrence_id: Vec<String>,
    status: Vec<&'static str>,
    trigger: Vec<&'static str>,
    scheduled_for: Vec<Option<i64>>,
    due_at: Vec<i64>,
    started_at: Vec<Option<i64>>,
    completed_at: Vec<Option<i64>>,
    duration_ms: Vec<Option<i64>>,
    result: Vec<Option<Json<Value>>>,
    error: Vec<Option<String>>,
    retry_count: Vec<i64>,
    logs: Vec<Json<Value>>,
    created_at: Vec<i64>,
}

impl ExecutionArrays {
    fn push(&mut self, execution: &Execution) {
        self.id.push(execution.id.clone());
        self.agent_id.push(execution.agent_id.clone());
        self.job_id.push(execution.job_id.clone());
        self.version_id.push(execution.version_id.clone());
        self.occurrence_id.push(execution.occurrence_id.clone());
        self.status.push(execution.status.as_str());
        self.trigger.push(execution.trigger.as_str());
        self.scheduled_for.push(opt_millis(execution.scheduled_for));
        self.due_at.push(millis(execution.due_at));
        self.started_at.push(opt_millis(execution.started_at));
        self.completed_at.push(opt_millis(execution.completed_at));
        self.duration_ms.push(execution.duration_ms);
        self.result.push(execution.result.as_ref().map(jsonb));
        self.error.push(execution.error.as_deref().map(|error| text(error).into_owned()));
        self.retry_count.push(i64::from(execution.retry_count));
        self.logs.push(jsonb(&execution.logs));
        self.created_at.push(millis(execution.created_at));
    }

    fn is_empty(&self) -> bool {
        self.id.is_empty()
    }

    /// The arrays as parameters, in [`INSERTED_COLUMNS`] order.
    fn params(&self) -> [&(dyn ToSql + Sync); 17] {
        [
            &self.id,
            &self.agent_id,
            &self.job_id,
            &self.version_id,
            &self.occurrence_id,
            &self.status,
            &self.trigger,
            &self.scheduled_for,
            &self.due_at,
            &self.started_at,
            &self.completed_at,
            &self.duration_ms,
            &self.result,
            &self.error,
            &self.retry_count,
            &self.logs,
            &self.created_at,
        ]
    }
}

/// `unnest` of the arrays of [`ExecutionArrays`] bound from parameter `$first` on, named as the columns.
fn unnest_executions(first: usize) -> String {
    let types = [
        "text", "text", "text", "text", "text", "text", "text", "bigint", "bigint", "bigint", "bigint", "bigint",
        "jsonb", "text", "bigint", "jsonb", "bigint",
    ];
    let arrays: Vec<String> =
        types.iter().enumerate().map(|(index, kind)| format!("${}::{kind}[]", first + index)).collect();
    format!("unnest({}) AS e({INSERTED_COLUMNS})", arrays.join(", "))
}

/// Inserts executions in one statement.
pub(crate) async fn insert_executions<D: Db>(db: &D, executions: &ExecutionArrays) -> Result<()> {
    if executions.is_empty() {
        return Ok(());
    }
    let sql = format!("INSERT INTO executions ({INSERTED_COLUMNS}) SELECT * FROM {}", unnest_executions(1));
    crate::execute(db, &sql, &executions.params()).await?;
    Ok(())
}

/// Inserts one execution.
pub(crate) async fn insert_execution<D: Db>(db: &D, execution: &Execution) -> Result<()> {
    let mut one = ExecutionArrays::default();
    one.push(execution);
    insert_executions(db, &one).await
}

/// Records a batch of slots: the jobs are locked in id order and read, and each job whose `next_run_at` is still the
/// one the scheduler read (compare-and-set), and which is active, is advanced in one statement that also inserts its
/// occurrences — a slot recorded before is left alone — and, for each occurrence inserted, its execution. Answers how
/// many jobs it advanced.
pub(crate) async fn record(transaction: &Tx<'_>, records: &[OccurrenceRecord], now: DateTime<Utc>) -> Result<usize> {
    let ids: Vec<String> = records.iter().map(|record| record.job_id.clone()).collect();
    let rows = query(
        transaction,
        "SELECT id, next_run_at, active AND deleted_at IS NULL FROM jobs WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        &[&ids],
    )
    .await?;
    let mut current: HashMap<String, Option<i64>> = HashMap::with_capacity(rows.len());
    for row in rows {
        let live: bool = get(&row, 2)?;
        current.insert(get(&row, 0)?, if live { get(&row, 1)? } else { None });
    }
    let mut job_ids = Vec::with_capacity(records.len());
    let mut seen = std::collections::HashSet::with_capacity(records.len());
    let (mut next, mut missed) = (Vec::new(), Vec::new());
    let mut slots = ExecutionArrays::default();
    for record in records {
        let expected = millis(record.expected_next_run_at);
        if current.get(&record.job_id).copied().flatten() != Some(expected) || !seen.insert(record.job_id.as_str()) {
            continue;
        }
        job_ids.push(record.job_id.clone());
        next.push(opt_millis(record.next_run_at));
        missed.push(record.missed.min(i64::MAX as u64) as i64);
        for slot in record.slots.iter().filter(|slot| slot.scheduled_for.is_some()) {
            slots.push(slot);
        }
    }
    if job_ids.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "WITH advanced AS (UPDATE jobs j SET next_run_at = u.next_run_at, \
             missed_slots = j.missed_slots + u.missed, updated_at = $4 \
           FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS u(id, next_run_at, missed) \
           WHERE j.id = u.id RETURNING j.id), \
         slots AS (SELECT * FROM {}), \
         occurred AS (INSERT INTO occurrences (id, job_id, scheduled_for, created_at) \
           SELECT occurrence_id, job_id, scheduled_for, $4 FROM slots \
           ON CONFLICT (job_id, scheduled_for) DO NOTHING RETURNING id), \
         inserted AS (INSERT INTO executions ({INSERTED_COLUMNS}) \
           SELECT * FROM slots WHERE occurrence_id IN (SELECT id FROM occurred) RETURNING 1) \
         SELECT (SELECT count(*) FROM advanced), (SELECT count(*) FROM inserted)",
        unnest_executions(5)
    );
    let now = millis(now);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&job_ids, &next, &missed, &now];
    params.extend(slots.params());
    let row = query_one(transaction, &sql, &params).await?;
    Ok(get::<i64>(&row, 0)?.max(0) as usize)
}

/// Claims up to `limit` pending executions due by `horizon` for `owner` in one statement: the unclaimed ones
/// (`executions_unclaimed`, which holds only those) and those whose claim expired (`executions_claimed`), each
/// skipping rows another node is claiming right now. Answers them by due time.
pub(crate) async fn claim(
    transaction: &Tx<'_>,
    horizon: DateTime<Utc>,
    owner: &str,
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<Execution>> {
    let sql = format!(
        "WITH fresh AS (SELECT id FROM executions WHERE status = 'pending' AND lease_owner IS NULL AND due_at <= $1 \
             ORDER BY due_at LIMIT $5 FOR UPDATE SKIP LOCKED), \
           expired AS (SELECT id FROM executions WHERE status = 'pending' AND lease_owner IS NOT NULL \
             AND lease_until < $4 AND due_at <= $1 ORDER BY lease_until LIMIT $5 FOR UPDATE SKIP LOCKED) \
         UPDATE executions SET lease_owner = $2, lease_until = $3 \
         WHERE id IN (SELECT id FROM fresh UNION ALL SELECT id FROM expired) \
         RETURNING {EXECUTION_COLUMNS}"
    );
    let limit = limit.min(i64::MAX as usize) as i64;
    let rows =
        query(transaction, &sql, &[&millis(horizon), &owner, &millis(lease_until), &millis(now), &limit]).await?;
    let mut claimed = rows.iter().map(execution_from_row).collect::<Result<Vec<_>>>()?;
    claimed.sort_by_key(|execution| execution.due_at);
    Ok(claimed)
}

/// Versions never change once made, so every node keeps those it read.
#[derive(Default)]
pub(crate) struct Versions {
    cached: std::sync::Mutex<HashMap<String, Arc<JobVersion>>>,
}

/// Versions kept at most before the cache starts over.
const VERSIONS_KEPT: usize = 100_000;

impl Versions {
    /// The versions with these ids (those that exist), from the cache or in one query.
    pub(crate) async fn get(&self, transaction: &Tx<'_>, ids: &[String]) -> Result<HashMap<String, Arc<JobVersion>>> {
        let mut found = HashMap::new();
        let mut missing = std::collections::HashSet::new();
        {
            let cached = self.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for id in ids {
                match cached.get(id) {
                    Some(version) => {
                        found.insert(id.clone(), version.clone());
                    }
                    None => {
                        missing.insert(id.clone());
                    }
                }
            }
        }
        let missing: Vec<String> = missing.into_iter().collect();
        if missing.is_empty() {
            return Ok(found);
        }
        let sql = format!("SELECT {VERSION_COLUMNS} FROM job_versions WHERE id = ANY($1)");
        let rows = query(transaction, &sql, &[&missing]).await?;
        let mut cached = self.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cached.len() + rows.len() > VERSIONS_KEPT {
            cached.clear();
        }
        for row in &rows {
            let version = Arc::new(version_from_row(row, 0)?);
            cached.insert(version.id.clone(), version.clone());
            found.insert(version.id.clone(), version);
        }
        Ok(found)
    }
}

/// Starts a batch of executions (each at its own instant) for `owner`, in one transaction of a few statements: the
/// executions are locked in id order and read with their jobs; the jobs of recurring slots (whose overlap policy
/// looks at the runs already running) are then locked too, skipping those another transaction holds — their slots
/// wait and try again, so a start never waits for a job while it holds executions; each execution is decided as one
/// start alone would be (the overlap policy counts the runs of its job started earlier in the batch too); then every
/// change is written in one statement. A job's `last_run_at` is written with the run's outcome. Answers an outcome
/// per start, in order.
pub(crate) async fn start(
    transaction: &Tx<'_>,
    versions: &Versions,
    starts: &[(String, DateTime<Utc>)],
    owner: &str,
    lease_until: DateTime<Utc>,
) -> Result<Vec<StartOutcome>> {
    let ids: Vec<String> = starts.iter().map(|(id, _)| id.clone()).collect();
    let sql = format!(
        "SELECT e.{}, e.lease_owner, j.{}, j.deleted_at IS NULL FROM executions e LEFT JOIN jobs j ON j.id = e.job_id \
         WHERE e.id = ANY($1) ORDER BY e.id FOR UPDATE OF e",
        EXECUTION_COLUMNS.replace(", ", ", e."),
        JOB_COLUMNS.replace(", ", ", j.")
    );
    let mut executions = HashMap::with_capacity(ids.len());
    let mut jobs: HashMap<String, Option<Job>> = HashMap::new();
    for row in query(transaction, &sql, &[&ids]).await? {
        let execution = execution_from_row(&row)?;
        let lease_owner: Option<String> = get(&row, EXECUTION_WIDTH)?;
        let at = EXECUTION_WIDTH + 1;
        let live: Option<bool> = get(&row, at + JOB_WIDTH)?;
        if live.is_some() {
            jobs.insert(execution.job_id.clone(), live.unwrap_or(false).then(|| job_from_row(&row, at)).transpose()?);
        }
        executions.insert(execution.id.clone(), (execution, lease_owner));
    }
    let version_ids: Vec<String> = executions.values().map(|(execution, _)| execution.version_id.clone()).collect();
    let versions = versions.get(transaction, &version_ids).await?;
    // The recurring jobs whose slots start here: locked (those another transaction holds are left to a later try)
    // and their runs already running counted, for the overlap policy.
    let mut overlapping: Vec<String> = executions
        .values()
        .filter(|(execution, _)| execution.trigger == Trigger::Schedule)
        .filter(|(execution, _)| versions.get(&execution.version_id).is_some_and(|v| v.schedule.is_recurring()))
        .map(|(execution, _)| execution.job_id.clone())
        .collect();
    overlapping.sort();
    overlapping.dedup();
    let mut locked: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut running: HashMap<String, i64> = HashMap::new();
    if !overlapping.is_empty() {
        for row in query(
            transaction,
            "SELECT id FROM jobs WHERE id = ANY($1) ORDER BY id FOR UPDATE SKIP LOCKED",
            &[&overlapping],
        )
        .await?
        {
            locked.insert(get(&row, 0)?);
        }
        let rows = query(
            transaction,
            "SELECT job_id, count(*) FROM executions WHERE job_id = ANY($1) AND status = 'running' GROUP BY job_id",
            &[&overlapping],
        )
        .await?;
        for row in rows {
            running.insert(get(&row, 0)?, get(&row, 1)?);
        }
    }

    let mut outcomes = Vec::with_capacity(starts.len());
    let mut changes = StartChanges::default();
    for (id, now) in starts {
        let Some((execution, lease_owner)) = executions.remove(id) else {
            outcomes.push(StartOutcome::Gone);
            continue;
        };
        let now_ms = millis(*now);
        if execution.status != ExecutionStatus::Pending || lease_owner.as_deref().is_some_and(|holder| holder != owner)
        {
            outcomes.push(StartOutcome::Gone);
            continue;
        }
        let job = jobs.get(&execution.job_id).cloned().flatten();
        let scheduled = execution.trigger != Trigger::Manual;
        let version = versions.get(&execution.version_id);
        let (Some(job), Some(version)) = (job.filter(|job| job.active || !scheduled), version) else {
            changes.not_run(id, ExecutionStatus::Cancelled, now_ms);
            outcomes.push(StartOutcome::NotRun(ExecutionStatus::Cancelled));
            continue;
        };
        if execution.trigger == Trigger::Schedule && version.schedule.is_recurring() {
            if !locked.contains(&job.id) {
                // Another transaction holds the job (another node starting one of its slots): try again soon.
                outcomes.push(StartOutcome::Busy);
                continue;
            }
            let already = running.get(&job.id).copied().unwrap_or(0);
            if already > 0 {
                match job.policy.overlap {
                    Overlap::Allow => {}
                    Overlap::Skip => {
                        changes.not_run(id, ExecutionStatus::Skipped, now_ms);
                        outcomes.push(StartOutcome::NotRun(ExecutionStatus::Skipped));
                        continue;
                    }
                    Overlap::QueueOne => {
                        let waiting: i64 = get(
                            &query_one(
                                transaction,
                                "SELECT COUNT(*) FROM executions WHERE job_id = $1 AND status = 'pending' \
                                 AND trigger = 'schedule' AND id <> $2 AND due_at <= $3",
                                &[&job.id, id, &millis(execution.due_at)],
                            )
                            .await?,
                            0,
                        )?;
                        if waiting > 0 {
                            changes.not_run(id, ExecutionStatus::Skipped, now_ms);
                            outcomes.push(StartOutcome::NotRun(ExecutionStatus::Skipped));
                        } else {
                            outcomes.push(StartOutcome::Busy);
                        }
                        continue;
                    }
                }
            }
            *running.entry(job.id.clone()).or_insert(0) += 1;
        }
        changes.run(id, now_ms, owner, millis(lease_until));
        let mut execution = execution;
        execution.status = ExecutionStatus::Running;
        execution.started_at = Some(*now);
        let mut job = job;
        job.last_run_at = Some(*now);
        outcomes.push(StartOutcome::Started(Box::new(Started { execution, job, version: version.clone() })));
    }
    changes.write(transaction).await?;
    Ok(outcomes)
}

/// What a start batch changes, written in one statement.
#[derive(Default)]
struct StartChanges {
    id: Vec<String>,
    status: Vec<&'static str>,
    started_at: Vec<i64>,
    completed_at: Vec<Option<i64>>,
    owner: Vec<Option<String>>,
    lease_until: Vec<Option<i64>>,
}

impl StartChanges {
    fn run(&mut self, id: &str, now: i64, owner: &str, lease_until: i64) {
        self.id.push(id.to_owned());
        self.status.push(ExecutionStatus::Running.as_str());
        self.started_at.push(now);
        self.completed_at.push(None);
        self.owner.push(Some(owner.to_owned()));
        self.lease_until.push(Some(lease_until));
    }

    fn not_run(&mut self, id: &str, status: ExecutionStatus, now: i64) {
        self.id.push(id.to_owned());
        self.status.push(status.as_str());
        self.started_at.push(now);
        self.completed_at.push(Some(now));
        self.owner.push(None);
        self.lease_until.push(None);
    }

    async fn write(self, transaction: &Tx<'_>) -> Result<()> {
        if self.id.is_empty() {
            return Ok(());
        }
        crate::execute(
            transaction,
            "UPDATE executions e SET status = u.status, started_at = u.started_at, completed_at = u.completed_at, \
               lease_owner = u.lease_owner, lease_until = u.lease_until \
             FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[]) \
               AS u(id, status, started_at, completed_at, lease_owner, lease_until) \
             WHERE e.id = u.id",
            &[&self.id, &self.status, &self.started_at, &self.completed_at, &self.owner, &self.lease_until],
        )
        .await?;
        Ok(())
    }
}

/// The stored name of a job effect (`None` for none).
fn effect_name(effect: JobEffect) -> Option<&'static str> {
    match effect {
        JobEffect::None => None,
        JobEffect::ResetFailures => Some("reset"),
        JobEffect::CountFailure => Some("count"),
        JobEffect::AutoPause => Some("pause"),
        JobEffect::CompleteOnce => Some("complete"),
        JobEffect::FailOnce => Some("fail"),
    }
}

/// Records a batch of outcomes in one transaction of a few statements: every execution still running (and still this
/// owner's, when fenced) is finished in one statement; then, when an outcome asks for a retry, the jobs of those
/// finished are locked and read (no path holds a job while it waits for a running execution, so this order cannot
/// deadlock); the retries are inserted in one statement, and the outcomes' effects on their jobs — with each job's
/// `last_run_at` — applied in one. Answers, per outcome, whether it was recorded.
pub(crate) async fn finish(transaction: &Tx<'_>, finishes: &[ExecutionFinish]) -> Result<Vec<bool>> {
    let ids: Vec<String> = finishes.iter().map(|finish| finish.id.clone()).collect();
    let status: Vec<&str> = finishes.iter().map(|finish| finish.status.as_str()).collect();
    let result: Vec<Option<Json<Value>>> = finishes.iter().map(|finish| finish.result.as_ref().map(jsonb)).collect();
    let error: Vec<Option<String>> =
        finishes.iter().map(|finish| finish.error.as_deref().map(|error| text(error).into_owned())).collect();
    let logs: Vec<Json<Value>> = finishes.iter().map(|finish| jsonb(&finish.logs)).collect();
    let completed_at: Vec<i64> = finishes.iter().map(|finish| millis(finish.completed_at)).collect();
    let duration_ms: Vec<Option<i64>> = finishes.iter().map(|finish| finish.duration_ms).collect();
    let owner: Vec<Option<String>> = finishes.iter().map(|finish| finish.lease_owner.clone()).collect();
    let rows = query(
        transaction,
        "UPDATE executions e SET status = u.status, result = u.result, error = u.error, logs = u.logs, \
           completed_at = u.completed_at, duration_ms = u.duration_ms, lease_owner = NULL, lease_until = NULL \
         FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::text[], $5::jsonb[], $6::bigint[], $7::bigint[], \
             $8::text[]) AS u(id, status, result, error, logs, completed_at, duration_ms, owner) \
         WHERE e.id = u.id AND e.status = 'running' AND (u.owner IS NULL OR e.lease_owner = u.owner) \
         RETURNING e.id, e.job_id, e.started_at",
        &[&ids, &status, &result, &error, &logs, &completed_at, &duration_ms, &owner],
    )
    .await?;
    let mut finished: HashMap<String, (String, Option<i64>)> = HashMap::with_capacity(rows.len());
    for row in rows {
        finished.insert(get(&row, 0)?, (get(&row, 1)?, get(&row, 2)?));
    }
    if finished.is_empty() {
        return Ok(vec![false; finishes.len()]);
    }
    // A retry is made only for a job that still exists and is active (or for a manual run): read under lock, when
    // an outcome asks for one.
    let mut active: HashMap<String, bool> = HashMap::new();
    if finishes.iter().any(|finish| finish.retry.is_some() && finished.contains_key(&finish.id)) {
        let mut job_ids: Vec<String> = finished.values().map(|(job_id, _)| job_id.clone()).collect();
        job_ids.sort();
        job_ids.dedup();
        for row in query(
            transaction,
            "SELECT id, active AND deleted_at IS NULL FROM jobs WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            &[&job_ids],
        )
        .await?
        {
            active.insert(get(&row, 0)?, get(&row, 1)?);
        }
    }
    let mut retries = ExecutionArrays::default();
    let mut effects: Vec<JobOutcome> = Vec::new();
    for finish in finishes {
        let Some((job_id, started_at)) = finished.get(&finish.id) else { continue };
        if let Some(retry) = &finish.retry {
            if active.get(job_id).is_some_and(|active| *active || retry.trigger == Trigger::Manual) {
                retries.push(retry);
            }
        }
        let effect = effect_name(finish.job_effect).unwrap_or("none");
        effects.push(JobOutcome {
            job_id: job_id.clone(),
            effect,
            completed_at: millis(finish.completed_at),
            started_at: *started_at,
        });
    }
    insert_executions(transaction, &retries).await?;
    apply_effects(transaction, effects).await?;
    Ok(finishes.iter().map(|finish| finished.contains_key(&finish.id)).collect())
}

/// What one recorded outcome does to its job.
struct JobOutcome {
    job_id: String,
    /// [`effect_name`], or `none`.
    effect: &'static str,
    completed_at: i64,
    /// When the run started: the job's `last_run_at`.
    started_at: Option<i64>,
}

/// Applies outcomes to their jobs — each run's start as the job's `last_run_at` (never earlier than it was), and
/// its effect — in one statement, each job once; a job with several outcomes in one batch (runs of one job ending
/// together) gets them one after another, in order.
async fn apply_effects(transaction: &Tx<'_>, effects: Vec<JobOutcome>) -> Result<()> {
    let mut rounds: Vec<Vec<JobOutcome>> = Vec::new();
    for effect in effects {
        match rounds.iter_mut().find(|round| !round.iter().any(|other| other.job_id == effect.job_id)) {
            Some(round) => round.push(effect),
            None => rounds.push(vec![effect]),
        }
    }
    for round in rounds {
        let mut jobs = Vec::with_capacity(round.len());
        let mut names = Vec::with_capacity(round.len());
        let mut at = Vec::with_capacity(round.len());
        let mut started = Vec::with_capacity(round.len());
        for outcome in round {
            jobs.push(outcome.job_id);
            names.push(outcome.effect);
            at.push(outcome.completed_at);
            started.push(outcome.started_at);
        }
        crate::execute(
            transaction,
            "UPDATE jobs j SET \
               last_run_at = CASE WHEN j.deleted_at IS NULL THEN GREATEST(j.last_run_at, u.started) \
                 ELSE j.last_run_at END, \
               consecutive_failures = CASE WHEN j.deleted_at IS NOT NULL THEN j.consecutive_failures \
                 WHEN u.effect = 'reset' THEN 0 WHEN u.effect IN ('count', 'pause') THEN j.consecutive_failures + 1 \
                 WHEN u.effect = 'fail' AND j.active THEN j.consecutive_failures + 1 \
                 ELSE j.consecutive_failures END, \
               active = CASE WHEN j.deleted_at IS NULL AND (u.effect = 'pause' OR (u.effect IN ('complete', 'fail') \
                 AND j.active)) THEN FALSE ELSE j.active END, \
               status = CASE WHEN j.deleted_at IS NOT NULL THEN j.status WHEN u.effect = 'pause' THEN 'failed' \
                 WHEN u.effect = 'complete' AND j.active THEN 'completed' \
                 WHEN u.effect = 'fail' AND j.active THEN 'failed' ELSE j.status END, \
               next_run_at = CASE WHEN j.deleted_at IS NULL AND (u.effect = 'pause' \
                 OR (u.effect IN ('complete', 'fail') AND j.active)) THEN NULL ELSE j.next_run_at END, \
               updated_at = CASE WHEN j.deleted_at IS NULL AND (u.effect = 'pause' \
                 OR (u.effect IN ('complete', 'fail') AND j.active)) THEN u.at ELSE j.updated_at END \
             FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS u(id, effect, at, started) \
             WHERE j.id = u.id",
            &[&jobs, &names, &at, &started],
        )
        .await?;
    }
    Ok(())
}

/// Inserts new jobs and their first versions in two statements.
pub(crate) async fn insert_jobs<'a, D: Db>(
    db: &D,
    jobs: impl IntoIterator<Item = (&'a Job, Option<&'a JobVersion>)>,
) -> Result<()> {
    let mut columns = JobArrays::default();
    let mut versions = VersionArrays::default();
    for (job, version) in jobs {
        columns.push(job);
        if let Some(version) = version {
            versions.push(version);
        }
    }
    if columns.id.is_empty() {
        return Ok(());
    }
    crate::execute(
        db,
        &format!(
            "INSERT INTO jobs ({JOB_COLUMNS}) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
             $5::bool[], $6::text[], $7::bool[], $8::text[], $9::jsonb[], $10::jsonb[], $11::text[], $12::bigint[], \
             $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[], $18::bigint[], $19::bigint[])"
        ),
        &columns.params(),
    )
    .await?;
    insert_versions(db, &versions).await
}

/// Inserts versions in one statement; a version string a job has already is a `Conflict`.
async fn insert_versions<D: Db>(db: &D, versions: &VersionArrays) -> Result<()> {
    if versions.id.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO job_versions ({VERSION_COLUMNS}) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], \
         $4::text[], $5::text[], $6::text[], $7::jsonb[], $8::bigint[], $9::jsonb[], $10::jsonb[], $11::bigint[], \
         $12::text[])"
    );
    match crate::try_execute(db, &sql, &versions.params()).await? {
        Ok(_) => Ok(()),
        Err(error) if crate::is_unique_violation(&error) => Err(sundial_store::StoreError::Conflict(format!(
            "version {} of job {}",
            versions.version.first().map(String::as_str).unwrap_or_default(),
            versions.job_id.first().map(String::as_str).unwrap_or_default()
        ))),
        Err(error) => Err(crate::database(error)),
    }
}

/// Inserts one version; a version string its job has already is a `Conflict`.
pub(crate) async fn insert_version<D: Db>(db: &D, version: &JobVersion) -> Result<()> {
    let mut one = VersionArrays::default();
    one.push(version);
    insert_versions(db, &one).await
}

/// Jobs as parallel arrays, in [`JOB_COLUMNS`] order.
#[derive(Default)]
struct JobArrays {
    id: Vec<String>,
    agent_id: Vec<String>,
    name: Vec<String>,
    description: Vec<Option<String>>,
    dynamic: Vec<bool>,
    user_id: Vec<Option<String>>,
    active: Vec<bool>,
    status: Vec<&'static str>,
    metadata: Vec<Json<Value>>,
    policy: Vec<Json<Value>>,
    active_version_id: Vec<Option<String>>,
    anchor_at: Vec<i64>,
    next_run_at: Vec<Option<i64>>,
    last_run_at: Vec<Option<i64>>,
    consecutive_failures: Vec<i64>,
    missed_slots: Vec<i64>,
    created_at: Vec<i64>,
    updated_at: Vec<i64>,
    authority: Vec<Option<i64>>,
}

impl JobArrays {
    fn push(&mut self, job: &Job) {
        self.id.push(job.id.clone());
        self.agent_id.push(job.agent_id.clone());
        self.name.push(text(&job.name).into_owned());
        self.description.push(job.description.as_deref().map(|description| text(description).into_owned()));
        self.dynamic.push(job.dynamic);
        self.user_id.push(job.user_id.clone());
        self.active.push(job.active);
        self.status.push(job.status.as_str());
        self.metadata.push(jsonb(&job.metadata));
        self.policy.push(jsonb(&job.policy.stored()));
        self.active_version_id.push(job.active_version_id.clone());
        self.anchor_at.push(millis(job.anchor_at));
        self.next_run_at.push(opt_millis(job.next_run_at));
        self.last_run_at.push(opt_millis(job.last_run_at));
        self.consecutive_failures.push(i64::from(job.consecutive_failures));
        self.missed_slots.push(job.missed_slots.min(i64::MAX as u64) as i64);
        self.created_at.push(millis(job.created_at));
        self.updated_at.push(millis(job.updated_at));
        self.authority.push(job.authority.stored());
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 19] {
        [
            &self.id,
            &self.agent_id,
            &self.name,
            &self.description,
            &self.dynamic,
            &self.user_id,
            &self.active,
            &self.status,
            &self.metadata,
            &self.policy,
            &self.active_version_id,
            &self.anchor_at,
            &self.next_run_at,
            &self.last_run_at,
            &self.consecutive_failures,
            &self.missed_slots,
            &self.created_at,
            &self.updated_at,
            &self.authority,
        ]
    }
}

/// Versions as parallel arrays, in [`VERSION_COLUMNS`] order.
#[derive(Default)]
struct VersionArrays {
    id: Vec<String>,
    job_id: Vec<String>,
    name: Vec<String>,
    version: Vec<String>,
    description: Vec<Option<String>>,
    code: Vec<String>,
    schedule: Vec<Json<Value>>,
    timeout_seconds: Vec<i64>,
    retry: Vec<Option<Json<Value>>>,
    metadata: Vec<Option<Json<Value>>>,
    created_at: Vec<i64>,
    kind: Vec<&'static str>,
}

impl VersionArrays {
    fn push(&mut self, version: &JobVersion) {
        self.id.push(version.id.clone());
        self.job_id.push(version.job_id.clone());
        self.name.push(text(&version.name).into_owned());
        self.version.push(version.version.clone());
        self.description.push(version.description.as_deref().map(|description| text(description).into_owned()));
        self.code.push(text(&version.code).into_owned());
        self.schedule.push(jsonb(&version.schedule));
        self.timeout_seconds.push(i64::from(version.timeout_seconds));
        self.retry.push(version.retry.as_ref().map(jsonb));
        self.metadata.push(version.metadata.as_ref().map(jsonb));
        self.created_at.push(millis(version.created_at));
        self.kind.push(version.kind.as_str());
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 12] {
        [
            &self.id,
            &self.job_id,
            &self.name,
            &self.version,
            &self.description,
            &self.code,
            &self.schedule,
            &self.timeout_seconds,
            &self.retry,
            &self.metadata,
            &self.created_at,
            &self.kind,
        ]
    }
}
