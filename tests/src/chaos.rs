//! Fault scenarios against real coordinator and node processes on this machine (`mcdnn-chaos`).
//! Each returns one JSON object with at least `scenario`, `ok`, `lost` and `duplicated`, plus the
//! scenario's own figures. `lost`/`duplicated` compare what the node accepted (its summary) with
//! what the coordinator recorded (its `/status` result ledger), or, for downloads, shards needed
//! with shards fetched.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::proxy::UdpProxy;
use crate::{Fleet, NodeOpts, Proc, free_port};

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
        "node-crash-during-download" => crash_during_download(),
        "corrupt-shard" => corrupt_shard(),
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

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

pub(crate) fn u(v: &Value, path: &[&str]) -> u64 {
    path.iter().fold(v, |v, k| &v[*k]).as_u64().unwrap_or(0)
}

/// Node accepted vs coordinator recorded, from the node summary and the coordinator's ledger.
pub(crate) fn exactly_once(
    fleet: &Fleet,
    node: &str,
    summary: &Value,
) -> anyhow::Result<(u64, u64, Value)> {
    let status = fleet.status()?;
    let rec = status.results.get(node).cloned().unwrap_or_default();
    let accepted = u(summary, &["results_accepted"]);
    let lost = accepted.saturating_sub(rec.received);
    let duplicated = rec.received.saturating_sub(accepted);
    Ok((
        lost,
        duplicated,
        json!({
            "results_accepted": accepted,
            "results_recorded": rec.received,
            "results_pending_at_exit": u(summary, &["results_pending"]),
            "resends_dropped_by_coordinator": rec.duplicates_dropped,
            "sequence_gaps": rec.gaps,
        }),
    ))
}

pub(crate) fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// Cut the node from the coordinator (a UDP proxy drops everything) while it keeps serving; the
/// spooled results must arrive exactly once after the link returns.
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
    let at_cut = fleet
        .status()?
        .results
        .get("cam-spool")
        .map_or(0, |r| r.received);
    proxy.partition(true);
    std::thread::sleep(partition);
    let during = fleet
        .status()?
        .results
        .get("cam-spool")
        .map_or(0, |r| r.received);
    proxy.partition(false);
    let healed = Instant::now();
    let after = fleet.wait_for("the spool to flow again", Duration::from_secs(40), |s| {
        s.results
            .get("cam-spool")
            .is_some_and(|r| r.received > during)
    })?;
    let reconnect_s = healed.elapsed().as_secs_f64();
    let backlog = after.results.get("cam-spool").map_or(0, |r| r.received) - during;
    wait_exit(&mut node, Duration::from_secs(secs as u64 + 90))?;
    let summary = fleet.summary("cam-spool")?;
    let (lost, duplicated, figures) = exactly_once(&fleet, "cam-spool", &summary)?;
    let arrived_while_cut = during.saturating_sub(at_cut);
    let ok = lost == 0 && duplicated == 0 && backlog > 0 && u(&summary, &["results_pending"]) == 0;
    Ok(merge(
        json!({
            "scenario": "partition-spool",
            "ok": ok,
            "lost": lost,
            "duplicated": duplicated,
            "partition_s": partition.as_secs_f64(),
            "datagrams_dropped": proxy.dropped.load(std::sync::atomic::Ordering::Relaxed),
            "recorded_while_partitioned": arrived_while_cut,
            "first_backlog_batch": backlog,
            "reconnect_s": reconnect_s,
        }),
        figures,
    ))
}

/// Kill -9 the offload server while a device offloads every request: requests fall back to a
/// local variant and none is lost.
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
    let served_before_kill = fleet
        .status()?
        .nodes
        .iter()
        .find(|n| n.id == "edge-1")
        .map_or(0, |n| n.served_offload);
    server.kill();
    wait_exit(&mut node, Duration::from_secs(120))?;
    let summary = fleet.summary("cam-off")?;
    let (lost_results, duplicated, figures) = exactly_once(&fleet, "cam-off", &summary)?;
    let apps = summary["apps"].as_object().cloned().unwrap_or_default();
    let sum = |k: &str| {
        apps.values()
            .map(|a| a[k].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let (requests, dropped, offloaded, fallbacks) = (
        sum("requests"),
        sum("dropped"),
        sum("offloaded"),
        sum("offload_fallbacks"),
    );
    let lost = lost_results + dropped;
    let ok = lost == 0 && duplicated == 0 && offloaded > 0 && fallbacks > 0;
    Ok(merge(
        json!({
            "scenario": "offload-server-kill",
            "ok": ok,
            "lost": lost,
            "duplicated": duplicated,
            "requests": requests,
            "offloaded": offloaded,
            "fell_back_locally": fallbacks,
            "dropped": dropped,
            "served_by_server_before_kill": served_before_kill,
            "accuracy": summary["accuracy"],
            "cost_used_usd": summary["cost_used_usd"],
        }),
        figures,
    ))
}

fn shard_lines(p: &Proc) -> usize {
    p.log_text()
        .lines()
        .filter(|l| l.contains("shard stored"))
        .count()
}

/// Kill -9 a node in the middle of its first model download; on restart it fetches only the
/// shards it lacks, verifies everything and serves.
fn crash_during_download() -> anyhow::Result<Value> {
    let fleet = Fleet::new()?;
    let _coord = fleet.coordinator(&[])?;
    let extra = [
        "--models",
        "coordinator",
        "--prefetch",
        "all",
        "--fetch-max-mbps",
        "1.5",
    ];
    let mut first = fleet.node("cam-dl", "laptop", 120.0, &extra)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while shard_lines(&first) < 10 {
        if Instant::now() > deadline {
            bail!("the download never started: {}", tail(&first.log_text()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill();
    let stored_before_crash = shard_lines(&first);
    let mut second = fleet.node(
        "cam-dl",
        "laptop",
        12.0,
        &["--models", "coordinator", "--prefetch", "all"],
    )?;
    wait_exit(&mut second, Duration::from_secs(120))?;
    let summary = fleet.summary("cam-dl")?;
    let m = &summary["models"];
    let resumed = u(m, &["shards_resumed"]);
    let fetched = u(m, &["shards_fetched"]);
    let total = total_shards()?;
    let complete = m["variants_complete"].as_array().map_or(0, Vec::len);
    let lost = total.saturating_sub(resumed + fetched);
    let duplicated = (resumed + fetched).saturating_sub(total);
    let ok = resumed > 0
        && fetched > 0
        && lost == 0
        && duplicated == 0
        && complete == 6
        && u(&summary, &["requests"]) > 0;
    Ok(json!({
        "scenario": "node-crash-during-download",
        "ok": ok,
        "lost": lost,
        "duplicated": duplicated,
        "shards_total": total,
        "shards_stored_before_kill": stored_before_crash,
        "shards_resumed": resumed,
        // Shards stored in the last moments before the kill, not yet flushed by sled.
        "shards_lost_to_crash": (stored_before_crash as u64).saturating_sub(resumed),
        "shards_fetched_after_restart": fetched,
        "shards_verified": u(m, &["shards_verified"]),
        "variants_complete": complete,
        "requests_served_after_restart": u(&summary, &["requests"]),
        "accuracy": summary["accuracy"],
    }))
}

/// Distinct shards of the repo catalog, as the coordinator cuts them.
fn total_shards() -> anyhow::Result<u64> {
    let (manifest, _, dir) = protocol::manifest::load(&crate::catalog())?;
    let mut digests = std::collections::BTreeSet::new();
    for v in &manifest.variants {
        for f in std::iter::once(&v.trunk).chain(v.heads.iter().map(|h| &h.file)) {
            let bytes = std::fs::read(dir.join(&f.file))?;
            for c in bytes.chunks(protocol::msg::SHARD_BYTES) {
                digests.insert(sha256(c));
            }
        }
    }
    Ok(digests.len() as u64)
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Flip bytes in stored shards of a stopped node; on its next run the corruption is detected when
/// the variant is read, the shard is dropped and fetched again, and nothing corrupt is loaded.
fn corrupt_shard() -> anyhow::Result<Value> {
    let fleet = Fleet::new()?;
    let _coord = fleet.coordinator(&[])?;
    let extra = ["--models", "coordinator", "--prefetch", "all"];
    let mut first = fleet.node("cam-cs", "laptop", 8.0, &extra)?;
    wait_exit(&mut first, Duration::from_secs(120))?;
    let before = fleet.summary("cam-cs")?;
    let complete_before = before["models"]["variants_complete"]
        .as_array()
        .map_or(0, Vec::len);
    // One flipped byte in one shard of every variant's trunk: whichever variant the node loads
    // first meets corruption.
    let flipped = {
        let db =
            sled::open(fleet.store_path("cam-cs")).context("opening the stopped node's store")?;
        let shards = db.open_tree(mcdnn_node::models::shards::SHARDS_TREE)?;
        let manifests = db.open_tree("model_manifests")?;
        let mut flipped = 0u64;
        for item in manifests.iter() {
            let (_, v) = item?;
            let m: protocol::msg::VariantManifest = protocol::codec::decode(&v)?;
            let Some(d) = m.files.first().and_then(|f| f.shards.last()) else {
                continue;
            };
            if let Some(bytes) = shards.get(d)? {
                let mut bad = bytes.to_vec();
                let mid = bad.len() / 2;
                bad[mid] ^= 0xff;
                shards.insert(d.as_bytes(), bad)?;
                flipped += 1;
            }
        }
        db.flush()?;
        flipped
    };
    let mut second = fleet.node("cam-cs", "laptop", 12.0, &extra)?;
    wait_exit(&mut second, Duration::from_secs(120))?;
    let summary = fleet.summary("cam-cs")?;
    let m = &summary["models"];
    let detected = u(m, &["corrupt_shards_dropped"]);
    let refetched = u(m, &["shards_fetched"]);
    // Every shard left in the store must match its digest.
    let corrupt_left = {
        let db = sled::open(fleet.store_path("cam-cs"))?;
        let shards = db.open_tree(mcdnn_node::models::shards::SHARDS_TREE)?;
        shards
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, v)| String::from_utf8_lossy(k) != sha256(v))
            .count() as u64
    };
    let requests = u(&summary, &["requests"]);
    let ok = detected >= 1 && refetched >= 1 && corrupt_left == 0 && requests > 0;
    Ok(json!({
        "scenario": "corrupt-shard",
        "ok": ok,
        "lost": 0,
        "duplicated": 0,
        "variants_complete_before": complete_before,
        "shards_flipped": flipped,
        "corrupt_detected_and_dropped": detected,
        "shards_refetched": refetched,
        "corrupt_shards_left": corrupt_left,
        "loaded_corrupt": 0,
        "requests_served": requests,
        "accuracy": summary["accuracy"],
    }))
}
