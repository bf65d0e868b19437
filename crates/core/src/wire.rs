//! The wire views of the domain entities (camelCase JSON, field names of lua-cli's DTOs, SPEC §2).
//!
//! The domain structs stay free of wire concerns; these functions are the one place that shapes them for clients,
//! for the HTTP API and for the `job` object that job code sees alike.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use crate::model::{Execution, Job, JobVersion};

/// A JSON number that is a whole number (`39` or `39.0`, as JSON Schema's `integer` reads both).
pub fn whole_number(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|number| number.fract() == 0.0 && *number >= 0.0 && *number < 1e15)
            .map(|number| number as u64)
    })
}

/// An instant as ISO-8601 UTC with milliseconds (`2030-01-01T00:00:00.000Z`), as JavaScript's `Date` prints it.
pub fn instant(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A schedule on the wire: `executeAt` as every other instant, with milliseconds (`…T09:00:00.000Z`), as JavaScript's
/// `toISOString` writes it, even when they are zero.
pub fn schedule_view(schedule: &crate::Schedule) -> Value {
    let mut value = json!(schedule);
    if let (crate::Schedule::Once { execute_at, .. }, Some(object)) = (schedule, value.as_object_mut()) {
        object.insert("executeAt".into(), Value::String(instant(*execute_at)));
    }
    if let (Some(until), Some(object)) = (schedule.bounds().and_then(|bounds| bounds.until), value.as_object_mut()) {
        object.insert("until".into(), Value::String(instant(until)));
    }
    value
}

fn optional_instant(time: Option<DateTime<Utc>>) -> Value {
    time.map(|time| Value::String(instant(time))).unwrap_or(Value::Null)
}

/// Inserts `value` under `key` unless it is null (optional wire fields are omitted, not null).
fn put(object: &mut Map<String, Value>, key: &str, value: Value) {
    if !value.is_null() {
        object.insert(key.to_owned(), value);
    }
}

/// lua-cli's `_luaProfile` of a user: the id, a full name taken from the data's `fullName` or `name`, and no phone
/// numbers or e-mail addresses (Sundial keeps none).
pub fn lua_profile(user_id: &str, data: &Map<String, Value>) -> Value {
    let full_name = data.get("fullName").or(data.get("name")).cloned().unwrap_or(Value::Null);
    json!({"userId": user_id, "fullName": full_name, "mobileNumbers": [], "emailAddresses": []})
}

/// A version as `JobVersion` on the wire. The code is not inlined (it has its own endpoint).
pub fn version_view(version: &JobVersion, active_version_id: Option<&str>) -> Value {
    let mut object = Map::new();
    object.insert("id".into(), json!(version.id));
    object.insert("jobId".into(), json!(version.job_id));
    object.insert("name".into(), json!(version.name));
    object.insert("version".into(), json!(version.version));
    put(&mut object, "description", json!(version.description));
    object.insert("active".into(), json!(active_version_id == Some(version.id.as_str())));
    object.insert("schedule".into(), schedule_view(&version.schedule));
    object.insert("timeout".into(), json!(version.timeout_seconds));
    object.insert("kind".into(), json!(version.kind.as_str()));
    put(&mut object, "retry", json!(version.retry));
    put(&mut object, "metadata", json!(version.metadata));
    object.insert("createdAt".into(), json!(instant(version.created_at)));
    object.insert("updatedAt".into(), json!(instant(version.created_at)));
    Value::Object(object)
}

/// An execution as `JobExecution` on the wire; `with_logs` inlines the captured console lines.
pub fn execution_view(execution: &Execution, with_logs: bool) -> Value {
    let mut object = Map::new();
    object.insert("id".into(), json!(execution.id));
    object.insert("executionId".into(), json!(execution.id));
    object.insert("jobId".into(), json!(execution.job_id));
    object.insert("versionId".into(), json!(execution.version_id));
    object.insert("occurrenceId".into(), json!(execution.occurrence_id));
    object.insert("status".into(), json!(execution.status.as_str()));
    object.insert("trigger".into(), json!(execution.trigger.as_str()));
    put(&mut object, "scheduledFor", optional_instant(execution.scheduled_for));
    object.insert("dueAt".into(), json!(instant(execution.due_at)));
    object.insert("startedAt".into(), optional_instant(execution.started_at));
    put(&mut object, "completedAt", optional_instant(execution.completed_at));
    put(&mut object, "duration", json!(execution.duration_ms));
    if let Some(result) = &execution.result {
        object.insert("result".into(), result.clone());
    }
    put(&mut object, "error", json!(execution.error));
    object.insert("retryCount".into(), json!(execution.retry_count));
    object.insert("createdAt".into(), json!(instant(execution.created_at)));
    if with_logs {
        object.insert("logs".into(), json!(execution.logs));
    }
    Value::Object(object)
}

/// How many upcoming fire instants a job view lists (`nextRuns`).
pub const NEXT_RUNS_IN_VIEW: usize = 3;

/// The next [`NEXT_RUNS_IN_VIEW`] fire instants of an active job, in UTC and in the schedule's zone; empty when the
/// job will not fire.
fn next_runs_view(job: &Job, schedule: &crate::Schedule) -> Value {
    let (Some(next), true) = (job.next_run_at, job.active) else { return Value::Array(Vec::new()) };
    let Ok(compiled) = schedule.compile() else { return Value::Array(Vec::new()) };
    let runs = crate::describe::next_runs(&compiled, next, job.anchor_at, NEXT_RUNS_IN_VIEW);
    crate::describe::runs_view(&runs, compiled.timezone())
}

/// A job as `Job` on the wire, with its versions, its active version and top-level `schedule` (read by `lua jobs view`).
pub fn job_view(job: &Job, versions: &[JobVersion], last_execution: Option<&Execution>) -> Value {
    let active_version_id = job.active_version_id.as_deref();
    let active = versions.iter().find(|version| Some(version.id.as_str()) == active_version_id);
    let mut object = Map::new();
    object.insert("id".into(), json!(job.id));
    object.insert("agentId".into(), json!(job.agent_id));
    object.insert("name".into(), json!(job.name));
    put(&mut object, "description", json!(job.description));
    object.insert("dynamic".into(), json!(job.dynamic));
    put(&mut object, "userId", json!(job.user_id));
    object.insert("public".into(), json!(false));
    object.insert("active".into(), json!(job.active));
    object.insert("status".into(), json!(job.status.as_str()));
    object.insert("metadata".into(), Value::Object(job.metadata.clone()));
    if let Some(active) = active {
        object.insert("schedule".into(), schedule_view(&active.schedule));
        object.insert("scheduleDescription".into(), json!(crate::describe::describe(&active.schedule)));
        object.insert("timezone".into(), json!(active.schedule.timezone_name()));
        object.insert("nextRuns".into(), next_runs_view(job, &active.schedule));
        object.insert("timeout".into(), json!(active.timeout_seconds));
        put(&mut object, "retry", json!(active.retry));
    }
    put(&mut object, "activeVersionId", json!(active_version_id));
    if let Some(active) = active {
        object.insert("activeVersion".into(), version_view(active, active_version_id));
    }
    object.insert(
        "versions".into(),
        Value::Array(versions.iter().map(|version| version_view(version, active_version_id)).collect()),
    );
    put(&mut object, "lastRunAt", optional_instant(job.last_run_at));
    put(&mut object, "nextRunAt", optional_instant(job.next_run_at));
    if let Some(execution) = last_execution {
        object.insert("lastExecution".into(), execution_view(execution, false));
    }
    object.insert("policy".into(), json!(job.policy));
    object.insert("authority".into(), job.authority.view(job.user_id.as_deref()));
    object.insert("consecutiveFailures".into(), json!(job.consecutive_failures));
    object.insert("missedSlots".into(), json!(job.missed_slots));
    object.insert("createdAt".into(), json!(instant(job.created_at)));
    object.insert("updatedAt".into(), json!(instant(job.updated_at)));
    Value::Object(object)
}
