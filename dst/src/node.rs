//! A virtual node: a real sled result spool in its own folder, results produced at a seeded
//! rate, and the exchange's [`NodeLink`] carrying them to the leader. Losing its store means a
//! new folder and so a new spool incarnation; what the old one had not had acknowledged is gone
//! (as on a device), and the evidence says so.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcdnn_node::spool::Spool;
use mcdnn_node::store::NodeStore;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use wire::msg::{InferenceResult, PlaceTag};

use crate::exchange::link::{Action, Event, NodeLink};
use crate::net::{Addr, Envelope, Payload, SimNet};
use crate::rng::SimRng;
use crate::trace::Trace;

/// Results per batch.
const BATCH: usize = 16;
/// The node's clock tick (produce, maybe send).
const TICK: Duration = Duration::from_millis(100);
/// A batch unanswered this long is sent again (to the next replica).
const RETRY_AFTER: Duration = Duration::from_millis(1000);

/// One opening of a node's spool.
#[derive(Debug, Clone, Default)]
pub struct Incarnation {
    /// The spool's random id (only for matching against the ledger; never traced).
    pub id: u64,
    /// First and last sequence numbers appended (none if nothing was).
    pub first_seq: Option<u64>,
    pub last_seq: u64,
    /// Highest acknowledgement the spool took.
    pub acked: u64,
    /// Its store was lost (what was not acknowledged is gone).
    pub lost: bool,
}

/// What a node leaves for the final checks.
#[derive(Debug, Clone, Default)]
pub struct NodeEvidence {
    pub incarnations: Vec<Incarnation>,
    pub adopted_epochs: Vec<u64>,
    pub stale_plans: u64,
    /// Results still spooled.
    pub pending: usize,
}

/// Orders for a node from the fault schedule.
#[derive(Debug)]
pub enum NodeCtl {
    /// The device's storage is gone: a new, empty store.
    LoseStore,
    /// The node process restarts on the same store: a new incarnation, and what the old ones
    /// had not had acknowledged is still sent under theirs.
    Restart,
}

pub struct NodeActor {
    pub n: usize,
    pub root: PathBuf,
    pub net: SimNet,
    pub trace: Trace,
    pub rng: SimRng,
    pub producing: Arc<AtomicBool>,
    pub evidence: Arc<Mutex<NodeEvidence>>,
}

struct Store {
    spool: Spool,
    _store: NodeStore,
    dir: PathBuf,
}

impl NodeActor {
    fn open(&self, k: usize) -> Result<Store, String> {
        let dir = self.root.join(format!("node-{}-{k}", self.n));
        let store = crate::lock_wait::when_unlocked(|| NodeStore::open(&dir))
            .map_err(|e| format!("node {} store: {e}", self.n))?;
        let spool = Spool::open(&store).map_err(|e| format!("node {} spool: {e}", self.n))?;
        self.evidence().incarnations.push(Incarnation {
            id: spool.incarnation(),
            ..Incarnation::default()
        });
        Ok(Store {
            spool,
            _store: store,
            dir,
        })
    }

    fn evidence(&self) -> std::sync::MutexGuard<'_, NodeEvidence> {
        self.evidence.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the node until aborted; returns its control channel.
    pub fn spawn(self, replicas: Vec<u64>) -> (mpsc::UnboundedSender<NodeCtl>, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let inbox = self.net.inbox(Addr::Node(self.n));
        let task = tokio::spawn(async move {
            if let Err(e) = self.run(replicas, inbox, rx).await {
                self.trace.violation(format!("harness: {e}"));
            }
        });
        (tx, task)
    }

    async fn run(
        &self,
        replicas: Vec<u64>,
        mut inbox: mpsc::UnboundedReceiver<Envelope>,
        mut ctl: mpsc::UnboundedReceiver<NodeCtl>,
    ) -> Result<(), String> {
        let mut k = 0;
        let mut store = self.open(k)?;
        let mut link = NodeLink::new(self.n, replicas, RETRY_AFTER);
        let mut next_tick = Instant::now() + TICK;
        loop {
            let actions = tokio::select! {
                biased;
                Some(order) = ctl.recv() => {
                    let Store { spool, _store, dir } = store;
                    drop((spool, _store));
                    if matches!(order, NodeCtl::LoseStore) {
                        // The folder goes with the device's storage; a failure to delete only
                        // leaves litter in the seed's temp folder.
                        let _ = std::fs::remove_dir_all(&dir);
                        for inc in &mut self.evidence().incarnations {
                            inc.lost = true;
                        }
                        k += 1;
                    }
                    store = self.open(k)?;
                    let incarnations = self.evidence().incarnations.len();
                    self.trace.event(format!(
                        "node {} {order:?}: store {k}, incarnation {}",
                        self.n,
                        incarnations - 1
                    ));
                    Vec::new()
                }
                Some(env) = inbox.recv() => match env.payload {
                    Payload::ToClient(msg) => link.handle(Event::Received(msg), Instant::now()),
                    _ => Vec::new(),
                },
                () = tokio::time::sleep_until(next_tick) => {
                    next_tick += TICK;
                    self.produce(&store.spool)?;
                    let now = Instant::now();
                    let next = if link.wants_batch(now) {
                        let after = store.spool.acked_up_to().map_err(|e| e.to_string())?;
                        let b = store.spool.batch_after(after, BATCH).map_err(|e| e.to_string())?;
                        Some(wire::msg::ResultBatch {
                            incarnation: b.incarnation,
                            first_seq: b.results.first().map_or(0, |r| r.seq),
                            results: b.results,
                        })
                    } else {
                        None
                    };
                    link.handle(Event::Tick { next }, now)
                }
            };
            for a in actions {
                self.act(a, &store.spool)?;
            }
            let mut ev = self.evidence();
            ev.pending = store.spool.pending();
            ev.stale_plans = link.stale_plans;
        }
    }

    fn produce(&self, spool: &Spool) -> Result<(), String> {
        if !self.producing.load(Ordering::Relaxed) || !self.rng.chance(0.3) {
            return Ok(());
        }
        for _ in 0..self.rng.between(1, 3) {
            let seq = spool
                .append(InferenceResult {
                    seq: 0,
                    app: "app".into(),
                    at_unix_ms: 0,
                    label: self.rng.between(0, 3) as u32,
                    truth: Some(1),
                    score: 0.5,
                    variant: "v".into(),
                    place: PlaceTag::Device,
                    energy_j: 0.0,
                    cost_usd: 0.0,
                    latency_ms: 1.0,
                })
                .map_err(|e| format!("node {} append: {e}", self.n))?;
            let mut ev = self.evidence();
            if let Some(inc) = ev.incarnations.last_mut() {
                inc.first_seq.get_or_insert(seq);
                inc.last_seq = seq;
            }
        }
        Ok(())
    }

    fn act(&self, action: Action, spool: &Spool) -> Result<(), String> {
        match action {
            Action::Send { to, msg } => {
                self.net
                    .send(Addr::Node(self.n), Addr::Replica(to), Payload::ToCoord(msg));
            }
            Action::AckSpool { incarnation, up_to } => {
                let held = self
                    .evidence()
                    .incarnations
                    .iter()
                    .position(|i| i.id == incarnation && !i.lost);
                // An answer meant for a store this node no longer has.
                let Some(at) = held else {
                    return Ok(());
                };
                if !spool
                    .ack(up_to)
                    .map_err(|e| format!("node {} ack: {e}", self.n))?
                {
                    self.trace.violation(format!(
                        "node {}: an acknowledgement up to {up_to} covers results never numbered",
                        self.n
                    ));
                }
                let inc = &mut self.evidence().incarnations[at];
                inc.acked = inc.acked.max(up_to);
                self.trace.event(format!(
                    "node {} incarnation {at} acked up to {up_to}",
                    self.n
                ));
            }
            Action::AdoptPlan { epoch } => {
                let mut ev = self.evidence();
                if ev.adopted_epochs.last().is_some_and(|&e| e >= epoch) {
                    self.trace
                        .violation(format!("node {}: plan epoch went back to {epoch}", self.n));
                }
                ev.adopted_epochs.push(epoch);
            }
        }
        Ok(())
    }
}
