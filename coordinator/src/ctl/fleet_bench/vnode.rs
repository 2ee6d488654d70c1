//! One virtual node of `bench fleet`: a real QUIC connection with its own mutually
//! authenticated TLS identity (endpoints, i.e. UDP sockets, are shared), the real hello /
//! welcome / redirect exchange, telemetry every second, acks for assignments, pings at the
//! interval the leader sets (as a real node's link: an empty datagram). Its telemetry
//! flips between two states when the bench says so; it notes when the first telemetry of the
//! new state left and when the first assignment that differs from the one it held arrived.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wire::codec::MAX_FRAME_BYTES;
use wire::msg::{AppAssignment, CoordMsg, LIVENESS_PING_INTERVAL, NodeMsg};

use crate::ctl::bench;

/// What the bench and a virtual node share.
#[derive(Default)]
pub struct Slot {
    /// The state the bench wants the node to report: false = full battery, light load;
    /// true = nearly empty battery, three times the load.
    pub drained: AtomicBool,
    /// The ping interval the leader last set, ms (0: none yet).
    ping_ms: AtomicU32,
    pub track: Mutex<Track>,
}

#[derive(Default)]
pub struct Track {
    /// Replica name the node was welcomed by.
    pub leader: Option<String>,
    pub assignments: u64,
    last_apps: Option<Vec<AppAssignment>>,
    /// The state last reported.
    reported_drained: bool,
    /// When the first telemetry of a changed state left, until a new assignment arrives.
    pub waiting_since: Option<Instant>,
    /// Change -> new assignment, one per change.
    pub latencies: Vec<Duration>,
}

impl Slot {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Track> {
        self.track.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The two telemetry states.
fn telemetry(seq: u64, drained: bool) -> wire::msg::Telemetry {
    let mut t = bench::telemetry(seq);
    if drained {
        t.battery.energy_left_j = 20.0;
        for a in &mut t.apps {
            a.rate_per_s *= 3.0;
        }
    }
    t
}

type Stream = (quinn::Connection, quinn::SendStream, quinn::RecvStream);

/// Hello to the replicas in turn, following redirects, until the leader welcomes the node.
async fn join(
    endpoint: &quinn::Endpoint,
    config: &quinn::ClientConfig,
    replicas: &[String],
    name: &str,
    digest: &str,
    slot: &Slot,
) -> anyhow::Result<Stream> {
    let mut addr = replicas.first().context("no replica")?.clone();
    for attempt in 0..60usize {
        let conn = endpoint
            .connect_with(
                config.clone(),
                addr.parse()?,
                &net::tls::server_name_for(&addr),
            )?
            .await;
        let next = replicas[(attempt + 1) % replicas.len()].clone();
        let Ok(conn) = conn else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            addr = next;
            continue;
        };
        let (mut send, mut recv) = conn.open_bi().await?;
        let hello = NodeMsg::Hello(bench::hello(name, digest));
        net::framing::write_frame(&mut send, &hello).await?;
        match net::framing::read_frame::<_, CoordMsg>(&mut recv, MAX_FRAME_BYTES).await {
            Ok(Some(CoordMsg::Welcome { leader, .. })) => {
                slot.lock().leader = Some(leader);
                return Ok((conn, send, recv));
            }
            Ok(Some(CoordMsg::Redirect { leader_addr })) => addr = leader_addr,
            _ => {
                // No leader yet, or the replica went away: poll the next one.
                tokio::time::sleep(Duration::from_millis(200)).await;
                addr = next;
            }
        }
    }
    bail!("{name} found no leader")
}

/// Takes the assignments (noting the first new one after a change) and asks for acks.
async fn read(mut recv: quinn::RecvStream, slot: &Slot, acks: mpsc::UnboundedSender<u64>) {
    while let Ok(Some(msg)) =
        net::framing::read_frame::<_, CoordMsg>(&mut recv, MAX_FRAME_BYTES).await
    {
        let a = match msg {
            CoordMsg::Assignment(a) => a,
            CoordMsg::Liveness { ping_interval_ms } => {
                if let Ok(d) = wire::msg::check_liveness_interval(ping_interval_ms) {
                    slot.ping_ms.store(d.as_millis() as u32, Ordering::Relaxed);
                }
                continue;
            }
            _ => continue,
        };
        let now = Instant::now();
        let mut t = slot.lock();
        t.assignments += 1;
        if t.last_apps.as_ref() != Some(&a.apps)
            && let Some(since) = t.waiting_since.take()
        {
            t.latencies.push(now.saturating_duration_since(since));
        }
        t.last_apps = Some(a.apps);
        drop(t);
        let _ = acks.send(a.epoch);
    }
}

/// One virtual node: where it connects, as whom, and what it shares with the bench.
pub struct VirtualNode {
    /// A UDP socket shared with other virtual nodes.
    pub endpoint: quinn::Endpoint,
    /// Its own TLS identity.
    pub config: quinn::ClientConfig,
    /// Node addresses of the replicas.
    pub replicas: Vec<String>,
    pub name: String,
    /// The catalog digest it announces.
    pub digest: String,
    pub slot: std::sync::Arc<Slot>,
    /// Bounds the handshakes in flight across the virtual nodes.
    pub joining: std::sync::Arc<tokio::sync::Semaphore>,
}

impl VirtualNode {
    /// Runs until `stop`.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let VirtualNode {
            endpoint,
            config,
            replicas,
            name,
            digest,
            slot,
            joining,
        } = self;
        // A bounded number of handshakes at a time, as nodes of a real fleet spread their
        // connects (jittered back-off); thousands at once mostly time out and retry.
        let permit = joining.acquire_owned().await?;
        let (conn, send, recv) = join(&endpoint, &config, &replicas, &name, &digest, &slot).await?;
        drop(permit);
        serve(conn, send, recv, slot, stop).await
    }
}

/// The ping interval the leader set for this node.
fn ping_interval(slot: &Slot) -> Duration {
    match slot.ping_ms.load(Ordering::Relaxed) {
        0 => LIVENESS_PING_INTERVAL,
        ms => Duration::from_millis(ms.into()),
    }
}

/// Telemetry every second, acks and pings, until `stop`.
async fn serve(
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    slot: std::sync::Arc<Slot>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
    let reader_slot = slot.clone();
    let reader = tokio::spawn(async move { read(recv, &reader_slot, ack_tx).await });
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut pinging_every = LIVENESS_PING_INTERVAL;
    let mut ping = tokio::time::interval(pinging_every);
    let mut seq = 0;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ping.tick() => {
                let _ = conn.send_datagram(bytes::Bytes::new());
                let wanted = ping_interval(&slot);
                if wanted != pinging_every {
                    pinging_every = wanted;
                    ping = tokio::time::interval_at(tokio::time::Instant::now() + wanted, wanted);
                }
            }
            _ = tick.tick() => {
                seq += 1;
                let drained = slot.drained.load(Ordering::Relaxed);
                {
                    let mut t = slot.lock();
                    if drained != t.reported_drained {
                        t.reported_drained = drained;
                        t.waiting_since = Some(Instant::now());
                    }
                }
                let msg = NodeMsg::Telemetry(telemetry(seq, drained));
                net::framing::write_frame(&mut send, &msg).await?;
            }
            Some(epoch) = ack_rx.recv() => {
                net::framing::write_frame(&mut send, &NodeMsg::Ack { epoch }).await?;
            }
        }
    }
    reader.abort();
    conn.close(0u32.into(), b"done");
    Ok(())
}
