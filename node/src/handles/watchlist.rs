//! The watchlist the node holds: names and face descriptors the coordinator pushed, matched by
//! the face app against the faces it sees. Written by the link's watchlist receiver, read by
//! the serving thread (one `Arc` clone per read; a push replaces the whole list).
//!
//! Kept in memory only, never in the node store: the descriptors identify people, and a body
//! camera can be lost or stolen, so a powered-off device holds none. The price is that a node
//! restarted without a coordinator answers "unknown" until it reconnects and is pushed the
//! list again (the coordinator pushes it at once to a node whose hello says it holds none).

use std::sync::{Arc, Mutex};

use vision::face::Gallery;
use wire::msg::WatchlistEntry;

use super::lock;

/// Default match threshold: the descriptor network's (dlib's) same-person distance.
pub const DEFAULT_THRESHOLD: f32 = vision::face::gallery::DEFAULT_THRESHOLD;

/// One installed version of the list.
#[derive(Debug, Default)]
pub struct Watchlist {
    /// 0 until a list was pushed.
    pub version: u64,
    /// Every descriptor under its name, matched by `vision`'s gallery (nearest within the
    /// threshold).
    pub gallery: Gallery,
    /// The list's names in the order pushed: a face app's label is an index into it (several
    /// descriptors of one name answer the same label).
    pub names: Vec<String>,
    /// For each gallery entry, the index of its name in `names`.
    entry_name: Vec<u32>,
}

impl Watchlist {
    /// The label (index into `names`) of gallery entry `entry`.
    pub fn label_of(&self, entry: usize) -> Option<u32> {
        self.entry_name.get(entry).copied()
    }

    /// The name a label stands for.
    pub fn name(&self, label: u32) -> Option<&str> {
        self.names.get(label as usize).map(String::as_str)
    }
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
            list: Arc::new(Mutex::new(Arc::new(Watchlist {
                version: 0,
                gallery: Gallery::new(threshold),
                names: Vec::new(),
                entry_name: Vec::new(),
            }))),
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
        let mut gallery = Gallery::new(self.threshold);
        let (mut names, mut entry_name) = (Vec::new(), Vec::new());
        for e in entries {
            let label = u32::try_from(names.len()).unwrap_or(u32::MAX);
            for d in e.descriptors {
                gallery.add(e.name.clone(), d);
                entry_name.push(label);
            }
            names.push(e.name);
        }
        *lock(&self.list) = Arc::new(Watchlist {
            version,
            gallery,
            names,
            entry_name,
        });
    }

    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// The nearest name within the threshold, or unknown.
    pub fn identify(&self, descriptor: &[f32]) -> Identified {
        let list = self.current();
        let best = list.gallery.best(descriptor);
        Identified {
            name: best
                .entry
                .and_then(|i| list.gallery.name(i))
                .map(str::to_string),
            distance: best.distance,
        }
    }
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
        let list = cell.current();
        assert_eq!((list.label_of(1), list.name(1)), (Some(1), Some("bob")));
        assert_eq!((list.label_of(2), list.name(2)), (None, None));
        let far = probe(3.0);
        assert_eq!(far.name, None);
        assert!((far.distance - 2.0).abs() < 1e-6);
        let strict = WatchlistCell::new(0.05);
        strict.install(1, vec![entry("alice", 0.0)]);
        let mut d = vec![0.0; wire::msg::DESCRIPTOR_LEN];
        d[0] = 0.1;
        assert_eq!(
            strict.identify(&d).name,
            None,
            "the threshold is configurable"
        );
    }
}
