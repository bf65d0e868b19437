//! Bearer-key authentication: admin keys, agent keys (optionally acting for a user with `X-User-Id`) and user
//! tokens. Another agent's resources answer 404, exactly as if they did not exist.
//!
//! - A key made by the server reads `sk_<id>_<secret>` (`ut_…` for user tokens): the store keeps its id and a salted
//!   SHA-256 of it, never the key. Keys made before salts (`sk_<secret>`) are still read by their plain SHA-256.
//! - The admin key set with `SUNDIAL_API_KEY` is configuration: it is compared in memory and never stored, so a
//!   restart with it always works and it cannot be revoked through the API (change the setting instead).
//! - Failed authentication is limited per client address ([`Throttle`]): past the limit, every attempt from that
//!   address is answered 429 with `Retry-After` before any key is looked at.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use chrono::Utc;
use sha2::{Digest, Sha256};
use sundial_core::{Authority, Scope, Scopes};
use sundial_scheduler::Caller;
use sundial_store::{new_id, ApiKey, Store};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// The id under which the admin key set with `SUNDIAL_API_KEY` acts (it is not stored).
pub const CONFIGURED_ADMIN_KEY_ID: &str = "key_configured";

/// Hex SHA-256 of some bytes.
fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Hex SHA-256 of a secret: how keys made before salts are stored.
pub fn hash_key(secret: &str) -> String {
    sha256_hex(secret.as_bytes())
}

/// `bytes` random bytes from the operating system, as hex.
fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    if getrandom::fill(&mut buffer).is_err() {
        // The OS source failing is not recoverable for a credential: fall back to ids, which also carry OS entropy
        // when it works again, and time otherwise.
        return (0..bytes.div_ceil(12)).map(|_| new_id("r").replace("r_", "")).collect::<String>()[..bytes * 2]
            .to_owned();
    }
    buffer.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A new random secret: `<prefix>_` and 40 hex digits (160 bits).
pub fn new_secret(prefix: &str) -> String {
    format!("{prefix}_{}", random_hex(20))
}

/// The stored check of a key made now: `s1:<salt>:<SHA-256 of salt and secret>`.
fn salted_hash(secret: &str) -> String {
    let salt = random_hex(16);
    format!("s1:{salt}:{}", sha256_hex(format!("{salt}{secret}").as_bytes()))
}

/// Whether `secret` is the secret of `key` as stored by [`salted_hash`].
fn salted_hash_matches(key: &ApiKey, secret: &str) -> bool {
    let Some((salt, digest)) = key.hash.strip_prefix("s1:").and_then(|rest| rest.split_once(':')) else {
        return false;
    };
    constant_time_eq(sha256_hex(format!("{salt}{secret}").as_bytes()).as_bytes(), digest.as_bytes())
}

/// Compares two byte strings in time that does not depend on where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |difference, (x, y)| difference | (x ^ y)) == 0
}

/// The key id a secret of the current form names (`sk_<24 hex>_<40 hex>` → `key_<24 hex>`).
fn key_id_of(secret: &str) -> Option<String> {
    let rest = secret.strip_prefix("sk_").or_else(|| secret.strip_prefix("ut_"))?;
    let (id, tail) = rest.split_once('_')?;
    let hex = |text: &str, length: usize| text.len() == length && text.bytes().all(|byte| byte.is_ascii_hexdigit());
    (hex(id, 24) && hex(tail, 40)).then(|| format!("key_{id}"))
}

/// Creates and stores a key; answers the stored key and its secret (shown once).
pub async fn create_key(
    store: &dyn Store,
    agent_id: Option<&str>,
    user_id: Option<&str>,
    admin: bool,
) -> ApiResult<(ApiKey, String)> {
    create_scoped_key(store, agent_id, user_id, admin, None, None).await
}

/// Creates and stores a key limited to `scopes` (all when `None`) until `expires_at` (for ever when `None`).
pub async fn create_scoped_key(
    store: &dyn Store,
    agent_id: Option<&str>,
    user_id: Option<&str>,
    admin: bool,
    scopes: Option<Vec<String>>,
    expires_at: Option<chrono::DateTime<Utc>>,
) -> ApiResult<(ApiKey, String)> {
    let prefix = if user_id.is_some() { "ut" } else { "sk" };
    let id = new_id("key");
    let secret = format!("{prefix}_{}_{}", id.trim_start_matches("key_"), random_hex(20));
    let key = ApiKey {
        id,
        agent_id: agent_id.map(str::to_owned),
        user_id: user_id.map(str::to_owned),
        admin,
        hash: salted_hash(&secret),
        created_at: Utc::now(),
        scopes,
        expires_at,
    };
    store.key_insert(&key).await?;
    Ok((key, secret))
}

/// The admin key set with `SUNDIAL_API_KEY`, as the key it acts as.
fn configured_admin_key() -> ApiKey {
    ApiKey {
        id: CONFIGURED_ADMIN_KEY_ID.into(),
        agent_id: Some("default".into()),
        user_id: None,
        admin: true,
        hash: String::new(),
        created_at: chrono::DateTime::<Utc>::UNIX_EPOCH,
        scopes: None,
        expires_at: None,
    }
}

/// The unrevoked key whose secret this is, if any; never counts a failure (see [`Throttle`]).
pub async fn lookup(state: &AppState, secret: &str) -> ApiResult<Option<ApiKey>> {
    if let Some(configured) = &state.options.admin_key {
        if constant_time_eq(configured.as_bytes(), secret.as_bytes()) {
            return Ok(Some(configured_admin_key()));
        }
    }
    let store = state.engine.store();
    match key_id_of(secret) {
        Some(id) => Ok(store.key_get(&id).await?.filter(|key| salted_hash_matches(key, secret))),
        None => Ok(store.key_find(&hash_key(secret)).await?.filter(|key| !key.hash.starts_with("s1:"))),
    }
}

/// The key with this id, as a session re-checks it.
pub async fn key_by_id(state: &AppState, key_id: &str) -> ApiResult<Option<ApiKey>> {
    if key_id == CONFIGURED_ADMIN_KEY_ID {
        return Ok(state.options.admin_key.as_ref().map(|_| configured_admin_key()));
    }
    Ok(state.engine.store().key_get(key_id).await?)
}

/// Failed authentications per client address: each address may fail `per_minute` times in a burst, and earns one
/// more try every `60 / per_minute` seconds; past that, it is refused with 429 before any key is looked at.
pub(crate) struct Throttle {
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

/// Addresses the throttle remembers at most (the fullest buckets are forgotten first).
const THROTTLE_ADDRESSES: usize = 100_000;

impl Throttle {
    pub(crate) fn new(per_minute: u32) -> Throttle {
        Throttle { per_minute: per_minute.max(1), buckets: Mutex::new(HashMap::new()) }
    }

    /// Tries left for `address` now, its bucket refilled for the time since it was last touched.
    fn level(&self, bucket: (f64, Instant), now: Instant) -> f64 {
        let rate = f64::from(self.per_minute) / 60.0;
        (bucket.0 + now.duration_since(bucket.1).as_secs_f64() * rate).min(f64::from(self.per_minute))
    }

    /// `Err` with the seconds to wait when `address` has used its tries.
    pub(crate) fn check(&self, address: Option<IpAddr>) -> Result<(), u64> {
        let Some(address) = address else { return Ok(()) };
        let buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(bucket) = buckets.get(&address) else { return Ok(()) };
        let level = self.level(*bucket, Instant::now());
        if level >= 1.0 {
            return Ok(());
        }
        let rate = f64::from(self.per_minute) / 60.0;
        Err(((1.0 - level) / rate).ceil().max(1.0) as u64)
    }

    /// Counts a failed authentication from `address`.
    pub(crate) fn failed(&self, address: Option<IpAddr>) {
        let Some(address) = address else { return };
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= THROTTLE_ADDRESSES && !buckets.contains_key(&address) {
            let full: Vec<IpAddr> = buckets
                .iter()
                .filter(|(_, bucket)| self.level(**bucket, now) >= f64::from(self.per_minute))
                .map(|(address, _)| *address)
                .collect();
            for address in full {
                buckets.remove(&address);
            }
        }
        let level = buckets.get(&address).map_or(f64::from(self.per_minute), |bucket| self.level(*bucket, now));
        buckets.insert(address, ((level - 1.0).max(0.0), now));
    }
}

/// The 429 of an address past its failed authentications.
pub(crate) fn throttled(retry_after: u64) -> ApiError {
    ApiError {
        retry_after: Some(retry_after),
        ..ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_failed_attempts",
            format!("too many failed authentications from this address; try again in {retry_after} s"),
        )
    }
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

/// A key the idempotency middleware already looked up for this request (so it is not looked up twice).
#[derive(Clone)]
pub(crate) struct Authenticated(pub(crate) ApiKey);

/// The bearer secret of a request's `Authorization` header.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> ApiResult<&str> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing API key: send Authorization: Bearer <key>"))?;
    let text =
        header.to_str().map_err(|_| ApiError::unauthorized("invalid API key: the Authorization header is not text"))?;
    text.strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|secret| !secret.is_empty())
        .ok_or_else(|| ApiError::unauthorized("missing API key: send Authorization: Bearer <key>"))
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let key = match parts.extensions.get::<Authenticated>() {
            Some(Authenticated(key)) => key.clone(),
            None => {
                let secret = bearer(&parts.headers)?;
                let address = crate::net::client_address(parts, &state.options);
                state.throttle.check(address).map_err(throttled)?;
                match lookup(state, secret).await? {
                    Some(key) => key,
                    None => {
                        state.throttle.failed(address);
                        return Err(ApiError::unauthorized("invalid API key (unknown or revoked)"));
                    }
                }
            }
        };
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
