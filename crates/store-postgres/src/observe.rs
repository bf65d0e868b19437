//! What PostgreSQL itself counts of the work Sundial gives it — transactions, tuples read and written in Sundial's
//! schema, WAL bytes — for benchmarks and for the test that keeps the cost of an execution flat as the database
//! grows. Also what benchmarks need to set a database up: a schema to drop, and a backlog to load.

use chrono::Utc;
use sundial_store::{Result, StoreError};

use crate::{database, execute, get, query_one, PostgresStore};

/// Cumulative counters of one database and one schema of it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DatabaseCounters {
    /// Transactions committed in the database (every client of it).
    pub commits: i64,
    /// Tuples read from the schema's tables: by sequential scans and fetched by index scans.
    pub tuples_read: i64,
    /// Index scans on the schema's tables.
    pub index_scans: i64,
    /// Tuples inserted into the schema's tables.
    pub tuples_inserted: i64,
    /// Tuples updated in the schema's tables (HOT or not).
    pub tuples_updated: i64,
    /// Of those, updated in place on their page (HOT: no index entry written).
    pub tuples_hot_updated: i64,
    /// Tuples deleted from the schema's tables.
    pub tuples_deleted: i64,
    /// Bytes of write-ahead log the server wrote (the whole server).
    pub wal_bytes: f64,
}

impl DatabaseCounters {
    /// What happened between `earlier` and these.
    pub fn since(&self, earlier: &DatabaseCounters) -> DatabaseCounters {
        DatabaseCounters {
            commits: self.commits - earlier.commits,
            tuples_read: self.tuples_read - earlier.tuples_read,
            index_scans: self.index_scans - earlier.index_scans,
            tuples_inserted: self.tuples_inserted - earlier.tuples_inserted,
            tuples_updated: self.tuples_updated - earlier.tuples_updated,
            tuples_hot_updated: self.tuples_hot_updated - earlier.tuples_hot_updated,
            tuples_deleted: self.tuples_deleted - earlier.tuples_deleted,
            wal_bytes: self.wal_bytes - earlier.wal_bytes,
        }
    }
}

/// A connection to a database Sundial uses, for reading its counters; it changes nothing.
pub struct Observer {
    store: PostgresStore,
    schema: String,
}

impl Observer {
    /// Observes `schema` of the database at `url`.
    pub fn new(url: &str, schema: &str) -> Result<Observer> {
        Ok(Observer { store: PostgresStore::unmigrated(url, 1, None)?, schema: schema.to_owned() })
    }

    /// The counters now. PostgreSQL publishes a session's counts when its transaction ends, at most once a second
    /// while the session stays busy: read them a second after the work, or after its connections closed.
    pub async fn counters(&self) -> Result<DatabaseCounters> {
        let client = self.store.client().await?;
        let row = query_one(
            &client,
            "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()), \
               COALESCE(SUM(seq_tup_read + COALESCE(idx_tup_fetch, 0)), 0)::BIGINT, \
               COALESCE(SUM(COALESCE(idx_scan, 0)), 0)::BIGINT, \
               COALESCE(SUM(n_tup_ins), 0)::BIGINT, COALESCE(SUM(n_tup_upd), 0)::BIGINT, \
               COALESCE(SUM(n_tup_hot_upd), 0)::BIGINT, COALESCE(SUM(n_tup_del), 0)::BIGINT, \
               pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::FLOAT8 \
             FROM pg_stat_user_tables WHERE schemaname = $1",
            &[&self.schema],
        )
        .await?;
        Ok(DatabaseCounters {
            commits: get(&row, 0)?,
            tuples_read: get(&row, 1)?,
            index_scans: get(&row, 2)?,
            tuples_inserted: get(&row, 3)?,
            tuples_updated: get(&row, 4)?,
            tuples_hot_updated: get(&row, 5)?,
            tuples_deleted: get(&row, 6)?,
            wal_bytes: get(&row, 7)?,
        })
    }

    /// Drops the schema with everything in it.
    pub async fn drop_schema(&self) -> Result<()> {
        let client = self.store.client().await?;
        let schema = quoted(&self.schema)?;
        client.client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await.map_err(database)
    }

    /// Loads a backlog into the schema (whose tables Sundial made): `jobs` recurring jobs of `agent` whose next slot
    /// is a day away, and `finished` completed executions of other once jobs, spread over the last 30 days — what a
    /// database holds after a long time in use. Written with set-based SQL, then, when `analysed`, vacuumed and
    /// analysed as autovacuum would have done by then (without it: a database that filled up in the minute before
    /// autovacuum first looked, which PostgreSQL plans for with no statistics).
    pub async fn load_backlog(&self, agent: &str, jobs: i64, finished: i64, analysed: bool) -> Result<()> {
        let mut client = self.store.client().await?;
        let schema = quoted(&self.schema)?;
        let transaction = PostgresStore::begin_bare(&mut client).await?;
        transaction.batch_execute(&format!("SET LOCAL search_path TO {schema}")).await.map_err(database)?;
        let now = Utc::now().timestamp_millis();
        let day = 86_400_000_i64;
        let code = "async (job) => ({ i: job.metadata.i, t: Date.now() })";
        // Recurring jobs due in a day, each with its version.
        execute(
            &transaction,
            "INSERT INTO jobs (id, agent_id, name, dynamic, active, status, metadata, policy, active_version_id, \
               anchor_at, next_run_at, created_at, updated_at) \
             SELECT 'job_backlog_future_' || n, $1, 'backlog-future-' || n, FALSE, TRUE, 'active', \
               jsonb_build_object('i', n), '{}'::jsonb, 'ver_backlog_future_' || n, $2::bigint, \
               $2::bigint + $3::bigint, $2::bigint, $2::bigint \
             FROM generate_series(1, $4::bigint) AS n",
            &[&agent, &now, &day, &jobs],
        )
        .await?;
        execute(
            &transaction,
            "INSERT INTO job_versions (id, job_id, name, version, code, schedule, timeout_seconds, created_at) \
             SELECT 'ver_backlog_future_' || n, 'job_backlog_future_' || n, 'backlog-future-' || n, '1.0.0', $1, \
               '{\"type\": \"interval\", \"seconds\": 86400}'::jsonb, 60, $2::bigint \
             FROM generate_series(1, $3::bigint) AS n",
            &[&code, &now, &jobs],
        )
        .await?;
        // Once jobs that ran, each with its version, occurrence and completed execution.
        execute(
            &transaction,
            "INSERT INTO jobs (id, agent_id, name, dynamic, active, status, metadata, policy, active_version_id, \
               anchor_at, last_run_at, created_at, updated_at) \
             SELECT 'job_backlog_done_' || n, $1, 'backlog-done-' || n, FALSE, FALSE, 'completed', \
               jsonb_build_object('i', n), '{}'::jsonb, 'ver_backlog_done_' || n, t, t, t, t \
             FROM (SELECT n, $2::bigint - (n * 30 * $3::bigint / $4::bigint) AS t \
               FROM generate_series(1, $4::bigint) AS n) spread",
            &[&agent, &now, &day, &finished],
        )
        .await?;
        execute(
            &transaction,
            "INSERT INTO job_versions (id, job_id, name, version, code, schedule, timeout_seconds, created_at) \
             SELECT 'ver_backlog_done_' || n, 'job_backlog_done_' || n, 'backlog-done-' || n, '1.0.0', $1, \
               jsonb_build_object('type', 'once', 'executeAt', \
                 to_char(to_timestamp(($2::bigint - n * 30 * $3::bigint / $4::bigint) / 1000.0) \
                 AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')), 60, $2::bigint \
             FROM generate_series(1, $4::bigint) AS n",
            &[&code, &now, &day, &finished],
        )
        .await?;
        execute(
            &transaction,
            "INSERT INTO occurrences (id, job_id, scheduled_for, created_at) \
             SELECT 'occ_backlog_done_' || n, 'job_backlog_done_' || n, $1::bigint - (n * 30 * $2::bigint / $3::bigint), \
               $1::bigint \
             FROM generate_series(1, $3::bigint) AS n",
            &[&now, &day, &finished],
        )
        .await?;
        execute(
            &transaction,
            "INSERT INTO executions (id, agent_id, job_id, version_id, occurrence_id, status, trigger, scheduled_for, \
               due_at, started_at, completed_at, duration_ms, result, retry_count, logs, created_at) \
             SELECT 'exe_backlog_done_' || n, $1, 'job_backlog_done_' || n, 'ver_backlog_done_' || n, \
               'occ_backlog_done_' || n, 'completed', 'schedule', t, t, t, t + 1, 1, \
               jsonb_build_object('i', n, 't', t), 0, '[]'::jsonb, t \
             FROM (SELECT n, $2::bigint - (n * 30 * $3::bigint / $4::bigint) AS t \
               FROM generate_series(1, $4::bigint) AS n) spread",
            &[&agent, &now, &day, &finished],
        )
        .await?;
        transaction.commit().await.map_err(database)?;
        let tables = if analysed { &["jobs", "job_versions", "occurrences", "executions"][..] } else { &[] };
        for table in tables {
            client.client.batch_execute(&format!("VACUUM ANALYZE {schema}.{table}")).await.map_err(database)?;
        }
        Ok(())
    }
}

/// A schema name as an identifier: `[a-z0-9_]`, quoted.
fn quoted(schema: &str) -> Result<String> {
    if schema.is_empty() || !schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err(StoreError::Database(format!("schema name {schema:?} must be [a-z0-9_]")));
    }
    Ok(format!("\"{schema}\""))
}
