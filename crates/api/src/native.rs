//! The native `/v1` routes (SPEC §6): agents and keys, users and their conversations, jobs, versions, executions.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use futures_util::stream::Stream;
use serde_json::{json, Value};
use sundial_core::wire::{execution_view, instant, version_view};
use sundial_core::{ExecutionStatus, FieldError, JobStatus, JsonObject};
use sundial_scheduler::{Caller, Creation, JobChange, NewJob, NewVersion, Reach};
use sundial_store::{Agent, JobFilter, Message};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{create_key, Principal};
use crate::contract;
use crate::error::{ApiError, ApiResult};
use crate::{validate_user_id, AppState, Body, JsonBody, SecretShown};

type Params = Query<HashMap<String, String>>;

/// The native routes, each registered with its description: routing and `/v1/openapi.json` come from one list.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(whoami))
        .routes(routes!(create_agent, list_agents))
        .routes(routes!(create_agent_key))
        .routes(routes!(get_env, put_env))
        .routes(routes!(get_settings, put_settings))
        .routes(routes!(revoke_key))
        .routes(routes!(get_user, put_user))
        .routes(routes!(mint_user_token))
        .routes(routes!(list_messages, send_messages))
        .routes(routes!(stream_messages))
        .routes(routes!(create_job, list_jobs))
        .routes(routes!(create_jobs))
        .routes(routes!(deploy))
        .routes(routes!(get_job, update_job, delete_job))
        .routes(routes!(activate_job))
        .routes(routes!(deactivate_job))
        .routes(routes!(trigger_job))
        .routes(routes!(replace_metadata, merge_metadata))
        .routes(routes!(list_versions, add_version))
        .routes(routes!(publish_version))
        .routes(routes!(version_code))
        .routes(routes!(list_executions))
        .routes(routes!(preview))
        .routes(routes!(preview_schedule))
        .routes(routes!(list_agent_executions))
        .routes(routes!(get_execution))
}

pub(crate) fn parse_number(
    params: &HashMap<String, String>,
    name: &str,
    default: usize,
    max: usize,
) -> ApiResult<usize> {
    match params.get(name) {
        None => Ok(default),
        Some(text) => match text.parse::<usize>() {
            Ok(number) if number <= max => Ok(number),
            _ => Err(FieldError::new(name, format!("must be a whole number between 0 and {max}")).into()),
        },
    }
}

fn parse_flag(params: &HashMap<String, String>, name: &str) -> ApiResult<bool> {
    match params.get(name).map(String::as_str) {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(_) => Err(FieldError::new(name, "must be true or false").into()),
    }
}

fn validate_agent_id(agent_id: &str) -> ApiResult<()> {
    let valid = !agent_id.is_empty()
        && agent_id.len() <= 64
        && agent_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !valid {
        return Err(FieldError::new("agentId", "must be 1 to 64 characters of letters, digits, '-', '_' or '.'").into());
    }
    Ok(())
}

// --- agents and keys ---

#[utoipa::path(
    post,
    path = "/v1/agents",
    operation_id = "create_agent",
    tag = "agents",
    summary = "Create an agent and return its first key (admin key)",
    request_body = contract::CreateAgent,
    responses((status = 201, description = "the agent and its first key, shown once", body = contract::AgentCreated))
)]
async fn create_agent(State(state): State<AppState>, principal: Principal, Body(body): Body) -> ApiResult<Response> {
    principal.require_admin()?;
    let agent_id = body
        .get("agentId")
        .and_then(Value::as_str)
        .ok_or_else(|| FieldError::new("agentId", "is required and must be a string"))?
        .to_owned();
    validate_agent_id(&agent_id)?;
    contract::conform::<contract::CreateAgent>(&body)?;
    let store = state.engine.store();
    store.agent_insert(&Agent::new(agent_id.clone(), Utc::now())).await?;
    let (key, secret) = create_key(store.as_ref(), Some(&agent_id), None, false).await?;
    let body = json!({"agent": {"id": agent_id}, "key": {"id": key.id, "key": secret}});
    Ok((StatusCode::CREATED, axum::Extension(SecretShown), Json(body)).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/agents",
    operation_id = "list_agents",
    tag = "agents",
    summary = "List agents (admin key)",
    responses((status = 200, description = "the agents", body = contract::AgentList))
)]
async fn list_agents(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<Value>> {
    principal.require_admin()?;
    let agents = state.engine.store().agent_list().await?;
    let agents: Vec<Value> =
        agents.iter().map(|agent| json!({"id": agent.id, "createdAt": instant(agent.created_at)})).collect();
    Ok(Json(json!({ "agents": agents })))
}

#[utoipa::path(
    post,
    path = "/v1/agents/{agentId}/keys",
    operation_id = "create_agent_key",
    tag = "agents",
    summary = "Add an agent key",
    params(contract::AgentPath),
    responses((status = 201, description = "the new key, shown once", body = contract::AgentKey))
)]
async fn create_agent_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
) -> ApiResult<Response> {
    principal.require_agent_key()?;
    let caller = principal.caller_for(&state, &agent_id).await?;
    let (key, secret) = create_key(state.engine.store().as_ref(), Some(&caller.agent_id), None, false).await?;
    let body = json!({"id": key.id, "key": secret, "agentId": caller.agent_id});
    Ok((StatusCode::CREATED, axum::Extension(SecretShown), Json(body)).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/agents/{agentId}/keys/{keyId}",
    operation_id = "revoke_key",
    tag = "agents",
    summary = "Revoke an agent key",
    params(contract::KeyPath),
    responses((status = 200, description = "the key no longer works", body = contract::Revoked))
)]
async fn revoke_key(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, key_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    principal.require_agent_key()?;
    let caller = principal.caller_for(&state, &agent_id).await?;
    if key_id == crate::auth::CONFIGURED_ADMIN_KEY_ID {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "configured_key",
            "this admin key is set by SUNDIAL_API_KEY: change the setting and restart to replace it",
        ));
    }
    let store = state.engine.store();
    let target = store
        .key_get(&key_id)
        .await?
        .filter(|key| key.agent_id.as_deref() == Some(caller.agent_id.as_str()))
        .ok_or_else(|| ApiError::not_found("key"))?;
    if target.admin {
        principal.require_admin()?;
        if state.options.admin_key.is_none() && store.admin_key_count().await? <= 1 {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "last_admin_key",
                "this is the last admin key: the server would have none (set SUNDIAL_API_KEY, or keep this key)",
            ));
        }
    }
    if !store.key_revoke(&caller.agent_id, &key_id, Utc::now()).await? {
        return Err(ApiError::not_found("key"));
    }
    Ok(Json(json!({"revoked": true, "id": key_id})))
}

/// The agent's variables that its jobs read with `env(key)`: string values only.
#[utoipa::path(
    get,
    path = "/v1/agents/{agentId}/env",
    operation_id = "get_env",
    tag = "agents",
    summary = "The agent's variables, read by env(key) in jobs",
    params(contract::AgentPath),
    responses((status = 200, description = "the variables", body = contract::Env))
)]
async fn get_env(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
) -> ApiResult<Json<Value>> {
    principal.require_agent_key()?;
    let caller = principal.caller_for(&state, &agent_id).await?;
    Ok(Json(json!({ "env": state.engine.agent_env_values(&caller.agent_id).await? })))
}

#[utoipa::path(
    put,
    path = "/v1/agents/{agentId}/env",
    operation_id = "put_env",
    tag = "agents",
    summary = "Replace the agent's variables",
    params(contract::AgentPath),
    request_body = std::collections::BTreeMap<String, String>,
    responses((status = 200, description = "the variables now", body = contract::Env))
)]
async fn put_env(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    principal.require_agent_key()?;
    let caller = principal.caller_for(&state, &agent_id).await?;
    let Value::Object(env) = body else {
        return Err(FieldError::new("body", "must be an object of variable names to string values").into());
    };
    if let Some((name, _)) = env.iter().find(|(_, value)| !value.is_string()) {
        return Err(FieldError::new(name.clone(), "must be a string").into());
    }
    contract::conform::<std::collections::BTreeMap<String, String>>(&Value::Object(env.clone()))?;
    if !state.engine.set_agent_env(&caller.agent_id, &env).await? {
        return Err(ApiError::not_found("agent"));
    }
    Ok(Json(json!({ "env": env })))
}

/// The agent's settings: `webhookUrl` (messages to users are POSTed there) and `fetchAllowList` (hosts job code
/// may `fetch`).
#[utoipa::path(
    get,
    path = "/v1/agents/{agentId}/settings",
    operation_id = "get_settings",
    tag = "agents",
    summary = "The agent's settings (webhookUrl, fetchAllowList)",
    params(contract::AgentPath),
    responses((status = 200, description = "the settings", body = contract::Settings))
)]
async fn get_settings(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
) -> ApiResult<Json<Value>> {
    principal.require_agent_key()?;
    let caller = principal.caller_for(&state, &agent_id).await?;
    let agent = state.engine.store().agent_get(&caller.agent_id).await?.ok_or_else(|| ApiError::not_found("agent"))?;
    Ok(Json(Value::Object(agent.settings)))
}

#[utoipa::path(
    put,
    path = "/v1/agents/{agentId}/settings",
    operation_id = "put_settings",
    tag = "agents",
    summary = "Replace the agent's settings",
    params(contract::AgentPath),
    request_body = contract::Settings,
    responses((status = 200, description = "the settings now", body = contract::Settings))
)]
async fn put_settings(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    principal.require_agent_key()?;
    let caller = principal.caller_for(&state, &agent_id).await?;
    let Value::Object(mut settings) = body else {
        return Err(FieldError::new("body", "must be an object {webhookUrl?, fetchAllowList?}").into());
    };
    sundial_scheduler::outbound::validate_settings(&settings)?;
    contract::conform::<contract::Settings>(&Value::Object(settings.clone()))?;
    settings.retain(|_, value| !value.is_null());
    if !state.engine.store().agent_set_settings(&caller.agent_id, &settings).await? {
        return Err(ApiError::not_found("agent"));
    }
    Ok(Json(Value::Object(settings)))
}

// --- users ---

/// The caller for a route about `user_id`: user tokens reach only their own user.
pub(crate) async fn user_caller(
    state: &AppState,
    principal: &Principal,
    agent_id: &str,
    user_id: &str,
) -> ApiResult<Caller> {
    validate_user_id(user_id, "userId")?;
    let caller = principal.caller_for(state, agent_id).await?;
    caller.check(Reach::User(user_id)).map_err(sundial_scheduler::EngineError::from)?;
    Ok(caller)
}

pub(crate) fn user_view(user_id: &str, data: &JsonObject) -> Value {
    let mut object = data.clone();
    object.insert("userId".into(), json!(user_id));
    Value::Object(object)
}

#[utoipa::path(
    get,
    path = "/v1/whoami",
    operation_id = "whoami",
    tag = "agents",
    summary = "Who the credential is: its agent, its user and what it may reach",
    responses((status = 200, description = "the credential", body = contract::WhoAmI))
)]
async fn whoami(principal: Principal) -> Json<Value> {
    let key = &principal.key;
    let kind = if key.admin {
        "admin"
    } else if key.user_id.is_some() {
        "user"
    } else {
        "agent"
    };
    let scopes = key.scopes.clone().unwrap_or_else(|| crate::auth::SCOPES.map(str::to_owned).to_vec());
    let user_id = key.user_id.clone().or_else(|| principal.acting_user.clone());
    let mut body = json!({"kind": kind, "keyId": key.id, "agentId": key.agent_id, "userId": user_id, "scopes": scopes});
    if let Some(expires_at) = key.expires_at {
        body["expiresAt"] = json!(instant(expires_at));
    }
    Json(body)
}

#[utoipa::path(
    get,
    path = "/v1/agents/{agentId}/users/{userId}",
    operation_id = "get_user",
    tag = "users",
    summary = "A user's data record",
    params(contract::UserPath),
    responses((status = 200, description = "the user's record (empty for a user not seen yet)", body = contract::User))
)]
async fn get_user(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, user_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let caller = user_caller(&state, &principal, &agent_id, &user_id).await?;
    let record = state.engine.store().user_get(&caller.agent_id, &user_id).await?;
    Ok(Json(user_view(&user_id, &record.map(|record| record.data).unwrap_or_default())))
}

#[utoipa::path(
    put,
    path = "/v1/agents/{agentId}/users/{userId}",
    operation_id = "put_user",
    tag = "users",
    summary = "Replace a user's data fields",
    params(contract::UserPath),
    request_body = contract::Object,
    responses((status = 200, description = "the record now", body = contract::User))
)]
async fn put_user(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, user_id)): Path<(String, String)>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let caller = user_caller(&state, &principal, &agent_id, &user_id).await?;
    let Value::Object(mut data) = body else {
        return Err(FieldError::new("body", "must be a JSON object of the user's data fields").into());
    };
    data.remove("userId");
    let record = state.engine.store().user_put(&caller.agent_id, &user_id, &data, Utc::now()).await?;
    Ok(Json(user_view(&user_id, &record.data)))
}

/// The longest life a user token can be minted with: one year.
const MAX_TOKEN_SECONDS: i64 = 366 * 86_400;

#[utoipa::path(
    post,
    path = "/v1/agents/{agentId}/users/{userId}/tokens",
    operation_id = "mint_user_token",
    tag = "users",
    summary = "Mint a user token (agent key): it acts only as that user",
    params(contract::UserPath),
    request_body = Option<contract::MintToken>,
    responses((status = 201, description = "the token, shown once", body = contract::Token))
)]
async fn mint_user_token(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, user_id)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    principal.require_agent_key()?;
    let caller = user_caller(&state, &principal, &agent_id, &user_id).await?;
    let body = match body {
        Value::Object(body) => body,
        Value::Null => Default::default(),
        _ => return Err(FieldError::new("body", "must be a JSON object {scopes?, expiresInSeconds?}").into()),
    };
    let scopes = match body.get("scopes") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut scopes = Vec::new();
            for (index, item) in items.iter().enumerate() {
                let scope = item.as_str().filter(|scope| crate::auth::SCOPES.contains(scope)).ok_or_else(|| {
                    FieldError::new(format!("scopes[{index}]"), "must be one of \"jobs\", \"data\", \"products\"")
                })?;
                if !scopes.iter().any(|known| known == scope) {
                    scopes.push(scope.to_owned());
                }
            }
            if scopes.is_empty() {
                return Err(FieldError::new("scopes", "must name at least one scope, or be left out for all").into());
            }
            Some(scopes)
        }
        Some(_) => return Err(FieldError::new("scopes", "must be an array of \"jobs\", \"data\", \"products\"").into()),
    };
    let expires_at = match body.get("expiresInSeconds") {
        None | Some(Value::Null) => None,
        Some(value) => {
            let seconds = sundial_core::wire::whole_number(value)
                .and_then(|seconds| i64::try_from(seconds).ok())
                .filter(|seconds| (1..=MAX_TOKEN_SECONDS).contains(seconds))
                .ok_or_else(|| {
                    FieldError::new(
                        "expiresInSeconds",
                        format!("must be a whole number between 1 and {MAX_TOKEN_SECONDS}"),
                    )
                })?;
            Some(Utc::now() + chrono::TimeDelta::seconds(seconds))
        }
    };
    contract::conform::<contract::MintToken>(&Value::Object(body.clone()))?;
    let store = state.engine.store();
    let (key, secret) = crate::auth::create_scoped_key(
        store.as_ref(),
        Some(&caller.agent_id),
        Some(&user_id),
        false,
        scopes.clone(),
        expires_at,
    )
    .await?;
    let scopes = scopes.unwrap_or_else(|| crate::auth::SCOPES.map(str::to_owned).to_vec());
    let mut body =
        json!({"id": key.id, "token": secret, "agentId": caller.agent_id, "userId": user_id, "scopes": scopes});
    if let Some(expires_at) = expires_at {
        body["expiresAt"] = json!(instant(expires_at));
    }
    Ok((StatusCode::CREATED, axum::Extension(SecretShown), Json(body)).into_response())
}

pub(crate) fn message_view(message: &Message) -> Value {
    json!({
        "seq": message.seq,
        "id": message.id,
        "userId": message.user_id,
        "content": message.content,
        "jobId": message.job_id,
        "executionId": message.execution_id,
        "occurrenceId": message.occurrence_id,
        "createdAt": instant(message.created_at),
        "delivery": message.delivery,
    })
}

#[utoipa::path(
    get,
    path = "/v1/agents/{agentId}/users/{userId}/messages",
    operation_id = "list_messages",
    tag = "users",
    summary = "A user's conversation: what the agent's jobs sent them",
    params(contract::UserPath, contract::MessagesQuery),
    responses((status = 200, description = "a page of the conversation", body = contract::MessagePage))
)]
async fn list_messages(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, user_id)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult<Json<Value>> {
    let caller = user_caller(&state, &principal, &agent_id, &user_id).await?;
    let after = parse_number(&params, "after", 0, i64::MAX as usize)? as i64;
    let limit = parse_number(&params, "limit", 100, 1000)?;
    let messages = state.engine.store().message_list(&caller.agent_id, &user_id, after, limit).await?;
    let next = messages.last().map(|message| message.seq).unwrap_or(after);
    let views: Vec<Value> = messages.iter().map(message_view).collect();
    Ok(Json(json!({"messages": views, "next": next})))
}

#[utoipa::path(
    post,
    path = "/v1/agents/{agentId}/users/{userId}/messages",
    operation_id = "send_messages",
    tag = "users",
    summary = "Append messages to a user's conversation, as job code's user.send does (and deliver them to the agent's webhook)",
    params(contract::UserPath),
    request_body = contract::SendMessages,
    responses((status = 201, description = "the messages as stored", body = contract::MessagesSent))
)]
async fn send_messages(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, user_id)): Path<(String, String)>,
    Body(body): Body,
) -> ApiResult<Response> {
    let caller = user_caller(&state, &principal, &agent_id, &user_id).await?;
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| FieldError::new("messages", "must be an array of messages"))?;
    if messages.is_empty() || messages.len() > 100 {
        return Err(FieldError::new("messages", "must hold 1 to 100 messages").into());
    }
    for (index, message) in messages.iter().enumerate() {
        sundial_scheduler::engine::validate_message(message, index)?;
    }
    contract::conform::<contract::SendMessages>(&body)?;
    let sent = state.engine.send_messages(&caller.agent_id, &user_id, messages, None, None).await?;
    let views: Vec<Value> = sent.iter().map(message_view).collect();
    Ok((StatusCode::CREATED, Json(json!({"messages": views}))).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/agents/{agentId}/users/{userId}/messages/stream",
    operation_id = "stream_messages",
    tag = "users",
    summary = "A user's conversation as it grows (Server-Sent Events)",
    params(contract::UserPath, contract::StreamQuery),
    responses((status = 200, description = "Server-Sent Events: one `message` event per message, its data a Message", content_type = "text/event-stream", body = String))
)]
async fn stream_messages(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, user_id)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let caller = user_caller(&state, &principal, &agent_id, &user_id).await?;
    let after = parse_number(&params, "after", 0, i64::MAX as usize)? as i64;
    let mut events = state.engine.subscribe_messages();
    let store = state.engine.store().clone();
    let stream = async_stream(move |sender| async move {
        let mut cursor = after;
        loop {
            match store.message_list(&caller.agent_id, &user_id, cursor, 500).await {
                Ok(messages) => {
                    for message in &messages {
                        cursor = message.seq;
                        let event = Event::default()
                            .id(message.seq.to_string())
                            .event("message")
                            .data(message_view(message).to_string());
                        if sender.send(event).await.is_err() {
                            return;
                        }
                    }
                    if messages.len() == 500 {
                        continue;
                    }
                }
                Err(error) => tracing::warn!(%error, "message stream read failed"),
            }
            // Wait for a message of this user (or a periodic re-check, should an announcement be missed).
            let wait = async {
                loop {
                    match events.recv().await {
                        Ok(event) if event.agent_id == caller.agent_id && event.user_id == user_id => return,
                        Ok(_) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), wait).await;
            if sender.is_closed() {
                return;
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// A stream fed by a task through a bounded channel (the task ends when the client goes away).
fn async_stream<F, Fut>(produce: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    tokio::spawn(produce(sender));
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|event| (Ok(event), receiver))
    })
}

// --- jobs ---

#[utoipa::path(
    post,
    path = "/v1/agents/{agentId}/jobs",
    operation_id = "create_job",
    tag = "jobs",
    summary = "Create a job (a dynamic job of the user with X-User-Id or a user token)",
    params(contract::AgentPath),
    request_body = contract::CreateJob,
    responses((status = 201, description = "the job", body = contract::Job, links(("GetJob" = (operation_id = "get_job", parameters(("agentId" = "$request.path.agentId"), ("jobId" = "$response.body#/id")))), ("ListExecutions" = (operation_id = "list_executions", parameters(("agentId" = "$request.path.agentId"), ("jobId" = "$response.body#/id")))), ("Preview" = (operation_id = "preview", parameters(("agentId" = "$request.path.agentId"), ("jobId" = "$response.body#/id")))), ("DeactivateJob" = (operation_id = "deactivate_job", parameters(("agentId" = "$request.path.agentId"), ("jobId" = "$response.body#/id")))))), (status = 200, description = "the job an earlier create with the same dedupKey made (changed to this request when something differed)", body = contract::Job))
)]
async fn create_job(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    Body(body): Body,
) -> ApiResult<Response> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    let new = NewJob::parse(&body, state.engine.config())?;
    contract::conform::<contract::CreateJob>(&body)?;
    let (detail, creation) = state.engine.create_job_idempotent(&caller, new).await?;
    // A repeated create with the same dedupKey answers the job it made before: 200, not 201.
    let status = if creation == Creation::Created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(detail.view())).into_response())
}

#[utoipa::path(
    post,
    path = "/v1/agents/{agentId}/jobs/batch",
    operation_id = "create_jobs",
    tag = "jobs",
    summary = "Create many jobs in one transaction: all or none",
    params(contract::AgentPath, contract::BatchQuery),
    request_body = contract::CreateJobs,
    responses((status = 201, description = "the jobs, in order", body = contract::JobBatch))
)]
async fn create_jobs(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    Query(params): Params,
    Body(body): Body,
) -> ApiResult<Response> {
    // `?view=ids` answers only what a bulk client needs: building full views is most of the work of a big batch.
    let ids_only = match params.get("view").map(String::as_str) {
        None | Some("full") => false,
        Some("ids") => true,
        Some(_) => return Err(FieldError::new("view", "must be ids or full").into()),
    };
    let caller = principal.caller_for(&state, &agent_id).await?;
    let Some(items) = body.get("jobs").and_then(Value::as_array) else {
        return Err(FieldError::new("jobs", "is required and must be an array of jobs").into());
    };
    if items.len() > 10_000 {
        return Err(FieldError::new("jobs", "must hold at most 10000 jobs").into());
    }
    let mut batch = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let new = NewJob::parse(item, state.engine.config())
            .map_err(|error| FieldError::new(format!("jobs[{index}].{}", error.field), error.reason))?;
        batch.push(new);
    }
    contract::conform::<contract::CreateJobs>(&body)?;
    let created = state.engine.create_jobs(&caller, batch).await?;
    let jobs: Vec<Value> = created
        .iter()
        .map(|detail| {
            if ids_only {
                json!({"id": detail.job.id, "nextRunAt": detail.job.next_run_at.map(instant)})
            } else {
                detail.view()
            }
        })
        .collect();
    let answer = (StatusCode::CREATED, Json(json!({ "jobs": jobs }))).into_response();
    drop((created, body));
    release_freed_memory();
    Ok(answer)
}

/// Hands memory freed after big requests back to the operating system once they stop coming: glibc keeps freed
/// heap pages otherwise, so parsing a few large batches would leave the server's resident size high for good. The
/// trim waits for a quiet moment (no batch for [`TRIM_AFTER`]) rather than following each batch, because the next
/// batch of a bulk load would fault the same pages straight back in.
fn release_freed_memory() {
    use std::sync::atomic::{AtomicU64, Ordering};
    /// Bumped by every batch; a trim goes ahead only if no batch came after the one that scheduled it.
    static LAST_BATCH: AtomicU64 = AtomicU64::new(0);
    let mine = LAST_BATCH.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::spawn(async move {
        tokio::time::sleep(TRIM_AFTER).await;
        if LAST_BATCH.load(Ordering::SeqCst) == mine {
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            // SAFETY: malloc_trim only walks glibc's own heap and releases free pages; it has no preconditions.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    });
}

/// How long after the last big batch the server gives its freed memory back.
const TRIM_AFTER: std::time::Duration = std::time::Duration::from_millis(200);

/// `sundial deploy`: `{files: [{path, source}], activate?}` — job files become pre-defined jobs (SPEC §7).
#[utoipa::path(
    post,
    path = "/v1/agents/{agentId}/deploy",
    operation_id = "deploy",
    tag = "jobs",
    summary = "Deploy pre-defined job files",
    params(contract::AgentPath),
    request_body = contract::Deploy,
    responses((status = 200, description = "what each file did", body = contract::Deployed))
)]
async fn deploy(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    principal.require_agent_key()?;
    let caller = principal.caller_for(&state, &agent_id).await?;
    let items = body
        .get("files")
        .and_then(Value::as_array)
        .ok_or_else(|| FieldError::new("files", "is required and must be an array"))?;
    let mut files = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let text = |key: &str| item.get(key).and_then(Value::as_str).map(str::to_owned);
        let (Some(path), Some(source)) = (text("path"), text("source")) else {
            return Err(FieldError::new(format!("files[{index}]"), "must be {path, source} with string values").into());
        };
        files.push(sundial_scheduler::deploy::JobFile { path, source });
    }
    let activate = match body.get("activate") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(activate)) => *activate,
        Some(_) => return Err(FieldError::new("activate", "must be a boolean").into()),
    };
    contract::conform::<contract::Deploy>(&body)?;
    let deployed = state.engine.deploy(&caller, files, activate).await?;
    let jobs: Vec<Value> = deployed.iter().map(|deployed| deployed.view()).collect();
    Ok(Json(json!({ "jobs": jobs })))
}

#[utoipa::path(
    get,
    path = "/v1/agents/{agentId}/jobs",
    operation_id = "list_jobs",
    tag = "jobs",
    summary = "List jobs",
    params(contract::AgentPath, contract::ListJobsQuery),
    responses((status = 200, description = "a page of jobs", body = contract::JobList))
)]
async fn list_jobs(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    Query(params): Params,
) -> ApiResult<Json<Value>> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    let status =
        match params.get("status") {
            None => None,
            Some(text) => Some(JobStatus::parse(text).ok_or_else(|| {
                FieldError::new("status", "must be one of active, paused, failed, inactive, completed")
            })?),
        };
    let limit = parse_number(&params, "limit", 100, 1000)?;
    let filter = JobFilter {
        include_dynamic: parse_flag(&params, "includeDynamic")?,
        status,
        user_id: caller.user_id.clone(),
        user_only: false,
        limit: limit.max(1),
        after_id: params.get("cursor").cloned(),
        name: params.get("name").cloned(),
    };
    let jobs = state.engine.list_jobs(&caller, &filter).await?;
    let next_cursor = (jobs.len() == filter.limit).then(|| jobs.last().map(|detail| detail.job.id.clone())).flatten();
    let views: Vec<Value> = jobs.iter().map(|detail| detail.view()).collect();
    Ok(Json(json!({"jobs": views, "nextCursor": next_cursor})))
}

#[utoipa::path(
    get,
    path = "/v1/agents/{agentId}/jobs/{jobId}",
    operation_id = "get_job",
    tag = "jobs",
    summary = "A job",
    params(contract::JobPath),
    responses((status = 200, description = "the job", body = contract::Job))
)]
async fn get_job(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, job_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    Ok(Json(state.engine.job_detail(&caller, &job_id).await?.view()))
}

#[utoipa::path(
    patch,
    path = "/v1/agents/{agentId}/jobs/{jobId}",
    operation_id = "update_job",
    tag = "jobs",
    summary = "Change a job: name, description and policy in place; code or options as a new, published version",
    params(contract::JobPath),
    request_body = contract::UpdateJob,
    responses((status = 200, description = "the job now", body = contract::Job))
)]
async fn update_job(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, job_id)): Path<(String, String)>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    let change = JobChange::parse(&body, state.engine.config())?;
    contract::conform::<contract::UpdateJob>(&body)?;
    Ok(Json(state.engine.update_job(&caller, &job_id, change).await?.view()))
}

#[utoipa::path(
    delete,
    path = "/v1/agents/{agentId}/jobs/{jobId}",
    operation_id = "delete_job",
    tag = "jobs",
    summary = "Delete a job (a pre-defined job with versions is deactivated instead)",
    params(contract::JobPath),
    responses((status = 200, description = "what was done", body = contract::Deletion))
)]
async fn delete_job(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, job_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    Ok(Json(state.engine.delete(&caller, &job_id).await?.view(&job_id)))
}

#[utoipa::path(
    post,
    path = "/v1/agents/{agentId}/jobs/{jobId}/activate",
    operation_id = "activate_job",
    tag = "jobs",
    summary = "Activate a job: its grid is anchored now",
    params(contract::JobPath),
    responses((status = 200, description = "the job", body = contract::Job))
)]
async fn activate_job(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, job_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    Ok(Json(state.engine.activate(&caller, &job_id).await?.view()))
}

#[utoipa::path(
    post,
    path = "/v1/agents/{agentId}/jobs/{jobId}/deactivate",
    operation_id = "deactivate_job",
    tag = "jobs",
    summary = "Deactivate a job",
    params(contract::JobPath),
    responses((status = 200, description = "the job", body = contract::Job))
)]
async fn deactivate_job(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, job_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    Ok(Json(state.engine.deactivate(&caller, &job_id).await?.view()))
}

/// Runs a job now, on the version named by the body's optional `versionId` (an id or a semver string).
pub(crate) async fn trigger(
    state: &AppState,
    caller: &Caller,
    job_id: &str,
    body: &Value,
) -> ApiResult<sundial_core::Execution> {
    if !(body.is_object() || body.is_null()) {
        return Err(FieldError::new("body", "must be a JSON object {versionId?}").into());
    }
    let version_id = match body.get("versionId") {
        None | Some(Value::Null) => None,
        Some(Value::String(version)) => Some(version.clone()),
        Some(_) => return Err(FieldError::new("versionId", "must be a string").into()),
    };
    Ok(state.engine.trigger(caller, job_id, version_id.as_deref()).await?)
}

#[utoipa::path(
    post,
    path = "/v1/agents/{agentId}/jobs/{jobId}/trigger",
    operation_id = "trigger_job",
    tag = "jobs",
    summary = "Run a job now, outside its schedule (which does not move)",
    params(contract::JobPath),
    request_body = Option<contract::Trigger>,
    responses((status = 202, description = "the execution, pending or running", body = contract::Execution))
)]
async fn trigger_job(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, job_id)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    contract::conform::<Option<contract::Trigger>>(&body)?;
    let execution = trigger(&state, &caller, &job_id, &body).await?;
    Ok((StatusCode::ACCEPTED, Json(execution_view(&execution, false))).into_response())
}

async fn update_metadata(
    state: &AppState,
    principal: &Principal,
    agent_id: &str,
    job_id: &str,
    body: &Value,
    replace: bool,
) -> ApiResult<Json<Value>> {
    let caller = principal.caller_for(state, agent_id).await?;
    let metadata = state.engine.update_metadata(&caller, job_id, body, replace).await?;
    Ok(Json(json!({"message": "metadata updated", "jobId": job_id, "metadata": metadata})))
}

#[utoipa::path(
    put,
    path = "/v1/agents/{agentId}/jobs/{jobId}/metadata",
    operation_id = "replace_metadata",
    tag = "jobs",
    summary = "Replace a job's metadata",
    params(contract::JobPath),
    request_body = contract::Object,
    responses((status = 200, description = "the metadata now", body = contract::MetadataAnswer))
)]
async fn replace_metadata(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, job_id)): Path<(String, String)>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    update_metadata(&state, &principal, &agent_id, &job_id, &body, true).await
}

#[utoipa::path(
    patch,
    path = "/v1/agents/{agentId}/jobs/{jobId}/metadata",
    operation_id = "merge_metadata",
    tag = "jobs",
    summary = "Merge fields into a job's metadata",
    params(contract::JobPath),
    request_body = contract::Object,
    responses((status = 200, description = "the metadata now", body = contract::MetadataAnswer))
)]
async fn merge_metadata(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, job_id)): Path<(String, String)>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    update_metadata(&state, &principal, &agent_id, &job_id, &body, false).await
}

#[utoipa::path(
    get,
    path = "/v1/agents/{agentId}/jobs/{jobId}/versions",
    operation_id = "list_versions",
    tag = "jobs",
    summary = "A job's versions",
    params(contract::JobPath),
    responses((status = 200, description = "the versions", body = contract::VersionList))
)]
async fn list_versions(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, job_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    let detail = state.engine.job_detail(&caller, &job_id).await?;
    let active = detail.job.active_version_id.as_deref();
    let versions: Vec<Value> = detail.versions.iter().map(|version| version_view(version, active)).collect();
    Ok(Json(json!({ "versions": versions })))
}

#[utoipa::path(
    post,
    path = "/v1/agents/{agentId}/jobs/{jobId}/versions",
    operation_id = "add_version",
    tag = "jobs",
    summary = "Add a version (fields left out are copied from the active version)",
    params(contract::JobPath),
    request_body = contract::AddVersion,
    responses((status = 201, description = "the version", body = contract::JobVersion))
)]
async fn add_version(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, job_id)): Path<(String, String)>,
    Body(body): Body,
) -> ApiResult<Response> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    let Value::Object(object) = &body else {
        return Err(FieldError::new("body", "must be a JSON object").into());
    };
    let new = NewVersion::parse(object, state.engine.config())?.unwrap_or_default();
    let publish = match object.get("publish") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(publish)) => *publish,
        Some(_) => return Err(FieldError::new("publish", "must be a boolean").into()),
    };
    contract::conform::<contract::AddVersion>(&body)?;
    let version = state.engine.add_version(&caller, &job_id, new, publish).await?;
    let job = state.engine.job(&caller, &job_id).await?;
    let view = version_view(&version, job.active_version_id.as_deref());
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(
    post,
    path = "/v1/agents/{agentId}/jobs/{jobId}/versions/{version}/publish",
    operation_id = "publish_version",
    tag = "jobs",
    summary = "Make a version the active one and activate the job",
    params(contract::VersionPath),
    responses((status = 200, description = "the job", body = contract::Job))
)]
async fn publish_version(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, job_id, version)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    Ok(Json(state.engine.publish_version(&caller, &job_id, &version).await?.view()))
}

#[utoipa::path(
    get,
    path = "/v1/agents/{agentId}/jobs/{jobId}/versions/{version}/code",
    operation_id = "version_code",
    tag = "jobs",
    summary = "A version's code",
    params(contract::VersionPath),
    responses((status = 200, description = "the source", content_type = "text/javascript", body = String))
)]
async fn version_code(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, job_id, version)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    let detail = state.engine.job_detail(&caller, &job_id).await?;
    let found = detail
        .versions
        .iter()
        .find(|candidate| candidate.version == version || candidate.id == version)
        .ok_or_else(|| ApiError::not_found("version"))?;
    Ok(([(axum::http::header::CONTENT_TYPE, "text/javascript; charset=utf-8")], found.code.clone()).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/agents/{agentId}/jobs/{jobId}/executions",
    operation_id = "list_executions",
    tag = "executions",
    summary = "A job's executions, newest first",
    params(contract::JobPath, contract::ExecutionsQuery),
    responses((status = 200, description = "a page of executions", body = contract::ExecutionPage))
)]
async fn list_executions(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, job_id)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult<Json<Value>> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    let limit = parse_number(&params, "limit", 50, 1000)?;
    let offset = parse_number(&params, "offset", 0, 1_000_000_000)?;
    let status = match params.get("status") {
        None => None,
        Some(text) => Some(ExecutionStatus::parse(text).ok_or_else(|| {
            FieldError::new("status", "must be an execution status such as completed, failed or timeout")
        })?),
    };
    let with_logs = parse_flag(&params, "logs")?;
    let (executions, total) = state.engine.executions(&caller, &job_id, status, limit, offset).await?;
    let views: Vec<Value> = executions.iter().map(|execution| execution_view(execution, with_logs)).collect();
    Ok(Json(json!({"executions": views, "total": total, "limit": limit, "offset": offset})))
}

#[utoipa::path(
    get,
    path = "/v1/agents/{agentId}/executions",
    operation_id = "list_agent_executions",
    tag = "executions",
    summary = "The agent's executions, newest first (agent key)",
    params(contract::AgentPath, contract::AgentExecutionsQuery),
    responses((status = 200, description = "a page of executions", body = contract::ExecutionList))
)]
async fn list_agent_executions(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    Query(params): Params,
) -> ApiResult<Json<Value>> {
    principal.require_agent_key()?;
    let caller = principal.caller_for(&state, &agent_id).await?;
    let limit = parse_number(&params, "limit", 1000, 10_000)?.max(1);
    let executions = state.engine.agent_executions(&caller, params.get("cursor").map(String::as_str), limit).await?;
    let next_cursor =
        (executions.len() == limit).then(|| executions.last().map(|execution| execution.id.clone())).flatten();
    let views: Vec<Value> = executions.iter().map(|execution| execution_view(execution, false)).collect();
    Ok(Json(json!({"executions": views, "nextCursor": next_cursor})))
}

#[utoipa::path(
    get,
    path = "/v1/agents/{agentId}/executions/{executionId}",
    operation_id = "get_execution",
    tag = "executions",
    summary = "One execution with its console lines",
    params(contract::ExecutionPath),
    responses((status = 200, description = "the execution with its logs", body = contract::Execution))
)]
async fn get_execution(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, execution_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    let execution = state.engine.execution(&caller, &execution_id).await?;
    Ok(Json(execution_view(&execution, true)))
}

#[utoipa::path(
    get,
    path = "/v1/agents/{agentId}/jobs/{jobId}/preview",
    operation_id = "preview",
    tag = "jobs",
    summary = "A job's schedule in words, its next runs and daylight saving notes",
    params(contract::JobPath, contract::PreviewQuery),
    responses((status = 200, description = "the preview", body = contract::SchedulePreview))
)]
async fn preview(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, job_id)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult<Json<Value>> {
    let caller = principal.caller_for(&state, &agent_id).await?;
    let n = parse_number(&params, "n", 10, 1000)?;
    let (job, schedule, instants) = state.engine.preview(&caller, &job_id, n).await?;
    let compiled = schedule.compile().map_err(FieldError::from)?;
    let mut answer = schedule_answer(&schedule, &compiled, &instants, state.engine.now());
    answer.insert("jobId".into(), json!(job.id));
    // `fires` is the earlier name of `nextRuns`, kept for clients that read it.
    answer.insert("fires".into(), answer["nextRuns"].clone());
    Ok(Json(Value::Object(answer)))
}

/// `POST /v1/agents/{agentId}/preview` `{schedule, n?}`: what a schedule would do if a job had it now — its
/// description, its next runs in UTC and in its zone, and what daylight saving time does to them. Creates nothing.
#[utoipa::path(
    post,
    path = "/v1/agents/{agentId}/preview",
    operation_id = "preview_schedule",
    tag = "jobs",
    summary = "What a schedule would do, without a job: its description, next runs and daylight saving notes",
    params(contract::AgentPath),
    request_body = contract::PreviewRequest,
    responses((status = 200, description = "the preview", body = contract::SchedulePreview))
)]
async fn preview_schedule(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    principal.caller_for(&state, &agent_id).await?;
    let Value::Object(body) = body else {
        return Err(FieldError::new("body", "must be a JSON object {schedule, n?}").into());
    };
    let schedule = sundial_core::Schedule::parse(
        body.get("schedule").unwrap_or(&Value::Null),
        &state.engine.config().schedule_limits,
    )
    .map_err(FieldError::from)?;
    let n = match body.get("n") {
        None | Some(Value::Null) => 10,
        Some(value) => sundial_core::wire::whole_number(value)
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| FieldError::new("n", "must be a whole number between 1 and 100"))?
            as usize,
    };
    contract::conform::<contract::PreviewRequest>(&Value::Object(body.clone()))?;
    let compiled = schedule.compile().map_err(FieldError::from)?;
    let now = state.engine.now();
    let instants = match &schedule {
        // A past instant fires as soon as the job is created.
        sundial_core::Schedule::Once { execute_at, .. } => vec![(*execute_at).max(now)],
        _ => compiled.preview(now, now, n),
    };
    Ok(Json(Value::Object(schedule_answer(&schedule, &compiled, &instants, now))))
}

/// The fields both previews answer: `schedule`, `scheduleDescription`, `timezone`, `nextRuns` and `dstNotes` (for
/// the runs listed, at least the next 10).
fn schedule_answer(
    schedule: &sundial_core::Schedule,
    compiled: &sundial_core::CompiledSchedule,
    instants: &[chrono::DateTime<Utc>],
    now: chrono::DateTime<Utc>,
) -> serde_json::Map<String, Value> {
    let mut answer = serde_json::Map::new();
    answer.insert("schedule".into(), sundial_core::wire::schedule_view(schedule));
    answer.insert("scheduleDescription".into(), json!(sundial_core::describe::describe(schedule)));
    answer.insert("timezone".into(), json!(schedule.timezone_name()));
    answer.insert("nextRuns".into(), sundial_core::describe::runs_view(instants, compiled.timezone()));
    let from = instants.first().map_or(now, |first| (*first - chrono::TimeDelta::seconds(1)).min(now));
    answer.insert("dstNotes".into(), json!(compiled.dst_notes(from, instants.len().max(10))));
    answer
}
