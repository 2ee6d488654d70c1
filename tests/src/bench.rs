//! `mcdnn-chaos bench transfer|offload`: figures with a same-run baseline, against real processes
//! on loopback. Benchmarks measure; nothing here asserts on speed.
//!
//! - transfer: every variant fetched as verified shards into a fresh sled store (the node's real
//!   fetch round: one QUIC blob stream with a bounded window of shard requests, sha256 per shard
//!   before it is stored, sled inserts, variants marked complete) against the same
//!   number of bytes pushed down one raw QUIC stream with the same TLS config.
//! - offload: round trip of one request to an offload server process against local inference of
//!   the same variant on the same images.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mcdnn_node::offload::Offloader;
use net::identity::{Identity, Kind};
use serde_json::{Value, json};
use wire::codec::MAX_FRAME_BYTES;
use wire::msg::{CoordMsg, NodeMsg};

use crate::{Fleet, free_port};

/// Runs bench `what`; `catalog` is the catalog transfer fetches (the fleet's, face models
/// included, unless given: what a node downloads).
pub fn run(what: &str, catalog: Option<&std::path::Path>) -> anyhow::Result<Value> {
    match what {
        "transfer" => transfer(catalog.map_or_else(crate::fleet_catalog, Into::into)),
        "offload" => offload(),
        other => bail!("unknown bench {other:?}; known: transfer, offload"),
    }
}

fn client_endpoint(identity: &Identity) -> anyhow::Result<quinn::Endpoint> {
    let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    endpoint.set_default_client_config(net::tls::client_config(identity)?);
    Ok(endpoint)
}

/// A session as a node: hello, welcome; blob streams then ride on the connection. `digest` is
/// the coordinator's catalog digest: a hello without it is refused as a catalog mismatch.
async fn node_session(
    addr: &str,
    identity: &Identity,
    name: &str,
    digest: &str,
) -> anyhow::Result<(quinn::Connection, quinn::SendStream)> {
    let conn = client_endpoint(identity)?
        .connect(addr.parse()?, "localhost")?
        .await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let hello = crate::peers::hello(name, "laptop", digest, &["garment"]);
    net::framing::write_frame(&mut send, &NodeMsg::Hello(hello)).await?;
    match net::framing::read_frame::<_, CoordMsg>(&mut recv, MAX_FRAME_BYTES).await? {
        Some(CoordMsg::Welcome { .. }) => Ok((conn, send)),
        other => bail!("coordinator answered hello with {other:?}"),
    }
}

fn transfer(catalog: std::path::PathBuf) -> anyhow::Result<Value> {
    let mut fleet = Fleet::new()?;
    fleet.catalog = catalog.clone();
    let _coord = fleet.coordinator(&[])?;
    let (manifest, catalog_bytes, _) = wire::manifest::load(&catalog)?;
    let digest = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(&catalog_bytes))
    };
    let rt = tokio::runtime::Runtime::new()?;
    // Each distinct file once: variants share heads and the detector.
    let catalog_file_bytes: u64 = manifest
        .variants
        .iter()
        .flat_map(|v| manifest.variant_files(v))
        .map(|f| (f.sha256.as_str(), f.bytes))
        .collect::<std::collections::BTreeMap<_, _>>()
        .values()
        .sum();
    let shard_round = |round: usize| -> anyhow::Result<(f64, u64)> {
        // A node of its own each round: the coordinator's blob rate limit is per node (256 MiB
        // burst), and nine rounds of the fleet catalog fetch more than that.
        let name = format!("bench-node-{round}");
        fleet.enroll(Kind::Node, &name)?;
        let identity = Identity::load(&fleet.ca, &name)?;
        let session = Session {
            name: &name,
            identity: &identity,
            digest: &digest,
        };
        rt.block_on(shard_round(&fleet, &session, &manifest, round))
    };
    // A warm-up round, untimed, learns the bytes a node really fetches: shards are content
    // addressed, so identical shards of different files (int8-150 and recent-116 differ only
    // in a few) travel once. The raw stream then carries exactly as many.
    let (_, bytes) = shard_round(usize::MAX)?;
    if bytes == 0 || bytes > catalog_file_bytes {
        bail!("the shard path fetched {bytes} bytes of a {catalog_file_bytes}-byte catalog");
    }
    let raw = rt.block_on(RawSender::start(&fleet))?;
    // Rounds alternate between the two paths (and which goes first), so both see the same
    // machine: on a shared machine load comes and goes within a run.
    let rounds = 9;
    let mut shard_mbps = Vec::new();
    let mut raw_mbps = Vec::new();
    for round in 0..rounds {
        for path in [round % 2, 1 - round % 2] {
            if path == 0 {
                let (secs, got) = shard_round(round)?;
                if got != bytes {
                    bail!("round {round} fetched {got} bytes, the warm-up {bytes}");
                }
                shard_mbps.push(got as f64 / secs / 1e6);
            } else {
                let secs = rt.block_on(raw.round(bytes as usize))?;
                raw_mbps.push(bytes as f64 / secs / 1e6);
            }
        }
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let median = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    };
    Ok(json!({
        "bench": "transfer",
        "catalog": catalog.display().to_string(),
        "catalog_file_bytes": catalog_file_bytes,
        "bytes": bytes,
        "rounds": rounds,
        "shard_transfer_mb_per_s": best(&shard_mbps),
        "raw_quic_mb_per_s": best(&raw_mbps),
        "ratio_shard_over_raw": best(&shard_mbps) / best(&raw_mbps).max(1e-9),
        "ratio_median_shard_over_median_raw": median(&shard_mbps) / median(&raw_mbps).max(1e-9),
        "shard_mb_per_s_each_round": shard_mbps,
        "raw_mb_per_s_each_round": raw_mbps,
        "note": "ratio: best of rounds over best of rounds; rounds alternate between the paths; \
                 the shard path is the node's fetch round (windowed shard requests, sha256 of \
                 every shard before it is stored, sled inserts, every variant marked complete; \
                 no flush, as in the node)",
    }))
}

/// One node fetch round into a fresh sled store: seconds from the first request to the last
/// variant complete, and the bytes fetched.
/// Who the bench's node is and the catalog digest it announces.
struct Session<'a> {
    name: &'a str,
    identity: &'a Identity,
    digest: &'a str,
}

async fn shard_round(
    fleet: &Fleet,
    session: &Session<'_>,
    manifest: &wire::manifest::Manifest,
    round: usize,
) -> anyhow::Result<(f64, u64)> {
    let store_dir = fleet.path().join(format!("bench-store-{round}"));
    let store = mcdnn_node::store::NodeStore::open(&store_dir)?;
    let shards = mcdnn_node::models::ShardStore::open(&store, u64::MAX)?;
    // A fresh replica elects itself first: retry until it answers as leader.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (conn, _control) = loop {
        match node_session(
            &fleet.quic(),
            session.identity,
            session.name,
            session.digest,
        )
        .await
        {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let started = Instant::now();
    let streams = mcdnn_node::handles::BlobStreams::new(conn.clone());
    let clock = net::clock::SystemClock::shared();
    let transfer = mcdnn_node::models::transfer::Transfer {
        streams: &streams,
        max_bytes_per_s: None,
        manifest,
        store: &shards,
        clock: &clock,
    };
    let names: Vec<&str> = manifest.variants.iter().map(|v| v.name.as_str()).collect();
    let mut complete = 0;
    mcdnn_node::models::transfer::fetch_variants(&transfer, &names, |_| complete += 1).await?;
    let secs = started.elapsed().as_secs_f64();
    conn.close(0u32.into(), b"done");
    if complete != names.len() {
        bail!("{complete} of {} variants completed", names.len());
    }
    Ok((secs, shards.snapshot().bytes_fetched))
}

/// The baseline: bytes down one QUIC stream between two in-process endpoints with fleet TLS.
struct RawSender {
    addr: SocketAddr,
    client: Identity,
    /// How many bytes the sender sends on the next connection.
    bytes: tokio::sync::watch::Sender<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl RawSender {
    async fn start(fleet: &Fleet) -> anyhow::Result<Self> {
        fleet.enroll(Kind::Node, "bench-raw")?;
        let server_id = Identity::load(&fleet.ca, "coord-0")?;
        let client = Identity::load(&fleet.ca, "bench-raw")?;
        let server = quinn::Endpoint::server(
            net::tls::server_config(&server_id)?,
            SocketAddr::from(([127, 0, 0, 1], free_port())),
        )?;
        let addr = server.local_addr()?;
        let (bytes, want) = tokio::sync::watch::channel(0usize);
        let task = tokio::spawn(async move {
            let payload = vec![0xA5u8; 64 * 1024];
            while let Some(inc) = server.accept().await {
                let Ok(conn) = inc.await else { continue };
                let Ok(mut send) = conn.open_uni().await else {
                    continue;
                };
                let mut left = *want.borrow();
                while left > 0 {
                    let n = left.min(payload.len());
                    if send.write_all(&payload[..n]).await.is_err() {
                        break;
                    }
                    left -= n;
                }
                let _ = send.finish();
                let _ = conn.closed().await;
            }
        });
        Ok(Self {
            addr,
            client,
            bytes,
            task,
        })
    }

    /// Seconds to receive `bytes` on a new connection's stream (from the handshake's end).
    async fn round(&self, bytes: usize) -> anyhow::Result<f64> {
        self.bytes.send_replace(bytes);
        let conn = client_endpoint(&self.client)?
            .connect(self.addr, "localhost")?
            .await?;
        let started = Instant::now();
        let mut recv = conn.accept_uni().await?;
        let mut got = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        while let Some(n) = recv.read(&mut buf).await? {
            got += n;
        }
        let secs = started.elapsed().as_secs_f64();
        conn.close(0u32.into(), b"done");
        if got != bytes {
            bail!("raw stream delivered {got} of {bytes} bytes");
        }
        Ok(secs)
    }
}

impl Drop for RawSender {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn offload() -> anyhow::Result<Value> {
    let fleet = Fleet::new()?;
    let _coord = fleet.coordinator(&[])?;
    let listen = format!("127.0.0.1:{}", free_port());
    let _server = fleet.server("bench-edge", 300.0, &listen, 1000.0)?;
    fleet.wait_for("the offload server", Duration::from_secs(30), |s| {
        s.nodes.iter().any(|n| n.id == "bench-edge")
    })?;
    fleet.enroll(Kind::Node, "bench-dev")?;
    let identity = Identity::load(&fleet.ca, "bench-dev")?;
    let (manifest, _, dir) = wire::manifest::load(&crate::catalog())?;
    let data = mcdnn_node::dataset::Dataset::load(&mcdnn_node::dataset::data_dir(), "t10k")
        .context("test images")?;
    let variant = "half";
    let spec = manifest.variant(variant).context("variant half")?;
    let n = 300;
    let rt = tokio::runtime::Runtime::new()?;
    let mut off = {
        let _guard = rt.enter();
        mcdnn_node::offload::client::QuicOffloader::new(
            rt.handle().clone(),
            mcdnn_node::credentials::Credentials::new(
                fleet.ca.clone(),
                "bench-dev".to_owned(),
                identity,
            ),
            mcdnn_node::handles::AssignmentCell::default(),
            net::clock::SystemClock::shared(),
            Some(listen.clone()),
            Duration::from_secs(2),
            (manifest.input.height as u16, manifest.input.width as u16),
        )?
    };
    // Warm up: connection, and the server loading the variant.
    for i in 0..20 {
        let _ = off.offload("garment", variant, data.image(i));
    }
    let mut remote = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        off.offload("garment", variant, data.image(i))
            .map_err(anyhow::Error::msg)?;
        remote.push(t.elapsed().as_secs_f64() * 1e3);
    }
    mcdnn_node::runtime::environment()?;
    let mut local_model = mcdnn_node::engine::LoadedVariant::load_dir(&dir, spec, &manifest.input)?;
    let mut local = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        local_model.infer(data.image(i), &["garment"])?;
        local.push(t.elapsed().as_secs_f64() * 1e3);
    }
    remote.sort_by(f64::total_cmp);
    local.sort_by(f64::total_cmp);
    let (r50, r99, l50, l99) = (
        percentile(&remote, 0.5),
        percentile(&remote, 0.99),
        percentile(&local, 0.5),
        percentile(&local, 0.99),
    );
    Ok(json!({
        "bench": "offload",
        "variant": variant,
        "requests": n,
        "offload_rtt_ms_p50": r50,
        "offload_rtt_ms_p99": r99,
        "local_ms_p50": l50,
        "local_ms_p99": l99,
        "ratio_p50_offload_over_local": r50 / l50.max(1e-9),
        "ratio_p99_offload_over_local": r99 / l99.max(1e-9),
    }))
}
