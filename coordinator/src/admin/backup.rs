//! `GET /v1/snapshot` (admin): a consistent backup of the replicated fleet state, from the
//! leader. The leader waits until it has applied everything committed when the request arrived,
//! so the backup holds every write acknowledged before it was asked for.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::auth::Caller;
use super::state::AdminState;
use super::writes;
use crate::state::backup;

pub const PATH: &str = "/v1/snapshot";

pub fn routes() -> Router<Arc<AdminState>> {
    Router::new().route(PATH, get(snapshot))
}

async fn snapshot(caller: Caller, State(hub): State<Arc<AdminState>>) -> Response {
    if let Err(refusal) = caller.require_admin() {
        return refusal.into_response();
    }
    let status = match hub.raft.status().await {
        Ok(s) => s,
        Err(e) => return writes::propose_error(&hub, PATH, e),
    };
    if status.role != crate::raft::Role::Leader {
        return writes::to_leader(&hub, PATH, status.leader_id);
    }
    if let Err(e) = hub.raft.wait_applied(status.commit).await {
        return writes::propose_error(&hub, PATH, e);
    }
    let (index, state) = hub.raft.with_state(|s| (s.applied_index(), s.clone()));
    match backup::encode(index, &state) {
        Ok(bytes) => {
            tracing::info!(operator = %caller.name, index, bytes = bytes.len(), "snapshot saved");
            ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the state: {e}\n"),
        )
            .into_response(),
    }
}
