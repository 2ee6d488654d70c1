//! Surviving a replica that comes back under its old id with an empty disk.

use raft::StateRole;
use raft::prelude::{Message, MessageType};
use tracing::{debug, warn};

use super::Driver;

impl Driver {
    /// Keeps raft-rs' "acknowledged data is never lost" assumption from crashing or wedging
    /// the group when a replica comes back with a wiped disk under its old id. Returns false
    /// if `m` must be dropped.
    pub(super) fn guard_lost_disk(&mut self, m: &mut Message) -> bool {
        let store = self.raw.store();
        match m.get_msg_type() {
            // With an empty disk this replica has forgotten its log and its votes: voting now
            // could elect a replica missing committed entries, or vote twice in a term. It
            // stays silent until a leader's snapshot has brought it up to date.
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
                if !store.is_initialized() =>
            {
                debug!(id = self.id, from = m.from, "no state yet; not voting");
                false
            }
            // The leader still believes the old log is here and advertises a commit index
            // beyond our log, which raft-rs treats as fatal. Commit is only advisory: clamp.
            MessageType::MsgHeartbeat => {
                let last = self.raw.raft.raft_log.last_index();
                if m.commit > last {
                    debug!(
                        id = self.id,
                        commit = m.commit,
                        last,
                        "clamping heartbeat commit"
                    );
                    m.commit = last;
                }
                true
            }
            // Leader side: a follower rejecting with a last index below what it acknowledged
            // before has lost its log. raft-rs would discard the rejection as stale forever;
            // restart probing from what the follower really has (a snapshot if compacted).
            MessageType::MsgAppendResponse
                if m.reject
                    && m.term == self.raw.raft.term
                    && self.raw.raft.state == StateRole::Leader =>
            {
                if let Some(pr) = self.raw.raft.mut_prs().get_mut(m.from)
                    && m.reject_hint < pr.matched
                {
                    warn!(
                        id = self.id,
                        peer = m.from,
                        matched = pr.matched,
                        peer_last = m.reject_hint,
                        "peer lost acknowledged log entries (disk wiped?); re-probing it"
                    );
                    pr.matched = m.reject_hint;
                    pr.pending_snapshot = 0;
                    pr.become_probe();
                }
                true
            }
            _ => true,
        }
    }
}
