//! HTTP routes of the agent's `Data` collections and `Products`: lua-cli's paths and the native `/v1` ones.

use axum::Router;

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
}
