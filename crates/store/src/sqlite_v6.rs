//! Migration 6 of the SQLite store: compact job and version rows. 100,000 one-time jobs created through the batch API
//! (benchmark W4) grow the database by 27 MB instead of 69 MB: about 270 bytes per job with its first version.
//!
//! What changed and why:
//! - `jobs` and `job_versions` are `WITHOUT ROWID` tables keyed by their ids: the separate `TEXT PRIMARY KEY` indexes
//!   are gone. A version is keyed by `(job_id, id)`, so a job's versions sit together and no index is needed to list
//!   them; the store checks that a job's version strings are unique itself (it is the only writer).
//! - Ids of the form [`crate::new_id`] makes are stored as their 12 bytes (`sqlite_encoding`); any other id as text.
//! - Each code text is stored once in `codes` and versions refer to it by number.
//! - A one-time schedule is stored as its Unix millisecond; other schedules as JSON.
//! - `jobs_by_agent` also holds `active` and `deleted_at`, so counting an agent's active jobs (the quota check of
//!   every creation) reads only the index.
//! - What is usually a default is `NULL`: an empty job metadata, the default policy, the version string `1.0.0`, the
//!   kind `function`.
//! - A version stores no copy of what it shares with its job: its name (`NULL`), its metadata (`1`: the job's
//!   metadata) and its creation time (`NULL`). When the job's name or metadata changes, triggers copy the old value
//!   into the versions that share it, in the same statement, so a version never changes.
//!
//! Existing rows are converted in place: each is read as the previous schema's code read it and written as the
//! store now writes it, so every value reads back the same. Nothing else (executions, occurrences …) changes. The
//! pages of the old tables stay in the file as free pages that new rows reuse; `VACUUM` gives them back.

use rusqlite::{params, Row, Transaction};
use sundial_core::{CodeKind, Job, JobStatus, JobVersion, JsonObject, RetryPolicy, Schedule};

use crate::sqlite::{database, from_json, insert_job_v6, insert_version, opt_time, owner_of, time, Codes, Owner};
use crate::sqlite_encoding::pack_job_id;
use crate::Result;

/// Moves the previous tables aside (their indexes go; their names are taken again).
const SET_ASIDE: &str = "
DROP INDEX jobs_by_agent;
DROP INDEX jobs_due;
ALTER TABLE jobs RENAME TO jobs_v5;
ALTER TABLE job_versions RENAME TO job_versions_v5;
";

/// The new tables. `BLOB` columns have no type affinity: they keep integers, text and bytes as written.
const CREATE: &str = "
CREATE TABLE codes (
    id INTEGER PRIMARY KEY,
    hash INTEGER NOT NULL, -- 64-bit FNV-1a of the text
    code TEXT NOT NULL
);
CREATE INDEX codes_by_hash ON codes (hash);
CREATE TABLE jobs (
    id BLOB NOT NULL PRIMARY KEY, -- 12 bytes for an id new_id made, else text
    agent_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    dynamic INTEGER NOT NULL,
    user_id TEXT,
    active INTEGER NOT NULL,
    status TEXT NOT NULL,
    metadata TEXT, -- NULL: {}
    policy TEXT, -- NULL: the default policy
    active_version_id BLOB,
    anchor_at INTEGER NOT NULL,
    next_run_at INTEGER,
    last_run_at INTEGER,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    missed_slots INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER
) WITHOUT ROWID;
CREATE TABLE job_versions (
    job_id BLOB NOT NULL,
    id BLOB NOT NULL,
    name TEXT, -- NULL: the job's name
    version TEXT, -- NULL: 1.0.0
    description TEXT,
    code_id INTEGER NOT NULL, -- codes.id
    schedule BLOB NOT NULL, -- a one-time schedule at a whole millisecond: that Unix millisecond; else JSON
    timeout_seconds INTEGER NOT NULL,
    retry TEXT,
    metadata BLOB, -- NULL: none; 1: the job's metadata; else JSON
    created_at INTEGER, -- NULL: the job's created_at
    kind TEXT, -- NULL: function
    PRIMARY KEY (job_id, id)
) WITHOUT ROWID;
";

/// Drops the previous tables; indexes and the triggers that keep versions unchanged when their job changes.
const FINISH: &str = "
DROP TABLE jobs_v5;
DROP TABLE job_versions_v5;
-- active and deleted_at (NULL here, no bytes) make it cover counting an agent's active jobs.
CREATE INDEX jobs_by_agent ON jobs (agent_id, id, active, deleted_at) WHERE deleted_at IS NULL;
CREATE INDEX jobs_due ON jobs (next_run_at) WHERE active = 1 AND deleted_at IS NULL AND next_run_at IS NOT NULL;
CREATE TRIGGER jobs_name_kept_by_versions AFTER UPDATE OF name ON jobs WHEN OLD.name IS NOT NEW.name BEGIN
    UPDATE job_versions SET name = OLD.name WHERE job_id = OLD.id AND name IS NULL;
END;
CREATE TRIGGER jobs_metadata_kept_by_versions AFTER UPDATE OF metadata ON jobs
WHEN OLD.metadata IS NOT NEW.metadata BEGIN
    UPDATE job_versions SET metadata = COALESCE(OLD.metadata, '{}')
    WHERE job_id = OLD.id AND typeof(metadata) = 'integer';
END;
";

/// Columns of a job in the previous schema, as its reader took them, then `deleted_at`.
const V5_JOB_COLUMNS: &str = "id, agent_id, name, description, dynamic, user_id, active, status, metadata, policy, \
     active_version_id, anchor_at, next_run_at, last_run_at, consecutive_failures, missed_slots, created_at, updated_at, \
     deleted_at";
/// Columns of a version in the previous schema.
const V5_VERSION_COLUMNS: &str =
    "id, job_id, name, version, description, code, schedule, timeout_seconds, retry, metadata, created_at, kind";

/// Converts schema 5 to schema 6 (see the module's documentation).
pub(crate) fn migrate(transaction: &Transaction<'_>) -> Result<()> {
    transaction.execute_batch(SET_ASIDE).map_err(database)?;
    transaction.execute_batch(CREATE).map_err(database)?;
    {
        let mut statement =
            transaction.prepare(&format!("SELECT {V5_JOB_COLUMNS} FROM jobs_v5 ORDER BY id")).map_err(database)?;
        let mut rows = statement.query([]).map_err(database)?;
        while let Some(row) = rows.next().map_err(database)? {
            let job = v5_job(row).map_err(database)?;
            insert_job_v6(transaction, &job)?;
            if let Some(deleted_at) = row.get::<_, Option<i64>>(18).map_err(database)? {
                transaction
                    .execute("UPDATE jobs SET deleted_at = ?2 WHERE id = ?1", params![pack_job_id(&job.id), deleted_at])
                    .map_err(database)?;
            }
        }
    }
    {
        let mut statement = transaction
            .prepare(&format!("SELECT {V5_VERSION_COLUMNS} FROM job_versions_v5 ORDER BY job_id, id"))
            .map_err(database)?;
        let mut rows = statement.query([]).map_err(database)?;
        let mut codes = Codes::default();
        while let Some(row) = rows.next().map_err(database)? {
            let version = v5_version(row).map_err(database)?;
            let owner = owner_of(transaction, &version.job_id)?;
            let owner =
                owner.as_ref().map(|(name, metadata, created_at)| Owner { name, metadata, created_at: *created_at });
            insert_version(transaction, &version, owner.as_ref(), &mut codes)?;
        }
    }
    transaction.execute_batch(FINISH).map_err(database)
}

/// A job as schema 5's reader read it.
fn v5_job(row: &Row<'_>) -> rusqlite::Result<Job> {
    let status: String = row.get(7)?;
    Ok(Job {
        id: row.get(0)?,
        agent_id: row.get(1)?,
        name: row.get(2)?,
        description: row.get(3)?,
        dynamic: row.get(4)?,
        user_id: row.get(5)?,
        active: row.get(6)?,
        status: JobStatus::parse(&status).unwrap_or(JobStatus::Inactive),
        metadata: from_json(&row.get::<_, String>(8)?)?,
        policy: from_json(&row.get::<_, String>(9)?)?,
        active_version_id: row.get(10)?,
        anchor_at: time(row.get(11)?),
        next_run_at: opt_time(row.get(12)?),
        last_run_at: opt_time(row.get(13)?),
        consecutive_failures: row.get(14)?,
        missed_slots: row.get::<_, i64>(15)? as u64,
        created_at: time(row.get(16)?),
        updated_at: time(row.get(17)?),
        authority: sundial_core::Authority::Agent,
    })
}

/// A version as schema 5's reader read it.
fn v5_version(row: &Row<'_>) -> rusqlite::Result<JobVersion> {
    let retry: Option<String> = row.get(8)?;
    let metadata: Option<String> = row.get(9)?;
    Ok(JobVersion {
        id: row.get(0)?,
        job_id: row.get(1)?,
        name: row.get(2)?,
        version: row.get(3)?,
        description: row.get(4)?,
        code: row.get(5)?,
        schedule: from_json::<Schedule>(&row.get::<_, String>(6)?)?,
        timeout_seconds: row.get(7)?,
        retry: retry.map(|text| from_json::<RetryPolicy>(&text)).transpose()?,
        metadata: metadata.map(|text| from_json::<JsonObject>(&text)).transpose()?,
        created_at: time(row.get(10)?),
        kind: CodeKind::parse(&row.get::<_, String>(11)?).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, TimeZone, Utc};
    use rusqlite::{params, Connection};
    use serde_json::json;
    use sundial_core::policy::{JobPolicy, Overlap};
    use sundial_core::{
        CodeKind, Execution, ExecutionStatus, Job, JobVersion, LogLine, RetryPolicy, Schedule, Trigger,
    };

    use crate::conformance::{sample_job, slot_execution};
    use crate::sqlite::migrate_to;
    use crate::{JobFilter, SqliteStore, Store};

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + seconds, 0).single().unwrap_or_default()
    }

    /// Writes a job as schema 5 stored it.
    fn insert_v5_job(connection: &Connection, job: &Job, deleted_at: Option<i64>) {
        connection
            .execute(
                "INSERT INTO jobs (id, agent_id, name, description, dynamic, user_id, active, status, metadata, policy, \
                 active_version_id, anchor_at, next_run_at, last_run_at, consecutive_failures, missed_slots, \
                 created_at, updated_at, deleted_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
                params![
                    job.id,
                    job.agent_id,
                    job.name,
                    job.description,
                    job.dynamic,
                    job.user_id,
                    job.active,
                    job.status.as_str(),
                    serde_json::to_string(&job.metadata).expect("json"),
                    serde_json::to_string(&job.policy.stored()).expect("json"),
                    job.active_version_id,
                    job.anchor_at.timestamp_millis(),
                    job.next_run_at.map(|time| time.timestamp_millis()),
                    job.last_run_at.map(|time| time.timestamp_millis()),
                    job.consecutive_failures,
                    job.missed_slots as i64,
                    job.created_at.timestamp_millis(),
                    job.updated_at.timestamp_millis(),
                    deleted_at,
                ],
            )
            .expect("insert a v5 job");
    }

    /// Writes a version as schema 5 stored it.
    fn insert_v5_version(connection: &Connection, version: &JobVersion) {
        connection
            .execute(
                "INSERT INTO job_versions (id, job_id, name, version, description, code, schedule, timeout_seconds, \
                 retry, metadata, created_at, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    version.id,
                    version.job_id,
                    version.name,
                    version.version,
                    version.description,
                    version.code,
                    serde_json::to_string(&version.schedule).expect("json"),
                    version.timeout_seconds,
                    version.retry.as_ref().map(|retry| serde_json::to_string(retry).expect("json")),
                    version.metadata.as_ref().map(|metadata| serde_json::to_string(metadata).expect("json")),
                    version.created_at.timestamp_millis(),
                    version.kind.as_str(),
                ],
            )
            .expect("insert a v5 version");
    }

    /// Writes an execution (and its occurrence) as schema 5 stored it.
    fn insert_v5_execution(connection: &Connection, execution: &Execution) {
        connection
            .execute(
                "INSERT INTO occurrences (id, job_id, scheduled_for, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![
                    execution.occurrence_id,
                    execution.job_id,
                    execution.scheduled_for.map(|time| time.timestamp_millis()),
                    execution.created_at.timestamp_millis()
                ],
            )
            .expect("insert a v5 occurrence");
        connection
            .execute(
                "INSERT INTO executions (id, agent_id, job_id, version_id, occurrence_id, status, trigger, \
                 scheduled_for, due_at, started_at, completed_at, duration_ms, result, error, retry_count, logs, \
                 created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
                params![
                    execution.id,
                    execution.agent_id,
                    execution.job_id,
                    execution.version_id,
                    execution.occurrence_id,
                    execution.status.as_str(),
                    execution.trigger.as_str(),
                    execution.scheduled_for.map(|time| time.timestamp_millis()),
                    execution.due_at.timestamp_millis(),
                    execution.started_at.map(|time| time.timestamp_millis()),
                    execution.completed_at.map(|time| time.timestamp_millis()),
                    execution.duration_ms,
                    execution.result.as_ref().map(|result| result.to_string()),
                    execution.error,
                    execution.retry_count,
                    serde_json::to_string(&execution.logs).expect("json"),
                    execution.created_at.timestamp_millis(),
                ],
            )
            .expect("insert a v5 execution");
    }

    #[tokio::test]
    async fn a_version_5_database_upgrades_and_keeps_its_jobs_versions_and_executions() {
        // A W4-like job: one-time, metadata copied into its first version.
        let (mut once, mut once_first) = sample_job(Schedule::once(at(3600)));
        once.metadata.insert("i".into(), json!(7));
        once_first.metadata = Some(once.metadata.clone());
        // A recurring job with a second version that differs from its job in every shared field.
        let (mut recurring, recurring_first) = sample_job(Schedule::interval(10));
        recurring.policy =
            JobPolicy { overlap: Overlap::Allow, max_consecutive_failures: Some(3), ..JobPolicy::default() };
        recurring.last_run_at = Some(at(20));
        recurring.consecutive_failures = 2;
        recurring.missed_slots = 4;
        recurring.updated_at = at(21);
        let recurring_second = JobVersion {
            id: crate::new_id("ver"),
            name: "older name".into(),
            version: "1.1.0".into(),
            description: Some("module".into()),
            code: "export default { execute: async () => 2 }".into(),
            kind: CodeKind::Module,
            schedule: Schedule::cron("*/5 * * * *", Some("Asia/Tokyo".into())),
            timeout_seconds: 30,
            retry: Some(RetryPolicy { max_attempts: 3, backoff_seconds: Some(5) }),
            metadata: Some([("k".to_owned(), json!("v"))].into_iter().collect()),
            created_at: at(15),
            ..recurring_first.clone()
        };
        recurring.active_version_id = Some(recurring_second.id.clone());
        // Ids another program made, and an instant finer than a millisecond.
        let (mut legacy, mut legacy_first) = sample_job(Schedule::once(at(50) + Duration::microseconds(250)));
        legacy.id = "legacy-job".into();
        legacy.active_version_id = Some("legacy-version".into());
        legacy_first.id = "legacy-version".into();
        legacy_first.job_id = legacy.id.clone();
        legacy_first.created_at = at(1);
        // A job without versions, and a deleted job.
        let (mut shell, _) = sample_job(Schedule::interval(10));
        shell.active_version_id = None;
        shell.active = false;
        shell.next_run_at = None;
        shell.status = sundial_core::JobStatus::Inactive;
        let (deleted, deleted_first) = sample_job(Schedule::interval(10));

        let mut finished = slot_execution(&recurring, at(10));
        finished.status = ExecutionStatus::Completed;
        finished.started_at = Some(at(10));
        finished.completed_at = Some(at(11));
        finished.duration_ms = Some(1000);
        finished.result = Some(json!({"ok": true, "n": [1, 2]}));
        finished.logs = vec![LogLine { level: "info".into(), message: "hello".into(), at: 1_800_000_010_500 }];
        let pending = Execution { trigger: Trigger::Schedule, ..slot_execution(&once, at(3600)) };

        let directory = tempfile::tempdir().expect("temporary directory");
        let path = directory.path().join("sundial.db");
        {
            let mut connection = Connection::open(&path).expect("open");
            connection.execute_batch("PRAGMA journal_mode = WAL").expect("wal");
            migrate_to(&mut connection, 5).expect("schema 5");
            for job in [&once, &recurring, &legacy, &shell] {
                insert_v5_job(&connection, job, None);
            }
            insert_v5_job(&connection, &deleted, Some(at(30).timestamp_millis()));
            for version in [&once_first, &recurring_first, &recurring_second, &legacy_first, &deleted_first] {
                insert_v5_version(&connection, version);
            }
            insert_v5_execution(&connection, &finished);
            insert_v5_execution(&connection, &pending);
        }

        let store = SqliteStore::open(&path).expect("open and upgrade");
        for job in [&once, &recurring, &legacy, &shell] {
            assert_eq!(store.job_get("a", &job.id).await.expect("get").as_ref(), Some(job));
        }
        assert!(store.job_get("a", &deleted.id).await.expect("get").is_none(), "a deleted job came back");
        let listed = store
            .job_list("a", &JobFilter { limit: 10, include_dynamic: true, ..JobFilter::default() })
            .await
            .expect("list");
        // Ids of new_id's form sort by their text; another id sorts before them (text before bytes in SQLite).
        let mut ids = vec![&once.id, &recurring.id, &shell.id];
        ids.sort();
        ids.insert(0, &legacy.id);
        assert_eq!(listed.iter().map(|job| &job.id).collect::<Vec<_>>(), ids);
        for (index, after) in ids.iter().enumerate() {
            let filter = JobFilter {
                limit: 10,
                include_dynamic: true,
                after_id: Some((*after).clone()),
                ..JobFilter::default()
            };
            let page = store.job_list("a", &filter).await.expect("list");
            assert_eq!(page.iter().map(|job| &job.id).collect::<Vec<_>>(), ids[index + 1..], "after {after}");
        }
        assert_eq!(store.version_list(&once.id).await.expect("versions"), [once_first.clone()]);
        assert_eq!(
            store.version_list(&recurring.id).await.expect("versions"),
            [recurring_first.clone(), recurring_second.clone()]
        );
        assert_eq!(store.version_list(&legacy.id).await.expect("versions"), [legacy_first.clone()]);
        assert_eq!(store.version_list(&deleted.id).await.expect("versions"), [deleted_first]);
        assert_eq!(store.version_find(&recurring.id, "1.1.0").await.expect("find"), Some(recurring_second));
        assert_eq!(store.version_get(&legacy.id, "legacy-version").await.expect("get"), Some(legacy_first));
        assert_eq!(store.execution_get("a", &finished.id).await.expect("get"), Some(finished.clone()));
        assert_eq!(store.execution_get("a", &pending.id).await.expect("get"), Some(pending.clone()));
        assert_eq!(store.execution_list(&recurring.id, None, 10, 0).await.expect("list"), (vec![finished], 1));
        assert_eq!(store.active_job_count("a").await.expect("count"), 3);

        // The upgraded rows behave as new ones: the once job's slot is due, and renaming it keeps its version.
        let due = store.jobs_due(at(3600), 10).await.expect("due");
        assert!(due.iter().any(|due| due.job.id == once.id && *due.version == once_first));
        let renamed = Job { name: "renamed".into(), ..once.clone() };
        assert!(store.job_update_info(&renamed).await.expect("rename"));
        assert_eq!(store.version_list(&once.id).await.expect("versions"), [once_first]);
        drop(store);

        let connection = Connection::open(&path).expect("open");
        let version: i64 =
            connection.query_row("SELECT MAX(version) FROM schema_migrations", [], |row| row.get(0)).expect("version");
        assert_eq!(version as usize, crate::sqlite::MIGRATIONS.len(), "every later migration applied too");
        let old: i64 = connection
            .query_row("SELECT COUNT(*) FROM sqlite_schema WHERE name LIKE '%_v5%'", [], |row| row.get(0))
            .expect("schema");
        assert_eq!(old, 0, "a table of schema 5 is left");
    }
}
