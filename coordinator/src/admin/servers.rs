//! `POST /v1/nodes/{name}/server` (`mcdnnctl node approve-server NAME [--revoke]`): an admin
//! operator approves or withdraws a node for the offload-server role. The approval is replicated
//! (`Command::SetServerApproval`, recorded with the operator's certificate name); the planner
//! only ever names approved servers as offload targets, so a device certificate claiming the
//! role in its hello gets nothing by it.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::state::AdminState;
use super::writes;
use crate::state::Command;

/// Body of the approval write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerApprovalRequest {
    /// `false` withdraws an approval.
    pub approved: bool,
}

pub fn routes() -> Router<Arc<AdminState>> {
    Router::new().route("/v1/nodes/{name}/server", post(set_approval))
}

async fn set_approval(
    caller: Caller,
    State(hub): State<Arc<AdminState>>,
    Path(name): Path<String>,
    Json(req): Json<ServerApprovalRequest>,
) -> Response {
    if let Err(refusal) = caller.require_admin() {
        return refusal.into_response();
    }
    if let Err(e) = net::identity::validate_name(&name) {
        return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
    }
    let cmd = Command::SetServerApproval {
        node_id: name.clone(),
        approved: req.approved,
        by: caller.name,
    };
    let result = hub.raft.propose(cmd).await;
    if result.is_ok() {
        hub.replan.notify_one();
    }
    writes::committed(&hub, &format!("/v1/nodes/{name}/server"), result)
}
