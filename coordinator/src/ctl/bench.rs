//! `mcdnnctl bench telemetry`: telemetry messages per second one coordinator ingests from N
//! virtual nodes over real QUIC with mutual TLS on loopback. The coordinator (node endpoint, soft
//! state, solve loop) and the virtual nodes run in this process: the figure is what the 2-core
//! machine does for both sides, so a separate coordinator host would ingest more.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use net::identity::{Ca, Identity, Kind};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use wire::codec;
use wire::msg::{
    AppTelemetry, Battery, BatterySource, Hello, Link, NodeMsg, PROTOCOL_VERSION, Role, Telemetry,
};

use crate::fleet::{sessions, solve_loop};

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
    /// Telemetry messages per second each virtual node sends; 0 = as fast as it can (the
    /// coordinator's ingest capacity). Real nodes send 1/s.
    #[arg(long, default_value_t = 0.0)]
    pub rate_per_node: f64,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct TelemetryFigure {
    pub nodes: usize,
    pub seconds: f64,
    pub messages: u64,
    pub messages_per_s: f64,
    /// Nodes whose hello was accepted before the window.
    pub nodes_joined: usize,
    /// Nodes whose telemetry reached the coordinator.
    pub nodes_reporting: usize,
    /// Offered rate per node (0 = as fast as each node can send).
    pub rate_per_node: f64,
}

fn battery() -> Battery {
    Battery {
        capacity_j: 7200.0,
        energy_left_j: 5000.0,
        drain_w: 0.2,
        shift_end_unix_ms: unix_ms() + 36_000_000,
        source: BatterySource::Model,
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A virtual node's plausible report (two apps, a full battery); also what attack tests lie in.
pub fn telemetry(seq: u64) -> Telemetry {
    let app = |name: &str, classes: usize| AppTelemetry {
        app: name.into(),
        rate_per_s: 2.0,
        class_histogram: vec![3; classes],
        requests: seq * 2,
        correct: seq * 2,
        dropped: 0,
        offloaded: 0,
        latency_ms_p50: 0.1,
        energy_used_j: seq as f64 * 0.01,
        cost_used_usd: 0.0,
    };
    Telemetry {
        seq,
        at_unix_ms: unix_ms(),
        battery: battery(),
        memory_free_bytes: 1 << 30,
        model_memory_budget_bytes: 8 << 20,
        loaded_variants: vec!["half".into()],
        apps: vec![app("garment", 10), app("category", 4)],
        link: Link {
            rtt_ms: 1.0,
            bandwidth_bps: 0.0,
            connected: true,
        },
        offload_queue: 0,
        served_offload: 0,
        load_profiles: vec![],
        spool: Default::default(),
    }
}

/// Handshake, hello and welcome for one virtual node holding the catalog `catalog_digest`
/// (the coordinator refuses a node whose catalog is not the fleet's).
pub async fn join(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    name: &str,
    catalog_digest: &str,
) -> anyhow::Result<(quinn::Connection, quinn::SendStream, quinn::RecvStream)> {
    let conn = endpoint.connect(addr, "localhost")?.await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let hello = Hello {
        node_id: name.to_string(),
        device_class: "phone-2016".into(),
        role: Role::Device,
        protocol_version: PROTOCOL_VERSION,
        catalog_digests: vec![catalog_digest.to_string()],
        offload_addr: None,
        battery: battery(),
        apps: vec!["garment".into(), "category".into()],
    };
    net::framing::write_frame(&mut send, &NodeMsg::Hello(hello)).await?;
    match net::framing::read_frame::<_, wire::msg::CoordMsg>(&mut recv, codec::MAX_FRAME_BYTES)
        .await?
    {
        Some(wire::msg::CoordMsg::Welcome { .. }) => {}
        other => anyhow::bail!("no welcome: {other:?}"),
    }
    Ok((conn, send, recv))
}

async fn virtual_node(
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    catalog_digest: String,
    name: String,
    go: CancellationToken,
    rate_per_s: f64,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    // Joining a thousand nodes at once can outlast a handshake's idle timeout on a busy
    // machine; a real node retries with backoff, and so does a virtual one.
    let mut attempt = 0;
    let (conn, mut send, mut recv) = loop {
        attempt += 1;
        match join(&endpoint, addr, &name, &catalog_digest).await {
            Ok(joined) => break joined,
            Err(e) if attempt >= 20 => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100 * attempt.min(10))).await,
        }
    };
    // Drain assignments so the coordinator's writer never blocks on this node.
    tokio::spawn(async move {
        while let Ok(Some(_)) =
            net::framing::read_frame::<_, wire::msg::CoordMsg>(&mut recv, codec::MAX_FRAME_BYTES)
                .await
        {}
    });
    // Every node joins first; then all report together.
    go.cancelled().await;
    let mut ticker = (rate_per_s > 0.0)
        .then(|| tokio::time::interval(Duration::from_secs_f64(1.0 / rate_per_s)));
    let mut seq = 0;
    while !stop.is_cancelled() {
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        }
        seq += 1;
        net::framing::write_frame(&mut send, &NodeMsg::Telemetry(telemetry(seq))).await?;
    }
    conn.close(0u32.into(), b"done");
    Ok(())
}

pub async fn telemetry_bench(args: &TelemetryBenchArgs) -> anyhow::Result<Vec<TelemetryFigure>> {
    let dir = tempfile_dir()?;
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
        let endpoint = quinn::Endpoint::server(server, SocketAddr::from(([127, 0, 0, 1], 0)))?;
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
        for (name, cfg) in clients.iter().take(n) {
            let mut ep = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            ep.set_default_client_config(cfg.clone());
            tasks.push(tokio::spawn(virtual_node(
                ep,
                addr,
                hub.catalog.digest.clone(),
                name.clone(),
                go.clone(),
                args.rate_per_node,
                stop.clone(),
            )));
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
        let start_count = hub.metrics.telemetry_messages_total.load(Ordering::Relaxed);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
        let messages = hub.metrics.telemetry_messages_total.load(Ordering::Relaxed) - start_count;
        let secs = started.elapsed().as_secs_f64();
        let reporting = hub
            .nodes
            .lock()
            .iter()
            .filter(|(_, e)| e.telemetry.is_some())
            .count();
        stop.cancel();
        cancel.cancel();
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
        if failed > 0 {
            eprintln!("{failed} of {n} virtual nodes failed");
        }
        figures.push(TelemetryFigure {
            nodes: n,
            seconds: secs,
            messages,
            messages_per_s: messages as f64 / secs,
            nodes_joined: joined,
            nodes_reporting: reporting,
            rate_per_node: args.rate_per_node,
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(figures)
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir =
        std::env::temp_dir().join(format!("mcdnn-bench-{}-{}", std::process::id(), unix_ms()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
