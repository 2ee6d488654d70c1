//! Fault scenarios against real coordinator and node processes on this machine (`mcdnn-chaos`).
//! Each returns one JSON object with at least `scenario`, `ok`, `lost` and `duplicated`, plus the
//! scenario's own figures and the `problems` its verdict found (`ok` is "no problems"). Each
//! proves its fault happened (datagrams dropped, a process killed mid-work, bytes corrupt on
//! disk) and judges the run from independent evidence after a drain (see [`crate::verdict`]):
//! what each node accepted, dropped and still holds (its summary and telemetry) against what the
//! coordinator's ledger recorded.

mod models;

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value, json};

use crate::proxy::UdpProxy;
use crate::verdict::{self, PartitionEvidence};
use crate::{Fleet, NodeOpts, Proc, evidence, free_port};

pub const SCENARIOS: [&str; 4] = [
    "node-crash-during-download",
    "corrupt-shard",
    "offload-server-kill",
    "partition-spool",
];

/// Knobs the test suite shortens.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long `partition-spool` cuts the node off.
    pub partition: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            partition: Duration::from_secs(30),
        }
    }
}

pub fn run(scenario: &str, opts: &Options) -> anyhow::Result<Value> {
    match scenario {
        "node-crash-during-download" => models::crash_during_download(),
        "corrupt-shard" => models::corrupt_shard(),
        "offload-server-kill" => offload_server_kill(),
        "partition-spool" => partition_spool(opts.partition),
        other => bail!(
            "unknown scenario {other:?}; known: {}",
            SCENARIOS.join(", ")
        ),
    }
}

pub(crate) fn wait_exit(p: &mut Proc, timeout: Duration) -> anyhow::Result<()> {
    let status = p.wait_exit(timeout)?;
    if !status.success() {
        bail!("{} exited with {status}: {}", p.name, tail(&p.log_text()));
    }
    Ok(())
}

pub(crate) fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The results verdict for a node's runs (oldest first; the last has exited, its spool
/// drained), with its last telemetry checked too: (verdict, problems, figures).
pub(crate) fn node_results(
    fleet: &Fleet,
    node: &str,
    runs: &[&wire::summary::Summary],
) -> anyhow::Result<(verdict::ResultVerdict, Vec<String>, Value)> {
    let status = fleet.status()?;
    let e = evidence::node_runs(node, runs, &status)?;
    let v = verdict::results(std::slice::from_ref(&e));
    let mut problems = v.problems.clone();
    problems.extend(evidence::telemetry_problems(&status, &[node]));
    let figures = json!({
        "results_accepted": e.accepted,
        "results_recorded": e.recorded,
        "results_pending_after_drain": e.pending,
        "requests": e.requests,
        "dropped": e.dropped,
        "spool_failures": e.spool_failures,
        "sequence_gaps": e.gaps,
    });
    Ok((v, problems, figures))
}

fn recorded(fleet: &Fleet, node: &str) -> anyhow::Result<u64> {
    Ok(evidence::recorded(&fleet.status()?, node).0)
}

/// How long after the cut results already on the wire may still land.
const CUT_SETTLE: Duration = Duration::from_secs(1);

/// Cut the node from the coordinator (a UDP proxy drops everything) while it keeps serving; the
/// spooled results must arrive exactly once after the link returns. The proxy's drop count and
/// a ledger that stands still during the cut prove the partition.
fn partition_spool(partition: Duration) -> anyhow::Result<Value> {
    let fleet = Fleet::new()?;
    let _coord = fleet.coordinator(&[])?;
    let proxy = UdpProxy::start(fleet.quic().parse()?)?;
    let secs = partition.as_secs_f64() + 20.0;
    let opts = NodeOpts {
        coordinator: Some(proxy.addr.to_string()),
        energy_budget_j: None,
    };
    let mut node = fleet.node_with(
        "cam-spool",
        "laptop",
        secs,
        &opts,
        &["--drain-timeout-s", "40"],
    )?;
    fleet.wait_for("results from the node", Duration::from_secs(30), |s| {
        s.results.get("cam-spool").is_some_and(|r| r.received > 0)
    })?;
    proxy.partition(true);
    std::thread::sleep(CUT_SETTLE);
    let at_cut = recorded(&fleet, "cam-spool")?;
    std::thread::sleep(partition.saturating_sub(CUT_SETTLE));
    let at_heal = recorded(&fleet, "cam-spool")?;
    let dropped = proxy.dropped.load(std::sync::atomic::Ordering::Relaxed);
    proxy.partition(false);
    let healed = Instant::now();
    let after = fleet.wait_for("the spool to flow again", Duration::from_secs(40), |s| {
        s.results
            .get("cam-spool")
            .is_some_and(|r| r.received > at_heal)
    })?;
    let reconnect_s = healed.elapsed().as_secs_f64();
    let backlog = evidence::recorded(&after, "cam-spool").0 - at_heal;
    wait_exit(&mut node, Duration::from_secs(secs as u64 + 90))?;
    let summary = fleet.summary("cam-spool")?;
    let (v, mut problems, figures) = node_results(&fleet, "cam-spool", &[&summary])?;
    problems.extend(verdict::partition(&PartitionEvidence {
        datagrams_dropped: dropped,
        recorded_at_cut: at_cut,
        recorded_at_heal: at_heal,
        backlog_after_heal: backlog,
    }));
    Ok(verdict::report(
        "partition-spool",
        v.lost,
        v.duplicated,
        &problems,
        merge(
            json!({
                "partition_s": partition.as_secs_f64(),
                "datagrams_dropped": dropped,
                "recorded_while_partitioned": at_heal.saturating_sub(at_cut),
                "first_backlog_batch": backlog,
                "reconnect_s": reconnect_s,
            }),
            figures,
        ),
    ))
}

pub(crate) fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

fn served_offload(fleet: &Fleet, server: &str) -> anyhow::Result<u64> {
    Ok(fleet
        .status()?
        .nodes
        .iter()
        .find(|n| n.id == server)
        .map_or(0, |n| n.served_offload))
}

/// Kill -9 the offload server while a device offloads every request: requests fall back to a
/// local variant and none is lost. The server is killed only once the device has offload
/// requests in flight (it offloads every request back to back), and the device must show
/// fallbacks after the kill.
fn offload_server_kill() -> anyhow::Result<Value> {
    let fleet = Fleet::new()?;
    let _coord = fleet.coordinator(&[])?;
    let listen = format!("127.0.0.1:{}", free_port());
    let mut server = fleet.server("edge-1", 120.0, &listen, 200.0)?;
    let secs = 16.0;
    let opts = NodeOpts {
        coordinator: None,
        energy_budget_j: Some(1000.0),
    };
    let extra = [
        "--policy",
        "cloud",
        "--offload-server",
        listen.as_str(),
        "--cost-budget-usd",
        "100",
    ];
    let mut node = fleet.node_with("cam-off", "laptop", secs, &opts, &extra)?;
    fleet.wait_for(
        "the server to serve offloads",
        Duration::from_secs(30),
        |s| {
            s.nodes
                .iter()
                .any(|n| n.id == "edge-1" && n.served_offload >= 10)
        },
    )?;
    let served_before_kill = served_offload(&fleet, "edge-1")?;
    server.kill();
    wait_exit(&mut node, Duration::from_secs(120))?;
    let summary = fleet.summary("cam-off")?;
    let (v, mut problems, figures) = node_results(&fleet, "cam-off", &[&summary])?;
    let offloaded: u64 = summary.apps.values().map(|a| a.offloaded).sum();
    let fallbacks: u64 = summary.apps.values().map(|a| a.offload_fallbacks).sum();
    let dropped = summary.dropped;
    // Every request must be answered, on the server or locally: a dropped one is lost here.
    if dropped > 0 {
        problems.push(format!(
            "{dropped} requests dropped instead of falling back"
        ));
    }
    if offloaded == 0 {
        problems.push("nothing was offloaded: the server was never used".into());
    }
    if fallbacks == 0 {
        problems.push("no request fell back: the kill did not hit offloading".into());
    }
    Ok(verdict::report(
        "offload-server-kill",
        v.lost + dropped,
        v.duplicated,
        &problems,
        merge(
            json!({
                "offloaded": offloaded,
                "fell_back_locally": fallbacks,
                "served_by_server_before_kill": served_before_kill,
                "accuracy": summary.accuracy,
                "cost_used_usd": summary.cost_used_usd,
            }),
            figures,
        ),
    ))
}
