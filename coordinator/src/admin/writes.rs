//! What every replicated operator write shares: sending a writer to the leader when this
//! replica is not it, and turning a failed proposal into an answer.

use std::sync::atomic::Ordering;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::state::AdminState;
use crate::raft::ProposeError;

/// The answer to a committed write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteAck {
    /// Raft index the write was applied at.
    pub index: u64,
}

/// A follower sends writers to the leader's operator API. (Writes are proposed without checking
/// the cached leader view first: Raft itself answers NotLeader, so a just-elected leader whose
/// view lags by a poll interval still accepts them.)
pub fn to_leader(hub: &AdminState, path: &str, hint: Option<u64>) -> Response {
    match hint
        .or(hub.leader.leader_id())
        .and_then(|id| hub.leader.peers().get(id))
    {
        Some(p) if p.id != hub.leader.self_id() => {
            let mut headers = HeaderMap::new();
            if let Ok(v) = format!("https://{}{path}", p.admin_addr).parse() {
                headers.insert(header::LOCATION, v);
            }
            (
                StatusCode::TEMPORARY_REDIRECT,
                headers,
                format!(
                    "not the leader; the leader is {} at {}\n",
                    p.name, p.admin_addr
                ),
            )
                .into_response()
        }
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no leader known; retry shortly\n",
        )
            .into_response(),
    }
}

/// The answer to a proposal that did not commit.
pub fn propose_error(hub: &AdminState, path: &str, e: ProposeError) -> Response {
    hub.metrics
        .proposals_failed_total
        .fetch_add(1, Ordering::Relaxed);
    match e {
        ProposeError::NotLeader { leader_hint } => to_leader(hub, path, leader_hint),
        ProposeError::Rejected { reason, .. } => {
            (StatusCode::CONFLICT, format!("rejected: {reason}\n")).into_response()
        }
        refused @ (ProposeError::MembershipRefused(_)
        | ProposeError::VotersUnreachable(_)
        | ProposeError::CannotRemoveLeader
        | ProposeError::ConfChangeInProgress) => {
            (StatusCode::CONFLICT, format!("{refused}\n")).into_response()
        }
        other => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not committed: {other}\n"),
        )
            .into_response(),
    }
}

/// The answer to a proposal: the ack when it committed, else [`propose_error`].
pub fn committed(hub: &AdminState, path: &str, result: Result<u64, ProposeError>) -> Response {
    match result {
        Ok(index) => {
            hub.metrics
                .proposals_committed_total
                .fetch_add(1, Ordering::Relaxed);
            axum::Json(WriteAck { index }).into_response()
        }
        Err(e) => propose_error(hub, path, e),
    }
}
