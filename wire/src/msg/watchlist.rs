//! The watchlist: named face descriptors an operator enrolled, replicated by the coordinators
//! and pushed to nodes, which match the faces they see against it. Descriptors only: the
//! photos they were computed from never leave the coordinator that received them.
//!
//! The bounds here are the one definition both ends check: the coordinator's admin API and
//! state machine (on apply), and the node when a push arrives.

use serde::{Deserialize, Serialize};

/// Floats in one face descriptor (the face-recognition network's output).
pub const DESCRIPTOR_LEN: usize = 128;
/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Descriptors one name may hold (a few photos of the same person).
pub const MAX_DESCRIPTORS_PER_NAME: usize = 16;
/// Names on the list.
pub const MAX_NAMES: usize = 10_000;
/// Descriptors per pushed part: 512 x 128 x 4 bytes = 256 KiB, far below a frame's limit, and
/// small enough that a part on a slow link does not hold up the session's other streams.
pub const MAX_DESCRIPTORS_PER_PART: usize = 512;
/// Parts of the largest list (names x descriptors / part, rounded up, with room for parts
/// that end early because whole entries are kept together).
pub const MAX_PARTS: u32 =
    (MAX_NAMES * MAX_DESCRIPTORS_PER_NAME / MAX_DESCRIPTORS_PER_PART) as u32 * 2;

/// One person on the list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchlistEntry {
    /// What a match answers.
    pub name: String,
    /// One descriptor per enrolled photo, each [`DESCRIPTOR_LEN`] finite floats.
    pub descriptors: Vec<Vec<f32>>,
}

/// One frame of a watchlist push. The coordinator opens a unidirectional stream per push and
/// writes parts `0..parts` of list `version` on it; the node installs the list once every part
/// arrived and checked out (a newer push resets the older stream).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchlistPart {
    /// The list's version (0 is the empty list a node starts with).
    pub version: u64,
    /// This part's index.
    pub part: u32,
    /// How many parts the list has (at least 1; an empty list is one empty part).
    pub parts: u32,
    /// Whole entries, in name order across parts.
    pub entries: Vec<WatchlistEntry>,
}

/// Checks a name: 1..=[`MAX_NAME_CHARS`] characters, none a control character, no space at
/// either end (so names that print alike are alike).
pub fn check_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(format!(
            "a watchlist name must have 1..={MAX_NAME_CHARS} characters, this one has {chars}"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("a watchlist name must be printable (no control characters)".into());
    }
    if name.trim() != name {
        return Err("a watchlist name must not start or end with white space".into());
    }
    Ok(())
}

/// Checks one entry: its name, 1..=[`MAX_DESCRIPTORS_PER_NAME`] descriptors, each
/// [`DESCRIPTOR_LEN`] finite floats.
pub fn check_entry(entry: &WatchlistEntry) -> Result<(), String> {
    check_name(&entry.name)?;
    let n = entry.descriptors.len();
    if n == 0 || n > MAX_DESCRIPTORS_PER_NAME {
        return Err(format!(
            "{:?} has {n} descriptors; a name holds 1..={MAX_DESCRIPTORS_PER_NAME}",
            entry.name
        ));
    }
    for (i, d) in entry.descriptors.iter().enumerate() {
        if d.len() != DESCRIPTOR_LEN {
            return Err(format!(
                "descriptor {i} of {:?} has {} floats, not {DESCRIPTOR_LEN}",
                entry.name,
                d.len()
            ));
        }
        if !d.iter().all(|x| x.is_finite()) {
            return Err(format!(
                "descriptor {i} of {:?} holds a NaN or infinite value",
                entry.name
            ));
        }
    }
    Ok(())
}

/// Where a list is cut into the parts of one push: ranges of whole entries, at most
/// [`MAX_DESCRIPTORS_PER_PART`] descriptors each (an entry never exceeds it alone). At least
/// one range: the empty list is one empty part.
pub fn part_ranges(entries: &[WatchlistEntry]) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut in_part) = (0, 0);
    for (i, e) in entries.iter().enumerate() {
        if in_part + e.descriptors.len() > MAX_DESCRIPTORS_PER_PART && i > start {
            ranges.push(start..i);
            (start, in_part) = (i, 0);
        }
        in_part += e.descriptors.len();
    }
    ranges.push(start..entries.len());
    ranges
}

/// Part `index` of a push of `entries` cut at `ranges` ([`part_ranges`]); built one at a time
/// so a sender holds one part's copy, not the whole list's.
pub fn part(
    version: u64,
    entries: &[WatchlistEntry],
    ranges: &[std::ops::Range<usize>],
    index: usize,
) -> WatchlistPart {
    WatchlistPart {
        version,
        part: index as u32,
        parts: ranges.len() as u32,
        entries: ranges
            .get(index)
            .and_then(|r| entries.get(r.clone()))
            .map(<[WatchlistEntry]>::to_vec)
            .unwrap_or_default(),
    }
}

/// Every part of one push of `entries`.
pub fn split(version: u64, entries: &[WatchlistEntry]) -> Vec<WatchlistPart> {
    let ranges = part_ranges(entries);
    (0..ranges.len())
        .map(|i| part(version, entries, &ranges, i))
        .collect()
}

/// Puts a pushed list back together on the receiving side, checking every bound as parts
/// arrive so a bad push is refused before it is held whole.
#[derive(Debug, Default)]
pub struct Assembly {
    version: u64,
    parts: u32,
    next: u32,
    entries: Vec<WatchlistEntry>,
}

impl Assembly {
    /// Takes the next part. `Ok(Some((version, entries)))` when the list is complete.
    pub fn take(
        &mut self,
        part: WatchlistPart,
    ) -> Result<Option<(u64, Vec<WatchlistEntry>)>, String> {
        if part.part == 0 {
            if part.parts == 0 || part.parts > MAX_PARTS {
                return Err(format!(
                    "a watchlist push of {} parts; 1..={MAX_PARTS} are allowed",
                    part.parts
                ));
            }
            *self = Assembly {
                version: part.version,
                parts: part.parts,
                next: 0,
                entries: Vec::new(),
            };
        }
        if part.part != self.next
            || part.version != self.version
            || part.parts != self.parts
            || self.parts == 0
        {
            return Err(format!(
                "watchlist part {}/{} of version {} arrived out of order",
                part.part, part.parts, part.version
            ));
        }
        if self.entries.len() + part.entries.len() > MAX_NAMES {
            return Err(format!("a watchlist push over {MAX_NAMES} names"));
        }
        let mut previous = self.entries.last().map(|e| e.name.as_str());
        for e in &part.entries {
            check_entry(e)?;
            if previous.is_some_and(|p| p >= e.name.as_str()) {
                return Err(format!(
                    "watchlist entry {:?} is out of name order or repeated",
                    e.name
                ));
            }
            previous = Some(&e.name);
        }
        self.entries.extend(part.entries);
        self.next += 1;
        if self.next < self.parts {
            return Ok(None);
        }
        let done = std::mem::take(self);
        Ok(Some((done.version, done.entries)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(name: &str, n: usize) -> WatchlistEntry {
        WatchlistEntry {
            name: name.into(),
            descriptors: vec![vec![0.5; DESCRIPTOR_LEN]; n],
        }
    }

    #[test]
    fn names_and_entries_are_bounded() {
        assert!(check_name("Alice Example").is_ok());
        assert!(check_name(&"é".repeat(64)).is_ok(), "characters, not bytes");
        for bad in ["", " alice", "alice ", "a\u{7}b", "line\nbreak"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&"x".repeat(65)).is_err());
        assert!(check_entry(&entry("a", 16)).is_ok());
        assert!(check_entry(&entry("a", 0)).is_err());
        assert!(check_entry(&entry("a", 17)).is_err());
        let mut short = entry("a", 1);
        short.descriptors[0].pop();
        assert!(check_entry(&short).is_err());
        let mut nan = entry("a", 1);
        nan.descriptors[0][3] = f32::NAN;
        assert!(check_entry(&nan).is_err());
        let mut inf = entry("a", 1);
        inf.descriptors[0][3] = f32::INFINITY;
        assert!(check_entry(&inf).is_err());
    }

    #[test]
    fn a_split_list_reassembles_and_fits_a_frame() {
        let entries: Vec<_> = (0..100).map(|i| entry(&format!("p{i:03}"), 16)).collect();
        let parts = split(7, &entries);
        assert!(parts.len() > 1);
        let mut a = Assembly::default();
        let mut out = None;
        for p in parts.clone() {
            let bytes = crate::codec::encode(&p).unwrap();
            assert!(bytes.len() < crate::codec::MAX_FRAME_BYTES / 8);
            out = a.take(p).unwrap();
        }
        assert_eq!(out, Some((7, entries)));
        // The empty list is one empty part.
        let empty = split(0, &[]);
        assert_eq!(empty.len(), 1);
        assert_eq!(
            Assembly::default().take(empty[0].clone()).unwrap(),
            Some((0, vec![]))
        );
        // Out of order, foreign version, or a bad entry: refused.
        let mut a = Assembly::default();
        assert!(a.take(parts[1].clone()).is_err());
        let mut a = Assembly::default();
        a.take(parts[0].clone()).unwrap();
        let mut other = parts[1].clone();
        other.version = 8;
        assert!(a.take(other).is_err());
        let mut bad = split(1, &[entry("a", 1)]).remove(0);
        bad.entries[0].descriptors[0][0] = f32::NAN;
        assert!(Assembly::default().take(bad).is_err());
        let mut unsorted = split(1, &[entry("b", 1), entry("a", 1)]).remove(0);
        assert!(Assembly::default().take(unsorted.clone()).is_err());
        unsorted.parts = MAX_PARTS + 1;
        assert!(Assembly::default().take(unsorted).is_err());
    }
}
