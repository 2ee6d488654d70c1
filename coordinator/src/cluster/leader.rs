//! Who leads: a watcher follows the Raft driver's published soft state (leader, role) and
//! progress (term, commit, applied) as Raft changes them, publishes them for the rest of the
//! coordinator, counts leader changes, and tells a [`LeadershipHooks`] when this replica starts
//! or stops leading (the fleet then records its catalog, or sends its node sessions to the new
//! leader: a follower never serves or pushes plans).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;
use wire::msg::{CoordMsg, ErrorCode};

use super::peers::Peers;
use crate::raft::{RaftView, ReplicaHandle, Role};

/// The leadership view other tasks read without asking the Raft task.
#[derive(Debug, Default)]
pub struct LeaderView {
    /// 0 = no known leader.
    leader_id: AtomicU64,
    is_leader: AtomicBool,
    pub term: AtomicU64,
    pub commit: AtomicU64,
    pub applied: AtomicU64,
    pub leader_changes_total: AtomicU64,
}

impl LeaderView {
    pub fn leader_id(&self) -> Option<u64> {
        Some(self.leader_id.load(Ordering::Acquire)).filter(|&id| id != 0)
    }

    pub fn is_leader(&self) -> bool {
        self.is_leader.load(Ordering::Acquire)
    }
}

/// Who leads, with what is needed to point a client at the leader: cheap to clone, read by node
/// sessions, the solve loop and the operator API.
#[derive(Debug, Clone)]
pub struct LeaderWatch {
    view: Arc<LeaderView>,
    peers: Arc<Peers>,
    self_id: u64,
}

impl LeaderWatch {
    pub fn new(peers: Peers, self_id: u64) -> Self {
        LeaderWatch {
            view: Arc::default(),
            peers: Arc::new(peers),
            self_id,
        }
    }

    /// The published view (progress gauges and counters).
    pub fn view(&self) -> &LeaderView {
        &self.view
    }

    pub fn is_leader(&self) -> bool {
        self.view.is_leader()
    }

    pub fn leader_id(&self) -> Option<u64> {
        self.view.leader_id()
    }

    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    pub fn self_id(&self) -> u64 {
        self.self_id
    }

    /// This replica's name.
    pub fn self_name(&self) -> String {
        self.peers
            .get(self.self_id)
            .map_or_else(|| format!("replica-{}", self.self_id), |p| p.name.clone())
    }

    /// Redirect to the leader's node endpoint, or "unavailable" while there is no leader.
    pub fn redirect_message(&self) -> CoordMsg {
        match self.leader_id().and_then(|id| self.peers.get(id)) {
            Some(p) if p.id != self.self_id => CoordMsg::Redirect {
                leader_addr: p.node_addr.clone(),
            },
            _ => CoordMsg::Error {
                code: ErrorCode::Unavailable,
                message:
                    "this coordinator replica is not the leader and knows no leader yet; retry shortly"
                        .into(),
            },
        }
    }
}

/// What the rest of the replica does when leadership changes here.
pub trait LeadershipHooks: Send + Sync {
    /// This replica just became the leader.
    fn gained(&self);
    /// This replica just stopped leading (the view already says so).
    fn lost(&self);
}

/// Runs until cancelled, or until the Raft driver stops (its channel closes): then this
/// replica leads nobody and says so before returning.
pub async fn watch(
    raft: ReplicaHandle,
    leader: LeaderWatch,
    hooks: impl LeadershipHooks,
    cancel: CancellationToken,
) {
    let mut views = raft.raft_view();
    let mut last_leader: Option<u64> = None;
    loop {
        let view = *views.borrow_and_update();
        follow(&leader, &hooks, view, &mut last_leader);
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = views.changed() => if changed.is_err() {
                leader.view.is_leader.store(false, Ordering::Release);
                leader.view.leader_id.store(0, Ordering::Release);
                tracing::error!("the raft driver stopped; this replica no longer leads");
                return;
            }
        }
    }
}

/// Applies one published view: metrics, leadership and what a change of it requires.
fn follow(
    leader: &LeaderWatch,
    hooks: &impl LeadershipHooks,
    status: RaftView,
    last_leader: &mut Option<u64>,
) {
    let view = &leader.view;
    let leading = status.role == Role::Leader;
    let was_leading = view.is_leader.swap(leading, Ordering::AcqRel);
    view.leader_id
        .store(status.leader_id.unwrap_or(0), Ordering::Release);
    view.term.store(status.term, Ordering::Relaxed);
    view.commit.store(status.commit, Ordering::Relaxed);
    view.applied.store(status.applied, Ordering::Relaxed);
    if status.leader_id.is_some() && status.leader_id != *last_leader {
        view.leader_changes_total.fetch_add(1, Ordering::Relaxed);
        tracing::info!(leader = ?status.leader_id, term = status.term, me = leader.self_id, "leader changed");
        *last_leader = status.leader_id;
    }
    if leading && !was_leading {
        hooks.gained();
    }
    if was_leading && !leading {
        tracing::warn!(
            term = status.term,
            "lost leadership; sending nodes to the new leader"
        );
        hooks.lost();
    }
}
