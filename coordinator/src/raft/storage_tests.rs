//! Unit tests for `SledStorage`, mirroring raft-rs' `MemStorage` tests plus durability checks.
//!
//! Where `MemStorage` tests seed entries 3..=5 directly, these seed a compacted prefix ending
//! at (2, 2) and append 3..=5, so `term(2)` is known (the retained term of the compacted
//! entry) and `term(1)` is the first compacted one.

#![allow(clippy::unwrap_used)]

use protobuf::Message as PbMessage;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{Error as RaftError, GetEntriesContext, Storage, StorageError as RaftStorageError};

use super::*;

fn new_entry(index: u64, term: u64) -> Entry {
    Entry {
        term,
        index,
        ..Default::default()
    }
}

fn new_snapshot(index: u64, term: u64, voters: Vec<u64>) -> Snapshot {
    let mut s = Snapshot::default();
    s.mut_metadata().index = index;
    s.mut_metadata().term = term;
    s.mut_metadata().mut_conf_state().voters = voters;
    s
}

fn size_of(e: &Entry) -> u64 {
    u64::from(e.compute_size())
}

fn ctx() -> GetEntriesContext {
    GetEntriesContext::empty(false)
}

/// A storage whose log holds `ents` after a compacted prefix ending at (first - 1, first - 1).
/// The storage in `dir` again, once the dropped one's sled threads let go of its lock.
fn reopen(dir: &tempfile::TempDir) -> SledStorage {
    crate::raft::lock_wait::when_unlocked(|| SledStorage::open(dir.path())).unwrap()
}

fn seeded(dir: &tempfile::TempDir, ents: &[Entry]) -> SledStorage {
    let mut s = SledStorage::open(dir.path()).unwrap();
    let first = ents[0].index;
    s.apply_snapshot(new_snapshot(first - 1, first - 1, vec![1, 2, 3]))
        .unwrap();
    s.append(ents).unwrap();
    s
}

fn three() -> Vec<Entry> {
    vec![new_entry(3, 3), new_entry(4, 4), new_entry(5, 5)]
}

#[test]
fn term() {
    let dir = tempfile::tempdir().unwrap();
    let s = seeded(&dir, &three());
    assert_eq!(
        s.term(1),
        Err(RaftError::Store(RaftStorageError::Compacted))
    );
    assert_eq!(s.term(2), Ok(2));
    assert_eq!(s.term(3), Ok(3));
    assert_eq!(s.term(4), Ok(4));
    assert_eq!(s.term(5), Ok(5));
    assert_eq!(
        s.term(6),
        Err(RaftError::Store(RaftStorageError::Unavailable))
    );
}

#[test]
fn entries() {
    let ents = vec![
        new_entry(3, 3),
        new_entry(4, 4),
        new_entry(5, 5),
        new_entry(6, 6),
    ];
    let max = u64::MAX;
    let cases: Vec<(u64, u64, u64, raft::Result<Vec<Entry>>)> = vec![
        (
            2,
            6,
            max,
            Err(RaftError::Store(RaftStorageError::Compacted)),
        ),
        (3, 4, max, Ok(vec![new_entry(3, 3)])),
        (4, 5, max, Ok(vec![new_entry(4, 4)])),
        (4, 6, max, Ok(vec![new_entry(4, 4), new_entry(5, 5)])),
        (
            4,
            7,
            max,
            Ok(vec![new_entry(4, 4), new_entry(5, 5), new_entry(6, 6)]),
        ),
        // even if max size is zero, the first entry is returned
        (4, 7, 0, Ok(vec![new_entry(4, 4)])),
        (
            4,
            7,
            size_of(&ents[1]) + size_of(&ents[2]),
            Ok(vec![new_entry(4, 4), new_entry(5, 5)]),
        ),
        (
            4,
            7,
            size_of(&ents[1]) + size_of(&ents[2]) + size_of(&ents[3]) / 2,
            Ok(vec![new_entry(4, 4), new_entry(5, 5)]),
        ),
        (
            4,
            7,
            size_of(&ents[1]) + size_of(&ents[2]) + size_of(&ents[3]) - 1,
            Ok(vec![new_entry(4, 4), new_entry(5, 5)]),
        ),
        (
            4,
            7,
            size_of(&ents[1]) + size_of(&ents[2]) + size_of(&ents[3]),
            Ok(vec![new_entry(4, 4), new_entry(5, 5), new_entry(6, 6)]),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let s = seeded(&dir, &ents);
    for (i, (lo, hi, max_size, want)) in cases.into_iter().enumerate() {
        let got = s.entries(lo, hi, max_size, ctx());
        assert_eq!(got, want, "case {i}: entries({lo}, {hi}, {max_size})");
    }
    // Beyond the end of the log is an error, not a panic.
    assert!(s.entries(4, 8, max, ctx()).is_err());
}

#[test]
fn first_and_last_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = seeded(&dir, &three());
    assert_eq!(s.first_index(), Ok(3));
    assert_eq!(s.last_index(), Ok(5));
    s.append(&[new_entry(6, 5)]).unwrap();
    assert_eq!(s.last_index(), Ok(6));
    s.compact(4).unwrap();
    assert_eq!(s.first_index(), Ok(4));
    assert_eq!(
        s.term(3),
        Ok(3),
        "term of the last compacted entry is retained"
    );
}

#[test]
fn compact() {
    // (compact index, want first index, want term at first, want remaining entries)
    let cases = [(2, 3, 3, 3), (3, 3, 3, 3), (4, 4, 4, 2), (5, 5, 5, 1)];
    for (i, (idx, windex, wterm, wlen)) in cases.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = seeded(&dir, &three());
        s.compact(idx).unwrap();
        let index = s.first_index().unwrap();
        assert_eq!(index, windex, "case {i}");
        let term = s.entries(index, index + 1, 1, ctx()).unwrap()[0].term;
        assert_eq!(term, wterm, "case {i}");
        let last = s.last_index().unwrap();
        assert_eq!(s.entries(index, last + 1, 100, ctx()).unwrap().len(), wlen);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut s = seeded(&dir, &three());
    assert!(matches!(
        s.compact(7),
        Err(StorageError::CompactBeyondLog { index: 7, last: 5 })
    ));
}

#[test]
fn create_snapshot_and_serve_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = seeded(&dir, &three());
    let cs = ConfState {
        voters: vec![1, 2, 3],
        ..Default::default()
    };

    let snap = s
        .create_snapshot(4, cs.clone(), b"state@4".to_vec())
        .unwrap();
    assert_eq!(snap.get_metadata().index, 4);
    assert_eq!(snap.get_metadata().term, 4);
    let served = s.snapshot(0, 2).unwrap();
    assert_eq!(served, snap);
    assert_eq!(&served.data[..], b"state@4");
    assert!(!s.snapshot_wanted());

    // Older than requested: unavailable, and the replica is asked for a fresh one.
    assert_eq!(
        s.snapshot(5, 2),
        Err(RaftError::Store(
            RaftStorageError::SnapshotTemporarilyUnavailable
        ))
    );
    assert!(s.snapshot_wanted());
    // A peer that is not in the snapshot's membership would refuse it.
    s.create_snapshot(5, cs, b"state@5".to_vec()).unwrap();
    assert!(!s.snapshot_wanted());
    assert!(s.snapshot(0, 4).is_err());
    assert!(s.snapshot_wanted());

    // Snapshots never go back, and need a known term.
    assert!(s.create_snapshot(3, ConfState::default(), vec![]).is_err());
    assert!(s.create_snapshot(9, ConfState::default(), vec![]).is_err());
}

#[test]
fn append() {
    let cases: Vec<(Vec<Entry>, Option<Vec<Entry>>)> = vec![
        (three(), Some(three())),
        (
            vec![new_entry(3, 3), new_entry(4, 6), new_entry(5, 6)],
            Some(vec![new_entry(3, 3), new_entry(4, 6), new_entry(5, 6)]),
        ),
        (
            vec![
                new_entry(3, 3),
                new_entry(4, 4),
                new_entry(5, 5),
                new_entry(6, 5),
            ],
            Some(vec![
                new_entry(3, 3),
                new_entry(4, 4),
                new_entry(5, 5),
                new_entry(6, 5),
            ]),
        ),
        // overwriting compacted entries is refused
        (
            vec![new_entry(2, 3), new_entry(3, 3), new_entry(4, 5)],
            None,
        ),
        // truncate the conflicting suffix and append
        (
            vec![new_entry(4, 5)],
            Some(vec![new_entry(3, 3), new_entry(4, 5)]),
        ),
        // direct append
        (
            vec![new_entry(6, 6)],
            Some(vec![
                new_entry(3, 3),
                new_entry(4, 4),
                new_entry(5, 5),
                new_entry(6, 6),
            ]),
        ),
        // a gap is refused
        (vec![new_entry(8, 6)], None),
        // a batch with a hole is refused
        (vec![new_entry(6, 6), new_entry(8, 6)], None),
    ];
    for (i, (ents, want)) in cases.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = seeded(&dir, &three());
        let res = s.append(&ents);
        match want {
            Some(want) => {
                res.unwrap();
                let last = s.last_index().unwrap();
                assert_eq!(last, want.last().unwrap().index, "case {i}");
                assert_eq!(s.entries(3, last + 1, None, ctx()).unwrap(), want);
                // What is on disk matches too (no stale suffix survives a reopen).
                drop(s);
                let s = reopen(&dir);
                assert_eq!(s.entries(3, last + 1, None, ctx()).unwrap(), want);
                assert_eq!(s.last_index().unwrap(), last);
            }
            None => assert!(res.is_err(), "case {i}: {res:?}"),
        }
    }
}

#[test]
fn apply_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SledStorage::open(dir.path()).unwrap();
    assert!(!s.is_initialized());
    s.apply_snapshot(new_snapshot(4, 4, vec![1, 2, 3])).unwrap();
    assert!(s.is_initialized());
    assert_eq!(s.first_index(), Ok(5));
    assert_eq!(s.last_index(), Ok(4));
    assert_eq!(s.term(4), Ok(4));
    assert_eq!(s.hard_state().commit, 4);
    assert_eq!(s.conf_state().voters, vec![1, 2, 3]);
    assert!(matches!(
        s.apply_snapshot(new_snapshot(3, 3, vec![1, 2, 3])),
        Err(StorageError::SnapshotOutOfDate { .. })
    ));
    // A newer snapshot replaces the log entirely.
    s.append(&[new_entry(5, 4), new_entry(6, 4)]).unwrap();
    s.apply_snapshot(new_snapshot(10, 5, vec![1, 2])).unwrap();
    assert_eq!(s.first_index(), Ok(11));
    assert_eq!(s.last_index(), Ok(10));
    assert_eq!(s.hard_state().term, 5);
    assert_eq!(s.conf_state().voters, vec![1, 2]);
}

#[test]
fn reopen_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let cs = ConfState {
        voters: vec![1, 2, 3],
        ..Default::default()
    };
    let hs = HardState {
        term: 7,
        vote: 2,
        commit: 6,
        ..Default::default()
    };
    {
        let mut s = SledStorage::open(dir.path()).unwrap();
        s.bootstrap(&[1, 2, 3], b"genesis".to_vec()).unwrap();
        let ents: Vec<Entry> = (2..=8).map(|i| new_entry(i, 7)).collect();
        s.append(&ents).unwrap();
        s.set_hardstate(hs.clone()).unwrap();
        s.set_conf_state(cs.clone()).unwrap();
        s.create_snapshot(5, cs.clone(), b"state@5".to_vec())
            .unwrap();
        s.compact(5).unwrap();
        s.flush().unwrap();
    }
    let s = reopen(&dir);
    let st = s.initial_state().unwrap();
    assert_eq!(st.hard_state, hs);
    assert_eq!(st.conf_state, cs);
    assert_eq!(s.first_index(), Ok(5));
    assert_eq!(s.last_index(), Ok(8));
    assert_eq!(s.term(4), Ok(7));
    assert_eq!(s.entries(5, 9, None, ctx()).unwrap().len(), 4);
    let snap = s.snapshot(0, 3).unwrap();
    assert_eq!(snap.get_metadata().index, 5);
    assert_eq!(&snap.data[..], b"state@5");
}

#[test]
fn corrupt_entry_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = seeded(&dir, &three());
        s.flush().unwrap();
    }
    {
        let db = crate::raft::lock_wait::when_unlocked(|| sled::open(dir.path())).unwrap();
        let tree = db.open_tree(TREE).unwrap();
        tree.insert(entry_key(4), &b"\xff\xff\xff not protobuf"[..])
            .unwrap();
        db.flush().unwrap();
    }
    match crate::raft::lock_wait::when_unlocked(|| SledStorage::open(dir.path())) {
        Err(StorageError::Corrupt(msg)) => assert!(msg.contains("log entry"), "{msg}"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("corrupt log opened"),
    }
}
