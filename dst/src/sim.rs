//! One seed, start to end: form the cluster, run the workload under the fault schedule, then a
//! drain (heal, restart every replica, calm network, clients finish what they hold), wait until
//! every replica applied the same index, and judge.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcdnn_coordinator::state::FleetState;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::check;
use crate::cluster::{Cluster, REPLICAS};
use crate::exchange::conn::Switchboard;
use crate::faults::{FaultStats, Faults};
use crate::monitor::Monitor;
use crate::net::{NetStats, SimNet, Weather};
use crate::node::{NodeActor, NodeEvidence};
use crate::rng::SimRng;
use crate::trace::Trace;
use crate::writer::{WriterActor, WriterEvidence};

/// The shape of a seed's run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
    pub writers: usize,
    /// Simulated time under faults.
    pub fault_phase: Duration,
    /// Simulated time allowed for the drain before the seed fails for liveness.
    pub drain_limit: Duration,
    /// Also wipe a replica while another is still rejoining (two disk losses at once, which
    /// stalls the cluster for good: seed 304 shows it). Off for the invariant runs.
    pub double_disk_loss: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 20,
            writers: 2,
            fault_phase: Duration::from_secs(20),
            drain_limit: Duration::from_secs(60),
            double_disk_loss: false,
        }
    }
}

/// What a seed did and whether it held.
#[derive(Debug, Clone)]
pub struct SeedReport {
    pub seed: u64,
    pub problems: Vec<String>,
    /// Digest of the whole history (same seed -> same digest).
    pub digest: String,
    pub events: u64,
    pub simulated: Duration,
    pub results_acked: u64,
    pub writes_acked: usize,
    pub plan_epochs: usize,
    pub terms_led: usize,
    pub replica_starts: u64,
    pub faults: FaultStats,
    pub net: NetStats,
    /// The last events before the end (for a failure report).
    pub tail: Vec<String>,
}

impl SeedReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Where the seed's folders go: memory-backed when the machine has it (fsync is the hot path).
fn scratch_root() -> std::io::Result<tempfile::TempDir> {
    let shm = Path::new("/dev/shm");
    let b = tempfile::Builder::new().prefix("mcdnn-dst-").to_owned();
    if shm.is_dir() {
        b.tempdir_in(shm).or_else(|_| b.tempdir())
    } else {
        b.tempdir()
    }
}

/// Runs `seed` on a fresh current-thread runtime with paused (simulated) time.
pub fn run_seed(seed: u64, config: &SimConfig) -> SeedReport {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build();
    match rt {
        Ok(rt) => rt.block_on(run(seed, config)),
        Err(e) => failed(seed, format!("harness: no runtime: {e}")),
    }
}

fn failed(seed: u64, why: String) -> SeedReport {
    SeedReport {
        seed,
        problems: vec![why],
        digest: String::new(),
        events: 0,
        simulated: Duration::ZERO,
        results_acked: 0,
        writes_acked: 0,
        plan_epochs: 0,
        terms_led: 0,
        replica_starts: 0,
        faults: FaultStats::default(),
        net: NetStats::default(),
        tail: Vec::new(),
    }
}

struct World {
    trace: Trace,
    net: SimNet,
    board: Switchboard,
    cluster: Cluster,
    producing: Arc<AtomicBool>,
    nodes: Vec<Arc<Mutex<NodeEvidence>>>,
    writers: Vec<Arc<Mutex<WriterEvidence>>>,
    tasks: Vec<JoinHandle<()>>,
}

async fn run(seed: u64, config: &SimConfig) -> SeedReport {
    let root = match scratch_root() {
        Ok(r) => r,
        Err(e) => return failed(seed, format!("harness: no temp folder: {e}")),
    };
    let start = Instant::now();
    let trace = Trace::new();
    let net = SimNet::new(SimRng::stream(seed, "net"), trace.clone());
    let monitor = Monitor::default();
    let board = Switchboard::new(net.clone(), trace.clone());
    let cluster = Cluster::new(
        root.path().to_path_buf(),
        net.clone(),
        trace.clone(),
        SimRng::stream(seed, "cluster"),
        monitor.clone(),
        board.clone(),
    );
    let mut world = World {
        trace: trace.clone(),
        net: net.clone(),
        board,
        cluster,
        producing: Arc::new(AtomicBool::new(true)),
        nodes: Vec::new(),
        writers: Vec::new(),
        tasks: Vec::new(),
    };
    let mut faults = Faults::new(
        SimRng::stream(seed, "faults"),
        trace.clone(),
        net.clone(),
        Vec::new(),
        config.writers,
        config.double_disk_loss,
    );
    let outcome = drive(&mut world, &mut faults, &monitor, seed, config, root.path()).await;
    for t in world.tasks.drain(..) {
        t.abort();
    }
    let mut problems = trace.problems();
    problems.extend(world.cluster.stop_all().await);
    let summary = match outcome {
        Ok(states) => {
            let nodes: Vec<NodeEvidence> = world.nodes.iter().map(|e| lock(e).clone()).collect();
            let writers: Vec<WriterEvidence> =
                world.writers.iter().map(|e| lock(e).clone()).collect();
            let (found, summary) = check::final_state(&states, &nodes, &writers);
            problems.extend(found);
            summary
        }
        Err(e) => {
            problems.push(e);
            Vec::new()
        }
    };
    for line in summary {
        trace.event(line);
    }
    let (events, digest) = trace.digest();
    let results_acked = world
        .nodes
        .iter()
        .map(|e| lock(e).incarnations.iter().map(|i| i.acked).sum::<u64>())
        .sum();
    SeedReport {
        seed,
        problems,
        digest,
        events,
        simulated: start.elapsed(),
        results_acked,
        writes_acked: world.writers.iter().map(|e| lock(e).acked.len()).sum(),
        plan_epochs: world.cluster.book.len(),
        terms_led: monitor.terms_led(),
        replica_starts: world.cluster.starts,
        faults: faults.stats,
        net: net.stats(),
        tail: trace.tail(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Everything up to the final states (or why the seed could not get there).
async fn drive(
    w: &mut World,
    faults: &mut Faults,
    monitor: &Monitor,
    seed: u64,
    config: &SimConfig,
    root: &Path,
) -> Result<Vec<(u64, FleetState)>, String> {
    for id in REPLICAS {
        w.cluster.start(id)?;
    }
    w.tasks.push(monitor.spawn(
        w.net.clone(),
        w.trace.clone(),
        w.cluster.book.clone(),
        REPLICAS.len(),
    ));
    for n in 0..config.nodes {
        let evidence = Arc::new(Mutex::new(NodeEvidence::default()));
        let actor = NodeActor {
            n,
            root: PathBuf::from(root),
            board: w.board.clone(),
            trace: w.trace.clone(),
            rng: SimRng::stream(seed, &format!("node-{n}")),
            producing: w.producing.clone(),
            evidence: evidence.clone(),
        };
        let (ctl, task) = actor.spawn(REPLICAS.to_vec());
        faults.nodes.push(ctl);
        w.nodes.push(evidence);
        w.tasks.push(task);
    }
    for i in 0..config.writers {
        let evidence = Arc::new(Mutex::new(WriterEvidence::default()));
        let actor = WriterActor {
            w: i,
            net: w.net.clone(),
            trace: w.trace.clone(),
            rng: SimRng::stream(seed, &format!("writer-{i}")),
            producing: w.producing.clone(),
            evidence: evidence.clone(),
        };
        w.writers.push(evidence);
        w.tasks.push(actor.spawn());
    }

    // Faults after the cluster had a moment to form.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let until = Instant::now() + config.fault_phase;
    faults.run(&mut w.cluster, until).await?;

    // Drain: everything healed and back, clients finish what they hold.
    w.trace.event("drain");
    w.producing.store(false, Ordering::Relaxed);
    w.net.set_partition(None);
    w.net.set_weather(Weather::CALM);
    for id in w.cluster.down() {
        w.cluster.start(id)?;
    }
    let deadline = Instant::now() + config.drain_limit;
    loop {
        check_alive(&w.cluster)?;
        let pending: usize = w.nodes.iter().map(|e| lock(e).pending).sum();
        let writing = w.writers.iter().filter(|e| !lock(e).done).count();
        if pending == 0 && writing == 0 {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "liveness: after {:?} of calm, {pending} results still spooled and {writing} writers unanswered",
                config.drain_limit
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // No more plans; wait until every replica applied everything committed.
    w.cluster.planning.store(false, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        check_alive(&w.cluster)?;
        let views: Vec<_> = w
            .cluster
            .handles()
            .iter()
            .map(|h| *h.raft_view().borrow())
            .collect();
        let top = views.iter().map(|v| v.commit).max().unwrap_or(0);
        if views.len() == REPLICAS.len() && views.iter().all(|v| v.applied == top) {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!("liveness: replicas did not converge: {views:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(w.cluster
        .handles()
        .iter()
        .map(|h| (h.id(), h.state()))
        .collect())
}

fn check_alive(cluster: &Cluster) -> Result<(), String> {
    match cluster.crashed()[..] {
        [] => Ok(()),
        ref ids => Err(format!(
            "replicas {ids:?} stopped on their own (driver error)"
        )),
    }
}
