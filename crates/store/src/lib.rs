//! Durable state of Sundial behind one [`Store`] trait: agents, keys, users and their conversations, jobs, versions,
//! occurrences and executions.
//!
//! Methods are entity-first (`job_insert`, `occurrences_record`, `execution_finish`). Each method is one transaction.
//! The invariant every implementation upholds: an occurrence `(job_id, scheduled_for)` is unique and is written in the
//! same transaction that advances the job's `next_run_at`, so a slot is recorded exactly once however many schedulers
//! race for it. [`conformance`] holds the test suite every implementation must pass.

pub mod backup;
pub mod conformance;
pub mod data;
mod ids;
pub mod sqlite;
mod sqlite_data;
mod sqlite_encoding;
mod sqlite_v6;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sundial_core::{Execution, ExecutionStatus, Job, JobEffect, JobStatus, JobVersion, JsonObject};

pub use data::DataStore;
pub use ids::new_id;

/// The scopes of a key as stored (comma-separated) read back as a list.
pub fn split_scopes(text: &str) -> Vec<String> {
    text.split(',').filter(|scope| !scope.is_empty()).map(str::to_owned).collect()
}
pub use sqlite::SqliteStore;

/// Errors of the storage layer. A missing row is not an error: lookups answer `None`.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique row already exists (an agent id, a version string of a job).
    #[error("{0} already exists")]
    Conflict(String),
    /// The database failed or returned something unreadable.
    #[error("database error: {0}")]
    Database(String),
    /// The store was shut down.
    #[error("the store is closed")]
    Closed,
}

/// Result alias of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A tenant.
#[derive(Clone, Debug, PartialEq)]
pub struct Agent {
    /// Its id, chosen at creation.
    pub id: String,
    /// Variables its jobs read with `env(key)`.
    pub env: JsonObject,
    /// Settings: `webhookUrl`, `webhookSecret`, `fetchAllowList`.
    pub settings: JsonObject,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl Agent {
    /// A new agent with no variables and default settings.
    pub fn new(id: impl Into<String>, now: DateTime<Utc>) -> Agent {
        Agent { id: id.into(), env: JsonObject::new(), settings: JsonObject::new(), created_at: now }
    }
}

/// A pending webhook delivery of one message, claimed for sending.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// The message delivered.
    pub message: Message,
    /// Where to.
    pub url: String,
    /// Attempts made so far.
    pub attempts: u32,
}

/// What became of a delivery attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum DeliveryOutcome {
    /// The receiver answered 2xx: never sent again.
    Delivered,
    /// Try again at this instant.
    Retry { at: DateTime<Utc>, error: String },
    /// Give up.
    Failed { error: String },
}

/// A stored credential. Only the hash of the secret is kept.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiKey {
    /// `key_…`
    pub id: String,
    /// The agent it acts for; `None` for an admin key.
    pub agent_id: Option<String>,
    /// Set for a user token: it acts only as this user.
    pub user_id: Option<String>,
    /// Whether it may manage agents and act as any agent.
    pub admin: bool,
    /// How the secret is checked: `s1:<salt>:<SHA-256 of salt and secret>` (hex), or, for keys made before salts,
    /// the hex SHA-256 of the secret.
    pub hash: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// For a user token minted with narrower rights: what it may reach (`jobs`, `data`, `products`); `None` for all.
    pub scopes: Option<Vec<String>>,
    /// When the key stops working; `None` for never.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A user's data record.
#[derive(Clone, Debug, PartialEq)]
pub struct UserRecord {
    /// The agent.
    pub agent_id: String,
    /// The user id.
    pub user_id: String,
    /// Their data fields.
    pub data: JsonObject,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// One message the agent sent to a user.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// Position in the store's global message sequence (for `after=` paging and streams).
    pub seq: i64,
    /// `msg_…`
    pub id: String,
    /// The agent.
    pub agent_id: String,
    /// The user.
    pub user_id: String,
    /// The message (`{type:'text', text}` …).
    pub content: Value,
    /// The execution that sent it, if any.
    pub execution_id: Option<String>,
    /// The job of that execution.
    pub job_id: Option<String>,
    /// The occurrence of that execution (the slot it ran for; the same across its retries).
    pub occurrence_id: Option<String>,
    /// Webhook delivery state (`pending`, `delivered`, `failed`), when the agent has a webhook.
    pub delivery: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// The run a message was sent from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageOrigin {
    /// The job.
    pub job_id: String,
    /// The execution.
    pub execution_id: String,
    /// Its occurrence (the same for every retry of one slot).
    pub occurrence_id: String,
}

/// Which jobs a listing returns.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    /// Include dynamic jobs (lua-cli hides them by default).
    pub include_dynamic: bool,
    /// Only jobs of this status.
    pub status: Option<JobStatus>,
    /// Only dynamic jobs of this user (pre-defined jobs are listed for every user, unless `user_only`).
    pub user_id: Option<String>,
    /// With `user_id`: only that user's jobs, not the agent's pre-defined ones (what a user's authority reaches).
    pub user_only: bool,
    /// Page size.
    pub limit: usize,
    /// Return jobs whose id sorts after this one.
    pub after_id: Option<String>,
    /// Only jobs with this exact name.
    pub name: Option<String>,
}

/// An active job whose next slot is due within the horizon, with the schedule of its active version.
#[derive(Clone, Debug)]
pub struct DueJob {
    /// The job.
    pub job: Job,
    /// Its active version (shared with the store's cache of versions, which never change once made).
    pub version: std::sync::Arc<JobVersion>,
}

/// One slot to record: the occurrence, its first execution, and the job's new next slot — all in one transaction.
#[derive(Clone, Debug)]
pub struct OccurrenceRecord {
    /// The job.
    pub job_id: String,
    /// The `next_run_at` the scheduler read; the record is refused if the job moved on since (compare-and-set).
    pub expected_next_run_at: DateTime<Utc>,
    /// The job's next slot after this one (`None`: the schedule has no more slots).
    pub next_run_at: Option<DateTime<Utc>>,
    /// Slots that were missed and will not run (misfire policy).
    pub missed: u64,
    /// The slots to record now, each with a pending execution (empty when the misfire policy runs none).
    pub slots: Vec<Execution>,
}

/// A pending execution claimed for running, with the lease that protects it.
#[derive(Clone, Debug)]
pub struct Claimed {
    /// The execution (still `pending`).
    pub execution: Execution,
}

/// An execution that just moved to `running`, with what running it needs.
#[derive(Clone, Debug)]
pub struct Started {
    /// The execution, now `running`.
    pub execution: Execution,
    /// Its job, read in the same transaction (fresh metadata).
    pub job: Job,
    /// The version to run (shared with the store's cache of versions, which never change once made).
    pub version: std::sync::Arc<JobVersion>,
}

/// What [`Store::execution_start`] did.
#[derive(Clone, Debug)]
pub enum StartOutcome {
    /// Now `running`: here is the job (fresh metadata) and the version to run.
    Started(Box<Started>),
    /// Recorded as `skipped` (overlap policy) or `cancelled` (job gone or inactive).
    NotRun(ExecutionStatus),
    /// The previous run still runs and the overlap policy queues this one: try again later.
    Busy,
    /// Someone else already moved it (started, cancelled), or it does not exist.
    Gone,
}

/// The final outcome of an execution and what follows from it.
#[derive(Clone, Debug)]
pub struct ExecutionFinish {
    /// The execution.
    pub id: String,
    /// Its final status.
    pub status: ExecutionStatus,
    /// What the code returned.
    pub result: Option<Value>,
    /// The error text.
    pub error: Option<String>,
    /// Console lines.
    pub logs: Vec<sundial_core::LogLine>,
    /// When it ended.
    pub completed_at: DateTime<Utc>,
    /// Run time in ms.
    pub duration_ms: Option<i64>,
    /// A retry to create, in the same transaction.
    pub retry: Option<Execution>,
    /// The effect on the job.
    pub job_effect: JobEffect,
    /// Only finish if the execution's lease is still this owner's (fencing); `None` skips the check.
    pub lease_owner: Option<String>,
}

/// A change to a job's activation.
#[derive(Clone, Debug)]
pub struct Activation {
    /// Whether the job becomes active.
    pub active: bool,
    /// The new status.
    pub status: JobStatus,
    /// The new grid anchor (activation time) — `None` keeps it.
    pub anchor_at: Option<DateTime<Utc>>,
    /// The new next slot.
    pub next_run_at: Option<DateTime<Utc>>,
}

/// Counts for `/metrics` and the dashboard.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StoreStats {
    /// Active jobs.
    pub active_jobs: u64,
    /// Pending executions due now or earlier.
    pub queue_depth: u64,
}

/// A running execution whose node is gone, with the lease it held.
#[derive(Clone, Debug, PartialEq)]
pub struct Orphan {
    /// The execution.
    pub execution: Execution,
    /// The node that ran it.
    pub owner: Option<String>,
    /// When that node's lease on it ended.
    pub lease_until: Option<DateTime<Utc>>,
}

/// What an operator's overview shows of the store.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoreOverview {
    /// The database's size in bytes.
    pub database_bytes: u64,
    /// The nodes that hold leases now (on running executions or on claims), by node id.
    pub nodes: Vec<NodeLeases>,
}

/// What one node holds under lease.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeLeases {
    /// The node's id (`node_…`).
    pub node: String,
    /// Running executions it owns.
    pub running: u64,
    /// Pending executions it has claimed.
    pub claimed: u64,
    /// The latest end of its leases.
    pub lease_until: Option<DateTime<Utc>>,
}

/// Durable state. Every method is one transaction; implementations must pass [`conformance`].
#[async_trait]
pub trait Store: DataStore + Send + Sync + 'static {
    // --- agents and keys ---

    /// Creates an agent; `Conflict` when the id exists.
    async fn agent_insert(&self, agent: &Agent) -> Result<()>;
    /// One agent.
    async fn agent_get(&self, agent_id: &str) -> Result<Option<Agent>>;
    /// All agents, by id.
    async fn agent_list(&self) -> Result<Vec<Agent>>;
    /// Replaces an agent's settings; false when it does not exist.
    async fn agent_set_settings(&self, agent_id: &str, settings: &JsonObject) -> Result<bool>;
    /// Replaces an agent's `env` variables; false when it does not exist.
    async fn agent_set_env(&self, agent_id: &str, env: &JsonObject) -> Result<bool>;
    /// Stores a key.
    async fn key_insert(&self, key: &ApiKey) -> Result<()>;
    /// The unrevoked key with this hash.
    async fn key_find(&self, hash: &str) -> Result<Option<ApiKey>>;
    /// The unrevoked key with this id.
    async fn key_get(&self, key_id: &str) -> Result<Option<ApiKey>>;
    /// Revokes a key of an agent, forgetting its hash; false when there is none.
    async fn key_revoke(&self, agent_id: &str, key_id: &str, now: DateTime<Utc>) -> Result<bool>;
    /// The number of unrevoked admin keys (first-run detection).
    async fn admin_key_count(&self) -> Result<u64>;

    // --- idempotent creation ---

    /// Binds the `dedupKey` of one agent and user (`None`: the agent's own jobs) to `job_id`, unless the key is
    /// bound already; answers the job id the key is bound to (`job_id` when this call bound it).
    async fn job_dedup_bind(
        &self,
        agent_id: &str,
        user_id: Option<&str>,
        key: &str,
        job_id: &str,
        now: DateTime<Utc>,
    ) -> Result<String>;
    /// Moves a binding from job `from` to job `to`, or removes it (`to` = `None`), only while it is still bound to
    /// `from`; whether it changed.
    async fn job_dedup_rebind(
        &self,
        agent_id: &str,
        user_id: Option<&str>,
        key: &str,
        from: &str,
        to: Option<&str>,
    ) -> Result<bool>;

    // --- users and their conversations ---

    /// A user's record.
    async fn user_get(&self, agent_id: &str, user_id: &str) -> Result<Option<UserRecord>>;
    /// Creates or replaces a user's data.
    async fn user_put(
        &self,
        agent_id: &str,
        user_id: &str,
        data: &JsonObject,
        now: DateTime<Utc>,
    ) -> Result<UserRecord>;
    /// Appends a message to a user's conversation — and, when the agent has a webhook, its pending delivery, in the
    /// same transaction. With a `dedupe_key` that was seen before, nothing is stored and the earlier message is
    /// returned.
    async fn message_insert(
        &self,
        agent_id: &str,
        user_id: &str,
        content: &Value,
        origin: Option<&MessageOrigin>,
        dedupe_key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Message>;
    /// Claims webhook deliveries due by `now` whose claim is free or expired.
    async fn deliveries_claim(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Delivery>>;
    /// Records the outcome of a delivery attempt.
    async fn delivery_finish(&self, message_id: &str, outcome: &DeliveryOutcome, now: DateTime<Utc>) -> Result<()>;
    /// A user's messages with `seq > after`, oldest first.
    async fn message_list(&self, agent_id: &str, user_id: &str, after: i64, limit: usize) -> Result<Vec<Message>>;

    // --- jobs and versions ---

    /// Creates a job and, when given, its first version.
    async fn job_insert(&self, job: &Job, version: Option<&JobVersion>) -> Result<()>;
    /// Creates many jobs with their first versions in one transaction.
    async fn jobs_insert_batch(&self, jobs: std::sync::Arc<Vec<(Job, Option<JobVersion>)>>) -> Result<()>;
    /// One job of an agent (deleted jobs are gone).
    async fn job_get(&self, agent_id: &str, job_id: &str) -> Result<Option<Job>>;
    /// A page of an agent's jobs, by id.
    async fn job_list(&self, agent_id: &str, filter: &JobFilter) -> Result<Vec<Job>>;
    /// Changes name, description, policy and authority.
    async fn job_update_info(&self, job: &Job) -> Result<bool>;
    /// Activates or deactivates; deactivation cancels pending scheduled executions.
    async fn job_set_activation(&self, job_id: &str, change: &Activation, now: DateTime<Utc>) -> Result<Option<Job>>;
    /// Makes a version the active one, with the job's new next slot.
    async fn job_set_active_version(
        &self,
        job_id: &str,
        version_id: &str,
        change: &Activation,
        now: DateTime<Utc>,
    ) -> Result<Option<Job>>;
    /// Deletes a job: it disappears from every lookup and its pending executions are cancelled.
    async fn job_delete(&self, agent_id: &str, job_id: &str, now: DateTime<Utc>) -> Result<bool>;
    /// Merges (`replace = false`) or replaces the metadata; answers the new metadata.
    async fn job_metadata_update(
        &self,
        agent_id: &str,
        job_id: &str,
        metadata: &JsonObject,
        replace: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<JsonObject>>;
    /// Active jobs of an agent (for quotas).
    async fn active_job_count(&self, agent_id: &str) -> Result<u64>;
    /// Adds a version; `Conflict` when the job has that version string.
    async fn version_insert(&self, version: &JobVersion) -> Result<()>;
    /// One version of a job.
    async fn version_get(&self, job_id: &str, version_id: &str) -> Result<Option<JobVersion>>;
    /// A version by its semver string.
    async fn version_find(&self, job_id: &str, version: &str) -> Result<Option<JobVersion>>;
    /// All versions of a job, oldest first.
    async fn version_list(&self, job_id: &str) -> Result<Vec<JobVersion>>;

    // --- scheduling ---

    /// Active jobs with `next_run_at <= horizon`, earliest first.
    async fn jobs_due(&self, horizon: DateTime<Utc>, limit: usize) -> Result<Vec<DueJob>>;
    /// The earliest `next_run_at` of an active job: when the next slot is due to be recorded.
    async fn next_slot_at(&self) -> Result<Option<DateTime<Utc>>>;
    /// Records slots (occurrence + pending execution) and advances each job, one transaction for the batch.
    /// A record whose job moved on (compare-and-set on `next_run_at`) or whose slot exists is left out.
    /// Answers how many records were applied.
    async fn occurrences_record(&self, records: &[OccurrenceRecord], now: DateTime<Utc>) -> Result<usize>;
    /// Inserts a pending execution (manual trigger).
    async fn execution_insert(&self, execution: &Execution) -> Result<()>;
    /// Claims pending executions due by `horizon` whose claim is free or expired, for `owner` until `lease_until`.
    async fn executions_claim(
        &self,
        horizon: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Execution>>;
    /// Moves a claimed pending execution to `running` (or `skipped`/`cancelled`/busy per the job's state and overlap
    /// policy), extending the lease to `lease_until`.
    async fn execution_start(
        &self,
        id: &str,
        owner: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<StartOutcome>;
    /// Starts several claimed executions in one transaction, each as [`Store::execution_start`] would, each with its
    /// own start instant; answers one outcome per execution, in order. Starting many at once is what keeps a burst
    /// of due executions from waiting on one store write each.
    async fn executions_start(
        &self,
        starts: &[(String, DateTime<Utc>)],
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<StartOutcome>>;
    /// Records the final outcome, the retry and the job effect in one transaction. False when the execution is not
    /// running any more (or the fencing owner does not match): nothing is written then.
    async fn execution_finish(&self, finish: &ExecutionFinish) -> Result<bool>;
    /// Records several final outcomes in one transaction, each as [`Store::execution_finish`] would; answers one
    /// flag per outcome, in order.
    async fn executions_finish(&self, finishes: &[ExecutionFinish]) -> Result<Vec<bool>>;
    /// Appends a line to a final execution's error text (a late result from a node that lost the execution).
    async fn execution_note(&self, id: &str, note: &str) -> Result<bool>;
    /// Extends the leases of running executions of `owner`. Claims of pending executions are not extended: a claim
    /// that is not started within its lease (an overloaded node, a failed start) goes back to every node.
    async fn executions_heartbeat(&self, owner: &str, lease_until: DateTime<Utc>) -> Result<u64>;
    /// Running executions whose lease expired before `now` or whose owner is not `live_owner` (for a single node
    /// after a restart, every previous owner is dead).
    async fn executions_orphaned(&self, now: DateTime<Utc>, live_owner: Option<&str>) -> Result<Vec<Orphan>>;
    /// Clears claims not held by `owner` (single node start-up).
    async fn executions_release_claims(&self, owner: &str) -> Result<u64>;
    /// Clears the claims `owner` holds on executions it has not started: a node that stops gracefully hands them
    /// back, so another node (or its own next start) takes them at once instead of after a lease. Durable.
    async fn executions_hand_back(&self, owner: &str) -> Result<u64>;
    /// One execution of an agent.
    async fn execution_get(&self, agent_id: &str, execution_id: &str) -> Result<Option<Execution>>;
    /// A page of a job's executions, newest first, with the total count.
    async fn execution_list(
        &self,
        job_id: &str,
        status: Option<ExecutionStatus>,
        limit: usize,
        offset: usize,
    ) -> Result<(Vec<Execution>, u64)>;
    /// A page of all executions of an agent, by id (creation order), after the id `after`.
    async fn execution_list_agent(&self, agent_id: &str, after: Option<&str>, limit: usize) -> Result<Vec<Execution>>;
    /// The newest execution of a job.
    async fn execution_latest(&self, job_id: &str) -> Result<Option<Execution>>;
    /// Deletes final executions created before `before`, keeping the newest `keep` per job. Answers the count.
    async fn executions_prune(&self, before: DateTime<Utc>, keep: usize) -> Result<u64>;
    /// Counts for metrics.
    async fn stats(&self, now: DateTime<Utc>) -> Result<StoreStats>;
    /// The database's size and the nodes holding leases.
    async fn overview(&self) -> Result<StoreOverview>;

    // --- uploaded code bundles and request deduplication ---

    /// Stores a content-addressed blob of an agent (idempotent).
    async fn blob_put(&self, agent_id: &str, hash: &str, bytes: &[u8], now: DateTime<Utc>) -> Result<()>;
    /// One blob of an agent.
    async fn blob_get(&self, agent_id: &str, hash: &str) -> Result<Option<Vec<u8>>>;
    /// Which of `hashes` the agent has.
    async fn blobs_existing(&self, agent_id: &str, hashes: &[String]) -> Result<Vec<String>>;
    /// The stored answer to a request with this idempotency key in this scope.
    async fn idempotency_get(&self, scope: &str, key: &str) -> Result<Option<(u16, String)>>;
    /// Stores the answer to a request with this idempotency key (the first answer wins).
    async fn idempotency_put(&self, scope: &str, key: &str, status: u16, body: &str, now: DateTime<Utc>) -> Result<()>;
    /// Forgets idempotency keys stored before `before`.
    async fn idempotency_prune(&self, before: DateTime<Utc>) -> Result<u64>;
}
