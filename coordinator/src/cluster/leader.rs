//! Who leads: a watcher follows the Raft driver's published soft state (leader, role) and
//! progress (term, commit, applied) as Raft changes them, publishes them for the rest of the
//! coordinator, counts leader changes, and when this replica stops leading sends its node
//! sessions to the new leader (a follower never serves or pushes plans).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;
use wire::msg::{CoordMsg, ErrorCode};

use crate::fleet::hub::Hub;
use crate::raft::{RaftView, Role};

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

/// Runs until cancelled, or until the Raft driver stops (its channel closes): then this
/// replica leads nobody and says so before returning.
pub async fn watch(hub: Arc<Hub>, cancel: CancellationToken) {
    let mut views = hub.raft.raft_view();
    let mut last_leader: Option<u64> = None;
    loop {
        let view = *views.borrow_and_update();
        follow(&hub, view, &mut last_leader);
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = views.changed() => if changed.is_err() {
                hub.leader.is_leader.store(false, Ordering::Release);
                hub.leader.leader_id.store(0, Ordering::Release);
                tracing::error!("the raft driver stopped; this replica no longer leads");
                return;
            }
        }
    }
}

/// Applies one published view: metrics, leadership and what a change of it requires.
fn follow(hub: &Arc<Hub>, status: RaftView, last_leader: &mut Option<u64>) {
    let view = &hub.leader;
    let leading = status.role == Role::Leader;
    let was_leading = view.is_leader.swap(leading, Ordering::AcqRel);
    view.leader_id
        .store(status.leader_id.unwrap_or(0), Ordering::Release);
    view.term.store(status.term, Ordering::Relaxed);
    view.commit.store(status.commit, Ordering::Relaxed);
    view.applied.store(status.applied, Ordering::Relaxed);
    if status.leader_id.is_some() && status.leader_id != *last_leader {
        view.leader_changes_total.fetch_add(1, Ordering::Relaxed);
        tracing::info!(leader = ?status.leader_id, term = status.term, me = hub.self_id, "leader changed");
        *last_leader = status.leader_id;
    }
    if leading && !was_leading {
        publish_catalog_index(hub);
    }
    if was_leading && !leading {
        tracing::warn!(
            term = status.term,
            "lost leadership; sending nodes to the new leader"
        );
        redirect_sessions(hub);
    }
}

/// Tells every connected node where the leader is (or that there is none yet) and forgets its
/// session here.
pub fn redirect_sessions(hub: &Hub) {
    let msg = redirect_message(hub);
    let mut registry = hub.registry();
    let ids: Vec<String> = registry
        .iter()
        .filter(|(_, e)| e.connected)
        .map(|(id, _)| id.clone())
        .collect();
    for id in ids {
        if let Some(e) = registry.get_mut(&id) {
            if let Some(tx) = e.tx.take() {
                let _ = tx.try_send(msg.clone());
            }
            e.connected = false;
        }
    }
}

/// Redirect to the leader's node endpoint, or "unavailable" while there is no leader.
pub fn redirect_message(hub: &Hub) -> CoordMsg {
    match hub.leader.leader_id().and_then(|id| hub.peers.get(id)) {
        Some(p) if p.id != hub.self_id => CoordMsg::Redirect {
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

/// A new leader records the catalog it serves (its manifest's digest and every model file's) in
/// the replicated catalog index, if the index differs, so every replica and operator sees which
/// catalog the fleet runs.
fn publish_catalog_index(hub: &Arc<Hub>) {
    let mut digests = vec![hub.catalog_digest.clone()];
    for v in &hub.manifest.variants {
        digests.push(v.trunk.sha256.clone());
        digests.extend(v.heads.iter().map(|h| h.file.sha256.clone()));
    }
    digests.sort();
    digests.dedup();
    if hub
        .raft
        .with_state(|s| s.catalog_digests() == digests.as_slice())
    {
        return;
    }
    let raft = hub.raft.clone();
    tokio::spawn(async move {
        if let Err(e) = raft
            .propose(crate::state::Command::SetCatalogIndex { digests })
            .await
        {
            tracing::warn!(error = %e, "could not record the catalog index");
        }
    });
}
