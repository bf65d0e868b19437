//! The embedded SQLite store: one file on disk in WAL mode, written by one dedicated thread.
//!
//! Every [`Store`] call becomes a closure sent to the writer thread, which runs it inside one `BEGIN IMMEDIATE`
//! transaction on its own connection, so two writers never deadlock on a lock upgrade and each call is atomic.
//!
//! Durability comes in two kinds. What a client is told is stored (jobs, versions, triggers, user data, messages
//! and their deliveries) waits for the disk (`synchronous=FULL`): it survives a power cut. The scheduler's own
//! bookkeeping (recorded slots, claims, starts, outcomes, leases) does not wait: it sits on the path of every run,
//! and an fsync there would cost more than the run, and hold up every start queued behind it. Such a commit reaches
//! the disk with the next commit that waits (SQLite's WAL is one file written in order), or within [`LAZY_SYNC`] when
//! the writer syncs the WAL itself. A power cut can therefore lose the last few milliseconds of bookkeeping, never
//! anything acknowledged: a lost slot record leaves its job's next run where it was (the same commit advanced it),
//! so the slot is recorded again; a lost start or outcome leaves its execution pending or running, and it runs again
//! (execution is at-least-once; a message a run sent is stored durably, with everything recorded before it, and is
//! never sent twice for one occurrence).
//!
//! Jobs and versions are stored compactly (ids as bytes, each code text once, no copies of what a version shares
//! with its job): `sqlite_v6` describes the layout, `sqlite_encoding` the packing of values.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Params, Row, Transaction, TransactionBehavior};
use serde_json::Value;
use sundial_core::policy::JobPolicy;
use sundial_core::{
    CodeKind, Execution, ExecutionStatus, Job, JobEffect, JobStatus, JobVersion, JsonObject, LogLine, RetryPolicy,
    Trigger,
};

use crate::sqlite_encoding::{
    code_hash, get_id, get_optional_id, get_schedule, pack_job_id, pack_schedule, pack_version_id,
};
use crate::{
    Activation, Agent, ApiKey, Delivery, DeliveryOutcome, DueJob, ExecutionFinish, JobFilter, Message, MessageOrigin,
    NodeLeases, OccurrenceRecord, Orphan, Result, StartOutcome, Started, Store, StoreError, StoreOverview, StoreStats,
    UserRecord,
};

/// One call of the store on the writer thread: runs inside the batch's transaction, or is told the transaction could
/// not begin, and returns what to do once the batch's commit outcome is known, with whether its work succeeded.
type Command = Box<dyn FnOnce(std::result::Result<Place<'_, '_>, StoreError>) -> (Completion, bool) + Send>;

/// Where a call runs: the batch's transaction, and whether in a savepoint of its own. The first call of a transaction
/// runs without one: if it fails, the transaction holds nothing but its writes, and the writer rolls the whole
/// transaction back and begins another for the calls after it. That spares the first call the savepoint's
/// sub-journal, a copy of every page it changes.
struct Place<'t, 'c> {
    transaction: &'t Transaction<'c>,
    savepoint: bool,
}

/// Whether a call's commit waits for the disk (see the module documentation).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Durability {
    /// The commit is on disk when the call answers.
    Flush,
    /// The commit reaches the disk with the next flushed commit, or within [`LAZY_SYNC`].
    Lazy,
}

/// A call as the writer thread receives it.
struct Queued {
    durability: Durability,
    command: Command,
}

/// How long a commit that did not wait for the disk may stay unsynced.
const LAZY_SYNC: std::time::Duration = std::time::Duration::from_millis(50);
/// Delivers a call's answer once its batch committed (or failed to).
type Completion = Box<dyn FnOnce(Result<()>) + Send>;

/// The most calls one transaction (one fsync) carries.
const MAX_BATCH: usize = 512;

/// A WAL file larger than this is emptied when the writer is idle.
const WAL_TRUNCATE_BYTES: u64 = 1 << 20;

/// How long the writer has nothing to do before it empties a large WAL file.
const IDLE_BEFORE_TRUNCATE: std::time::Duration = std::time::Duration::from_millis(100);

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    sender: mpsc::Sender<Queued>,
}

/// One schema migration: SQL, or code for a conversion SQL cannot express.
pub(crate) enum Migration {
    Sql(&'static str),
    Code(fn(&Transaction<'_>) -> Result<()>),
}

/// Schema migrations, applied in order once each; the index + 1 is the schema version. Append only.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration::Sql(
        r#"
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    env TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL
);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    agent_id TEXT,
    user_id TEXT,
    admin INTEGER NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE users (
    agent_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (agent_id, user_id)
);
CREATE TABLE messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    agent_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    content TEXT NOT NULL,
    execution_id TEXT,
    dedupe_key TEXT UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE INDEX messages_by_user ON messages (agent_id, user_id, seq);
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    dynamic INTEGER NOT NULL,
    user_id TEXT,
    active INTEGER NOT NULL,
    status TEXT NOT NULL,
    metadata TEXT NOT NULL,
    policy TEXT NOT NULL,
    active_version_id TEXT,
    anchor_at INTEGER NOT NULL,
    next_run_at INTEGER,
    last_run_at INTEGER,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    missed_slots INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER
);
CREATE INDEX jobs_by_agent ON jobs (agent_id, id) WHERE deleted_at IS NULL;
CREATE INDEX jobs_due ON jobs (next_run_at) WHERE active = 1 AND deleted_at IS NULL AND next_run_at IS NOT NULL;
CREATE TABLE job_versions (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    description TEXT,
    code TEXT NOT NULL,
    schedule TEXT NOT NULL,
    timeout_seconds INTEGER NOT NULL,
    retry TEXT,
    metadata TEXT,
    created_at INTEGER NOT NULL,
    UNIQUE (job_id, version)
);
CREATE TABLE occurrences (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    scheduled_for INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (job_id, scheduled_for)
);
CREATE TABLE executions (
    id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    version_id TEXT NOT NULL,
    occurrence_id TEXT NOT NULL,
    status TEXT NOT NULL,
    trigger TEXT NOT NULL,
    scheduled_for INTEGER,
    due_at INTEGER NOT NULL,
    started_at INTEGER,
    completed_at INTEGER,
    duration_ms INTEGER,
    result TEXT,
    error TEXT,
    retry_count INTEGER NOT NULL,
    logs TEXT NOT NULL DEFAULT '[]',
    lease_owner TEXT,
    lease_until INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX executions_by_job ON executions (job_id, created_at DESC, id DESC);
CREATE INDEX executions_by_agent ON executions (agent_id, id);
CREATE INDEX executions_pending ON executions (due_at) WHERE status = 'pending';
CREATE INDEX executions_running ON executions (job_id) WHERE status = 'running';
CREATE TABLE idempotency (
    agent_id TEXT NOT NULL,
    key TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (agent_id, key)
);
"#,
    ),
    Migration::Sql(crate::sqlite_data::MIGRATION),
    Migration::Sql("ALTER TABLE job_versions ADD COLUMN kind TEXT NOT NULL DEFAULT 'function';"),
    Migration::Sql(
        "CREATE TABLE blobs (agent_id TEXT NOT NULL, hash TEXT NOT NULL, content BLOB NOT NULL, created_at INTEGER NOT NULL, \
     PRIMARY KEY (agent_id, hash));",
    ),
    Migration::Sql(
        r#"
ALTER TABLE agents ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
CREATE TABLE deliveries (
    message_id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    url TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until INTEGER,
    last_error TEXT,
    delivered_at INTEGER
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
"#,
    ),
    Migration::Code(crate::sqlite_v6::migrate),
    Migration::Sql("ALTER TABLE api_keys ADD COLUMN scopes TEXT; ALTER TABLE api_keys ADD COLUMN expires_at INTEGER;"),
    Migration::Sql(
        "CREATE TABLE job_dedup (agent_id TEXT NOT NULL, user_id TEXT NOT NULL, dedup_key TEXT NOT NULL, \
         job_id TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (agent_id, user_id, dedup_key)) WITHOUT ROWID;",
    ),
    Migration::Sql(
        "ALTER TABLE messages ADD COLUMN job_id TEXT; ALTER TABLE messages ADD COLUMN occurrence_id TEXT; \
         UPDATE messages SET job_id = (SELECT e.job_id FROM executions e WHERE e.id = messages.execution_id), \
         occurrence_id = (SELECT e.occurrence_id FROM executions e WHERE e.id = messages.execution_id) \
         WHERE execution_id IS NOT NULL;",
    ),
    // What a job's code may reach (NULL: the agent; otherwise the scope bits of its user's authority). Jobs made for
    // a user before authority was recorded act for that user with every scope: the narrower reading of the past.
    Migration::Sql("ALTER TABLE jobs ADD COLUMN authority INTEGER; UPDATE jobs SET authority = 7 WHERE user_id IS NOT NULL;"),
    // A revoked key's hash is of no use to anyone but a guesser: forget it.
    Migration::Sql("UPDATE api_keys SET hash = 'revoked:' || id WHERE revoked_at IS NOT NULL;"),
];

/// A job's columns as schema 6 made them (what its migration writes), then as they are now.
macro_rules! job_columns_v6 {
    () => {
        "id, agent_id, name, description, dynamic, user_id, active, status, metadata, policy, active_version_id, \
         anchor_at, next_run_at, last_run_at, consecutive_failures, missed_slots, created_at, updated_at"
    };
}
const JOB_COLUMNS: &str = concat!(job_columns_v6!(), ", authority");
/// A stored key's columns, as `key_from_row` reads them.
const KEY_SELECT: &str = "SELECT id, agent_id, user_id, admin, hash, created_at, scopes, expires_at FROM api_keys";
/// A version with what it takes from elsewhere: its code from `codes`; its name, metadata and creation time from its
/// job when it stores none of its own (see migration 6 in `sqlite_v6`).
///
/// What a version shares with its job and its code are read with scalar subqueries, not joins: with a join, SQLite
/// (built with STAT4) recompiles the statement on every call whose bound ids differ, which cost more than the query.
const VERSION_SELECT: &str = "SELECT v.id, v.job_id, COALESCE(v.name, (SELECT name FROM jobs WHERE id = v.job_id)), \
     COALESCE(v.version, '1.0.0'), v.description, (SELECT code FROM codes WHERE id = v.code_id), v.schedule, \
     v.timeout_seconds, v.retry, \
     CASE WHEN typeof(v.metadata) = 'integer' \
     THEN COALESCE((SELECT metadata FROM jobs WHERE id = v.job_id), '{}') ELSE v.metadata END, \
     COALESCE(v.created_at, (SELECT created_at FROM jobs WHERE id = v.job_id)), v.kind \
     FROM job_versions v";
/// The version string most versions have, stored as `NULL`.
const FIRST_VERSION: &str = "1.0.0";
const EXECUTION_COLUMNS: &str = "id, agent_id, job_id, version_id, occurrence_id, status, trigger, scheduled_for, \
     due_at, started_at, completed_at, duration_ms, result, error, retry_count, logs, created_at";
/// How many columns [`EXECUTION_COLUMNS`] names.
const EXECUTION_COLUMN_COUNT: usize = 17;

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`, applies migrations and starts the writer thread.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let mut connection = Connection::open(path).map_err(database)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
                 PRAGMA busy_timeout = 5000; PRAGMA temp_store = MEMORY;",
            )
            .map_err(database)?;
        migrate(&mut connection)?;
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let (sender, receiver) = mpsc::channel::<Queued>();
        std::thread::Builder::new()
            .name("sundial-sqlite".into())
            .spawn(move || run_writer(connection, receiver, &wal))
            .map_err(|error| StoreError::Database(format!("cannot start the writer thread: {error}")))?;
        Ok(SqliteStore { sender })
    }

    /// Runs `work` in one immediate transaction on the writer thread; answers once the commit is on disk.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        self.queue(Durability::Flush, work).await
    }

    /// Like [`SqliteStore::write`], for the bookkeeping of executions: answers once the commit is in the WAL, which
    /// reaches the disk shortly after.
    pub(crate) async fn write_lazy<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        self.queue(Durability::Lazy, work).await
    }

    async fn queue<T, F>(&self, durability: Durability, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let command: Command = Box::new(move |place| {
            let outcome = match place {
                Ok(Place { transaction, savepoint: true }) => in_savepoint(transaction, work),
                Ok(Place { transaction, savepoint: false }) => work(transaction),
                Err(error) => Err(error),
            };
            let succeeded = outcome.is_ok();
            let completion: Completion = Box::new(move |commit: Result<()>| {
                let _ = reply.send(commit.and(outcome));
            });
            (completion, succeeded)
        });
        self.sender.send(Queued { durability, command }).map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// Starts one claimed execution (see [`Store::execution_start`]).
fn start_execution(
    transaction: &Transaction<'_>,
    id: &str,
    owner: &str,
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<StartOutcome> {
    let now_ms = millis(now);
    let found = transaction
        .prepare_cached(&format!("SELECT {EXECUTION_COLUMNS}, lease_owner FROM executions WHERE id = ?1"))
        .and_then(|mut statement| {
            statement
                .query_row([id], |row| {
                    Ok((execution_from_row(row)?, row.get::<_, Option<String>>(EXECUTION_COLUMN_COUNT)?))
                })
                .optional()
        })
        .map_err(database)?;
    let Some((execution, lease_owner)) = found else { return Ok(StartOutcome::Gone) };
    if execution.status != ExecutionStatus::Pending {
        return Ok(StartOutcome::Gone);
    }
    if lease_owner.as_deref().is_some_and(|holder| holder != owner) {
        return Ok(StartOutcome::Gone);
    }
    let finish_without_run = |status: ExecutionStatus| -> Result<StartOutcome> {
        transaction
            .execute_cached(
                "UPDATE executions SET status = ?2, started_at = ?3, completed_at = ?3, lease_owner = NULL \
                     WHERE id = ?1",
                params![id, status.as_str(), now_ms],
            )
            .map_err(database)?;
        Ok(StartOutcome::NotRun(status))
    };
    let job = get_job(transaction, &execution.job_id)?;
    let Some(job) = job else { return finish_without_run(ExecutionStatus::Cancelled) };
    let scheduled = execution.trigger != Trigger::Manual;
    if scheduled && !job.active {
        return finish_without_run(ExecutionStatus::Cancelled);
    }
    let Some(version) = cached_version(transaction, &execution.job_id, &execution.version_id)? else {
        return finish_without_run(ExecutionStatus::Cancelled);
    };
    // The overlap policy is about the slots of recurring jobs.
    if execution.trigger == Trigger::Schedule && version.schedule.is_recurring() {
        let running: i64 = transaction
            .prepare_cached("SELECT COUNT(*) FROM executions WHERE job_id = ?1 AND status = 'running'")
            .and_then(|mut statement| statement.query_row([&job.id], |row| row.get(0)))
            .map_err(database)?;
        if running > 0 {
            match job.policy.overlap {
                sundial_core::policy::Overlap::Allow => {}
                sundial_core::policy::Overlap::Skip => return finish_without_run(ExecutionStatus::Skipped),
                sundial_core::policy::Overlap::QueueOne => {
                    let waiting_before: i64 = transaction
                        .query_row_cached(
                            "SELECT COUNT(*) FROM executions WHERE job_id = ?1 AND status = 'pending' \
                                 AND trigger = 'schedule' AND id != ?2 AND due_at <= ?3",
                            params![job.id, id, millis(execution.due_at)],
                            |row| row.get(0),
                        )
                        .map_err(database)?;
                    if waiting_before > 0 {
                        return finish_without_run(ExecutionStatus::Skipped);
                    }
                    return Ok(StartOutcome::Busy);
                }
            }
        }
    }

    transaction
        .execute_cached(
            "UPDATE executions SET status = 'running', started_at = ?2, lease_owner = ?3, lease_until = ?4 \
                 WHERE id = ?1",
            params![id, now_ms, owner, millis(lease_until)],
        )
        .map_err(database)?;
    transaction
        .execute_cached("UPDATE jobs SET last_run_at = ?2 WHERE id = ?1", params![pack_job_id(&job.id), now_ms])
        .map_err(database)?;
    let mut execution = execution;
    execution.status = ExecutionStatus::Running;
    execution.started_at = Some(now);
    let mut job = job;
    job.last_run_at = Some(now);
    Ok(StartOutcome::Started(Box::new(Started { execution, job, version })))
}

/// Records one final outcome (see [`Store::execution_finish`]).
fn finish_execution(transaction: &Transaction<'_>, finish: &ExecutionFinish) -> Result<bool> {
    let completed_at = millis(finish.completed_at);
    let updated = transaction
        .prepare_cached(
            "UPDATE executions SET status = ?2, result = ?3, error = ?4, logs = ?5, completed_at = ?6, \
                 duration_ms = ?7, lease_owner = NULL, lease_until = NULL \
                 WHERE id = ?1 AND status = 'running' AND (?8 IS NULL OR lease_owner = ?8) \
                 RETURNING job_id",
        )
        .and_then(|mut statement| {
            statement
                .query_row(
                    params![
                        finish.id,
                        finish.status.as_str(),
                        finish.result.as_ref().map(to_json),
                        finish.error,
                        to_json(&finish.logs),
                        completed_at,
                        finish.duration_ms,
                        finish.lease_owner,
                    ],
                    |row| row.get::<_, String>(0),
                )
                .optional()
        })
        .map_err(database)?;
    let Some(job_id) = updated else { return Ok(false) };
    if let Some(retry) = &finish.retry {
        let active: Option<bool> = transaction
            .query_row_cached("SELECT active FROM jobs WHERE id = ?1", [pack_job_id(&job_id)], |row| row.get(0))
            .optional()
            .map_err(database)?;
        if active.is_some_and(|active| active || retry.trigger == Trigger::Manual) {
            insert_execution(transaction, retry)?;
        }
    }
    // Each effect is one update of the job's row, which changes nothing when the job is gone.
    {
        let statement = match finish.job_effect {
            JobEffect::None => None,
            JobEffect::ResetFailures => {
                Some("UPDATE jobs SET consecutive_failures = 0 WHERE id = ?1 AND consecutive_failures != 0")
            }
            JobEffect::CountFailure => {
                Some("UPDATE jobs SET consecutive_failures = consecutive_failures + 1 WHERE id = ?1")
            }
            JobEffect::AutoPause => Some(
                "UPDATE jobs SET consecutive_failures = consecutive_failures + 1, active = 0, \
                     status = 'failed', next_run_at = NULL, updated_at = ?2 WHERE id = ?1",
            ),
            JobEffect::CompleteOnce => Some(
                "UPDATE jobs SET active = 0, status = 'completed', next_run_at = NULL, updated_at = ?2 \
                     WHERE id = ?1 AND active = 1",
            ),
            JobEffect::FailOnce => Some(
                "UPDATE jobs SET active = 0, status = 'failed', next_run_at = NULL, \
                     consecutive_failures = consecutive_failures + 1, updated_at = ?2 WHERE id = ?1 AND active = 1",
            ),
        };
        if let Some(statement) = statement {
            let needs_time = statement.contains("?2");
            let outcome = if needs_time {
                transaction.execute_cached(statement, params![pack_job_id(&job_id), completed_at])
            } else {
                transaction.execute_cached(statement, params![pack_job_id(&job_id)])
            };
            outcome.map_err(database)?;
        }
    }
    Ok(true)
}

/// The writer thread: takes every call waiting (up to [`MAX_BATCH`]) and runs them in one `BEGIN IMMEDIATE`
/// transaction — group commit: one fsync for the batch, none when no call of the batch needs one — then answers
/// each call with the commit's outcome. A call that fails undoes its own writes only (see [`run_batch`]).
///
/// SQLite checkpoints the WAL into the database every 1,000 pages but keeps the file at its largest size, and a big
/// batch of jobs leaves a WAL as large as itself: once the WAL file (at `wal`) passes [`WAL_TRUNCATE_BYTES`], the
/// writer empties it when it has had nothing to do for [`IDLE_BEFORE_TRUNCATE`].
fn run_writer(mut connection: Connection, receiver: mpsc::Receiver<Queued>, wal: &Path) {
    let mut wal_to_truncate = false;
    let mut synchronous = Durability::Flush;
    // When the oldest commit that has not reached the disk was made.
    let mut unsynced_since: Option<std::time::Instant> = None;
    loop {
        let sync_in = unsynced_since.map(|since| LAZY_SYNC.saturating_sub(since.elapsed()));
        let wait = match (sync_in, wal_to_truncate) {
            (Some(sync), true) => Some(sync.min(IDLE_BEFORE_TRUNCATE)),
            (Some(sync), false) => Some(sync),
            (None, true) => Some(IDLE_BEFORE_TRUNCATE),
            (None, false) => None,
        };
        let first = match wait {
            Some(wait) => match receiver.recv_timeout(wait) {
                Ok(queued) => queued,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if unsynced_since.is_some_and(|since| since.elapsed() >= LAZY_SYNC) {
                        sync_wal(wal);
                        unsynced_since = None;
                    } else if wal_to_truncate {
                        truncate_wal(&connection);
                        wal_to_truncate = false;
                        unsynced_since = None;
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            },
            None => match receiver.recv() {
                Ok(queued) => queued,
                Err(_) => break,
            },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(queued) => batch.push(queued),
                Err(_) => break,
            }
        }
        let durability = if batch.iter().any(|queued| queued.durability == Durability::Flush) {
            Durability::Flush
        } else {
            Durability::Lazy
        };
        if durability != synchronous {
            let pragma = match durability {
                Durability::Flush => "PRAGMA synchronous = FULL",
                Durability::Lazy => "PRAGMA synchronous = NORMAL",
            };
            if connection.execute_batch(pragma).is_ok() {
                synchronous = durability;
            }
        }
        if run_batch(&mut connection, batch) {
            match synchronous {
                // A commit that waited for the disk took every earlier commit of the WAL with it.
                Durability::Flush => unsynced_since = None,
                Durability::Lazy => {
                    let since = *unsynced_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() >= LAZY_SYNC {
                        sync_wal(wal);
                        unsynced_since = None;
                    }
                }
            }
        }
        wal_to_truncate = std::fs::metadata(wal).is_ok_and(|metadata| metadata.len() > WAL_TRUNCATE_BYTES);
    }
    if unsynced_since.is_some() {
        sync_wal(wal);
    }
}

/// Runs a batch of calls in one transaction and commits it; answers whether a commit succeeded. The first call runs
/// without a savepoint (see [`Place`]): when it fails, the transaction is rolled back and the rest of the batch runs
/// in a new one.
fn run_batch(connection: &mut Connection, batch: Vec<Queued>) -> bool {
    let mut calls = batch.into_iter().peekable();
    while calls.peek().is_some() {
        let transaction = match connection.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(transaction) => transaction,
            Err(error) => {
                let error = database(error);
                for queued in calls {
                    (queued.command)(Err(error.clone())).0(Ok(()));
                }
                return false;
            }
        };
        let Some(first) = calls.next() else { break };
        let (completion, succeeded) = (first.command)(Ok(Place { transaction: &transaction, savepoint: false }));
        if !succeeded {
            // Its writes go with the transaction; its answer is its own error.
            drop(transaction);
            completion(Ok(()));
            continue;
        }
        let mut completions = vec![completion];
        completions.extend(
            calls.by_ref().map(|queued| (queued.command)(Ok(Place { transaction: &transaction, savepoint: true })).0),
        );
        let commit = transaction.commit().map_err(database);
        let committed = commit.is_ok();
        for completion in completions {
            completion(commit.clone());
        }
        return committed;
    }
    false
}

/// Flushes the WAL file to disk: the commits made without waiting for the disk are durable afterwards.
fn sync_wal(wal: &Path) {
    if let Err(error) = std::fs::File::open(wal).and_then(|file| file.sync_data()) {
        tracing::warn!(%error, "cannot sync the database's WAL file");
    }
}

/// Checkpoints the whole WAL into the database and truncates the WAL file to zero bytes. Best effort: it does not
/// wait for a reader of another process (a backup), and if it cannot finish, the next idle moment tries again.
fn truncate_wal(connection: &Connection) {
    let _ = connection.execute_batch("PRAGMA busy_timeout = 0");
    let _ = connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    let _ = connection.execute_batch("PRAGMA busy_timeout = 5000");
}

/// Statements kept prepared by the writer's connection (every statement the store runs fits).
const STATEMENT_CACHE: usize = 256;

/// `execute` and `query_row` through the connection's statement cache: parsing the same SQL again for every call was
/// a visible share of the writer thread's time.
pub(crate) trait Cached {
    fn execute_cached<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    fn query_row_cached<T, P: Params, F: FnOnce(&Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        read: F,
    ) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn execute_cached<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn query_row_cached<T, P: Params, F: FnOnce(&Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        read: F,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, read)
    }
}

/// Runs `work` in a savepoint of `transaction`, rolled back if it fails.
fn in_savepoint<T>(transaction: &Transaction<'_>, work: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
    // Prepared once and kept: parsing these two statements for every call was a visible share of the writer's time.
    transaction.execute_cached("SAVEPOINT call", []).map_err(database)?;
    match work(transaction) {
        Ok(value) => {
            transaction.execute_cached("RELEASE call", []).map_err(database)?;
            Ok(value)
        }
        Err(error) => {
            transaction.execute_batch("ROLLBACK TO call; RELEASE call").map_err(database)?;
            Err(error)
        }
    }
}

fn migrate(connection: &mut Connection) -> Result<()> {
    migrate_to(connection, MIGRATIONS.len())
}

/// Applies the migrations up to schema version `target` that are not applied yet, in one transaction.
pub(crate) fn migrate_to(connection: &mut Connection, target: usize) -> Result<()> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(database)?;
    transaction
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )
        .map_err(database)?;
    let applied: i64 = transaction
        .query_row_cached("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |row| row.get(0))
        .map_err(database)?;
    for (index, migration) in MIGRATIONS.iter().enumerate().take(target) {
        let version = index as i64 + 1;
        if version <= applied {
            continue;
        }
        match migration {
            Migration::Sql(sql) => transaction.execute_batch(sql).map_err(database)?,
            Migration::Code(convert) => convert(&transaction)?,
        }
        transaction
            .execute_cached(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                params![version, Utc::now().timestamp_millis()],
            )
            .map_err(database)?;
    }
    transaction.commit().map_err(database)
}

pub(crate) fn database(error: impl std::fmt::Display) -> StoreError {
    StoreError::Database(error.to_string())
}

fn millis(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

fn opt_millis(time: Option<DateTime<Utc>>) -> Option<i64> {
    time.map(millis)
}

pub(crate) fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

pub(crate) fn opt_time(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.map(time)
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text)
        .map_err(|error| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(error)))
}

fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    let status: String = row.get(7)?;
    let metadata: Option<String> = row.get(8)?;
    let policy: Option<String> = row.get(9)?;
    Ok(Job {
        id: get_id(row, 0, "job")?,
        agent_id: row.get(1)?,
        name: row.get(2)?,
        description: row.get(3)?,
        dynamic: row.get(4)?,
        user_id: row.get(5)?,
        active: row.get(6)?,
        status: JobStatus::parse(&status).unwrap_or(JobStatus::Inactive),
        metadata: metadata.map(|text| from_json(&text)).transpose()?.unwrap_or_default(),
        policy: policy.map(|text| from_json(&text)).transpose()?.unwrap_or_default(),
        active_version_id: get_optional_id(row, 10, "ver")?,
        anchor_at: time(row.get(11)?),
        next_run_at: opt_time(row.get(12)?),
        last_run_at: opt_time(row.get(13)?),
        consecutive_failures: row.get(14)?,
        missed_slots: row.get::<_, i64>(15)? as u64,
        created_at: time(row.get(16)?),
        updated_at: time(row.get(17)?),
        authority: get_authority(row, 18)?,
    })
}

/// Reads a job's stored authority; bits that name no scope set are an error, never a guess.
fn get_authority(row: &Row<'_>, index: usize) -> rusqlite::Result<sundial_core::Authority> {
    let stored: Option<i64> = row.get(index)?;
    sundial_core::Authority::from_stored(stored).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Integer,
            format!("unknown job authority {stored:?}").into(),
        )
    })
}

/// Reads a row of [`VERSION_SELECT`].
fn version_from_row(row: &Row<'_>) -> rusqlite::Result<JobVersion> {
    let retry: Option<String> = row.get(8)?;
    let metadata: Option<String> = row.get(9)?;
    let kind: Option<String> = row.get(11)?;
    Ok(JobVersion {
        id: get_id(row, 0, "ver")?,
        job_id: get_id(row, 1, "job")?,
        name: row.get(2)?,
        version: row.get(3)?,
        description: row.get(4)?,
        code: row.get(5)?,
        schedule: get_schedule(row, 6)?,
        timeout_seconds: row.get(7)?,
        retry: retry.map(|text| from_json::<RetryPolicy>(&text)).transpose()?,
        metadata: metadata.map(|text| from_json::<JsonObject>(&text)).transpose()?,
        created_at: time(row.get(10)?),
        kind: kind.and_then(|kind| CodeKind::parse(&kind)).unwrap_or_default(),
    })
}

fn execution_from_row(row: &Row<'_>) -> rusqlite::Result<Execution> {
    let status: String = row.get(5)?;
    let trigger: String = row.get(6)?;
    let result: Option<String> = row.get(12)?;
    Ok(Execution {
        id: row.get(0)?,
        agent_id: row.get(1)?,
        job_id: row.get(2)?,
        version_id: row.get(3)?,
        occurrence_id: row.get(4)?,
        status: ExecutionStatus::parse(&status).unwrap_or(ExecutionStatus::Failed),
        trigger: Trigger::parse(&trigger).unwrap_or(Trigger::Manual),
        scheduled_for: opt_time(row.get(7)?),
        due_at: time(row.get(8)?),
        started_at: opt_time(row.get(9)?),
        completed_at: opt_time(row.get(10)?),
        duration_ms: row.get(11)?,
        result: result.map(|text| from_json::<Value>(&text)).transpose()?,
        error: row.get(13)?,
        retry_count: row.get(14)?,
        logs: from_json::<Vec<LogLine>>(&row.get::<_, String>(15)?)?,
        created_at: time(row.get(16)?),
    })
}

/// A JSON object as stored: `NULL` when empty.
fn object_text(object: &JsonObject) -> Option<String> {
    (!object.is_empty()).then(|| to_json(object))
}

/// A policy as stored: `NULL` for the defaults.
fn policy_text(policy: &JobPolicy) -> Option<String> {
    match policy.stored() {
        Value::Object(object) if object.is_empty() => None,
        stored => Some(to_json(&stored)),
    }
}

pub(crate) fn insert_job(transaction: &Transaction<'_>, job: &Job) -> Result<()> {
    insert_job_row(
        transaction,
        job,
        &format!(
            "INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
             ?16, ?17, ?18, ?19)"
        ),
        true,
    )
}

/// Writes a job as schema 6 stored it (its migration runs before later columns exist).
pub(crate) fn insert_job_v6(transaction: &Transaction<'_>, job: &Job) -> Result<()> {
    let sql = concat!(
        "INSERT INTO jobs (",
        job_columns_v6!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
    );
    insert_job_row(transaction, job, sql, false)
}

/// Runs `sql` with a job's values in [`JOB_COLUMNS`] order (without `authority` for schema 6).
fn insert_job_row(transaction: &Transaction<'_>, job: &Job, sql: &str, with_authority: bool) -> Result<()> {
    let (id, active_version_id) = (pack_job_id(&job.id), job.active_version_id.as_deref().map(pack_version_id));
    let (status, metadata, policy) = (job.status.as_str(), object_text(&job.metadata), policy_text(&job.policy));
    let times = [millis(job.anchor_at), millis(job.created_at), millis(job.updated_at)];
    let (next_run_at, last_run_at) = (opt_millis(job.next_run_at), opt_millis(job.last_run_at));
    let (missed_slots, authority) = (job.missed_slots as i64, job.authority.stored());
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![
        &id,
        &job.agent_id,
        &job.name,
        &job.description,
        &job.dynamic,
        &job.user_id,
        &job.active,
        &status,
        &metadata,
        &policy,
        &active_version_id,
        &times[0],
        &next_run_at,
        &last_run_at,
        &job.consecutive_failures,
        &missed_slots,
        &times[1],
        &times[2],
    ];
    if with_authority {
        values.push(&authority);
    }
    transaction.prepare_cached(sql).and_then(|mut statement| statement.execute(&values[..])).map_err(database)?;
    Ok(())
}

/// What a version may share with its job instead of storing a copy: the job's name, metadata and creation time.
/// When the job's name or metadata changes, triggers first copy the old value into the versions that share it.
pub(crate) struct Owner<'a> {
    /// The job's name.
    pub name: &'a str,
    /// The job's metadata.
    pub metadata: &'a JsonObject,
    /// The job's creation time.
    pub created_at: DateTime<Utc>,
}

impl<'a> Owner<'a> {
    /// The owner of versions of `job`.
    pub fn of(job: &'a Job) -> Owner<'a> {
        Owner { name: &job.name, metadata: &job.metadata, created_at: job.created_at }
    }
}

/// Numbers of code texts in `codes`: finds or adds a text, remembering the last one (a batch of jobs usually shares
/// its code).
#[derive(Default)]
pub(crate) struct Codes {
    last: Option<(String, i64)>,
}

impl Codes {
    /// The number of `code` in `codes`, added if it is not there.
    pub fn id(&mut self, transaction: &Transaction<'_>, code: &str) -> Result<i64> {
        if let Some((text, id)) = &self.last {
            if text == code {
                return Ok(*id);
            }
        }
        let hash = code_hash(code);
        let found = transaction
            .prepare_cached("SELECT id FROM codes WHERE hash = ?1 AND code = ?2")
            .and_then(|mut statement| statement.query_row(params![hash, code], |row| row.get(0)).optional())
            .map_err(database)?;
        let id = match found {
            Some(id) => id,
            None => {
                transaction
                    .prepare_cached("INSERT INTO codes (hash, code) VALUES (?1, ?2)")
                    .and_then(|mut statement| statement.execute(params![hash, code]))
                    .map_err(database)?;
                transaction.last_insert_rowid()
            }
        };
        self.last = Some((code.to_owned(), id));
        Ok(id)
    }
}

/// Inserts a version; what it shares with `owner` (its job) is stored as a reference instead of a copy.
pub(crate) fn insert_version(
    transaction: &Transaction<'_>,
    version: &JobVersion,
    owner: Option<&Owner<'_>>,
    codes: &mut Codes,
) -> Result<()> {
    let taken = transaction
        .prepare_cached("SELECT 1 FROM job_versions WHERE job_id = ?1 AND (id = ?2 OR COALESCE(version, '1.0.0') = ?3)")
        .and_then(|mut statement| {
            statement.exists(params![pack_job_id(&version.job_id), pack_version_id(&version.id), version.version])
        })
        .map_err(database)?;
    if taken {
        return Err(StoreError::Conflict(format!("version {} of job {}", version.version, version.job_id)));
    }
    insert_new_version(transaction, version, owner, codes)
}

/// Inserts the first version of a job inserted in the same transaction (no version string can be taken yet).
fn insert_new_version(
    transaction: &Transaction<'_>,
    version: &JobVersion,
    owner: Option<&Owner<'_>>,
    codes: &mut Codes,
) -> Result<()> {
    let conflict = || StoreError::Conflict(format!("version {} of job {}", version.version, version.job_id));
    let code_id = codes.id(transaction, &version.code)?;
    let name = owner.filter(|owner| owner.name == version.name).map_or(Some(version.name.as_str()), |_| None);
    let metadata = match &version.metadata {
        None => rusqlite::types::Value::Null,
        Some(metadata) if owner.is_some_and(|owner| owner.metadata == metadata) => rusqlite::types::Value::Integer(1),
        Some(metadata) => rusqlite::types::Value::Text(to_json(metadata)),
    };
    let created_at =
        owner.filter(|owner| owner.created_at == version.created_at).map_or(Some(version.created_at), |_| None);
    let outcome = transaction
        .prepare_cached(
            "INSERT INTO job_versions (job_id, id, name, version, description, code_id, schedule, timeout_seconds, \
             retry, metadata, created_at, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                pack_job_id(&version.job_id),
                pack_version_id(&version.id),
                name,
                (version.version != FIRST_VERSION).then_some(&version.version),
                version.description,
                code_id,
                pack_schedule(&version.schedule),
                version.timeout_seconds,
                version.retry.as_ref().map(to_json),
                metadata,
                opt_millis(created_at),
                (version.kind != CodeKind::Function).then(|| version.kind.as_str()),
            ])
        });
    match outcome {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(error, _)) if error.code == rusqlite::ErrorCode::ConstraintViolation => {
            Err(conflict())
        }
        Err(error) => Err(database(error)),
    }
}

/// `job` as the owner of `version` when it is the version's job.
fn own_version<'a>(job: &'a Job, version: &JobVersion) -> Option<Owner<'a>> {
    (version.job_id == job.id).then(|| Owner::of(job))
}

/// The name, metadata and creation time of a job, for [`Owner`].
pub(crate) fn owner_of(
    transaction: &Transaction<'_>,
    job_id: &str,
) -> Result<Option<(String, JsonObject, DateTime<Utc>)>> {
    transaction
        .prepare_cached("SELECT name, metadata, created_at FROM jobs WHERE id = ?1")
        .and_then(|mut statement| {
            statement
                .query_row([pack_job_id(job_id)], |row| {
                    let metadata: Option<String> = row.get(1)?;
                    Ok((
                        row.get(0)?,
                        metadata.map(|text| from_json(&text)).transpose()?.unwrap_or_default(),
                        time(row.get(2)?),
                    ))
                })
                .optional()
        })
        .map_err(database)
}

fn insert_execution(transaction: &Transaction<'_>, execution: &Execution) -> Result<()> {
    transaction
        .prepare_cached(&format!(
            "INSERT INTO executions ({EXECUTION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, \
             ?13, ?14, ?15, ?16, ?17)"
        ))
        .and_then(|mut statement| {
            statement.execute(params![
                execution.id,
                execution.agent_id,
                execution.job_id,
                execution.version_id,
                execution.occurrence_id,
                execution.status.as_str(),
                execution.trigger.as_str(),
                opt_millis(execution.scheduled_for),
                millis(execution.due_at),
                opt_millis(execution.started_at),
                opt_millis(execution.completed_at),
                execution.duration_ms,
                execution.result.as_ref().map(to_json),
                execution.error,
                execution.retry_count,
                to_json(&execution.logs),
                millis(execution.created_at),
            ])
        })
        .map_err(database)?;
    Ok(())
}

fn get_job(transaction: &Transaction<'_>, job_id: &str) -> Result<Option<Job>> {
    transaction
        .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1 AND deleted_at IS NULL"))
        .and_then(|mut statement| statement.query_row([pack_job_id(job_id)], job_from_row).optional())
        .map_err(database)
}

fn get_version(transaction: &Transaction<'_>, job_id: &str, version_id: &str) -> Result<Option<JobVersion>> {
    transaction
        .prepare_cached(&format!("{VERSION_SELECT} WHERE v.job_id = ?1 AND v.id = ?2"))
        .and_then(|mut statement| {
            statement.query_row(params![pack_job_id(job_id), pack_version_id(version_id)], version_from_row).optional()
        })
        .map_err(database)
}

/// Versions kept by [`cached_version`] before the cache starts over.
const VERSION_CACHE: usize = 10_000;

thread_local! {
    /// Versions the writer thread has read, by id (this thread is the store's only user of its connection).
    static VERSIONS: std::cell::RefCell<std::collections::HashMap<String, Arc<JobVersion>>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// [`get_version`] for every start of an execution: a version never changes once made (see `sqlite_v6`), so the
/// writer keeps the versions it has read, shared with the starts it answers.
fn cached_version(transaction: &Transaction<'_>, job_id: &str, version_id: &str) -> Result<Option<Arc<JobVersion>>> {
    let cached =
        VERSIONS.with(|versions| versions.borrow().get(version_id).filter(|version| version.job_id == job_id).cloned());
    if cached.is_some() {
        return Ok(cached);
    }
    let version = get_version(transaction, job_id, version_id)?.map(Arc::new);
    if let Some(version) = &version {
        VERSIONS.with(|versions| {
            let mut versions = versions.borrow_mut();
            if versions.len() >= VERSION_CACHE {
                versions.clear();
            }
            versions.insert(version_id.to_owned(), version.clone());
        });
    }
    Ok(version)
}

fn list_versions(transaction: &Transaction<'_>, job_id: &str) -> Result<Vec<JobVersion>> {
    // Sorted here rather than with an `ORDER BY` on the shared creation time, which made SQLite recompile the
    // statement on every call (see `VERSION_SELECT`). The order is the stored one: by creation time, then by id as
    // stored (ids of another form, stored as text, before packed ones).
    let mut statement =
        transaction.prepare_cached(&format!("{VERSION_SELECT} WHERE v.job_id = ?1")).map_err(database)?;
    let rows = statement.query_map([pack_job_id(job_id)], version_from_row).map_err(database)?;
    let mut versions = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(database)?;
    versions.sort_by(|a, b| {
        let key = |version: &JobVersion| (version.created_at, pack_version_id(&version.id).is_packed());
        key(a).cmp(&key(b)).then_with(|| a.id.cmp(&b.id))
    });
    Ok(versions)
}

fn get_execution(transaction: &Transaction<'_>, id: &str) -> Result<Option<Execution>> {
    transaction
        .prepare_cached(&format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = ?1"))
        .and_then(|mut statement| statement.query_row([id], execution_from_row).optional())
        .map_err(database)
}

/// Cancels pending executions of a job that a schedule made (slots and their retries), not manual triggers.
fn cancel_pending(transaction: &Transaction<'_>, job_id: &str, now: i64) -> Result<()> {
    transaction
        .execute_cached(
            "UPDATE executions SET status = 'cancelled', started_at = ?2, completed_at = ?2, lease_owner = NULL \
             WHERE job_id = ?1 AND status = 'pending' AND trigger != 'manual'",
            params![job_id, now],
        )
        .map_err(database)?;
    Ok(())
}

fn apply_activation(transaction: &Transaction<'_>, job_id: &str, change: &Activation, now: i64) -> Result<()> {
    transaction
        .execute_cached(
            "UPDATE jobs SET active = ?2, status = ?3, anchor_at = COALESCE(?4, anchor_at), next_run_at = ?5, \
             updated_at = ?6 WHERE id = ?1 AND deleted_at IS NULL",
            params![
                pack_job_id(job_id),
                change.active,
                change.status.as_str(),
                opt_millis(change.anchor_at),
                opt_millis(change.next_run_at),
                now
            ],
        )
        .map_err(database)?;
    if !change.active {
        cancel_pending(transaction, job_id, now)?;
    }
    Ok(())
}

/// Columns of a message with its delivery state (`m` is messages, `d` the left-joined deliveries).
const MESSAGE_COLUMNS: &str =
    "m.seq, m.id, m.agent_id, m.user_id, m.content, m.execution_id, m.created_at, d.status, m.job_id, m.occurrence_id";
const MESSAGE_FROM: &str = "messages m LEFT JOIN deliveries d ON d.message_id = m.id";

fn message_from_row(row: &Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        seq: row.get(0)?,
        id: row.get(1)?,
        agent_id: row.get(2)?,
        user_id: row.get(3)?,
        content: from_json(&row.get::<_, String>(4)?)?,
        execution_id: row.get(5)?,
        job_id: row.get(8)?,
        occurrence_id: row.get(9)?,
        created_at: time(row.get(6)?),
        delivery: row.get(7)?,
    })
}

fn get_message(transaction: &Transaction<'_>, condition: &str, value: &str) -> Result<Option<Message>> {
    transaction
        .query_row_cached(
            &format!("SELECT {MESSAGE_COLUMNS} FROM {MESSAGE_FROM} WHERE {condition}"),
            [value],
            message_from_row,
        )
        .optional()
        .map_err(database)
}

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        id: row.get(0)?,
        agent_id: row.get(1)?,
        user_id: row.get(2)?,
        admin: row.get(3)?,
        hash: row.get(4)?,
        created_at: time(row.get(5)?),
        scopes: row.get::<_, Option<String>>(6)?.map(|text| crate::split_scopes(&text)),
        expires_at: opt_time(row.get(7)?),
    })
}

fn agent_from_row(row: &Row<'_>) -> rusqlite::Result<Agent> {
    Ok(Agent {
        id: row.get(0)?,
        env: from_json(&row.get::<_, String>(1)?)?,
        created_at: time(row.get(2)?),
        settings: from_json(&row.get::<_, String>(3)?)?,
    })
}

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        agent_id: row.get(0)?,
        user_id: row.get(1)?,
        data: from_json(&row.get::<_, String>(2)?)?,
        created_at: time(row.get(3)?),
        updated_at: time(row.get(4)?),
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn agent_insert(&self, agent: &Agent) -> Result<()> {
        let agent = agent.clone();
        self.write(move |transaction| {
            let inserted = transaction
                .execute_cached(
                    "INSERT INTO agents (id, env, created_at, settings) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                    params![agent.id, to_json(&agent.env), millis(agent.created_at), to_json(&agent.settings)],
                )
                .map_err(database)?;
            if inserted == 0 {
                return Err(StoreError::Conflict(format!("agent {}", agent.id)));
            }
            Ok(())
        })
        .await
    }

    async fn agent_get(&self, agent_id: &str) -> Result<Option<Agent>> {
        let agent_id = agent_id.to_owned();
        self.write(move |transaction| {
            transaction
                .query_row_cached(
                    "SELECT id, env, created_at, settings FROM agents WHERE id = ?1",
                    [agent_id],
                    agent_from_row,
                )
                .optional()
                .map_err(database)
        })
        .await
    }

    async fn agent_list(&self) -> Result<Vec<Agent>> {
        self.write(move |transaction| {
            let mut statement = transaction
                .prepare("SELECT id, env, created_at, settings FROM agents ORDER BY id")
                .map_err(database)?;
            let rows = statement.query_map([], agent_from_row).map_err(database)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(database)
        })
        .await
    }

    async fn agent_set_settings(&self, agent_id: &str, settings: &JsonObject) -> Result<bool> {
        let (agent_id, settings) = (agent_id.to_owned(), to_json(settings));
        self.write(move |transaction| {
            let changed = transaction
                .execute_cached("UPDATE agents SET settings = ?2 WHERE id = ?1", params![agent_id, settings])
                .map_err(database)?;
            Ok(changed > 0)
        })
        .await
    }

    async fn agent_set_env(&self, agent_id: &str, env: &JsonObject) -> Result<bool> {
        let (agent_id, env) = (agent_id.to_owned(), to_json(env));
        self.write(move |transaction| {
            let changed = transaction
                .execute_cached("UPDATE agents SET env = ?2 WHERE id = ?1", params![agent_id, env])
                .map_err(database)?;
            Ok(changed > 0)
        })
        .await
    }

    async fn key_insert(&self, key: &ApiKey) -> Result<()> {
        let key = key.clone();
        self.write(move |transaction| {
            transaction
                .execute_cached(
                    "INSERT INTO api_keys (id, agent_id, user_id, admin, hash, created_at, scopes, expires_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        key.id,
                        key.agent_id,
                        key.user_id,
                        key.admin,
                        key.hash,
                        millis(key.created_at),
                        key.scopes.as_ref().map(|scopes| scopes.join(",")),
                        opt_millis(key.expires_at)
                    ],
                )
                .map_err(database)?;
            Ok(())
        })
        .await
    }

    async fn key_find(&self, hash: &str) -> Result<Option<ApiKey>> {
        let hash = hash.to_owned();
        self.write(move |transaction| {
            transaction
                .prepare_cached(&format!("{KEY_SELECT} WHERE hash = ?1 AND revoked_at IS NULL"))
                .and_then(|mut statement| statement.query_row([hash], key_from_row).optional())
                .map_err(database)
        })
        .await
    }

    async fn key_get(&self, key_id: &str) -> Result<Option<ApiKey>> {
        let key_id = key_id.to_owned();
        self.write(move |transaction| {
            transaction
                .prepare_cached(&format!("{KEY_SELECT} WHERE id = ?1 AND revoked_at IS NULL"))
                .and_then(|mut statement| statement.query_row([key_id], key_from_row).optional())
                .map_err(database)
        })
        .await
    }

    async fn key_revoke(&self, agent_id: &str, key_id: &str, now: DateTime<Utc>) -> Result<bool> {
        let (agent_id, key_id) = (agent_id.to_owned(), key_id.to_owned());
        self.write(move |transaction| {
            let changed = transaction
                .execute_cached(
                    "UPDATE api_keys SET revoked_at = ?3, hash = 'revoked:' || id \
                     WHERE id = ?2 AND agent_id = ?1 AND revoked_at IS NULL",
                    params![agent_id, key_id, millis(now)],
                )
                .map_err(database)?;
            Ok(changed > 0)
        })
        .await
    }

    async fn job_dedup_bind(
        &self,
        agent_id: &str,
        user_id: Option<&str>,
        key: &str,
        job_id: &str,
        now: DateTime<Utc>,
    ) -> Result<String> {
        let (agent_id, user_id, key, job_id) =
            (agent_id.to_owned(), user_id.unwrap_or_default().to_owned(), key.to_owned(), job_id.to_owned());
        self.write(move |transaction| {
            transaction
                .execute_cached(
                    "INSERT INTO job_dedup (agent_id, user_id, dedup_key, job_id, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                    params![agent_id, user_id, key, job_id, millis(now)],
                )
                .map_err(database)?;
            transaction
                .query_row_cached(
                    "SELECT job_id FROM job_dedup WHERE agent_id = ?1 AND user_id = ?2 AND dedup_key = ?3",
                    params![agent_id, user_id, key],
                    |row| row.get(0),
                )
                .map_err(database)
        })
        .await
    }

    async fn job_dedup_rebind(
        &self,
        agent_id: &str,
        user_id: Option<&str>,
        key: &str,
        from: &str,
        to: Option<&str>,
    ) -> Result<bool> {
        let (agent_id, user_id, key, from, to) = (
            agent_id.to_owned(),
            user_id.unwrap_or_default().to_owned(),
            key.to_owned(),
            from.to_owned(),
            to.map(str::to_owned),
        );
        self.write(move |transaction| {
            let changed = match to {
                Some(to) => transaction.execute_cached(
                    "UPDATE job_dedup SET job_id = ?5 WHERE agent_id = ?1 AND user_id = ?2 AND dedup_key = ?3 \
                     AND job_id = ?4",
                    params![agent_id, user_id, key, from, to],
                ),
                None => transaction.execute_cached(
                    "DELETE FROM job_dedup WHERE agent_id = ?1 AND user_id = ?2 AND dedup_key = ?3 AND job_id = ?4",
                    params![agent_id, user_id, key, from],
                ),
            }
            .map_err(database)?;
            Ok(changed > 0)
        })
        .await
    }

    async fn admin_key_count(&self) -> Result<u64> {
        self.write(move |transaction| {
            transaction
                .query_row_cached("SELECT COUNT(*) FROM api_keys WHERE admin = 1 AND revoked_at IS NULL", [], |row| {
                    row.get::<_, i64>(0)
                })
                .map(|count| count as u64)
                .map_err(database)
        })
        .await
    }

    async fn user_get(&self, agent_id: &str, user_id: &str) -> Result<Option<UserRecord>> {
        let (agent_id, user_id) = (agent_id.to_owned(), user_id.to_owned());
        self.write(move |transaction| {
            transaction
                .query_row_cached(
                    "SELECT agent_id, user_id, data, created_at, updated_at FROM users \
                     WHERE agent_id = ?1 AND user_id = ?2",
                    [agent_id, user_id],
                    user_from_row,
                )
                .optional()
                .map_err(database)
        })
        .await
    }

    async fn user_put(
        &self,
        agent_id: &str,
        user_id: &str,
        data: &JsonObject,
        now: DateTime<Utc>,
    ) -> Result<UserRecord> {
        let (agent_id, user_id, data) = (agent_id.to_owned(), user_id.to_owned(), to_json(data));
        self.write(move |transaction| {
            transaction
                .query_row_cached(
                    "INSERT INTO users (agent_id, user_id, data, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4) \
                     ON CONFLICT (agent_id, user_id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at \
                     RETURNING agent_id, user_id, data, created_at, updated_at",
                    params![agent_id, user_id, data, millis(now)],
                    user_from_row,
                )
                .map_err(database)
        })
        .await
    }

    async fn message_insert(
        &self,
        agent_id: &str,
        user_id: &str,
        content: &Value,
        origin: Option<&MessageOrigin>,
        dedupe_key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Message> {
        let (agent_id, user_id, content) = (agent_id.to_owned(), user_id.to_owned(), to_json(content));
        let origin = origin.cloned();
        let dedupe_key = dedupe_key.map(str::to_owned);
        let id = crate::new_id("msg");
        self.write(move |transaction| {
            if let Some(key) = &dedupe_key {
                if let Some(earlier) = get_message(transaction, "m.dedupe_key = ?1", key)? {
                    return Ok(earlier);
                }
            }
            transaction
                .execute_cached(
                    "INSERT INTO messages (id, agent_id, user_id, content, execution_id, dedupe_key, created_at, job_id, \
                     occurrence_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        id,
                        agent_id,
                        user_id,
                        content,
                        origin.as_ref().map(|origin| &origin.execution_id),
                        dedupe_key,
                        millis(now),
                        origin.as_ref().map(|origin| &origin.job_id),
                        origin.as_ref().map(|origin| &origin.occurrence_id),
                    ],
                )
                .map_err(database)?;
            let settings: String = transaction
                .query_row_cached("SELECT settings FROM agents WHERE id = ?1", [&agent_id], |row| row.get(0))
                .optional()
                .map_err(database)?
                .unwrap_or_else(|| "{}".into());
            let settings: JsonObject = serde_json::from_str(&settings).unwrap_or_default();
            if let Some(url) = settings.get("webhookUrl").and_then(Value::as_str) {
                transaction
                    .execute_cached(
                        "INSERT INTO deliveries (message_id, agent_id, url, status, next_attempt_at) \
                         VALUES (?1, ?2, ?3, 'pending', ?4)",
                        params![id, agent_id, url, millis(now)],
                    )
                    .map_err(database)?;
            }
            get_message(transaction, "m.id = ?1", &id)?.ok_or_else(|| StoreError::Database("message vanished".into()))
        })
        .await
    }

    async fn deliveries_claim(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        let owner = owner.to_owned();
        self.write(move |transaction| {
            let claimed: Vec<(String, String, u32)> = {
                let mut statement = transaction
                    .prepare_cached(
                        "UPDATE deliveries SET lease_owner = ?2, lease_until = ?3 WHERE message_id IN ( \
                           SELECT message_id FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?1 \
                           AND (lease_owner IS NULL OR lease_until < ?1) ORDER BY next_attempt_at LIMIT ?4) \
                         RETURNING message_id, url, attempts",
                    )
                    .map_err(database)?;
                let rows = statement
                    .query_map(params![millis(now), owner, millis(lease_until), limit as i64], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                    })
                    .map_err(database)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(database)?
            };
            let mut deliveries = Vec::with_capacity(claimed.len());
            for (message_id, url, attempts) in claimed {
                if let Some(message) = get_message(transaction, "m.id = ?1", &message_id)? {
                    deliveries.push(Delivery { message, url, attempts });
                }
            }
            Ok(deliveries)
        })
        .await
    }

    async fn delivery_finish(&self, message_id: &str, outcome: &DeliveryOutcome, now: DateTime<Utc>) -> Result<()> {
        let (message_id, outcome) = (message_id.to_owned(), outcome.clone());
        self.write(move |transaction| {
            let now = millis(now);
            let outcome = match &outcome {
                DeliveryOutcome::Delivered => transaction.execute_cached(
                    "UPDATE deliveries SET status = 'delivered', attempts = attempts + 1, delivered_at = ?2, \
                     lease_owner = NULL, last_error = NULL WHERE message_id = ?1 AND status = 'pending'",
                    params![message_id, now],
                ),
                DeliveryOutcome::Retry { at, error } => transaction.execute_cached(
                    "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3, \
                     lease_owner = NULL WHERE message_id = ?1 AND status = 'pending'",
                    params![message_id, millis(*at), error],
                ),
                DeliveryOutcome::Failed { error } => transaction.execute_cached(
                    "UPDATE deliveries SET status = 'failed', attempts = attempts + 1, last_error = ?2, \
                     lease_owner = NULL WHERE message_id = ?1 AND status = 'pending'",
                    params![message_id, error],
                ),
            };
            outcome.map_err(database)?;
            Ok(())
        })
        .await
    }

    async fn message_list(&self, agent_id: &str, user_id: &str, after: i64, limit: usize) -> Result<Vec<Message>> {
        let (agent_id, user_id) = (agent_id.to_owned(), user_id.to_owned());
        self.write(move |transaction| {
            let mut statement = transaction
                .prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM {MESSAGE_FROM} \
                     WHERE m.agent_id = ?1 AND m.user_id = ?2 AND m.seq > ?3 ORDER BY m.seq LIMIT ?4"
                ))
                .map_err(database)?;
            let rows = statement
                .query_map(params![agent_id, user_id, after, limit as i64], message_from_row)
                .map_err(database)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(database)
        })
        .await
    }

    async fn job_insert(&self, job: &Job, version: Option<&JobVersion>) -> Result<()> {
        let (job, version) = (job.clone(), version.cloned());
        self.write(move |transaction| {
            insert_job(transaction, &job)?;
            if let Some(version) = &version {
                insert_version(transaction, version, own_version(&job, version).as_ref(), &mut Codes::default())?;
            }
            Ok(())
        })
        .await
    }

    async fn jobs_insert_batch(&self, jobs: std::sync::Arc<Vec<(Job, Option<JobVersion>)>>) -> Result<()> {
        self.write(move |transaction| {
            let mut codes = Codes::default();
            for (job, version) in jobs.iter() {
                insert_job(transaction, job)?;
                if let Some(version) = version {
                    // A job inserted just now has no other version its own could clash with.
                    insert_new_version(transaction, version, own_version(job, version).as_ref(), &mut codes)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn job_get(&self, agent_id: &str, job_id: &str) -> Result<Option<Job>> {
        let (agent_id, job_id) = (agent_id.to_owned(), job_id.to_owned());
        self.write(move |transaction| Ok(get_job(transaction, &job_id)?.filter(|job| job.agent_id == agent_id))).await
    }

    async fn job_list(&self, agent_id: &str, filter: &JobFilter) -> Result<Vec<Job>> {
        let (agent_id, filter) = (agent_id.to_owned(), filter.clone());
        self.write(move |transaction| {
            let mut statement = transaction
                .prepare_cached(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE agent_id = ?1 AND deleted_at IS NULL \
                     AND (?2 OR dynamic = 0) AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR user_id = ?4 OR (dynamic = 0 AND NOT ?8)) \
                     AND (?5 IS NULL OR id > ?5) AND (?7 IS NULL OR name = ?7) ORDER BY id LIMIT ?6"
                ))
                .map_err(database)?;
            let rows = statement
                .query_map(
                    params![
                        agent_id,
                        filter.include_dynamic,
                        filter.status.map(JobStatus::as_str),
                        filter.user_id,
                        filter.after_id.as_deref().map(pack_job_id),
                        filter.limit as i64,
                        filter.name,
                        filter.user_only,
                    ],
                    job_from_row,
                )
                .map_err(database)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(database)
        })
        .await
    }

    async fn job_update_info(&self, job: &Job) -> Result<bool> {
        let job = job.clone();
        self.write(move |transaction| {
            let changed = transaction
                .execute_cached(
                    "UPDATE jobs SET name = ?2, description = ?3, policy = ?4, updated_at = ?5, authority = ?6 \
                     WHERE id = ?1 AND deleted_at IS NULL",
                    params![
                        pack_job_id(&job.id),
                        job.name,
                        job.description,
                        policy_text(&job.policy),
                        millis(job.updated_at),
                        job.authority.stored(),
                    ],
                )
                .map_err(database)?;
            Ok(changed > 0)
        })
        .await
    }

    async fn job_set_activation(&self, job_id: &str, change: &Activation, now: DateTime<Utc>) -> Result<Option<Job>> {
        let (job_id, change) = (job_id.to_owned(), change.clone());
        self.write(move |transaction| {
            if get_job(transaction, &job_id)?.is_none() {
                return Ok(None);
            }
            apply_activation(transaction, &job_id, &change, millis(now))?;
            get_job(transaction, &job_id)
        })
        .await
    }

    async fn job_set_active_version(
        &self,
        job_id: &str,
        version_id: &str,
        change: &Activation,
        now: DateTime<Utc>,
    ) -> Result<Option<Job>> {
        let (job_id, version_id, change) = (job_id.to_owned(), version_id.to_owned(), change.clone());
        self.write(move |transaction| {
            if get_job(transaction, &job_id)?.is_none() {
                return Ok(None);
            }
            transaction
                .execute_cached(
                    "UPDATE jobs SET active_version_id = ?2 WHERE id = ?1",
                    params![pack_job_id(&job_id), pack_version_id(&version_id)],
                )
                .map_err(database)?;
            // A new version changes the schedule: slots recorded for the old one do not run.
            cancel_pending(transaction, &job_id, millis(now))?;
            apply_activation(transaction, &job_id, &change, millis(now))?;
            get_job(transaction, &job_id)
        })
        .await
    }

    async fn job_delete(&self, agent_id: &str, job_id: &str, now: DateTime<Utc>) -> Result<bool> {
        let (agent_id, job_id) = (agent_id.to_owned(), job_id.to_owned());
        self.write(move |transaction| {
            let now = millis(now);
            let changed = transaction
                .execute_cached(
                    "UPDATE jobs SET deleted_at = ?3, active = 0, status = 'inactive', next_run_at = NULL, updated_at = ?3 \
                     WHERE id = ?1 AND agent_id = ?2 AND deleted_at IS NULL",
                    params![pack_job_id(&job_id), agent_id, now],
                )
                .map_err(database)?;
            if changed > 0 {
                transaction
                    .execute_cached(
                        "UPDATE executions SET status = 'cancelled', started_at = ?2, completed_at = ?2, \
                         lease_owner = NULL WHERE job_id = ?1 AND status = 'pending'",
                        params![job_id, now],
                    )
                    .map_err(database)?;
            }
            Ok(changed > 0)
        })
        .await
    }

    async fn job_metadata_update(
        &self,
        agent_id: &str,
        job_id: &str,
        metadata: &JsonObject,
        replace: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<JsonObject>> {
        let (agent_id, job_id, patch) = (agent_id.to_owned(), job_id.to_owned(), metadata.clone());
        self.write(move |transaction| {
            let Some(job) = get_job(transaction, &job_id)?.filter(|job| job.agent_id == agent_id) else {
                return Ok(None);
            };
            let merged = if replace {
                patch
            } else {
                let mut merged = job.metadata;
                merged.extend(patch);
                merged
            };
            transaction
                .execute_cached(
                    "UPDATE jobs SET metadata = ?2, updated_at = ?3 WHERE id = ?1",
                    params![pack_job_id(&job_id), object_text(&merged), millis(now)],
                )
                .map_err(database)?;
            Ok(Some(merged))
        })
        .await
    }

    async fn active_job_count(&self, agent_id: &str) -> Result<u64> {
        let agent_id = agent_id.to_owned();
        self.write(move |transaction| {
            transaction
                .query_row_cached(
                    "SELECT COUNT(*) FROM jobs WHERE agent_id = ?1 AND active = 1 AND deleted_at IS NULL",
                    [agent_id],
                    |row| row.get::<_, i64>(0),
                )
                .map(|count| count as u64)
                .map_err(database)
        })
        .await
    }

    async fn version_insert(&self, version: &JobVersion) -> Result<()> {
        let version = version.clone();
        self.write(move |transaction| {
            let owner = owner_of(transaction, &version.job_id)?;
            let owner =
                owner.as_ref().map(|(name, metadata, created_at)| Owner { name, metadata, created_at: *created_at });
            insert_version(transaction, &version, owner.as_ref(), &mut Codes::default())
        })
        .await
    }

    async fn version_get(&self, job_id: &str, version_id: &str) -> Result<Option<JobVersion>> {
        let (job_id, version_id) = (job_id.to_owned(), version_id.to_owned());
        self.write(move |transaction| get_version(transaction, &job_id, &version_id)).await
    }

    async fn version_find(&self, job_id: &str, version: &str) -> Result<Option<JobVersion>> {
        let (job_id, version) = (job_id.to_owned(), version.to_owned());
        self.write(move |transaction| {
            transaction
                .query_row_cached(
                    &format!("{VERSION_SELECT} WHERE v.job_id = ?1 AND COALESCE(v.version, '1.0.0') = ?2"),
                    params![pack_job_id(&job_id), version],
                    version_from_row,
                )
                .optional()
                .map_err(database)
        })
        .await
    }

    async fn version_list(&self, job_id: &str) -> Result<Vec<JobVersion>> {
        let job_id = job_id.to_owned();
        self.write(move |transaction| list_versions(transaction, &job_id)).await
    }

    async fn jobs_due(&self, horizon: DateTime<Utc>, limit: usize) -> Result<Vec<DueJob>> {
        self.write_lazy(move |transaction| {
            let mut statement = transaction
                .prepare_cached(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE active = 1 AND deleted_at IS NULL AND next_run_at IS NOT NULL \
                     AND next_run_at <= ?1 ORDER BY next_run_at LIMIT ?2"
                ))
                .map_err(database)?;
            let jobs = statement
                .query_map(params![millis(horizon), limit as i64], job_from_row)
                .map_err(database)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(database)?;
            let mut due = Vec::with_capacity(jobs.len());
            for job in jobs {
                let Some(version_id) = &job.active_version_id else { continue };
                if let Some(version) = cached_version(transaction, &job.id, version_id)? {
                    due.push(DueJob { job, version });
                }
            }
            Ok(due)
        })
        .await
    }

    async fn next_slot_at(&self) -> Result<Option<DateTime<Utc>>> {
        self.write_lazy(move |transaction| {
            transaction
                .query_row_cached(
                    "SELECT MIN(next_run_at) FROM jobs WHERE active = 1 AND deleted_at IS NULL AND next_run_at IS NOT NULL",
                    [],
                    |row| row.get::<_, Option<i64>>(0),
                )
                .map(|millis| millis.and_then(DateTime::from_timestamp_millis))
                .map_err(database)
        })
        .await
    }

    async fn occurrences_record(&self, records: &[OccurrenceRecord], now: DateTime<Utc>) -> Result<usize> {
        let records = records.to_vec();
        self.write_lazy(move |transaction| {
            let now = millis(now);
            let mut applied = 0;
            for record in &records {
                let advanced = transaction
                    .prepare_cached(
                        "UPDATE jobs SET next_run_at = ?3, missed_slots = missed_slots + ?4, updated_at = ?5 \
                         WHERE id = ?1 AND next_run_at = ?2 AND active = 1 AND deleted_at IS NULL",
                    )
                    .and_then(|mut statement| {
                        statement.execute(params![
                            pack_job_id(&record.job_id),
                            millis(record.expected_next_run_at),
                            opt_millis(record.next_run_at),
                            record.missed as i64,
                            now
                        ])
                    })
                    .map_err(database)?;
                if advanced == 0 {
                    continue;
                }
                for slot in &record.slots {
                    let Some(scheduled_for) = slot.scheduled_for else { continue };
                    let inserted = transaction
                        .prepare_cached(
                            "INSERT INTO occurrences (id, job_id, scheduled_for, created_at) VALUES (?1, ?2, ?3, ?4) \
                             ON CONFLICT (job_id, scheduled_for) DO NOTHING",
                        )
                        .and_then(|mut statement| {
                            statement.execute(params![slot.occurrence_id, slot.job_id, millis(scheduled_for), now])
                        })
                        .map_err(database)?;
                    if inserted > 0 {
                        insert_execution(transaction, slot)?;
                    }
                }
                applied += 1;
            }
            Ok(applied)
        })
        .await
    }

    async fn execution_insert(&self, execution: &Execution) -> Result<()> {
        let execution = execution.clone();
        self.write(move |transaction| insert_execution(transaction, &execution)).await
    }

    async fn executions_claim(
        &self,
        horizon: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Execution>> {
        let owner = owner.to_owned();
        self.write_lazy(move |transaction| {
            let mut statement = transaction
                .prepare_cached(&format!(
                    "UPDATE executions SET lease_owner = ?2, lease_until = ?3 WHERE id IN ( \
                       SELECT id FROM executions WHERE status = 'pending' AND due_at <= ?1 \
                       AND (lease_owner IS NULL OR lease_until < ?4) ORDER BY due_at LIMIT ?5) \
                     RETURNING {EXECUTION_COLUMNS}"
                ))
                .map_err(database)?;
            let rows = statement
                .query_map(
                    params![millis(horizon), owner, millis(lease_until), millis(now), limit as i64],
                    execution_from_row,
                )
                .map_err(database)?;
            let mut claimed = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(database)?;
            claimed.sort_by_key(|execution| execution.due_at);
            Ok(claimed)
        })
        .await
    }

    async fn execution_start(
        &self,
        id: &str,
        owner: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<StartOutcome> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.write_lazy(move |transaction| start_execution(transaction, &id, &owner, lease_until, now)).await
    }

    async fn executions_start(
        &self,
        starts: &[(String, DateTime<Utc>)],
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<StartOutcome>> {
        let (starts, owner) = (starts.to_vec(), owner.to_owned());
        self.write_lazy(move |transaction| {
            starts.iter().map(|(id, now)| start_execution(transaction, id, &owner, lease_until, *now)).collect()
        })
        .await
    }

    async fn execution_finish(&self, finish: &ExecutionFinish) -> Result<bool> {
        let finish = finish.clone();
        self.write_lazy(move |transaction| finish_execution(transaction, &finish)).await
    }

    async fn executions_finish(&self, finishes: &[ExecutionFinish]) -> Result<Vec<bool>> {
        let finishes = finishes.to_vec();
        self.write_lazy(move |transaction| {
            finishes.iter().map(|finish| finish_execution(transaction, finish)).collect()
        })
        .await
    }

    async fn execution_note(&self, id: &str, note: &str) -> Result<bool> {
        let (id, note) = (id.to_owned(), note.to_owned());
        self.write_lazy(move |transaction| {
            let changed = transaction
                .execute_cached(
                    "UPDATE executions SET error = COALESCE(error || char(10), '') || ?2 \
                     WHERE id = ?1 AND status NOT IN ('pending', 'running')",
                    params![id, note],
                )
                .map_err(database)?;
            Ok(changed > 0)
        })
        .await
    }

    async fn executions_heartbeat(&self, owner: &str, lease_until: DateTime<Utc>) -> Result<u64> {
        let owner = owner.to_owned();
        self.write_lazy(move |transaction| {
            transaction
                .execute_cached(
                    "UPDATE executions SET lease_until = ?2 WHERE lease_owner = ?1 AND status = 'running'",
                    params![owner, millis(lease_until)],
                )
                .map(|count| count as u64)
                .map_err(database)
        })
        .await
    }

    async fn executions_orphaned(&self, now: DateTime<Utc>, live_owner: Option<&str>) -> Result<Vec<Orphan>> {
        let live_owner = live_owner.map(str::to_owned);
        self.write(move |transaction| {
            let mut statement = transaction
                .prepare_cached(&format!(
                    "SELECT {EXECUTION_COLUMNS}, lease_owner, lease_until FROM executions WHERE status = 'running' \
                     AND (lease_until IS NULL OR lease_until < ?1 OR (?2 IS NOT NULL AND lease_owner IS NOT ?2))"
                ))
                .map_err(database)?;
            let rows = statement
                .query_map(params![millis(now), live_owner], |row| {
                    Ok(Orphan {
                        execution: execution_from_row(row)?,
                        owner: row.get(EXECUTION_COLUMN_COUNT)?,
                        lease_until: row.get::<_, Option<i64>>(EXECUTION_COLUMN_COUNT + 1)?.map(time),
                    })
                })
                .map_err(database)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(database)
        })
        .await
    }

    async fn executions_release_claims(&self, owner: &str) -> Result<u64> {
        let owner = owner.to_owned();
        self.write_lazy(move |transaction| {
            transaction
                .execute_cached(
                    "UPDATE executions SET lease_owner = NULL, lease_until = NULL \
                     WHERE status = 'pending' AND lease_owner IS NOT NULL AND lease_owner != ?1",
                    [owner],
                )
                .map(|count| count as u64)
                .map_err(database)
        })
        .await
    }

    async fn executions_hand_back(&self, owner: &str) -> Result<u64> {
        let owner = owner.to_owned();
        self.write(move |transaction| {
            transaction
                .execute_cached(
                    "UPDATE executions SET lease_owner = NULL, lease_until = NULL \
                     WHERE status = 'pending' AND lease_owner = ?1",
                    [owner],
                )
                .map(|count| count as u64)
                .map_err(database)
        })
        .await
    }

    async fn execution_get(&self, agent_id: &str, execution_id: &str) -> Result<Option<Execution>> {
        let (agent_id, execution_id) = (agent_id.to_owned(), execution_id.to_owned());
        self.write(move |transaction| {
            Ok(get_execution(transaction, &execution_id)?.filter(|execution| execution.agent_id == agent_id))
        })
        .await
    }

    async fn execution_list(
        &self,
        job_id: &str,
        status: Option<ExecutionStatus>,
        limit: usize,
        offset: usize,
    ) -> Result<(Vec<Execution>, u64)> {
        let job_id = job_id.to_owned();
        self.write(move |transaction| {
            let status = status.map(ExecutionStatus::as_str);
            let total: i64 = transaction
                .query_row_cached(
                    "SELECT COUNT(*) FROM executions WHERE job_id = ?1 AND (?2 IS NULL OR status = ?2)",
                    params![job_id, status],
                    |row| row.get(0),
                )
                .map_err(database)?;
            let mut statement = transaction
                .prepare_cached(&format!(
                    "SELECT {EXECUTION_COLUMNS} FROM executions WHERE job_id = ?1 AND (?2 IS NULL OR status = ?2) \
                     ORDER BY created_at DESC, id DESC LIMIT ?3 OFFSET ?4"
                ))
                .map_err(database)?;
            let rows = statement
                .query_map(params![job_id, status, limit as i64, offset as i64], execution_from_row)
                .map_err(database)?;
            let executions = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(database)?;
            Ok((executions, total as u64))
        })
        .await
    }

    async fn execution_list_agent(&self, agent_id: &str, after: Option<&str>, limit: usize) -> Result<Vec<Execution>> {
        let (agent_id, after) = (agent_id.to_owned(), after.map(str::to_owned));
        self.write(move |transaction| {
            let mut statement = transaction
                .prepare_cached(&format!(
                    "SELECT {EXECUTION_COLUMNS} FROM executions WHERE agent_id = ?1 AND (?2 IS NULL OR id > ?2) \
                     ORDER BY id LIMIT ?3"
                ))
                .map_err(database)?;
            let rows =
                statement.query_map(params![agent_id, after, limit as i64], execution_from_row).map_err(database)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(database)
        })
        .await
    }

    async fn execution_latest(&self, job_id: &str) -> Result<Option<Execution>> {
        let job_id = job_id.to_owned();
        self.write(move |transaction| {
            transaction
                .prepare_cached(&format!(
                    "SELECT {EXECUTION_COLUMNS} FROM executions WHERE job_id = ?1 ORDER BY created_at DESC, id DESC \
                     LIMIT 1"
                ))
                .and_then(|mut statement| statement.query_row([job_id], execution_from_row).optional())
                .map_err(database)
        })
        .await
    }

    async fn executions_prune(&self, before: DateTime<Utc>, keep: usize) -> Result<u64> {
        self.write_lazy(move |transaction| {
            transaction
                .execute_cached(
                    "DELETE FROM executions WHERE id IN ( \
                       SELECT id FROM ( \
                         SELECT id, created_at, status, ROW_NUMBER() OVER (PARTITION BY job_id ORDER BY created_at DESC, \
                           id DESC) AS position FROM executions) \
                       WHERE position > ?2 AND created_at < ?1 AND status NOT IN ('pending', 'running'))",
                    params![millis(before), keep as i64],
                )
                .map(|count| count as u64)
                .map_err(database)
        })
        .await
    }

    async fn stats(&self, now: DateTime<Utc>) -> Result<StoreStats> {
        self.write(move |transaction| {
            let active_jobs: i64 = transaction
                .query_row_cached("SELECT COUNT(*) FROM jobs WHERE active = 1 AND deleted_at IS NULL", [], |row| {
                    row.get(0)
                })
                .map_err(database)?;
            let queue_depth: i64 = transaction
                .query_row_cached(
                    "SELECT COUNT(*) FROM executions WHERE status = 'pending' AND due_at <= ?1",
                    [millis(now)],
                    |row| row.get(0),
                )
                .map_err(database)?;
            Ok(StoreStats { active_jobs: active_jobs as u64, queue_depth: queue_depth as u64 })
        })
        .await
    }

    async fn overview(&self) -> Result<StoreOverview> {
        self.write(move |transaction| {
            let database_bytes: i64 = transaction
                .query_row_cached(
                    "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                    [],
                    |row| row.get(0),
                )
                .map_err(database)?;
            let mut statement = transaction
                .prepare_cached(
                    "SELECT lease_owner, SUM(status = 'running'), SUM(status = 'pending'), MAX(lease_until) \
                     FROM executions WHERE lease_owner IS NOT NULL AND status IN ('running', 'pending') \
                     GROUP BY lease_owner ORDER BY lease_owner",
                )
                .map_err(database)?;
            let nodes = statement
                .query_map([], |row| {
                    Ok(NodeLeases {
                        node: row.get(0)?,
                        running: row.get::<_, i64>(1)?.max(0) as u64,
                        claimed: row.get::<_, i64>(2)?.max(0) as u64,
                        lease_until: row.get::<_, Option<i64>>(3)?.map(time),
                    })
                })
                .map_err(database)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(database)?;
            Ok(StoreOverview { database_bytes: database_bytes.max(0) as u64, nodes })
        })
        .await
    }

    async fn blob_put(&self, agent_id: &str, hash: &str, bytes: &[u8], now: DateTime<Utc>) -> Result<()> {
        let (agent_id, hash, bytes) = (agent_id.to_owned(), hash.to_owned(), bytes.to_vec());
        self.write(move |transaction| {
            transaction
                .execute_cached(
                    "INSERT INTO blobs (agent_id, hash, content, created_at) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT DO NOTHING",
                    params![agent_id, hash, bytes, millis(now)],
                )
                .map_err(database)?;
            Ok(())
        })
        .await
    }

    async fn blob_get(&self, agent_id: &str, hash: &str) -> Result<Option<Vec<u8>>> {
        let (agent_id, hash) = (agent_id.to_owned(), hash.to_owned());
        self.write(move |transaction| {
            transaction
                .query_row_cached(
                    "SELECT content FROM blobs WHERE agent_id = ?1 AND hash = ?2",
                    [agent_id, hash],
                    |row| row.get(0),
                )
                .optional()
                .map_err(database)
        })
        .await
    }

    async fn blobs_existing(&self, agent_id: &str, hashes: &[String]) -> Result<Vec<String>> {
        let (agent_id, hashes) = (agent_id.to_owned(), hashes.to_vec());
        self.write(move |transaction| {
            let mut statement = transaction
                .prepare_cached("SELECT 1 FROM blobs WHERE agent_id = ?1 AND hash = ?2")
                .map_err(database)?;
            let mut existing = Vec::new();
            for hash in hashes {
                if statement.exists(params![agent_id, hash]).map_err(database)? {
                    existing.push(hash);
                }
            }
            Ok(existing)
        })
        .await
    }

    async fn idempotency_get(&self, scope: &str, key: &str) -> Result<Option<(u16, String)>> {
        let (scope, key) = (scope.to_owned(), key.to_owned());
        self.write(move |transaction| {
            transaction
                .query_row_cached(
                    "SELECT status, body FROM idempotency WHERE agent_id = ?1 AND key = ?2",
                    [scope, key],
                    |row| Ok((row.get::<_, u16>(0)?, row.get::<_, String>(1)?)),
                )
                .optional()
                .map_err(database)
        })
        .await
    }

    async fn idempotency_put(&self, scope: &str, key: &str, status: u16, body: &str, now: DateTime<Utc>) -> Result<()> {
        let (scope, key, body) = (scope.to_owned(), key.to_owned(), body.to_owned());
        self.write(move |transaction| {
            transaction
                .execute_cached(
                    "INSERT INTO idempotency (agent_id, key, status, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT DO NOTHING",
                    params![scope, key, status, body, millis(now)],
                )
                .map_err(database)?;
            Ok(())
        })
        .await
    }

    async fn idempotency_prune(&self, before: DateTime<Utc>) -> Result<u64> {
        self.write(move |transaction| {
            transaction
                .execute_cached("DELETE FROM idempotency WHERE created_at < ?1", [millis(before)])
                .map(|count| count as u64)
                .map_err(database)
        })
        .await
    }
}
