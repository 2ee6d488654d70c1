//! The replicated watchlist: face descriptors per name (never photos), with who enrolled each
//! name, and a version nodes compare to know whether the list they hold is current.
//!
//! Every bound (`wire::msg::check_watchlist_entry`, at most `MAX_WATCHLIST_NAMES` names) is
//! checked again on apply, so a bad entry in a log (an older build, a buggy leader) changes
//! nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wire::msg::{MAX_WATCHLIST_NAMES, WatchlistEntry, check_watchlist_entry};

use super::outcome::ApplyOutcome;

/// Longest operator name recorded as the enroller.
const MAX_BY_LEN: usize = 128;

/// One name's descriptors and provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchlistRecord {
    /// One per enrolled photo, `DESCRIPTOR_LEN` finite floats each.
    pub descriptors: Vec<Vec<f32>>,
    /// The operator (certificate name) who added it.
    pub by: String,
    /// Raft index it was applied at.
    pub index: u64,
}

/// The watchlist by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Watchlist {
    entries: BTreeMap<String, WatchlistRecord>,
    /// 0 for the empty list; otherwise a hash chain over every change applied (the previous
    /// version and the change), so two replicas, or a node and a replica, hold the same list
    /// exactly when their versions match, even across a backup restored into a new cluster
    /// (where a counter could repeat with different contents).
    version: u64,
}

impl Watchlist {
    /// Applies `AddWatchlistEntry`: adds `entry.name`, or replaces its descriptors.
    pub fn add(&mut self, index: u64, entry: &WatchlistEntry, by: &str) -> ApplyOutcome {
        if let Err(why) = check_watchlist_entry(entry) {
            return ApplyOutcome::Rejected(format!("watchlist entry refused: {why}"));
        }
        if by.is_empty() || by.len() > MAX_BY_LEN {
            return ApplyOutcome::Rejected(format!(
                "the enroller's name must be 1..={MAX_BY_LEN} bytes"
            ));
        }
        if !self.entries.contains_key(&entry.name) && self.entries.len() >= MAX_WATCHLIST_NAMES {
            return ApplyOutcome::Rejected(format!(
                "the watchlist already holds {MAX_WATCHLIST_NAMES} names; remove one first"
            ));
        }
        self.entries.insert(
            entry.name.clone(),
            WatchlistRecord {
                descriptors: entry.descriptors.clone(),
                by: by.to_string(),
                index,
            },
        );
        self.bump(b"add", &entry.name, &entry.descriptors);
        ApplyOutcome::Applied
    }

    /// Applies `RemoveWatchlistEntry`.
    pub fn remove(&mut self, name: &str) -> ApplyOutcome {
        if self.entries.remove(name).is_none() {
            return ApplyOutcome::Rejected(format!("{name:?} is not on the watchlist"));
        }
        self.bump(b"remove", name, &[]);
        ApplyOutcome::Applied
    }

    fn bump(&mut self, op: &[u8], name: &str, descriptors: &[Vec<f32>]) {
        if self.entries.is_empty() {
            self.version = 0;
            return;
        }
        let mut h = Sha256::new();
        h.update(self.version.to_le_bytes());
        h.update(op);
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        for d in descriptors {
            for x in d {
                h.update(x.to_le_bytes());
            }
        }
        let digest = h.finalize();
        let mut v = [0u8; 8];
        v.copy_from_slice(&digest[..8]);
        // 0 means "empty"; a non-empty list never takes it.
        self.version = u64::from_le_bytes(v).max(1);
    }

    /// Names and their records, in name order.
    pub fn entries(&self) -> &BTreeMap<String, WatchlistRecord> {
        &self.entries
    }

    /// The list's version (0 when empty).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The list as nodes receive it: names and descriptors only.
    pub fn to_wire(&self) -> Vec<WatchlistEntry> {
        self.entries
            .iter()
            .map(|(name, r)| WatchlistEntry {
                name: name.clone(),
                descriptors: r.descriptors.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use wire::msg::DESCRIPTOR_LEN;

    fn entry(name: &str, x: f32) -> WatchlistEntry {
        WatchlistEntry {
            name: name.into(),
            descriptors: vec![vec![x; DESCRIPTOR_LEN]],
        }
    }

    #[test]
    fn add_replace_remove_and_versions() {
        let mut w = Watchlist::default();
        assert_eq!(w.version(), 0);
        assert_eq!(w.add(2, &entry("alice", 0.1), "ops"), ApplyOutcome::Applied);
        let v1 = w.version();
        assert_ne!(v1, 0);
        assert_eq!(w.add(3, &entry("alice", 0.2), "ops"), ApplyOutcome::Applied);
        assert_eq!(w.entries().len(), 1, "a second add replaces");
        assert_ne!(w.version(), v1);
        assert_eq!(w.add(4, &entry("bob", 0.1), "ops"), ApplyOutcome::Applied);
        assert_eq!(w.remove("alice"), ApplyOutcome::Applied);
        assert!(matches!(w.remove("alice"), ApplyOutcome::Rejected(_)));
        assert_eq!(w.to_wire(), vec![entry("bob", 0.1)]);
        assert_eq!(w.remove("bob"), ApplyOutcome::Applied);
        assert_eq!(w.version(), 0, "the empty list is version 0");
    }

    #[test]
    fn bounds_are_checked_on_apply_and_refusals_change_nothing() {
        let mut w = Watchlist::default();
        w.add(1, &entry("alice", 0.1), "ops");
        let before = w.clone();
        let mut nan = entry("eve", 0.1);
        nan.descriptors[0][5] = f32::NAN;
        let mut many = entry("eve", 0.1);
        many.descriptors = vec![vec![0.0; DESCRIPTOR_LEN]; 17];
        let mut short = entry("eve", 0.1);
        short.descriptors[0].truncate(127);
        for bad in [
            nan,
            many,
            short,
            entry("", 0.1),
            entry(&"x".repeat(65), 0.1),
            entry("a\u{0}b", 0.1),
        ] {
            assert!(matches!(w.add(9, &bad, "ops"), ApplyOutcome::Rejected(_)));
        }
        assert!(matches!(
            w.add(9, &entry("eve", 0.1), ""),
            ApplyOutcome::Rejected(_)
        ));
        assert_eq!(w, before);
    }

    #[test]
    fn the_name_count_is_capped() {
        let mut w = Watchlist::default();
        for i in 0..MAX_WATCHLIST_NAMES {
            assert_eq!(
                w.add(i as u64 + 1, &entry(&format!("p{i}"), 0.0), "ops"),
                ApplyOutcome::Applied
            );
        }
        assert!(matches!(
            w.add(0, &entry("one-too-many", 0.0), "ops"),
            ApplyOutcome::Rejected(_)
        ));
        // Replacing a name already there still works at the cap.
        assert_eq!(w.add(0, &entry("p0", 0.5), "ops"), ApplyOutcome::Applied);
    }

    /// Through the state machine: applied from commands, refused on apply when out of bounds
    /// (nothing changes but the applied index), and kept by a snapshot and a backup.
    #[test]
    fn the_state_machine_keeps_it_through_snapshots_and_backups() {
        use crate::state::{Command, FleetState, backup};
        let mut s = FleetState::default();
        let add = |name: &str, x: f32| Command::AddWatchlistEntry {
            entry: entry(name, x),
            by: "ops".into(),
        };
        assert_eq!(s.apply(1, &add("alice", 0.1)), ApplyOutcome::Applied);
        let before = s.clone();
        let mut bad = entry("eve", 0.1);
        bad.descriptors[0][0] = f32::INFINITY;
        let refused = Command::AddWatchlistEntry {
            entry: bad,
            by: "ops".into(),
        };
        assert!(matches!(s.apply(2, &refused), ApplyOutcome::Rejected(_)));
        let mut expected = before;
        expected.note_applied(2);
        assert_eq!(s, expected);
        let cmd = Command::RemoveWatchlistEntry {
            name: "alice".into(),
            by: "ops".into(),
        };
        assert_eq!(Command::decode(&cmd.encode().unwrap()).unwrap(), cmd);
        assert_eq!(s.apply(3, &add("bob", 0.2)), ApplyOutcome::Applied);
        let restored = FleetState::from_snapshot_bytes(&s.to_snapshot_bytes().unwrap()).unwrap();
        assert_eq!(restored.watchlist(), s.watchlist());
        let file = backup::encode(3, &s).unwrap();
        let b = backup::decode(&file).unwrap();
        assert_eq!(b.state.watchlist().version(), s.watchlist().version());
        assert_eq!(b.state.watchlist().entries().len(), 2);
    }
}
