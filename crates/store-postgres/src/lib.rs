//! The PostgreSQL implementation of Sundial's [`Store`](sundial_store::Store): several Sundial nodes on one database,
//! every scheduled slot recorded exactly once.
//!
//! Connections come from a `deadpool-postgres` pool of `tokio-postgres` clients. Every store call is one transaction
//! (or one statement, which is a transaction of its own) at PostgreSQL's default READ COMMITTED level; what the single
//! SQLite writer gets for free is made explicit here:
//!
//! - **Claims** (`executions_claim`, `deliveries_claim`) lock their rows with `FOR UPDATE SKIP LOCKED`, so two nodes
//!   claiming at once take disjoint rows and never wait for each other.
//! - **Occurrences** are recorded under a compare-and-set `UPDATE jobs … WHERE next_run_at = expected`, which locks the
//!   job row; only that lock holder inserts the job's occurrences (`ON CONFLICT (job_id, scheduled_for) DO NOTHING`),
//!   and a batch locks its jobs in job-id order, so two schedulers can neither record a slot twice nor deadlock.
//! - **Lock order**: a transaction that touches a job and its executions locks the job row first, then executions;
//!   statements that change many executions lock them in id order. Every path follows it, so none can deadlock.
//! - **Message sequence**: `messages.seq` must grow in commit order for `after=` readers, so message inserts take a
//!   transaction-scoped advisory lock before drawing their `seq`.
//!
//! Times are `BIGINT` Unix milliseconds, as in SQLite, so compare-and-set equality is exact; JSON is `JSONB` (a NUL
//! character, which `JSONB` and `TEXT` cannot hold, is stored as U+FFFD); text keys use the `"C"` collation so listings
//! sort byte-wise like SQLite. Migrations run once, under an advisory lock, however many nodes start together.

mod data;
mod schema;
mod store;
mod tls;

use std::borrow::Cow;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime, Transaction,
};
use serde_json::Value;
use sundial_store::{Result, StoreError};
use tokio_postgres::types::{FromSql, Json, ToSql};
use tokio_postgres::{IsolationLevel, Row};

/// The PostgreSQL implementation of [`sundial_store::Store`] and [`sundial_store::DataStore`].
pub struct PostgresStore {
    pool: Pool,
    schema: Option<String>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("PostgresStore").field("schema", &self.schema).finish_non_exhaustive()
    }
}

/// How long a call waits for a free pooled connection before it fails.
const POOL_WAIT: Duration = Duration::from_secs(30);
/// How long opening one connection may take when the URL sets no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user@host:5432/db`) with a pool of at most `pool_size`
    /// connections and applies the migrations it lacks, in the server's default schema. Several nodes may call this
    /// at the same time: the migrations run once.
    ///
    /// TLS is set as libpq reads it, with `sslmode` (`disable`, `prefer` by default, `require`, `verify-ca`,
    /// `verify-full`) and `sslrootcert` in the URL (see `tls`).
    pub async fn connect(url: &str, pool_size: usize) -> Result<PostgresStore> {
        PostgresStore::open(url, pool_size, None).await
    }

    /// Like [`PostgresStore::connect`], but keeps every table in `schema` (created when missing; every pooled
    /// connection gets it as its `search_path`). The name is 1–63 characters of `[a-z0-9_]`, not starting with a
    /// digit. Tests use it to isolate themselves on a shared database.
    pub async fn connect_schema(url: &str, pool_size: usize, schema: &str) -> Result<PostgresStore> {
        let valid = !schema.is_empty()
            && schema.len() <= 63
            && !schema.starts_with(|c: char| c.is_ascii_digit())
            && schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(StoreError::Database(format!(
                "schema name {schema:?} must be 1-63 characters of [a-z0-9_], not starting with a digit"
            )));
        }
        PostgresStore::open(url, pool_size, Some(schema.to_owned())).await
    }

    /// The schema the store keeps its tables in, when one was given.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// Closes the pool: connections are dropped and further calls answer [`StoreError::Closed`].
    pub fn close(&self) {
        self.pool.close();
    }

    async fn open(url: &str, pool_size: usize, schema: Option<String>) -> Result<PostgresStore> {
        let (url, tls) = tls::split_settings(url)?;
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|error| StoreError::Database(format!("bad PostgreSQL URL: {error}")))?;
        config.ssl_mode(tls.postgres_mode());
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("sundial");
        }
        if let Some(schema) = &schema {
            let options = match config.get_options() {
                Some(options) if !options.trim().is_empty() => format!("{options} -c search_path={schema}"),
                _ => format!("-c search_path={schema}"),
            };
            config.options(options);
        }
        let manager =
            Manager::from_config(config, tls.connector()?, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .build()
            .map_err(|error| StoreError::Database(format!("cannot build the connection pool: {error}")))?;
        let store = PostgresStore { pool, schema };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations this database lacks, in one transaction that holds an advisory lock, so nodes starting
    /// together apply each migration once.
    async fn migrate(&self) -> Result<()> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(database)?;
        transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&self.lock_key("migrations")])
            .await
            .map_err(database)?;
        if let Some(schema) = &self.schema {
            let exists = transaction
                .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[schema])
                .await
                .map_err(database)?
                .is_some();
            if !exists {
                transaction.batch_execute(&format!("CREATE SCHEMA \"{schema}\"")).await.map_err(database)?;
            }
            transaction.batch_execute(&format!("SET LOCAL search_path TO \"{schema}\"")).await.map_err(database)?;
        }
        transaction
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .await
            .map_err(database)?;
        let applied: i64 = transaction
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])
            .await
            .map_err(database)?
            .try_get(0)
            .map_err(database)?;
        for (index, migration) in schema::MIGRATIONS.iter().enumerate() {
            let version = index as i64 + 1;
            if version <= applied {
                continue;
            }
            transaction
                .batch_execute(migration)
                .await
                .map_err(|error| StoreError::Database(format!("migration {version}: {}", describe(&error))))?;
            transaction
                .execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                    &[&version, &Utc::now().timestamp_millis()],
                )
                .await
                .map_err(database)?;
        }
        transaction.commit().await.map_err(database)
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.pool.get().await.map_err(|error| match error {
            PoolError::Closed => StoreError::Closed,
            PoolError::Backend(error) => StoreError::Database(describe(&error)),
            other => StoreError::Database(format!("no database connection: {other}")),
        })
    }

    /// The key of a transaction-scoped advisory lock for `purpose`, distinct per schema (advisory locks are
    /// database-wide).
    pub(crate) fn lock_key(&self, purpose: &str) -> i64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let schema = self.schema.as_deref().unwrap_or("");
        for byte in "sundial".bytes().chain([0]).chain(schema.bytes()).chain([0]).chain(purpose.bytes()) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        hash as i64
    }

    /// Starts a transaction on `client` at READ COMMITTED.
    pub(crate) async fn begin(client: &mut deadpool_postgres::Client) -> Result<Transaction<'_>> {
        client.transaction().await.map_err(database)
    }

    /// Starts a read-only transaction on `client` that sees one snapshot throughout.
    pub(crate) async fn begin_read(client: &mut deadpool_postgres::Client) -> Result<Transaction<'_>> {
        client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(database)
    }
}

/// A database error as a [`StoreError`], with the server's message when there is one.
pub(crate) fn database(error: tokio_postgres::Error) -> StoreError {
    StoreError::Database(describe(&error))
}

fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            // The causes too: "error performing TLS handshake: invalid peer certificate: UnknownIssuer".
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

/// Whether the error is a unique-constraint violation.
pub(crate) fn is_unique_violation(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

/// Parameters of a statement.
pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Runs a statement (prepared once per connection) and answers the rows it changed.
pub(crate) async fn execute<C: GenericClient>(client: &C, sql: &str, params: Params<'_>) -> Result<u64> {
    let statement = client.prepare_cached(sql).await.map_err(database)?;
    client.execute(&statement, params).await.map_err(database)
}

/// Runs a query (prepared once per connection) and answers its rows.
pub(crate) async fn query<C: GenericClient>(client: &C, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
    let statement = client.prepare_cached(sql).await.map_err(database)?;
    client.query(&statement, params).await.map_err(database)
}

/// Runs a query that answers at most one row.
pub(crate) async fn query_opt<C: GenericClient>(client: &C, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
    let statement = client.prepare_cached(sql).await.map_err(database)?;
    client.query_opt(&statement, params).await.map_err(database)
}

/// Runs a query that answers exactly one row.
pub(crate) async fn query_one<C: GenericClient>(client: &C, sql: &str, params: Params<'_>) -> Result<Row> {
    let statement = client.prepare_cached(sql).await.map_err(database)?;
    client.query_one(&statement, params).await.map_err(database)
}

/// Column `index` of `row`.
pub(crate) fn get<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> Result<T> {
    row.try_get(index).map_err(|error| StoreError::Database(format!("column {index}: {error}")))
}

/// A JSON column of `row`, decoded.
pub(crate) fn get_json<T: serde::de::DeserializeOwned>(row: &Row, index: usize) -> Result<T> {
    Ok(get::<Json<T>>(row, index)?.0)
}

/// A nullable JSON column of `row`, decoded.
pub(crate) fn get_opt_json<T: serde::de::DeserializeOwned>(row: &Row, index: usize) -> Result<Option<T>> {
    Ok(get::<Option<Json<T>>>(row, index)?.map(|json| json.0))
}

pub(crate) fn millis(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

pub(crate) fn opt_millis(time: Option<DateTime<Utc>>) -> Option<i64> {
    time.map(millis)
}

pub(crate) fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

pub(crate) fn opt_time(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.map(time)
}

/// A stored count or counter as `u32` (they are written from `u32`s).
pub(crate) fn to_u32(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}

/// A value as a `JSONB` parameter. `JSONB` cannot hold the NUL character, so it becomes U+FFFD; a value that does not
/// serialize is stored as `null`, as the SQLite store does.
pub(crate) fn jsonb<T: serde::Serialize + ?Sized>(value: &T) -> Json<Value> {
    let mut value = serde_json::to_value(value).unwrap_or(Value::Null);
    strip_nul(&mut value);
    Json(value)
}

fn strip_nul(value: &mut Value) {
    match value {
        Value::String(text) if text.contains('\0') => *text = text.replace('\0', "\u{fffd}"),
        Value::Array(items) => items.iter_mut().for_each(strip_nul),
        Value::Object(object) => {
            if object.keys().any(|key| key.contains('\0')) {
                let entries = std::mem::take(object);
                for (key, item) in entries {
                    object.insert(key.replace('\0', "\u{fffd}"), item);
                }
            }
            object.values_mut().for_each(strip_nul);
        }
        _ => {}
    }
}

/// Free text as a `TEXT` parameter: PostgreSQL cannot store the NUL character, so it becomes U+FFFD.
pub(crate) fn text(value: &str) -> Cow<'_, str> {
    if value.contains('\0') {
        Cow::Owned(value.replace('\0', "\u{fffd}"))
    } else {
        Cow::Borrowed(value)
    }
}

/// Optional free text as a `TEXT` parameter (see [`text`]).
pub(crate) fn opt_text(value: Option<&str>) -> Option<Cow<'_, str>> {
    value.map(text)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn nul_characters_become_replacement_characters() {
        let value = super::jsonb(&json!({"a\u{0}": ["x\u{0}y", 1, {"b": "\u{0}"}]}));
        assert_eq!(value.0, json!({"a\u{fffd}": ["x\u{fffd}y", 1, {"b": "\u{fffd}"}]}));
        assert_eq!(super::text("a\u{0}b"), "a\u{fffd}b");
        assert!(matches!(super::text("plain"), std::borrow::Cow::Borrowed(_)));
    }
}
