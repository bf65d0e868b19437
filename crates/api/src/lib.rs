//! Sundial's HTTP API: the native `/v1` routes, authentication, stable error codes, the OpenAPI document,
//! health checks and Prometheus metrics, served by hyper within connection limits ([`net`]).
//!
//! Handlers are thin: they authenticate, parse, call the [`Engine`], and shape the answer with the wire views of
//! `sundial_core::wire`.

pub mod auth;
pub mod contract;
mod data_routes;
pub mod error;
mod lua;
mod mcp;
mod native;
pub mod net;
mod openapi;
mod ui;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use serde_json::Value;
use sundial_core::FieldError;
use sundial_scheduler::Engine;

pub use error::{ApiError, ApiResult};
pub use net::{serve, ConnectionLimits, Network};

/// The largest request body accepted (bigger bodies get 413 `payload_too_large`).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Past this, an oversized body is no longer read to its end: the connection is closed after the 413.
const MAX_DRAINED_BYTES: usize = 64 * 1024 * 1024;

/// How the server treats its clients: the configured admin key, where it is reached, the proxies it trusts, and how
/// long dashboard sessions last.
#[derive(Clone, Debug)]
pub struct ApiOptions {
    /// The admin key set with `SUNDIAL_API_KEY`: compared in memory, never stored.
    pub admin_key: Option<String>,
    /// The URL clients reach the server at (`https://…` makes the dashboard's cookies `Secure`, `__Host-`).
    pub public_url: Option<String>,
    /// Proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed.
    pub trusted_proxies: Vec<Network>,
    /// How long a dashboard session lasts after sign-in, however active.
    pub session_lifetime: Duration,
    /// Failed authentications one client address may make per minute before it is refused with 429.
    pub auth_failures_per_minute: u32,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            admin_key: None,
            public_url: None,
            trusted_proxies: Vec::new(),
            session_lifetime: Duration::from_secs(12 * 3600),
            auth_failures_per_minute: 30,
        }
    }
}

/// Put on an answer that shows a secret (a new key or token): it is never stored for an idempotent replay, which
/// answers `secret_shown_once` instead.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SecretShown;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Engine,
    /// How the server treats its clients.
    pub(crate) options: Arc<ApiOptions>,
    /// Failed authentications by client address.
    pub(crate) throttle: Arc<auth::Throttle>,
    /// Bundle upload URLs handed out to `lua push`.
    pub(crate) uploads: lua::Uploads,
    /// The dashboard's sessions.
    pub(crate) ui: ui::UiState,
}

/// A JSON request body: any content type, parsed into a `Value`; bad JSON is a 400 `invalid_json` naming the place.
/// An empty body reads as `{}` (lua-cli's routes and optional bodies); see [`Body`] for a body that is required.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(JsonBody(read_json(request).await?.unwrap_or_else(|| Value::Object(Default::default()))))
    }
}

/// A required JSON request body: as [`JsonBody`], but an empty body is a 400 `invalid_request` (`body: is required`).
pub struct Body(pub Value);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        match read_json(request).await? {
            Some(value) => Ok(Body(value)),
            None => Err(FieldError::new("body", "is required: send a JSON body").into()),
        }
    }
}

/// Reads a JSON body (`None` when it is empty), within [`MAX_BODY_BYTES`]. A body of whitespace alone is not JSON.
async fn read_json(request: Request) -> Result<Option<Value>, ApiError> {
    // Sized once from the announced length (within the cap), so a large body is not copied as it grows.
    let announced = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_BODY_BYTES);
    let mut stream = request.into_body().into_data_stream();
    let mut bytes = Vec::with_capacity(announced);
    let mut received = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", format!("body: cannot be read: {error}"))
        })?;
        received += chunk.len();
        if received <= MAX_BODY_BYTES {
            bytes.extend_from_slice(&chunk);
        } else if received > MAX_DRAINED_BYTES {
            break;
        }
        // Past the limit, keep reading (and dropping) so the client can finish sending and read the 413.
    }
    if received > MAX_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("body: must be at most {MAX_BODY_BYTES} bytes"),
        ));
    }
    if bytes.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|error| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("body: invalid JSON: {error}")))
}

/// Checks a user id from a path or header: 1–200 characters, no control characters.
pub fn validate_user_id(user_id: &str, field: &str) -> Result<(), ApiError> {
    if user_id.is_empty() || user_id.chars().count() > 200 || user_id.chars().any(char::is_control) {
        return Err(FieldError::new(field, "must be 1 to 200 characters without control characters").into());
    }
    Ok(())
}

/// The router of every route, with state, and default options.
pub fn router(engine: Engine) -> Router {
    router_with(engine, ApiOptions::default())
}

/// The router of every route, with state.
pub fn router_with(engine: Engine, options: ApiOptions) -> Router {
    let throttle = Arc::new(auth::Throttle::new(options.auth_failures_per_minute));
    let state = AppState {
        engine,
        options: Arc::new(options),
        throttle,
        uploads: lua::Uploads::default(),
        ui: ui::UiState::default(),
    };
    let (native, document) = native_routes().split_for_parts();
    let document = Arc::new(openapi::served(&openapi::finish(document)));
    let api = Router::new()
        .route("/healthz", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(move || async move { axum::Json(document.as_ref().clone()) }))
        .merge(native)
        .merge(lua::routes())
        .merge(data_routes::lua_routes())
        .merge(ui::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "route_not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route")
        })
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(state.clone(), idempotency))
        .layer(axum::middleware::from_fn_with_state(state.clone(), ui::secure_cookies))
        .with_state(state);
    let mcp = mcp::endpoint(api.clone());
    api.route_service("/mcp", mcp)
}

/// The native `/v1` routes with their description, from which `/v1/openapi.json` is derived.
fn native_routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::with_openapi(openapi::base())
        .merge(native::routes())
        .merge(data_routes::routes())
}

/// The OpenAPI document of the native API (what `/v1/openapi.json` answers).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    openapi::finish(native_routes().split_for_parts().1)
}

/// The longest `X-Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 200;

/// Deduplicates POSTs carrying `X-Idempotency-Key` (lua-cli sends one per logical call and reuses it on retries):
/// the first answer (unless a server error) is stored per key id, path and idempotency key, and a repeat gets it again
/// without running anything. Replays go only to a credential that authenticates now (a revoked key gets nothing
/// back), and an answer that showed a secret is never stored: its replay says the secret was shown once.
async fn idempotency(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut request: Request,
    next: axum::middleware::Next,
) -> Response {
    let key = request
        .headers()
        .get("x-idempotency-key")
        .and_then(|value| value.to_str().ok())
        .filter(|key| !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY)
        .map(str::to_owned);
    let Some(key) = key.filter(|_| request.method() == axum::http::Method::POST) else {
        return next.run(request).await;
    };
    let (mut parts, body) = request.into_parts();
    let address = net::client_address(&parts, &state.options);
    let credential = match auth::bearer(&parts.headers) {
        Ok(secret) if state.throttle.check(address).is_ok() => auth::lookup(&state, secret).await,
        _ => Ok(None),
    };
    let credential = match credential {
        Ok(Some(credential)) => credential,
        // Unauthenticated: the route answers it (401, 429), and nothing is replayed or stored.
        Ok(None) => return next.run(Request::from_parts(parts, body)).await,
        Err(error) => return error.into_response(),
    };
    parts.extensions.insert(auth::Authenticated(credential.clone()));
    request = Request::from_parts(parts, body);
    let scope = format!("{}|{}", credential.id, request.uri().path());
    let store = state.engine.store();
    match store.idempotency_get(&scope, &key).await {
        Ok(Some((status, body))) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut response = (status, body).into_response();
            let headers = response.headers_mut();
            headers.insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
            headers.insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
            return response;
        }
        Ok(None) => {}
        Err(error) => return ApiError::from(error).into_response(),
    }
    let response = next.run(request).await;
    if response.status().is_server_error() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, 16 * MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(error) => {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("cannot buffer answer: {error}"),
            )
            .into_response();
        }
    };
    let (status, stored) = if parts.extensions.get::<SecretShown>().is_some() {
        let refusal = ApiError::new(
            StatusCode::CONFLICT,
            "secret_shown_once",
            "this request made a secret, shown once in its first answer and never again; make a new one",
        );
        let body = serde_json::json!({"code": refusal.code, "message": refusal.message, "statusCode": 409});
        (refusal.status.as_u16(), body.to_string())
    } else {
        (parts.status.as_u16(), String::from_utf8_lossy(&bytes).into_owned())
    };
    if let Err(error) = store.idempotency_put(&scope, &key, status, &stored, state.engine.now()).await {
        tracing::warn!(%error, "cannot store idempotent answer");
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

async fn ready(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    // A cheap question the store must answer (the earliest next slot, from the head of an index).
    match state.engine.store().next_slot_at().await {
        Ok(_) => {
            axum::Json(serde_json::json!({"status": "ready", "node": state.engine.config().node_id})).into_response()
        }
        Err(error) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", error.to_string()).into_response(),
    }
}

async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let text = state.engine.metrics_text().await;
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
