//! The replica's driver task: owns the `RawNode`, ticks it, steps messages, serves requests,
//! handles `Ready` in the order raft-rs requires, applies committed entries, and snapshots.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockWriteGuard};

use protobuf::Message as PbMessage;
use raft::prelude::{
    ConfChange, ConfChangeType, ConfChangeV2, Entry, EntryType, Message, MessageType,
};
use raft::{RawNode, SnapshotStatus, StateRole};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::error::{ProposeError, ReplicaError};
use super::logger::raft_logger;
use super::replica::{PeerProgress, ReplicaConfig, Role, Status};
use super::storage::SledStorage;
use super::transport::Transport;
use crate::state::{ApplyOutcome, Command, FleetState};

/// Runs a blocking disk operation (an fsync) without stalling the other tasks of a
/// multi-threaded runtime; on a current-thread runtime there is nobody to hand over to.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Requests from [`super::ReplicaHandle`] to the driver.
pub(crate) enum Request {
    Propose {
        cmd: Command,
        reply: oneshot::Sender<Result<u64, ProposeError>>,
    },
    ConfChange {
        change: ConfChangeType,
        node: u64,
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

/// A local proposal waiting for its entry to be applied.
struct Pending {
    /// Unique id carried in the entry context; tells our entry from one that replaced it.
    ctx: Vec<u8>,
    term: u64,
    reply: oneshot::Sender<Result<u64, ProposeError>>,
}

/// Result of applying one committed entry, reported to its proposer.
enum EntryOutcome {
    Ok,
    Rejected(String),
}

pub(crate) struct Driver {
    id: u64,
    raw: RawNode<SledStorage>,
    transport: Arc<dyn Transport>,
    config: ReplicaConfig,
    fleet: Arc<RwLock<FleetState>>,
    applied_tx: watch::Sender<u64>,
    requests: mpsc::Receiver<Request>,
    inbound: mpsc::Receiver<Message>,
    shutdown: CancellationToken,
    /// Local proposals by log index.
    pending: BTreeMap<u64, Pending>,
    /// Random per start, so ids never collide with proposals made before a restart.
    nonce: u64,
    seq: u64,
    /// Peers sent a snapshot during the current ready, reported after `advance`.
    snapshots_sent: Vec<u64>,
}

impl Driver {
    #[allow(clippy::too_many_arguments)] // internal constructor mirroring `Replica::start`
    pub(crate) fn open(
        id: u64,
        peers: &[u64],
        data_dir: &Path,
        transport: Arc<dyn Transport>,
        config: ReplicaConfig,
        requests: mpsc::Receiver<Request>,
        inbound: mpsc::Receiver<Message>,
        shutdown: CancellationToken,
    ) -> Result<Self, ReplicaError> {
        if id == 0 {
            return Err(ReplicaError::ZeroId);
        }
        let mut store = SledStorage::open(data_dir)?;
        if !store.is_initialized() {
            if config.bootstrap {
                if !peers.contains(&id) {
                    return Err(ReplicaError::NotInPeers {
                        id,
                        peers: peers.to_vec(),
                    });
                }
                info!(id, ?peers, "bootstrapping a new raft cluster");
                store.bootstrap(peers, FleetState::default().to_snapshot_bytes()?)?;
            } else {
                info!(
                    id,
                    "empty raft storage; waiting for the leader to send a snapshot"
                );
            }
        }

        // The state machine lives in memory: rebuild it from the stored snapshot; raft then
        // replays the committed entries after it (`applied` = snapshot index).
        let fleet = match store.stored_snapshot()? {
            Some(s) => FleetState::from_snapshot_bytes(&s.data)?,
            None => FleetState::default(),
        };
        let applied = store.snapshot_metadata().index;

        let rc = raft::Config {
            id,
            election_tick: config.election_tick,
            heartbeat_tick: config.heartbeat_tick,
            applied,
            max_size_per_msg: config.max_size_per_msg,
            max_inflight_msgs: config.max_inflight_msgs,
            check_quorum: config.check_quorum,
            pre_vote: config.pre_vote,
            ..Default::default()
        };
        rc.validate()?;
        let raw = RawNode::new(&rc, store, &raft_logger(id))?;
        let (applied_tx, _) = watch::channel(applied);
        Ok(Driver {
            id,
            raw,
            transport,
            config,
            fleet: Arc::new(RwLock::new(fleet)),
            applied_tx,
            requests,
            inbound,
            shutdown,
            pending: BTreeMap::new(),
            nonce: rand::random(),
            seq: 0,
            snapshots_sent: Vec::new(),
        })
    }

    pub(crate) fn shared_state(&self) -> Arc<RwLock<FleetState>> {
        self.fleet.clone()
    }

    pub(crate) fn applied_watch(&self) -> watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    /// The task body. Returns when shut down, or with the error that made the replica stop
    /// (storage failure, undecodable committed entry): continuing would risk divergence.
    pub(crate) async fn run(mut self) -> Result<(), ReplicaError> {
        let mut ticker = tokio::time::interval(self.config.tick_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let result = loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break Ok(()),
                _ = ticker.tick() => {
                    self.raw.tick();
                }
                Some(m) = self.inbound.recv() => {
                    self.step(m);
                    // Drain what is queued so one Ready (and one fsync) covers the batch.
                    while let Ok(m) = self.inbound.try_recv() {
                        self.step(m);
                    }
                }
                Some(r) = self.requests.recv() => self.handle_request(r),
            }
            if let Err(e) = self.on_ready().and_then(|()| self.maintain()) {
                break Err(e);
            }
        };
        if let Err(e) = &result {
            error!(id = self.id, error = %e, "raft replica stopped");
        }
        // Dropping `pending` fails outstanding proposals with `Stopped`.
        if let Err(e) = blocking(|| self.raw.store().flush()) {
            warn!(id = self.id, error = %e, "final flush failed");
        }
        info!(id = self.id, "raft replica task ended");
        result
    }

    fn step(&mut self, mut m: Message) {
        if m.to != self.id {
            warn!(
                id = self.id,
                to = m.to,
                from = m.from,
                "message for another replica dropped"
            );
            return;
        }
        if !self.guard_lost_disk(&mut m) {
            return;
        }
        if let Err(e) = self.raw.step(m) {
            // E.g. a message from a peer no longer in the configuration.
            debug!(id = self.id, error = %e, "raft rejected a message");
        }
    }

    /// Keeps raft-rs' "acknowledged data is never lost" assumption from crashing or wedging
    /// the group when a replica comes back with a wiped disk under its old id. Returns false
    /// if `m` must be dropped.
    fn guard_lost_disk(&mut self, m: &mut Message) -> bool {
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

    fn leader_hint(&self) -> Option<u64> {
        match self.raw.raft.leader_id {
            0 => None,
            l => Some(l),
        }
    }

    fn not_leader(&self) -> ProposeError {
        ProposeError::NotLeader {
            leader_hint: self.leader_hint(),
        }
    }

    fn next_ctx(&mut self) -> Vec<u8> {
        self.seq += 1;
        let mut ctx = Vec::with_capacity(24);
        ctx.extend_from_slice(&self.id.to_be_bytes());
        ctx.extend_from_slice(&self.nonce.to_be_bytes());
        ctx.extend_from_slice(&self.seq.to_be_bytes());
        ctx
    }

    fn handle_request(&mut self, r: Request) {
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
                reply,
            } => {
                if self.raw.raft.state != StateRole::Leader {
                    let _ = reply.send(Err(self.not_leader()));
                    return;
                }
                // A leader that removes itself keeps leading a group it is not in; hand
                // leadership over first.
                if change == ConfChangeType::RemoveNode && node == self.id {
                    let _ = reply.send(Err(ProposeError::CannotRemoveLeader));
                    return;
                }
                // raft-rs silently turns a second concurrent conf change into an empty entry;
                // refuse it up front with a clear error instead.
                if self.raw.raft.has_pending_conf() {
                    let _ = reply.send(Err(ProposeError::ConfChangeInProgress));
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
        let role = match raft.state {
            StateRole::Follower => Role::Follower,
            StateRole::PreCandidate => Role::PreCandidate,
            StateRole::Candidate => Role::Candidate,
            StateRole::Leader => Role::Leader,
        };
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
        }
    }

    fn send(&mut self, msgs: Vec<Message>) {
        if msgs.is_empty() {
            return;
        }
        for m in &msgs {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.snapshots_sent.push(m.to);
            }
        }
        self.transport.send(msgs);
    }

    /// Handles every pending `Ready`, in the order raft-rs documents.
    fn on_ready(&mut self) -> Result<(), ReplicaError> {
        while self.raw.has_ready() {
            let mut rd = self.raw.ready();
            // 1. A leader may send appends before persisting: followers' acks, not its own
            //    disk, decide commitment.
            self.send(rd.take_messages());
            // 2. A snapshot from the leader replaces log and state machine.
            if !rd.snapshot().is_empty() {
                self.restore_snapshot(rd.snapshot().clone())?;
            }
            // 3. Entries committed (and persisted) earlier.
            self.apply(rd.take_committed_entries())?;
            // 4.-5. Persist new entries and hard state, durably when raft needs it ...
            self.raw.mut_store().append(rd.entries())?;
            if let Some(hs) = rd.hs() {
                self.raw.mut_store().set_hardstate(hs.clone())?;
            }
            if rd.must_sync() {
                blocking(|| self.raw.store().flush())?;
            }
            // 6. ... before sending messages that promise it (votes, append acks).
            self.send(rd.take_persisted_messages());
            // 7. Advance; the light ready carries what became possible after persisting.
            let mut light = self.raw.advance(rd);
            if let Some(commit) = light.commit_index() {
                self.raw.mut_store().set_commit(commit)?;
            }
            self.send(light.take_messages());
            self.apply(light.take_committed_entries())?;
            self.raw.advance_apply();
            // The transport cannot tell us whether a snapshot arrived; assume it did. If it
            // was lost, the follower rejects the next append and the leader sends it again.
            for to in std::mem::take(&mut self.snapshots_sent) {
                self.raw.report_snapshot(to, SnapshotStatus::Finish);
            }
        }
        Ok(())
    }

    fn fleet_mut(&self) -> RwLockWriteGuard<'_, FleetState> {
        self.fleet.write().unwrap_or_else(|e| e.into_inner())
    }

    fn restore_snapshot(&mut self, snap: raft::prelude::Snapshot) -> Result<(), ReplicaError> {
        let index = snap.get_metadata().index;
        // Decode first: a bad snapshot must not half-replace the log.
        let mut fleet = FleetState::from_snapshot_bytes(&snap.data)?;
        fleet.note_applied(index);
        self.raw.mut_store().apply_snapshot(snap)?;
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

    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), ReplicaError> {
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

    /// Housekeeping after each loop turn: fail proposals after a leadership loss, snapshot
    /// and compact the log.
    fn maintain(&mut self) -> Result<(), ReplicaError> {
        let (state, term) = (self.raw.raft.state, self.raw.raft.term);
        let lost = state != StateRole::Leader || self.pending.values().any(|p| p.term != term);
        if lost && !self.pending.is_empty() {
            let err = self.not_leader();
            debug!(
                id = self.id,
                n = self.pending.len(),
                "leadership lost; failing proposals"
            );
            for (_, p) in std::mem::take(&mut self.pending) {
                let _ = p.reply.send(Err(err.clone()));
            }
        }

        let applied = self.raw.raft.raft_log.applied;
        let store = self.raw.store();
        let snap_index = store.snapshot_metadata().index;
        let due = applied >= snap_index + self.config.snapshot_interval.max(1);
        let wanted = store.snapshot_wanted() && applied > snap_index;
        if due || wanted {
            let data = self
                .fleet
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .to_snapshot_bytes()?;
            let cs = self.raw.store().conf_state().clone();
            let store = self.raw.mut_store();
            store.create_snapshot(applied, cs, data)?;
            if due {
                let keep_from = applied.saturating_sub(self.config.log_retain_entries) + 1;
                store.compact(keep_from)?;
            }
            blocking(|| store.flush())?;
            debug!(id = self.id, applied, compacted = due, "snapshot taken");
        }
        Ok(())
    }
}
