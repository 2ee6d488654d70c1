//! `mcdnn-chaos rogue-node` and `store-wipe`: a device with a valid certificate that lies, and a
//! device whose store is lost mid-run.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use wire::msg::{NodeMsg, Role, Telemetry};

use crate::chaos::{merge, node_results, wait_exit};
use crate::evidence;
use crate::peers::{self, Fake};
use crate::{Fleet, NodeOpts, free_port};

/// Knobs the tests shorten.
#[derive(Debug, Clone)]
pub struct RogueOptions {
    /// How long the honest nodes run beside the rogue one (rogue-node) or before the wipe
    /// (store-wipe, which runs as long again after it).
    pub run: Duration,
}

impl Default for RogueOptions {
    fn default() -> Self {
        Self {
            run: Duration::from_secs(20),
        }
    }
}

/// A node with a valid certificate claims the server role (unapproved) with its own offload
/// endpoint, names an app the catalog lacks and reports an infinite battery, every 100 ms, beside
/// two honest devices with a cloud budget. Plan
/// epochs must keep advancing, no frame may reach it, and the honest nodes' accuracy must hold.
pub fn rogue_node(opts: &RogueOptions) -> anyhow::Result<Value> {
    let fleet = Fleet::new()?;
    let _coord = fleet.coordinator(&[])?;
    let secs = opts.run.as_secs_f64();
    let node_opts = NodeOpts {
        coordinator: None,
        energy_budget_j: Some(1000.0),
    };
    // A cloud budget, so a plan that named the rogue as a server would offload to it.
    let extra = ["--cost-budget-usd", "100"];
    let mut honest = [
        fleet.node_with("cam-a", "laptop", secs, &node_opts, &extra)?,
        fleet.node_with("cam-b", "laptop", secs, &node_opts, &extra)?,
    ];
    let first = fleet.wait_for("the honest nodes' plans", Duration::from_secs(30), |s| {
        s.nodes.iter().filter(|n| n.acked_epoch >= 1).count() == 2
    })?;
    let digest = first.catalog_digest.clone();
    let rt = tokio::runtime::Runtime::new()?;
    let identity = peers::node_identity(&fleet, "cam-rogue")?;
    let offload_port = free_port();
    let (_fake, seen) = rt.block_on(async {
        peers::fake_server(
            &identity,
            SocketAddr::from(([127, 0, 0, 1], offload_port)),
            Fake::OffloadServer,
        )
    })?;
    let mut hello = peers::hello("cam-rogue", "laptop", &digest, &["garment", "no-such-app"]);
    hello.role = Role::Server {
        capacity_rps: 1.0e4,
    };
    hello.offload_addr = Some(format!("127.0.0.1:{offload_port}"));
    hello.battery.energy_left_j = f64::INFINITY;
    let mut session = rt.block_on(peers::join(&fleet.quic(), &identity, hello))?;
    let epoch_at_start = fleet.status()?.plan.epoch;
    let started = Instant::now();
    let mut reports = 0u64;
    rt.block_on(async {
        let mut seq = 0;
        while started.elapsed() < opts.run {
            seq += 1;
            // A virtual node's plausible report, with the lie in it.
            let mut t: Telemetry = mcdnn_coordinator::ctl::bench::telemetry(seq);
            t.battery.energy_left_j = f64::INFINITY;
            if net::framing::write_frame(&mut session.send, &NodeMsg::Telemetry(t))
                .await
                .is_err()
            {
                break;
            }
            reports += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let during = fleet.status()?;
    let epochs_advanced = during.plan.epoch.saturating_sub(epoch_at_start);
    let rogue = during.nodes.iter().find(|n| n.id == "cam-rogue");
    let rogue_excluded = rogue.and_then(|n| n.excluded.clone());
    let rogue_planned = during.plan.mixes.contains_key("cam-rogue");
    let (mut lost, mut duplicated, mut accuracies, mut figures) = (0, 0, Vec::new(), json!({}));
    let mut problems = Vec::new();
    for (i, node) in honest.iter_mut().enumerate() {
        wait_exit(node, Duration::from_secs(secs as u64 + 60))?;
        let name = ["cam-a", "cam-b"][i];
        let summary = fleet.summary(name)?;
        let (v, p, f) = node_results(&fleet, name, &[&summary])?;
        lost += v.lost;
        duplicated += v.duplicated;
        problems.extend(p);
        let acc = summary
            .apps
            .get("garment")
            .context("the node summary has no garment app")?
            .accuracy;
        accuracies.push(acc);
        figures[name] = f;
    }
    let min_accuracy = accuracies.iter().copied().fold(f64::INFINITY, f64::min);
    let ok = lost == 0
        && duplicated == 0
        && problems.is_empty()
        && epochs_advanced >= 3
        && seen.frames() == 0
        && rogue_excluded.is_some()
        && !rogue_planned
        && min_accuracy > 50.0;
    Ok(merge(
        json!({
            "scenario": "rogue-node",
            "ok": ok,
            "lost": lost,
            "duplicated": duplicated,
            "epochs_advanced_while_rogue": epochs_advanced,
            "rogue_reports_sent": reports,
            "frames_to_rogue": seen.frames(),
            "rogue_excluded": rogue_excluded,
            "rogue_planned": rogue_planned,
            "honest_min_garment_accuracy": min_accuracy,
            "problems": problems,
        }),
        json!({ "honest": figures }),
    ))
}

/// A node is killed mid-run, its store deleted, and it starts again on an empty store. Its new
/// store numbers results from 1 again; every result the new store accepts must be recorded once
/// (`lost` 0), and what the first store delivered stays recorded.
pub fn store_wipe(opts: &RogueOptions) -> anyhow::Result<Value> {
    let fleet = Fleet::new()?;
    let _coord = fleet.coordinator(&[])?;
    let name = "cam-wipe";
    let secs = opts.run.as_secs_f64();
    let mut first = fleet.node(name, "laptop", secs * 10.0, &[])?;
    fleet.wait_for(
        "results from the first store",
        Duration::from_secs(30),
        |s| s.results.get(name).is_some_and(|r| r.received > 0),
    )?;
    std::thread::sleep(opts.run);
    first.kill();
    // Let a batch in flight at the kill commit before reading the ledger.
    std::thread::sleep(Duration::from_secs(1));
    let recorded_before = fleet.status()?.results.get(name).map_or(0, |r| r.received);
    let store = fleet.store_path(name);
    let unsent_at_wipe = pending_in(&store)?;
    std::fs::remove_dir_all(&store).with_context(|| format!("wiping {}", store.display()))?;
    let mut second = fleet.node(name, "laptop", secs, &[])?;
    wait_exit(&mut second, Duration::from_secs(secs as u64 + 60))?;
    let summary = fleet.summary(name)?;
    // The ledger now holds both stores' results: take the first store's part out.
    let recorded_total = evidence::recorded(&fleet.status()?, name).0;
    let recorded_after = recorded_total.saturating_sub(recorded_before);
    let (accepted_after, pending_after) = (summary.results_accepted, summary.results_pending);
    let lost = accepted_after.saturating_sub(recorded_after);
    let duplicated = recorded_after.saturating_sub(accepted_after);
    let ok = lost == 0
        && duplicated == 0
        && pending_after == 0
        && accepted_after > 0
        && recorded_before > 0;
    Ok(json!({
        "scenario": "store-wipe",
        "ok": ok,
        "lost": lost,
        "duplicated": duplicated,
        "recorded_from_first_store": recorded_before,
        "spooled_in_first_store_at_wipe": unsent_at_wipe,
        "accepted_by_new_store": accepted_after,
        "recorded_from_new_store": recorded_after,
        "pending_after_drain": pending_after,
        "results_recorded": recorded_total,
    }))
}

/// Results still spooled in a (stopped) node's store: destroyed with it.
fn pending_in(store: &std::path::Path) -> anyhow::Result<usize> {
    let store = mcdnn_node::store::NodeStore::open(store)?;
    Ok(mcdnn_node::spool::Spool::open(&store)?.pending())
}
