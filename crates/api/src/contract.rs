//! The types of the native API's bodies, from which `/v1/openapi.json` is derived (`utoipa`).
//!
//! Each request body is read into its type here before the domain checks it (so a wrong JSON type anywhere in a
//! body is a 400 naming the field's path), and each response type describes what the wire views of
//! `sundial_core::wire` and the handlers answer. The constraints written here are the ones the server enforces; a
//! constraint the server checks that JSON Schema cannot say (a cron pattern, the source of a JavaScript function) is
//! named by a `format` and explained in the field's description.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// A JSON object of any fields.
pub type Object = Map<String, Value>;

/// Reads a request body into its type, after the domain has checked it: the type is the contract, so a body the
/// domain would take but the type would not (an unknown field where fields are closed, a wrong JSON type the domain
/// did not look at) is refused too, naming the field's path (`jobs[2].schedule.seconds: …`).
pub fn conform<T: serde::de::DeserializeOwned>(body: &Value) -> Result<T, sundial_core::FieldError> {
    serde_path_to_error::deserialize(body).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        sundial_core::FieldError::new(field, error.into_inner().to_string())
    })
}

/// Whole numbers as JSON Schema's `integer` reads them, `60` and `60.0` alike.
mod whole {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};

    fn read<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
        let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else { return Ok(None) };
        let whole = number.as_u64().or_else(|| {
            // Integral, non-negative and below 2^64: the conversion is exact.
            number.as_f64().filter(|float| float.fract() == 0.0 && *float >= 0.0 && *float < 1.8e19).map(|f| f as u64)
        });
        whole.map(Some).ok_or_else(|| D::Error::custom(format!("expected a whole number, got {number}")))
    }

    pub(super) fn u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        read(deserializer)?.ok_or_else(|| D::Error::custom("expected a whole number, got null"))
    }

    pub(super) fn u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
        u32::try_from(u64(deserializer)?).map_err(|_| D::Error::custom("expected a whole number below 2^32"))
    }

    pub(super) fn option_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
        read(deserializer)
    }

    pub(super) fn option_u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
        read(deserializer)?
            .map(|number| u32::try_from(number).map_err(|_| D::Error::custom("expected a whole number below 2^32")))
            .transpose()
    }
}

// --- shared ---

/// The one error body every failure answers with.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Error {
    /// A stable machine-readable code: `invalid_request`, `invalid_schedule`, `unresolved_reference`,
    /// `invalid_json`, `payload_too_large`, `unauthorized`, `token_expired`, `forbidden`, `insufficient_scope`,
    /// `<what>_not_found`, `route_not_found`, `method_not_allowed`, `conflict`, `rate_limited`, `quota_exceeded` ….
    pub code: String,
    /// What went wrong, naming the field first (`schedule.timezone: unknown IANA zone "Mars/Base"`).
    pub message: String,
    /// The JSON path of the offending field, for a 400 about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The HTTP status again, for clients that only keep the body.
    #[schema(minimum = 400, maximum = 599)]
    pub status_code: u16,
}

/// When a job runs: once at an instant, every N seconds, or on a cron pattern in an IANA zone.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Schedule {
    /// Once, at `executeAt` (a past instant fires at once).
    Once {
        /// An RFC 3339 instant, or Unix epoch milliseconds.
        #[serde(rename = "executeAt")]
        #[schema(schema_with = instant_schema)]
        execute_at: Value,
        /// The IANA zone the instant is said in (its description and local time); UTC by default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(schema_with = timezone_schema)]
        timezone: Option<String>,
    },
    /// Every `seconds` seconds on a grid anchored at activation.
    Interval {
        /// The spacing in seconds (the server's minimum and maximum apply; at least 1).
        #[schema(minimum = 1, maximum = 315576000)]
        #[serde(deserialize_with = "whole::u64")]
        seconds: u64,
        /// No slot after this instant (RFC 3339); the job completes after its last run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(schema_with = until_schema)]
        until: Option<Value>,
        /// At most this many slots from activation (missed ones count); the job completes after the last.
        #[serde(
            default,
            rename = "maxRuns",
            skip_serializing_if = "Option::is_none",
            deserialize_with = "whole::option_u64"
        )]
        #[schema(minimum = 1, maximum = 100000)]
        max_runs: Option<u64>,
    },
    /// Whenever the cron pattern matches the wall clock of `timezone`.
    Cron {
        /// 5 fields (minute hour day-of-month month day-of-week), 6 with a leading seconds field, or a nickname
        /// (`@yearly @annually @monthly @weekly @daily @midnight @hourly`); names, ranges, steps, `L`, `W`, `#`.
        #[schema(format = "cron", min_length = 1)]
        expression: String,
        /// An IANA zone name (`America/New_York`), `UTC` by default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(schema_with = timezone_schema)]
        timezone: Option<String>,
        /// No slot after this instant (RFC 3339); the job completes after its last run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(schema_with = until_schema)]
        until: Option<Value>,
        /// At most this many slots from activation (missed ones count); the job completes after the last.
        #[serde(
            default,
            rename = "maxRuns",
            skip_serializing_if = "Option::is_none",
            deserialize_with = "whole::option_u64"
        )]
        #[schema(minimum = 1, maximum = 100000)]
        max_runs: Option<u64>,
    },
}

/// Retries after a failed first attempt.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retry {
    /// How many retries follow a failed first attempt (`3` → at most 4 executions).
    #[schema(minimum = 0, maximum = 100)]
    #[serde(deserialize_with = "whole::u32")]
    pub max_attempts: u32,
    /// The fixed wait between attempts; exponential (5 s, 10 s … capped at 10 min) without it.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "whole::option_u64")]
    #[schema(minimum = 0, maximum = 86400)]
    pub backoff_seconds: Option<u64>,
}

/// What happens to overlapping runs, missed slots and repeated failures of a recurring job.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// A slot due while the previous run still runs: `skip` (recorded as skipped), `queue_one` or `allow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<Overlap>,
    /// Slots missed while no node ran: `run_once`, `skip` or `run_all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misfire: Option<Misfire>,
    /// `run_once` catches up only if the newest missed slot is younger than this.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "whole::option_u64")]
    #[schema(minimum = 0, maximum = 315576000)]
    pub misfire_grace_seconds: Option<u64>,
    /// Deactivate the job with status `failed` after this many failures in a row (off when absent).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "whole::option_u32")]
    #[schema(minimum = 1, maximum = 10000)]
    pub max_consecutive_failures: Option<u32>,
}

/// Overlapping runs.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Skip the slot.
    Skip,
    /// Keep one slot waiting.
    QueueOne,
    /// Run both.
    Allow,
}

/// Missed slots.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    /// One catch-up run.
    RunOnce,
    /// None.
    Skip,
    /// Each of them (bounded).
    RunAll,
}

/// How a version's code is read.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CodeKind {
    /// The source of one function.
    Function,
    /// A whole job file (an ES module or lua-cli's compiled CommonJS).
    Module,
}

/// One fire instant in UTC and in the schedule's zone.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Run {
    /// The instant in UTC (`2026-12-09T14:00:00.000Z`).
    #[schema(format = DateTime)]
    pub utc: String,
    /// The same instant as a wall time with its offset in the schedule's zone (`2026-12-09T09:00:00-05:00`).
    #[schema(format = DateTime)]
    pub local: String,
}

/// An instant: an RFC 3339 string, or whole Unix epoch milliseconds within the range the server keeps.
fn instant_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(sundial_core::schedule::MIN_EXECUTE_AT_MILLIS))
                .maximum(Some(sundial_core::schedule::MAX_EXECUTE_AT_MILLIS)),
        )
        .description(Some("An RFC 3339 instant, or Unix epoch milliseconds"))
        .into()
}

/// The end of a recurring schedule: an RFC 3339 instant after its first run (`format: end-instant`, which JSON Schema
/// cannot check: an end before the first run is refused), or null for none.
fn until_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .format(Some(SchemaFormat::Custom("end-instant".into())))
        .min_length(Some(20))
        .description(Some("An RFC 3339 instant after the schedule's first run"))
        .into()
}

/// Every IANA zone name the server knows, or null for UTC.
fn timezone_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    let mut names: Vec<Value> =
        chrono_tz::TZ_VARIANTS.iter().map(|zone| Value::String(zone.name().to_owned())).collect();
    names.push(Value::Null);
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some(names))
        .description(Some("An IANA zone name (`America/New_York`), `UTC` by default"))
        .into()
}

// --- jobs ---

/// A new job (`POST /v1/agents/{agentId}/jobs`).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateJob {
    /// A name for people (not only whitespace).
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    /// When it runs.
    pub schedule: Schedule,
    /// The source of one JavaScript function (an arrow function, a `function` expression or a method), called as
    /// `execute(job)`; comments around it are fine. It must be self-contained: a name it neither declares nor finds
    /// among the sandbox's globals is refused with `unresolved_reference` (pass values in `metadata`). With `kind:
    /// module`, a whole job file instead.
    #[schema(format = "javascript-function", min_length = 1)]
    pub code: String,
    /// `function` (default) or `module`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<CodeKind>,
    /// Seconds a run may take (default 60; at most the server's maximum, 600 by default).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "whole::option_u32")]
    #[schema(minimum = 1, maximum = 600)]
    pub timeout: Option<u32>,
    /// Retries after a failed first attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// Data the job's code reads as `job.metadata`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Object>,
    /// Start scheduling at once (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activate: Option<bool>,
    /// Overlap, misfire and failure policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// The first version's semver string (default `1.0.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[0-9]{1,19}\.[0-9]{1,19}\.[0-9]{1,19}$", max_length = 64)]
    pub version: Option<String>,
    /// A dynamic job belongs to a user's conversation; a job created for a user (`X-User-Id` or a user token) is
    /// always dynamic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic: Option<bool>,
    /// Makes creation idempotent within one agent and user: a second create with the same key answers the job the
    /// first made (200), with a new version when the schedule, code or options differ — never a second job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")]
    pub dedup_key: Option<String>,
    /// What the job's code may reach: `agent` (the whole agent) or `user` (the job's user only, and the agent's
    /// Data and Products within the credential's scopes). Left out: the credential's own — the agent's for an agent
    /// key, the user's for a user token. `user` needs a job made for a user; a user token cannot ask for `agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = "job-authority", pattern = "^(agent|user)$")]
    pub authority: Option<String>,
}

/// Many new jobs, written in one transaction (`POST /v1/agents/{agentId}/jobs/batch`).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CreateJobs {
    /// The jobs, at most 10,000.
    #[schema(max_items = 10000)]
    pub jobs: Vec<CreateJob>,
}

/// A change of a job (`PATCH`): fields left out stay; a change of code or options makes a new version.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateJob {
    /// A new name (not only whitespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: Option<String>,
    /// A new description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    /// A new policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// A new authority (see `CreateJob.authority`): an agent key may set either; a user token may only narrow it.
    /// Any change by a user token narrows the job to that user's authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = "job-authority", pattern = "^(agent|user)$")]
    pub authority: Option<String>,
    /// The new version's fields.
    #[serde(flatten)]
    pub version: NewVersionFields,
}

/// The fields of a new version; the ones left out are copied from the active version.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewVersionFields {
    /// The semver string (default: the latest with its patch number increased).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[0-9]{1,19}\.[0-9]{1,19}\.[0-9]{1,19}$", max_length = 64)]
    pub version: Option<String>,
    /// The schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// The code (see `CreateJob.code`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = "javascript-function", min_length = 1)]
    pub code: Option<String>,
    /// How the code is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<CodeKind>,
    /// Seconds a run may take.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "whole::option_u32")]
    #[schema(minimum = 1, maximum = 600)]
    pub timeout: Option<u32>,
    /// Retries (`null` removes them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// The version's own metadata (the job's metadata has its own routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub version_metadata: Option<Object>,
}

/// A new version of a job (`POST …/versions`).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddVersion {
    /// The version's fields.
    #[serde(flatten)]
    pub version: NewVersionFields,
    /// Make it the active version at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<bool>,
}

/// Runs a job now (`POST …/trigger`).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// The version to run (an id or a semver string); the active version by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

/// A schedule to preview (`POST /v1/agents/{agentId}/preview`).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct PreviewRequest {
    /// The schedule.
    pub schedule: Schedule,
    /// How many runs to list (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "whole::option_u32")]
    #[schema(minimum = 1, maximum = 100)]
    pub n: Option<u32>,
}

/// Pre-defined job files to deploy (`POST /v1/agents/{agentId}/deploy`).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Deploy {
    /// The job files.
    pub files: Vec<JobFile>,
    /// Publish what changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activate: Option<bool>,
}

/// One job file: an ES module whose default export defines a job, or lua-cli's compiled CommonJS.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct JobFile {
    /// Its path, for messages.
    pub path: String,
    /// Its source: an ES module whose default export is `{name, schedule, execute, description?, timeout?, retry?,
    /// metadata?}`.
    #[schema(format = "job-file", min_length = 1)]
    pub source: String,
}

/// A job.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// `job_…`.
    pub id: String,
    /// The agent.
    pub agent_id: String,
    /// The name.
    pub name: String,
    /// The description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether it belongs to a user's conversation.
    pub dynamic: bool,
    /// The user of a dynamic job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Always false.
    pub public: bool,
    /// Whether its schedule fires.
    pub active: bool,
    /// `active`, `paused`, `failed`, `inactive` or `completed`.
    pub status: JobStatus,
    /// Its metadata.
    #[schema(value_type = Object)]
    pub metadata: Object,
    /// The active version's schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// The schedule in words, with its zone: "every weekday at 09:00 (America/New_York)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_description: Option<String>,
    /// The zone the schedule is read in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The next 3 fire instants (empty when the job will not fire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_runs: Option<Vec<Run>>,
    /// The active version's timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
    /// The active version's retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// The active version's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_version_id: Option<String>,
    /// The active version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_version: Option<JobVersion>,
    /// Every version, oldest first.
    pub versions: Vec<JobVersion>,
    /// When it last ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub last_run_at: Option<String>,
    /// When it fires next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub next_run_at: Option<String>,
    /// Its newest execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_execution: Option<Execution>,
    /// Its policy, defaults filled in.
    pub policy: Policy,
    /// What its code may reach.
    pub authority: JobAuthority,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Slots that did not run (downtime, misfire policy).
    pub missed_slots: u64,
    /// Creation time.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Last change.
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// What a job's code may reach: the authority of the credential that made it, only ever narrowed by later changes.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum JobAuthority {
    /// The whole agent: every user, its `env`, Data, Products and every job (made with the admin or an agent key).
    Agent,
    /// The job's user only: their record, conversation and jobs; the agent's Data and Products within `scopes`;
    /// of the agent's `env`, the variables its `userJobEnv` setting lists.
    User {
        /// The user.
        #[serde(rename = "userId")]
        user_id: String,
        /// What it reaches of the agent beyond its user.
        scopes: Vec<Scope>,
    },
}

/// A job's status.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Its slots fire.
    Active,
    /// Held.
    Paused,
    /// Retries exhausted, or auto-paused.
    Failed,
    /// Deactivated.
    Inactive,
    /// A once job that ran.
    Completed,
}

/// An immutable version of a job's code, schedule and options.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobVersion {
    /// `ver_…`.
    pub id: String,
    /// The job.
    pub job_id: String,
    /// The job's name.
    pub name: String,
    /// The semver string.
    pub version: String,
    /// Its description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether it is the active version.
    pub active: bool,
    /// Its schedule.
    pub schedule: Schedule,
    /// Its timeout in seconds.
    pub timeout: u32,
    /// How its code is read.
    pub kind: CodeKind,
    /// Its retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// Its own metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Object>,
    /// Creation time.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The same as `createdAt` (versions never change).
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// One attempt to run an occurrence or a manual trigger.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    /// `exe_…`.
    pub id: String,
    /// The same as `id`.
    pub execution_id: String,
    /// The job.
    pub job_id: String,
    /// The version that ran.
    pub version_id: String,
    /// The occurrence (slot or trigger) it is an attempt of; retries share it.
    pub occurrence_id: String,
    /// Its status.
    pub status: ExecutionStatus,
    /// `schedule`, `manual` or `retry`.
    pub trigger: ExecutionTrigger,
    /// The slot it runs for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub scheduled_for: Option<String>,
    /// When it is due.
    #[schema(format = DateTime)]
    pub due_at: String,
    /// When it started (null while pending).
    #[schema(required, format = DateTime)]
    pub started_at: Option<String>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub completed_at: Option<String>,
    /// How long it ran, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    /// What the job's function returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub result: Option<Value>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// 0 for the first attempt.
    pub retry_count: u32,
    /// When it was recorded.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Captured console lines (on one execution, or with `logs=true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<Vec<LogLine>>,
}

/// An execution's status.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionStatus {
    /// Waiting for its instant or a worker.
    Pending,
    /// Running.
    Running,
    /// Returned.
    Completed,
    /// Threw or rejected.
    Failed,
    /// Ran past its timeout.
    Timeout,
    /// Cancelled before it ran.
    Cancelled,
    /// Its node died while it ran.
    Abandoned,
    /// Hit the memory cap.
    Killed,
    /// A slot the overlap policy did not run.
    Skipped,
}

/// What made an execution.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionTrigger {
    /// A scheduled slot.
    Schedule,
    /// A manual trigger.
    Manual,
    /// A retry of a failed attempt.
    Retry,
}

/// One console line of a run.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// `log`, `info`, `warn`, `error` or `debug`.
    pub level: String,
    /// The text.
    pub message: String,
    /// Unix milliseconds.
    pub at: i64,
}

/// A page of jobs.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobList {
    /// The jobs, by id.
    pub jobs: Vec<Job>,
    /// Pass as `cursor` for the next page; null on the last.
    #[schema(required)]
    pub next_cursor: Option<String>,
}

/// Jobs created in one batch: full views, or `{id, nextRunAt}` with `view=ids`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct JobBatch {
    /// The jobs, in the order of the request.
    #[schema(value_type = Vec<Object>)]
    pub jobs: Vec<Value>,
}

/// What a delete did: a dynamic job is deleted; a pre-defined job with versions is deactivated instead.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Deletion {
    /// The job is gone.
    pub deleted: bool,
    /// The job was deactivated instead.
    pub deactivated: bool,
    /// In words.
    pub message: String,
}

/// A job's metadata after a change.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetadataAnswer {
    /// `metadata updated`.
    pub message: String,
    /// The job.
    pub job_id: String,
    /// Its metadata now.
    #[schema(value_type = Object)]
    pub metadata: Object,
}

/// A job's versions.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct VersionList {
    /// Oldest first.
    pub versions: Vec<JobVersion>,
}

/// A page of a job's executions.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ExecutionPage {
    /// Newest first.
    pub executions: Vec<Execution>,
    /// How many there are.
    pub total: u64,
    /// The page size.
    pub limit: u64,
    /// The offset.
    pub offset: u64,
}

/// A page of the agent's executions.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionList {
    /// Newest first.
    pub executions: Vec<Execution>,
    /// Pass as `cursor` for the next page; null on the last.
    #[schema(required)]
    pub next_cursor: Option<String>,
}

/// What a schedule does: its description, next runs and daylight saving notes.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchedulePreview {
    /// The job, for a job's preview.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The schedule.
    pub schedule: Schedule,
    /// In words, with its zone.
    pub schedule_description: String,
    /// The zone it is read in.
    pub timezone: String,
    /// The next runs.
    pub next_runs: Vec<Run>,
    /// The same as `nextRuns` (an earlier name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fires: Option<Vec<Run>>,
    /// What daylight saving time does to the runs listed (at least the next 10).
    pub dst_notes: Vec<String>,
}

/// Jobs deployed from files.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Deployed {
    /// One entry per file.
    pub jobs: Vec<DeployedJob>,
}

/// What a deploy did with one job file.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployedJob {
    /// The file, as sent.
    pub path: String,
    /// The job's name, from the file's definition.
    pub name: String,
    /// The job.
    pub job_id: String,
    /// `created` (a new job), `updated` (a new version) or `unchanged`.
    pub action: DeployAction,
    /// The version the file is now.
    pub version: String,
    /// Whether the job is active after the deploy.
    pub active: bool,
}

/// What a deploy did with a job file.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeployAction {
    Created,
    Updated,
    Unchanged,
}

// --- agents, keys, users ---

/// The credential of a request.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhoAmI {
    /// `admin` (manages agents, acts as any agent), `agent` (an agent key) or `user` (a user token).
    pub kind: KeyKind,
    /// The key's id.
    pub key_id: String,
    /// The agent it acts for (`null` for the admin key, which acts for any).
    #[schema(required)]
    pub agent_id: Option<String>,
    /// The user it acts as: a user token's own, or an agent key's `X-User-Id`.
    #[schema(required)]
    pub user_id: Option<String>,
    /// What it may reach.
    pub scopes: Vec<Scope>,
    /// When it stops working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

/// What kind of credential a key is.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    Admin,
    Agent,
    User,
}

/// A new agent (admin key).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateAgent {
    /// Letters, digits, `-`, `_` and `.`.
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub agent_id: String,
}

/// A created agent and its first key (shown once).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct AgentCreated {
    /// The agent.
    pub agent: AgentRef,
    /// Its first key.
    pub key: KeySecret,
}

/// An agent's id.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct AgentRef {
    /// The id.
    pub id: String,
}

/// A key's id and secret (shown once).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct KeySecret {
    /// `key_…`.
    pub id: String,
    /// The secret to send as `Authorization: Bearer <key>`.
    pub key: String,
}

/// The agents.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct AgentList {
    /// By id.
    pub agents: Vec<AgentSummary>,
}

/// An agent.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentSummary {
    /// The id.
    pub id: String,
    /// Creation time.
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// A new agent key (shown once).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentKey {
    /// `key_…`.
    pub id: String,
    /// The secret.
    pub key: String,
    /// The agent.
    pub agent_id: String,
}

/// A revoked key.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Revoked {
    /// Always true.
    pub revoked: bool,
    /// The key.
    pub id: String,
}

/// The agent's variables, read by `env(key)` in jobs: names to string values.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Env {
    /// The variables.
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub env: Object,
}

/// The agent's settings.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// Messages to users are POSTed here (an http or https URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = "uri", pattern = r"^https?://[^\s/?#@]+")]
    pub webhook_url: Option<String>,
    /// Hosts job code may `fetch` (`api.example.com`, `*.example.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(inline, value_type = Option<Vec<HostName>>)]
    pub fetch_allow_list: Option<Vec<String>>,
    /// The most active jobs made for one user (dynamic jobs); 50 when left out. Beyond it creating or activating one
    /// answers 429 `quota_exceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "whole::option_u64")]
    #[schema(minimum = 1, maximum = 100000)]
    pub max_active_jobs_per_user: Option<u64>,
    /// The shortest spacing, in seconds, of a recurring job made for a user; 60 when left out.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "whole::option_u64")]
    #[schema(minimum = 1, maximum = 86400)]
    pub min_recurring_interval_seconds: Option<u64>,
    /// The `env` variables that jobs acting for a user (made with a user token or through MCP) may read; none when
    /// left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(inline, value_type = Option<Vec<VariableName>>)]
    pub user_job_env: Option<Vec<String>>,
}

/// The name of an agent variable.
#[derive(Serialize, Deserialize, ToSchema)]
#[schema(min_length = 1, max_length = 200)]
pub struct VariableName(pub String);

/// A host name job code may `fetch`: no scheme, path or port separator `/`.
#[derive(Serialize, Deserialize, ToSchema)]
#[schema(pattern = r"^[^/]+$", min_length = 1)]
pub struct HostName(pub String);

/// A request for a user token.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MintToken {
    /// What the token may reach; all when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 1)]
    pub scopes: Option<Vec<Scope>>,
    /// How long the token works; for ever when left out.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "whole::option_u64")]
    #[schema(minimum = 1, maximum = 31622400)]
    pub expires_in_seconds: Option<u64>,
}

/// A part of the API a user token may be limited to.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Jobs, executions and previews.
    Jobs,
    /// Data collections.
    Data,
    /// Products.
    Products,
}

/// A minted user token (shown once).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Token {
    /// `key_…`.
    pub id: String,
    /// The secret.
    pub token: String,
    /// The agent.
    pub agent_id: String,
    /// The user it acts as.
    pub user_id: String,
    /// What it may reach.
    pub scopes: Vec<Scope>,
    /// When it stops working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

/// A user's data record: their fields and `userId`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// The user.
    pub user_id: String,
    /// Their data fields.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub data: Object,
}

/// One message the agent sent to a user.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Its place in the agent's sequence of messages (it grows in the order messages are stored; a user's
    /// conversation is the messages of that user, in this order): pass the last one seen as `after`.
    pub seq: i64,
    /// `msg_…`.
    pub id: String,
    /// The user.
    pub user_id: String,
    /// What was sent.
    pub content: MessageContent,
    /// The job whose run sent it (`null` for a message sent from outside a job).
    #[schema(required)]
    pub job_id: Option<String>,
    /// The execution that sent it.
    #[schema(required)]
    pub execution_id: Option<String>,
    /// That execution's occurrence: the same for every retry of one slot, so an agent runtime can resume the right
    /// thread and tell a retry's message from a new one.
    #[schema(required)]
    pub occurrence_id: Option<String>,
    /// When it was stored.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Its delivery to the agent's webhook, when it has one.
    #[schema(required, value_type = Option<Value>)]
    pub delivery: Option<Value>,
}

/// One message's content: a text, an image or a file (other fields are kept as sent).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum MessageContent {
    /// A text.
    Text {
        /// The text.
        text: String,
    },
    /// An image.
    Image {
        /// The image: a URL or base64 data.
        image: String,
        /// Its media type, e.g. `image/png`.
        #[serde(rename = "mediaType")]
        media_type: String,
    },
    /// A file.
    File {
        /// The file: a URL or base64 data.
        data: String,
        /// Its media type, e.g. `application/pdf`.
        #[serde(rename = "mediaType")]
        media_type: String,
    },
}

/// Messages to append to a user's conversation, as job code's `user.send` does.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SendMessages {
    /// One to a hundred messages, in order.
    #[schema(min_items = 1, max_items = 100)]
    pub messages: Vec<MessageContent>,
}

/// The messages as stored.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct MessagesSent {
    /// In conversation order.
    pub messages: Vec<Message>,
}

/// A page of a user's conversation.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct MessagePage {
    /// Oldest first.
    pub messages: Vec<Message>,
    /// Pass as `after` for what follows.
    pub next: i64,
}

// --- data and products ---

/// A new entry of a data collection.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateEntry {
    /// Its fields.
    #[schema(value_type = Object)]
    pub data: Object,
    /// The text search matches (the data's values by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_text: Option<String>,
}

/// A change of an entry: `set` fields, `unset` names, `searchText`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatchEntry {
    /// Fields to set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub set: Option<Object>,
    /// Fields to remove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unset: Option<Vec<String>>,
    /// The new search text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_text: Option<String>,
}

/// An entry of a data collection.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// Its id.
    pub id: String,
    /// Its fields.
    #[schema(value_type = Object)]
    pub data: Object,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
    /// Its search text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_text: Option<String>,
    /// Its rank in a search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

/// Pagination, in both spellings.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    /// The page, from 1.
    pub page: u64,
    /// The page size.
    pub limit: u64,
    /// How many there are.
    pub total: u64,
    /// How many pages.
    pub total_pages: u64,
    /// `page`.
    pub current_page: u64,
    /// `total`.
    pub total_count: u64,
    /// Whether a next page exists.
    pub has_next_page: bool,
    /// Whether a previous page exists.
    pub has_prev_page: bool,
    /// The next page.
    #[schema(required)]
    pub next_page: Option<u64>,
    /// The previous page.
    #[schema(required)]
    pub prev_page: Option<u64>,
}

/// A page of entries.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct EntryPage {
    /// The entries.
    pub entries: Vec<Entry>,
    /// Where the page is.
    pub pagination: Pagination,
}

/// Search results, best first.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct EntryHits {
    /// The entries with their `score`.
    pub entries: Vec<Entry>,
}

/// The agent's collections.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Collections {
    /// By name.
    pub collections: Vec<Collection>,
}

/// A data collection.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Collection {
    /// Its name.
    pub name: String,
    /// How many entries.
    pub entry_count: u64,
    /// Unix milliseconds.
    pub first_created_at: i64,
    /// Unix milliseconds.
    pub last_updated_at: i64,
}

/// A deleted entry or product.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Deleted {
    /// Always true.
    pub deleted: bool,
    /// Its id.
    pub id: String,
}

/// A new product, or a product's fields: `name` and any other fields.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ProductInput {
    /// Its id (generated when left out): not `search`, without `/` or control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128, pattern = r"^(?!search$)[^/\x00-\x1f\x7f-\x9f]+$")]
    pub id: Option<String>,
    /// Its name (not only whitespace).
    #[schema(min_length = 1, pattern = r"\S")]
    pub name: String,
    /// Its price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// Its other fields.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub fields: Object,
}

/// A product's new fields (`PUT`): `name` and any other fields; its `id` stays.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ProductFields {
    /// Its name (not only whitespace).
    #[schema(min_length = 1, pattern = r"\S")]
    pub name: String,
    /// Its price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// Its other fields.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub fields: Object,
}

/// Fields to merge into a product.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ProductPatch {
    /// A new name (not only whitespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, pattern = r"\S", nullable = false)]
    pub name: Option<String>,
    /// A new price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// Other fields.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub fields: Object,
}

/// A product: its fields and `id`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Product {
    /// Its id.
    pub id: String,
    /// Its fields.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub fields: Object,
}

/// A page of products.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ProductPage {
    /// The products.
    pub products: Vec<Product>,
    /// Where the page is.
    pub pagination: Pagination,
}

/// Products found, best first.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ProductHits {
    /// The products.
    pub products: Vec<Product>,
}

// --- path and query parameters ---

/// Path parameters naming an agent.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path, names("agentId"))]
pub struct AgentPath(
    /// The agent: letters, digits, `-`, `_` and `.`.
    #[param(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub String,
);

/// Path parameters naming an agent and a job.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path, names("agentId", "jobId"))]
pub struct JobPath(
    /// The agent.
    #[param(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub String,
    /// The job (`job_…`).
    pub String,
);

/// Path parameters naming an agent, a job and one of its versions.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path, names("agentId", "jobId", "version"))]
pub struct VersionPath(
    /// The agent.
    #[param(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub String,
    /// The job.
    pub String,
    /// A version's semver string or id.
    pub String,
);

/// Path parameters naming an agent and a user.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path, names("agentId", "userId"))]
pub struct UserPath(
    /// The agent.
    #[param(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub String,
    /// The user: 1 to 200 bytes without control characters.
    #[param(min_length = 1, max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")]
    pub String,
);

/// Path parameters naming an agent and one of its keys.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path, names("agentId", "keyId"))]
pub struct KeyPath(
    /// The agent.
    #[param(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub String,
    /// The key (`key_…`).
    pub String,
);

/// Path parameters naming an agent and an execution.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path, names("agentId", "executionId"))]
pub struct ExecutionPath(
    /// The agent.
    #[param(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub String,
    /// The execution (`exe_…`).
    pub String,
);

/// Path parameters naming an agent and a data collection.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path, names("agentId", "collection"))]
pub struct CollectionPath(
    /// The agent.
    #[param(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub String,
    /// The collection.
    pub String,
);

/// Path parameters naming an agent, a data collection and one of its entries.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path, names("agentId", "collection", "entryId"))]
pub struct EntryPath(
    /// The agent.
    #[param(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub String,
    /// The collection.
    pub String,
    /// The entry.
    pub String,
);

/// Path parameters naming an agent and a product.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path, names("agentId", "productId"))]
pub struct ProductPath(
    /// The agent.
    #[param(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub String,
    /// The product.
    pub String,
);

/// Query parameters of the job list.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct ListJobsQuery {
    /// Include dynamic jobs (those of users' conversations), hidden by default as in lua-cli.
    pub include_dynamic: Option<bool>,
    /// Only jobs with this status.
    pub status: Option<JobStatus>,
    /// The page size (default 100).
    #[param(minimum = 0, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
    /// Only jobs with this name.
    pub name: Option<String>,
}

/// Query parameters of a batch creation.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct BatchQuery {
    /// `ids` answers only `{id, nextRunAt}` for each job.
    pub view: Option<BatchView>,
}

/// How much a batch creation answers.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BatchView {
    /// Only ids and next runs.
    Ids,
    /// Full job views (the default).
    Full,
}

/// Query parameters of a job's executions.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ExecutionsQuery {
    /// The page size (default 50).
    #[param(minimum = 0, maximum = 1000)]
    pub limit: Option<u32>,
    /// How many to skip.
    #[param(minimum = 0, maximum = 1000000000)]
    pub offset: Option<u64>,
    /// Only executions with this status.
    pub status: Option<ExecutionStatus>,
    /// Inline each execution's console lines.
    pub logs: Option<bool>,
}

/// Query parameters of the agent's executions.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct AgentExecutionsQuery {
    /// The page size (default 1000).
    #[param(minimum = 0, maximum = 10000)]
    pub limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// Query parameters of a conversation.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct MessagesQuery {
    /// Only messages after this `seq`.
    #[param(minimum = 0, maximum = 9223372036854775807_u64)]
    pub after: Option<u64>,
    /// The page size (default 100).
    #[param(minimum = 0, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Query parameters of a conversation's stream.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct StreamQuery {
    /// Start after this `seq`.
    #[param(minimum = 0, maximum = 9223372036854775807_u64)]
    pub after: Option<u64>,
}

/// Query parameters of a job's preview.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PreviewQuery {
    /// How many runs to list (default 10).
    #[param(minimum = 0, maximum = 1000)]
    pub n: Option<u32>,
}

/// Query parameters of a page of entries or products.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageQuery {
    /// The page, from 1.
    #[param(minimum = 1, maximum = 1000000000000000_u64)]
    pub page: Option<u64>,
    /// The page size (default 10).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
    /// A JSON filter (lua-cli's query: field equality, `$and`, `$or`, comparisons), URL-encoded.
    #[param(format = "json-filter")]
    pub filter: Option<String>,
}

/// Query parameters of a search.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct SearchQuery {
    /// What to search for.
    #[param(max_length = 4096)]
    pub text: String,
    /// The most results (default 10).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    /// The lowest score a result may have, from 0 to 1.
    #[param(minimum = 0, maximum = 1)]
    pub score_threshold: Option<f64>,
}

/// Query parameters of a product search.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct ProductSearchQuery {
    /// What to search for.
    #[param(max_length = 4096)]
    pub query: String,
    /// The most results (default 5).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    /// The lowest score a result may have, from 0 to 1.
    #[param(minimum = 0, maximum = 1)]
    pub score_threshold: Option<f64>,
}
