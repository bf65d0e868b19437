//! Bearer-key authentication: admin keys, agent keys (optionally acting for a user with `X-User-Id`) and user
//! tokens. Keys are random secrets stored only as SHA-256 hashes. Another agent's resources answer 404, exactly as if
//! they did not exist.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::Utc;
use sha2::{Digest, Sha256};
use sundial_core::{Authority, Scope, Scopes};
use sundial_scheduler::Caller;
use sundial_store::{new_id, ApiKey, Store};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// Hex SHA-256 of a secret.
pub fn hash_key(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A new random secret: `sk_` and 40 hex digits (160 bits).
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 20];
    if getrandom::fill(&mut bytes).is_err() {
        // The OS source failing is not recoverable for a credential: fall back to ids, which also carry OS entropy
        // when it works again, and time otherwise.
        return format!("{prefix}_{}", new_id("k").replace('_', ""));
    }
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{prefix}_{hex}")
}

/// Creates and stores a key; answers the stored key and its secret (shown once).
pub async fn create_key(
    store: &dyn Store,
    agent_id: Option<&str>,
    user_id: Option<&str>,
    admin: bool,
    secret: Option<String>,
) -> ApiResult<(ApiKey, String)> {
    create_scoped_key(store, agent_id, user_id, admin, secret, None, None).await
}

/// Creates and stores a key limited to `scopes` (all when `None`) until `expires_at` (for ever when `None`).
pub async fn create_scoped_key(
    store: &dyn Store,
    agent_id: Option<&str>,
    user_id: Option<&str>,
    admin: bool,
    secret: Option<String>,
    scopes: Option<Vec<String>>,
    expires_at: Option<chrono::DateTime<Utc>>,
) -> ApiResult<(ApiKey, String)> {
    let prefix = if user_id.is_some() { "ut" } else { "sk" };
    let secret = secret.unwrap_or_else(|| new_secret(prefix));
    let key = ApiKey {
        id: new_id("key"),
        agent_id: agent_id.map(str::to_owned),
        user_id: user_id.map(str::to_owned),
        admin,
        hash: hash_key(&secret),
        created_at: Utc::now(),
        scopes,
        expires_at,
    };
    store.key_insert(&key).await?;
    Ok((key, secret))
}

/// What a user token may be limited to, named by `scopes` when it is minted.
pub const SCOPES: [&str; 3] = ["jobs", "data", "products"];

/// The scope a request path needs from a scoped user token: jobs, executions and schedule previews need `jobs`, the
/// agent's data collections `data`, its products `products`. Other paths (the token's own user record and
/// conversation) need none.
fn scope_of_path(path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["developer", "jobs", ..] => Some("jobs"),
        ["v1" | "developer", "agents", _, section, ..] => match *section {
            "jobs" | "executions" | "preview" => Some("jobs"),
            "data" | "custom-data" => Some("data"),
            "products" => Some("products"),
            _ => None,
        },
        _ => None,
    }
}

/// The authenticated credential of a request.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The stored key.
    pub key: ApiKey,
    /// `X-User-Id`, when given.
    pub acting_user: Option<String>,
}

impl Principal {
    /// Whether this is an admin key.
    pub fn is_admin(&self) -> bool {
        self.key.admin
    }

    /// Whether this is a user token (acts only as its user).
    pub fn is_user_token(&self) -> bool {
        self.key.user_id.is_some()
    }

    /// The caller for `agent_id`, or 404 when this credential has no access to that agent.
    pub async fn caller_for(&self, state: &AppState, agent_id: &str) -> ApiResult<Caller> {
        let allowed = self.key.admin || self.key.agent_id.as_deref() == Some(agent_id);
        if !allowed {
            return Err(ApiError::not_found("agent"));
        }
        if self.key.admin && self.key.agent_id.as_deref() != Some(agent_id) {
            state.engine.store().agent_get(agent_id).await?.ok_or_else(|| ApiError::not_found("agent"))?;
        }
        match (&self.key.user_id, &self.acting_user) {
            (Some(token_user), Some(header)) if token_user != header => {
                Err(ApiError::forbidden("a user token acts only as its own user"))
            }
            (Some(token_user), _) => Ok(Caller {
                agent_id: agent_id.to_owned(),
                user_id: Some(token_user.clone()),
                authority: Authority::User(self.scopes()),
            }),
            (None, header) => Ok(Caller::agent_for_user(agent_id, header.clone())),
        }
    }

    /// What a user token may reach of the agent (every scope when it was minted without `scopes`).
    pub fn scopes(&self) -> Scopes {
        match &self.key.scopes {
            None => Scopes::ALL,
            Some(names) => Scopes::of(names.iter().filter_map(|name| Scope::parse(name))),
        }
    }

    /// Refuses user tokens (agent-level operations such as minting tokens or managing keys).
    pub fn require_agent_key(&self) -> ApiResult<()> {
        if self.is_user_token() {
            return Err(ApiError::forbidden("this operation needs an agent key, not a user token"));
        }
        Ok(())
    }

    /// Refuses anything but an admin key.
    pub fn require_admin(&self) -> ApiResult<()> {
        if !self.key.admin {
            return Err(ApiError::forbidden("this operation needs the admin key"));
        }
        Ok(())
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing API key: send Authorization: Bearer <key>"))?;
        let text = header
            .to_str()
            .map_err(|_| ApiError::unauthorized("invalid API key: the Authorization header is not text"))?;
        let secret = text
            .strip_prefix("Bearer ")
            .or_else(|| text.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|secret| !secret.is_empty())
            .ok_or_else(|| ApiError::unauthorized("missing API key: send Authorization: Bearer <key>"))?;
        let key = state
            .engine
            .store()
            .key_find(&hash_key(secret))
            .await?
            .ok_or_else(|| ApiError::unauthorized("invalid API key (unknown or revoked)"))?;
        if let Some(expires_at) = key.expires_at.filter(|expires_at| *expires_at <= Utc::now()) {
            return Err(ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "token_expired",
                format!("this token expired at {}; mint a new one", sundial_core::wire::instant(expires_at)),
            ));
        }
        if let (Some(scopes), Some(needed)) = (&key.scopes, scope_of_path(parts.uri.path())) {
            if !scopes.iter().any(|scope| scope == needed) {
                return Err(ApiError::new(
                    axum::http::StatusCode::FORBIDDEN,
                    "insufficient_scope",
                    format!("this token's scopes ({}) do not include {needed:?}", scopes.join(", ")),
                ));
            }
        }
        let acting_user = match parts.headers.get("x-user-id") {
            None => None,
            Some(value) => {
                let user = value.to_str().map_err(|_| {
                    ApiError::new(axum::http::StatusCode::BAD_REQUEST, "invalid_request", "X-User-Id: must be text")
                })?;
                crate::validate_user_id(user, "X-User-Id")?;
                Some(user.to_owned())
            }
        };
        Ok(Principal { key, acting_user })
    }
}
