//! The replica's driver task: owns the `RawNode`, ticks it, steps messages, serves requests,
//! handles `Ready` in the order raft-rs requires, applies committed entries, and snapshots.
//!
//! Split by concern: `requests` (what handles ask), `apply` (committed entries and
//! snapshots into the state machine), `discovery` (hellos, cluster id, forming a new
//! cluster), `rejoin` (a replica back with an empty disk: learner first, voter when caught up).

mod apply;
mod discovery;
mod membership;
mod rejoin;
mod requests;

pub(crate) use requests::Request;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockWriteGuard};

use raft::prelude::{Message, MessageType};
use raft::{RawNode, SnapshotStatus, StateRole};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::cluster_id::ClusterId;
use super::error::{ProposeError, ReplicaError};
use super::hello::Hello;
use super::logger::raft_logger;
use super::storage::SledStorage;
use super::transport::Transport;
use super::types::ReplicaConfig;
use super::view::{RaftView, role_of};
use crate::state::FleetState;

/// Runs a blocking disk operation (an fsync) without stalling the other tasks of a
/// multi-threaded runtime; on a current-thread runtime there is nobody to hand over to.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
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
    /// raft-rs configuration, kept to rebuild the `RawNode` after forming a new cluster.
    raft_config: raft::Config,
    /// The configured replica set (ids), the same on every start.
    peers: Vec<u64>,
    cluster: ClusterId,
    /// Digest of the genesis this replica holds or would write.
    genesis: u64,
    /// Latest `Hello` from each peer: its cluster id (messages from a peer are stepped only
    /// once it is known to be ours) and what its disk holds.
    heard: BTreeMap<u64, Hello>,
    /// Peers asked for a `Hello` since the last round, so unknown senders are asked once.
    asked: BTreeSet<u64>,
    /// Ticks until the next round of hellos (and rejoin requests).
    hello_in: usize,
    /// Empty disk, not yet decided between forming a new cluster and rejoining.
    forming: bool,
    /// Back with an empty disk into a formed cluster, not yet a learner: never votes.
    rejoining: bool,
    view_tx: watch::Sender<RaftView>,
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
        if config.tick_interval.is_zero() {
            return Err(raft::Error::ConfigInvalid("tick_interval must be non-zero".into()).into());
        }
        let mut store = SledStorage::open(data_dir)?;
        let cluster = ClusterId::from_name(&config.cluster_name);
        let empty_state = FleetState::default().to_snapshot_bytes()?;
        let discovery::Start {
            genesis,
            forming,
            rejoining,
        } = discovery::prepare(&mut store, id, peers, cluster, &empty_state)?;

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
            max_election_tick: config.max_election_tick,
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
        let (view_tx, _) = watch::channel(RaftView::initial(applied));
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
            raft_config: rc,
            peers: peers.to_vec(),
            cluster,
            genesis,
            heard: BTreeMap::new(),
            asked: BTreeSet::new(),
            hello_in: 0,
            forming,
            rejoining,
            view_tx,
        })
    }

    pub(crate) fn shared_state(&self) -> Arc<RwLock<FleetState>> {
        self.fleet.clone()
    }

    pub(crate) fn applied_watch(&self) -> watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    pub(crate) fn view_watch(&self) -> watch::Receiver<RaftView> {
        self.view_tx.subscribe()
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
                    self.on_tick();
                }
                Some(m) = self.inbound.recv() => {
                    let mut res = self.step(m);
                    // Drain what is queued so one Ready (and one fsync) covers the batch.
                    while res.is_ok() && let Ok(m) = self.inbound.try_recv() {
                        res = self.step(m);
                    }
                    if let Err(e) = res {
                        break Err(e);
                    }
                }
                Some(r) = self.requests.recv() => self.handle_request(r),
            }
            if let Err(e) = self.on_ready().and_then(|()| self.maintain()) {
                break Err(e);
            }
            self.publish_view();
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

    /// Takes one inbound message: control messages are handled here, Raft traffic is
    /// stepped only from peers known to be of this cluster and once this replica has a log.
    fn step(&mut self, mut m: Message) -> Result<(), ReplicaError> {
        if m.to != self.id {
            warn!(
                id = self.id,
                to = m.to,
                from = m.from,
                "message for another replica dropped"
            );
            return Ok(());
        }
        if let Some(control) = super::hello::decode(&m) {
            return match control {
                Ok(c) => self.on_control(m.from, c),
                Err(e) => {
                    warn!(id = self.id, from = m.from, error = %e, "bad control message dropped");
                    Ok(())
                }
            };
        }
        if !self.is_our_cluster(m.from) || self.forming || !self.guard_rejoin(&mut m) {
            return Ok(());
        }
        if let Err(e) = self.raw.step(m) {
            // E.g. a message from a peer no longer in the configuration.
            debug!(id = self.id, error = %e, "raft rejected a message");
        }
        Ok(())
    }

    /// Publishes leader, role, term, commit and applied if this turn changed them.
    fn publish_view(&self) {
        let raft = &self.raw.raft;
        let soft = raft.soft_state();
        let view = RaftView {
            leader_id: Some(soft.leader_id).filter(|&l| l != 0),
            role: role_of(soft.raft_state),
            term: raft.term,
            commit: raft.raft_log.committed,
            applied: raft.raft_log.applied,
        };
        self.view_tx.send_if_modified(|cur| {
            let changed = *cur != view;
            *cur = view;
            changed
        });
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

    fn send(&mut self, msgs: Vec<Message>) {
        if msgs.is_empty() {
            return;
        }
        for m in &msgs {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.snapshots_sent.push(m.to);
            }
        }
        let msgs = self.silence_rejoining(msgs);
        self.transport.send(msgs);
    }

    /// `raft-persist=return(ID)` (or `return` for every replica): replica ID's next write of
    /// new entries fails as a disk error would, and the driver stops.
    #[cfg(feature = "failpoints")]
    fn persist_failpoint(&self, has_entries: bool) -> Result<(), ReplicaError> {
        let me = self.id.to_string();
        let hit = fail::eval("raft-persist", |arg| {
            arg.is_none_or(|victim| victim.trim() == me)
        });
        if has_entries && hit == Some(true) {
            return Err(super::error::StorageError::Injected("raft-persist").into());
        }
        Ok(())
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
            #[cfg(feature = "failpoints")]
            self.persist_failpoint(!rd.entries().is_empty())?;
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

        self.maintain_rejoin()?;

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
