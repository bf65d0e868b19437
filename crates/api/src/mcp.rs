//! `/mcp`: Sundial's MCP tools over streamable HTTP (`sundial-mcp`), acting through this server's own routes in
//! process, as the credential of each request.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;

/// The largest API answer a tool reads.
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// The `/mcp` endpoint over `api` (this server's routes): a request without a valid Sundial key is answered as the
/// API answers one (401 with its code), before any MCP message is read.
pub(crate) fn endpoint(api: Router) -> axum::routing::MethodRouter {
    let service = sundial_mcp::http_service(Arc::new(RouterBackend { api: api.clone() }));
    axum::routing::any_service(service).layer(axum::middleware::from_fn_with_state(api, require_key))
}

/// Lets through requests whose credential the API accepts (`GET /v1/whoami`); answers the others with the API's
/// own error.
async fn require_key(State(api): State<Router>, request: Request, next: Next) -> Response {
    let mut check = axum::http::Request::builder().method("GET").uri("/v1/whoami");
    for name in ["authorization", "x-user-id"] {
        if let Some(value) = request.headers().get(name) {
            check = check.header(name, value);
        }
    }
    let Ok(mut check) = check.body(Body::empty()) else { return next.run(request).await };
    // The check counts against the client's failed authentications like any request of its own.
    if let Some(peer) = request.extensions().get::<crate::net::Peer>() {
        check.extensions_mut().insert(*peer);
    }
    let answer = match api.oneshot(check).await {
        Ok(answer) => answer,
        Err(never) => match never {},
    };
    if !answer.status().is_success() {
        return answer;
    }
    next.run(request).await
}

/// Calls this server's routes in process.
struct RouterBackend {
    api: Router,
}

#[async_trait::async_trait]
impl sundial_mcp::Backend for RouterBackend {
    async fn request(
        &self,
        credentials: &sundial_mcp::Credentials,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let mut request =
            axum::http::Request::builder().method(method).uri(path).header("authorization", &credentials.authorization);
        if let Some(user) = &credentials.user_id {
            request = request.header("x-user-id", user);
        }
        let body = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Body::from(serde_json::to_vec(&body).map_err(|error| error.to_string())?)
            }
            None => Body::empty(),
        };
        let request = request.body(body).map_err(|error| error.to_string())?;
        let answer = match self.api.clone().oneshot(request).await {
            Ok(answer) => answer,
            Err(never) => match never {},
        };
        let status = answer.status().as_u16();
        let bytes =
            axum::body::to_bytes(answer.into_body(), MAX_ANSWER_BYTES).await.map_err(|error| error.to_string())?;
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        Ok((status, body))
    }
}
