//! `POST /members` (admin): add or remove a coordinator replica. The leader refuses changes that
//! name an unknown replica or would leave the group unable to commit (409 with the reason; see
//! `raft/driver/membership.rs`); `"force": true` allows shrinking below three voters.

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
use crate::raft::ProposeError;

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
    let deadline = tokio::time::Instant::now() + IN_PROGRESS_WAIT;
    let result = loop {
        let result = match (req.add, req.remove) {
            (Some(id), None) if hub.leader.peers().get(id).is_some() => {
                hub.raft.add_member(id).await
            }
            (None, Some(id)) => hub.raft.remove_member_forced(id, req.force).await,
            (Some(id), None) => return not_a_peer(id),
            _ => {
                return (
                    StatusCode::BAD_REQUEST,
                    "give exactly one of add or remove\n",
                )
                    .into_response();
            }
        };
        // Changes apply one at a time, and a newly elected leader counts its first entry as a
        // change in progress until it commits, and its followers as unreachable until they
        // answer (milliseconds): wait for that rather than send the operator a conflict that
        // is not one. A replica that stays unreachable is still refused, after the wait.
        match result {
            Err(ProposeError::ConfChangeInProgress | ProposeError::VotersUnreachable(_))
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(IN_PROGRESS_RETRY).await;
            }
            result => break result,
        }
    };
    tracing::info!(operator = %caller.name, ?req, "membership change");
    writes::committed(&hub, "/members", result)
}

/// How long a change waits for the one in progress to apply, or for the voters it needs to be
/// heard from, before it is refused (409).
const IN_PROGRESS_WAIT: Duration = Duration::from_secs(3);
const IN_PROGRESS_RETRY: Duration = Duration::from_millis(50);

fn not_a_peer(id: u64) -> Response {
    (
        StatusCode::BAD_REQUEST,
        format!("replica {id} is not in --peers; every replica must know its peers' addresses\n"),
    )
        .into_response()
}
