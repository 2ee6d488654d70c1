//! How often the leader's nodes ping it. Every ping is a packet in and an acknowledgement out on
//! the leader's one node socket, so the interval grows with the fleet
//! (`wire::msg::liveness_ping_interval`: 200 ms up to 1000 nodes, 1 s from 4500): 10 000 nodes
//! pinging every 200 ms were 100 000 packets a second, more than the 2-core machine's leader
//! socket drained. The price is a slower failover in the largest fleets (three silent intervals,
//! at most 3 s). Nodes are told with `CoordMsg::Liveness` on joining and when the interval
//! changes.

use std::time::Duration;

use wire::msg::{LIVENESS_PING_INTERVAL, liveness_ping_interval};

/// The interval the connected nodes were last told.
#[derive(Debug, Default)]
pub struct PingPacer {
    told: Option<Duration>,
}

impl PingPacer {
    /// The interval every node should be told now that `connected` sessions are up, if it
    /// differs from the last one told. It rises as soon as the fleet needs it and falls only
    /// once the fleet is a fifth below the size that needs the current one, so a fleet at a
    /// step's edge is not told back and forth (each telling is a message to every node).
    pub fn retell(&mut self, connected: usize) -> Option<Duration> {
        let wanted = liveness_ping_interval(connected);
        let next = match self.told {
            None => wanted,
            Some(told) if wanted >= told => wanted,
            Some(told) => liveness_ping_interval(connected + connected / 4).min(told),
        };
        (self.told != Some(next)).then(|| {
            self.told = Some(next);
            next
        })
    }

    /// The interval a joining node is told.
    pub fn current(&self) -> Duration {
        self.told.unwrap_or(LIVENESS_PING_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::msg::MAX_LIVENESS_PING_INTERVAL;

    #[test]
    fn the_interval_follows_a_growing_fleet_and_is_told_once_per_step() {
        let mut p = PingPacer::default();
        assert_eq!(p.retell(1), Some(LIVENESS_PING_INTERVAL));
        let mut told = Vec::new();
        for n in 2..=10_000 {
            told.extend(p.retell(n));
        }
        let ms: Vec<u128> = told.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [300, 400, 500, 600, 700, 800, 900, 1000]);
        assert_eq!(p.current(), MAX_LIVENESS_PING_INTERVAL);
    }

    #[test]
    fn a_shrinking_fleet_is_told_only_past_the_margin() {
        let mut p = PingPacer::default();
        p.retell(10_000);
        // 4600 nodes need 1 s; with the margin 4000 still do.
        assert_eq!(p.retell(4000), None);
        // Nodes leaving and joining at a step's edge change nothing.
        for n in [4001, 3999, 4001, 3999] {
            assert_eq!(p.retell(n), None);
        }
        assert_eq!(p.retell(2000), Some(Duration::from_millis(500)));
        assert_eq!(p.retell(0), Some(LIVENESS_PING_INTERVAL));
    }
}
