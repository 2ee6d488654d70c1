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

/// Deadlines on node streams: the next frame within 30 s (telemetry comes every second), the
/// rest of a frame within 10 s of its first byte.
pub const NODE_STREAM: Deadlines = Deadlines {
    idle: Duration::from_secs(30),
    frame: Duration::from_secs(10),
};

/// A token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes a token if one is there (refilled for the time since the last call, as of `now`).
    pub fn try_take_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn try_take(&mut self) -> bool {
        self.try_take_at(Instant::now())
    }
}

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
    fn bucket(self) -> TokenBucket {
        match self {
            Rated::Telemetry => TokenBucket::new(20.0, 40.0),
            Rated::Results => TokenBucket::new(30.0, 60.0),
            Rated::Blob => TokenBucket::new(64.0, 1024.0),
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

    /// Whether `node` may send one more `what` now.
    pub fn allow(&self, node: &str, what: Rated) -> bool {
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
            .or_insert_with(|| what.bucket())
            .try_take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let mut b = TokenBucket::new(10.0, 3.0);
        let t0 = Instant::now();
        assert!((0..3).all(|_| b.try_take_at(t0)));
        assert!(!b.try_take_at(t0), "burst spent");
        assert!(
            b.try_take_at(t0 + Duration::from_millis(100)),
            "one token per 100 ms"
        );
        assert!(!b.try_take_at(t0 + Duration::from_millis(150)));
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| b.try_take_at(later)));
        assert!(!b.try_take_at(later));
    }

    #[test]
    fn a_flood_is_refused_and_counted_per_identity() {
        let limits = NodeLimits::default();
        let allowed = (0..1000)
            .filter(|_| limits.allow("rogue", Rated::Telemetry))
            .count();
        assert!(allowed <= 45, "allowed {allowed}");
        assert!(
            limits.allow("honest", Rated::Telemetry),
            "another identity has its own bucket"
        );
    }
}
