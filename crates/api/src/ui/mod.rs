//! The dashboard at `/ui`: jobs, a job, an execution, users and their conversations, the system — rendered on the
//! server with `maud` (which escapes every value it prints), readable without JavaScript.
//!
//! - **Sign-in** with an agent or admin key, exchanged for a session cookie (`HttpOnly`, `SameSite=Strict`, path
//!   `/ui`; over HTTPS — a `https://` public URL, or `X-Forwarded-Proto: https` from a trusted proxy — `Secure`,
//!   named `__Host-…`, path `/`); the key never appears in a URL, and every request checks it again (a revoked key
//!   ends its sessions). A session ends after its lifetime (12 h by default), however active. Failed sign-ins count
//!   against the client address like failed API keys. User tokens are refused. Sessions live in the node's memory.
//! - **Forms** carry the session's CSRF token; sign-in carries a token of its own (double submit). Every action that
//!   changes a job goes through a confirmation page.
//! - **Headers**: a strict Content-Security-Policy (scripts and styles from `/ui/assets` only, no inline script),
//!   `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin`, no framing.
//! - **Live lists**: `/ui/events` (Server-Sent Events) says when executions or messages changed; `app.js` (a few KB)
//!   then fetches the page again and swaps its `#live` region, and closes the stream while the tab is hidden. It also
//!   shows instants in the viewer's own zone.

/// The viewer of a request, or of a form's POST whose CSRF token must match the session's; otherwise returns the
/// answer to send instead (the sign-in page, or the refusal).
macro_rules! signed_in {
    ($state:expr, $headers:expr) => {
        match viewer(&$state, &$headers).await {
            Ok(viewer) => viewer,
            Err(response) => return response,
        }
    };
    ($state:expr, $headers:expr, $form:expr) => {
        match form_viewer(&$state, &$headers, &$form).await {
            Ok(viewer) => viewer,
            Err(response) => return response,
        }
    };
}

mod pages;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use sundial_scheduler::Caller;
use sundial_store::ApiKey;

use crate::AppState;

/// How long a session lasts without use (its lifetime ends it anyway).
const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// The session cookie.
const SESSION_COOKIE: &str = "sundial_session";
/// The sign-in form's double-submit cookie.
const LOGIN_COOKIE: &str = "sundial_login";
/// The most sessions a node keeps (the oldest go first).
const MAX_SESSIONS: usize = 10_000;

/// The dashboard's state: its sessions.
#[derive(Clone, Default)]
pub(crate) struct UiState {
    sessions: Arc<Mutex<HashMap<String, Session>>>,
    pub(crate) lateness: Arc<Mutex<pages::LatenessSamples>>,
}

#[derive(Clone)]
struct Session {
    /// The id of the key it was opened with (checked again on every request).
    key_id: String,
    csrf: String,
    agent_id: String,
    opened: Instant,
    last_used: Instant,
}

impl Session {
    /// Whether the session still holds: within its lifetime and not idle too long.
    fn live(&self, lifetime: Duration) -> bool {
        self.opened.elapsed() < lifetime && self.last_used.elapsed() < SESSION_IDLE
    }
}

/// Who is looking: the key, the agent shown, and the session's CSRF token.
pub(crate) struct Viewer {
    pub(crate) key: ApiKey,
    pub(crate) agent_id: String,
    pub(crate) csrf: String,
}

impl Viewer {
    /// The caller the engine sees: the agent, as an agent key (every user's jobs).
    pub(crate) fn caller(&self) -> Caller {
        Caller::agent(self.agent_id.clone())
    }
}

/// The `/ui` routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(pages::jobs))
        .route("/ui/", get(|| async { Redirect::to("/ui") }))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/agent", post(switch_agent))
        .route("/ui/jobs/{job_id}", get(pages::job))
        .route("/ui/jobs/{job_id}/confirm/{action}", get(pages::confirm))
        .route("/ui/jobs/{job_id}/{action}", post(pages::act))
        .route("/ui/executions/{execution_id}", get(pages::execution))
        .route("/ui/users", get(pages::users))
        .route("/ui/users/{user_id}", get(pages::user))
        .route("/ui/system", get(pages::system))
        .route("/ui/events", get(pages::events))
        .route("/ui/assets/app.js", get(|| async { asset("text/javascript; charset=utf-8", include_str!("app.js")) }))
        .route("/ui/assets/app.css", get(|| async { asset("text/css; charset=utf-8", include_str!("app.css")) }))
        .layer(axum::middleware::from_fn(security_headers))
}

/// The name a cookie has over HTTPS: the `__Host-` prefix binds it to this host, path `/` and `Secure`.
const SECURE_PREFIX: &str = "__Host-";

/// Over HTTPS, the dashboard's cookies are `Secure` and `__Host-` prefixed: on the way in, a `__Host-` cookie is read
/// under its plain name (and a plain one, which a non-secure origin could have planted, is dropped); on the way
/// out, every cookie the dashboard sets gets the prefix, `Secure` and path `/`. Handlers know only the plain names.
pub(crate) async fn secure_cookies(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    if !parts.uri.path().starts_with("/ui") || !crate::net::over_https(&parts, &state.options) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let cookies: Vec<String> = parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(SECURE_PREFIX).map(str::to_owned))
        .collect();
    parts.headers.remove(header::COOKIE);
    if let Ok(value) = HeaderValue::from_str(&cookies.join("; ")) {
        parts.headers.insert(header::COOKIE, value);
    }
    let mut response = next.run(Request::from_parts(parts, body)).await;
    let set: Vec<HeaderValue> = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| {
            let secured = format!("{SECURE_PREFIX}{}; Secure", value.replace("; Path=/ui;", "; Path=/;"));
            HeaderValue::from_str(&secured).ok()
        })
        .collect();
    response.headers_mut().remove(header::SET_COOKIE);
    for value in set {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// The headers every dashboard answer carries.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A random token (hex, 160 bits).
fn token() -> String {
    crate::auth::new_secret("t").trim_start_matches("t_").to_owned()
}

/// The value of cookie `name`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

fn set_cookie(name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let age = max_age.map(|seconds| format!("; Max-Age={seconds}")).unwrap_or_default();
    HeaderValue::from_str(&format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Strict{age}"))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Answers the viewer of a request, or where to send a visitor who is not signed in.
pub(crate) async fn viewer(state: &AppState, headers: &HeaderMap) -> Result<Viewer, Response> {
    let to_login = || Redirect::to("/ui/login").into_response();
    let Some(id) = cookie(headers, SESSION_COOKIE) else { return Err(to_login()) };
    let session = {
        let mut sessions = state.ui.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match sessions.get_mut(&id) {
            Some(session) if session.live(state.options.session_lifetime) => {
                session.last_used = Instant::now();
                session.clone()
            }
            Some(_) => {
                sessions.remove(&id);
                return Err(to_login());
            }
            None => return Err(to_login()),
        }
    };
    let key = match crate::auth::key_by_id(state, &session.key_id).await {
        Ok(Some(key)) if usable(&key) => key,
        Ok(_) => {
            state.ui.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
            return Err(to_login());
        }
        Err(error) => return Err(error.into_response()),
    };
    Ok(Viewer { key, agent_id: session.agent_id, csrf: session.csrf })
}

/// Whether a key may open the dashboard: an agent or admin key that has not expired.
fn usable(key: &ApiKey) -> bool {
    key.user_id.is_none() && key.expires_at.is_none_or(|expires_at| expires_at > chrono::Utc::now())
}

/// The viewer of a form's POST: signed in, with the session's CSRF token in the form.
pub(crate) async fn form_viewer(
    state: &AppState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Viewer, Response> {
    let viewer = viewer(state, headers).await?;
    match check_csrf(&viewer, form) {
        Some(refused) => Err(refused),
        None => Ok(viewer),
    }
}

/// Checks a form's CSRF token against the session's: answers the refusal when it does not match.
fn check_csrf(viewer: &Viewer, form: &HashMap<String, String>) -> Option<Response> {
    match form.get("csrf") {
        Some(token) if constant_time_eq(token.as_bytes(), viewer.csrf.as_bytes()) => None,
        _ => {
            let body =
                page_without_session("Refused", message_body("The form is stale: reload the page and try again."));
            Some((StatusCode::FORBIDDEN, body).into_response())
        }
    }
}

use crate::auth::constant_time_eq;

async fn login_form() -> Response {
    login_page(None)
}

fn login_page(error: Option<&str>) -> Response {
    let csrf = token();
    let body = html! {
        section.login {
            h1 { "Sign in to Sundial" }
            p { "Paste an agent key or the admin key. It is exchanged for a session cookie and never shown in a URL." }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form method="post" action="/ui/login" {
                input type="hidden" name="csrf" value=(csrf);
                label { "Key " input type="password" name="key" autocomplete="off" required autofocus; }
                button type="submit" { "Sign in" }
            }
        }
    };
    let status = if error.is_some() { StatusCode::UNAUTHORIZED } else { StatusCode::OK };
    let mut response = (status, page_without_session("Sign in", body)).into_response();
    response.headers_mut().append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, &csrf, Some(600)));
    response
}

async fn login(
    State(state): State<AppState>,
    peer: Option<axum::Extension<crate::net::Peer>>,
    headers: HeaderMap,
    form: axum::Form<HashMap<String, String>>,
) -> Response {
    let sent = form.get("csrf").map(String::as_str).unwrap_or_default();
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if sent.is_empty() || !constant_time_eq(sent.as_bytes(), expected.as_bytes()) {
        return login_page(Some("The sign-in form expired; try again."));
    }
    let secret = form.get("key").map(|key| key.trim()).unwrap_or_default();
    if secret.is_empty() {
        return login_page(Some("Paste a key."));
    }
    let address = crate::net::client_address_of(&headers, peer.map(|peer| peer.0), &state.options);
    if let Err(retry_after) = state.throttle.check(address) {
        let mut response = login_page(Some(&format!(
            "Too many failed sign-ins from this address: try again in {retry_after} seconds."
        )));
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let key = match crate::auth::lookup(&state, secret).await {
        Ok(Some(key)) => key,
        Ok(None) => {
            state.throttle.failed(address);
            return login_page(Some("Unknown or revoked key."));
        }
        Err(error) => return error.into_response(),
    };
    if key.user_id.is_some() {
        return login_page(Some("A user token cannot open the dashboard: sign in with an agent key or the admin key."));
    }
    if !usable(&key) {
        return login_page(Some("This key has expired."));
    }
    let session = Session {
        key_id: key.id.clone(),
        csrf: token(),
        agent_id: key.agent_id.clone().unwrap_or_else(|| "default".to_owned()),
        opened: Instant::now(),
        last_used: Instant::now(),
    };
    let id = token();
    {
        let mut sessions = state.ui.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        sessions.retain(|_, session| session.live(state.options.session_lifetime));
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions.iter().min_by_key(|(_, session)| session.last_used).map(|(id, _)| id.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id.clone(), session);
    }
    let mut response = Redirect::to("/ui").into_response();
    response.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &id, None));
    response.headers_mut().append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", Some(0)));
    response
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: axum::Form<HashMap<String, String>>,
) -> Response {
    // Only the session's own form signs it out.
    let _viewer = signed_in!(state, headers, form);
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        state.ui.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
    }
    let mut response = Redirect::to("/ui/login").into_response();
    response.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", Some(0)));
    response
}

/// The admin key switches the agent it looks at.
async fn switch_agent(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: axum::Form<HashMap<String, String>>,
) -> Response {
    let viewer = signed_in!(state, headers, form);
    let Some(agent) = form.get("agent").filter(|_| viewer.key.admin) else {
        return Redirect::to("/ui").into_response();
    };
    if let Ok(Some(agent)) = state.engine.store().agent_get(agent).await {
        if let Some(id) = cookie(&headers, SESSION_COOKIE) {
            if let Some(session) =
                state.ui.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_mut(&id)
            {
                session.agent_id = agent.id;
            }
        }
    }
    Redirect::to("/ui").into_response()
}

/// A page of the signed-in dashboard: navigation, the agent, and `body` in `#live` when `live`.
pub(crate) fn page(viewer: &Viewer, title: &str, live: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Sundial" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/ui/assets/app.css";
                script src="/ui/assets/app.js" defer {}
            }
            body data-live=[live.then_some("1")] {
                header {
                    nav {
                        a.brand href="/ui" { "Sundial" }
                        a href="/ui" { "Jobs" }
                        a href="/ui/users" { "Users" }
                        a href="/ui/system" { "System" }
                    }
                    div.who {
                        span { "agent " strong { (viewer.agent_id) } @if viewer.key.admin { " (admin key)" } }
                        form method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(viewer.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="live" { (body) }
            }
        }
    }
}

/// A page outside a session (sign-in, errors).
fn page_without_session(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Sundial" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/ui/assets/app.css";
            }
            body { main { (body) } }
        }
    }
}

fn message_body(text: &str) -> Markup {
    html! { p { (text) } }
}

/// An error page inside the dashboard.
pub(crate) fn error_page(viewer: &Viewer, status: StatusCode, text: &str) -> Response {
    (
        status,
        page(
            viewer,
            "Error",
            false,
            html! { h1 { (status.canonical_reason().unwrap_or("Error")) } p.error { (text) } },
        ),
    )
        .into_response()
}

/// JSON, pretty and escaped, for a `<pre>`.
pub(crate) fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}
