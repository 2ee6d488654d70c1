//! Replicated fleet policies: `GET /policy` (current values and the recent write log, any
//! operator) and `POST /policy` (admin; checked against the policy schema before it is proposed,
//! 400 with the reason, so nothing invalid reaches the log). The writer recorded is the caller's certificate name; a client-chosen `writer` label
//! only names a write-id space under it (`ops/chaos-writer`), so a retry keeps its idempotency
//! without anyone being able to write in another operator's name.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::state::AdminState;
use super::writes;
use crate::state::{Command, PolicyValue, validate_policy};

pub fn routes() -> Router<Arc<AdminState>> {
    Router::new().route("/policy", get(policies).post(write_policy))
}

/// Replicated policies and their write log (in commit order).
async fn policies(_: Caller, State(hub): State<Arc<AdminState>>) -> Json<serde_json::Value> {
    let (current, log) = hub
        .raft
        .with_state(|s| (s.policies().clone(), s.policy_log().clone()));
    Json(serde_json::json!({ "policies": current, "log": log }))
}

/// An operator's write: `{"key": ..., "value": number|string|null, "write_id": n}` and an
/// optional `"writer"` label (see the module comment).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyWriteRequest {
    pub key: String,
    pub value: serde_json::Value,
    #[serde(default)]
    pub writer: Option<String>,
    pub write_id: u64,
}

/// The writer recorded for a write: the certificate's name, then the client's label if any.
pub fn writer_of(caller: &Caller, label: Option<&str>) -> String {
    match label.map(str::trim).filter(|l| !l.is_empty()) {
        Some(l) if l != caller.name => format!("{}/{l}", caller.name),
        _ => caller.name.clone(),
    }
}

fn bad_request(msg: &str) -> Response {
    (StatusCode::BAD_REQUEST, format!("{msg}\n")).into_response()
}

async fn write_policy(
    caller: Caller,
    State(hub): State<Arc<AdminState>>,
    Json(req): Json<PolicyWriteRequest>,
) -> Response {
    if let Err(refusal) = caller.require_admin() {
        return refusal.into_response();
    }
    let value = match req.value {
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(v) if v.is_finite() => PolicyValue::Number(v),
            _ => return bad_request("value must be a finite number, a string or null"),
        },
        serde_json::Value::String(s) => PolicyValue::Text(s),
        serde_json::Value::Null => PolicyValue::Unset,
        _ => return bad_request("value must be a finite number, a string or null"),
    };
    let label = req.writer.as_deref().unwrap_or("");
    if label.len() > 64 {
        return bad_request("the writer label must be at most 64 bytes");
    }
    let writer = writer_of(&caller, req.writer.as_deref());
    // The state machine checks the same again when the entry applies.
    if let Err(reason) = validate_policy(&req.key, &value, &writer) {
        return bad_request(&reason);
    }
    let cmd = Command::SetPolicy {
        key: req.key,
        value,
        writer,
        write_id: req.write_id,
    };
    let result = hub.raft.propose(cmd).await;
    if result.is_ok() {
        hub.replan.notify_one();
    }
    writes::committed(&hub, "/policy", result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use net::identity::OperatorRole;

    #[test]
    fn the_writer_is_always_the_certificate_name_first() {
        let caller = Caller {
            name: "alice".into(),
            role: OperatorRole::Admin,
        };
        assert_eq!(writer_of(&caller, None), "alice");
        assert_eq!(writer_of(&caller, Some("  ")), "alice");
        assert_eq!(writer_of(&caller, Some("alice")), "alice");
        assert_eq!(writer_of(&caller, Some("bob")), "alice/bob");
    }
}
