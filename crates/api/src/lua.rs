//! lua-cli's wire protocol (reference: lua-cli 3.37.0): `/developer/jobs/…` and the user routes, answered in the
//! `{success, data}` envelope, so the published client works against Sundial unchanged.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::AppState;

/// A success answer in lua-cli's envelope.
pub(crate) fn ok(data: Value) -> Response {
    ok_status(StatusCode::OK, data)
}

/// A success answer in lua-cli's envelope with another status (201 …).
pub(crate) fn ok_status(status: StatusCode, data: Value) -> Response {
    (status, Json(json!({"success": true, "data": data}))).into_response()
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
}
