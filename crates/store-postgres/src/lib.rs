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
//! - **Lock order**: a transaction that touches a job and its *pending* executions (activation, deletion) locks the
//!   job row first, then executions; statements that change many executions lock them in id order. A start locks
//!   its pending executions and never waits for a job while it holds them (the jobs of recurring slots, whose overlap
//!   policy it checks, are taken with `SKIP LOCKED`: a job another node holds makes its slot wait and try again). An
//!   outcome changes *running* executions, then locks their jobs — no path holds a job while it waits for a running
//!   execution — and heartbeats skip the rows an outcome is writing. So no two paths can deadlock.
//! - **The hot path is set-based** (`batch`): recording a batch of slots, claiming, starting and finishing take a
//!   fixed number of statements per batch, the rows bound as arrays; what they read is bounded by the batch (primary
//!   keys, and partial indexes holding only work waiting to run), never by the history or the future jobs the
//!   database holds. They commit without waiting for the disk, as the SQLite store's bookkeeping does.
//! - **Message sequence**: `messages.seq` must grow in commit order for `after=` readers, so message inserts take a
//!   transaction-scoped advisory lock before drawing their `seq`.
//!
//! Through a pooler in transaction mode (PgBouncer's `pool_mode = transaction`, said with `pool_mode=transaction` in
//! the URL) a transaction may run on a different server session each time, so nothing may live on a session: every
//! statement goes as an unnamed one (parse, bind and execute in one round trip, the parameters' types said by the
//! client), and a schema is set per transaction (`SET LOCAL search_path`) instead of as a startup option.
//!
//! Times are `BIGINT` Unix milliseconds, as in SQLite, so compare-and-set equality is exact; JSON is `JSONB` (a NUL
//! character, which `JSONB` and `TEXT` cannot hold, is stored as U+FFFD); text keys use the `"C"` collation so listings
//! sort byte-wise like SQLite. Migrations run once, under an advisory lock, however many nodes start together.

mod batch;
mod data;
pub mod observe;
mod schema;
mod store;
#[doc(hidden)]
pub mod testing;
mod tls;

use std::borrow::Cow;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use futures_util::TryStreamExt;
use serde_json::Value;
use sundial_store::{Result, StoreError};
use tokio_postgres::types::{FromSql, Json, ToSql, Type};
use tokio_postgres::{IsolationLevel, Row};

/// The PostgreSQL implementation of [`sundial_store::Store`] and [`sundial_store::DataStore`].
pub struct PostgresStore {
    pool: Pool,
    schema: Option<String>,
    /// Through a pooler in transaction mode: unnamed statements, the schema set per transaction.
    pooled: bool,
    /// Versions read so far (they never change).
    versions: batch::Versions,
    /// Transactions and statements sent, shared with every connection the store hands out.
    counters: std::sync::Arc<Counters>,
}

/// Transactions and statements a store sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreCounters {
    /// Transactions begun, and statements run outside one (each a transaction of its own).
    pub transactions: u64,
    /// Statements run (in a transaction or not), not counting `BEGIN`, `COMMIT` and `SET LOCAL`.
    pub statements: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    transactions: std::sync::atomic::AtomicU64,
    statements: std::sync::atomic::AtomicU64,
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
    /// `verify-full`) and `sslrootcert` in the URL (see `tls`). `pool_mode=transaction` in the URL says the
    /// connection goes through a pooler in transaction mode, such as PgBouncer: no state is kept on a server session.
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
        let store = PostgresStore::unmigrated(url, pool_size, schema)?;
        store.migrate().await?;
        Ok(store)
    }

    /// A store over the database at `url` that applies no migration (observers of a database Sundial uses).
    fn unmigrated(url: &str, pool_size: usize, schema: Option<String>) -> Result<PostgresStore> {
        let (url, tls, pooled) = tls::split_settings(url)?;
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|error| StoreError::Database(format!("bad PostgreSQL URL: {error}")))?;
        config.ssl_mode(tls.postgres_mode());
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("sundial");
        }
        if let Some(schema) = schema.as_ref().filter(|_| !pooled) {
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
        Ok(PostgresStore { pool, schema, pooled, versions: batch::Versions::default(), counters: Default::default() })
    }

    /// How many transactions and statements this store sent so far.
    pub fn counters(&self) -> StoreCounters {
        use std::sync::atomic::Ordering;
        StoreCounters {
            transactions: self.counters.transactions.load(Ordering::Relaxed),
            statements: self.counters.statements.load(Ordering::Relaxed),
        }
    }

    /// Applies the migrations this database lacks, in one transaction that holds an advisory lock, so nodes starting
    /// together apply each migration once.
    async fn migrate(&self) -> Result<()> {
        let mut client = self.client().await?;
        let transaction = PostgresStore::begin_bare(&mut client).await?;
        execute(&transaction, "SELECT pg_advisory_xact_lock($1)", &[&self.lock_key("migrations")]).await?;
        if let Some(schema) = &self.schema {
            let exists =
                query_opt(&transaction, "SELECT 1 FROM pg_namespace WHERE nspname = $1", &[schema]).await?.is_some();
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
        let applied: i64 =
            get(&query_one(&transaction, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[]).await?, 0)?;
        for (index, migration) in schema::MIGRATIONS.iter().enumerate() {
            let version = index as i64 + 1;
            if version <= applied {
                continue;
            }
            transaction
                .batch_execute(migration)
                .await
                .map_err(|error| StoreError::Database(format!("migration {version}: {}", describe(&error))))?;
            execute(
                &transaction,
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                &[&version, &Utc::now().timestamp_millis()],
            )
            .await?;
        }
        transaction.commit().await.map_err(database)
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> Result<Conn> {
        let client = self.pool.get().await.map_err(|error| match error {
            PoolError::Closed => StoreError::Closed,
            PoolError::Backend(error) => StoreError::Database(describe(&error)),
            other => StoreError::Database(format!("no database connection: {other}")),
        })?;
        let schema = self.schema.as_deref().filter(|_| self.pooled).map(str::to_owned);
        Ok(Conn { client, unnamed: self.pooled, schema, counters: self.counters.clone() })
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
    pub(crate) async fn begin(client: &mut Conn) -> Result<Tx<'_>> {
        let transaction = PostgresStore::begin_bare(client).await?;
        transaction.set_schema().await?;
        Ok(transaction)
    }

    /// Starts a transaction of the scheduler's bookkeeping (slots, claims, starts, outcomes): it commits without
    /// waiting for the disk (see `batch`).
    pub(crate) async fn begin_bookkeeping(client: &mut Conn) -> Result<Tx<'_>> {
        let transaction = PostgresStore::begin(client).await?;
        transaction.batch_execute("SET LOCAL synchronous_commit TO OFF").await.map_err(database)?;
        Ok(transaction)
    }

    /// Starts a transaction on `client` at READ COMMITTED without setting the schema (the migrations create it).
    async fn begin_bare(client: &mut Conn) -> Result<Tx<'_>> {
        let (unnamed, schema, counters) = (client.unnamed, client.schema.clone(), client.counters.clone());
        counters.transactions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let transaction = client.client.transaction().await.map_err(database)?;
        Ok(Tx { transaction, unnamed, schema, counters })
    }

    /// Starts a read-only transaction on `client` that sees one snapshot throughout.
    pub(crate) async fn begin_read(client: &mut Conn) -> Result<Tx<'_>> {
        let (unnamed, schema, counters) = (client.unnamed, client.schema.clone(), client.counters.clone());
        counters.transactions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let transaction = client
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(database)?;
        let transaction = Tx { transaction, unnamed, schema, counters };
        transaction.set_schema().await?;
        Ok(transaction)
    }
}

/// A pooled connection. Through a pooler in transaction mode it sends unnamed statements, and each statement made
/// outside a transaction runs in one of its own that sets the schema.
pub(crate) struct Conn {
    client: deadpool_postgres::Client,
    unnamed: bool,
    /// The schema to set per transaction (through a pooler in transaction mode only).
    schema: Option<String>,
    counters: std::sync::Arc<Counters>,
}

/// A transaction on a pooled connection.
pub(crate) struct Tx<'a> {
    transaction: deadpool_postgres::Transaction<'a>,
    unnamed: bool,
    /// The schema this transaction sets (through a pooler in transaction mode only).
    schema: Option<String>,
    counters: std::sync::Arc<Counters>,
}

impl Tx<'_> {
    /// Sets the schema for the rest of the transaction, when it has one to set.
    async fn set_schema(&self) -> Result<()> {
        if let Some(schema) = &self.schema {
            self.transaction
                .batch_execute(&format!("SET LOCAL search_path TO \"{schema}\""))
                .await
                .map_err(database)?;
        }
        Ok(())
    }

    /// Runs statements given as one text, without parameters.
    pub(crate) async fn batch_execute(&self, sql: &str) -> std::result::Result<(), tokio_postgres::Error> {
        self.transaction.batch_execute(sql).await
    }

    /// Commits the transaction.
    pub(crate) async fn commit(self) -> std::result::Result<(), tokio_postgres::Error> {
        self.transaction.commit().await
    }
}

/// What runs statements: a pooled connection or a transaction on one.
pub(crate) trait Db: Sync {
    /// The deadpool client, which caches prepared statements.
    type Cached: GenericClient + Sync;
    /// The tokio-postgres client, which sends unnamed statements.
    type Plain: tokio_postgres::GenericClient + Sync;
    fn cached(&self) -> &Self::Cached;
    fn plain(&self) -> &Self::Plain;
    /// Whether statements go unnamed.
    fn unnamed(&self) -> bool;
    /// The schema a statement of its own must set in a transaction of its own (a connection through a pooler in
    /// transaction mode, with a schema).
    fn own_transaction_schema(&self) -> Option<&str>;
    /// Counts a statement (and, outside a transaction, the transaction it is).
    fn count_statement(&self);
}

impl Db for Conn {
    type Cached = deadpool_postgres::Client;
    type Plain = tokio_postgres::Client;
    fn cached(&self) -> &Self::Cached {
        &self.client
    }
    fn plain(&self) -> &Self::Plain {
        &self.client
    }
    fn unnamed(&self) -> bool {
        self.unnamed
    }
    fn own_transaction_schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }
    fn count_statement(&self) {
        self.counters.statements.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.counters.transactions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl<'a> Db for Tx<'a> {
    type Cached = deadpool_postgres::Transaction<'a>;
    type Plain = tokio_postgres::Transaction<'a>;
    fn cached(&self) -> &Self::Cached {
        &self.transaction
    }
    fn plain(&self) -> &Self::Plain {
        &self.transaction
    }
    fn unnamed(&self) -> bool {
        self.unnamed
    }
    fn own_transaction_schema(&self) -> Option<&str> {
        None
    }
    fn count_statement(&self) {
        self.counters.statements.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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

/// Runs a statement (prepared once per connection, or unnamed) and answers the rows it changed.
pub(crate) async fn execute<D: Db>(db: &D, sql: &str, params: Params<'_>) -> Result<u64> {
    try_execute(db, sql, params).await?.map_err(database)
}

/// Like [`execute`], but answers the database's own error, so that a caller can tell a unique violation.
pub(crate) async fn try_execute<D: Db>(
    db: &D,
    sql: &str,
    params: Params<'_>,
) -> Result<std::result::Result<u64, tokio_postgres::Error>> {
    db.count_statement();
    if db.unnamed() {
        let types = param_types(params)?;
        return Ok(unnamed(db, sql, params, types).await.map(|(_, changed)| changed));
    }
    Ok(match db.cached().prepare_cached(sql).await {
        Ok(statement) => db.cached().execute(&statement, params).await,
        Err(error) => Err(error),
    })
}

/// Runs a query (prepared once per connection, or unnamed) and answers its rows.
pub(crate) async fn query<D: Db>(db: &D, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
    db.count_statement();
    if db.unnamed() {
        return Ok(unnamed(db, sql, params, param_types(params)?).await.map_err(database)?.0);
    }
    let statement = db.cached().prepare_cached(sql).await.map_err(database)?;
    db.cached().query(&statement, params).await.map_err(database)
}

/// Runs a query that answers at most one row.
pub(crate) async fn query_opt<D: Db>(db: &D, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
    let mut rows = query(db, sql, params).await?;
    if rows.len() > 1 {
        return Err(StoreError::Database(format!("query returned {} rows, not at most one", rows.len())));
    }
    Ok(rows.pop())
}

/// Runs a query that answers exactly one row.
pub(crate) async fn query_one<D: Db>(db: &D, sql: &str, params: Params<'_>) -> Result<Row> {
    query_opt(db, sql, params).await?.ok_or_else(|| StoreError::Database("query returned no row".into()))
}

/// Runs a query and hands each row to `each` as it arrives (a prepared statement streams; an unnamed one is read
/// whole first).
pub(crate) async fn query_each<D: Db>(
    db: &D,
    sql: &str,
    params: Params<'_>,
    mut each: impl FnMut(Row) -> Result<()>,
) -> Result<()> {
    db.count_statement();
    if db.unnamed() {
        return unnamed(db, sql, params, param_types(params)?)
            .await
            .map_err(database)?
            .0
            .into_iter()
            .try_for_each(each);
    }
    let statement = db.cached().prepare_cached(sql).await.map_err(database)?;
    let rows = db.cached().query_raw(&statement, params.iter().copied()).await.map_err(database)?;
    let mut rows = std::pin::pin!(rows);
    while let Some(row) = rows.try_next().await.map_err(database)? {
        each(row)?;
    }
    Ok(())
}

/// Runs a statement as an unnamed one (parse, bind and execute in one round trip: nothing stays on the server
/// session) and answers its rows and the count of rows it changed. A statement outside a transaction that needs a
/// schema runs in a transaction of its own that sets it.
async fn unnamed<D: Db>(
    db: &D,
    sql: &str,
    params: Params<'_>,
    types: Vec<Type>,
) -> std::result::Result<(Vec<Row>, u64), tokio_postgres::Error> {
    use tokio_postgres::GenericClient as _;
    let run = async {
        let stream = db.plain().query_typed_raw(sql, params.iter().copied().zip(types)).await?;
        let mut stream = std::pin::pin!(stream);
        let mut rows = Vec::new();
        while let Some(row) = stream.try_next().await? {
            rows.push(row);
        }
        Ok((rows, stream.rows_affected().unwrap_or(0)))
    };
    let Some(schema) = db.own_transaction_schema() else {
        return run.await;
    };
    let plain = db.plain();
    plain.batch_execute(&format!("BEGIN; SET LOCAL search_path TO \"{schema}\"")).await?;
    match run.await {
        Ok(answer) => {
            plain.batch_execute("COMMIT").await?;
            Ok(answer)
        }
        Err(error) => {
            let _ = plain.batch_execute("ROLLBACK").await;
            Err(error)
        }
    }
}

/// The PostgreSQL types of the parameters Sundial's statements use, in the order a parameter is tried against them.
static PARAM_TYPES: [Type; 12] = [
    Type::INT8,
    Type::TEXT,
    Type::JSONB,
    Type::BOOL,
    Type::INT4,
    Type::FLOAT8,
    Type::INT2,
    Type::TEXT_ARRAY,
    Type::INT8_ARRAY,
    Type::JSONB_ARRAY,
    Type::BOOL_ARRAY,
    Type::BYTEA,
];

/// The type of each parameter, which an unnamed statement must say: the first of [`PARAM_TYPES`] its value encodes
/// as (an `i64` is `INT8`, a string `TEXT`, a `Json` `JSONB`, a `None` the type of its `Some`).
fn param_types(params: Params<'_>) -> Result<Vec<Type>> {
    let mut scratch = bytes::BytesMut::new();
    params
        .iter()
        .enumerate()
        .map(|(index, param)| {
            PARAM_TYPES
                .iter()
                .find(|candidate| {
                    scratch.clear();
                    param.to_sql_checked(candidate, &mut scratch).is_ok()
                })
                .cloned()
                .ok_or_else(|| {
                    StoreError::Database(format!("parameter ${} has a type unnamed statements lack", index + 1))
                })
        })
        .collect()
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
