//! The offload server's queue and served count, for telemetry and the summary.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[derive(Debug, Default)]
struct Counters {
    queue: AtomicU32,
    served: AtomicU64,
}

/// Cheap to clone; the server writes, the link and the summary read.
#[derive(Debug, Clone, Default)]
pub struct OffloadCounters(Arc<Counters>);

impl OffloadCounters {
    pub fn set(&self, queue: u32, served: u64) {
        self.0.queue.store(queue, Ordering::Relaxed);
        self.0.served.store(served, Ordering::Relaxed);
    }

    /// Requests queued on this node's offload server.
    pub fn queue(&self) -> u32 {
        self.0.queue.load(Ordering::Relaxed)
    }

    /// Offload requests served since start.
    pub fn served(&self) -> u64 {
        self.0.served.load(Ordering::Relaxed)
    }
}
