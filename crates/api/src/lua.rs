//! lua-cli's wire protocol (reference: lua-cli 3.37.0): `/developer/jobs/…`, the user routes and the bundle upload
//! routes of `lua push`, answered in the `{success, data}` envelope, so the published client works against Sundial
//! unchanged. Job code arrives as gzip+base64 (`code`) or as an uploaded bundle (`codeS3Hash`).

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use chrono::Utc;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use sundial_core::retry::json_type;
use sundial_core::wire::{execution_view, version_view};
use sundial_core::{CodeKind, Execution, FieldError, JsonObject, Schedule};
use sundial_scheduler::{Caller, Creation, JobDetail, NewJob, NewVersion};
use sundial_store::JobFilter;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::native::{message_view, parse_number, trigger};
use crate::{AppState, JsonBody, MAX_BODY_BYTES};

/// A success answer in lua-cli's envelope.
pub(crate) fn ok(data: Value) -> Response {
    ok_status(StatusCode::OK, data)
}

/// A success answer in lua-cli's envelope with another status (201 …).
pub(crate) fn ok_status(status: StatusCode, data: Value) -> Response {
    (status, Json(json!({"success": true, "data": data}))).into_response()
}

/// How long an upload URL handed out by `blob-upload-urls` stays valid.
const UPLOAD_URL_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// Upload URLs handed out and not yet used, by token. Kept in memory: `lua push` uploads at once.
#[derive(Clone, Default)]
pub(crate) struct Uploads(Arc<Mutex<HashMap<String, UploadGrant>>>);

/// What one upload URL allows: one blob of one agent, until a deadline.
struct UploadGrant {
    agent_id: String,
    hash: String,
    expiry: Instant,
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/developer/jobs/{agent_id}", get(list_jobs).post(create_job))
        .route("/developer/jobs/{agent_id}/{job_id}", get(get_job).delete(delete_job))
        .route("/developer/jobs/{agent_id}/{job_id}/version", post(push_version))
        .route("/developer/jobs/{agent_id}/{job_id}/version/sandbox", post(push_version))
        .route("/developer/jobs/{agent_id}/{job_id}/versions", get(list_versions))
        .route("/developer/jobs/{agent_id}/{job_id}/{version}/publish", post(publish_version))
        .route("/developer/jobs/{agent_id}/{job_id}/activate", post(activate_job))
        .route("/developer/jobs/{agent_id}/{job_id}/deactivate", post(deactivate_job))
        .route("/developer/jobs/{agent_id}/{job_id}/trigger", post(trigger_job))
        .route("/developer/jobs/{agent_id}/{job_id}/executions", get(list_executions))
        .route("/developer/jobs/{agent_id}/{job_id}/metadata", put(replace_metadata))
        .route(
            "/developer/user/data/agent/{agent_id}",
            get(get_current_user).put(put_current_user).patch(patch_current_user).delete(clear_current_user),
        )
        .route(
            "/developer/user/data/agent/{agent_id}/user/{user_id}",
            get(get_user).put(put_user).patch(patch_user).delete(clear_user),
        )
        .route("/admin/agents/{agent_id}/conversations/me", post(send_to_me))
        .route("/chat/history/{agent_id}", get(chat_history))
        .route("/developer/agents/{agent_id}/backup/blob-upload-urls", post(blob_upload_urls))
        .route("/developer/agents/{agent_id}/backup/check-blobs", post(check_blobs))
        .route("/developer/agents/{agent_id}/backup/manifest", post(backup_manifest))
        .route(
            "/developer/blobs/{token}",
            put(upload_blob).layer(axum::extract::DefaultBodyLimit::max(4 * MAX_BODY_BYTES)),
        )
}

/// Decodes lua-cli's `compressForPush`: base64 of the gzipped UTF-8 source.
pub(crate) fn decode_code(text: &str, field: &str) -> Result<String, FieldError> {
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|error| FieldError::new(field, format!("must be base64 of gzipped JavaScript: {error}")))?;
    gunzip(&compressed, field)
}

fn gunzip(compressed: &[u8], field: &str) -> Result<String, FieldError> {
    let mut source = String::new();
    flate2::read::GzDecoder::new(compressed)
        .take(MAX_BODY_BYTES as u64 * 4)
        .read_to_string(&mut source)
        .map_err(|error| FieldError::new(field, format!("must be gzipped UTF-8 JavaScript: {error}")))?;
    Ok(source)
}

fn object(body: &Value) -> ApiResult<&JsonObject> {
    body.as_object()
        .ok_or_else(|| FieldError::new("body", format!("must be a JSON object, got {}", json_type(body))).into())
}

fn string_field(body: &JsonObject, field: &str) -> ApiResult<Option<String>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(FieldError::new(field, format!("must be a string, got {}", json_type(other))).into()),
    }
}

// --- jobs ---

async fn list_jobs(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    let include_dynamic = params.get("includeDynamic").is_some_and(|value| value == "true" || value == "1");
    let filter = JobFilter { include_dynamic, user_id: caller.user_id.clone(), limit: 10_000, ..JobFilter::default() };
    let jobs = state.engine.list_jobs(&caller, &filter).await?;
    let views: Vec<Value> = jobs.iter().map(lua_job).collect();
    Ok(ok(json!({ "jobs": views })))
}

/// `CreateJobDTO`: with `version`, a job with its first version (dynamic jobs from `Jobs.create`); without, a job
/// shell that `lua push` fills with a version and publishes.
async fn create_job(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    let fields = object(&body)?;
    let dynamic = match fields.get("dynamic") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(flag)) => *flag,
        Some(other) => {
            return Err(FieldError::new("dynamic", format!("must be a boolean, got {}", json_type(other))).into())
        }
    };
    let Some(version) = fields.get("version").filter(|version| !version.is_null()) else {
        let name = string_field(fields, "name")?.filter(|name| !name.trim().is_empty());
        let name = name.ok_or_else(|| FieldError::new("name", "is required and must not be empty"))?;
        if let Some(schedule) = fields.get("schedule").filter(|schedule| !schedule.is_null()) {
            Schedule::parse(schedule, &state.engine.config().schedule_limits).map_err(FieldError::from)?;
        }
        let metadata = match fields.get("metadata") {
            Some(Value::Object(metadata)) => metadata.clone(),
            _ => JsonObject::new(),
        };
        let description = string_field(fields, "description")?;
        let detail = state.engine.create_job_shell(&caller, name, description, dynamic, metadata).await?;
        return Ok(ok_status(StatusCode::CREATED, lua_job(&detail)));
    };
    let version = object(version).map_err(|_| ApiError::from(FieldError::new("version", "must be an object")))?;
    let code_text = string_field(version, "code")?.ok_or_else(|| FieldError::new("version.code", "is required"))?;
    let code = decode_code(&code_text, "version.code")?;
    let pick = |key: &str| version.get(key).filter(|value| !value.is_null()).or(fields.get(key)).cloned();
    let mut native = Map::new();
    for key in ["name", "description", "schedule", "activate"] {
        if let Some(value) = fields.get(key) {
            native.insert(key.into(), value.clone());
        }
    }
    for key in ["timeout", "retry"] {
        if let Some(value) = pick(key) {
            native.insert(key.into(), value);
        }
    }
    if let Some(metadata) = fields.get("metadata").filter(|value| !value.is_null()).or(version.get("metadata")) {
        native.insert("metadata".into(), metadata.clone());
    }
    native.insert("code".into(), Value::String(code.clone()));
    native.insert("dynamic".into(), Value::Bool(dynamic));
    native.entry("activate").or_insert(Value::Bool(false));
    if let Some(semver) = version.get("version") {
        native.insert("version".into(), semver.clone());
    }
    let mut new = NewJob::parse(&Value::Object(native), state.engine.config()).map_err(|error| {
        if error.field == "code" {
            FieldError::new("version.code", error.reason)
        } else {
            error
        }
    })?;
    new.code = code;
    // lua-cli has no field of its own for it: a tool passes its dedupKey in the job's metadata.
    new.dedup_key = sundial_scheduler::parse_dedup_key(new.metadata.get("dedupKey"), "metadata.dedupKey")?;
    let (detail, creation) = state.engine.create_job_idempotent(&caller, new).await?;
    let status = if creation == Creation::Created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(ok_status(status, lua_job(&detail)))
}

async fn get_job(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, job_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    Ok(ok(lua_job(&state.engine.job_detail(&caller, &job_id).await?)))
}

async fn delete_job(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, job_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    Ok(ok(state.engine.delete(&caller, &job_id).await?.view(&job_id)))
}

/// `PushJobVersionDTO`: code inline (gzip+base64) or as an uploaded bundle; lua-cli's bundles are job modules.
async fn push_version(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, job_id)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    let fields = object(&body)?;
    let code = match (string_field(fields, "code")?, string_field(fields, "codeS3Hash")?) {
        (Some(code), _) => Some(decode_code(&code, "code")?),
        (None, Some(hash)) => {
            let bytes = state
                .engine
                .store()
                .blob_get(&caller.agent_id, &hash)
                .await?
                .ok_or_else(|| FieldError::new("codeS3Hash", format!("no uploaded bundle with hash {hash}")))?;
            Some(gunzip(&bytes, "codeS3Hash")?)
        }
        (None, None) => None,
    };
    let mut native = fields.clone();
    native.remove("code");
    native.remove("codeS3Hash");
    native.remove("metadata");
    if let Some(metadata) = fields.get("metadata").filter(|value| value.is_object()) {
        native.insert("versionMetadata".into(), metadata.clone());
    }
    let mut new = NewVersion::parse(&native, state.engine.config())?.unwrap_or_default();
    if let Some(code) = code {
        sundial_scheduler::engine::check_code_of_kind(
            &code,
            CodeKind::Module,
            "code",
            state.engine.config().max_code_bytes,
        )?;
        new.code = Some(code);
        new.kind = Some(CodeKind::Module);
    }
    let version = state.engine.add_version(&caller, &job_id, new, false).await?;
    let job = state.engine.job(&caller, &job_id).await?;
    Ok(ok_status(StatusCode::CREATED, version_view(&version, job.active_version_id.as_deref())))
}

async fn list_versions(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, job_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    let detail = state.engine.job_detail(&caller, &job_id).await?;
    let active = detail.job.active_version_id.as_deref();
    let versions: Vec<Value> = detail.versions.iter().map(|version| version_view(version, active)).collect();
    Ok(ok(Value::Array(versions)))
}

async fn publish_version(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, job_id, version)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    Ok(ok(lua_job(&state.engine.publish_version(&caller, &job_id, &version).await?)))
}

async fn activate_job(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, job_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    Ok(ok(lua_job(&state.engine.activate(&caller, &job_id).await?)))
}

async fn deactivate_job(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, job_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    Ok(ok(lua_job(&state.engine.deactivate(&caller, &job_id).await?)))
}

async fn trigger_job(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, job_id)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    let execution = trigger(&state, &caller, &job_id, &body).await?;
    Ok(ok(lua_execution(&execution)))
}

async fn list_executions(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, job_id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    let limit = parse_number(&params, "limit", 50, 1000)?;
    let offset = parse_number(&params, "offset", 0, 1_000_000_000)?;
    let (executions, total) = state.engine.executions(&caller, &job_id, None, limit, offset).await?;
    let views: Vec<Value> = executions.iter().map(lua_execution).collect();
    Ok(ok(json!({"executions": views, "total": total, "limit": limit, "offset": offset})))
}

/// A job as lua-cli's `Job`: its `lastExecution` shaped as [`lua_execution`] does.
fn lua_job(detail: &JobDetail) -> Value {
    let mut view = detail.view();
    if let Some(last) = &detail.last_execution {
        view["lastExecution"] = lua_execution(last);
    }
    view
}

/// An execution as lua-cli's `JobExecution`, whose `startedAt` is a string: one that has not started yet (just queued,
/// or a retry waiting out its backoff) shows when it was queued, so `lua jobs history` prints that time, not 1970.
fn lua_execution(execution: &Execution) -> Value {
    let mut view = execution_view(execution, false);
    if view.get("startedAt").is_none_or(Value::is_null) {
        view["startedAt"] = view["createdAt"].clone();
    }
    view
}

async fn replace_metadata(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, job_id)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    let metadata = state.engine.update_metadata(&caller, &job_id, &body, true).await?;
    Ok(ok(json!({"message": "metadata updated", "jobId": job_id, "metadata": metadata})))
}

// --- users ---

/// The user a credential speaks for: a user token's user, or `X-User-Id` with an agent key.
async fn current_user(state: &AppState, principal: &Principal, agent_id: &str) -> ApiResult<(Caller, String)> {
    let caller = principal.caller_for(state, agent_id).await?;
    let user_id = caller.user_id.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "user_not_found",
            "this credential has no user: use a user token, or X-User-Id with an agent key",
        )
    })?;
    Ok((caller, user_id))
}

async fn named_user(state: &AppState, principal: &Principal, agent_id: &str, user_id: &str) -> ApiResult<Caller> {
    crate::native::user_caller(state, principal, agent_id, user_id).await
}

/// A user's data as lua-cli reads it: the data fields plus `_luaProfile`.
fn lua_user(user_id: &str, data: &JsonObject) -> Value {
    let mut object = data.clone();
    object.insert("_luaProfile".into(), sundial_core::wire::lua_profile(user_id, data));
    Value::Object(object)
}

async fn user_data(state: &AppState, caller: &Caller, user_id: &str) -> ApiResult<JsonObject> {
    Ok(state.engine.store().user_get(&caller.agent_id, user_id).await?.map(|record| record.data).unwrap_or_default())
}

async fn write_user(state: &AppState, caller: &Caller, user_id: &str, data: JsonObject) -> ApiResult<Response> {
    let mut data = data;
    data.remove("_luaProfile");
    data.remove("userId");
    let record = state.engine.store().user_put(&caller.agent_id, user_id, &data, Utc::now()).await?;
    Ok(ok(lua_user(user_id, &record.data)))
}

/// `PATCH {set?, unset?}`.
fn patched(mut data: JsonObject, body: &Value) -> ApiResult<JsonObject> {
    let fields = object(body)?;
    if let Some(set) = fields.get("set").filter(|set| !set.is_null()) {
        let set = set.as_object().ok_or_else(|| FieldError::new("set", "must be an object"))?;
        data.extend(set.clone());
    }
    if let Some(unset) = fields.get("unset").filter(|unset| !unset.is_null()) {
        let unset = unset.as_array().ok_or_else(|| FieldError::new("unset", "must be an array of field names"))?;
        for name in unset {
            if let Some(name) = name.as_str() {
                data.remove(name);
            }
        }
    }
    Ok(data)
}

async fn get_current_user(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
) -> ApiResult<Response> {
    let (caller, user_id) = current_user(&state, &principal, &agent_id).await?;
    Ok(ok(lua_user(&user_id, &user_data(&state, &caller, &user_id).await?)))
}

async fn put_current_user(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let (caller, user_id) = current_user(&state, &principal, &agent_id).await?;
    write_user(&state, &caller, &user_id, object(&body)?.clone()).await
}

async fn patch_current_user(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let (caller, user_id) = current_user(&state, &principal, &agent_id).await?;
    let data = patched(user_data(&state, &caller, &user_id).await?, &body)?;
    write_user(&state, &caller, &user_id, data).await
}

async fn clear_current_user(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
) -> ApiResult<Response> {
    let (caller, user_id) = current_user(&state, &principal, &agent_id).await?;
    write_user(&state, &caller, &user_id, JsonObject::new()).await
}

async fn get_user(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, user_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let caller = named_user(&state, &principal, &agent_id, &user_id).await?;
    Ok(ok(lua_user(&user_id, &user_data(&state, &caller, &user_id).await?)))
}

async fn put_user(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, user_id)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let caller = named_user(&state, &principal, &agent_id, &user_id).await?;
    write_user(&state, &caller, &user_id, object(&body)?.clone()).await
}

async fn patch_user(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, user_id)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let caller = named_user(&state, &principal, &agent_id, &user_id).await?;
    let data = patched(user_data(&state, &caller, &user_id).await?, &body)?;
    write_user(&state, &caller, &user_id, data).await
}

async fn clear_user(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, user_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let caller = named_user(&state, &principal, &agent_id, &user_id).await?;
    write_user(&state, &caller, &user_id, JsonObject::new()).await
}

/// `user.send(messages)` of lua-cli: always to the credential's own user.
async fn send_to_me(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let (caller, user_id) = current_user(&state, &principal, &agent_id).await?;
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| FieldError::new("messages", "is required and must be an array"))?;
    if messages.len() > 100 {
        return Err(FieldError::new("messages", "must hold at most 100 messages").into());
    }
    state.engine.send_messages(&caller.agent_id, &user_id, messages, None, None).await?;
    Ok(ok(Value::Bool(true)))
}

async fn chat_history(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let (caller, user_id) = current_user(&state, &principal, &agent_id).await?;
    let limit = parse_number(&params, "limit", 100, 1000)?;
    let messages = state.engine.store().message_list(&caller.agent_id, &user_id, 0, limit).await?;
    let views: Vec<Value> = messages.iter().map(message_view).collect();
    Ok(ok(json!({ "messages": views })))
}

// --- bundle uploads of `lua push` ---

/// Blob keys as lua-cli sends them: a job bundle's `codeS3Hash` is the sha256 of the gzipped bundle (64 hex digits);
/// a source-backup blob is keyed by the sha256 of the file's plain content, truncated to 16 hex digits
/// (`hashContentTruncated`) or whole (lua-cli's `matchesFileHash` accepts both).
fn hashes(body: &Value) -> ApiResult<Vec<String>> {
    let list =
        body.get("hashes").and_then(Value::as_array).ok_or_else(|| FieldError::new("hashes", "must be an array"))?;
    let mut hashes = Vec::with_capacity(list.len());
    for (index, hash) in list.iter().enumerate() {
        let hash =
            hash.as_str().filter(|hash| matches!(hash.len(), 16 | 64) && hash.chars().all(|c| c.is_ascii_hexdigit()));
        let hash = hash.ok_or_else(|| {
            FieldError::new(format!("hashes[{index}]"), "must be a sha256 hex digest (64 hex digits) or its first 16")
        })?;
        hashes.push(hash.to_ascii_lowercase());
    }
    if hashes.len() > 1000 {
        return Err(FieldError::new("hashes", "must hold at most 1000 hashes").into());
    }
    Ok(hashes)
}

/// Hex sha256.
fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Whether an uploaded blob is the content its key names: the sha256 of the bytes as sent (a job bundle's gzip), or —
/// for a source-backup blob, which lua-cli gzips before the PUT but keys by its plain content — of the gunzipped
/// bytes; a 16-digit key is a prefix of that digest.
fn blob_matches(hash: &str, body: &[u8]) -> bool {
    if sha256_hex(body).starts_with(hash) {
        return true;
    }
    if !body.starts_with(&[0x1f, 0x8b]) {
        return false;
    }
    let mut plain = Vec::new();
    let limit = 4 * MAX_BODY_BYTES as u64;
    match flate2::read::GzDecoder::new(body).take(limit + 1).read_to_end(&mut plain) {
        Ok(read) if (read as u64) <= limit => sha256_hex(&plain).starts_with(hash),
        _ => false,
    }
}

async fn blob_upload_urls(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(agent_id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    principal.require_agent_key()?;
    let caller = principal.caller_for(&state, &agent_id).await?;
    let host = headers.get(axum::http::header::HOST).and_then(|host| host.to_str().ok()).unwrap_or("127.0.0.1");
    let mut urls = Map::new();
    let mut uploads = state.uploads.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let now = Instant::now();
    uploads.retain(|_, grant| grant.expiry > now);
    for hash in hashes(&body)? {
        let token = crate::auth::new_secret("up");
        urls.insert(hash.clone(), json!(format!("http://{host}/developer/blobs/{token}")));
        uploads
            .insert(token, UploadGrant { agent_id: caller.agent_id.clone(), hash, expiry: now + UPLOAD_URL_LIFETIME });
    }
    // Each URL is a single-use upload grant: never replayed.
    Ok((axum::Extension(crate::SecretShown), ok(json!({ "urls": urls }))).into_response())
}

async fn check_blobs(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    let wanted = hashes(&body)?;
    let existing = state.engine.store().blobs_existing(&caller.agent_id, &wanted).await?;
    let missing: Vec<&String> = wanted.iter().filter(|hash| !existing.contains(hash)).collect();
    let results: Map<String, Value> = wanted
        .iter()
        .map(|hash| (hash.clone(), json!(if existing.contains(hash) { "exists" } else { "missing" })))
        .collect();
    Ok(ok(json!({"missing": missing, "existing": existing, "results": results})))
}

async fn backup_manifest(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    principal.caller_for(&state, &agent_id).await?;
    let files = body.get("files").and_then(Value::as_array).map_or(0, Vec::len);
    Ok(ok(json!({"stored": true, "files": files})))
}

/// `PUT <upload url>`: a gzipped bundle or backup file, no credentials — the URL's token is the capability. The
/// content must hash to the announced key (see [`blob_matches`]).
async fn upload_blob(State(state): State<AppState>, Path(token): Path<String>, body: Bytes) -> ApiResult<Response> {
    let grant = {
        let mut uploads = state.uploads.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        uploads.remove(&token)
    };
    let Some(UploadGrant { agent_id, hash, .. }) = grant.filter(|grant| grant.expiry > Instant::now()) else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "unknown or expired upload URL"));
    };
    if !blob_matches(&hash, &body) {
        let digest = sha256_hex(&body);
        return Err(FieldError::new("body", format!("sha256 is {digest}, which does not match {hash}")).into());
    }
    state.engine.store().blob_put(&agent_id, &hash, &body, Utc::now()).await?;
    Ok(StatusCode::OK.into_response())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::{blob_matches, sha256_hex};

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).expect("gzip");
        encoder.finish().expect("gzip")
    }

    #[test]
    fn a_bundle_is_keyed_by_the_sha256_of_its_gzip() {
        let bundle = gzip(b"module.exports.default = {};");
        assert!(blob_matches(&sha256_hex(&bundle), &bundle));
        assert!(!blob_matches(&sha256_hex(b"something else"), &bundle));
    }

    #[test]
    fn a_backup_file_is_keyed_by_its_plain_content_whole_or_truncated() {
        let plain = b"export const agent = 1;\n";
        let uploaded = gzip(plain);
        let digest = sha256_hex(plain);
        assert!(blob_matches(&digest, &uploaded));
        assert!(blob_matches(&digest[..16], &uploaded));
        assert!(!blob_matches(&sha256_hex(b"another file")[..16], &uploaded));
        assert!(!blob_matches(&digest[..16], b"not gzip at all"));
    }
}
