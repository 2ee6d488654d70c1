//! Fault scenarios for the replicated coordinator (run by `mcdnn-chaos`): the leader killed over
//! and over under continuous operator writes, a minority cut off, and a rolling restart under
//! load. Each proves its fault hit work in flight (a write attempt to the leader at the kill
//! instant, results flowing into its ledger) and judges the run after a drain from independent
//! evidence ([`crate::verdict`]): the writer's own log against every replica's audit log,
//! replicas against each other entry by entry, and each node's summary against the ledger.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use mcdnn_coordinator::state::POLICY_LOG_CAPACITY;

use crate::cluster::Cluster;
use crate::verdict::{self, Ack, NodeEvidence, ResultVerdict, WriteVerdict};
use crate::writer::{PolicyClient, Writer};
use crate::{Proc, evidence};

mod partition;
mod write_bench;

pub use partition::minority_partition;
pub use write_bench::write_bench;

pub(crate) const T: Duration = Duration::from_secs(30);
pub(crate) const WRITER: &str = "chaos-writer";
const CLASSES: [&str; 3] = ["bodycam-lite", "phone-2016", "laptop"];

pub(crate) fn client(c: &Cluster) -> PolicyClient {
    PolicyClient::new(c.ops.clone(), (0..c.size).map(|i| c.admin(i)).collect())
}

/// Every running replica's audit log once all have applied the leader's commit index.
pub(crate) fn replica_logs(c: &Cluster) -> anyhow::Result<Vec<Vec<verdict::LogEntry>>> {
    let leader = c.wait_leader(T, None)?;
    let commit = c.status(leader)?.commit;
    c.wait_applied(commit, T)?;
    (0..c.size)
        .map(|i| evidence::policy_log(&c.ops, &c.admin(i)))
        .collect()
}

/// The writes verdict for `writer`'s acknowledged log. The coordinator keeps only the most
/// recent [`POLICY_LOG_CAPACITY`] writes in its audit log; when a replica's log is that full,
/// acknowledged writes older than every replica's oldest entry can no longer be checked and are
/// left out (a long run's early writes), rather than reported lost.
pub(crate) fn audit(c: &Cluster, writer: &str, acked: &[Ack]) -> anyhow::Result<WriteVerdict> {
    let replicas = replica_logs(c)?;
    let retained_from = retained_from(&replicas);
    let judged: Vec<Ack> = acked
        .iter()
        .filter(|a| a.index >= retained_from)
        .cloned()
        .collect();
    Ok(verdict::writes(&verdict::WriteEvidence {
        writer,
        acked: &judged,
        replicas: &replicas,
    }))
}

/// The oldest Raft index every replica's audit log still holds (0 while none is full).
fn retained_from(replicas: &[Vec<verdict::LogEntry>]) -> u64 {
    if replicas.iter().all(|l| l.len() < POLICY_LOG_CAPACITY) {
        return 0;
    }
    replicas
        .iter()
        .filter_map(|l| l.first().map(|e| e.index))
        .max()
        .unwrap_or(0)
}

pub(crate) fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

fn node_name(i: usize) -> String {
    format!("cam-{i}")
}

pub(crate) fn start_nodes(c: &Cluster, n: usize, secs: f64) -> anyhow::Result<Vec<Proc>> {
    (0..n)
        .map(|i| c.node(&node_name(i), CLASSES[i % CLASSES.len()], secs))
        .collect()
}

/// Waits until replica `leader` serves all `n` nodes with an acknowledged epoch above `epoch`.
pub(crate) fn wait_nodes_on(
    c: &Cluster,
    leader: usize,
    n: usize,
    epoch: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(s) = c.fleet_status(leader)
            && s.nodes
                .iter()
                .filter(|x| x.connected && x.acked_epoch > epoch)
                .count()
                >= n
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "nodes did not reach the new leader within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Results the leader's ledger recorded over every node.
fn ledger_total(c: &Cluster, leader: usize) -> anyhow::Result<u64> {
    Ok(c.fleet_status(leader)?
        .results
        .values()
        .map(|r| r.received)
        .sum())
}

/// What one kill hit: the write attempt in flight to the dying leader, and whether results were
/// flowing into its ledger just before.
#[derive(Debug, Clone, serde::Serialize)]
struct Kill {
    replica: usize,
    write_in_flight: Option<u64>,
    /// Results the ledger recorded while the kill waited for them (before the kill).
    results_recorded_before_kill: u64,
    failover_ms: f64,
}

/// Kills (SIGKILL) replica `leader` the moment a write attempt is in
/// flight to it (waiting up to 5 s for one), after seeing results flow into its ledger (waiting
/// up to 3 s for it to grow).
fn strike(c: &mut Cluster, w: &Writer, leader: usize) -> anyhow::Result<Kill> {
    let r0 = ledger_total(c, leader)?;
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut r1 = r0;
    while r1 == r0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        r1 = ledger_total(c, leader)?;
    }
    let in_flight = w.wait_in_flight_to(leader, Duration::from_secs(5));
    c.kill(leader);
    // Only an attempt still unanswered when the process died was in flight at the kill.
    let still = w.in_flight().map(|(id, _)| id);
    Ok(Kill {
        replica: leader,
        write_in_flight: in_flight.filter(|id| still == Some(*id)),
        results_recorded_before_kill: r1.saturating_sub(r0),
        failover_ms: 0.0,
    })
}

/// Problems with the kills' proof of work in flight: no kill hit a write attempt that was then
/// retried with the same id, or results were not flowing when the leader died.
fn kill_problems(kills: &[Kill], acked: &[Ack]) -> Vec<String> {
    let mut out = Vec::new();
    let retried = kills
        .iter()
        .filter_map(|k| k.write_in_flight)
        .filter(|id| acked.iter().any(|a| a.write_id == *id && a.attempts > 1))
        .count();
    if !kills.is_empty() && retried == 0 {
        out.push("no kill hit a write in flight that was then retried with its id".into());
    }
    for k in kills {
        if k.results_recorded_before_kill == 0 {
            out.push(format!(
                "no results were flowing to replica {} when it was stopped",
                k.replica
            ));
        }
    }
    out
}

/// Waits for the nodes to finish (they drain their spools), then judges each one's results
/// against the leader's replicated ledger, and its last telemetry.
pub(crate) fn node_results(
    c: &Cluster,
    procs: &mut [Proc],
    timeout: Duration,
) -> anyhow::Result<(ResultVerdict, Vec<String>)> {
    for p in procs.iter_mut() {
        let status = p.wait_exit(timeout)?;
        anyhow::ensure!(status.success(), "{} exited with {status}", p.name);
    }
    let leader = c.wait_leader(T, None)?;
    let status = c.fleet_status(leader)?;
    let names: Vec<String> = (0..procs.len()).map(node_name).collect();
    let nodes: Vec<NodeEvidence> = names
        .iter()
        .map(|n| evidence::node(n, &c.summary(n)?, &status))
        .collect::<anyhow::Result<_>>()?;
    let v = verdict::results(&nodes);
    let mut problems = v.problems.clone();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    problems.extend(evidence::telemetry_problems(&status, &refs));
    Ok((v, problems))
}

/// The figures every write scenario reports from its verdicts.
pub(crate) fn write_figures(w: &WriteVerdict, r: Option<&ResultVerdict>) -> Value {
    let writes = json!({
        "acknowledged": w.acknowledged,
        "in_order": w.in_order,
        "replicas_agree": w.replicas_agree,
        "replica_log_lengths": w.replica_log_lengths,
        "writes_retried": w.retried,
        "retries_deduplicated": w.deduplicated_retries,
    });
    let results = r.map_or(json!({}), |r| {
        json!({
            "results_accepted": r.accepted,
            "results_recorded": r.recorded,
            "results_lost": r.lost,
            "results_duplicated": r.duplicated,
            "results_pending_after_drain": r.pending,
        })
    });
    crate::chaos::merge(writes, results)
}

/// `leader-kill`: the leader is killed with SIGKILL `kills` times, each time at a random moment
/// with a write attempt in flight to it, while an operator writes continuously and `nodes`
/// nodes are served.
pub fn leader_kill(kills: usize, nodes: usize) -> anyhow::Result<Value> {
    let mut c = Cluster::new(3)?;
    c.start_all()?;
    c.wait_leader(T, None)?;
    let secs = 12.0 + kills as f64 * 8.0;
    let mut node_procs = start_nodes(&c, nodes, secs)?;
    let leader = c.wait_leader(T, None)?;
    wait_nodes_on(&c, leader, nodes, 0, T)?;
    let writer = Writer::start(client(&c), WRITER);
    let mut done = Vec::new();
    let mut rng_state = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..kills {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        std::thread::sleep(Duration::from_millis(500 + rng_state % 1500));
        let leader = c.wait_leader(T, None)?;
        let epoch = c.status(leader)?.plan_epoch;
        let t0 = Instant::now();
        let mut kill = strike(&mut c, &writer, leader)?;
        let next = c.wait_leader(T, Some(leader))?;
        wait_nodes_on(&c, next, nodes, epoch, T)?;
        kill.failover_ms = t0.elapsed().as_secs_f64() * 1e3;
        done.push(kill);
        c.start(leader)?;
    }
    let acked = writer.finish();
    let w = audit(&c, WRITER, &acked)?;
    // The nodes' results crossed every failover: each one a node accepted must be recorded once
    // in the replicated ledger, whichever leader took it, and none may be left pending.
    let (r, mut problems) =
        node_results(&c, &mut node_procs, Duration::from_secs_f64(secs + 60.0))?;
    problems.extend(kill_problems(&done, &acked));
    let mut failover: Vec<f64> = done.iter().map(|k| k.failover_ms).collect();
    let p50 = percentile(&mut failover, 0.5);
    let max = failover.iter().copied().fold(0.0, f64::max);
    let figures = json!({
        "kills": kills,
        "nodes": nodes,
        "writes_in_flight_at_kill": done.iter().filter(|k| k.write_in_flight.is_some()).count(),
        "kill_log": done,
        "failover_ms": { "p50": p50, "max": max, "all": failover },
    });
    Ok(judged("leader-kill", &w, &r, problems, figures))
}

/// The report of a scenario with writes and node results: both verdicts' problems and counts.
fn judged(
    scenario: &str,
    w: &WriteVerdict,
    r: &ResultVerdict,
    mut problems: Vec<String>,
    figures: Value,
) -> Value {
    problems.extend(w.problems.iter().cloned());
    verdict::report(
        scenario,
        w.lost + r.lost,
        w.duplicated + r.duplicated,
        &problems,
        crate::chaos::merge(figures, write_figures(w, Some(r))),
    )
}

/// `rolling-restart`: each replica in turn gets SIGTERM (with a write attempt in flight to it
/// when it leads) and comes back, under continuous writes and node load; nodes must be served
/// throughout and every result they accepted recorded once.
pub fn rolling_restart(nodes: usize) -> anyhow::Result<Value> {
    let mut c = Cluster::new(3)?;
    c.start_all()?;
    let leader = c.wait_leader(T, None)?;
    let secs = 40.0;
    let mut node_procs = start_nodes(&c, nodes, secs)?;
    wait_nodes_on(&c, leader, nodes, 0, T)?;
    let writer = Writer::start(client(&c), WRITER);
    let mut restarts = Vec::new();
    let mut clean = true;
    for i in 0..3 {
        std::thread::sleep(Duration::from_secs(2));
        let t0 = Instant::now();
        let hit = writer.wait_in_flight_to(i, Duration::from_secs(2));
        let exit = c.terminate(i)?;
        clean &= exit.success();
        c.start(i)?;
        let l = c.wait_leader(T, None)?;
        let commit = c.status(l)?.commit;
        c.wait_applied(commit, T)?;
        restarts.push(
            json!({"replica": i, "clean_exit": exit.success(), "write_in_flight": hit,
            "back_in_ms": t0.elapsed().as_secs_f64() * 1e3}),
        );
    }
    let acked = writer.finish();
    let w = audit(&c, WRITER, &acked)?;
    let (r, mut problems) =
        node_results(&c, &mut node_procs, Duration::from_secs_f64(secs + 60.0))?;
    if !clean {
        problems.push("a replica did not exit cleanly on SIGTERM".into());
    }
    let served: Vec<u64> = (0..nodes)
        .map(|i| Ok(c.summary(&node_name(i))?.requests))
        .collect::<anyhow::Result<_>>()?;
    // 9 requests/s per node over the run: a node that stopped serving during restarts falls short.
    let expected = (9.0 * secs) as u64;
    let min_served = served.iter().copied().min().unwrap_or(0);
    if (min_served as f64) < 0.8 * expected as f64 {
        problems.push(format!(
            "a node served {min_served} requests of about {expected}"
        ));
    }
    let figures = json!({
        "restarts": restarts,
        "node_requests": served,
        "expected_requests_per_node": expected,
    });
    Ok(judged("rolling-restart", &w, &r, problems, figures))
}
