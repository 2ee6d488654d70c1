//! An in-process "network" of replicas ([`InProcessNetwork`]) with controllable link
//! failures, for tests, benchmarks and single-process coordinators. Production replicas talk
//! over QUIC (the cluster module's transport).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use raft::prelude::Message;
use tracing::trace;

use super::replica::ReplicaHandle;
use super::transport::Transport;

#[derive(Default)]
struct NetInner {
    replicas: HashMap<u64, ReplicaHandle>,
    /// Directed links `(from, to)` whose messages are dropped.
    blocked: HashSet<(u64, u64)>,
}

/// An in-process "network" of replicas connected by channels, where links can be cut.
#[derive(Clone, Default)]
pub struct InProcessNetwork {
    inner: Arc<Mutex<NetInner>>,
}

impl InProcessNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, NetInner> {
        // A panic while holding this lock cannot leave the maps half-updated in a way that
        // matters for a test network, so recover from poisoning.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The transport replica `from` sends through.
    pub fn transport(&self, from: u64) -> Arc<dyn Transport> {
        Arc::new(InProcessTransport {
            from,
            net: self.clone(),
        })
    }

    /// Makes replica `id` reachable (replacing any earlier registration with that id).
    pub fn register(&self, handle: ReplicaHandle) {
        self.lock().replicas.insert(handle.id(), handle);
    }

    /// Makes replica `id` unreachable, as if its process were gone.
    pub fn unregister(&self, id: u64) {
        self.lock().replicas.remove(&id);
    }

    /// Drops messages from `from` to `to` (one direction).
    pub fn block(&self, from: u64, to: u64) {
        self.lock().blocked.insert((from, to));
    }

    /// Cuts every link between `id` and the `others` (both directions).
    pub fn partition(&self, id: u64, others: &[u64]) {
        let mut inner = self.lock();
        for &o in others {
            inner.blocked.insert((id, o));
            inner.blocked.insert((o, id));
        }
    }

    /// Cuts replica `id` off from every other registered replica.
    pub fn isolate(&self, id: u64) {
        let others: Vec<u64> = self.lock().replicas.keys().copied().collect();
        self.partition(id, &others);
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.lock().blocked.clear();
    }
}

struct InProcessTransport {
    from: u64,
    net: InProcessNetwork,
}

impl Transport for InProcessTransport {
    fn send(&self, msgs: Vec<Message>) {
        let inner = self.net.lock();
        for m in msgs {
            if inner.blocked.contains(&(self.from, m.to)) {
                trace!(from = self.from, to = m.to, "link blocked; message dropped");
                continue;
            }
            match inner.replicas.get(&m.to) {
                // Dropping on a full queue or a stopped replica is what a lossy network does.
                Some(h) => {
                    let _ = h.step(m);
                }
                None => trace!(
                    from = self.from,
                    to = m.to,
                    "no such replica; message dropped"
                ),
            }
        }
    }
}
