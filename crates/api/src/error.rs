//! The API's one error type: every failure becomes JSON `{code, message}` with a stable `code` and an HTTP status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sundial_core::FieldError;
use sundial_scheduler::{Denied, EngineError};
use sundial_store::StoreError;

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `invalid_schedule`, `job_not_found`.
    pub code: &'static str,
    /// Human-readable message, naming the field for bad input.
    pub message: String,
    /// The offending field, for validation errors.
    pub field: Option<String>,
    /// Seconds a client should wait (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with no field.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), field: None, retry_after: None }
    }

    /// 401: no or unknown credentials.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: known credentials that may not do this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 with `<what>_not_found`.
    pub fn not_found(what: &str) -> ApiError {
        let code = match what {
            "job" => "job_not_found",
            "version" => "version_not_found",
            "execution" => "execution_not_found",
            "agent" => "agent_not_found",
            "user" => "user_not_found",
            "key" => "key_not_found",
            _ => "not_found",
        };
        ApiError::new(StatusCode::NOT_FOUND, code, format!("{what} not found"))
    }

    /// 400 for a bad field.
    pub fn invalid(error: FieldError) -> ApiError {
        let code = match error.code {
            Some(code) => code,
            None if error.field.starts_with("schedule") => "invalid_schedule",
            None => "invalid_request",
        };
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code,
            message: error.to_string(),
            field: Some(error.field),
            retry_after: None,
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> Self {
        ApiError::invalid(error)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(what) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", format!("{what} already exists"))
            }
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", other.to_string())
            }
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::Invalid(field) => ApiError::invalid(field),
            EngineError::NotFound(what) => ApiError::not_found(what),
            EngineError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            EngineError::RateLimited { message, retry_after_seconds } => ApiError {
                retry_after: Some(retry_after_seconds),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
            },
            EngineError::QuotaExceeded(message) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", message)
            }
            EngineError::Denied(Denied::Hidden { what, .. }) => ApiError::not_found(what),
            EngineError::Denied(Denied::Scope { rule, .. }) => {
                ApiError::new(StatusCode::FORBIDDEN, "insufficient_scope", rule)
            }
            EngineError::Denied(Denied::Agent { rule }) => ApiError::forbidden(rule),
            EngineError::Store(store) => store.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "message": self.message, "statusCode": self.status.as_u16()});
        if let Some(field) = &self.field {
            body["field"] = json!(field);
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

/// Result alias of handlers.
pub type ApiResult<T> = Result<T, ApiError>;
