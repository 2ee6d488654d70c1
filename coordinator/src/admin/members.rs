//! `POST /members` (admin): add or remove a coordinator replica. The leader refuses changes that
//! name an unknown replica or would leave the group unable to commit (409 with the reason; see
//! `raft/driver/membership.rs`); `"force": true` allows shrinking below three voters.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::state::AdminState;
use super::writes;

pub fn routes() -> Router<Arc<AdminState>> {
    Router::new().route("/members", post(members))
}

/// `{"add": id}` or `{"remove": id}` (with `"force": true` to shrink below three voters).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberChange {
    #[serde(default)]
    pub add: Option<u64>,
    #[serde(default)]
    pub remove: Option<u64>,
    #[serde(default)]
    pub force: bool,
}

async fn members(
    caller: Caller,
    State(hub): State<Arc<AdminState>>,
    Json(req): Json<MemberChange>,
) -> Response {
    if let Err(refusal) = caller.require_admin() {
        return refusal.into_response();
    }
    let result = match (req.add, req.remove) {
        (Some(id), None) if hub.leader.peers().get(id).is_some() => hub.raft.add_member(id).await,
        (None, Some(id)) => hub.raft.remove_member_forced(id, req.force).await,
        (Some(id), None) => {
            return (
                StatusCode::BAD_REQUEST,
                format!(
                    "replica {id} is not in --peers; every replica must know its peers' addresses\n"
                ),
            )
                .into_response();
        }
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "give exactly one of add or remove\n",
            )
                .into_response();
        }
    };
    tracing::info!(operator = %caller.name, ?req, "membership change");
    writes::committed(&hub, "/members", result)
}
