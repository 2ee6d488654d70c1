//! `mcdnnctl bench telemetry`: N virtual nodes flood one coordinator with telemetry and result
//! batches over real QUIC with mutual TLS on loopback; the bench prints how many connections got
//! through, each connection's accepted share (min/p50/max and Jain's fairness index) and the
//! total ingest rate. The coordinator (node endpoint, soft state, Raft, solve loop) and the
//! virtual nodes run in this process: the figure is what the 2-core machine does for both sides.

mod fairness;
mod virtual_node;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use net::clock::{SharedClock, SystemClock};
use net::identity::{Ca, Identity, Kind};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use fairness::{Share, jain};
pub use virtual_node::{hello, join, telemetry, telemetry_at};

use crate::fleet::limits::Rated;
use crate::fleet::{node_endpoint, sessions, solve_loop};
use crate::wiring::Wiring;

#[derive(Debug, Clone, Args)]
pub struct TelemetryBenchArgs {
    /// Fleet sizes to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    pub nodes: Vec<usize>,
    /// Measurement window per fleet size.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Catalog manifest (default: models/catalog.json or MCDNN_CATALOG).
    #[arg(long)]
    pub catalog: Option<std::path::PathBuf>,
    /// Telemetry messages per second each virtual node sends; 0 = as fast as it can (a flood:
    /// the coordinator's ingest capacity and fairness). Real nodes send 1/s.
    #[arg(long, default_value_t = 0.0)]
    pub rate_per_node: f64,
    /// Results per batch each virtual node sends between telemetry reports (at most 16 batches
    /// unacknowledged, like a real node); 0 = telemetry only.
    #[arg(long, default_value_t = 16)]
    pub results_per_batch: u64,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct TelemetryFigure {
    /// Connections (virtual nodes) flooding.
    pub nodes: usize,
    pub seconds: f64,
    /// Telemetry messages accepted in the window, all connections together.
    pub messages: u64,
    pub messages_per_s: f64,
    /// Results committed in the window, all connections together.
    pub results: u64,
    pub results_per_s: f64,
    /// Nodes whose hello was accepted before the window.
    pub nodes_joined: usize,
    /// Nodes whose telemetry reached the coordinator.
    pub nodes_reporting: usize,
    /// Telemetry accepted per connection in the window.
    pub telemetry: Share,
    /// Results committed per connection in the window.
    pub results_share: Share,
    /// Telemetry messages the per-identity limiter held back in the window.
    pub telemetry_limited: u64,
    /// Sessions that ended before the bench stopped them (each rejoined).
    pub sessions_lost: u64,
    /// Offered rate per node (0 = as fast as each node can send).
    pub rate_per_node: f64,
}

/// What the bench reads per connection at the window's edges.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    telemetry: u64,
    telemetry_limited: u64,
    results: u64,
}

fn sample(hub: &Wiring, nodes: &[(String, Arc<virtual_node::Seen>)]) -> Vec<Sample> {
    nodes
        .iter()
        .map(|(name, seen)| {
            let t = hub.limits.tally(name, Rated::Telemetry);
            Sample {
                telemetry: t.accepted,
                telemetry_limited: t.limited,
                results: seen.results_acked.load(Ordering::Relaxed),
            }
        })
        .collect()
}

pub async fn telemetry_bench(args: &TelemetryBenchArgs) -> anyhow::Result<Vec<TelemetryFigure>> {
    let clock = SystemClock::shared();
    let dir = tempfile_dir(&clock)?;
    let ca = Ca::init(&dir)?;
    ca.enroll(Kind::Coordinator, "bench-0", &dir, &[], 1)?;
    let max = args.nodes.iter().copied().max().unwrap_or(0);
    let mut clients = Vec::with_capacity(max);
    for i in 0..max {
        let name = format!("vn-{i}");
        ca.enroll(Kind::Node, &name, &dir, &[], 1)?;
        clients.push((
            name.clone(),
            net::tls::client_config(&Identity::load(&dir, &name)?)?,
        ));
    }
    let path = wire::manifest::locate(args.catalog.as_deref())?;
    let (manifest, _, _) = wire::manifest::load(&path)?;
    let mut figures = Vec::new();
    for &n in &args.nodes {
        let server = net::tls::server_config(&Identity::load(&dir, "bench-0")?)?;
        let endpoint = node_endpoint::bind(server, SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = endpoint.local_addr()?;
        let cancel = CancellationToken::new();
        let hub = crate::wiring::standalone(
            "bench-0",
            manifest.clone(),
            &dir.join(format!("raft-{n}")),
            cancel.clone(),
        )
        .await?;
        tokio::spawn(sessions::serve(endpoint, hub.sessions(), cancel.clone()));
        tokio::spawn(solve_loop::run(
            hub.solver(),
            Duration::from_secs(2),
            Duration::from_secs(60),
            cancel.clone(),
        ));
        let stop = CancellationToken::new();
        let go = CancellationToken::new();
        let mut tasks = Vec::new();
        let mut nodes = Vec::new();
        // The virtual nodes (endpoints and tasks) run on their own runtime, as they would on
        // their own devices: on the coordinator's they would take turns with its endpoint.
        let devices = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("virtual-nodes")
            .enable_all()
            .build()
            .context("starting the virtual nodes' runtime")?;
        for (name, cfg) in clients.iter().take(n) {
            // The endpoint's driver starts on the runtime it is made in.
            let mut ep = {
                let _on_devices = devices.enter();
                quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?
            };
            ep.set_default_client_config(cfg.clone());
            let seen = Arc::new(virtual_node::Seen::default());
            let plan = virtual_node::Plan {
                addr,
                catalog_digest: hub.catalog.digest.clone(),
                name: name.clone(),
                rate_per_s: args.rate_per_node,
                results_per_batch: args.results_per_batch,
                clock: clock.clone(),
            };
            nodes.push((name.clone(), seen.clone()));
            tasks.push(devices.spawn(virtual_node::run(ep, plan, seen, go.clone(), stop.clone())));
        }
        // Wait for every node to join, then measure a window.
        let deadline = Instant::now() + Duration::from_secs(60);
        while hub.nodes.lock().connected() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let joined = hub.nodes.lock().connected();
        go.cancel();
        // Let the first burst settle before the window opens.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = sample(&hub, &nodes);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
        let after = sample(&hub, &nodes);
        let secs = started.elapsed().as_secs_f64();
        let reporting = hub
            .nodes
            .lock()
            .iter()
            .filter(|(_, e)| e.telemetry.is_some())
            .count();
        stop.cancel();
        cancel.cancel();
        let failed = settle(tasks).await;
        devices.shutdown_background();
        if failed > 0 {
            eprintln!("{failed} of {n} virtual nodes failed");
        }
        let sessions_lost = nodes
            .iter()
            .map(|(_, s)| s.sessions_lost.load(Ordering::Relaxed))
            .sum();
        figures.push(figure(FigureInputs {
            nodes: n,
            secs,
            joined,
            reporting,
            before: &before,
            after: &after,
            sessions_lost,
            rate_per_node: args.rate_per_node,
        }));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(figures)
}

/// Waits for the virtual nodes to stop; returns how many failed (the first failure is printed).
async fn settle(tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>) -> usize {
    let mut failed = 0;
    for t in tasks {
        if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(5), t).await
            && !format!("{e:#}").contains("coordinator stopping")
        {
            if failed == 0 {
                tracing::warn!(error = format!("{e:#}"), "a virtual node failed");
                eprintln!("first virtual node failure: {e:#}");
            }
            failed += 1;
        }
    }
    failed
}

struct FigureInputs<'a> {
    nodes: usize,
    secs: f64,
    joined: usize,
    reporting: usize,
    before: &'a [Sample],
    after: &'a [Sample],
    sessions_lost: u64,
    rate_per_node: f64,
}

fn figure(i: FigureInputs<'_>) -> TelemetryFigure {
    let delta = |f: fn(&Sample) -> u64| -> Vec<u64> {
        i.before
            .iter()
            .zip(i.after)
            .map(|(b, a)| f(a).saturating_sub(f(b)))
            .collect()
    };
    let telemetry = Share::of(&delta(|s| s.telemetry));
    let results_share = Share::of(&delta(|s| s.results));
    TelemetryFigure {
        nodes: i.nodes,
        seconds: i.secs,
        messages: telemetry.total,
        messages_per_s: telemetry.total as f64 / i.secs,
        results: results_share.total,
        results_per_s: results_share.total as f64 / i.secs,
        nodes_joined: i.joined,
        nodes_reporting: i.reporting,
        telemetry_limited: delta(|s| s.telemetry_limited).iter().sum(),
        telemetry,
        results_share,
        sessions_lost: i.sessions_lost,
        rate_per_node: i.rate_per_node,
    }
}

fn tempfile_dir(clock: &SharedClock) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "mcdnn-bench-{}-{}",
        std::process::id(),
        clock.unix_ms()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
