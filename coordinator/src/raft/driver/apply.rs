//! Applying committed entries and leader snapshots to the state machine, and answering the
//! local proposals they complete.

use protobuf::Message as PbMessage;
use raft::prelude::{ConfChange, ConfChangeV2, Entry, EntryType, Snapshot};
use tracing::{info, warn};

use super::{Driver, EntryOutcome};
use crate::raft::error::{ProposeError, ReplicaError};
use crate::state::{ApplyOutcome, Command, FleetState};

impl Driver {
    pub(super) fn apply(&mut self, entries: Vec<Entry>) -> Result<(), ReplicaError> {
        for e in entries {
            let index = e.index;
            let outcome = match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => {
                    // A new leader's no-op entry.
                    self.fleet_mut().note_applied(index);
                    EntryOutcome::Ok
                }
                EntryType::EntryNormal => {
                    let cmd =
                        Command::decode(&e.data).map_err(|err| ReplicaError::CorruptEntry {
                            index,
                            reason: err.to_string(),
                        })?;
                    match self.fleet_mut().apply(index, &cmd) {
                        ApplyOutcome::Applied | ApplyOutcome::Duplicate => EntryOutcome::Ok,
                        ApplyOutcome::Rejected(r) => EntryOutcome::Rejected(r),
                    }
                }
                EntryType::EntryConfChange => {
                    let mut cc = ConfChange::default();
                    cc.merge_from_bytes(&e.data)
                        .map_err(|err| ReplicaError::CorruptEntry {
                            index,
                            reason: format!("conf change: {err}"),
                        })?;
                    let res = self.raw.apply_conf_change(&cc);
                    self.conf_change_applied(index, res)?
                }
                EntryType::EntryConfChangeV2 => {
                    let mut cc = ConfChangeV2::default();
                    cc.merge_from_bytes(&e.data)
                        .map_err(|err| ReplicaError::CorruptEntry {
                            index,
                            reason: format!("conf change v2: {err}"),
                        })?;
                    let res = self.raw.apply_conf_change(&cc);
                    self.conf_change_applied(index, res)?
                }
            };
            self.resolve(index, &e.context, outcome);
            self.applied_tx.send_replace(index);
        }
        Ok(())
    }

    /// Persists the membership that applying a conf change produced.
    fn conf_change_applied(
        &mut self,
        index: u64,
        res: raft::Result<raft::prelude::ConfState>,
    ) -> Result<EntryOutcome, ReplicaError> {
        self.fleet_mut().note_applied(index);
        match res {
            Ok(cs) => {
                info!(id = self.id, index, voters = ?cs.voters, learners = ?cs.learners, "membership changed");
                self.note_membership(&cs)?;
                self.raw.mut_store().set_conf_state(cs)?;
                Ok(EntryOutcome::Ok)
            }
            // Invalid changes fail identically on every replica, so skipping keeps them equal.
            Err(e) => {
                warn!(id = self.id, index, error = %e, "conf change rejected");
                Ok(EntryOutcome::Rejected(e.to_string()))
            }
        }
    }

    /// Answers the local proposal at `index`, if any.
    fn resolve(&mut self, index: u64, ctx: &[u8], outcome: EntryOutcome) {
        // Anything still pending below `index` had its entry replaced by another leader's.
        let hint = self.not_leader();
        while let Some(e) = self.pending.first_entry() {
            if *e.key() >= index {
                break;
            }
            let _ = e.remove().reply.send(Err(hint.clone()));
        }
        let Some(p) = self.pending.remove(&index) else {
            return;
        };
        let res = if p.ctx != ctx {
            Err(self.not_leader())
        } else {
            match outcome {
                EntryOutcome::Ok => Ok(index),
                EntryOutcome::Rejected(reason) => Err(ProposeError::Rejected { index, reason }),
            }
        };
        let _ = p.reply.send(res);
    }

    pub(super) fn restore_snapshot(&mut self, snap: Snapshot) -> Result<(), ReplicaError> {
        let index = snap.get_metadata().index;
        let members = snap.get_metadata().get_conf_state().clone();
        // Decode first: a bad snapshot must not half-replace the log.
        let mut fleet = FleetState::from_snapshot_bytes(&snap.data)?;
        fleet.note_applied(index);
        self.raw.mut_store().apply_snapshot(snap)?;
        self.note_membership(&members)?;
        *self.fleet_mut() = fleet;
        info!(
            id = self.id,
            index, "restored state machine from leader snapshot"
        );
        // Proposals below the snapshot can no longer be matched to their entries.
        let hint = self.not_leader();
        while let Some(e) = self.pending.first_entry() {
            if *e.key() > index {
                break;
            }
            let _ = e.remove().reply.send(Err(hint.clone()));
        }
        self.applied_tx.send_replace(index);
        Ok(())
    }
}
