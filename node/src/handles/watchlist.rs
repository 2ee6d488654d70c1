//! The watchlist the node holds: names and face descriptors the coordinator pushed, matched by
//! the face app against the faces it sees. Written by the link's watchlist receiver, read by
//! the serving thread (one `Arc` clone per read; a push replaces the whole list).
//!
//! Kept in memory only, never in the node store: the descriptors identify people, and a body
//! camera can be lost or stolen, so a powered-off device holds none. The price is that a node
//! restarted without a coordinator answers "unknown" until it reconnects and is pushed the
//! list again (the coordinator pushes it at once to a node whose hello says it holds none).

use std::sync::{Arc, Mutex};

use wire::msg::WatchlistEntry;

use super::lock;

/// Default match threshold: the descriptor network's (dlib's) same-person distance.
pub const DEFAULT_THRESHOLD: f32 = 0.6;

/// One installed version of the list.
#[derive(Debug, Default)]
pub struct Watchlist {
    /// 0 until a list was pushed.
    pub version: u64,
    /// Names in the coordinator's (name) order.
    pub entries: Vec<WatchlistEntry>,
}

/// The answer for one face descriptor.
#[derive(Debug, Clone, PartialEq)]
pub struct Identified {
    /// The name, or `None` for unknown (nothing within the threshold).
    pub name: Option<String>,
    /// Distance to the nearest descriptor on the list (infinite when the list is empty).
    pub distance: f32,
}

#[derive(Debug, Clone)]
pub struct WatchlistCell {
    list: Arc<Mutex<Arc<Watchlist>>>,
    threshold: f32,
}

impl Default for WatchlistCell {
    fn default() -> Self {
        Self::new(DEFAULT_THRESHOLD)
    }
}

impl WatchlistCell {
    /// An empty cell matching at `threshold` (Euclidean distance).
    pub fn new(threshold: f32) -> Self {
        WatchlistCell {
            list: Arc::default(),
            threshold,
        }
    }

    /// The version held (0: none); the node's hello reports it.
    pub fn version(&self) -> u64 {
        lock(&self.list).version
    }

    /// The list as held now.
    pub fn current(&self) -> Arc<Watchlist> {
        lock(&self.list).clone()
    }

    /// Replaces the list with a pushed version (already checked by the receiver).
    pub fn install(&self, version: u64, entries: Vec<WatchlistEntry>) {
        *lock(&self.list) = Arc::new(Watchlist { version, entries });
    }

    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// The nearest name within the threshold, or unknown.
    pub fn identify(&self, descriptor: &[f32]) -> Identified {
        let list = self.current();
        let nearest = list
            .entries
            .iter()
            .flat_map(|e| e.descriptors.iter().map(move |d| (e, d)))
            .map(|(e, d)| (e, distance(d, descriptor)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        match nearest {
            Some((e, d)) => Identified {
                name: (d < self.threshold).then(|| e.name.clone()),
                distance: d,
            },
            None => Identified {
                name: None,
                distance: f32::INFINITY,
            },
        }
    }
}

// PLACEHOLDER: vision::face::describe::distance once the vision crate is merged.
fn distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, x: f32) -> WatchlistEntry {
        let mut d = vec![0.0; wire::msg::DESCRIPTOR_LEN];
        d[0] = x;
        WatchlistEntry {
            name: name.into(),
            descriptors: vec![d],
        }
    }

    #[test]
    fn nearest_within_the_threshold_or_unknown() {
        let cell = WatchlistCell::new(0.6);
        let probe = |x: f32| {
            let mut d = vec![0.0; wire::msg::DESCRIPTOR_LEN];
            d[0] = x;
            cell.identify(&d)
        };
        assert_eq!(probe(0.0).name, None, "an empty list knows nobody");
        assert_eq!(cell.version(), 0);
        cell.install(7, vec![entry("alice", 0.0), entry("bob", 1.0)]);
        assert_eq!(cell.version(), 7);
        assert_eq!(probe(0.1).name.as_deref(), Some("alice"));
        assert_eq!(probe(0.9).name.as_deref(), Some("bob"));
        let far = probe(3.0);
        assert_eq!(far.name, None);
        assert!((far.distance - 2.0).abs() < 1e-6);
        let strict = WatchlistCell::new(0.05);
        strict.install(1, vec![entry("alice", 0.0)]);
        let mut d = vec![0.0; wire::msg::DESCRIPTOR_LEN];
        d[0] = 0.1;
        assert_eq!(strict.identify(&d).name, None, "the threshold is configurable");
    }
}
