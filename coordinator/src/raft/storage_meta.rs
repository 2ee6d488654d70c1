//! The replica's life cycle as stored beside its Raft log: whether it has a log at all, its
//! genesis, which cluster the log belongs to, and whether this replica came back with an empty
//! disk and has not been through learner yet (it must not vote until then, even after a
//! restart).

use raft::prelude::{ConfState, Snapshot};

use super::SledStorage;
use crate::raft::cluster_id::ClusterId;
use crate::raft::error::StorageError;

const KEY_CLUSTER_ID: &[u8] = b"m/cluster_id";
const KEY_REJOINING: &[u8] = b"m/rejoining";

impl SledStorage {
    /// True once the storage holds a configuration (bootstrapped, or restored from a snapshot).
    pub fn is_initialized(&self) -> bool {
        self.conf_state != ConfState::default()
    }

    /// Creates the initial state of a brand-new cluster: a snapshot at index 1, term 1 holding
    /// `voters` and the empty state machine `data`.
    ///
    /// Every bootstrapping replica writes the identical snapshot, and because the log then
    /// starts at 2, a replica that later joins with an empty disk cannot be served from the log
    /// and always receives a snapshot (which carries the membership) first.
    pub fn bootstrap(&mut self, voters: &[u64], data: Vec<u8>) -> Result<(), StorageError> {
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        meta.index = 1;
        meta.term = 1;
        meta.mut_conf_state().voters = voters.to_vec();
        snap.data = data.into();
        self.apply_snapshot(snap)?;
        self.flush()
    }

    /// The cluster this log belongs to, if recorded (logs from before cluster ids, and
    /// folders seeded by `mcdnnctl snapshot restore`, have none until their first start).
    pub fn cluster_id(&self) -> Result<Option<ClusterId>, StorageError> {
        match self.tree.get(KEY_CLUSTER_ID)? {
            None => Ok(None),
            Some(b) => {
                let bytes: [u8; 8] = b.as_ref().try_into().map_err(|_| {
                    StorageError::Corrupt(format!("cluster id has {} bytes, not 8", b.len()))
                })?;
                Ok(Some(ClusterId(u64::from_be_bytes(bytes))))
            }
        }
    }

    /// Records the cluster this log belongs to (durably).
    pub fn set_cluster_id(&mut self, id: ClusterId) -> Result<(), StorageError> {
        self.tree.insert(KEY_CLUSTER_ID, &id.0.to_be_bytes())?;
        self.flush()
    }

    /// Whether this replica is catching up after losing its disk.
    pub fn rejoining(&self) -> Result<bool, StorageError> {
        Ok(self.tree.get(KEY_REJOINING)?.is_some())
    }

    /// Sets or clears the rejoining mark (durably: a restart must not forget it).
    pub fn set_rejoining(&mut self, on: bool) -> Result<(), StorageError> {
        if on {
            self.tree.insert(KEY_REJOINING, &[1u8])?;
        } else {
            self.tree.remove(KEY_REJOINING)?;
        }
        self.flush()
    }

    /// True when the log holds nothing beyond the initial snapshot at index 1: no entry was
    /// ever appended, so this replica never acknowledged or voted on anything.
    pub fn at_genesis(&self) -> bool {
        self.is_initialized() && self.truncated_index <= 1 && self.last_index <= 1
    }

    /// A second view of the same database, for a `RawNode` rebuilt after bootstrapping.
    pub(crate) fn reopen(&self) -> Result<SledStorage, StorageError> {
        SledStorage::from_db(self.db.clone())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn temp() -> SledStorage {
        SledStorage::from_db(sled::Config::new().temporary(true).open().unwrap()).unwrap()
    }

    #[test]
    fn cluster_id_and_rejoining_survive_a_reopen() {
        let mut s = temp();
        assert_eq!(s.cluster_id().unwrap(), None);
        assert!(!s.rejoining().unwrap());
        s.set_cluster_id(ClusterId(5)).unwrap();
        s.set_rejoining(true).unwrap();
        let again = s.reopen().unwrap();
        assert_eq!(again.cluster_id().unwrap(), Some(ClusterId(5)));
        assert!(again.rejoining().unwrap());
        s.set_rejoining(false).unwrap();
        assert!(!s.reopen().unwrap().rejoining().unwrap());
    }

    #[test]
    fn genesis_is_only_the_initial_snapshot() {
        let mut s = temp();
        assert!(!s.at_genesis());
        s.bootstrap(&[1, 2, 3], b"g".to_vec()).unwrap();
        assert!(s.at_genesis());
        let e = raft::prelude::Entry {
            index: 2,
            term: 2,
            ..Default::default()
        };
        s.append(&[e]).unwrap();
        assert!(!s.at_genesis());
    }

    #[test]
    fn a_garbled_cluster_id_is_reported() {
        let s = temp();
        s.tree.insert(KEY_CLUSTER_ID, &[1u8, 2, 3]).unwrap();
        assert!(matches!(s.cluster_id(), Err(StorageError::Corrupt(_))));
    }
}
