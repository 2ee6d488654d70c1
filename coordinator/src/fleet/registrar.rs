//! The replicated node registry's writer: the leader records a node the first time it joins (or
//! when its class changes) without holding up its session, and registrations that arrive while
//! one is being committed go together in the next `RegisterNodes` entry (group commit). A fleet
//! of thousands joining at once then costs a Raft round per batch instead of one per node (and
//! a snapshot per thousand entries: `snapshot_interval`), with no timer: a lone join is proposed
//! at once, and a batch is as large as what arrived during the previous commit.
//!
//! As before batching, a session is welcomed before its registration commits: the registry is
//! what the fleet has seen, not a gate on serving (planning reads the leader's soft state). A
//! batch whose proposal fails (leadership lost, timeout) is dropped with a warning; its nodes
//! are registered when they next join.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::raft::ReplicaHandle;
use crate::state::{Command, MAX_REGISTRATIONS, NodeRegistration};

/// Registrations waiting for a batch, all sessions together. Each identity holds one slot (a
/// node re-joining before its batch left replaces its entry), so only more distinct identities
/// than this joining within one commit are refused; the refused ones register on a later join.
pub const MAX_PENDING: usize = 64 * 1024;

/// What [`Registrar::register`] did with a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// The registry already holds the node with this class: nothing to write.
    Known,
    /// Queued for the next batch (or already queued).
    Queued,
    /// The queue is full ([`MAX_PENDING`]); nothing was written.
    Refused,
}

/// Queues registrations and commits them in batches; cheap to clone.
#[derive(Clone)]
pub struct Registrar {
    raft: ReplicaHandle,
    inner: Arc<Mutex<Pending>>,
    limit: usize,
}

#[derive(Default)]
struct Pending {
    /// node -> class, waiting for the next batch.
    nodes: BTreeMap<String, String>,
    /// A flush task is running; it takes what arrives until the queue is empty.
    flushing: bool,
}

impl Registrar {
    pub fn new(raft: ReplicaHandle) -> Self {
        Self::with_limit(raft, MAX_PENDING)
    }

    /// A registrar whose queue holds at most `limit` nodes (tests abuse a small one).
    pub fn with_limit(raft: ReplicaHandle, limit: usize) -> Self {
        Registrar {
            raft,
            inner: Arc::default(),
            limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // Every update of `Pending` is a single map or flag write: a panic elsewhere while the
        // lock was held leaves it consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records node `id` of class `class` in the replicated registry unless it is there
    /// already; returns at once (the write happens in the background).
    pub fn register(&self, id: &str, class: &str) -> Registration {
        let known = self
            .raft
            .with_state(|s| s.nodes().get(id).is_some_and(|n| n.device_class == class));
        if known {
            return Registration::Known;
        }
        let mut pending = self.lock();
        if !pending.nodes.contains_key(id) && pending.nodes.len() >= self.limit {
            drop(pending);
            tracing::warn!(node = %id, limit = self.limit, "registration queue full; the node registers when it next joins");
            return Registration::Refused;
        }
        pending.nodes.insert(id.to_owned(), class.to_owned());
        if !pending.flushing {
            pending.flushing = true;
            tokio::spawn(self.clone().flush());
        }
        Registration::Queued
    }

    /// Commits batches until the queue is empty, one entry in flight at a time: what arrives
    /// meanwhile makes the next batch.
    async fn flush(self) {
        loop {
            let batch = {
                let mut pending = self.lock();
                if pending.nodes.is_empty() {
                    pending.flushing = false;
                    return;
                }
                take_batch(&mut pending.nodes)
            };
            let count = batch.len();
            if let Err(e) = self
                .raft
                .propose(Command::RegisterNodes { nodes: batch })
                .await
            {
                tracing::warn!(nodes = count, error = %e, "could not register nodes in the replicated registry");
            }
        }
    }

    /// Nodes waiting for a batch.
    pub fn pending(&self) -> usize {
        self.lock().nodes.len()
    }
}

/// Takes up to [`MAX_REGISTRATIONS`] nodes off the queue.
fn take_batch(nodes: &mut BTreeMap<String, String>) -> Vec<NodeRegistration> {
    let mut batch = Vec::with_capacity(nodes.len().min(MAX_REGISTRATIONS));
    while batch.len() < MAX_REGISTRATIONS {
        let Some((node_id, device_class)) = nodes.pop_first() else {
            break;
        };
        batch.push(NodeRegistration {
            node_id,
            device_class,
        });
    }
    batch
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;
    use crate::raft::testing::InProcessNetwork;
    use crate::raft::{Replica, ReplicaConfig, Role};

    async fn leader(dir: &std::path::Path) -> ReplicaHandle {
        let raft = Replica::start_with_shutdown(
            1,
            &[1],
            dir,
            InProcessNetwork::new().transport(1),
            ReplicaConfig {
                tick_interval: Duration::from_millis(10),
                ..ReplicaConfig::default()
            },
            tokio_util::sync::CancellationToken::new(),
        )
        .unwrap();
        let mut view = raft.raft_view();
        view.wait_for(|v| v.role == Role::Leader).await.unwrap();
        raft
    }

    async fn settled(registrar: &Registrar) {
        while registrar.pending() > 0 || registrar.lock().flushing {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A burst larger than a batch and than the queue: the queue's bound refuses the excess
    /// (and nothing of it is written), the rest is committed in entries of at most
    /// `MAX_REGISTRATIONS`, and a known node is not written again.
    #[tokio::test]
    async fn a_burst_of_joins_commits_in_bounded_batches_and_the_queue_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let raft = leader(dir.path()).await;
        let limit = 2 * MAX_REGISTRATIONS + 10;
        let registrar = Registrar::with_limit(raft.clone(), limit);
        // Nothing yields in between, so the whole burst queues before the first batch leaves.
        for i in 0..limit {
            let r = registrar.register(&format!("n{i:05}"), "phone");
            assert_eq!(r, Registration::Queued);
        }
        assert_eq!(
            registrar.register("n00000", "tablet"),
            Registration::Queued,
            "a queued node may change its class"
        );
        assert_eq!(
            registrar.register("one-too-many", "phone"),
            Registration::Refused
        );
        settled(&registrar).await;
        let nodes = raft.with_state(|s| s.nodes().clone());
        assert_eq!(nodes.len(), limit);
        assert_eq!(nodes["n00000"].device_class, "tablet");
        assert!(!nodes.contains_key("one-too-many"));
        // Three entries (1024 + 1024 + 10), not one per node.
        let entries: std::collections::BTreeSet<u64> =
            nodes.values().map(|n| n.registered_at).collect();
        assert_eq!(entries.len(), 3, "{entries:?}");
        let first = nodes["n00001"].registered_at;
        assert_eq!(
            nodes[&format!("n{:05}", MAX_REGISTRATIONS - 1)].registered_at,
            first
        );
        assert_eq!(
            nodes[&format!("n{MAX_REGISTRATIONS:05}")].registered_at,
            first + 1
        );

        assert_eq!(registrar.register("n00001", "phone"), Registration::Known);
        assert_eq!(
            registrar.register("one-too-many", "phone"),
            Registration::Queued
        );
        settled(&registrar).await;
        let late = raft.with_state(|s| s.nodes()["one-too-many"].registered_at);
        assert_eq!(late, first + 3, "one entry for the late join");
        assert_eq!(
            raft.with_state(|s| s.nodes()["n00001"].registered_at),
            first
        );
    }
}
