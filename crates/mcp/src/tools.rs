//! The tools, written for a model to read: what each does, its arguments as JSON Schema, the shape of its result
//! (`outputSchema`), and hints (read-only, destructive, idempotent). Each tool is a few calls of Sundial's `/v1` API
//! made with the caller's credential, so the API's checks (who may see what, guardrails, validation) hold for every
//! tool, over either transport.

use chrono::{Duration, Utc};
use serde_json::{json, Map, Value};

use crate::when;
use crate::{Backend, Credentials};

/// The code of a reminder job: it sends its text to the user who asked for it.
const REMINDER_CODE: &str = "async (job) => {\n  const user = await job.user();\n  await user.send([{ type: 'text', \
                             text: job.metadata.reminder }]);\n  return { sent: job.metadata.reminder };\n}";

/// A tool's failure: said to the model in one line, with the API's error code when there is one.
#[derive(Debug)]
pub struct ToolError {
    pub code: String,
    pub message: String,
}

impl ToolError {
    fn invalid(message: impl Into<String>) -> ToolError {
        ToolError { code: "invalid_arguments".into(), message: message.into() }
    }
}

/// What a tool answers: its structured result and a one-line summary.
pub struct ToolAnswer {
    pub structured: Value,
    pub summary: String,
}

type ToolResult = Result<ToolAnswer, ToolError>;

/// Every tool's definition, as `tools/list` answers them (built once).
pub fn definitions() -> &'static [Value] {
    static DEFINITIONS: std::sync::OnceLock<Vec<Value>> = std::sync::OnceLock::new();
    DEFINITIONS.get_or_init(build_definitions)
}

/// The definition of tool `name`.
pub fn definition(name: &str) -> Option<&'static Value> {
    definitions().iter().find(|tool| tool["name"] == name)
}

fn build_definitions() -> Vec<Value> {
    let job_id = json!({"type": "string", "description": "The job's id (job_…), as schedule_reminder, schedule_job or list_jobs answered it."});
    let job_id_input = json!({"type": "object", "properties": {"jobId": job_id}, "required": ["jobId"], "additionalProperties": false});
    let when_properties = json!({
        "at": {"type": "string", "description": "When, once: the user's wall-clock time such as 2026-12-24T09:00 (then `timezone` is required), or an instant with an offset such as 2026-12-24T14:00:00Z. Do not convert time zones yourself: pass the user's local time and zone."},
        "in": {"type": "string", "description": "When, once, as a delay from now: 90s, 15m, 2h30m, 1d, 1w."},
        "cron": {"type": "string", "description": "Recurring, on a cron pattern read on the wall clock of `timezone` (required with cron): \"0 9 * * 1-5\" is 09:00 on weekdays. Minute hour day-of-month month day-of-week."},
        "everySeconds": {"type": "integer", "minimum": 1, "description": "Recurring, every N seconds from now (jobs made for a user: at least 60 by default)."},
        "timezone": {"type": "string", "description": "The user's IANA time zone, such as America/New_York or Europe/Paris: how `at`, `cron` and `until` wall-clock times are read."},
        "until": {"type": "string", "description": "Recurring only: no run after this time (wall-clock time in `timezone`, or an instant with an offset). The job completes after its last run."},
        "maxRuns": {"type": "integer", "minimum": 1, "maximum": 100000, "description": "Recurring only: at most this many runs; the job completes after the last."}
    });
    let mut reminder_properties = when_properties.as_object().cloned().unwrap_or_default();
    reminder_properties.insert(
        "text".into(),
        json!({"type": "string", "minLength": 1, "maxLength": 4000, "description": "What to tell the user, as it should appear in their conversation."}),
    );
    reminder_properties.insert(
        "name".into(),
        json!({"type": "string", "minLength": 1, "maxLength": 200, "description": "A short name for the reminder (default: reminder)."}),
    );
    reminder_properties.insert(
        "dedupKey".into(),
        json!({"type": "string", "minLength": 1, "maxLength": 200, "description": "Makes the call idempotent: the same key gives the same job, never a second one. Use one per user request (for example derived from the message id)."}),
    );
    let mut preview_properties = when_properties.as_object().cloned().unwrap_or_default();
    preview_properties.insert("schedule".into(), schedule_schema());
    preview_properties.insert(
        "count".into(),
        json!({"type": "integer", "minimum": 1, "maximum": 50, "description": "How many upcoming runs to list (default 5)."}),
    );
    vec![
        tool(
            "schedule_reminder",
            "Schedule a reminder",
            "Remind the user: at a time, after a delay, or on a recurring schedule, the text is posted to this user's \
             conversation. Give exactly one of `at` (with `timezone` for a wall-clock time), `in`, `cron` (with \
             `timezone`) or `everySeconds`. Pass a `dedupKey` so that calling twice cannot create two reminders. \
             The answer says the schedule back in words with its zone and the next runs: tell the user.",
            json!({"type": "object", "properties": reminder_properties, "required": ["text"], "additionalProperties": false}),
            json!({"type": "object", "properties": {"job": job_schema(), "created": {"type": "boolean", "description": "false when a job with this dedupKey existed already"}}, "required": ["job", "created"]}),
            hints(false, false, false),
        ),
        tool(
            "schedule_job",
            "Schedule a job",
            "Create a job that runs JavaScript on a schedule, for this user (like Jobs.create). `code` is one \
             self-contained async function `async (job) => { … }`: it sees only its argument and the sandbox's \
             globals (User, Data, Products, fetch, env); pass values in `metadata`, read them as job.metadata. \
             `const user = await job.user(); await user.send([{type: 'text', text}])` messages the user. The job \
             acts for this user only: it cannot reach other users, their jobs or the agent's variables.",
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 200, "description": "A short name."},
                    "schedule": schedule_schema(),
                    "code": {"type": "string", "minLength": 1, "description": "async (job) => { … } — self-contained."},
                    "metadata": {"type": "object", "description": "Values the code reads as job.metadata."},
                    "timeout": {"type": "integer", "minimum": 1, "maximum": 900, "description": "Seconds a run may take (default 30)."},
                    "retry": {"type": "object", "properties": {"maxAttempts": {"type": "integer", "minimum": 0, "maximum": 100}, "backoffSeconds": {"type": "integer", "minimum": 0}}, "required": ["maxAttempts"], "description": "Retries after a failed run."},
                    "dedupKey": {"type": "string", "minLength": 1, "maxLength": 200, "description": "The same key gives the same job, never a second one."}
                },
                "required": ["name", "schedule", "code"],
                "additionalProperties": false
            }),
            json!({"type": "object", "properties": {"job": job_schema(), "created": {"type": "boolean"}}, "required": ["job", "created"]}),
            hints(false, false, false),
        ),
        tool(
            "preview_schedule",
            "Preview a schedule",
            "Say a schedule back in words and list its next runs in UTC and in its zone, with daylight-saving notes, \
             without creating anything. Give `schedule` (as schedule_job takes it) or the same `at`/`in`/`cron`/\
             `everySeconds` arguments as schedule_reminder.",
            json!({"type": "object", "properties": preview_properties, "additionalProperties": false}),
            json!({
                "type": "object",
                "properties": {
                    "scheduleDescription": {"type": "string"},
                    "timezone": {"type": "string"},
                    "nextRuns": runs_schema(),
                    "dstNotes": {"type": "array", "items": {"type": "string"}}
                },
                "required": ["scheduleDescription", "timezone", "nextRuns"]
            }),
            hints(true, false, true),
        ),
        tool(
            "list_jobs",
            "List jobs",
            "The user's jobs (reminders included), newest first, each with its schedule in words and next runs.",
            json!({"type": "object", "properties": {
                "includeInactive": {"type": "boolean", "description": "Also list paused, completed and failed jobs (default false)."},
                "limit": {"type": "integer", "minimum": 1, "maximum": 200, "description": "At most this many (default 50)."}
            }, "additionalProperties": false}),
            json!({"type": "object", "properties": {"jobs": {"type": "array", "items": job_schema()}}, "required": ["jobs"]}),
            hints(true, false, true),
        ),
        tool(
            "get_job",
            "Get a job",
            "One job with its schedule in words, next runs and its last executions: status, time, result or error, and \
             the messages each sent.",
            job_id_input.clone(),
            json!({"type": "object", "properties": {
                "job": job_schema(),
                "executionCount": {"type": "integer", "minimum": 0, "description": "How many executions the job has had (retries included)."},
                "executions": {"type": "array", "items": execution_schema()}
            }, "required": ["job", "executionCount", "executions"]}),
            hints(true, false, true),
        ),
        tool(
            "pause_job",
            "Pause a job",
            "Stop a job's schedule from firing (resume_job starts it again). Pending runs are cancelled.",
            job_id_input.clone(),
            json!({"type": "object", "properties": {"job": job_schema()}, "required": ["job"]}),
            hints(false, false, true),
        ),
        tool(
            "resume_job",
            "Resume a job",
            "Start a paused job's schedule again; the answer lists its next runs.",
            job_id_input.clone(),
            json!({"type": "object", "properties": {"job": job_schema()}, "required": ["job"]}),
            hints(false, false, true),
        ),
        tool(
            "run_job_now",
            "Run a job now",
            "Run a job once now, outside its schedule (also when paused). Answers the execution; get_job shows how it \
             ended.",
            job_id_input.clone(),
            json!({"type": "object", "properties": {"execution": execution_schema()}, "required": ["execution"]}),
            hints(false, false, false),
        ),
        tool(
            "delete_job",
            "Delete a job",
            "Delete a job for good: it never runs again and its history goes with it.",
            job_id_input,
            json!({"type": "object", "properties": {"deleted": {"type": "boolean"}, "deactivated": {"type": "boolean"}, "message": {"type": "string"}}, "required": ["deleted", "deactivated", "message"]}),
            hints(false, true, true),
        ),
    ]
}

fn tool(name: &str, title: &str, description: &str, input: Value, output: Value, annotations: Value) -> Value {
    let mut annotations = annotations;
    annotations["title"] = json!(title);
    json!({"name": name, "title": title, "description": description, "inputSchema": input, "outputSchema": output, "annotations": annotations})
}

fn hints(read_only: bool, destructive: bool, idempotent: bool) -> Value {
    json!({"readOnlyHint": read_only, "destructiveHint": destructive, "idempotentHint": idempotent, "openWorldHint": false})
}

fn schedule_schema() -> Value {
    json!({
        "type": "object",
        "description": "{type: 'once', executeAt} (an instant with an offset), {type: 'interval', seconds}, or {type: 'cron', expression, timezone}; recurring ones may add until (an instant) and maxRuns.",
        "properties": {
            "type": {"type": "string", "enum": ["once", "interval", "cron"]},
            "executeAt": {"type": "string"},
            "seconds": {"type": "integer", "minimum": 1},
            "expression": {"type": "string"},
            "timezone": {"type": "string"},
            "until": {"type": "string"},
            "maxRuns": {"type": "integer", "minimum": 1}
        },
        "required": ["type"]
    })
}

fn runs_schema() -> Value {
    json!({"type": "array", "description": "Upcoming runs: the instant in UTC and the same instant on the schedule's wall clock.", "items": {"type": "object", "properties": {"utc": {"type": "string"}, "local": {"type": "string"}}, "required": ["utc", "local"]}})
}

fn job_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "jobId": {"type": "string"},
            "name": {"type": "string"},
            "status": {"type": "string", "enum": ["active", "paused", "failed", "inactive", "completed"]},
            "active": {"type": "boolean"},
            "userId": {"type": ["string", "null"]},
            "schedule": {"type": ["object", "null"]},
            "scheduleDescription": {"type": ["string", "null"], "description": "The schedule in words, with its zone: say it to the user."},
            "timezone": {"type": ["string", "null"]},
            "nextRuns": runs_schema(),
            "metadata": {"type": "object"},
            "lastRunAt": {"type": ["string", "null"]},
            "createdAt": {"type": "string"}
        },
        "required": ["jobId", "name", "status", "active", "userId", "schedule", "scheduleDescription", "timezone", "nextRuns", "createdAt"]
    })
}

fn execution_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "executionId": {"type": "string"},
            "jobId": {"type": "string"},
            "status": {"type": "string"},
            "trigger": {"type": "string"},
            "dueAt": {"type": "string"},
            "startedAt": {"type": ["string", "null"]},
            "completedAt": {"type": ["string", "null"]},
            "result": {},
            "error": {"type": ["string", "null"]},
            "messages": {"type": "array", "description": "What this run sent to the user.", "items": {"type": "object"}}
        },
        "required": ["executionId", "jobId", "status", "trigger", "dueAt"]
    })
}

/// Runs tool `name` with `arguments` for the credential's caller.
pub async fn call(
    backend: &dyn Backend,
    credentials: &Credentials,
    name: &str,
    arguments: Map<String, Value>,
) -> ToolResult {
    check_arguments(name, &arguments)?;
    let (agent, user) = identity(backend, credentials).await?;
    let api = Api { backend, credentials, agent, user };
    match name {
        "schedule_reminder" => schedule_reminder(&api, &arguments).await,
        "schedule_job" => schedule_job(&api, &arguments).await,
        "preview_schedule" => preview_schedule(&api, &arguments).await,
        "list_jobs" => list_jobs(&api, &arguments).await,
        "get_job" => get_job(&api, &arguments).await,
        "pause_job" => job_action(&api, &arguments, "deactivate", "paused").await,
        "resume_job" => job_action(&api, &arguments, "activate", "resumed").await,
        "run_job_now" => run_job_now(&api, &arguments).await,
        "delete_job" => delete_job(&api, &arguments).await,
        other => Err(ToolError::invalid(format!("there is no tool {other:?}"))),
    }
}

/// The agent whose jobs the credential reaches (the admin key's is `default`) and the user it acts as (a user
/// token's own, or the configured `X-User-Id`).
async fn identity(backend: &dyn Backend, credentials: &Credentials) -> Result<(String, Option<String>), ToolError> {
    let (status, body) = backend.request(credentials, "GET", "/v1/whoami", None).await.map_err(unreachable)?;
    if status != 200 {
        return Err(api_error(status, &body));
    }
    let agent = body["agentId"].as_str().unwrap_or("default").to_owned();
    Ok((agent, body["userId"].as_str().map(str::to_owned)))
}

/// Refuses arguments the tool does not take (a misspelt `maxruns` must not be dropped silently).
fn check_arguments(name: &str, arguments: &Map<String, Value>) -> Result<(), ToolError> {
    let Some(properties) = definition(name).and_then(|tool| tool["inputSchema"]["properties"].as_object()) else {
        return Ok(());
    };
    for key in arguments.keys() {
        if !properties.contains_key(key) {
            let close = properties.keys().find(|known| known.eq_ignore_ascii_case(key));
            let hint = match close {
                Some(known) => format!(" (did you mean {known}?)"),
                None => format!(" (it takes {})", properties.keys().cloned().collect::<Vec<_>>().join(", ")),
            };
            return Err(ToolError::invalid(format!("{key}: {name} takes no such argument{hint}")));
        }
    }
    Ok(())
}

fn unreachable(error: String) -> ToolError {
    ToolError { code: "unavailable".into(), message: format!("cannot reach Sundial: {error}") }
}

fn api_error(status: u16, body: &Value) -> ToolError {
    let code = body["code"].as_str().unwrap_or("error").to_owned();
    let message = body["message"].as_str().map(str::to_owned).unwrap_or_else(|| format!("HTTP {status}"));
    ToolError { code, message }
}

/// The API as one caller: paths are under `/v1/agents/{agent}`.
struct Api<'a> {
    backend: &'a dyn Backend,
    credentials: &'a Credentials,
    agent: String,
    /// The user the credential acts as.
    user: Option<String>,
}

impl Api<'_> {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value), ToolError> {
        let path = format!("/v1/agents/{}{path}", self.agent);
        let (status, answer) =
            self.backend.request(self.credentials, method, &path, body).await.map_err(unreachable)?;
        if status >= 400 {
            return Err(api_error(status, &answer));
        }
        Ok((status, answer))
    }

    fn user_id(&self) -> Option<&str> {
        self.user.as_deref()
    }
}

fn text_argument<'a>(arguments: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, ToolError> {
    match arguments.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.as_str())),
        Some(_) => Err(ToolError::invalid(format!("{name}: must be a string"))),
    }
}

fn job_id_argument(arguments: &Map<String, Value>) -> Result<&str, ToolError> {
    text_argument(arguments, "jobId")?
        .filter(|id| !id.is_empty() && !id.contains('/'))
        .ok_or_else(|| ToolError::invalid("jobId: required, the job's id (job_…)"))
}

/// An instant to the millisecond, as Sundial stores and shows them (`2026-12-24T14:00:00.000Z`).
fn sundial_instant(at: chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The schedule the `at`/`in`/`cron`/`everySeconds` arguments describe, read in `timezone`.
fn schedule_from_when(arguments: &Map<String, Value>) -> Result<Value, ToolError> {
    let timezone = text_argument(arguments, "timezone")?;
    if let Some(zone) = timezone {
        when::zone(zone, "timezone").map_err(ToolError::invalid)?;
    }
    let given: Vec<&str> = ["at", "in", "cron", "everySeconds"]
        .into_iter()
        .filter(|name| arguments.get(*name).is_some_and(|v| !v.is_null()))
        .collect();
    if given.len() != 1 {
        return Err(ToolError::invalid(format!(
            "give exactly one of at, in, cron or everySeconds (got {})",
            if given.is_empty() { "none".to_owned() } else { given.join(", ") }
        )));
    }
    let mut schedule = match given[0] {
        "at" => {
            let at = text_argument(arguments, "at")?.unwrap_or_default();
            let instant = when::instant(at, timezone, "at").map_err(ToolError::invalid)?;
            if instant < Utc::now() - Duration::seconds(5) {
                return Err(ToolError::invalid(format!(
                    "at: {} lies in the past (it is now {}); ask the user for a later time",
                    instant.to_rfc3339(),
                    Utc::now().to_rfc3339()
                )));
            }
            json!({"type": "once", "executeAt": sundial_instant(instant)})
        }
        "in" => {
            let delay = text_argument(arguments, "in")?.unwrap_or_default();
            let seconds = when::delay_seconds(delay, "in").map_err(ToolError::invalid)?;
            let at = Utc::now() + Duration::seconds(seconds);
            json!({"type": "once", "executeAt": sundial_instant(at)})
        }
        "cron" => {
            let expression = text_argument(arguments, "cron")?.unwrap_or_default();
            let Some(zone) = timezone else {
                return Err(ToolError::invalid(
                    "cron: a cron pattern is read on a wall clock and needs `timezone` (the user's IANA zone, such as \
                     America/New_York)",
                ));
            };
            json!({"type": "cron", "expression": expression, "timezone": zone})
        }
        _ => {
            let seconds = arguments.get("everySeconds").and_then(Value::as_u64).filter(|seconds| *seconds >= 1);
            let seconds =
                seconds.ok_or_else(|| ToolError::invalid("everySeconds: must be a whole number of at least 1"))?;
            json!({"type": "interval", "seconds": seconds})
        }
    };
    let recurring = schedule["type"] != "once";
    if let (false, Some(zone)) = (recurring, timezone) {
        // Said back in the user's zone.
        schedule["timezone"] = json!(zone);
    }
    if let Some(until) = text_argument(arguments, "until")? {
        if !recurring {
            return Err(ToolError::invalid("until: only a recurring schedule (cron or everySeconds) has an end"));
        }
        let instant = when::instant(until, timezone, "until").map_err(ToolError::invalid)?;
        schedule["until"] = json!(sundial_instant(instant));
    }
    if let Some(max_runs) = arguments.get("maxRuns").filter(|value| !value.is_null()) {
        if !recurring {
            return Err(ToolError::invalid(
                "maxRuns: only a recurring schedule (cron or everySeconds) has a number of runs",
            ));
        }
        schedule["maxRuns"] = max_runs.clone();
    }
    Ok(schedule)
}

async fn schedule_reminder(api: &Api<'_>, arguments: &Map<String, Value>) -> ToolResult {
    let text = text_argument(arguments, "text")?
        .filter(|text| !text.trim().is_empty())
        .ok_or_else(|| ToolError::invalid("text: required, what to tell the user"))?;
    require_user(api, "a reminder goes to a user")?;
    let schedule = schedule_from_when(arguments)?;
    let name = text_argument(arguments, "name")?.unwrap_or("reminder");
    let mut body = json!({
        "name": name,
        "description": format!("Reminder: {}", text.chars().take(200).collect::<String>()),
        "schedule": schedule,
        "code": REMINDER_CODE,
        "metadata": {"reminder": text},
        "retry": {"maxAttempts": 2},
        "authority": "user",
    });
    if let Some(key) = text_argument(arguments, "dedupKey")? {
        body["dedupKey"] = json!(key);
    }
    let (status, job) = api.call("POST", "/jobs", Some(body)).await?;
    let job = job_summary(&job);
    let summary = format!(
        "Reminder {} {}: {}.",
        job["jobId"].as_str().unwrap_or(""),
        if status == 201 { "set" } else { "already set" },
        when_words(&job)
    );
    Ok(ToolAnswer { structured: json!({"job": job, "created": status == 201}), summary })
}

/// Refuses a tool that makes a job when the connection has no user: every job a tool makes acts for its user.
fn require_user(api: &Api<'_>, why: &str) -> Result<(), ToolError> {
    if api.user_id().is_some() {
        return Ok(());
    }
    Err(ToolError {
        code: "no_user".into(),
        message: format!(
            "{why}, and this connection has none: connect with a user token, or with an agent key and the user \
             configured (X-User-Id header, or `sundial mcp --user`)"
        ),
    })
}

async fn schedule_job(api: &Api<'_>, arguments: &Map<String, Value>) -> ToolResult {
    require_user(api, "a job made by a tool acts for the user of the conversation")?;
    let mut body = Map::new();
    for key in ["name", "schedule", "code", "metadata", "timeout", "retry", "dedupKey"] {
        if let Some(value) = arguments.get(key).filter(|value| !value.is_null()) {
            body.insert(key.into(), value.clone());
        }
    }
    // Whatever the connection's credential, a job a model made reaches only its user (SPEC §6).
    body.insert("authority".into(), json!("user"));
    let (status, job) = api.call("POST", "/jobs", Some(Value::Object(body))).await?;
    let job = job_summary(&job);
    let summary = format!(
        "Job {} {}: {}.",
        job["jobId"].as_str().unwrap_or(""),
        if status == 201 { "created" } else { "already existed" },
        when_words(&job)
    );
    Ok(ToolAnswer { structured: json!({"job": job, "created": status == 201}), summary })
}

async fn preview_schedule(api: &Api<'_>, arguments: &Map<String, Value>) -> ToolResult {
    let schedule = match arguments.get("schedule").filter(|value| !value.is_null()) {
        Some(schedule) => schedule.clone(),
        None => schedule_from_when(arguments)?,
    };
    let count = arguments.get("count").and_then(Value::as_u64).unwrap_or(5).clamp(1, 50);
    let (_, preview) = api.call("POST", "/preview", Some(json!({"schedule": schedule, "n": count}))).await?;
    let structured = json!({
        "scheduleDescription": preview["scheduleDescription"],
        "timezone": preview["timezone"],
        "nextRuns": preview["nextRuns"].as_array().cloned().unwrap_or_default(),
        "dstNotes": preview["dstNotes"].as_array().cloned().unwrap_or_default(),
    });
    let summary = format!(
        "{}: {}.",
        structured["scheduleDescription"].as_str().unwrap_or("schedule"),
        runs_words(&structured["nextRuns"])
    );
    Ok(ToolAnswer { structured, summary })
}

async fn list_jobs(api: &Api<'_>, arguments: &Map<String, Value>) -> ToolResult {
    let limit = arguments.get("limit").and_then(Value::as_u64).unwrap_or(50).clamp(1, 200);
    let include_inactive = arguments.get("includeInactive").and_then(Value::as_bool).unwrap_or(false);
    let status = if include_inactive { "" } else { "&status=active" };
    let (_, page) = api.call("GET", &format!("/jobs?includeDynamic=true&limit={limit}{status}"), None).await?;
    let jobs: Vec<Value> =
        page["jobs"].as_array().map(|jobs| jobs.iter().map(job_summary).collect()).unwrap_or_default();
    let summary = match jobs.len() {
        0 => "No jobs.".to_owned(),
        count => format!(
            "{count} job{}: {}.",
            if count == 1 { "" } else { "s" },
            jobs.iter()
                .take(5)
                .map(|job| format!("{} ({})", job["name"].as_str().unwrap_or(""), when_words(job)))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    };
    Ok(ToolAnswer { structured: json!({"jobs": jobs}), summary })
}

async fn get_job(api: &Api<'_>, arguments: &Map<String, Value>) -> ToolResult {
    let job_id = job_id_argument(arguments)?;
    let (_, job) = api.call("GET", &format!("/jobs/{job_id}"), None).await?;
    let (_, page) = api.call("GET", &format!("/jobs/{job_id}/executions?limit=5"), None).await?;
    let mut sent: Map<String, Value> = Map::new();
    if let Some(user_id) = job["userId"].as_str() {
        if let Ok((_, conversation)) = api.call("GET", &format!("/users/{user_id}/messages?limit=1000"), None).await {
            for message in conversation["messages"].as_array().into_iter().flatten() {
                if let Some(execution) = message["executionId"].as_str() {
                    let list = sent.entry(execution.to_owned()).or_insert_with(|| json!([]));
                    if let Some(list) = list.as_array_mut() {
                        list.push(json!({"content": message["content"], "createdAt": message["createdAt"]}));
                    }
                }
            }
        }
    }
    let executions: Vec<Value> = page["executions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|execution| {
            let mut view = execution_summary(execution);
            let id = execution["id"].as_str().unwrap_or_default();
            view["messages"] = sent.get(id).cloned().unwrap_or_else(|| json!([]));
            view
        })
        .collect();
    let job = job_summary(&job);
    let last = executions
        .first()
        .map(|execution| format!("; last run {}", execution["status"].as_str().unwrap_or("")))
        .unwrap_or_default();
    let summary = format!(
        "{} ({}): {}{last}.",
        job["name"].as_str().unwrap_or(""),
        job["status"].as_str().unwrap_or(""),
        when_words(&job)
    );
    let count = page["total"].as_u64().unwrap_or(executions.len() as u64);
    Ok(ToolAnswer { structured: json!({"job": job, "executionCount": count, "executions": executions}), summary })
}

async fn job_action(api: &Api<'_>, arguments: &Map<String, Value>, action: &str, done: &str) -> ToolResult {
    let job_id = job_id_argument(arguments)?;
    let (_, job) = api.call("POST", &format!("/jobs/{job_id}/{action}"), Some(json!({}))).await?;
    let job = job_summary(&job);
    let summary = format!("{} {done}: {}.", job["name"].as_str().unwrap_or(""), when_words(&job));
    Ok(ToolAnswer { structured: json!({"job": job}), summary })
}

async fn run_job_now(api: &Api<'_>, arguments: &Map<String, Value>) -> ToolResult {
    let job_id = job_id_argument(arguments)?;
    let (_, execution) = api.call("POST", &format!("/jobs/{job_id}/trigger"), Some(json!({}))).await?;
    let execution = execution_summary(&execution);
    let summary = format!("Started execution {} of {job_id}.", execution["executionId"].as_str().unwrap_or(""));
    Ok(ToolAnswer { structured: json!({"execution": execution}), summary })
}

async fn delete_job(api: &Api<'_>, arguments: &Map<String, Value>) -> ToolResult {
    let job_id = job_id_argument(arguments)?;
    let (_, answer) = api.call("DELETE", &format!("/jobs/{job_id}"), None).await?;
    let structured = json!({
        "deleted": answer["deleted"].as_bool().unwrap_or(false),
        "deactivated": answer["deactivated"].as_bool().unwrap_or(false),
        "message": answer["message"].as_str().unwrap_or(""),
    });
    let summary = structured["message"].as_str().filter(|message| !message.is_empty()).unwrap_or("Deleted.").to_owned();
    Ok(ToolAnswer { structured, summary })
}

/// A job as the tools show it.
fn job_summary(job: &Value) -> Value {
    json!({
        "jobId": job["id"],
        "name": job["name"],
        "status": job["status"],
        "active": job["active"],
        "userId": job["userId"],
        "schedule": job["schedule"],
        "scheduleDescription": job["scheduleDescription"],
        "timezone": job["timezone"],
        "nextRuns": job["nextRuns"].as_array().cloned().unwrap_or_default(),
        "metadata": job["metadata"].as_object().cloned().unwrap_or_default(),
        "lastRunAt": job["lastRunAt"],
        "createdAt": job["createdAt"],
    })
}

/// An execution as the tools show it.
fn execution_summary(execution: &Value) -> Value {
    json!({
        "executionId": execution["id"],
        "jobId": execution["jobId"],
        "status": execution["status"],
        "trigger": execution["trigger"],
        "dueAt": execution["dueAt"],
        "startedAt": execution["startedAt"],
        "completedAt": execution["completedAt"],
        "result": execution.get("result").cloned().unwrap_or(Value::Null),
        "error": execution["error"],
    })
}

/// "every weekday at 09:00 (America/New_York), next 2026-12-07T09:00:00-05:00".
fn when_words(job: &Value) -> String {
    let description = job["scheduleDescription"].as_str().unwrap_or("no schedule");
    format!("{description}, {}", runs_words(&job["nextRuns"]))
}

fn runs_words(runs: &Value) -> String {
    match runs.as_array().and_then(|runs| runs.first()) {
        Some(next) => format!("next run {}", next["local"].as_str().unwrap_or_default()),
        None => "no further runs".to_owned(),
    }
}
