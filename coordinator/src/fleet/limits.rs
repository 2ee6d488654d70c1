//! What one node identity may cost the coordinator: one live connection (a new one replaces and
//! closes the older), and token-bucket rates for telemetry, result batches and blob requests.
//! Excess is dropped or refused and counted, never queued (a result batch over the rate ends the
//! session, so the node resends it from its last ack), so a misbehaving or stolen device cannot
//! crowd out the rest of the fleet.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use net::framing::Deadlines;
use wire::msg::SHARD_BYTES;

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
    /// One blob request (a 64 KiB shard; 256/s, bursts of 4096 for a first model fetch: 16 MiB/s
    /// and 256 MiB at once).
    Blob,
}

/// Telemetry reports a second the leader shares among its live node connections: each gets
/// `TELEMETRY_BUDGET / live`, within [`TELEMETRY_FLOOR`, `TELEMETRY_CAP`]. Under a flood from
/// every node the readers are then held to their share by their own buckets (and QUIC flow
/// control behind them) instead of racing for the CPU, where the connections whose packets
/// arrive first win. A 2-core machine running the coordinator and 1000 flooding virtual nodes
/// ingests 7 500-15 000 reports a second (`mcdnnctl bench telemetry`).
pub const TELEMETRY_BUDGET: f64 = 4000.0;
/// A node sends one report a second; twice that always passes, however large the fleet.
pub const TELEMETRY_FLOOR: f64 = 2.0;
/// What one identity may send when the fleet is small.
pub const TELEMETRY_CAP: f64 = 20.0;

/// Shard bytes one identity may ask for a second, and at once (a first model fetch): counted in
/// shard requests of [`SHARD_BYTES`], so a change of shard size keeps the byte rate.
const BLOB_BYTES_PER_S: usize = 16 << 20;
const BLOB_BURST_BYTES: usize = 256 << 20;

/// The telemetry rate of each identity while `live` connections share the budget.
pub fn telemetry_share(live: usize) -> f64 {
    (TELEMETRY_BUDGET / live.max(1) as f64).clamp(TELEMETRY_FLOOR, TELEMETRY_CAP)
}

impl Rated {
    const ALL: usize = 3;

    fn index(self) -> usize {
        match self {
            Rated::Telemetry => 0,
            Rated::Results => 1,
            Rated::Blob => 2,
        }
    }

    fn bucket(self, now: Instant) -> TokenBucket {
        match self {
            Rated::Telemetry => TokenBucket::new(TELEMETRY_CAP, 2.0 * TELEMETRY_CAP, now),
            Rated::Results => TokenBucket::new(30.0, 60.0, now),
            Rated::Blob => TokenBucket::new(
                (BLOB_BYTES_PER_S / SHARD_BYTES) as f64,
                (BLOB_BURST_BYTES / SHARD_BYTES) as f64,
                now,
            ),
        }
    }
}

/// What one identity's rate limiter let through and held back, per kind of message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Messages within the rate.
    pub accepted: u64,
    /// Messages over it (dropped, refused, or waited for a token).
    pub limited: u64,
}

/// Per identity: the live connection, the rate buckets and what they decided.
#[derive(Default)]
struct PerNode {
    /// Connection id and connection of the newest session.
    live: Option<(u64, quinn::Connection)>,
    buckets: [Option<TokenBucket>; Rated::ALL],
    tallies: [Tally; Rated::ALL],
}

impl PerNode {
    fn bucket(&mut self, what: Rated, now: Instant) -> &mut TokenBucket {
        self.buckets[what.index()].get_or_insert_with(|| what.bucket(now))
    }

    fn count(&mut self, what: Rated, accepted: bool) {
        let tally = &mut self.tallies[what.index()];
        if accepted {
            tally.accepted += 1;
        } else {
            tally.limited += 1;
        }
    }
}

/// Connections and rates of every node identity (leader soft state). Buckets are kept per
/// identity across reconnects (so reconnecting does not refill them); identities are enrolled
/// certificates, so the map is bounded by the fleet's size.
#[derive(Default)]
pub struct NodeLimits {
    nodes: Mutex<HashMap<String, PerNode>>,
    next_conn: AtomicU64,
    /// Identities with a live connection (they share the telemetry budget).
    live: AtomicUsize,
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
        if !replaced {
            self.live.fetch_add(1, Ordering::Relaxed);
        }
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
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Whether `node` may send one more `what` at `now` (takes a token if so).
    pub fn allow(&self, node: &str, what: Rated, now: Instant) -> bool {
        self.take_or_wait(node, what, now).is_ok()
    }

    /// Takes a token for one more `what` of `node` at `now`, or says how long until one is
    /// there (for a caller that paces instead of dropping).
    pub fn take_or_wait(&self, node: &str, what: Rated, now: Instant) -> Result<(), Duration> {
        let mut nodes = self.nodes();
        let per = nodes.entry(node.to_string()).or_default();
        let bucket = per.bucket(what, now);
        if what == Rated::Telemetry {
            let rate = telemetry_share(self.live.load(Ordering::Relaxed));
            bucket.set_rate_at(rate, 2.0 * rate, now);
        }
        let verdict = if bucket.try_take_at(now) {
            Ok(())
        } else {
            Err(bucket.wait_at(now))
        };
        per.count(what, verdict.is_ok());
        verdict
    }

    /// What `node`'s limiter let through and held back of `what` so far (kept across
    /// reconnects, like the buckets).
    pub fn tally(&self, node: &str, what: Rated) -> Tally {
        self.nodes()
            .get(node)
            .map_or_else(Tally::default, |n| n.tallies[what.index()])
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
        let rogue = limits.tally("rogue", Rated::Telemetry);
        assert_eq!(rogue.accepted, allowed as u64);
        assert_eq!(
            rogue.accepted + rogue.limited,
            1000,
            "every verdict is counted"
        );
        assert_eq!(limits.tally("honest", Rated::Telemetry).accepted, 1);
        assert_eq!(limits.tally("honest", Rated::Results), Tally::default());
    }

    #[test]
    fn blob_requests_are_held_to_their_byte_budget_whatever_the_shard_size() {
        let limits = NodeLimits::default();
        let now = Instant::now();
        let burst = BLOB_BURST_BYTES / SHARD_BYTES;
        let allowed = (0..2 * burst)
            .filter(|_| limits.allow("fetcher", Rated::Blob, now))
            .count();
        assert_eq!(allowed, burst, "a first fetch of 256 MiB at once, no more");
        let later = now + Duration::from_secs(1);
        let refilled = (0..2 * burst)
            .filter(|_| limits.allow("fetcher", Rated::Blob, later))
            .count();
        assert_eq!(
            refilled * SHARD_BYTES,
            BLOB_BYTES_PER_S,
            "16 MiB a second after that"
        );
    }

    #[test]
    fn the_telemetry_budget_is_shared_by_live_connections_within_floor_and_cap() {
        assert_eq!(telemetry_share(1), TELEMETRY_CAP);
        assert_eq!(telemetry_share(1000), TELEMETRY_BUDGET / 1000.0);
        assert_eq!(telemetry_share(1_000_000), TELEMETRY_FLOOR);
        assert_eq!(
            telemetry_share(0),
            TELEMETRY_CAP,
            "no live connection is one"
        );
    }

    #[test]
    fn a_paced_sender_is_told_when_its_next_token_comes() {
        let limits = NodeLimits::default();
        let now = Instant::now();
        while limits.allow("cam", Rated::Results, now) {}
        let wait = limits
            .take_or_wait("cam", Rated::Results, now)
            .expect_err("the burst is spent");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(34),
            "{wait:?}"
        );
        assert_eq!(
            limits.take_or_wait("cam", Rated::Results, now + wait),
            Ok(())
        );
    }
}
