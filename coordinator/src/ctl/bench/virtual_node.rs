//! A virtual node of the telemetry bench: joins over real QUIC with mutual TLS, then floods
//! telemetry and result batches as fast as the connection takes them. Like a real node it keeps
//! at most [`WINDOW`] result batches unacknowledged, resends from its last ack on a new session
//! and rejoins when a session ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use net::clock::{Clock, SystemClock};
use tokio_util::sync::CancellationToken;
use wire::codec;
use wire::msg::{
    AppTelemetry, Battery, BatterySource, CoordMsg, Hello, InferenceResult, Link, NodeMsg,
    PROTOCOL_VERSION, PlaceTag, ResultBatch, Role, Telemetry,
};

/// Result batches a virtual node keeps unacknowledged (a real node's spool holds 16 of 256).
pub const WINDOW: u64 = 16;

fn battery(clock: &dyn Clock) -> Battery {
    Battery {
        capacity_j: 7200.0,
        energy_left_j: 5000.0,
        drain_w: 0.2,
        shift_end_unix_ms: clock.unix_ms() + 36_000_000,
        source: BatterySource::Model,
    }
}

/// A virtual node's plausible report (two apps, a full battery); also what attack tests lie in.
pub fn telemetry(seq: u64) -> Telemetry {
    telemetry_at(seq, &SystemClock)
}

/// [`telemetry`] as of `clock`.
pub fn telemetry_at(seq: u64, clock: &dyn Clock) -> Telemetry {
    let app = |name: &str, classes: usize| AppTelemetry {
        app: name.into(),
        rate_per_s: 2.0,
        class_histogram: vec![3; classes],
        requests: seq * 2,
        correct: seq * 2,
        labelled: seq * 2,
        dropped: 0,
        offloaded: 0,
        latency_ms_p50: 0.1,
        energy_used_j: seq as f64 * 0.01,
        cost_used_usd: 0.0,
    };
    Telemetry {
        seq,
        at_unix_ms: clock.unix_ms(),
        battery: battery(clock),
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

/// `count` results numbered from `first_seq`.
fn batch(incarnation: u64, first_seq: u64, count: u64, clock: &dyn Clock) -> ResultBatch {
    let at_unix_ms = clock.unix_ms();
    ResultBatch {
        incarnation,
        first_seq,
        results: (first_seq..first_seq + count)
            .map(|seq| InferenceResult {
                seq,
                app: "garment".into(),
                at_unix_ms,
                label: (seq % 10) as u32,
                truth: Some((seq % 10) as u32),
                score: 0.9,
                variant: "half".into(),
                place: PlaceTag::Device,
                energy_j: 0.01,
                cost_usd: 0.0,
                latency_ms: 1.0,
            })
            .collect(),
    }
}

/// The hello of a virtual phone running both Fashion-MNIST apps, holding the catalog
/// `catalog_digest` (the coordinator refuses a node whose catalog is not the fleet's).
pub fn hello(name: &str, catalog_digest: &str) -> Hello {
    Hello {
        node_id: name.to_string(),
        device_class: "phone-2016".into(),
        role: Role::Device,
        protocol_version: PROTOCOL_VERSION,
        catalog_digests: vec![catalog_digest.to_string()],
        offload_addr: None,
        battery: battery(&SystemClock),
        apps: vec!["garment".into(), "category".into()],
        watchlist_version: 0,
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
    net::framing::write_frame(&mut send, &NodeMsg::Hello(hello(name, catalog_digest))).await?;
    match net::framing::read_frame::<_, CoordMsg>(&mut recv, codec::MAX_FRAME_BYTES).await? {
        Some(CoordMsg::Welcome { .. }) => {}
        other => anyhow::bail!("no welcome: {other:?}"),
    }
    Ok((conn, send, recv))
}

/// What a virtual node is and how it floods.
#[derive(Debug, Clone)]
pub struct Plan {
    pub addr: SocketAddr,
    pub catalog_digest: String,
    pub name: String,
    /// Telemetry messages a second; 0 = unpaced.
    pub rate_per_s: f64,
    /// Results per batch; 0 = no results.
    pub results_per_batch: u64,
    pub clock: Arc<dyn Clock>,
}

/// What a virtual node saw, read by the bench while it runs.
#[derive(Debug, Default)]
pub struct Seen {
    /// Results the coordinator acknowledged (committed through Raft): the highest sequence
    /// number acked, results being numbered from 1. The flood sends telemetry while its window
    /// is full, so it never waits for an ack.
    pub results_acked: AtomicU64,
    /// Sessions that ended before the bench stopped them.
    pub sessions_lost: AtomicU64,
}

/// Joins (retrying), waits for `go`, floods until `stop`; rejoins when a session ends.
pub async fn run(
    endpoint: quinn::Endpoint,
    plan: Plan,
    seen: Arc<Seen>,
    go: CancellationToken,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut sent_seq = 0;
    let mut telemetry_seq = 0;
    while !stop.is_cancelled() {
        let joined = tokio::select! {
            j = join_retrying(&endpoint, &plan) => j?,
            () = stop.cancelled() => return Ok(()),
        };
        let (conn, send, recv) = joined;
        tokio::spawn(read_acks(recv, seen.clone()));
        // Every node joins first; then all flood together. A session lost meanwhile rejoins.
        tokio::select! {
            () = go.cancelled() => {}
            _ = conn.closed() => {
                seen.sessions_lost.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        }
        // A new session resends from the last ack, as a real node does.
        sent_seq = sent_seq.min(seen.results_acked.load(Ordering::Relaxed));
        let flood = Flood {
            plan: &plan,
            seen: &seen,
            sent_seq: &mut sent_seq,
            telemetry_seq: &mut telemetry_seq,
        };
        let ended = tokio::select! {
            r = flood.run(send) => r,
            () = stop.cancelled() => Ok(()),
        };
        if ended.is_err() && !stop.is_cancelled() {
            seen.sessions_lost.fetch_add(1, Ordering::Relaxed);
        }
        conn.close(0u32.into(), b"done");
    }
    Ok(())
}

/// Joining a thousand nodes at once can outlast a handshake's idle timeout on a busy machine;
/// a real node retries with backoff, and so does a virtual one.
async fn join_retrying(
    endpoint: &quinn::Endpoint,
    plan: &Plan,
) -> anyhow::Result<(quinn::Connection, quinn::SendStream, quinn::RecvStream)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match join(endpoint, plan.addr, &plan.name, &plan.catalog_digest).await {
            Ok(joined) => return Ok(joined),
            Err(e) if attempt >= 20 => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100 * attempt.min(10))).await,
        }
    }
}

/// Reads what the coordinator sends (so its writer never blocks on this node) and takes acks.
async fn read_acks(mut recv: quinn::RecvStream, seen: Arc<Seen>) {
    while let Ok(Some(msg)) =
        net::framing::read_frame::<_, CoordMsg>(&mut recv, codec::MAX_FRAME_BYTES).await
    {
        if let CoordMsg::ResultsAck { up_to_seq, .. } = msg {
            seen.results_acked.fetch_max(up_to_seq, Ordering::Relaxed);
        }
    }
}

/// One session's flood.
struct Flood<'a> {
    plan: &'a Plan,
    seen: &'a Seen,
    sent_seq: &'a mut u64,
    telemetry_seq: &'a mut u64,
}

impl Flood<'_> {
    /// Telemetry after telemetry, with a result batch whenever the window has room.
    async fn run(self, mut send: quinn::SendStream) -> anyhow::Result<()> {
        let plan = self.plan;
        let incarnation = incarnation_of(&plan.name);
        let mut ticker = (plan.rate_per_s > 0.0)
            .then(|| tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate_per_s)));
        loop {
            if let Some(t) = ticker.as_mut() {
                t.tick().await;
            }
            *self.telemetry_seq += 1;
            let t = telemetry_at(*self.telemetry_seq, plan.clock.as_ref());
            net::framing::write_frame(&mut send, &NodeMsg::Telemetry(t)).await?;
            let per = plan.results_per_batch;
            let acked = self.seen.results_acked.load(Ordering::Relaxed);
            if per > 0 && *self.sent_seq < acked + WINDOW * per {
                let b = batch(incarnation, *self.sent_seq + 1, per, plan.clock.as_ref());
                net::framing::write_frame(&mut send, &NodeMsg::Results(b)).await?;
                *self.sent_seq += per;
            }
        }
    }
}

/// A stable, non-zero store incarnation per virtual node name.
fn incarnation_of(name: &str) -> u64 {
    name.bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
        .max(1)
}
