//! The engine's operations on jobs — create, read, activate, trigger, version, delete — shared by the HTTP API and by
//! the host calls of running job code, so both enforce the same validation, quotas and tenancy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use sundial_core::policy::JobPolicy;
use sundial_core::retry::json_type;
use sundial_core::{
    Authority, CodeKind, Execution, ExecutionStatus, FieldError, Job, JobStatus, JobVersion, JsonObject, RetryPolicy,
    Schedule, ScheduleLimits, Trigger,
};
use sundial_store::{new_id, Activation, JobFilter, Message, Store, StoreError};
use tokio::sync::{broadcast, Notify};

use crate::access::{Denied, Reach};
use crate::clock::Clock;
use crate::metrics::Metrics;

/// Compiled cron schedules kept by [`Engine::compiled_schedule`] before the cache starts over.
const COMPILED_CACHE: usize = 10_000;

/// Limits and defaults of the engine (server configuration).
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// This node's id (leases and claims carry it).
    pub node_id: String,
    /// Timeout of a version that sets none, in seconds.
    pub default_timeout_seconds: u32,
    /// The largest accepted timeout, in seconds.
    pub max_timeout_seconds: u32,
    /// Interval bounds.
    pub schedule_limits: ScheduleLimits,
    /// Active jobs an agent may have.
    pub max_active_jobs_per_agent: u64,
    /// Jobs an agent may create per minute.
    pub max_creations_per_minute: u32,
    /// Largest metadata object, in bytes of JSON.
    pub max_metadata_bytes: usize,
    /// Largest code, in bytes.
    pub max_code_bytes: usize,
    /// How far ahead the scheduler claims slots.
    pub lookahead: Duration,
    /// The longest the scheduler sleeps before looking at the store again.
    pub poll_interval: Duration,
    /// How long before its instant a run is handed to a sandbox worker. The worker sets the run up meanwhile, then
    /// starts the job's code on the instant.
    pub fire_lead: Duration,
    /// How long before its instant an execution is marked `running` (in a batch with others due about then), so
    /// that a busy moment of the store does not make it late. `startedAt` is its due time, never earlier.
    pub start_lead: Duration,
    /// How much of the start lead a start batch may wait for more executions to share its write (zero: written at
    /// once). A store whose writes cost a round trip each (PostgreSQL) writes far fewer of them this way.
    pub start_coalesce: Duration,
    /// How long the first outcome of a batch waits for others to share its write.
    pub outcome_linger: Duration,
    /// How long a claim or a running execution stays this node's without a heartbeat.
    pub lease: Duration,
    /// Executions older than this are pruned.
    pub retention: Duration,
    /// Pruning keeps at least this many executions per job.
    pub keep_per_job: usize,
    /// Whether this node is the only one on its store (SQLite): then, at start-up, every execution still running
    /// belonged to a dead process. With several nodes, only expired leases tell.
    pub single_node: bool,
    /// The most executions one agent runs at once on this node; `None`: three quarters of the sandbox workers.
    pub max_runs_per_agent: Option<usize>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            node_id: new_id("node"),
            default_timeout_seconds: 60,
            max_timeout_seconds: 600,
            schedule_limits: ScheduleLimits::default(),
            max_active_jobs_per_agent: 100_000,
            max_creations_per_minute: 100_000,
            max_metadata_bytes: 64 * 1024,
            max_code_bytes: 1024 * 1024,
            lookahead: Duration::milliseconds(1500),
            poll_interval: Duration::milliseconds(500),
            fire_lead: Duration::milliseconds(2),
            start_lead: Duration::milliseconds(25),
            start_coalesce: Duration::zero(),
            outcome_linger: Duration::milliseconds(2),
            lease: Duration::seconds(30),
            retention: Duration::days(30),
            keep_per_job: 100,
            single_node: true,
            max_runs_per_agent: None,
        }
    }
}

/// Why an operation was refused. Each maps to one HTTP status and stable code in the API.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A field of the request is invalid.
    #[error("{0}")]
    Invalid(#[from] FieldError),
    /// The job, version or execution does not exist for this agent.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request contradicts the current state.
    #[error("{0}")]
    Conflict(String),
    /// Too many requests; retry after the given seconds.
    #[error("{message}")]
    RateLimited {
        /// What was exceeded.
        message: String,
        /// Seconds until a retry may succeed.
        retry_after_seconds: u64,
    },
    /// A limit on how many jobs may exist was reached; it lifts when jobs are deactivated or deleted.
    #[error("{0}")]
    QuotaExceeded(String),
    /// The caller's authority does not reach what it asked for.
    #[error(transparent)]
    Denied(#[from] crate::access::Denied),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sundial_core::ScheduleError> for EngineError {
    fn from(error: sundial_core::ScheduleError) -> Self {
        EngineError::Invalid(error.into())
    }
}

/// Result alias of the engine.
pub type EngineResult<T> = Result<T, EngineError>;

/// Who is asking: an agent, optionally on behalf of one of its users, with the authority of its credential (or, for
/// job code, of its job). [`Caller::check`] (in `access`) decides what it reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The agent.
    pub agent_id: String,
    /// The user, for user tokens, `X-User-Id` and job code of dynamic jobs.
    pub user_id: Option<String>,
    /// What it may reach: the agent's authority, or its user's (a user token, a job made with one).
    pub authority: Authority,
}

/// A validated job creation request.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// When it runs.
    pub schedule: Schedule,
    /// The JavaScript source of the function to run (or of a job module).
    pub code: String,
    /// Whether `code` is a function or a module.
    pub kind: CodeKind,
    /// Timeout in seconds.
    pub timeout_seconds: u32,
    /// Retries.
    pub retry: Option<RetryPolicy>,
    /// Metadata.
    pub metadata: JsonObject,
    /// Start active (default true).
    pub activate: bool,
    /// Policy.
    pub policy: JobPolicy,
    /// The first version's string (default `1.0.0`).
    pub version: String,
    /// Whether it is a dynamic job; `None` decides by the caller (a user makes it dynamic).
    pub dynamic: Option<bool>,
    /// Makes creation idempotent within one agent and user: a second create with the same key answers the job the
    /// first made (with a new version when the schedule, code or options differ), never a second job.
    pub dedup_key: Option<String>,
    /// The authority asked for (`None`: the caller's own). It is never wider than the caller's.
    pub authority: Option<Authority>,
}

/// The longest `dedupKey` accepted, in characters.
pub const MAX_DEDUP_KEY_CHARS: usize = 200;

/// Validates a `dedupKey`: 1 to 200 bytes without control characters.
pub fn parse_dedup_key(value: Option<&Value>, field: &str) -> Result<Option<String>, FieldError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(key))
            if !key.is_empty() && key.chars().count() <= MAX_DEDUP_KEY_CHARS && !key.chars().any(char::is_control) =>
        {
            Ok(Some(key.clone()))
        }
        Some(Value::String(_)) => Err(FieldError::new(
            field,
            format!("must be 1 to {MAX_DEDUP_KEY_CHARS} characters without control characters"),
        )),
        Some(other) => Err(FieldError::new(field, format!("must be a string, got {}", json_type(other)))),
    }
}

/// What an idempotent create did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Creation {
    /// A new job.
    Created,
    /// The job of an earlier create with the same `dedupKey`, unchanged: nothing differed.
    Existing,
    /// The job of an earlier create with the same `dedupKey`, changed to what this create asked for (a new version
    /// when its schedule, code or options differed).
    Updated,
}

/// Reads the optional `kind` field (`function` or `module`).
fn parse_kind(body: &JsonObject) -> Result<Option<CodeKind>, FieldError> {
    match body.get("kind") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => {
            CodeKind::parse(text).map(Some).ok_or_else(|| FieldError::new("kind", "must be function or module"))
        }
        Some(other) => Err(FieldError::new("kind", format!("must be a string, got {}", json_type(other)))),
    }
}

/// The agent setting that lists the `env` variables jobs acting for a user may read (none when left out).
pub const USER_JOB_ENV_SETTING: &str = "userJobEnv";

/// The agent setting that caps the active jobs made for one user, and its default.
pub const MAX_ACTIVE_JOBS_PER_USER_SETTING: &str = "maxActiveJobsPerUser";
pub const DEFAULT_MAX_ACTIVE_JOBS_PER_USER: u64 = 50;
/// The agent setting that bounds how often a recurring job made for a user may fire, and its default (seconds).
pub const MIN_RECURRING_INTERVAL_SETTING: &str = "minRecurringIntervalSeconds";
pub const DEFAULT_MIN_RECURRING_INTERVAL_SECONDS: u64 = 60;

/// The limits on jobs made for a user (dynamic jobs), which agents create on their users' behalf.
struct Guardrails {
    max_active_per_user: u64,
    min_recurring_seconds: u64,
}

/// Checks code of either kind: functions syntactically (see [`check_code`]), modules by size (the sandbox reports
/// their errors when they are described or run).
pub fn check_code_of_kind(code: &str, kind: CodeKind, field: &str, max_bytes: usize) -> Result<(), FieldError> {
    match kind {
        CodeKind::Function => check_code(code, field, max_bytes),
        CodeKind::Module if code.len() > max_bytes => {
            Err(FieldError::new(field, format!("must be at most {max_bytes} bytes")))
        }
        CodeKind::Module if code.trim().is_empty() => Err(FieldError::new(field, "must not be empty")),
        CodeKind::Module => Ok(()),
    }
}

/// Reads an optional string field.
fn optional_string(body: &JsonObject, field: &str, max: usize) -> Result<Option<String>, FieldError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        // Characters, as JSON Schema's maxLength counts them.
        Some(Value::String(text)) if text.chars().count() > max => {
            Err(FieldError::new(field, format!("must be at most {max} characters")))
        }
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(FieldError::new(field, format!("must be a string, got {}", json_type(other)))),
    }
}

/// Reads an optional object field.
fn optional_object(body: &JsonObject, field: &str, max_bytes: usize) -> Result<Option<JsonObject>, FieldError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(object)) => {
            let size = serde_json::to_string(object).map(|text| text.len()).unwrap_or(usize::MAX);
            if size > max_bytes {
                return Err(FieldError::new(field, format!("must be at most {max_bytes} bytes of JSON")));
            }
            Ok(Some(object.clone()))
        }
        Some(other) => Err(FieldError::new(field, format!("must be an object, got {}", json_type(other)))),
    }
}

fn optional_bool(body: &JsonObject, field: &str) -> Result<Option<bool>, FieldError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(other) => Err(FieldError::new(field, format!("must be a boolean, got {}", json_type(other)))),
    }
}

/// Validates a timeout: a whole number of seconds within `1..=max`.
fn parse_timeout(value: Option<&Value>, field: &str, config: &EngineConfig) -> Result<Option<u32>, FieldError> {
    let Some(value) = value.filter(|value| !value.is_null()) else { return Ok(None) };
    let Some(number) = value.as_f64() else {
        return Err(FieldError::new(field, format!("must be a number of seconds, got {}", json_type(value))));
    };
    let max = config.max_timeout_seconds;
    if number.fract() != 0.0 || number < 1.0 || number > f64::from(max) {
        return Err(FieldError::new(field, format!("must be a whole number of seconds between 1 and {max}")));
    }
    Ok(Some(number as u32))
}

/// Validates a semver string `MAJOR.MINOR.PATCH`.
pub fn parse_semver(text: &str, field: &str) -> Result<(u64, u64, u64), FieldError> {
    let parts: Vec<&str> = text.split('.').collect();
    let numbers: Option<Vec<u64>> = parts.iter().map(|part| part.parse::<u64>().ok()).collect();
    match numbers.as_deref() {
        Some([major, minor, patch]) if parts.len() == 3 => Ok((*major, *minor, *patch)),
        _ => Err(FieldError::new(field, format!("must be a semver string like 1.0.0, got \"{text}\""))),
    }
}

/// Checks that `code` is the source of one function (an arrow function, a `function` expression or a method, with
/// comments, a `"use strict"` directive and semicolons around it as people paste it) and that it is self-contained:
/// every name it uses is declared in it or is a global of the sandbox. A name from the tool that created the job
/// would be undefined when the job runs, so it is refused now, with code `unresolved_reference`. The sandbox reports
/// any finer syntax error when the job runs.
pub fn check_code(code: &str, field: &str, max_bytes: usize) -> Result<(), FieldError> {
    use sundial_sandbox::source;
    if code.len() > max_bytes {
        return Err(FieldError::new(field, format!("must be at most {max_bytes} bytes")));
    }
    let references = source::unresolved_references(code, &source::is_sandbox_global)
        .map_err(|error| FieldError::new(field, format!("{} (at {}:{})", error.message, error.line, error.column)))?;
    if !references.is_empty() {
        const SHOWN: usize = 5;
        let mut names: Vec<String> = references
            .iter()
            .take(SHOWN)
            .map(|reference| format!("{} (at {}:{})", reference.name, reference.line, reference.column))
            .collect();
        if references.len() > SHOWN {
            names.push(format!("{} more", references.len() - SHOWN));
        }
        let (names, verb) = match names.as_slice() {
            [one] => (one.clone(), "is"),
            [rest @ .., last] => (format!("{} and {last}", rest.join(", ")), "are"),
            [] => (String::new(), "is"),
        };
        return Err(FieldError::new(
            field,
            format!(
                "{names} {verb} not defined in the job's function: a job runs on its own, without the variables of \
                 the code that created it; pass the value in metadata and read it as job.metadata.<name>"
            ),
        )
        .with_code("unresolved_reference"));
    }
    Ok(())
}

impl NewJob {
    /// Validates an untrusted creation request (`{name, description?, schedule, code, timeout?, retry?, metadata?,
    /// activate?, policy?, version?, dynamic?}`).
    pub fn parse(body: &Value, config: &EngineConfig) -> Result<NewJob, FieldError> {
        let Value::Object(body) = body else {
            return Err(FieldError::new("body", format!("must be a JSON object, got {}", json_type(body))));
        };
        let name = optional_string(body, "name", 200)?.unwrap_or_default();
        if name.trim().is_empty() {
            return Err(FieldError::new("name", "is required and must not be empty"));
        }
        let description = optional_string(body, "description", 2000)?;
        let schedule = match body.get("schedule") {
            None | Some(Value::Null) => return Err(FieldError::new("schedule", "is required")),
            Some(value) => Schedule::parse(value, &config.schedule_limits)?,
        };
        let code = match body.get("code") {
            None | Some(Value::Null) => return Err(FieldError::new("code", "is required")),
            Some(Value::String(code)) => code.clone(),
            Some(other) => {
                return Err(FieldError::new("code", format!("must be a string, got {}", json_type(other))));
            }
        };
        let kind = parse_kind(body)?.unwrap_or_default();
        check_code_of_kind(&code, kind, "code", config.max_code_bytes)?;
        let timeout_seconds =
            parse_timeout(body.get("timeout"), "timeout", config)?.unwrap_or(config.default_timeout_seconds);
        let retry = RetryPolicy::parse(body.get("retry").unwrap_or(&Value::Null), "retry")?;
        let metadata = optional_object(body, "metadata", config.max_metadata_bytes)?.unwrap_or_default();
        let activate = optional_bool(body, "activate")?.unwrap_or(true);
        let policy = JobPolicy::parse(body.get("policy").unwrap_or(&Value::Null))?;
        let version = optional_string(body, "version", 64)?.unwrap_or_else(|| "1.0.0".into());
        parse_semver(&version, "version")?;
        let dynamic = optional_bool(body, "dynamic")?;
        let dedup_key = parse_dedup_key(body.get("dedupKey"), "dedupKey")?;
        let authority = Authority::parse_request(body.get("authority"), "authority")?;
        Ok(NewJob {
            name,
            description,
            schedule,
            code,
            kind,
            timeout_seconds,
            retry,
            metadata,
            activate,
            policy,
            version,
            dynamic,
            dedup_key,
            authority,
        })
    }
}

/// A change of a job (`PATCH`): fields absent stay as they are. Code or option changes make a new version.
#[derive(Clone, Debug, Default)]
pub struct JobChange {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New policy.
    pub policy: Option<JobPolicy>,
    /// New authority, set explicitly: an agent key may raise it, anyone may narrow it.
    pub authority: Option<Authority>,
    /// New version contents (`None` when no version-level field changed).
    pub version: Option<NewVersion>,
}

/// A new version: unset fields are copied from the active version.
#[derive(Clone, Debug, Default)]
pub struct NewVersion {
    /// Semver string; default: the latest version with its patch number increased.
    pub version: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Code.
    pub code: Option<String>,
    /// Kind of code (copied from the base version when unset).
    pub kind: Option<CodeKind>,
    /// Schedule.
    pub schedule: Option<Schedule>,
    /// Timeout in seconds.
    pub timeout_seconds: Option<u32>,
    /// Retries (`Some(None)` removes them).
    pub retry: Option<Option<RetryPolicy>>,
    /// Version metadata.
    pub metadata: Option<JsonObject>,
}

impl NewVersion {
    /// Validates the version-level fields of a request; `None` when none is present.
    pub fn parse(body: &JsonObject, config: &EngineConfig) -> Result<Option<NewVersion>, FieldError> {
        let mut version = NewVersion::default();
        let mut any = false;
        if let Some(text) = optional_string(body, "version", 64)? {
            parse_semver(&text, "version")?;
            version.version = Some(text);
            any = true;
        }
        version.kind = parse_kind(body)?;
        if let Some(code) = optional_string(body, "code", config.max_code_bytes)? {
            check_code_of_kind(&code, version.kind.unwrap_or_default(), "code", config.max_code_bytes)?;
            version.code = Some(code);
            any = true;
        }
        if let Some(value) = body.get("schedule").filter(|value| !value.is_null()) {
            version.schedule = Some(Schedule::parse(value, &config.schedule_limits)?);
            any = true;
        }
        if let Some(timeout) = parse_timeout(body.get("timeout"), "timeout", config)? {
            version.timeout_seconds = Some(timeout);
            any = true;
        }
        if let Some(value) = body.get("retry") {
            version.retry = Some(RetryPolicy::parse(value, "retry")?);
            any = true;
        }
        if let Some(metadata) = optional_object(body, "versionMetadata", config.max_metadata_bytes)? {
            version.metadata = Some(metadata);
            any = true;
        }
        Ok(any.then_some(version))
    }
}

impl JobChange {
    /// Validates a `PATCH` body.
    pub fn parse(body: &Value, config: &EngineConfig) -> Result<JobChange, FieldError> {
        let Value::Object(object) = body else {
            return Err(FieldError::new("body", format!("must be a JSON object, got {}", json_type(body))));
        };
        let name = optional_string(object, "name", 200)?;
        if name.as_deref().is_some_and(|name| name.trim().is_empty()) {
            return Err(FieldError::new("name", "must not be empty"));
        }
        let policy = match object.get("policy") {
            None | Some(Value::Null) => None,
            Some(value) => Some(JobPolicy::parse(value)?),
        };
        Ok(JobChange {
            name,
            description: optional_string(object, "description", 2000)?,
            policy,
            authority: Authority::parse_request(object.get("authority"), "authority")?,
            version: NewVersion::parse(object, config)?,
        })
    }
}

/// A job with everything its wire view shows.
#[derive(Clone, Debug)]
pub struct JobDetail {
    /// The job.
    pub job: Job,
    /// Its versions, oldest first.
    pub versions: Vec<JobVersion>,
    /// Its newest execution.
    pub last_execution: Option<Execution>,
}

impl JobDetail {
    /// The wire view (`Job`).
    pub fn view(&self) -> Value {
        sundial_core::wire::job_view(&self.job, &self.versions, self.last_execution.as_ref())
    }
}

/// What `delete` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deletion {
    /// The job is gone.
    pub deleted: bool,
    /// The job was deactivated instead (a pre-defined job with versions).
    pub deactivated: bool,
}

impl Deletion {
    /// The wire view (`{deleted, deactivated, message}`).
    pub fn view(&self, job_id: &str) -> Value {
        let message = if self.deleted {
            format!("job {job_id} deleted")
        } else {
            format!("job {job_id} has versions and was deactivated instead of deleted")
        };
        json!({"deleted": self.deleted, "deactivated": self.deactivated, "message": message})
    }
}

/// A message delivered to a user's conversation, announced to stream subscribers.
#[derive(Clone, Debug)]
pub struct MessageEvent {
    /// The agent.
    pub agent_id: String,
    /// The user.
    pub user_id: String,
    /// The message's sequence number.
    pub seq: i64,
}

/// An agent's `env` variables as job code reads them.
pub(crate) type AgentEnv = Arc<std::collections::BTreeMap<String, String>>;

pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: EngineConfig,
    pub(crate) wake: Notify,
    pub(crate) metrics: Metrics,
    pub(crate) messages: broadcast::Sender<MessageEvent>,
    pub(crate) pool: sundial_sandbox::Pool,
    creations: Mutex<HashMap<String, (i64, u32)>>,
    /// Agents' `env` variables as job code sees them (all of them, and those exposed to jobs that act for a user),
    /// read from the store at most once a second per agent.
    agent_env: Mutex<HashMap<String, (std::time::Instant, AgentEnv, AgentEnv)>>,
    /// Compiled cron schedules by version id (a version never changes): compiling one costs about 20 next-fires.
    compiled: Mutex<HashMap<String, sundial_core::CompiledSchedule>>,
    /// Where runs hand their outcomes to be recorded in batches, while the scheduler runs (see `runner`).
    pub(crate) outcomes: std::sync::OnceLock<crate::runner::Outcomes>,
    /// Runs in flight, for a graceful stop.
    pub(crate) in_flight: crate::runner::InFlight,
    /// Each agent's runs on sandbox workers, for sharing the workers between agents.
    pub(crate) shares: crate::runner::Shares,
    /// The server's secret that seals agents' `env` values at rest, when one is configured.
    secrets: std::sync::OnceLock<crate::secrets::SecretBox>,
    /// The store's counts as last read (see [`Engine::store_stats`]).
    stats: Mutex<Option<(std::time::Instant, sundial_store::StoreStats)>>,
}

/// The engine: cheap to clone, shared by the API, the scheduler loop and the host calls of running jobs.
#[derive(Clone)]
pub struct Engine {
    pub(crate) shared: Arc<Shared>,
}

impl Engine {
    /// Builds an engine over a store, a clock and a sandbox pool. [`Engine::start`] starts the scheduler.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        pool: sundial_sandbox::Pool,
        config: EngineConfig,
    ) -> Engine {
        let (messages, _) = broadcast::channel(1024);
        Engine {
            shared: Arc::new(Shared {
                store,
                clock,
                config,
                wake: Notify::new(),
                metrics: Metrics::new(),
                messages,
                pool,
                creations: Mutex::new(HashMap::new()),
                compiled: Mutex::new(HashMap::new()),
                agent_env: Mutex::new(HashMap::new()),
                outcomes: std::sync::OnceLock::new(),
                in_flight: Default::default(),
                shares: Default::default(),
                secrets: std::sync::OnceLock::new(),
                stats: Mutex::new(None),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    /// The current time of the engine's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.shared.clock.now()
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// The sandbox pool.
    pub fn pool(&self) -> &sundial_sandbox::Pool {
        &self.shared.pool
    }

    /// Subscribes to messages delivered to users.
    pub fn subscribe_messages(&self) -> broadcast::Receiver<MessageEvent> {
        self.shared.messages.subscribe()
    }

    /// Prometheus text exposition of the engine's metrics.
    pub async fn metrics_text(&self) -> String {
        let stats = self.store_stats().await;
        let pool = self.shared.pool.stats();
        self.shared.metrics.encode(&stats, &pool)
    }

    /// The store's counts (active jobs, queue depth), read at most every few seconds however often they are asked
    /// for: counting active jobs reads every one of them, so scrapes and dashboards must not decide how often. A
    /// store that does not answer (a network partition) must not hang a scrape: zeros then.
    pub async fn store_stats(&self) -> sundial_store::StoreStats {
        const FRESH: std::time::Duration = std::time::Duration::from_secs(5);
        if let Some((read_at, stats)) = *self.shared.stats.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) {
            if read_at.elapsed() < FRESH {
                return stats;
            }
        }
        let read = tokio::time::timeout(std::time::Duration::from_secs(1), self.shared.store.stats(self.now())).await;
        let stats = read.ok().and_then(Result::ok).unwrap_or_default();
        *self.shared.stats.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some((std::time::Instant::now(), stats));
        stats
    }

    /// Readies agents' `env` values at rest, once, before the server serves: with a secret key, values are sealed
    /// from now on and those stored in plain text before are sealed now; without one, they stay plain. Either way
    /// every stored value is opened once, so a missing or wrong key is an error at start, not a surprise in a job.
    /// Answers how many values were sealed now.
    pub async fn prepare_env(&self, secrets: Option<crate::secrets::SecretBox>) -> EngineResult<usize> {
        if let Some(secrets) = secrets {
            if self.shared.secrets.set(secrets).is_err() {
                return Err(EngineError::Conflict("the env key is set already".into()));
            }
        }
        let mut sealed = 0;
        for agent in self.shared.store.agent_list().await? {
            let env = self.agent_env_values(&agent.id).await?;
            let plain = agent.env.values().filter_map(Value::as_str).filter(|text| !crate::secrets::is_sealed(text));
            let plain = plain.count();
            if plain > 0 && self.shared.secrets.get().is_some() {
                self.set_agent_env(&agent.id, &env).await?;
                sealed += plain;
            }
        }
        Ok(sealed)
    }

    /// The agent's `env` variables as set (opened when sealed); `NotFound` for an agent that does not exist. Values
    /// sealed with a key this server does not have are an error, never a wrong value.
    pub async fn agent_env_values(&self, agent_id: &str) -> EngineResult<JsonObject> {
        let agent = self.shared.store.agent_get(agent_id).await?.ok_or(EngineError::NotFound("agent"))?;
        let mut env = JsonObject::new();
        for (name, value) in agent.env {
            let value = match value.as_str() {
                Some(text) if crate::secrets::is_sealed(text) => {
                    let Some(secrets) = self.shared.secrets.get() else {
                        return Err(EngineError::Conflict(format!(
                            "the env value {name} of agent {agent_id} is encrypted: start the server with its \
                             SUNDIAL_SECRET_KEY"
                        )));
                    };
                    Value::String(
                        secrets
                            .open(agent_id, &name, text)
                            .map_err(|error| EngineError::Conflict(error.to_string()))?,
                    )
                }
                _ => value,
            };
            env.insert(name, value);
        }
        Ok(env)
    }

    /// Replaces the agent's `env` variables, sealed when the server has a secret key; false when the agent does not
    /// exist.
    pub async fn set_agent_env(&self, agent_id: &str, env: &JsonObject) -> EngineResult<bool> {
        let stored = match self.shared.secrets.get() {
            None => env.clone(),
            Some(secrets) => {
                let mut sealed = JsonObject::new();
                for (name, value) in env {
                    let value = match value.as_str() {
                        Some(text) => Value::String(secrets.seal(agent_id, name, text).map_err(EngineError::Conflict)?),
                        None => value.clone(),
                    };
                    sealed.insert(name.clone(), value);
                }
                sealed
            }
        };
        let changed = self.shared.store.agent_set_env(agent_id, &stored).await?;
        self.shared.agent_env.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(agent_id);
        Ok(changed)
    }

    /// The agent's `env` variables (string values only) that a job with `authority` reads: all of them with the
    /// agent's authority, with a user's only those the agent lists in its `userJobEnv` setting. Cached for a
    /// second: executions of one agent in a burst share one read.
    pub(crate) async fn agent_env(&self, agent_id: &str, authority: Authority) -> AgentEnv {
        const FRESH: std::time::Duration = std::time::Duration::from_secs(1);
        let pick = |all: &AgentEnv, exposed: &AgentEnv| if authority.is_user() { exposed.clone() } else { all.clone() };
        {
            let cache = self.shared.agent_env.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some((read_at, all, exposed)) = cache.get(agent_id) {
                if read_at.elapsed() < FRESH {
                    return pick(all, exposed);
                }
            }
        }
        let env = self.agent_env_values(agent_id).await;
        if let Err(error) = &env {
            tracing::error!(agent = agent_id, %error, "cannot read the agent's env variables; jobs see none");
        }
        let (all, exposed) = match (self.shared.store.agent_get(agent_id).await, env) {
            (Ok(Some(agent)), Ok(env)) => {
                let all: std::collections::BTreeMap<String, String> = env
                    .into_iter()
                    .filter_map(|(key, value)| value.as_str().map(|text| (key, text.to_owned())))
                    .collect();
                let listed = agent.settings.get(USER_JOB_ENV_SETTING).and_then(Value::as_array);
                let exposed = all
                    .iter()
                    .filter(|(key, _)| listed.is_some_and(|names| names.iter().any(|name| name == key.as_str())))
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect();
                (all, exposed)
            }
            _ => Default::default(),
        };
        let (all, exposed) = (Arc::new(all), Arc::new(exposed));
        let answer = pick(&all, &exposed);
        let mut cache = self.shared.agent_env.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.insert(agent_id.to_owned(), (std::time::Instant::now(), all, exposed));
        answer
    }

    /// The compiled form of a version's schedule; cron rules are compiled once per version and kept (at most
    /// [`COMPILED_CACHE`] of them).
    pub(crate) fn compiled_schedule(
        &self,
        version: &JobVersion,
    ) -> Result<sundial_core::CompiledSchedule, sundial_core::ScheduleError> {
        if !matches!(version.schedule, Schedule::Cron { .. }) {
            return version.schedule.compile();
        }
        let mut cache = self.shared.compiled.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(compiled) = cache.get(&version.id) {
            return Ok(compiled.clone());
        }
        let compiled = version.schedule.compile()?;
        if cache.len() >= COMPILED_CACHE {
            cache.clear();
        }
        cache.insert(version.id.clone(), compiled.clone());
        Ok(compiled)
    }

    /// Wakes the scheduler loop (new or changed work).
    pub fn wake(&self) {
        self.shared.wake.notify_one();
    }

    fn check_creation_rate(&self, agent_id: &str) -> EngineResult<()> {
        let minute = self.now().timestamp() / 60;
        let limit = self.shared.config.max_creations_per_minute;
        let mut creations = self.shared.creations.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = creations.entry(agent_id.to_owned()).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        if entry.1 >= limit {
            let retry_after_seconds = (60 - self.now().timestamp() % 60).max(1) as u64;
            return Err(EngineError::RateLimited {
                message: format!("agent {agent_id} may create at most {limit} jobs per minute"),
                retry_after_seconds,
            });
        }
        entry.1 += 1;
        Ok(())
    }

    /// The guardrails on jobs made for a user, from the agent's settings (`maxActiveJobsPerUser`,
    /// `minRecurringIntervalSeconds`) or their defaults.
    async fn guardrails(&self, agent_id: &str) -> EngineResult<Guardrails> {
        let settings = self.shared.store.agent_get(agent_id).await?.map(|agent| agent.settings).unwrap_or_default();
        let number =
            |key: &str, default: u64| settings.get(key).and_then(sundial_core::wire::whole_number).unwrap_or(default);
        Ok(Guardrails {
            max_active_per_user: number(MAX_ACTIVE_JOBS_PER_USER_SETTING, DEFAULT_MAX_ACTIVE_JOBS_PER_USER),
            min_recurring_seconds: number(MIN_RECURRING_INTERVAL_SETTING, DEFAULT_MIN_RECURRING_INTERVAL_SECONDS),
        })
    }

    /// Checks the schedule of a job made for a user: a recurring one may not fire more often than the agent's
    /// `minRecurringIntervalSeconds` (an interval's spacing; a cron pattern's next dozen gaps).
    fn check_user_schedule(&self, schedule: &Schedule, guardrails: &Guardrails) -> EngineResult<()> {
        let min = guardrails.min_recurring_seconds;
        let too_often = |field: &str, what: String| -> EngineResult<()> {
            Err(FieldError::new(
                field,
                format!(
                    "{what}: a job made for a user may fire at most once every {min} seconds (the agent's \
                     minRecurringIntervalSeconds)"
                ),
            )
            .into())
        };
        match schedule {
            Schedule::Interval { seconds, .. } if *seconds < min => {
                too_often("schedule.seconds", format!("every {seconds} seconds is too often"))
            }
            Schedule::Cron { expression, .. } => {
                let now = self.now();
                let slots = schedule.compile()?.preview(now, now, 12);
                match slots.windows(2).map(|pair| (pair[1] - pair[0]).num_seconds()).min() {
                    Some(gap) if gap < min as i64 => {
                        too_often("schedule.expression", format!("\"{expression}\" fires {gap} seconds apart"))
                    }
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// Checks that `user_id` may have `adding` more active jobs made for them (the agent's `maxActiveJobsPerUser`).
    async fn check_user_quota(
        &self,
        agent_id: &str,
        user_id: &str,
        adding: u64,
        guardrails: &Guardrails,
    ) -> EngineResult<()> {
        if adding == 0 {
            return Ok(());
        }
        let max = guardrails.max_active_per_user;
        let mut active = 0u64;
        let mut filter = JobFilter {
            include_dynamic: true,
            status: Some(JobStatus::Active),
            user_id: Some(user_id.to_owned()),
            limit: 500,
            ..JobFilter::default()
        };
        loop {
            let page = self.shared.store.job_list(agent_id, &filter).await?;
            active += page.iter().filter(|job| job.active && job.user_id.as_deref() == Some(user_id)).count() as u64;
            if page.len() < filter.limit || active + adding > max {
                break;
            }
            filter.after_id = page.last().map(|job| job.id.clone());
        }
        if active + adding > max {
            return Err(EngineError::QuotaExceeded(format!(
                "user {user_id} already has {active} active jobs made for them, and may have at most {max} (the \
                 agent's maxActiveJobsPerUser); deactivate or delete one first"
            )));
        }
        Ok(())
    }

    /// The guardrails for creating `batch` as `caller`: a user's jobs keep to the agent's minimum interval and to
    /// its cap of active jobs per user.
    async fn check_user_jobs<'a>(
        &self,
        caller: &Caller,
        batch: impl Iterator<Item = &'a NewJob> + Clone,
    ) -> EngineResult<()> {
        let Some(user_id) = caller.user_id.as_deref() else { return Ok(()) };
        let guardrails = self.guardrails(&caller.agent_id).await?;
        for new in batch.clone() {
            self.check_user_schedule(&new.schedule, &guardrails)?;
        }
        let activating = batch.filter(|new| new.activate).count() as u64;
        self.check_user_quota(&caller.agent_id, user_id, activating, &guardrails).await
    }

    async fn check_active_quota(&self, agent_id: &str, adding: u64) -> EngineResult<()> {
        let max = self.shared.config.max_active_jobs_per_agent;
        let active = self.shared.store.active_job_count(agent_id).await?;
        if active + adding > max {
            return Err(EngineError::RateLimited {
                message: format!("agent {agent_id} may have at most {max} active jobs"),
                retry_after_seconds: 60,
            });
        }
        Ok(())
    }

    /// The authority a job that `caller` makes acts with: the caller's own, or the narrower one it asks for. Only
    /// the agent's authority makes a job that acts for the agent, and only a job made for a user acts for one.
    fn authority_of_new(&self, caller: &Caller, asked: Option<Authority>) -> EngineResult<Authority> {
        match asked {
            None => Ok(caller.authority),
            Some(Authority::User(_)) if caller.user_id.is_none() => Err(FieldError::new(
                "authority",
                "a user's authority needs a user: make the job for one (X-User-Id or a user token)",
            )
            .into()),
            Some(Authority::Agent) if caller.authority.is_user() => Err(only_agent_widens()),
            Some(asked) => Ok(asked.narrowest(caller.authority)),
        }
    }

    /// Settles the authority of `job` as `caller` changes it: a change by a narrower credential narrows it to the
    /// narrower of the two; `asked` sets it explicitly (only the agent's authority may widen it). Writes it when it
    /// changes.
    async fn settle_authority(&self, caller: &Caller, job: &mut Job, asked: Option<Authority>) -> EngineResult<()> {
        let settled = match asked {
            None => job.authority.narrowest(caller.authority),
            Some(Authority::User(_)) if job.user_id.is_none() => {
                return Err(FieldError::new("authority", "a job without a user cannot act for a user").into());
            }
            Some(asked) if caller.authority == Authority::Agent => asked,
            Some(Authority::Agent) => return Err(only_agent_widens()),
            Some(asked) => asked.narrowest(caller.authority).narrowest(job.authority),
        };
        if settled != job.authority {
            job.authority = settled;
            job.updated_at = self.now();
            self.shared.store.job_update_info(job).await?;
        }
        Ok(())
    }

    /// Builds the job and first version of a creation request, without storing them.
    fn build_job(&self, caller: &Caller, new: NewJob) -> EngineResult<(Job, JobVersion)> {
        let now = self.now();
        let authority = self.authority_of_new(caller, new.authority)?;
        let job_id = new_id("job");
        let compiled = new.schedule.compile()?;
        let version = JobVersion {
            id: new_id("ver"),
            job_id: job_id.clone(),
            name: new.name.clone(),
            version: new.version,
            description: new.description.clone(),
            code: new.code,
            kind: new.kind,
            schedule: new.schedule,
            timeout_seconds: new.timeout_seconds,
            retry: new.retry,
            metadata: (!new.metadata.is_empty()).then(|| new.metadata.clone()),
            created_at: now,
        };
        let dynamic = caller.user_id.is_some() || new.dynamic.unwrap_or(false);
        let next_run_at = if new.activate { compiled.first_slot(now) } else { None };
        if new.activate && version.schedule.is_recurring() && next_run_at.is_none() {
            return Err(
                FieldError::new("schedule.until", "lies before the schedule's first run: it would never run").into()
            );
        }
        let job = Job {
            id: job_id,
            agent_id: caller.agent_id.clone(),
            name: new.name,
            description: new.description,
            dynamic,
            user_id: caller.user_id.clone(),
            authority,
            active: new.activate,
            status: if new.activate { JobStatus::Active } else { JobStatus::Inactive },
            metadata: new.metadata,
            policy: new.policy,
            active_version_id: Some(version.id.clone()),
            anchor_at: now,
            next_run_at,
            last_run_at: None,
            consecutive_failures: 0,
            missed_slots: 0,
            created_at: now,
            updated_at: now,
        };
        Ok((job, version))
    }

    /// Creates a job with its first version (or, with a `dedupKey`, answers the job an earlier create made).
    pub async fn create_job(&self, caller: &Caller, new: NewJob) -> EngineResult<JobDetail> {
        Ok(self.create_job_idempotent(caller, new).await?.0)
    }

    /// Creates a job with its first version, and says what it did. Without a `dedupKey` it always creates. With
    /// one, the key is bound to the new job's id before the job is written, so of two concurrent creates with one key
    /// only one writes a job; the other finds the key bound and answers that job — as it is when nothing differs,
    /// changed to this request when something does. A key bound to a job that is gone (deleted, or a create that
    /// failed) is moved to the new job.
    pub async fn create_job_idempotent(&self, caller: &Caller, new: NewJob) -> EngineResult<(JobDetail, Creation)> {
        let Some(key) = new.dedup_key.clone() else {
            return Ok((self.insert_new_job(caller, new, None).await?, Creation::Created));
        };
        let user = caller.user_id.as_deref();
        let store = &self.shared.store;
        let job_id = new_id("job");
        let mut bound = store.job_dedup_bind(&caller.agent_id, user, &key, &job_id, self.now()).await?;
        // Each round either ends or moves a binding away from a job that is gone; a few rounds settle any race.
        for _ in 0..4 {
            if bound == job_id {
                return match self.insert_new_job(caller, new, Some(job_id.clone())).await {
                    Ok(detail) => Ok((detail, Creation::Created)),
                    Err(error) => {
                        // Free the key for the next try; a failure to do so only leaves a binding to a missing job.
                        if let Err(unbind) = store.job_dedup_rebind(&caller.agent_id, user, &key, &job_id, None).await {
                            tracing::warn!(error = %unbind, "cannot release a dedupKey after a failed create");
                        }
                        Err(error)
                    }
                };
            }
            match self.job(caller, &bound).await {
                Ok(existing) => return self.reuse_job(caller, existing, new).await,
                Err(EngineError::NotFound(_)) => {
                    if store.job_dedup_rebind(&caller.agent_id, user, &key, &bound, Some(&job_id)).await? {
                        bound = job_id.clone();
                    } else {
                        bound = store.job_dedup_bind(&caller.agent_id, user, &key, &job_id, self.now()).await?;
                    }
                }
                Err(other) => return Err(other),
            }
        }
        Err(EngineError::Conflict(format!("dedupKey {key:?} is being bound by concurrent creates; try again")))
    }

    /// Writes a new job (with `job_id`, when given) after the creation checks.
    async fn insert_new_job(&self, caller: &Caller, new: NewJob, job_id: Option<String>) -> EngineResult<JobDetail> {
        caller.check(Reach::Jobs)?;
        self.check_creation_rate(&caller.agent_id)?;
        if new.activate {
            self.check_active_quota(&caller.agent_id, 1).await?;
        }
        self.check_user_jobs(caller, std::iter::once(&new)).await?;
        let (mut job, mut version) = self.build_job(caller, new)?;
        if let Some(job_id) = job_id {
            job.id = job_id.clone();
            version.job_id = job_id;
        }
        self.shared.store.job_insert(&job, Some(&version)).await?;
        self.wake();
        Ok(JobDetail { job, versions: vec![version], last_execution: None })
    }

    /// Answers the job an earlier create with the same `dedupKey` made, changed to what `new` asks for: name,
    /// description and policy in place, metadata replaced, and a new published version when the schedule, code,
    /// kind, timeout or retries differ from the active version's.
    async fn reuse_job(&self, caller: &Caller, job: Job, new: NewJob) -> EngineResult<(JobDetail, Creation)> {
        let active = match &job.active_version_id {
            Some(_) => Some(self.active_version(&job).await?),
            None => None,
        };
        let version_differs = active.as_ref().is_none_or(|active| {
            active.schedule != new.schedule
                || active.code != new.code
                || active.kind != new.kind
                || active.timeout_seconds != new.timeout_seconds
                || active.retry != new.retry
        });
        let info_differs = job.name != new.name || job.description != new.description || job.policy != new.policy;
        let metadata_differs = job.metadata != new.metadata;
        let authority_differs = new.authority.is_some_and(|asked| asked != job.authority);
        if !version_differs && !info_differs && !metadata_differs && !authority_differs {
            return Ok((self.detail(job).await?, Creation::Existing));
        }
        if metadata_differs {
            self.update_metadata(caller, &job.id, &Value::Object(new.metadata.clone()), true).await?;
        }
        let change = JobChange {
            name: info_differs.then(|| new.name.clone()),
            description: if info_differs { new.description.clone() } else { None },
            policy: info_differs.then(|| new.policy.clone()),
            authority: new.authority.filter(|_| authority_differs),
            version: version_differs.then_some(NewVersion {
                version: None,
                description: None,
                code: Some(new.code),
                kind: Some(new.kind),
                schedule: Some(new.schedule),
                timeout_seconds: Some(new.timeout_seconds),
                retry: Some(new.retry),
                metadata: None,
            }),
        };
        Ok((self.update_job(caller, &job.id, change).await?, Creation::Updated))
    }

    /// Creates a job without a version (lua-cli registers pre-defined jobs this way, then pushes and publishes a
    /// version): inactive, with no schedule until a version is published.
    pub async fn create_job_shell(
        &self,
        caller: &Caller,
        name: String,
        description: Option<String>,
        dynamic: bool,
        metadata: JsonObject,
    ) -> EngineResult<JobDetail> {
        caller.check(Reach::Jobs)?;
        self.check_creation_rate(&caller.agent_id)?;
        let now = self.now();
        let job = Job {
            id: new_id("job"),
            agent_id: caller.agent_id.clone(),
            name,
            description,
            dynamic: dynamic || caller.user_id.is_some(),
            user_id: caller.user_id.clone(),
            authority: caller.authority,
            active: false,
            status: JobStatus::Inactive,
            metadata,
            policy: JobPolicy::default(),
            active_version_id: None,
            anchor_at: now,
            next_run_at: None,
            last_run_at: None,
            consecutive_failures: 0,
            missed_slots: 0,
            created_at: now,
            updated_at: now,
        };
        self.shared.store.job_insert(&job, None).await?;
        Ok(JobDetail { job, versions: Vec::new(), last_execution: None })
    }

    /// Creates many jobs in one transaction: all or none. A job with a `dedupKey` bound by an earlier create is not
    /// created again: its place in the answer holds that job (changed as [`Engine::create_job_idempotent`] does).
    pub async fn create_jobs(&self, caller: &Caller, batch: Vec<NewJob>) -> EngineResult<Vec<JobDetail>> {
        caller.check(Reach::Jobs)?;
        if batch.iter().any(|new| new.dedup_key.is_some()) {
            return self.create_jobs_with_keys(caller, batch).await;
        }
        let activating = batch.iter().filter(|new| new.activate).count() as u64;
        self.check_active_quota(&caller.agent_id, activating).await?;
        self.check_user_jobs(caller, batch.iter()).await?;
        let mut rows = Vec::with_capacity(batch.len());
        for new in batch {
            let (job, version) = self.build_job(caller, new)?;
            rows.push((job, Some(version)));
        }
        let rows = Arc::new(rows);
        self.shared.store.jobs_insert_batch(rows.clone()).await?;
        self.wake();
        let rows = Arc::try_unwrap(rows).unwrap_or_else(|shared| (*shared).clone());
        Ok(rows
            .into_iter()
            .map(|(job, version)| JobDetail { job, versions: version.into_iter().collect(), last_execution: None })
            .collect())
    }

    /// [`Engine::create_jobs`] for a batch that carries `dedupKey`s: the keys are bound first; the jobs whose key
    /// this batch bound (and those without a key) are written in one transaction, and if that fails, the keys are
    /// released; the others answer the job their key is bound to. Two items of one batch with the same key are one
    /// job.
    async fn create_jobs_with_keys(&self, caller: &Caller, batch: Vec<NewJob>) -> EngineResult<Vec<JobDetail>> {
        let user = caller.user_id.as_deref();
        let store = self.shared.store.clone();
        let mut fresh = Vec::new();
        let mut reused: Vec<(NewJob, String)> = Vec::new();
        let mut bound_here: Vec<(String, String)> = Vec::new();
        let mut order: Vec<Result<usize, usize>> = Vec::with_capacity(batch.len());
        for new in batch {
            let Some(key) = new.dedup_key.clone() else {
                order.push(Ok(fresh.len()));
                fresh.push((new, None));
                continue;
            };
            if let Some((_, job_id)) = bound_here.iter().find(|(bound, _)| *bound == key) {
                let job_id = job_id.clone();
                order.push(Err(reused.len()));
                reused.push((new, job_id));
                continue;
            }
            let job_id = new_id("job");
            let mut bound = store.job_dedup_bind(&caller.agent_id, user, &key, &job_id, self.now()).await?;
            // A key bound to a job that is gone is moved to the new one.
            if bound != job_id
                && matches!(self.job(caller, &bound).await, Err(EngineError::NotFound(_)))
                && store.job_dedup_rebind(&caller.agent_id, user, &key, &bound, Some(&job_id)).await?
            {
                bound = job_id.clone();
            }
            if bound == job_id {
                bound_here.push((key, job_id.clone()));
                order.push(Ok(fresh.len()));
                fresh.push((new, Some(job_id)));
            } else {
                order.push(Err(reused.len()));
                reused.push((new, bound));
            }
        }
        let release = |bound_here: Vec<(String, String)>| {
            let store = store.clone();
            let agent_id = caller.agent_id.clone();
            async move {
                for (key, job_id) in bound_here {
                    let _ = store.job_dedup_rebind(&agent_id, user, &key, &job_id, None).await;
                }
            }
        };
        let written = async {
            let activating = fresh.iter().filter(|(new, _)| new.activate).count() as u64;
            self.check_active_quota(&caller.agent_id, activating).await?;
            self.check_user_jobs(caller, fresh.iter().map(|(new, _)| new)).await?;
            let mut rows = Vec::with_capacity(fresh.len());
            for (new, job_id) in fresh {
                let (mut job, mut version) = self.build_job(caller, new)?;
                if let Some(job_id) = job_id {
                    job.id = job_id.clone();
                    version.job_id = job_id;
                }
                rows.push((job, Some(version)));
            }
            let rows = Arc::new(rows);
            store.jobs_insert_batch(rows.clone()).await?;
            EngineResult::Ok(Arc::try_unwrap(rows).unwrap_or_else(|shared| (*shared).clone()))
        }
        .await;
        let rows = match written {
            Ok(rows) => rows,
            Err(error) => {
                release(bound_here).await;
                return Err(error);
            }
        };
        self.wake();
        let mut created: Vec<Option<JobDetail>> = rows
            .into_iter()
            .map(|(job, version)| {
                Some(JobDetail { job, versions: version.into_iter().collect(), last_execution: None })
            })
            .collect();
        let mut others: Vec<Option<JobDetail>> = Vec::with_capacity(reused.len());
        for (new, job_id) in reused {
            let job = self.job(caller, &job_id).await?;
            others.push(Some(self.reuse_job(caller, job, new).await?.0));
        }
        let mut answer = Vec::with_capacity(order.len());
        for place in order {
            let detail = match place {
                Ok(index) => created.get_mut(index).and_then(Option::take),
                Err(index) => others.get_mut(index).and_then(Option::take),
            };
            answer.push(detail.ok_or_else(|| EngineError::Conflict("a batch item has no answer".into()))?);
        }
        Ok(answer)
    }

    /// The job, for this agent, if the caller reaches it ([`Caller::check`]): every operation on one job starts
    /// here.
    pub async fn job(&self, caller: &Caller, job_id: &str) -> EngineResult<Job> {
        let job = self.shared.store.job_get(&caller.agent_id, job_id).await?.ok_or(EngineError::NotFound("job"))?;
        caller.check(Reach::Job(&job))?;
        Ok(job)
    }

    /// The job with its versions and latest execution.
    pub async fn job_detail(&self, caller: &Caller, job_id: &str) -> EngineResult<JobDetail> {
        let job = self.job(caller, job_id).await?;
        self.detail(job).await
    }

    async fn detail(&self, job: Job) -> EngineResult<JobDetail> {
        let versions = self.shared.store.version_list(&job.id).await?;
        let last_execution = self.shared.store.execution_latest(&job.id).await?;
        Ok(JobDetail { job, versions, last_execution })
    }

    /// A page of the agent's jobs that the caller reaches: a caller acting for a user sees that user's jobs (and,
    /// with the agent's authority, the agent's pre-defined ones).
    pub async fn list_jobs(&self, caller: &Caller, filter: &JobFilter) -> EngineResult<Vec<JobDetail>> {
        let mut filter = filter.clone();
        if caller.user_id.is_some() {
            filter.user_id = caller.user_id.clone();
        }
        if caller.authority.is_user() {
            caller.check(Reach::Jobs)?;
            filter.user_only = true;
        }
        let jobs = self.shared.store.job_list(&caller.agent_id, &filter).await?;
        let mut details = Vec::with_capacity(jobs.len());
        for job in jobs {
            details.push(self.detail(job).await?);
        }
        Ok(details)
    }

    async fn active_version(&self, job: &Job) -> EngineResult<JobVersion> {
        let Some(version_id) = &job.active_version_id else {
            return Err(EngineError::Conflict(format!("job {} has no version", job.id)));
        };
        self.shared.store.version_get(&job.id, version_id).await?.ok_or(EngineError::NotFound("version"))
    }

    /// Activates a job: its grid is anchored now and its next slot computed.
    pub async fn activate(&self, caller: &Caller, job_id: &str) -> EngineResult<JobDetail> {
        let job = self.job(caller, job_id).await?;
        let version = self.active_version(&job).await?;
        if !job.active {
            self.check_active_quota(&caller.agent_id, 1).await?;
            if let (true, Some(user_id)) = (job.dynamic, job.user_id.as_deref()) {
                let guardrails = self.guardrails(&caller.agent_id).await?;
                self.check_user_quota(&caller.agent_id, user_id, 1, &guardrails).await?;
            }
        }
        let now = self.now();
        let next_run_at = version.schedule.compile()?.first_slot(now);
        let change = Activation { active: true, status: JobStatus::Active, anchor_at: Some(now), next_run_at };
        let job = if job.active {
            job
        } else {
            self.shared.store.job_set_activation(&job.id, &change, now).await?.ok_or(EngineError::NotFound("job"))?
        };
        self.wake();
        self.detail(job).await
    }

    /// Deactivates a job: it stops firing; pending scheduled executions are cancelled.
    pub async fn deactivate(&self, caller: &Caller, job_id: &str) -> EngineResult<JobDetail> {
        let job = self.job(caller, job_id).await?;
        let change = Activation { active: false, status: JobStatus::Inactive, anchor_at: None, next_run_at: None };
        let job = self
            .shared
            .store
            .job_set_activation(&job.id, &change, self.now())
            .await?
            .ok_or(EngineError::NotFound("job"))?;
        self.detail(job).await
    }

    /// Deletes a dynamic job (or one without versions); deactivates a pre-defined job with versions (SPEC §7).
    pub async fn delete(&self, caller: &Caller, job_id: &str) -> EngineResult<Deletion> {
        let job = self.job(caller, job_id).await?;
        let has_versions = !self.shared.store.version_list(&job.id).await?.is_empty();
        if !job.dynamic && has_versions {
            self.deactivate(caller, job_id).await?;
            return Ok(Deletion { deleted: false, deactivated: true });
        }
        if !self.shared.store.job_delete(&caller.agent_id, &job.id, self.now()).await? {
            return Err(EngineError::NotFound("job"));
        }
        Ok(Deletion { deleted: true, deactivated: false })
    }

    /// Runs a job now, outside its schedule, on the active version or `version_id`; works on inactive jobs too.
    pub async fn trigger(&self, caller: &Caller, job_id: &str, version_id: Option<&str>) -> EngineResult<Execution> {
        let job = self.job(caller, job_id).await?;
        let version = match version_id {
            Some(version_id) => {
                let by_id = self.shared.store.version_get(&job.id, version_id).await?;
                let found = match by_id {
                    Some(version) => Some(version),
                    None => self.shared.store.version_find(&job.id, version_id).await?,
                };
                found.ok_or(EngineError::NotFound("version"))?
            }
            None => self.active_version(&job).await?,
        };
        let now = self.now();
        let execution = crate::runner::first_attempt(&job, &version.id, Trigger::Manual, None, now, now);
        self.shared.store.execution_insert(&execution).await?;
        self.wake();
        Ok(execution)
    }

    /// Merges (`replace = false`) or replaces a job's metadata.
    pub async fn update_metadata(
        &self,
        caller: &Caller,
        job_id: &str,
        metadata: &Value,
        replace: bool,
    ) -> EngineResult<JsonObject> {
        let Value::Object(object) = metadata else {
            return Err(FieldError::new("metadata", format!("must be an object, got {}", json_type(metadata))).into());
        };
        let mut job = self.job(caller, job_id).await?;
        self.settle_authority(caller, &mut job, None).await?;
        let updated = self
            .shared
            .store
            .job_metadata_update(&caller.agent_id, job_id, object, replace, self.now())
            .await?
            .ok_or(EngineError::NotFound("job"))?;
        let size = serde_json::to_string(&updated).map(|text| text.len()).unwrap_or(usize::MAX);
        if size > self.shared.config.max_metadata_bytes {
            // Roll back to a state within bounds: the merge made it too large.
            return Err(FieldError::new(
                "metadata",
                format!("must be at most {} bytes of JSON", self.shared.config.max_metadata_bytes),
            )
            .into());
        }
        Ok(updated)
    }

    /// Adds a version (copying unset fields from the active version); `publish` makes it active.
    pub async fn add_version(
        &self,
        caller: &Caller,
        job_id: &str,
        new: NewVersion,
        publish: bool,
    ) -> EngineResult<JobVersion> {
        let mut job = self.job(caller, job_id).await?;
        self.settle_authority(caller, &mut job, None).await?;
        let versions = self.shared.store.version_list(&job.id).await?;
        let base = match &job.active_version_id {
            Some(id) => versions.iter().find(|version| &version.id == id).cloned(),
            None => versions.last().cloned(),
        };
        let version_string = match new.version {
            Some(version) => version,
            None => next_patch(&versions),
        };
        let (Some(code), Some(schedule)) = (
            new.code.or_else(|| base.as_ref().map(|base| base.code.clone())),
            new.schedule.or_else(|| base.as_ref().map(|base| base.schedule.clone())),
        ) else {
            return Err(FieldError::new("code", "is required for the first version of a job").into());
        };
        if job.dynamic && job.user_id.is_some() {
            let guardrails = self.guardrails(&caller.agent_id).await?;
            self.check_user_schedule(&schedule, &guardrails)?;
        }
        let version = JobVersion {
            id: new_id("ver"),
            job_id: job.id.clone(),
            name: job.name.clone(),
            version: version_string,
            description: new.description.or_else(|| base.as_ref().and_then(|base| base.description.clone())),
            code,
            kind: new.kind.or(base.as_ref().map(|base| base.kind)).unwrap_or_default(),
            schedule,
            timeout_seconds: new
                .timeout_seconds
                .or(base.as_ref().map(|base| base.timeout_seconds))
                .unwrap_or(self.shared.config.default_timeout_seconds),
            retry: new.retry.unwrap_or_else(|| base.as_ref().and_then(|base| base.retry.clone())),
            metadata: new.metadata.or_else(|| base.as_ref().and_then(|base| base.metadata.clone())),
            created_at: self.now(),
        };
        version.schedule.compile()?;
        match self.shared.store.version_insert(&version).await {
            Err(StoreError::Conflict(_)) => {
                return Err(EngineError::Conflict(format!("job {} already has version {}", job.id, version.version)));
            }
            other => other?,
        }
        if publish {
            self.publish_version(caller, &job.id, &version.version).await?;
        }
        Ok(version)
    }

    /// Makes the version with this semver string (or id) the active one and activates the job.
    pub async fn publish_version(&self, caller: &Caller, job_id: &str, version: &str) -> EngineResult<JobDetail> {
        let mut job = self.job(caller, job_id).await?;
        self.settle_authority(caller, &mut job, None).await?;
        let found = match self.shared.store.version_find(&job.id, version).await? {
            Some(found) => Some(found),
            None => self.shared.store.version_get(&job.id, version).await?,
        };
        let version = found.ok_or(EngineError::NotFound("version"))?;
        let now = self.now();
        let next_run_at = version.schedule.compile()?.first_slot(now);
        let change = Activation { active: true, status: JobStatus::Active, anchor_at: Some(now), next_run_at };
        let job = self
            .shared
            .store
            .job_set_active_version(&job.id, &version.id, &change, now)
            .await?
            .ok_or(EngineError::NotFound("job"))?;
        self.wake();
        self.detail(job).await
    }

    /// Applies a `PATCH`: name, description and policy in place; code or options as a new, published version.
    pub async fn update_job(&self, caller: &Caller, job_id: &str, change: JobChange) -> EngineResult<JobDetail> {
        let mut job = self.job(caller, job_id).await?;
        self.settle_authority(caller, &mut job, change.authority).await?;
        if change.name.is_some() || change.description.is_some() || change.policy.is_some() {
            if let Some(name) = change.name {
                job.name = name;
            }
            if let Some(description) = change.description {
                job.description = Some(description);
            }
            if let Some(policy) = change.policy {
                job.policy = policy;
            }
            job.updated_at = self.now();
            self.shared.store.job_update_info(&job).await?;
        }
        if let Some(version) = change.version {
            let was_active = job.active;
            let created = self.add_version(caller, job_id, version, false).await?;
            self.publish_version(caller, job_id, &created.version).await?;
            if !was_active {
                self.deactivate(caller, job_id).await?;
            }
        }
        self.job_detail(caller, job_id).await
    }

    /// The next `n` fire instants of the job's active version.
    pub async fn preview(
        &self,
        caller: &Caller,
        job_id: &str,
        n: usize,
    ) -> EngineResult<(Job, Schedule, Vec<DateTime<Utc>>)> {
        let job = self.job(caller, job_id).await?;
        let version = self.active_version(&job).await?;
        let compiled = version.schedule.compile()?;
        let now = self.now();
        let mut instants = Vec::with_capacity(n);
        if let Some(next) = job.next_run_at.filter(|_| job.active) {
            instants = sundial_core::describe::next_runs(&compiled, next, job.anchor_at, n);
        } else if version.schedule.is_recurring() {
            instants.extend(compiled.preview(now, now, n));
        } else if let Some(slot) = compiled.first_slot(now).filter(|slot| *slot > now) {
            instants.push(slot);
        }
        instants.truncate(n);
        Ok((job, version.schedule, instants))
    }

    /// A page of a job's executions, newest first, with the total.
    pub async fn executions(
        &self,
        caller: &Caller,
        job_id: &str,
        status: Option<ExecutionStatus>,
        limit: usize,
        offset: usize,
    ) -> EngineResult<(Vec<Execution>, u64)> {
        let job = self.job(caller, job_id).await?;
        Ok(self.shared.store.execution_list(&job.id, status, limit, offset).await?)
    }

    /// A page of all executions of the agent, in creation order, after the execution id `after`.
    pub async fn agent_executions(
        &self,
        caller: &Caller,
        after: Option<&str>,
        limit: usize,
    ) -> EngineResult<Vec<Execution>> {
        Ok(self.shared.store.execution_list_agent(&caller.agent_id, after, limit).await?)
    }

    /// One execution of the agent, of a job the caller reaches.
    pub async fn execution(&self, caller: &Caller, execution_id: &str) -> EngineResult<Execution> {
        let execution = self
            .shared
            .store
            .execution_get(&caller.agent_id, execution_id)
            .await?
            .ok_or(EngineError::NotFound("execution"))?;
        if caller.user_id.is_some() {
            match self.job(caller, &execution.job_id).await {
                Ok(_) => {}
                Err(EngineError::Denied(_) | EngineError::NotFound(_)) => {
                    return Err(EngineError::NotFound("execution"))
                }
                Err(other) => return Err(other),
            }
        }
        Ok(execution)
    }

    /// Appends messages to a user's conversation and announces them; answers them as stored. A job's messages name
    /// the run that sent them (`origin`), and `dedupe_keys` make a retried execution's sends land once
    /// (`<occurrence>:<n>`).
    pub async fn send_messages(
        &self,
        agent_id: &str,
        user_id: &str,
        messages: &[Value],
        origin: Option<&sundial_store::MessageOrigin>,
        dedupe_keys: Option<Vec<String>>,
    ) -> EngineResult<Vec<Message>> {
        for (index, message) in messages.iter().enumerate() {
            validate_message(message, index)?;
        }
        let now = self.now();
        let mut sent = Vec::with_capacity(messages.len());
        for (index, message) in messages.iter().enumerate() {
            let key = dedupe_keys.as_ref().and_then(|keys| keys.get(index)).map(String::as_str);
            let stored = self.shared.store.message_insert(agent_id, user_id, message, origin, key, now).await?;
            let _ = self.shared.messages.send(MessageEvent {
                agent_id: agent_id.to_owned(),
                user_id: user_id.to_owned(),
                seq: stored.seq,
            });
            sent.push(stored);
        }
        Ok(sent)
    }
}

/// The refusal of a narrower credential asking for the agent's authority.
fn only_agent_widens() -> EngineError {
    Denied::Agent {
        rule: "authority: a user's credential makes and changes jobs that act for its user only; only an agent key \
               makes a job act for the agent"
            .into(),
    }
    .into()
}

/// Checks one message against the shapes of SPEC §5.
pub fn validate_message(message: &Value, index: usize) -> Result<(), FieldError> {
    let field = format!("messages[{index}]");
    let Value::Object(object) = message else {
        return Err(FieldError::new(field, format!("must be an object, got {}", json_type(message))));
    };
    let required: &[&str] = match object.get("type").and_then(Value::as_str) {
        Some("text") => &["text"],
        Some("image") => &["image", "mediaType"],
        Some("file") => &["data", "mediaType"],
        _ => {
            return Err(FieldError::new(format!("{field}.type"), "must be one of text, image, file"));
        }
    };
    for key in required {
        if !object.get(*key).is_some_and(Value::is_string) {
            return Err(FieldError::new(
                format!("{field}.{key}"),
                "must be a string ({type:'text', text}, {type:'image', image, mediaType} or {type:'file', data, \
                 mediaType})",
            ));
        }
    }
    Ok(())
}

/// The latest version's string with the patch number increased (`1.0.0` when there is none).
fn next_patch(versions: &[JobVersion]) -> String {
    let latest = versions.iter().filter_map(|version| parse_semver(&version.version, "version").ok()).max();
    match latest {
        Some((major, minor, patch)) => format!("{major}.{minor}.{}", patch + 1),
        None => "1.0.0".into(),
    }
}
