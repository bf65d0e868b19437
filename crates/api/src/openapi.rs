//! The OpenAPI 3.1 document of the native API, served at `/v1/openapi.json`. A test checks that every route of the
//! router appears here.

use serde_json::{json, Map, Value};

/// One operation: summary, the request body schema (if any) and the success schema.
fn operation(summary: &str, body: Option<Value>, success: (&str, Value)) -> Value {
    let mut operation = json!({
        "summary": summary,
        "security": [{"bearer": []}],
        "responses": {
            success.0: {"description": "success", "content": {"application/json": {"schema": success.1}}},
            "400": {"$ref": "#/components/responses/Error"},
            "401": {"$ref": "#/components/responses/Error"},
            "404": {"$ref": "#/components/responses/Error"},
        },
    });
    if let Some(body) = body {
        operation["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": body}}});
    }
    operation
}

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn object() -> Value {
    json!({"type": "object"})
}

/// Every route of the native API: (path, method, operation).
fn operations() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "/v1/agents",
            "post",
            operation(
                "Create an agent and return its first key (admin key)",
                Some(json!({"type": "object", "required": ["agentId"], "properties": {"agentId": {"type": "string"}}})),
                ("201", object()),
            ),
        ),
        ("/v1/agents", "get", operation("List agents (admin key)", None, ("200", object()))),
        ("/v1/agents/{agentId}/keys", "post", operation("Add an agent key", None, ("201", object()))),
        (
            "/v1/agents/{agentId}/env",
            "get",
            operation("The agent's variables (read by env(key) in jobs)", None, ("200", object())),
        ),
        (
            "/v1/agents/{agentId}/env",
            "put",
            operation("Replace the agent's variables", Some(object()), ("200", object())),
        ),
        (
            "/v1/agents/{agentId}/settings",
            "get",
            operation("The agent's settings (webhookUrl, fetchAllowList)", None, ("200", object())),
        ),
        (
            "/v1/agents/{agentId}/settings",
            "put",
            operation("Replace the agent's settings", Some(object()), ("200", object())),
        ),
        ("/v1/agents/{agentId}/keys/{keyId}", "delete", operation("Revoke an agent key", None, ("200", object()))),
        ("/v1/agents/{agentId}/users/{userId}", "get", operation("A user's data", None, ("200", object()))),
        (
            "/v1/agents/{agentId}/users/{userId}",
            "put",
            operation("Replace a user's data", Some(object()), ("200", object())),
        ),
        (
            "/v1/agents/{agentId}/users/{userId}/tokens",
            "post",
            operation("Mint a user token (agent key)", None, ("201", object())),
        ),
        (
            "/v1/agents/{agentId}/users/{userId}/messages",
            "get",
            operation("A user's conversation after a sequence number", None, ("200", object())),
        ),
        (
            "/v1/agents/{agentId}/users/{userId}/messages/stream",
            "get",
            operation("A user's conversation as Server-Sent Events", None, ("200", json!({"type": "string"}))),
        ),
        (
            "/v1/agents/{agentId}/jobs",
            "post",
            operation("Create a job", Some(schema("CreateJob")), ("201", schema("Job"))),
        ),
        (
            "/v1/agents/{agentId}/jobs",
            "get",
            operation(
                "List jobs (includeDynamic, status, limit, cursor)",
                None,
                (
                    "200",
                    json!({"type": "object", "properties": {"jobs": {"type": "array", "items": schema("Job")}, "nextCursor": {"type": ["string", "null"]}}}),
                ),
            ),
        ),
        (
            "/v1/agents/{agentId}/jobs/batch",
            "post",
            operation(
                "Create many jobs in one transaction",
                Some(
                    json!({"type": "object", "properties": {"jobs": {"type": "array", "items": schema("CreateJob")}}}),
                ),
                ("201", object()),
            ),
        ),
        ("/v1/agents/{agentId}/jobs/{jobId}", "get", operation("Read a job", None, ("200", schema("Job")))),
        (
            "/v1/agents/{agentId}/jobs/{jobId}",
            "patch",
            operation(
                "Update a job; code or option changes make a new version",
                Some(object()),
                ("200", schema("Job")),
            ),
        ),
        (
            "/v1/agents/{agentId}/jobs/{jobId}",
            "delete",
            operation(
                "Delete a job (pre-defined jobs with versions are deactivated)",
                None,
                (
                    "200",
                    json!({"type": "object", "properties": {"deleted": {"type": "boolean"}, "deactivated": {"type": "boolean"}, "message": {"type": "string"}}}),
                ),
            ),
        ),
        (
            "/v1/agents/{agentId}/jobs/{jobId}/activate",
            "post",
            operation("Activate a job", None, ("200", schema("Job"))),
        ),
        (
            "/v1/agents/{agentId}/jobs/{jobId}/deactivate",
            "post",
            operation("Deactivate a job", None, ("200", schema("Job"))),
        ),
        (
            "/v1/agents/{agentId}/jobs/{jobId}/trigger",
            "post",
            operation("Run a job now ({versionId?})", Some(object()), ("202", schema("JobExecution"))),
        ),
        (
            "/v1/agents/{agentId}/jobs/{jobId}/metadata",
            "put",
            operation("Replace a job's metadata", Some(object()), ("200", object())),
        ),
        (
            "/v1/agents/{agentId}/jobs/{jobId}/metadata",
            "patch",
            operation("Merge into a job's metadata", Some(object()), ("200", object())),
        ),
        ("/v1/agents/{agentId}/jobs/{jobId}/versions", "get", operation("A job's versions", None, ("200", object()))),
        (
            "/v1/agents/{agentId}/jobs/{jobId}/versions",
            "post",
            operation(
                "Add a version ({version?, code?, schedule?, timeout?, retry?, publish?})",
                Some(object()),
                ("201", schema("JobVersion")),
            ),
        ),
        (
            "/v1/agents/{agentId}/jobs/{jobId}/versions/{version}/publish",
            "post",
            operation("Make a version active", None, ("200", schema("Job"))),
        ),
        (
            "/v1/agents/{agentId}/jobs/{jobId}/versions/{version}/code",
            "get",
            operation("A version's code", None, ("200", json!({"type": "string"}))),
        ),
        (
            "/v1/agents/{agentId}/jobs/{jobId}/executions",
            "get",
            operation(
                "A job's executions, newest first (limit, offset, status, logs)",
                None,
                (
                    "200",
                    json!({"type": "object", "properties": {"executions": {"type": "array", "items": schema("JobExecution")}, "total": {"type": "integer"}, "limit": {"type": "integer"}, "offset": {"type": "integer"}}}),
                ),
            ),
        ),
        (
            "/v1/agents/{agentId}/jobs/{jobId}/preview",
            "get",
            operation(
                "The job's schedule in words, its next runs (n), UTC and local, and daylight saving notes",
                None,
                ("200", schema("SchedulePreview")),
            ),
        ),
        (
            "/v1/agents/{agentId}/preview",
            "post",
            operation(
                "What a schedule would do, without a job: its description, next runs (n, 1-100) and DST notes",
                Some(
                    json!({"type": "object", "required": ["schedule"], "properties": {"schedule": schema("Schedule"), "n": {"type": "integer", "minimum": 1, "maximum": 100}}}),
                ),
                ("200", schema("SchedulePreview")),
            ),
        ),
        (
            "/v1/agents/{agentId}/executions/{executionId}",
            "get",
            operation("One execution with its logs", None, ("200", schema("JobExecution"))),
        ),
    ]
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for (path, method, operation) in operations() {
        let entry = paths.entry(path.to_owned()).or_insert_with(|| json!({}));
        entry[method] = operation;
    }
    let schedule = json!({
        "oneOf": [
            {"type": "object", "required": ["type", "executeAt"], "properties": {"type": {"const": "once"}, "executeAt": {"type": "string", "format": "date-time"}}},
            {"type": "object", "required": ["type", "seconds"], "properties": {"type": {"const": "interval"}, "seconds": {"type": "integer", "minimum": 1}}},
            {"type": "object", "required": ["type", "expression"], "properties": {"type": {"const": "cron"}, "expression": {"type": "string"}, "timezone": {"type": "string"}}},
        ]
    });
    let retry = json!({"type": "object", "required": ["maxAttempts"], "properties": {"maxAttempts": {"type": "integer", "minimum": 0}, "backoffSeconds": {"type": "integer", "minimum": 0}}});
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Sundial", "version": env!("CARGO_PKG_VERSION"), "description": "Self-hosted jobs engine for AI-agent tools."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "error", "content": {"application/json": {"schema": schema("Error")}}}},
            "schemas": {
                "Error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}},
                "Schedule": schedule,
                "Retry": retry,
                "Run": {"type": "object", "required": ["utc", "local"], "properties": {"utc": {"type": "string", "format": "date-time"}, "local": {"type": "string", "format": "date-time"}}},
                "SchedulePreview": {"type": "object", "required": ["schedule", "scheduleDescription", "timezone", "nextRuns", "dstNotes"], "properties": {
                    "schedule": schema("Schedule"), "scheduleDescription": {"type": "string"}, "timezone": {"type": "string"},
                    "nextRuns": {"type": "array", "items": schema("Run")}, "dstNotes": {"type": "array", "items": {"type": "string"}}
                }},
                "CreateJob": {"type": "object", "required": ["name", "schedule", "code"], "properties": {
                    "name": {"type": "string"}, "description": {"type": "string"}, "schedule": schema("Schedule"),
                    "code": {"type": "string", "description": "JavaScript source of the execute function"},
                    "timeout": {"type": "integer", "minimum": 1, "maximum": 600}, "retry": schema("Retry"),
                    "metadata": {"type": "object"}, "activate": {"type": "boolean"}, "version": {"type": "string"},
                    "policy": {"type": "object", "properties": {"overlap": {"enum": ["skip", "queue_one", "allow"]}, "misfire": {"enum": ["run_once", "skip", "run_all"]}, "misfireGraceSeconds": {"type": "integer"}, "maxConsecutiveFailures": {"type": "integer"}}}
                }},
                "Job": {"type": "object", "properties": {
                    "id": {"type": "string"}, "agentId": {"type": "string"}, "name": {"type": "string"}, "dynamic": {"type": "boolean"},
                    "userId": {"type": "string"}, "active": {"type": "boolean"}, "status": {"enum": ["active", "paused", "failed", "inactive", "completed"]},
                    "metadata": {"type": "object"}, "schedule": schema("Schedule"), "activeVersionId": {"type": "string"},
                    "scheduleDescription": {"type": "string"}, "timezone": {"type": "string"}, "nextRuns": {"type": "array", "items": schema("Run")},
                    "activeVersion": schema("JobVersion"), "versions": {"type": "array", "items": schema("JobVersion")},
                    "lastRunAt": {"type": "string"}, "nextRunAt": {"type": "string"}, "lastExecution": schema("JobExecution"),
                    "policy": {"type": "object"}, "consecutiveFailures": {"type": "integer"}, "createdAt": {"type": "string"}, "updatedAt": {"type": "string"}
                }},
                "JobVersion": {"type": "object", "properties": {
                    "id": {"type": "string"}, "jobId": {"type": "string"}, "name": {"type": "string"}, "version": {"type": "string"},
                    "active": {"type": "boolean"}, "schedule": schema("Schedule"), "timeout": {"type": "integer"}, "retry": schema("Retry"),
                    "metadata": {"type": "object"}, "createdAt": {"type": "string"}, "updatedAt": {"type": "string"}
                }},
                "JobExecution": {"type": "object", "properties": {
                    "id": {"type": "string"}, "executionId": {"type": "string"}, "jobId": {"type": "string"}, "versionId": {"type": "string"},
                    "occurrenceId": {"type": "string"},
                    "status": {"enum": ["pending", "running", "completed", "failed", "timeout", "cancelled", "abandoned", "killed", "skipped"]},
                    "trigger": {"enum": ["schedule", "manual", "retry"]}, "scheduledFor": {"type": "string"}, "startedAt": {"type": ["string", "null"]},
                    "completedAt": {"type": "string"}, "duration": {"type": "integer"}, "result": {}, "error": {"type": "string"},
                    "retryCount": {"type": "integer"}, "logs": {"type": "array", "items": {"type": "object"}}
                }}
            }
        }
    })
}
