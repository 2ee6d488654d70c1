//! `POST /v1/leader {"to": "coord-2"}` (admin): moves leadership to the named replica, e.g.
//! before maintenance on the leader's host (`mcdnnctl cluster move-leader coord-2`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::state::AdminState;
use super::writes;

pub const PATH: &str = "/v1/leader";
/// A transfer completes within an election timeout or it has failed.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(3);

pub fn routes() -> Router<Arc<AdminState>> {
    Router::new().route(PATH, post(move_leader))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MoveLeader {
    /// The replica's name.
    pub to: String,
}

async fn move_leader(
    caller: Caller,
    State(hub): State<Arc<AdminState>>,
    Json(req): Json<MoveLeader>,
) -> Response {
    if let Err(refusal) = caller.require_admin() {
        return refusal.into_response();
    }
    let Some(target) = hub
        .leader
        .peers()
        .0
        .values()
        .find(|p| p.name == req.to)
        .cloned()
    else {
        return (
            StatusCode::BAD_REQUEST,
            format!("{} is not a replica of this cluster\n", req.to),
        )
            .into_response();
    };
    let status = match hub.raft.status().await {
        Ok(s) => s,
        Err(e) => return writes::propose_error(&hub, PATH, e),
    };
    if status.role != crate::raft::Role::Leader {
        // Only the leader can hand leadership over.
        return writes::to_leader(&hub, PATH, status.leader_id);
    }
    if !status.voters.contains(&target.id) {
        return (
            StatusCode::CONFLICT,
            format!("{} is not a voter; only a voter can lead\n", target.name),
        )
            .into_response();
    }
    if status.leader_id == Some(target.id) {
        return (StatusCode::OK, format!("{} already leads\n", target.name)).into_response();
    }
    if let Err(e) = hub.raft.transfer_leader(target.id).await {
        return writes::propose_error(&hub, PATH, e);
    }
    tracing::info!(operator = %caller.name, to = %target.name, "leadership transfer asked");
    let deadline = tokio::time::Instant::now() + TRANSFER_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        if hub
            .raft
            .status()
            .await
            .is_ok_and(|s| s.leader_id == Some(target.id))
        {
            return (StatusCode::OK, format!("{} leads now\n", target.name)).into_response();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (
        StatusCode::GATEWAY_TIMEOUT,
        format!(
            "{} did not take over within {TRANSFER_TIMEOUT:?} (is it caught up and reachable?)\n",
            target.name
        ),
    )
        .into_response()
}
