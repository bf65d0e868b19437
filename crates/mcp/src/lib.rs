//! Sundial over the Model Context Protocol: tools a model calls to schedule work for the person it talks with
//! (`schedule_reminder`, `schedule_job`, `preview_schedule`, `list_jobs`, `get_job`, `pause_job`, `resume_job`,
//! `run_job_now`, `delete_job`).
//!
//! Two transports share one tool set: stdio ([`serve_stdio`], `sundial mcp`), which reaches a server over HTTP with
//! a configured credential, and streamable HTTP ([`http_service`], `/mcp` on `sundial serve`), where each request's
//! own `Authorization` (and `X-User-Id`) header is the credential. Either way every tool is a few calls of the `/v1`
//! API made as that caller ([`Backend`]): the user comes from the credential, never from a tool argument, and the
//! API's checks and guardrails hold for every tool.

mod tools;
pub mod when;

use std::sync::Arc;

use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult, ListToolsResult, ServerConfig, Tool};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, ServiceExt};
use serde_json::{json, Value};

/// Who a tool call acts as: the bearer credential and, for an agent key, the user it acts for.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The `Authorization` header's value (`Bearer …`).
    pub authorization: String,
    /// `X-User-Id`: the user an agent key acts for (a user token's own user needs none).
    pub user_id: Option<String>,
}

/// Sends `/v1` API requests as a caller: over HTTP for `sundial mcp`, in process for `/mcp` on the server.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Sends `method path` with `body` as `credentials`; answers the status and the JSON body (`null` when empty).
    async fn request(
        &self,
        credentials: &Credentials,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String>;
}

/// A [`Backend`] that reaches a Sundial server over HTTP.
pub struct HttpBackend {
    client: reqwest::Client,
    base: String,
}

impl HttpBackend {
    /// A backend for the server at `url` (`http://127.0.0.1:7777`).
    pub fn new(url: &str) -> HttpBackend {
        HttpBackend { client: reqwest::Client::new(), base: url.trim_end_matches('/').to_owned() }
    }
}

#[async_trait::async_trait]
impl Backend for HttpBackend {
    async fn request(
        &self,
        credentials: &Credentials,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|error| error.to_string())?;
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("authorization", &credentials.authorization)
            .timeout(std::time::Duration::from_secs(30));
        if let Some(user) = &credentials.user_id {
            request = request.header("x-user-id", user);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|error| error.to_string())?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|error| error.to_string())?;
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        Ok((status, body))
    }
}

/// The MCP server: its tools, acting through a [`Backend`].
#[derive(Clone)]
pub struct SundialMcp {
    backend: Arc<dyn Backend>,
    /// The credential of every call (stdio); `None` takes each HTTP request's own headers.
    fixed: Option<Credentials>,
}

impl SundialMcp {
    /// A server whose calls act as `credentials` (stdio).
    pub fn with_credentials(backend: Arc<dyn Backend>, credentials: Credentials) -> SundialMcp {
        SundialMcp { backend, fixed: Some(credentials) }
    }

    /// A server whose calls act as the headers of the HTTP request that carries them (`/mcp`).
    pub fn from_requests(backend: Arc<dyn Backend>) -> SundialMcp {
        SundialMcp { backend, fixed: None }
    }

    fn credentials(&self, context: &RequestContext<RoleServer>) -> Result<Credentials, ErrorData> {
        if let Some(credentials) = &self.fixed {
            return Ok(credentials.clone());
        }
        let parts = context
            .extensions
            .get::<http::request::Parts>()
            .ok_or_else(|| ErrorData::internal_error("the request carries no HTTP headers", None))?;
        let header = |name: &str| parts.headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_owned);
        let authorization = header("authorization")
            .ok_or_else(|| ErrorData::invalid_request("send the Sundial key as `Authorization: Bearer <key>`", None))?;
        Ok(Credentials { authorization, user_id: header("x-user-id") })
    }
}

impl ServerHandler for SundialMcp {
    fn get_info(&self) -> ServerConfig {
        let info = json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {"tools": {"listChanged": false}},
            "serverInfo": {"name": "sundial", "title": "Sundial", "version": env!("CARGO_PKG_VERSION")},
            "instructions": "Sundial schedules work for the user you are talking with: reminders (schedule_reminder), \
                code on a schedule (schedule_job), and the jobs they made (list_jobs, get_job, pause_job, resume_job, \
                run_job_now, delete_job). Pass the user's own wall-clock time and IANA zone and let Sundial convert; \
                say back the scheduleDescription and next run each answer gives. Pass a dedupKey per user request so \
                that a repeated call never makes a second job."
        });
        serde_json::from_value(info).unwrap_or_default()
    }

    async fn list_tools(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools: Vec<Tool> =
            tools::definitions().iter().cloned().map(serde_json::from_value).collect::<Result<_, _>>().map_err(
                |error| ErrorData::internal_error(format!("a tool definition does not parse: {error}"), None),
            )?;
        Ok(ListToolsResult { tools, ..ListToolsResult::default() })
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools::definition(name).and_then(|tool| serde_json::from_value(tool.clone()).ok())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if tools::definition(&request.name).is_none() {
            return Err(ErrorData::invalid_params(format!("there is no tool {:?}", request.name), None));
        }
        let credentials = self.credentials(&context)?;
        let arguments = request.arguments.unwrap_or_default();
        let result = match tools::call(self.backend.as_ref(), &credentials, &request.name, arguments).await {
            Ok(answer) => json!({
                "content": [{"type": "text", "text": answer.summary}],
                "structuredContent": answer.structured,
                "isError": false,
            }),
            Err(error) => json!({
                "content": [{"type": "text", "text": format!("{}: {}", error.code, error.message)}],
                "isError": true,
            }),
        };
        let result: CallToolResult = serde_json::from_value(result)
            .map_err(|error| ErrorData::internal_error(format!("a tool result does not parse: {error}"), None))?;
        Ok(result.into())
    }
}

/// Serves MCP over stdin and stdout until the client closes them, acting as `credentials` against `backend`.
pub async fn serve_stdio(backend: Arc<dyn Backend>, credentials: Credentials) -> Result<(), String> {
    let server = SundialMcp::with_credentials(backend, credentials)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|error| format!("MCP session did not start: {error}"))?;
    server.waiting().await.map_err(|error| format!("MCP session ended with an error: {error}"))?;
    Ok(())
}

/// The streamable HTTP endpoint (mount it at `/mcp`): stateless JSON responses, each request's `Authorization`
/// (and `X-User-Id`) header its credential. Any `Host` is accepted: every call needs a Sundial key, which a page
/// that rebinds a name to this server does not have.
pub fn http_service(backend: Arc<dyn Backend>) -> StreamableHttpService<SundialMcp, LocalSessionManager> {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .disable_allowed_hosts();
    StreamableHttpService::new(
        move || Ok(SundialMcp::from_requests(backend.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}
