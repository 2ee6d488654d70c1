//! A replica back under its old id with an empty disk has forgotten entries it acknowledged
//! and votes it cast, so it must not vote until it holds everything committed. It never has to
//! be told: it finds the cluster formed ([`super::discovery`]), marks itself rejoining (on
//! disk) and asks the leader, every election timeout, to take it through:
//!
//! 1. removal from the voters (raft-rs keeps a member's replication progress, which still
//!    claims the lost entries and makes the leader ignore the replica's rejections; a removal
//!    drops it, with no reach into raft-rs internals);
//! 2. re-adding as a learner: fresh progress, probed, restored by snapshot;
//! 3. promotion to voter by the leader once its match index reaches the commit index.
//!
//! The replica clears its mark once it sees itself a learner; until then it neither answers
//! nor sends vote requests. The leader keeps no state about rejoiners: each step follows
//! from the current membership and progress, so a new leader carries on where the old left.

use raft::StateRole;
use raft::prelude::{ConfChange, ConfChangeType, ConfState, Message, MessageType};
use tracing::{debug, info, warn};

use super::Driver;
use crate::raft::error::ReplicaError;

fn is_vote_request(t: MessageType) -> bool {
    matches!(
        t,
        MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
    )
}

impl Driver {
    /// Inbound guard. Returns false if `m` must be dropped.
    pub(super) fn guard_rejoin(&mut self, m: &mut Message) -> bool {
        if is_vote_request(m.get_msg_type())
            && (self.rejoining || !self.raw.store().is_initialized())
        {
            debug!(
                id = self.id,
                from = m.from,
                "not caught up after an empty disk; not voting"
            );
            return false;
        }
        // Until the leader removes this replica, its progress still claims the lost log and
        // heartbeats advertise a commit index beyond what is here, which raft-rs treats as
        // fatal. The commit index in a heartbeat is only advisory: cap it at our log.
        if m.get_msg_type() == MessageType::MsgHeartbeat {
            let last = self.raw.raft.raft_log.last_index();
            if m.commit > last {
                m.commit = last;
            }
        }
        true
    }

    /// Outbound guard: a rejoining replica that restored a snapshot listing it as a voter
    /// would campaign; its vote requests go nowhere.
    pub(super) fn silence_rejoining(&self, mut msgs: Vec<Message>) -> Vec<Message> {
        if self.rejoining {
            msgs.retain(|m| !is_vote_request(m.get_msg_type()));
        }
        msgs
    }

    /// Leader side of a `Rejoin` request from configured replica `from`: the next step of its
    /// way back, one membership change at a time.
    pub(super) fn admit_rejoiner(&mut self, from: u64) {
        if self.raw.raft.state != StateRole::Leader || from == self.id {
            return;
        }
        if self.raw.raft.has_pending_conf() {
            return; // it asks again next election timeout
        }
        let cs = self.raw.raft.prs().conf().to_conf_state();
        if !cs.voters_outgoing.is_empty() {
            return;
        }
        let change = if cs.voters.contains(&from) {
            ConfChangeType::RemoveNode
        } else if cs.learners.contains(&from) {
            return; // promoted by `maintain_rejoin` once caught up
        } else {
            ConfChangeType::AddLearnerNode
        };
        warn!(
            id = self.id,
            peer = from,
            ?change,
            "replica lost its disk; taking it through learner"
        );
        self.propose_membership(change, from);
    }

    fn propose_membership(&mut self, change: ConfChangeType, node: u64) {
        let mut cc = ConfChange::default();
        cc.set_change_type(change);
        cc.node_id = node;
        let ctx = self.next_ctx();
        if let Err(e) = self.raw.propose_conf_change(ctx, cc) {
            warn!(id = self.id, node, ?change, error = %e, "membership change not proposed");
        }
    }

    /// Called with every membership this replica applies (conf change or snapshot): once it
    /// is a learner, a rejoining replica clears its mark (several changes can apply in one
    /// turn, so a check after the turn could miss the learner stage).
    pub(super) fn note_membership(&mut self, cs: &ConfState) -> Result<(), ReplicaError> {
        if self.rejoining && cs.learners.contains(&self.id) {
            self.raw.mut_store().set_rejoining(false)?;
            self.rejoining = false;
            info!(
                id = self.id,
                "rejoined as a learner; voting again once promoted"
            );
        }
        Ok(())
    }

    /// After each turn, on the leader: promote a configured learner whose log reached the
    /// commit index.
    pub(super) fn maintain_rejoin(&mut self) -> Result<(), ReplicaError> {
        if self.raw.raft.state != StateRole::Leader || self.raw.raft.has_pending_conf() {
            return Ok(());
        }
        let cs = self.raw.raft.prs().conf().to_conf_state();
        let committed = self.raw.raft.raft_log.committed;
        let ready = cs.learners.iter().copied().find(|l| {
            self.peers.contains(l)
                && self
                    .raw
                    .raft
                    .prs()
                    .get(*l)
                    .is_some_and(|pr| pr.matched >= committed)
        });
        if let Some(learner) = ready {
            info!(
                id = self.id,
                learner, committed, "learner caught up; promoting it to voter"
            );
            self.propose_membership(ConfChangeType::AddNode, learner);
        }
        Ok(())
    }
}
