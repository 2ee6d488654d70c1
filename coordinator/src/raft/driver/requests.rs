//! Requests from [`crate::raft::ReplicaHandle`]: proposals, membership, leadership, status.

use std::collections::BTreeMap;

use raft::StateRole;
use raft::prelude::{ConfChange, ConfChangeType};
use tokio::sync::oneshot;
use tracing::info;

use super::{Driver, Pending};
use crate::raft::error::ProposeError;
use crate::raft::types::{PeerProgress, Status};
use crate::raft::view::role_of;
use crate::state::Command;

/// Requests from [`super::ReplicaHandle`] to the driver.
pub(crate) enum Request {
    Propose {
        cmd: Command,
        reply: oneshot::Sender<Result<u64, ProposeError>>,
    },
    ConfChange {
        change: ConfChangeType,
        node: u64,
        /// Allow shrinking below three voters (see [`super::membership::check`]).
        force: bool,
        reply: oneshot::Sender<Result<u64, ProposeError>>,
    },
    TransferLeader {
        to: u64,
        reply: oneshot::Sender<Result<(), ProposeError>>,
    },
    Campaign {
        reply: oneshot::Sender<Result<(), ProposeError>>,
    },
    Status {
        reply: oneshot::Sender<Status>,
    },
}

impl Driver {
    pub(super) fn next_ctx(&mut self) -> Vec<u8> {
        self.seq += 1;
        let mut ctx = Vec::with_capacity(24);
        ctx.extend_from_slice(&self.id.to_be_bytes());
        ctx.extend_from_slice(&self.nonce.to_be_bytes());
        ctx.extend_from_slice(&self.seq.to_be_bytes());
        ctx
    }

    pub(super) fn handle_request(&mut self, r: Request) {
        match r {
            Request::Propose { cmd, reply } => {
                if self.raw.raft.state != StateRole::Leader {
                    let _ = reply.send(Err(self.not_leader()));
                    return;
                }
                let data = match cmd.encode() {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = reply.send(Err(ProposeError::Encode(e.to_string())));
                        return;
                    }
                };
                let ctx = self.next_ctx();
                let res = self.raw.propose(ctx.clone(), data);
                self.track(ctx, res, reply);
            }
            Request::ConfChange {
                change,
                node,
                force,
                reply,
            } => {
                if self.raw.raft.state != StateRole::Leader {
                    let _ = reply.send(Err(self.not_leader()));
                    return;
                }
                if let Err(e) = self.check_membership(change, node, force) {
                    let _ = reply.send(Err(e));
                    return;
                }
                let mut cc = ConfChange::default();
                cc.set_change_type(change);
                cc.node_id = node;
                let ctx = self.next_ctx();
                let res = self.raw.propose_conf_change(ctx.clone(), cc);
                self.track(ctx, res, reply);
            }
            Request::TransferLeader { to, reply } => {
                let res = if self.raw.raft.state != StateRole::Leader {
                    Err(self.not_leader())
                } else {
                    info!(id = self.id, to, "transferring leadership");
                    self.raw.transfer_leader(to);
                    Ok(())
                };
                let _ = reply.send(res);
            }
            Request::Campaign { reply } => {
                let res = self
                    .raw
                    .campaign()
                    .map_err(|e| ProposeError::Dropped(e.to_string()));
                let _ = reply.send(res);
            }
            Request::Status { reply } => {
                let _ = reply.send(self.status());
            }
        }
    }

    /// Validates a membership change against the group as this leader sees it now.
    fn check_membership(
        &self,
        change: ConfChangeType,
        node: u64,
        force: bool,
    ) -> Result<(), ProposeError> {
        let raft = &self.raw.raft;
        let cs = raft.prs().conf().to_conf_state();
        let active: std::collections::BTreeSet<u64> = raft
            .prs()
            .iter()
            .filter(|(id, pr)| **id == self.id || pr.recent_active)
            .map(|(id, _)| *id)
            .collect();
        let group = super::membership::Group {
            leader: self.id,
            voters: &cs.voters,
            learners: &cs.learners,
            active: &active,
            pending: raft.has_pending_conf(),
        };
        super::membership::check(&group, change, node, force)
    }

    /// Records a proposal that raft accepted, at the index it was appended at.
    fn track(
        &mut self,
        ctx: Vec<u8>,
        res: raft::Result<()>,
        reply: oneshot::Sender<Result<u64, ProposeError>>,
    ) {
        match res {
            Ok(()) => {
                let index = self.raw.raft.raft_log.last_index();
                let term = self.raw.raft.term;
                self.pending.insert(index, Pending { ctx, term, reply });
            }
            Err(e) => {
                let _ = reply.send(Err(ProposeError::Dropped(e.to_string())));
            }
        }
    }

    fn status(&self) -> Status {
        let raft = &self.raw.raft;
        let role = role_of(raft.state);
        let cs = raft.prs().conf().to_conf_state();
        let mut voters = cs.voters.clone();
        voters.sort_unstable();
        let mut learners = cs.learners.clone();
        learners.sort_unstable();
        let last_index = raft.raft_log.last_index();
        let progress = if raft.state == StateRole::Leader {
            raft.prs()
                .iter()
                .map(|(&id, pr)| {
                    (
                        id,
                        PeerProgress {
                            matched: pr.matched,
                            next_index: pr.next_idx,
                            state: format!("{:?}", pr.state),
                            lag: last_index.saturating_sub(pr.matched),
                            recent_active: pr.recent_active,
                        },
                    )
                })
                .collect()
        } else {
            BTreeMap::new()
        };
        Status {
            id: self.id,
            leader_id: self.leader_hint(),
            term: raft.term,
            commit: raft.raft_log.committed,
            applied: raft.raft_log.applied,
            first_index: raft.raft_log.first_index(),
            last_index,
            role,
            voters,
            learners,
            progress,
            rejoining: self.rejoining,
        }
    }
}
