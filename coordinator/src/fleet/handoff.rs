//! What the fleet side does when this replica's leadership changes
//! ([`crate::cluster::leader::LeadershipHooks`]): a new leader records the catalog it serves; a
//! deposed one sends its node sessions to the new leader.

use std::sync::Arc;

use super::catalog::FleetCatalog;
use super::registry::Nodes;
use crate::cluster::leader::{LeaderWatch, LeadershipHooks};
use crate::raft::ReplicaHandle;
use crate::state::Command;

pub struct Handoff {
    pub nodes: Nodes,
    pub leader: LeaderWatch,
    pub raft: ReplicaHandle,
    pub catalog: Arc<FleetCatalog>,
}

impl LeadershipHooks for Handoff {
    fn gained(&self) {
        publish_catalog_index(&self.raft, &self.catalog);
    }

    fn lost(&self) {
        redirect_sessions(&self.nodes, &self.leader);
    }
}

/// Tells every connected node where the leader is (or that there is none yet) and forgets its
/// session here.
pub fn redirect_sessions(nodes: &Nodes, leader: &LeaderWatch) {
    let msg = leader.redirect_message();
    let mut registry = nodes.lock();
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

/// A new leader records the catalog it serves (its manifest's digest and every model file's) in
/// the replicated catalog index, if the index differs, so every replica and operator sees which
/// catalog the fleet runs.
fn publish_catalog_index(raft: &ReplicaHandle, catalog: &FleetCatalog) {
    let digests = catalog.index_digests();
    if raft.with_state(|s| s.catalog_digests() == digests.as_slice()) {
        return;
    }
    let raft = raft.clone();
    tokio::spawn(async move {
        if let Err(e) = raft.propose(Command::SetCatalogIndex { digests }).await {
            tracing::warn!(error = %e, "could not record the catalog index");
        }
    });
}
