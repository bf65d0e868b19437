//! Retry configuration (`retry: {maxAttempts, backoffSeconds?}`) and the backoff it implies.

use chrono::Duration;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::FieldError;

/// The most retries a job may ask for.
pub const MAX_RETRY_ATTEMPTS: u32 = 100;
/// The longest fixed backoff a job may ask for (one day).
pub const MAX_BACKOFF_SECONDS: u64 = 86_400;
/// The first exponential backoff step.
const EXPONENTIAL_BASE_SECONDS: f64 = 5.0;
/// Exponential backoff never waits longer than this.
const EXPONENTIAL_CAP_SECONDS: f64 = 600.0;

/// How a failed execution is retried. `max_attempts` counts *retries* after the first attempt (SPEC §4):
/// `maxAttempts: 3` allows at most 4 executions of one occurrence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Retries after the first failed attempt.
    pub max_attempts: u32,
    /// Fixed wait between attempts; exponential with jitter when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_seconds: Option<u64>,
}

impl RetryPolicy {
    /// Validates an untrusted `retry` value; `null` means no retries.
    pub fn parse(value: &Value, field: &str) -> Result<Option<RetryPolicy>, FieldError> {
        let object = match value {
            Value::Null => return Ok(None),
            Value::Object(object) => object,
            _ => return Err(FieldError::new(field, "must be an object {maxAttempts, backoffSeconds?}")),
        };
        let max_attempts_field = format!("{field}.maxAttempts");
        let max_attempts = match object.get("maxAttempts") {
            None | Some(Value::Null) => return Err(FieldError::new(max_attempts_field, "is required")),
            Some(value) => whole_number(value, &max_attempts_field)?,
        };
        if max_attempts > u64::from(MAX_RETRY_ATTEMPTS) {
            return Err(FieldError::new(max_attempts_field, format!("must be at most {MAX_RETRY_ATTEMPTS}")));
        }
        let backoff_field = format!("{field}.backoffSeconds");
        let backoff_seconds = match object.get("backoffSeconds") {
            None | Some(Value::Null) => None,
            Some(value) => {
                let seconds = whole_number(value, &backoff_field)?;
                if seconds > MAX_BACKOFF_SECONDS {
                    return Err(FieldError::new(backoff_field, format!("must be at most {MAX_BACKOFF_SECONDS}")));
                }
                Some(seconds)
            }
        };
        Ok(Some(RetryPolicy { max_attempts: max_attempts as u32, backoff_seconds }))
    }

    /// The wait before the retry that follows attempt number `retry_count` (0 = the first attempt failed).
    /// `jitter` in `[0, 1)` spreads exponential waits by ±20 %.
    pub fn delay_after(&self, retry_count: u32, jitter: f64) -> Duration {
        if let Some(seconds) = self.backoff_seconds {
            return Duration::seconds(seconds as i64);
        }
        let exponent = retry_count.min(16) as i32;
        let base = (EXPONENTIAL_BASE_SECONDS * 2f64.powi(exponent)).min(EXPONENTIAL_CAP_SECONDS);
        let spread = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
        Duration::milliseconds((base * spread * 1000.0) as i64)
    }
}

/// Reads a non-negative whole number, accepting `3.0` but not `3.5`, `-1` or `"3"`.
pub(crate) fn whole_number(value: &Value, field: &str) -> Result<u64, FieldError> {
    if let Some(number) = value.as_u64() {
        return Ok(number);
    }
    if let Some(float) = value.as_f64() {
        if float >= 0.0 && float.fract() == 0.0 && float <= u64::MAX as f64 {
            return Ok(float as u64);
        }
        return Err(FieldError::new(field, "must be a non-negative whole number"));
    }
    Err(FieldError::new(field, format!("must be a number, got {}", json_type(value))))
}

/// The JSON type name of a value, for error messages.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fixed_and_exponential_backoff() {
        let fixed = RetryPolicy { max_attempts: 3, backoff_seconds: Some(60) };
        assert_eq!(fixed.delay_after(0, 0.9), Duration::seconds(60));
        let exponential = RetryPolicy { max_attempts: 20, backoff_seconds: None };
        let waits: Vec<i64> = (0..9).map(|n| exponential.delay_after(n, 0.5).num_seconds()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 600, 600]);
        assert_eq!(exponential.delay_after(0, 0.0).num_milliseconds(), 4000);
    }

    #[test]
    fn parse_errors_name_the_field() {
        let error = |value| RetryPolicy::parse(&value, "retry").unwrap_err().to_string();
        assert_eq!(error(json!(3)), "retry: must be an object {maxAttempts, backoffSeconds?}");
        assert_eq!(error(json!({})), "retry.maxAttempts: is required");
        assert_eq!(error(json!({"maxAttempts": "3"})), "retry.maxAttempts: must be a number, got string");
        assert_eq!(error(json!({"maxAttempts": 1.5})), "retry.maxAttempts: must be a non-negative whole number");
        assert_eq!(error(json!({"maxAttempts": 1000})), "retry.maxAttempts: must be at most 100");
        assert_eq!(
            error(json!({"maxAttempts": 1, "backoffSeconds": -1})),
            "retry.backoffSeconds: must be a non-negative whole number"
        );
        assert_eq!(
            RetryPolicy::parse(&json!({"maxAttempts": 2, "backoffSeconds": 1}), "retry").unwrap(),
            Some(RetryPolicy { max_attempts: 2, backoff_seconds: Some(1) })
        );
    }
}
