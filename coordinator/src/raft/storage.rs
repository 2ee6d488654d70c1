//! Durable Raft log on sled: [`SledStorage`] implements [`raft::Storage`].
//!
//! Layout (one sled tree, `raft`, so that multi-key updates can be one atomic batch):
//! - `e` + big-endian index: a protobuf-encoded `Entry` (big-endian keys sort by index);
//! - `m/hard_state`, `m/conf_state`: protobuf `HardState` / `ConfState`;
//! - `m/snapshot`: the latest protobuf `Snapshot` (metadata + state-machine bytes);
//! - `m/truncated`: index and term of the last compacted entry (first index = index + 1).
//!
//! Writes are not flushed individually; the replica calls [`SledStorage::flush`] once per
//! `Ready` before it sends the messages that promise the data is durable.

use std::sync::atomic::{AtomicBool, Ordering};

use protobuf::Message as PbMessage;
use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use tracing::{debug, info};

use super::error::StorageError;

const TREE: &str = "raft";
const ENTRY_PREFIX: u8 = b'e';
const KEY_HARD_STATE: &[u8] = b"m/hard_state";
const KEY_CONF_STATE: &[u8] = b"m/conf_state";
const KEY_SNAPSHOT: &[u8] = b"m/snapshot";
const KEY_TRUNCATED: &[u8] = b"m/truncated";

/// Raft log, hard state, conf state and latest snapshot, persisted in sled.
///
/// Small metadata is cached in memory (the `Storage` trait reads it on hot paths); entries and
/// snapshot data are read from sled on demand.
pub struct SledStorage {
    db: sled::Db,
    tree: sled::Tree,
    hard_state: HardState,
    conf_state: ConfState,
    /// Metadata of the latest stored snapshot (index 0 = none yet).
    snapshot_meta: SnapshotMetadata,
    truncated_index: u64,
    truncated_term: u64,
    last_index: u64,
    /// Set by `Storage::snapshot` when the stored snapshot cannot serve a follower; the replica
    /// then builds a fresh one from the state machine (storage cannot do it: it has no state).
    snapshot_wanted: AtomicBool,
}

fn entry_key(index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = ENTRY_PREFIX;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

fn be_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

fn key_index(key: &[u8]) -> Result<u64, StorageError> {
    key.get(1..)
        .and_then(be_u64)
        .ok_or_else(|| StorageError::Corrupt(format!("entry key of length {}", key.len())))
}

fn encode<M: PbMessage>(m: &M, what: &'static str) -> Result<Vec<u8>, StorageError> {
    m.write_to_bytes()
        .map_err(|source| StorageError::Encode { what, source })
}

fn decode<M: PbMessage + Default>(bytes: &[u8], what: &str) -> Result<M, StorageError> {
    let mut m = M::default();
    m.merge_from_bytes(bytes)
        .map_err(|e| StorageError::Corrupt(format!("{what} does not decode: {e}")))?;
    Ok(m)
}

/// True when `id` is a member (voter, learner, outgoing voter or next learner) of `cs`.
pub(crate) fn conf_contains(cs: &ConfState, id: u64) -> bool {
    cs.voters
        .iter()
        .chain(&cs.learners)
        .chain(&cs.voters_outgoing)
        .chain(&cs.learners_next)
        .any(|&m| m == id)
}

impl SledStorage {
    /// Opens (or creates) the log in `path` and validates it: every entry must decode and
    /// indexes must run consecutively from the compacted index.
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Self, StorageError> {
        let db = sled::Config::new().path(path.as_ref()).open()?;
        Self::from_db(db)
    }

    /// Uses an already-open sled database (e.g. a temporary one in tests).
    pub fn from_db(db: sled::Db) -> Result<Self, StorageError> {
        let tree = db.open_tree(TREE)?;
        let hard_state = match tree.get(KEY_HARD_STATE)? {
            Some(b) => decode::<HardState>(&b, "hard state")?,
            None => HardState::default(),
        };
        let conf_state = match tree.get(KEY_CONF_STATE)? {
            Some(b) => decode::<ConfState>(&b, "conf state")?,
            None => ConfState::default(),
        };
        let snapshot_meta = match tree.get(KEY_SNAPSHOT)? {
            Some(b) => decode::<Snapshot>(&b, "snapshot")?.take_metadata(),
            None => SnapshotMetadata::default(),
        };
        let (truncated_index, truncated_term) = match tree.get(KEY_TRUNCATED)? {
            Some(b) => {
                let (i, t) = b
                    .get(..8)
                    .zip(b.get(8..))
                    .filter(|_| b.len() == 16)
                    .and_then(|(i, t)| Some((be_u64(i)?, be_u64(t)?)))
                    .ok_or_else(|| {
                        StorageError::Corrupt(format!(
                            "truncated state has {} bytes, not 16",
                            b.len()
                        ))
                    })?;
                (i, t)
            }
            None => (0, 0),
        };

        // Validate the whole log once at open, so corruption is reported here with a clear
        // message instead of surfacing later as a raft panic deep inside an election.
        let mut expected = truncated_index + 1;
        for kv in tree.scan_prefix([ENTRY_PREFIX]) {
            let (k, v) = kv?;
            let index = key_index(&k)?;
            let entry: Entry = decode(&v, "log entry")?;
            if index != expected || entry.index != index {
                return Err(StorageError::Corrupt(format!(
                    "log entry at key {index} has index {} but {expected} was expected",
                    entry.index
                )));
            }
            expected += 1;
        }
        let last_index = expected - 1;

        let mut s = SledStorage {
            db,
            tree,
            hard_state,
            conf_state,
            snapshot_meta,
            truncated_index,
            truncated_term,
            last_index,
            snapshot_wanted: AtomicBool::new(false),
        };
        // The stored snapshot proves its entries committed; a crash may have lost a later
        // unflushed hard-state write, and raft requires commit >= applied (= snapshot index).
        if s.hard_state.commit < s.snapshot_meta.index {
            let mut hs = s.hard_state.clone();
            hs.commit = s.snapshot_meta.index;
            s.set_hardstate(hs)?;
        }
        if s.hard_state.commit > s.last_index {
            return Err(StorageError::Corrupt(format!(
                "hard state commit {} is beyond the last log index {}",
                s.hard_state.commit, s.last_index
            )));
        }
        debug!(
            first = s.truncated_index + 1,
            last = s.last_index,
            term = s.hard_state.term,
            commit = s.hard_state.commit,
            snapshot = s.snapshot_meta.index,
            "opened raft storage"
        );
        Ok(s)
    }

    /// Current hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// Current membership.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Metadata of the latest stored snapshot (index 0 when there is none).
    pub fn snapshot_metadata(&self) -> &SnapshotMetadata {
        &self.snapshot_meta
    }

    /// Reads the latest stored snapshot, if any.
    pub fn stored_snapshot(&self) -> Result<Option<Snapshot>, StorageError> {
        match self.tree.get(KEY_SNAPSHOT)? {
            Some(b) => Ok(Some(decode::<Snapshot>(&b, "snapshot")?)),
            None => Ok(None),
        }
    }

    /// Whether raft asked for a snapshot the stored one could not satisfy.
    pub fn snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.load(Ordering::Relaxed)
    }

    /// Persists the hard state (term, vote, commit).
    pub fn set_hardstate(&mut self, hs: HardState) -> Result<(), StorageError> {
        self.tree
            .insert(KEY_HARD_STATE, encode(&hs, "hard state")?)?;
        self.hard_state = hs;
        Ok(())
    }

    /// Persists only a new commit index (from a `LightReady`).
    pub fn set_commit(&mut self, commit: u64) -> Result<(), StorageError> {
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        self.set_hardstate(hs)
    }

    /// Persists the membership after a conf change is applied.
    pub fn set_conf_state(&mut self, cs: ConfState) -> Result<(), StorageError> {
        self.tree
            .insert(KEY_CONF_STATE, encode(&cs, "conf state")?)?;
        self.conf_state = cs;
        Ok(())
    }

    /// Appends entries, first discarding any existing suffix they conflict with (raft only
    /// hands us entries that supersede what we have from `ents[0].index` on).
    pub fn append(&mut self, ents: &[Entry]) -> Result<(), StorageError> {
        let Some(first) = ents.first() else {
            return Ok(());
        };
        let first_index = first.index;
        if first_index <= self.truncated_index {
            return Err(StorageError::AppendCompacted {
                first: first_index,
                compacted: self.truncated_index,
            });
        }
        if first_index > self.last_index + 1 {
            return Err(StorageError::AppendGap {
                first: first_index,
                last: self.last_index,
            });
        }
        let mut batch = sled::Batch::default();
        for index in first_index..=self.last_index {
            batch.remove(&entry_key(index));
        }
        let mut expected = first_index;
        for e in ents {
            if e.index != expected {
                return Err(StorageError::AppendNotConsecutive(e.index));
            }
            batch.insert(&entry_key(e.index), encode(e, "log entry")?);
            expected += 1;
        }
        self.tree.apply_batch(batch)?;
        self.last_index = expected - 1;
        Ok(())
    }

    /// Replaces the whole log with `snapshot` (received from the leader or bootstrap): the
    /// entries are dropped, the snapshot becomes the compacted prefix, membership and commit
    /// follow the snapshot. One atomic batch, so a crash leaves either the old or the new state.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        let meta = snapshot.get_metadata().clone();
        let first = self.truncated_index + 1;
        if meta.index < first {
            return Err(StorageError::SnapshotOutOfDate {
                index: meta.index,
                first,
            });
        }
        let mut hs = self.hard_state.clone();
        hs.term = hs.term.max(meta.term);
        hs.commit = meta.index;
        let cs = meta.get_conf_state().clone();

        let mut batch = sled::Batch::default();
        for kv in self.tree.scan_prefix([ENTRY_PREFIX]).keys() {
            batch.remove(kv?);
        }
        batch.insert(KEY_SNAPSHOT, encode(&snapshot, "snapshot")?);
        batch.insert(
            KEY_TRUNCATED,
            truncated_bytes(meta.index, meta.term).to_vec(),
        );
        batch.insert(KEY_HARD_STATE, encode(&hs, "hard state")?);
        batch.insert(KEY_CONF_STATE, encode(&cs, "conf state")?);
        self.tree.apply_batch(batch)?;

        info!(
            index = meta.index,
            term = meta.term,
            "raft storage replaced by snapshot"
        );
        self.hard_state = hs;
        self.conf_state = cs;
        self.truncated_index = meta.index;
        self.truncated_term = meta.term;
        self.last_index = meta.index;
        self.snapshot_meta = meta;
        Ok(())
    }

    /// Stores a snapshot of the state machine at `index` (which must be applied locally).
    /// The log is not compacted here; call [`SledStorage::compact`] afterwards.
    pub fn create_snapshot(
        &mut self,
        index: u64,
        conf_state: ConfState,
        data: Vec<u8>,
    ) -> Result<Snapshot, StorageError> {
        if index < self.snapshot_meta.index {
            return Err(StorageError::SnapshotOutOfDate {
                index,
                first: self.snapshot_meta.index,
            });
        }
        let term = self
            .term_of(index)
            .map_err(|_| StorageError::SnapshotIndexOutOfRange {
                index,
                first: self.truncated_index,
                last: self.last_index,
            })?;
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(conf_state);
        snap.data = data.into();
        self.tree.insert(KEY_SNAPSHOT, encode(&snap, "snapshot")?)?;
        self.snapshot_meta = snap.get_metadata().clone();
        self.snapshot_wanted.store(false, Ordering::Relaxed);
        debug!(index, term, "stored state machine snapshot");
        Ok(snap)
    }

    /// Discards entries before `compact_index` (so `first_index()` becomes `compact_index`).
    /// The caller must only compact up to an index covered by a stored snapshot, otherwise a
    /// lagging follower can neither get the entries nor a snapshot that covers them.
    pub fn compact(&mut self, compact_index: u64) -> Result<(), StorageError> {
        if compact_index <= self.truncated_index + 1 {
            return Ok(());
        }
        if compact_index > self.last_index + 1 {
            return Err(StorageError::CompactBeyondLog {
                index: compact_index,
                last: self.last_index,
            });
        }
        let new_truncated = compact_index - 1;
        let term = self
            .term_of(new_truncated)
            .map_err(|e| StorageError::Corrupt(format!("compacting: {e}")))?;
        let mut batch = sled::Batch::default();
        for index in self.truncated_index + 1..=new_truncated {
            batch.remove(&entry_key(index));
        }
        batch.insert(KEY_TRUNCATED, truncated_bytes(new_truncated, term).to_vec());
        self.tree.apply_batch(batch)?;
        self.truncated_index = new_truncated;
        self.truncated_term = term;
        debug!(first = compact_index, "compacted raft log");
        Ok(())
    }

    /// Makes every write so far durable. Called before sending messages that acknowledge
    /// persisted entries or votes.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.db.flush()?;
        Ok(())
    }

    fn read_entry(&self, index: u64) -> Result<Entry, StorageError> {
        let bytes = self.tree.get(entry_key(index))?.ok_or_else(|| {
            StorageError::Corrupt(format!(
                "entry {index} missing inside the log range [{}, {}]",
                self.truncated_index + 1,
                self.last_index
            ))
        })?;
        let e: Entry = decode(&bytes, "log entry")?;
        if e.index != index {
            return Err(StorageError::Corrupt(format!(
                "entry stored at {index} claims index {}",
                e.index
            )));
        }
        Ok(e)
    }

    fn term_of(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.truncated_index {
            return Ok(self.truncated_term);
        }
        if idx == self.snapshot_meta.index && idx != 0 {
            return Ok(self.snapshot_meta.term);
        }
        if idx < self.truncated_index {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if idx > self.last_index {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        Ok(self.read_entry(idx)?.term)
    }
}

fn truncated_bytes(index: u64, term: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&index.to_be_bytes());
    b[8..].copy_from_slice(&term.to_be_bytes());
    b
}

#[path = "storage_meta.rs"]
mod meta;

#[path = "storage_reads.rs"]
mod reads;

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
