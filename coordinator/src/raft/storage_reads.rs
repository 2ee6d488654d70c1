//! What raft-rs reads from the log: [`raft::Storage`] for [`SledStorage`] (initial state, entries,
//! terms, bounds, the snapshot to send a follower).

use raft::{GetEntriesContext, RaftState, Storage};

use super::*;

impl Storage for SledStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into();
        if low <= self.truncated_index {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if high > self.last_index + 1 || low > high {
            // raft-rs documents this as a caller bug (MemStorage panics); report it instead.
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        let mut out = Vec::with_capacity((high - low).min(1024) as usize);
        let mut size: u64 = 0;
        for kv in self.tree.range(entry_key(low)..entry_key(high)) {
            let (k, v) = kv.map_err(StorageError::from)?;
            let index = key_index(&k)?;
            let e: Entry = decode(&v, "log entry")?;
            if e.index != index || index != low + out.len() as u64 {
                return Err(StorageError::Corrupt(format!(
                    "log entry at key {index} has index {} (hole or mismatch in the log)",
                    e.index
                ))
                .into());
            }
            size += u64::from(e.compute_size());
            // At least one entry is always returned, even if it alone exceeds max_size.
            if let Some(max) = max_size
                && !out.is_empty()
                && size > max
            {
                break;
            }
            out.push(e);
        }
        if out.is_empty() && high > low {
            return Err(StorageError::Corrupt(format!("entries [{low}, {high}) missing")).into());
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.term_of(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.truncated_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index)
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let usable = self.snapshot_meta.index >= request_index
            && self.snapshot_meta.index > 0
            && conf_contains(self.snapshot_meta.get_conf_state(), to);
        if !usable {
            // E.g. `to` was added after the stored snapshot was taken: it would refuse a
            // snapshot that does not list it. Ask the replica for a fresh one; raft retries.
            self.snapshot_wanted.store(true, Ordering::Relaxed);
            return Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        match self.stored_snapshot()? {
            Some(s) => Ok(s),
            None => Err(StorageError::Corrupt("snapshot metadata without snapshot".into()).into()),
        }
    }
}
