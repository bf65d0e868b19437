//! The domain entities (job, version, execution) and the one canonical execution state machine.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::policy::JobPolicy;
use crate::retry::RetryPolicy;
use crate::schedule::{Schedule, ScheduleError};

/// A JSON object, as stored for metadata and user data.
pub type JsonObject = Map<String, Value>;

/// A request field that failed validation: `field` is the JSON path, `reason` says why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// The JSON path of the field, e.g. `timeout` or `retry.maxAttempts`.
    pub field: String,
    /// Why the value was refused, lowercase and without a trailing full stop.
    pub reason: String,
    /// A stable error code more precise than the one its field implies (e.g. `unresolved_reference`).
    pub code: Option<&'static str>,
}

impl FieldError {
    /// Builds an error for `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldError { field: field.into(), reason: reason.into(), code: None }
    }

    /// The same error with its own stable code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
}

impl From<ScheduleError> for FieldError {
    fn from(error: ScheduleError) -> Self {
        FieldError { field: error.field, reason: error.reason, code: None }
    }
}

/// The status of a job as a whole (lua-cli's vocabulary plus `completed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Scheduled: its slots fire.
    Active,
    /// Reserved for a temporary hold; treated like `Inactive` by the scheduler.
    Paused,
    /// A once job whose retries were exhausted, or a recurring job auto-paused after consecutive failures.
    Failed,
    /// Deactivated by a user or by its own code.
    Inactive,
    /// A once job that ran to its final outcome successfully.
    Completed,
}

impl JobStatus {
    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Active => "active",
            JobStatus::Paused => "paused",
            JobStatus::Failed => "failed",
            JobStatus::Inactive => "inactive",
            JobStatus::Completed => "completed",
        }
    }

    /// Parses the wire name.
    pub fn parse(text: &str) -> Option<JobStatus> {
        Some(match text {
            "active" => JobStatus::Active,
            "paused" => JobStatus::Paused,
            "failed" => JobStatus::Failed,
            "inactive" => JobStatus::Inactive,
            "completed" => JobStatus::Completed,
            _ => return None,
        })
    }
}

/// Why an execution exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// A scheduled slot (an occurrence).
    Schedule,
    /// `job.trigger()` / `POST …/trigger`.
    Manual,
    /// A further attempt after a failed execution.
    Retry,
}

impl Trigger {
    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Retry => "retry",
        }
    }

    /// Parses the wire name.
    pub fn parse(text: &str) -> Option<Trigger> {
        Some(match text {
            "schedule" => Trigger::Schedule,
            "manual" => Trigger::Manual,
            "retry" => Trigger::Retry,
            _ => return None,
        })
    }
}

/// The state of one execution. This is the only state enum for executions; every change goes through
/// [`ExecutionStatus::can_move_to`].
///
/// ```text
///            ┌──────────► skipped          (overlap policy did not run the slot)
///            │┌─────────► cancelled        (job deleted before the attempt started)
///  pending ──┼┴─► running ──┬─► completed  (returned a value)
///   ▲        │              ├─► failed     (threw, rejected, sandbox crash)
///   │        │              ├─► timeout    (passed its timeout)
///   │        │              ├─► killed     (memory cap)
///   │        │              └─► abandoned  (its node died / lost the lease)
///   │        │
///   └── retry: a failure with attempts left creates a *new* pending execution (trigger `retry`)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionStatus {
    /// Created, waiting for its due time (a slot, a retry backoff) or for a sandbox.
    Pending,
    /// Running in a sandbox worker.
    Running,
    /// The code returned (any value, even `{success:false}`).
    Completed,
    /// The code threw or rejected, or its worker crashed.
    Failed,
    /// The code passed its timeout and was stopped.
    Timeout,
    /// Deleted or deactivated before it started.
    Cancelled,
    /// The node running it died; detected on restart or by lease expiry.
    Abandoned,
    /// The code passed the memory cap and was stopped.
    Killed,
    /// A scheduled slot that the overlap policy did not run.
    Skipped,
}

impl ExecutionStatus {
    /// Every status, for metrics and documentation.
    pub const ALL: [ExecutionStatus; 9] = [
        ExecutionStatus::Pending,
        ExecutionStatus::Running,
        ExecutionStatus::Completed,
        ExecutionStatus::Failed,
        ExecutionStatus::Timeout,
        ExecutionStatus::Cancelled,
        ExecutionStatus::Abandoned,
        ExecutionStatus::Killed,
        ExecutionStatus::Skipped,
    ];

    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Pending => "pending",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Completed => "completed",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Timeout => "timeout",
            ExecutionStatus::Cancelled => "cancelled",
            ExecutionStatus::Abandoned => "abandoned",
            ExecutionStatus::Killed => "killed",
            ExecutionStatus::Skipped => "skipped",
        }
    }

    /// Parses the wire name.
    pub fn parse(text: &str) -> Option<ExecutionStatus> {
        ExecutionStatus::ALL.into_iter().find(|status| status.as_str() == text)
    }

    /// Whether nothing moves the execution any more.
    pub fn is_final(self) -> bool {
        !matches!(self, ExecutionStatus::Pending | ExecutionStatus::Running)
    }

    /// Whether the outcome counts as a failure for retries and auto-pause.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            ExecutionStatus::Failed | ExecutionStatus::Timeout | ExecutionStatus::Killed | ExecutionStatus::Abandoned
        )
    }

    /// The state machine drawn above.
    pub fn can_move_to(self, next: ExecutionStatus) -> bool {
        use ExecutionStatus::*;
        match self {
            Pending => matches!(next, Running | Skipped | Cancelled),
            Running => matches!(next, Completed | Failed | Timeout | Killed | Abandoned),
            _ => false,
        }
    }
}

/// A job: a named unit of scheduled work. The schedule, code and options live in its versions.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    /// `job_…`
    pub id: String,
    /// The owning agent.
    pub agent_id: String,
    /// The job's name (not unique).
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Created at run time by a tool (true) or deployed with the agent (false).
    pub dynamic: bool,
    /// The user whose conversation created a dynamic job.
    pub user_id: Option<String>,
    /// What its code may reach: the authority of the credential that made it (only ever narrowed by later changes).
    pub authority: crate::Authority,
    /// Whether its schedule fires.
    pub active: bool,
    /// The job's status.
    pub status: JobStatus,
    /// Data given to every run; runs may update it.
    pub metadata: JsonObject,
    /// Overlap, misfire and auto-pause policy.
    pub policy: JobPolicy,
    /// The version the schedule runs.
    pub active_version_id: Option<String>,
    /// The instant the fixed interval grid is anchored at (the last activation).
    pub anchor_at: DateTime<Utc>,
    /// The next slot not yet recorded as an occurrence.
    pub next_run_at: Option<DateTime<Utc>>,
    /// When an execution of this job last started.
    pub last_run_at: Option<DateTime<Utc>>,
    /// Failures in a row of scheduled runs (reset by a success).
    pub consecutive_failures: u32,
    /// Slots that did not run (misfire policy, overlap skips are counted as executions instead).
    pub missed_slots: u64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// What a version's code is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodeKind {
    /// The source of one function, called as `execute(job)` (dynamic jobs).
    #[default]
    Function,
    /// A whole job file (an ES module or lua-cli's compiled CommonJS artifact) whose default export defines the
    /// job; its `execute` may use the module's scope (pre-defined jobs).
    Module,
}

impl CodeKind {
    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            CodeKind::Function => "function",
            CodeKind::Module => "module",
        }
    }

    /// Parses the wire name.
    pub fn parse(text: &str) -> Option<CodeKind> {
        match text {
            "function" => Some(CodeKind::Function),
            "module" => Some(CodeKind::Module),
            _ => None,
        }
    }
}

/// An immutable snapshot of code, schedule and options.
#[derive(Clone, Debug, PartialEq)]
pub struct JobVersion {
    /// `ver_…`
    pub id: String,
    /// The job it belongs to.
    pub job_id: String,
    /// The job's name when the version was made.
    pub name: String,
    /// Semver string; the first is `1.0.0`.
    pub version: String,
    /// Free text.
    pub description: Option<String>,
    /// JavaScript source of the `execute` function (or of a module for pre-defined jobs).
    pub code: String,
    /// Whether `code` is a function or a whole job module.
    pub kind: CodeKind,
    /// When the version runs.
    pub schedule: Schedule,
    /// Seconds before the run is stopped.
    pub timeout_seconds: u32,
    /// Retries after a failed first attempt.
    pub retry: Option<RetryPolicy>,
    /// Default metadata of the version.
    pub metadata: Option<JsonObject>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// One attempt to run an occurrence or a manual trigger.
#[derive(Clone, Debug, PartialEq)]
pub struct Execution {
    /// `exe_…`
    pub id: String,
    /// The owning agent.
    pub agent_id: String,
    /// The job.
    pub job_id: String,
    /// The version that runs.
    pub version_id: String,
    /// The occurrence (slot) it runs, or for manual triggers an id of its own; shared by retries.
    pub occurrence_id: String,
    /// Its state.
    pub status: ExecutionStatus,
    /// Why it exists.
    pub trigger: Trigger,
    /// The slot it runs (scheduled executions and their retries).
    pub scheduled_for: Option<DateTime<Utc>>,
    /// When it may start (the slot, or the end of the retry backoff).
    pub due_at: DateTime<Utc>,
    /// When it started running (or was recorded, for skipped and cancelled executions).
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a final state.
    pub completed_at: Option<DateTime<Utc>>,
    /// Run time in milliseconds.
    pub duration_ms: Option<i64>,
    /// What the code returned.
    pub result: Option<Value>,
    /// The error text of a failure.
    pub error: Option<String>,
    /// 0 for the first attempt.
    pub retry_count: u32,
    /// Captured console lines.
    pub logs: Vec<LogLine>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A captured console line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// `log`, `info`, `warn`, `error` or `debug`.
    pub level: String,
    /// The formatted text.
    pub message: String,
    /// Unix milliseconds.
    pub at: i64,
}

/// What happens after an execution reached a final state: the single place that decides retries, once-job
/// completion and auto-pause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfterOutcome {
    /// Start a retry at this instant (same occurrence, `retry_count + 1`).
    pub retry_at: Option<DateTime<Utc>>,
    /// Change of the job as a whole.
    pub job: JobEffect,
}

/// The effect of an outcome on its job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobEffect {
    /// Nothing changes.
    None,
    /// Reset the consecutive failure count.
    ResetFailures,
    /// Count one more consecutive failure.
    CountFailure,
    /// Count one more failure and deactivate with status `failed` (auto-pause).
    AutoPause,
    /// A once job is done: inactive with status `completed`.
    CompleteOnce,
    /// A once job failed for good: inactive with status `failed`.
    FailOnce,
}

/// Decides what follows a final execution status.
///
/// `once` tells whether the job's schedule is a one-time schedule; `consecutive_failures` is the job's count before
/// this outcome; `jitter` is a number in `[0, 1)` used for exponential backoff.
#[allow(clippy::too_many_arguments)] // each argument is one independent fact the decision needs
pub fn after_outcome(
    status: ExecutionStatus,
    execution: &Execution,
    retry: Option<&RetryPolicy>,
    once: bool,
    policy: &JobPolicy,
    consecutive_failures: u32,
    now: DateTime<Utc>,
    jitter: f64,
) -> AfterOutcome {
    if matches!(status, ExecutionStatus::Skipped | ExecutionStatus::Cancelled) {
        return AfterOutcome { retry_at: None, job: JobEffect::None };
    }
    let scheduled = execution.trigger != Trigger::Manual;
    if !status.is_failure() {
        let job = match (scheduled, once) {
            (true, true) => JobEffect::CompleteOnce,
            (true, false) => JobEffect::ResetFailures,
            (false, _) => JobEffect::None,
        };
        return AfterOutcome { retry_at: None, job };
    }
    if let Some(retry) = retry {
        if execution.retry_count < retry.max_attempts {
            let delay = retry.delay_after(execution.retry_count, jitter);
            return AfterOutcome { retry_at: Some(now + delay), job: JobEffect::None };
        }
    }
    if status == ExecutionStatus::Abandoned && execution.retry_count == 0 {
        // The node running it died: execution is at-least-once, so a first attempt gets one more try at once even
        // without a retry policy. A second death is not retried again (the job itself may be what kills nodes).
        return AfterOutcome { retry_at: Some(now), job: JobEffect::None };
    }
    if !scheduled {
        return AfterOutcome { retry_at: None, job: JobEffect::None };
    }
    let job = if once {
        JobEffect::FailOnce
    } else if policy.max_consecutive_failures.is_some_and(|max| consecutive_failures + 1 >= max) {
        JobEffect::AutoPause
    } else {
        JobEffect::CountFailure
    };
    AfterOutcome { retry_at: None, job }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(retry_count: u32) -> Execution {
        let at = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        Execution {
            id: "exe_1".into(),
            agent_id: "agt_1".into(),
            job_id: "job_1".into(),
            version_id: "ver_1".into(),
            occurrence_id: "occ_1".into(),
            status: ExecutionStatus::Running,
            trigger: if retry_count == 0 { Trigger::Schedule } else { Trigger::Retry },
            scheduled_for: Some(at),
            due_at: at,
            started_at: Some(at),
            completed_at: None,
            duration_ms: None,
            result: None,
            error: None,
            retry_count,
            logs: Vec::new(),
            created_at: at,
        }
    }

    fn decide(status: ExecutionStatus, execution: &Execution, retry: Option<&RetryPolicy>) -> AfterOutcome {
        let now = execution.due_at + chrono::Duration::seconds(5);
        after_outcome(status, execution, retry, true, &JobPolicy::default(), 0, now, 0.5)
    }

    #[test]
    fn an_abandoned_first_attempt_is_retried_once_at_once_without_a_policy() {
        let first = attempt(0);
        let now = first.due_at + chrono::Duration::seconds(5);
        let after = decide(ExecutionStatus::Abandoned, &first, None);
        assert_eq!((after.retry_at, after.job), (Some(now), JobEffect::None));
        // Its retry dying as well fails the once job: no endless retries of a job that may kill nodes.
        let after = decide(ExecutionStatus::Abandoned, &attempt(1), None);
        assert_eq!((after.retry_at, after.job), (None, JobEffect::FailOnce));
        // Any other failure without a policy is final.
        let after = decide(ExecutionStatus::Failed, &first, None);
        assert_eq!((after.retry_at, after.job), (None, JobEffect::FailOnce));
    }
}
