//! `mcdnnctl bench fleet`: N virtual nodes over real QUIC with mutual TLS against a real
//! coordinator cluster (separate `mcdnn-coordinator` processes on this machine): telemetry in,
//! solve, commit through Raft, assignments out. Every second a share of the nodes changes its
//! telemetry (battery nearly empty and three times the load, or back); each such node measures
//! from the first telemetry carrying the change to the first assignment that differs from the
//! one it held. Prints the latencies' p50/p99, the nodes that never got a new assignment, the
//! coordinators' CPU and RSS (from `/proc`, so the bench's own CPU is not in them) and the
//! plan bytes committed through Raft per second.

mod replicas;
mod vnode;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use net::identity::{Ca, Identity, Kind};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use replicas::Replicas;
use vnode::Slot;

#[derive(Debug, Clone, Args)]
pub struct FleetBenchArgs {
    /// Virtual nodes.
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Coordinator replicas (separate processes).
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// Measurement window, seconds (after every node has its first assignment).
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
    /// Share of the nodes that change their telemetry each second.
    #[arg(long, default_value_t = 0.01)]
    pub change_share: f64,
    /// The coordinators' solve interval, ms.
    #[arg(long, default_value_t = 2000)]
    pub solve_interval_ms: u64,
    /// UDP sockets the virtual nodes share (each node still has its own connection and TLS
    /// identity).
    #[arg(long, default_value_t = 8)]
    pub endpoints: usize,
    /// Mutual-TLS handshakes the virtual nodes run at once (a real fleet spreads its connects
    /// with jittered back-off; thousands at once mostly time out and retry). 256 joined no
    /// faster than 64 on the 2-core machine and lost more of the nodes already joined.
    #[arg(long, default_value_t = 64)]
    pub joins_at_once: usize,
    /// Run the replicas on these CPUs only (a `taskset -c` list, e.g. `0`).
    #[arg(long)]
    pub cluster_cpus: Option<String>,
    /// Run the virtual nodes (this process) on these CPUs only, e.g. `1`: with both set the
    /// nodes cannot starve the cluster (nor the cluster the nodes).
    #[arg(long)]
    pub nodes_cpus: Option<String>,
    /// Run the virtual nodes at this nice value (1-19; lower priority than the replicas).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub nodes_nice: Option<i32>,
    /// Node QUIC port of the replicas (Raft, operator API and health ports follow it).
    #[arg(long, default_value_t = 17600)]
    pub port: u16,
    /// Catalog manifest (default: models/catalog.json or MCDNN_CATALOG).
    #[arg(long)]
    pub catalog: Option<std::path::PathBuf>,
    /// The coordinator binary (default: `mcdnn-coordinator` beside mcdnnctl).
    #[arg(long)]
    pub coordinator_bin: Option<std::path::PathBuf>,
    /// Keep the run folder (coordinator logs) instead of deleting it.
    #[arg(long)]
    pub keep: bool,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetFigure {
    pub nodes: usize,
    pub replicas: usize,
    /// Nodes welcomed by the leader with a first assignment before the window.
    pub nodes_planned: usize,
    pub seconds_to_join: f64,
    /// Telemetry changes made in the window, and how many got a new assignment.
    pub changes: usize,
    pub changes_answered: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub solve_interval_ms: u64,
    /// Leader's CPU over the window, in cores (1.0 = one core busy), and its RSS.
    pub leader_cpu_cores: f64,
    pub leader_rss_mb: f64,
    /// Each follower's CPU (cores) and RSS (MB).
    pub followers: Vec<(f64, f64)>,
    /// The bench process's own CPU over the window (virtual nodes), cores.
    pub bench_cpu_cores: f64,
    pub raft_plan_bytes_per_s: f64,
    pub plans_per_s: f64,
    /// Virtual nodes whose session failed (could not join, or lost its connection).
    pub nodes_failed: usize,
    /// Datagrams the kernel dropped for want of room in a UDP receive buffer, on this machine,
    /// from joining to the end of the window (`RcvbufErrors` in /proc/net/snmp): the
    /// coordinators' and the virtual nodes' sockets (and anything else running).
    pub udp_receive_buffer_drops: u64,
    /// The highest Raft term the replicas reported when the first node was welcomed, when
    /// joining ended and at the end of the window (0: no replica answered).
    pub raft_terms: [u64; 3],
    /// Elections from the first welcome to the end of the window (term steps; pre-vote keeps
    /// failed elections from counting). When not 0 the run folder (replica logs) is kept.
    pub leader_changes: u64,
    /// Nodes whose telemetry changed but that got no new assignment by the end.
    pub unanswered: Vec<String>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

struct Fleet {
    slots: Vec<Arc<Slot>>,
    names: Vec<String>,
}

/// Issues every identity (coordinators with their loopback address as a SAN, nodes) and the
/// nodes' client configs.
fn identities(
    dir: &std::path::Path,
    args: &FleetBenchArgs,
) -> anyhow::Result<Vec<(String, quinn::ClientConfig)>> {
    let ca = Ca::init(dir)?;
    for i in 0..args.replicas {
        ca.enroll(
            Kind::Coordinator,
            &format!("coord-{i}"),
            dir,
            &[replicas::host(i)],
            2,
        )?;
    }
    (0..args.nodes)
        .map(|i| {
            let name = format!("vn-{i:05}");
            ca.enroll(Kind::Node, &name, dir, &[], 2)?;
            // As a real node's session (which pings the leader itself, see `vnode`).
            let config = net::tls::coordinator_client_config(&Identity::load(dir, &name)?)?;
            Ok((name, config))
        })
        .collect()
}

/// Runs the bench once.
pub async fn fleet_bench(args: &FleetBenchArgs) -> anyhow::Result<FleetFigure> {
    if args.nodes == 0 || args.replicas == 0 || args.endpoints == 0 || args.joins_at_once == 0 {
        bail!("--nodes, --replicas, --endpoints and --joins-at-once must be positive");
    }
    let valid = args.change_share > 0.0 && args.change_share <= 1.0 && args.seconds > 0.0;
    if !valid {
        bail!("--change-share must be in (0, 1] and --seconds positive");
    }
    let dir = std::env::temp_dir().join(format!("mcdnn-fleet-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = run_in(&dir, args).await;
    let elected = result.as_ref().is_ok_and(|f| f.leader_changes > 0);
    if args.keep || result.is_err() || elected {
        eprintln!("run folder kept: {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn run_in(dir: &std::path::Path, args: &FleetBenchArgs) -> anyhow::Result<FleetFigure> {
    let ca_dir = dir.join("ca");
    let clients = identities(&ca_dir, args)?;
    let catalog = wire::manifest::locate(args.catalog.as_deref())?;
    let (_, bytes, _) = wire::manifest::load(&catalog)?;
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let cluster = Replicas::start(
        args.coordinator_bin.as_deref(),
        args.replicas,
        (&ca_dir, dir),
        &catalog,
        args.solve_interval_ms,
        args.port,
        args.cluster_cpus.as_deref(),
    )?;
    // After the replicas started: they would inherit this process's CPU list.
    if let Some(cpus) = &args.nodes_cpus {
        replicas::pin_self(cpus)?;
    }
    if let Some(nice) = args.nodes_nice {
        replicas::nice_self(nice)?;
    }
    let addrs: Vec<String> = (0..args.replicas).map(|i| cluster.node_addr(i)).collect();
    let endpoints = (0..args.endpoints)
        .map(|_| replicas::client_endpoint())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let drops_before = replicas::udp_receive_buffer_drops()?;
    let stop = CancellationToken::new();
    let fleet = Fleet {
        slots: (0..args.nodes).map(|_| Arc::new(Slot::default())).collect(),
        names: clients.iter().map(|(n, _)| n.clone()).collect(),
    };
    let started = Instant::now();
    let joining = Arc::new(tokio::sync::Semaphore::new(args.joins_at_once));
    let mut tasks = Vec::with_capacity(args.nodes);
    for (i, (name, config)) in clients.into_iter().enumerate() {
        let node = vnode::VirtualNode {
            endpoint: endpoints[i % endpoints.len()].clone(),
            config,
            replicas: addrs.clone(),
            name,
            digest: digest.clone(),
            slot: fleet.slots[i].clone(),
            joining: joining.clone(),
        };
        tasks.push(tokio::spawn(node.run(stop.clone())));
    }
    // Every node joined and planned once (or a minute passed).
    let deadline = Instant::now() + Duration::from_secs(60 + args.nodes as u64 / 50);
    let planned = |f: &Fleet| f.slots.iter().filter(|s| s.lock().assignments > 0).count();
    let welcomed = |f: &Fleet| f.slots.iter().any(|s| s.lock().leader.is_some());
    let mut first_term = None;
    while planned(&fleet) < args.nodes && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if first_term.is_none() && welcomed(&fleet) {
            first_term = cluster.max_term();
        }
    }
    let seconds_to_join = started.elapsed().as_secs_f64();
    let joined_term = cluster.max_term();
    let nodes_planned = planned(&fleet);
    let leader = fleet
        .slots
        .iter()
        .find_map(|s| s.lock().leader.clone())
        .context("no node was welcomed")?;
    let li: usize = leader
        .strip_prefix("coord-")
        .and_then(|i| i.parse().ok())
        .context("unexpected leader name")?;
    let pids: Vec<String> = (0..args.replicas)
        .map(|i| cluster.pid(i).to_string())
        .collect();
    let cpu_before: Vec<f64> = pids
        .iter()
        .map(|p| replicas::cpu_seconds(p))
        .collect::<anyhow::Result<_>>()?;
    let bench_before = replicas::cpu_seconds("self")?;
    let bytes_before = cluster.metric(li, "mcdnn_plan_raft_bytes_total")?;
    let plans_before = cluster.metric(li, "mcdnn_plans_total")?;
    let window = Instant::now();
    // Each second, flip the next share of the nodes.
    let per_tick = ((args.nodes as f64 * args.change_share).round() as usize).max(1);
    let mut next = 0usize;
    let mut changed = Vec::new();
    while window.elapsed().as_secs_f64() < args.seconds {
        for _ in 0..per_tick {
            let i = next % args.nodes;
            next += 1;
            let s = &fleet.slots[i];
            s.drained.fetch_xor(true, Ordering::Relaxed);
            changed.push(i);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let secs = window.elapsed().as_secs_f64();
    let end_term = cluster.max_term();
    let cpu_after: Vec<f64> = pids
        .iter()
        .map(|p| replicas::cpu_seconds(p))
        .collect::<anyhow::Result<_>>()?;
    let bench_cpu = replicas::cpu_seconds("self")? - bench_before;
    let udp_drops = replicas::udp_receive_buffer_drops()? - drops_before;
    let bytes = cluster.metric(li, "mcdnn_plan_raft_bytes_total")? - bytes_before;
    let plans = cluster.metric(li, "mcdnn_plans_total")? - plans_before;
    // Stragglers: the last changes get two solve intervals and a telemetry interval.
    tokio::time::sleep(Duration::from_millis(2 * args.solve_interval_ms + 1000)).await;
    let rss: Vec<f64> = pids
        .iter()
        .map(|p| replicas::rss_bytes(p).map(|b| b as f64 / 1e6))
        .collect::<anyhow::Result<_>>()?;
    stop.cancel();
    let mut latencies = Vec::new();
    let mut unanswered = Vec::new();
    for (i, s) in fleet.slots.iter().enumerate() {
        let t = s.lock();
        latencies.extend_from_slice(&t.latencies);
        if t.waiting_since.is_some() {
            unanswered.push(fleet.names[i].clone());
        }
    }
    let mut failed = 0;
    for t in tasks {
        if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(2), t).await {
            if failed == 0 {
                eprintln!("first virtual node failure: {e:#}");
            }
            failed += 1;
        }
    }
    latencies.sort();
    let cores = |i: usize| (cpu_after[i] - cpu_before[i]) / secs;
    let raft_terms = [first_term, joined_term, end_term].map(|t| t.unwrap_or(0));
    let leader_changes = match (first_term, raft_terms.iter().max()) {
        (Some(first), Some(&last)) => last - first,
        _ => 0,
    };
    Ok(FleetFigure {
        nodes: args.nodes,
        replicas: args.replicas,
        nodes_planned,
        seconds_to_join,
        changes: changed.len(),
        changes_answered: latencies.len(),
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
        solve_interval_ms: args.solve_interval_ms,
        leader_cpu_cores: cores(li),
        leader_rss_mb: rss[li],
        followers: (0..args.replicas)
            .filter(|&i| i != li)
            .map(|i| (cores(i), rss[i]))
            .collect(),
        bench_cpu_cores: bench_cpu / secs,
        udp_receive_buffer_drops: udp_drops,
        nodes_failed: failed,
        raft_plan_bytes_per_s: bytes / secs,
        plans_per_s: plans / secs,
        raft_terms,
        leader_changes,
        unanswered,
    })
}

/// The figures as lines of text.
pub fn render(f: &FleetFigure) -> String {
    let followers: Vec<String> = f
        .followers
        .iter()
        .map(|(c, m)| format!("{c:.2} cores / {m:.0} MB"))
        .collect();
    format!(
        "{} virtual nodes, {} replicas: {} planned after {:.1} s\n\
         telemetry change -> new assignment: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms over {} of {} changes (goal: p99 <= {} ms, two solve intervals)\n\
         leader: {:.2} cores, {:.0} MB RSS; followers: {}; bench (virtual nodes): {:.2} cores\n\
         Raft plan bytes: {:.0} B/s ({:.2} plans/s)\n\
         unanswered changes: {}, failed virtual nodes: {}, UDP receive-buffer drops (machine): {}\n\
         Raft terms (first welcome, joined, end): {:?}, elections during the run: {}",
        f.nodes,
        f.replicas,
        f.nodes_planned,
        f.seconds_to_join,
        f.p50_ms,
        f.p99_ms,
        f.max_ms,
        f.changes_answered,
        f.changes,
        2 * f.solve_interval_ms,
        f.leader_cpu_cores,
        f.leader_rss_mb,
        followers.join(", "),
        f.bench_cpu_cores,
        f.raft_plan_bytes_per_s,
        f.plans_per_s,
        f.unanswered.len(),
        f.nodes_failed,
        f.udp_receive_buffer_drops,
        f.raft_terms,
        f.leader_changes,
    )
}
