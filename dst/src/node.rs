//! A virtual node: a real sled store and result spool in its own folder, results produced at a
//! seeded rate, and the node's real link core ([`NodeLink`]) carrying them to the leader over a
//! simulated connection. A restart is an orderly stop and start of the node process on the same
//! store (a new spool incarnation; what the old one had not had acknowledged is still sent under
//! its own); losing the store is a crash and a new folder, so a new incarnation, and what the old
//! one had not had acknowledged is gone (as on a device), and the evidence says so.

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

use crate::exchange::conn::Switchboard;
use crate::exchange::link::{NodeLink, Outcome};
use crate::exchange::session::replica_addr;
use crate::rng::SimRng;
use crate::trace::Trace;

/// How often the node's serving produces results.
const TICK: Duration = Duration::from_millis(100);

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
    /// Plan epochs installed, in order (since the last store loss: a new store holds none).
    pub adopted_epochs: Vec<u64>,
    pub stale_plans: u64,
    /// Results still spooled.
    pub pending: usize,
}

/// Orders for a node from the fault schedule.
#[derive(Debug)]
pub enum NodeCtl {
    /// The device's storage is gone: the process dies and starts on a new, empty store.
    LoseStore,
    /// The node process stops in order and starts again on the same store: a new incarnation,
    /// and what the old ones had not had acknowledged is still sent under theirs.
    Restart,
}

pub struct NodeActor {
    pub n: usize,
    pub root: PathBuf,
    pub board: Switchboard,
    pub trace: Trace,
    pub rng: SimRng,
    pub producing: Arc<AtomicBool>,
    pub evidence: Arc<Mutex<NodeEvidence>>,
}

struct Store {
    spool: Spool,
    store: NodeStore,
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
        Ok(Store { spool, store, dir })
    }

    fn evidence(&self) -> std::sync::MutexGuard<'_, NodeEvidence> {
        self.evidence.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the node until aborted; returns its control channel.
    pub fn spawn(self, replicas: Vec<u64>) -> (mpsc::UnboundedSender<NodeCtl>, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            if let Err(e) = self.run(replicas, rx).await {
                self.trace.violation(format!("harness: {e}"));
            }
        });
        (tx, task)
    }

    /// Starts the node process's link on `store`.
    fn start_link(&self, replicas: &[u64], store: &Store) -> Result<NodeLink, String> {
        // Nodes list the replicas in different orders, so they spread over them.
        let mut coordinators: Vec<String> = replicas.iter().map(|&r| replica_addr(r)).collect();
        coordinators.rotate_left(self.n % replicas.len().max(1));
        let seed = self.rng.between(0, u64::MAX);
        let (link, out) = NodeLink::start(
            self.n,
            self.board.clone(),
            coordinators,
            store.spool.clone(),
            store.store.clone(),
            seed,
        )?;
        self.record(out);
        Ok(link)
    }

    async fn run(
        &self,
        replicas: Vec<u64>,
        mut ctl: mpsc::UnboundedReceiver<NodeCtl>,
    ) -> Result<(), String> {
        let mut k = 0;
        let mut store = self.open(k)?;
        let mut link = self.start_link(&replicas, &store)?;
        let mut next_tick = Instant::now() + TICK;
        loop {
            tokio::select! {
                biased;
                Some(order) = ctl.recv() => {
                    if matches!(order, NodeCtl::LoseStore) {
                        // A crash: the connection is dropped unclosed.
                        drop(link);
                        drop(store.spool);
                        drop(store.store);
                        // The folder goes with the device's storage; a failure to delete only
                        // leaves litter in the seed's temp folder.
                        let _ = std::fs::remove_dir_all(&store.dir);
                        let mut ev = self.evidence();
                        for inc in &mut ev.incarnations {
                            inc.lost = true;
                        }
                        ev.adopted_epochs.clear();
                        drop(ev);
                        k += 1;
                    } else {
                        self.record(link.stop()?);
                        drop(store);
                    }
                    store = self.open(k)?;
                    let incarnations = self.evidence().incarnations.len();
                    self.trace.event(format!(
                        "node {} {order:?}: store {k}, incarnation {}",
                        self.n,
                        incarnations - 1
                    ));
                    link = self.start_link(&replicas, &store)?;
                }
                next = link.next() => {
                    let out = link.happen(next)?;
                    self.record(out);
                }
                () = tokio::time::sleep_until(next_tick) => {
                    next_tick += TICK;
                    self.produce(&store.spool)?;
                }
            }
            self.evidence().pending = store.spool.pending();
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

    /// Records what the link did.
    fn record(&self, outcomes: Vec<Outcome>) {
        let n = self.n;
        for o in outcomes {
            match o {
                Outcome::Acked { incarnation, up_to } => {
                    let mut ev = self.evidence();
                    // An answer for a store this node no longer has cannot reach it.
                    let Some(at) = ev
                        .incarnations
                        .iter()
                        .position(|i| i.id == incarnation && !i.lost)
                    else {
                        drop(ev);
                        self.trace.violation(format!(
                            "node {n}: took an acknowledgement for an incarnation it does not hold"
                        ));
                        continue;
                    };
                    let inc = &mut ev.incarnations[at];
                    inc.acked = inc.acked.max(up_to);
                    drop(ev);
                    self.trace
                        .event(format!("node {n} incarnation {at} acked up to {up_to}"));
                }
                Outcome::AckBeyondSpool { up_to } => self.trace.violation(format!(
                    "node {n}: an acknowledgement up to {up_to} covers results never numbered"
                )),
                Outcome::Refused { up_to } => self.trace.violation(format!(
                    "node {n}: the coordinator acknowledged results up to {up_to} this session did not send"
                )),
                Outcome::Installed(epoch) => {
                    let mut ev = self.evidence();
                    if ev.adopted_epochs.last().is_some_and(|&e| e >= epoch) {
                        drop(ev);
                        self.trace
                            .violation(format!("node {n}: plan epoch went back to {epoch}"));
                        continue;
                    }
                    ev.adopted_epochs.push(epoch);
                }
                Outcome::Stale(_) => self.evidence().stale_plans += 1,
            }
        }
    }
}
