//! The replica's soft state (leader, role) and progress (term, commit, applied), published by
//! the driver on a `watch` channel whenever a loop turn changed it, so the rest of the
//! coordinator learns of a leadership change as soon as Raft makes it instead of polling.

use raft::StateRole;
use serde::Serialize;

use super::types::Role;

/// What the driver publishes after every turn that changed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RaftView {
    /// The leader this replica knows of.
    pub leader_id: Option<u64>,
    /// This replica's role.
    pub role: Role,
    /// Current term.
    pub term: u64,
    /// Commit index.
    pub commit: u64,
    /// Applied index.
    pub applied: u64,
}

impl RaftView {
    /// A replica that has not run a turn yet.
    pub(crate) fn initial(applied: u64) -> Self {
        RaftView {
            leader_id: None,
            role: Role::Follower,
            term: 0,
            commit: applied,
            applied,
        }
    }
}

pub(crate) fn role_of(state: StateRole) -> Role {
    match state {
        StateRole::Follower => Role::Follower,
        StateRole::PreCandidate => Role::PreCandidate,
        StateRole::Candidate => Role::Candidate,
        StateRole::Leader => Role::Leader,
    }
}
