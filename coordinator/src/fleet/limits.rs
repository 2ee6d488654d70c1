//! What one node identity may cost the coordinator: one live connection (a new one replaces and
//! closes the older), and token-bucket rates for telemetry, result batches and blob requests.
//! Excess is dropped or refused and counted, never queued (a result batch over the rate ends the
//! session, so the node resends it from its last ack), so a misbehaving or stolen device cannot
//! crowd out the rest of the fleet.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use net::framing::Deadlines;

use crate::rate::TokenBucket;

/// Deadlines on node streams: the next frame within 30 s (telemetry comes every second), the
/// rest of a frame within 10 s of its first byte.
pub const NODE_STREAM: Deadlines = Deadlines {
    idle: Duration::from_secs(30),
    frame: Duration::from_secs(10),
};

/// What a node message costs against its identity's rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rated {
    /// One telemetry report (1/s by default; 20/s allowed).
    Telemetry,
    /// One result batch (every 100 ms at most by the node; 30/s allowed).
    Results,
    /// One blob request (a 256 KiB shard; 64/s, bursts of 1024 for a first model fetch).
    Blob,
}

impl Rated {
    fn bucket(self, now: Instant) -> TokenBucket {
        match self {
            Rated::Telemetry => TokenBucket::new(20.0, 40.0, now),
            Rated::Results => TokenBucket::new(30.0, 60.0, now),
            Rated::Blob => TokenBucket::new(64.0, 1024.0, now),
        }
    }
}

/// Per identity: the live connection and the rate buckets.
#[derive(Default)]
struct PerNode {
    /// Connection id and connection of the newest session.
    live: Option<(u64, quinn::Connection)>,
    buckets: HashMap<&'static str, TokenBucket>,
}

/// Connections and rates of every node identity (leader soft state). Buckets are kept per
/// identity across reconnects (so reconnecting does not refill them); identities are enrolled
/// certificates, so the map is bounded by the fleet's size.
#[derive(Default)]
pub struct NodeLimits {
    nodes: Mutex<HashMap<String, PerNode>>,
    next_conn: AtomicU64,
}

impl NodeLimits {
    fn nodes(&self) -> std::sync::MutexGuard<'_, HashMap<String, PerNode>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `conn` the one live connection of `node`, closing the one it replaces. Returns the
    /// id to pass to [`Self::release`] and whether an older connection was closed.
    pub fn admit(&self, node: &str, conn: &quinn::Connection) -> (u64, bool) {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed) + 1;
        let old = self
            .nodes()
            .entry(node.to_string())
            .or_default()
            .live
            .replace((id, conn.clone()));
        let replaced = old.is_some();
        if let Some((_, old)) = old {
            tracing::info!(%node, "a new connection replaces the node's older one");
            old.close(
                2u32.into(),
                b"replaced by a newer session of the same identity",
            );
        }
        (id, replaced)
    }

    /// Forgets connection `id` of `node` if it is still the live one.
    pub fn release(&self, node: &str, id: u64) {
        let mut nodes = self.nodes();
        if let Some(n) = nodes.get_mut(node)
            && n.live.as_ref().is_some_and(|(live, _)| *live == id)
        {
            n.live = None;
        }
    }

    /// Whether `node` may send one more `what` at `now`.
    pub fn allow(&self, node: &str, what: Rated, now: Instant) -> bool {
        let key = match what {
            Rated::Telemetry => "telemetry",
            Rated::Results => "results",
            Rated::Blob => "blob",
        };
        self.nodes()
            .entry(node.to_string())
            .or_default()
            .buckets
            .entry(key)
            .or_insert_with(|| what.bucket(now))
            .try_take_at(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_refused_and_counted_per_identity() {
        let limits = NodeLimits::default();
        let now = Instant::now();
        let allowed = (0..1000)
            .filter(|_| limits.allow("rogue", Rated::Telemetry, now))
            .count();
        assert!(allowed <= 45, "allowed {allowed}");
        assert!(
            limits.allow("honest", Rated::Telemetry, now),
            "another identity has its own bucket"
        );
    }
}
