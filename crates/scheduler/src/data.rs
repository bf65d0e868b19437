//! Host calls of job code for the agent's `Data` collections and `Products`.

use serde_json::Value;

use crate::engine::Engine;

/// Answers `Data.<method>` and `Products.<method>` host calls for the agent `agent_id`.
pub(crate) async fn host_call(_engine: &Engine, _agent_id: &str, method: &str, _args: Value) -> Result<Value, String> {
    Err(format!("{method} is not available on this server yet"))
}
