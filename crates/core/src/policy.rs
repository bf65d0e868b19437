//! Per-job scheduling policy: overlapping runs, missed slots and auto-pause (SPEC §4).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::FieldError;
use crate::retry::whole_number;

/// What happens to a slot that comes due while the previous run of the job is still running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Record the slot as `skipped` (default).
    #[default]
    Skip,
    /// Keep at most one slot waiting; it runs when the current run ends.
    QueueOne,
    /// Run concurrently.
    Allow,
}

/// What happens to slots missed while no node was running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    /// One catch-up run for all missed slots, if the newest is younger than the grace (default).
    #[default]
    RunOnce,
    /// Run none of them.
    Skip,
    /// Run each of them (bounded by [`MAX_CATCH_UP_RUNS`]).
    RunAll,
}

/// The longest `misfireGraceSeconds`: ten Julian years.
pub const MAX_MISFIRE_GRACE_SECONDS: u64 = 315_576_000;

/// The most catch-up runs `run_all` makes after downtime.
pub const MAX_CATCH_UP_RUNS: u64 = 100;

/// A job's policy (`policy` on the wire).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobPolicy {
    /// Overlapping runs.
    #[serde(default)]
    pub overlap: Overlap,
    /// Missed slots.
    #[serde(default)]
    pub misfire: Misfire,
    /// Missed slots older than this are not caught up by `run_once`.
    #[serde(default = "default_grace")]
    pub misfire_grace_seconds: u64,
    /// Deactivate a recurring job with status `failed` after this many failures in a row (off when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_consecutive_failures: Option<u32>,
}

fn default_grace() -> u64 {
    3600
}

impl Default for JobPolicy {
    fn default() -> Self {
        JobPolicy {
            overlap: Overlap::Skip,
            misfire: Misfire::RunOnce,
            misfire_grace_seconds: default_grace(),
            max_consecutive_failures: None,
        }
    }
}

impl JobPolicy {
    /// The stored form: `{}` for the defaults (most jobs), the full object otherwise. Reading fills in defaults.
    pub fn stored(&self) -> serde_json::Value {
        if *self == JobPolicy::default() {
            serde_json::Value::Object(serde_json::Map::new())
        } else {
            serde_json::to_value(self).unwrap_or_else(|_| serde_json::Value::Object(serde_json::Map::new()))
        }
    }

    /// Validates an untrusted `policy` value; `null` gives the defaults.
    pub fn parse(value: &Value) -> Result<JobPolicy, FieldError> {
        let object = match value {
            Value::Null => return Ok(JobPolicy::default()),
            Value::Object(object) => object,
            _ => return Err(FieldError::new("policy", "must be an object")),
        };
        let mut policy = JobPolicy::default();
        if let Some(value) = object.get("overlap").filter(|value| !value.is_null()) {
            policy.overlap = match value.as_str() {
                Some("skip") => Overlap::Skip,
                Some("queue_one") => Overlap::QueueOne,
                Some("allow") => Overlap::Allow,
                _ => return Err(FieldError::new("policy.overlap", "must be one of skip, queue_one, allow")),
            };
        }
        if let Some(value) = object.get("misfire").filter(|value| !value.is_null()) {
            policy.misfire = match value.as_str() {
                Some("run_once") => Misfire::RunOnce,
                Some("skip") => Misfire::Skip,
                Some("run_all") => Misfire::RunAll,
                _ => return Err(FieldError::new("policy.misfire", "must be one of run_once, skip, run_all")),
            };
        }
        if let Some(value) = object.get("misfireGraceSeconds").filter(|value| !value.is_null()) {
            policy.misfire_grace_seconds = whole_number(value, "policy.misfireGraceSeconds")?;
            if policy.misfire_grace_seconds > MAX_MISFIRE_GRACE_SECONDS {
                return Err(FieldError::new(
                    "policy.misfireGraceSeconds",
                    format!("must be at most {MAX_MISFIRE_GRACE_SECONDS} (ten years)"),
                ));
            }
        }
        if let Some(value) = object.get("maxConsecutiveFailures").filter(|value| !value.is_null()) {
            let count = whole_number(value, "policy.maxConsecutiveFailures")?;
            if count == 0 || count > 10_000 {
                return Err(FieldError::new("policy.maxConsecutiveFailures", "must be between 1 and 10000"));
            }
            policy.max_consecutive_failures = Some(count as u32);
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policies_are_stored_empty_and_read_back_whole() {
        assert_eq!(JobPolicy::default().stored(), serde_json::json!({}));
        let read: JobPolicy = serde_json::from_value(JobPolicy::default().stored())
            .unwrap_or_else(|_| JobPolicy { overlap: Overlap::Allow, ..JobPolicy::default() });
        assert_eq!(read, JobPolicy::default());
        let custom =
            JobPolicy { overlap: Overlap::QueueOne, max_consecutive_failures: Some(3), ..JobPolicy::default() };
        let read: Option<JobPolicy> = serde_json::from_value(custom.stored()).ok();
        assert_eq!(read, Some(custom));
    }
}
