//! The link to the coordinator: a QUIC session (mutual TLS) carrying hello, telemetry every
//! interval, and assignments back. It reconnects with jittered exponential backoff, follows a
//! follower's redirect to the leader, and never blocks serving: while it is down the serving
//! thread keeps following the last assignment.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use net::identity::Kind;
use net::tls;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use wire::codec::MAX_FRAME_BYTES;
use wire::msg::{
    Assignment, CoordMsg, Hello, Link, NodeMsg, PROTOCOL_VERSION, ResultBatch, Role, Telemetry,
};

use super::credentials::Credentials;
use super::renewal::Renewal;
use super::shared::Shared;
use crate::spool::Spool;
use crate::store::NodeStore;

/// Static facts the link announces and needs.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub node_id: String,
    pub device_class: String,
    pub role: Role,
    pub offload_addr: Option<String>,
    pub apps: Vec<String>,
    pub catalog_digest: String,
    pub coordinators: Vec<String>,
    pub telemetry_interval: Duration,
}

/// How often spooled results are offered to the coordinator.
const RESULTS_INTERVAL: Duration = Duration::from_millis(100);
/// Results per [`ResultBatch`] (a few hundred bytes each: far under the frame limit).
const BATCH: usize = 256;
/// Results sent but not yet acknowledged before the link waits for acks.
const IN_FLIGHT: u64 = 4096;

/// Aborts a task when dropped, so a session's helper tasks end with it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A handshake on a live link takes milliseconds.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// The answer to hello comes at once from a live coordinator.
const WELCOME_WITHIN: net::framing::Deadlines = net::framing::Deadlines {
    idle: Duration::from_secs(5),
    frame: Duration::from_secs(5),
};
/// A coordinator may be quiet for long (the QUIC idle timeout catches a dead one), but a frame it
/// starts must arrive whole soon.
const COORD_STREAM: net::framing::Deadlines = net::framing::Deadlines {
    idle: Duration::from_secs(3600),
    frame: Duration::from_secs(30),
};

/// How a session ended.
enum Ended {
    Redirect(String),
    /// The replica knows no leader (an election is running): try another one soon.
    NoLeader,
    Cancelled,
}

/// Runs until `cancel`: connect, serve the session, back off, repeat.
pub async fn run(
    cfg: LinkConfig,
    credentials: Arc<Credentials>,
    shared: Shared,
    store: NodeStore,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let endpoint = quinn::Endpoint::client(SocketAddr::from(([0, 0, 0, 0], 0)))
        .context("binding the node's QUIC client socket")?;
    let mut attempt: u32 = 0;
    let mut target = 0usize;
    let mut redirect: Option<String> = None;
    let mut seq: u64 = 0;
    while !cancel.is_cancelled() {
        let addr = redirect
            .take()
            .unwrap_or_else(|| cfg.coordinators[target % cfg.coordinators.len()].clone());
        let ctx = SessionCtx {
            cfg: &cfg,
            credentials: &credentials,
            shared: &shared,
            store: &store,
        };
        let outcome = session(&endpoint, &addr, ctx, &mut seq, &cancel).await;
        {
            let mut inner = shared.lock();
            inner.coordinator_connected = false;
            inner.connection = None;
        }
        match outcome {
            Ok(Ended::Cancelled) => break,
            Ok(Ended::Redirect(leader)) => {
                tracing::info!(from = %addr, to = %leader, "redirected to the leader");
                redirect = Some(leader);
                attempt = 0;
                continue;
            }
            Ok(Ended::NoLeader) => {
                // An election takes about a second; poll the replicas briskly rather than back
                // off exponentially, so failover is bounded by the election, not the backoff.
                target += 1;
                let pause = Duration::from_millis(rand::thread_rng().gen_range(100..300));
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = cancel.cancelled() => break,
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(coordinator = %addr, error = format!("{e:#}"), "coordinator session ended");
                target += 1;
            }
        }
        attempt = attempt.saturating_add(1);
        let delay = backoff(attempt, &mut rand::thread_rng());
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => break,
        }
    }
    endpoint.close(0u32.into(), b"node stopping");
    Ok(())
}

/// 100 ms doubling to 5 s, times a jitter in [0.5, 1.5) so a fleet that lost its coordinator does
/// not reconnect in lockstep.
pub fn backoff(attempt: u32, rng: &mut impl Rng) -> Duration {
    let base = 0.1 * 2f64.powi(attempt.min(6) as i32 - 1);
    Duration::from_secs_f64(base.min(5.0) * rng.gen_range(0.5..1.5))
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a session works with besides its connection.
#[derive(Clone, Copy)]
struct SessionCtx<'a> {
    cfg: &'a LinkConfig,
    credentials: &'a Credentials,
    shared: &'a Shared,
    store: &'a NodeStore,
}

async fn session(
    endpoint: &quinn::Endpoint,
    addr: &str,
    ctx: SessionCtx<'_>,
    seq: &mut u64,
    cancel: &CancellationToken,
) -> anyhow::Result<Ended> {
    let SessionCtx {
        cfg,
        credentials,
        shared,
        store,
    } = ctx;
    let sock = tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to nothing"))?;
    // Each connection presents the current certificate, so a renewed one is used from the next
    // connection on.
    let client = credentials.client_config()?;
    let connecting = endpoint
        .connect_with(client, sock, &tls::server_name_for(addr))
        .context("starting the QUIC handshake")?;
    // A dead replica never answers: give up well before the idle timeout and try the next one.
    let conn = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
        .await
        .with_context(|| format!("no QUIC handshake from {addr} within {HANDSHAKE_TIMEOUT:?}"))?
        .with_context(|| format!("QUIC/TLS handshake with {addr}"))?;
    // Any fleet certificate chains to the CA; only a coordinator's may steer this node.
    let peer = tls::peer(&conn).context("reading the coordinator's certificate")?;
    if peer.kind != Kind::Coordinator {
        conn.close(0u32.into(), b"not a coordinator");
        bail!(
            "{addr} presented the certificate of {} {:?}, not a coordinator; refusing it",
            peer.kind,
            peer.name
        );
    }
    let (mut send, mut recv) = conn.open_bi().await.context("opening the control stream")?;
    let battery = shared.lock().snapshot.battery.clone();
    let hello = Hello {
        node_id: cfg.node_id.clone(),
        device_class: cfg.device_class.clone(),
        role: cfg.role.clone(),
        protocol_version: PROTOCOL_VERSION,
        catalog_digests: vec![cfg.catalog_digest.clone()],
        offload_addr: cfg.offload_addr.clone(),
        battery: battery.unwrap_or_else(wire::msg::Battery::unreported),
        apps: cfg.apps.clone(),
    };
    net::framing::write_frame(&mut send, &NodeMsg::Hello(hello)).await?;
    match net::framing::read_frame_within::<_, CoordMsg>(&mut recv, MAX_FRAME_BYTES, WELCOME_WITHIN)
        .await?
    {
        Some(CoordMsg::Welcome {
            node_id,
            leader,
            epoch,
        }) => {
            tracing::info!(%node_id, %leader, epoch, coordinator = %addr, "connected to the coordinator");
        }
        Some(CoordMsg::Redirect { leader_addr }) => return Ok(Ended::Redirect(leader_addr)),
        Some(CoordMsg::Error {
            code: wire::msg::ErrorCode::Unavailable,
            ..
        }) => return Ok(Ended::NoLeader),
        Some(CoordMsg::Error { code, message }) => {
            bail!("coordinator refused the node: {code:?}: {message}")
        }
        Some(other) => bail!("coordinator answered hello with {other:?}"),
        None => bail!("coordinator closed the stream after hello"),
    }
    {
        let mut inner = shared.lock();
        inner.coordinator_connected = true;
        inner.connection = Some(conn.clone());
    }
    let rtt_ms = conn.rtt().as_secs_f64() * 1e3;
    let mut ticker = tokio::time::interval(cfg.telemetry_interval);
    let mut results_ticker = tokio::time::interval(RESULTS_INTERVAL);
    let spool = shared.lock().spool.clone();
    // Everything after the last ack is resent on a new session: the coordinator drops what it
    // already holds, so a lost ack costs a resend, never a duplicate.
    let mut sent_up_to = match &spool {
        Some(s) => s.acked_up_to()?,
        None => 0,
    };
    // (incarnation, last seq) of what this session sent, per run of one incarnation: an ack is
    // only taken for something in here.
    let mut sent: Vec<(u64, u64)> = Vec::new();
    // Frames are read by their own task: a half-read frame must never be dropped by `select!`.
    let (frames_tx, mut frames) =
        tokio::sync::mpsc::channel::<anyhow::Result<Option<CoordMsg>>>(16);
    let reader = tokio::spawn(async move {
        loop {
            let msg = net::framing::read_frame_within::<_, CoordMsg>(
                &mut recv,
                MAX_FRAME_BYTES,
                COORD_STREAM,
            )
            .await;
            let done = !matches!(msg, Ok(Some(_)));
            if frames_tx
                .send(msg.map_err(anyhow::Error::from))
                .await
                .is_err()
                || done
            {
                break;
            }
        }
    });
    let _reader = AbortOnDrop(reader);
    let mut renewal = Renewal::new(credentials);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                let _ = net::framing::write_frame(&mut send, &NodeMsg::Bye).await;
                let _ = send.finish();
                // Let the coordinator read the goodbye and close first, so it sees an orderly
                // end rather than a lost connection.
                let _ = tokio::time::timeout(Duration::from_secs(1), conn.closed()).await;
                conn.close(0u32.into(), b"bye");
                return Ok(Ended::Cancelled);
            }
            _ = ticker.tick() => {
                *seq += 1;
                let telemetry = telemetry(*seq, shared, rtt_ms.max(conn.rtt().as_secs_f64() * 1e3));
                net::framing::write_frame(&mut send, &NodeMsg::Telemetry(telemetry)).await?;
            }
            _ = results_ticker.tick() => {
                let Some(spool) = &spool else { continue };
                if sent_up_to.saturating_sub(spool.acked_up_to()?) >= IN_FLIGHT {
                    continue;
                }
                let batch = spool.batch_after(sent_up_to, BATCH)?;
                if let (Some(first), Some(last)) = (batch.results.first(), batch.results.last()) {
                    let (first_seq, last_seq) = (first.seq, last.seq);
                    note_sent(&mut sent, batch.incarnation, last_seq);
                    let msg = NodeMsg::Results(ResultBatch {
                        incarnation: batch.incarnation,
                        first_seq,
                        results: batch.results,
                    });
                    net::framing::write_frame(&mut send, &msg).await?;
                    sent_up_to = last_seq;
                }
            }
            () = renewal.due() => {
                let csr_pem = renewal.start(credentials)?;
                net::framing::write_frame(&mut send, &NodeMsg::Renew { csr_pem }).await?;
            }
            msg = frames.recv() => {
                let Some(msg) = msg else { bail!("coordinator stream reader ended") };
                match msg? {
                    Some(CoordMsg::ResultsAck { incarnation, up_to_seq }) => {
                        if let Some(spool) = &spool {
                            take_ack(spool, (incarnation, up_to_seq), &sent)?;
                        }
                    }
                    Some(CoordMsg::Assignment(a)) => {
                        let epoch = a.epoch;
                        accept_assignment(a, shared, store);
                        net::framing::write_frame(&mut send, &NodeMsg::Ack { epoch }).await?;
                    }
                    Some(CoordMsg::Redirect { leader_addr }) => return Ok(Ended::Redirect(leader_addr)),
                    Some(CoordMsg::Renewed { chain_pem }) => renewal.finish(credentials, &chain_pem),
                    Some(CoordMsg::RenewRefused { reason }) => renewal.refused(credentials, &reason),
                    Some(CoordMsg::Revocations { names }) => credentials.revoked.replace(names),
                    Some(CoordMsg::Error { code, message }) => bail!("coordinator error {code:?}: {message}"),
                    Some(_) => {}
                    None => bail!("coordinator closed the control stream"),
                }
            }
        }
    }
}

/// Runs of (incarnation, last seq) remembered per session; more than a spool holds in practice.
const SENT_RUNS: usize = 64;

/// Records that results of `incarnation` up to `last_seq` were sent.
fn note_sent(sent: &mut Vec<(u64, u64)>, incarnation: u64, last_seq: u64) {
    match sent.last_mut() {
        Some((inc, last)) if *inc == incarnation => *last = last_seq,
        _ => {
            if sent.len() >= SENT_RUNS {
                sent.remove(0);
            }
            sent.push((incarnation, last_seq));
        }
    }
}

/// Applies a results acknowledgement `(incarnation, up_to)` if it covers only what this session
/// sent of that incarnation; anything else is logged, counted and ignored, so a confused or
/// forged coordinator cannot make the spool drop results it never received.
fn take_ack(spool: &Spool, ack: (u64, u64), sent: &[(u64, u64)]) -> anyhow::Result<()> {
    let (incarnation, up_to) = ack;
    let covered = sent
        .iter()
        .any(|&(inc, last)| inc == incarnation && up_to <= last);
    if !covered || !spool.ack(up_to)? {
        let refused = spool.refuse_ack();
        tracing::warn!(
            incarnation,
            up_to,
            refused,
            "ignoring a results ack for results this node did not send"
        );
    }
    Ok(())
}

/// Persists an assignment before using it, so a node restarted offline resumes on it.
fn accept_assignment(a: Assignment, shared: &Shared, store: &NodeStore) {
    if shared
        .lock()
        .assignment
        .as_ref()
        .is_some_and(|held| held.epoch >= a.epoch)
    {
        return;
    }
    if let Err(e) = store.save_assignment(&a) {
        tracing::error!(error = %e, "could not persist the assignment; using it anyway");
    }
    shared.offer_assignment(a);
}

fn telemetry(seq: u64, shared: &Shared, rtt_ms: f64) -> Telemetry {
    let inner = shared.lock();
    let snap = &inner.snapshot;
    Telemetry {
        seq,
        at_unix_ms: unix_ms(),
        battery: snap
            .battery
            .clone()
            .unwrap_or_else(wire::msg::Battery::unreported),
        memory_free_bytes: crate::meminfo::available_bytes().unwrap_or(0),
        model_memory_budget_bytes: snap.model_memory_budget_bytes,
        loaded_variants: snap.loaded_variants.clone(),
        apps: snap.apps.clone(),
        link: Link {
            rtt_ms,
            bandwidth_bps: 0.0,
            connected: true,
        },
        offload_queue: inner.offload_queue,
        served_offload: inner.served_offload,
        load_profiles: snap.load_profiles.clone(),
        spool: snap.spool,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn acks_for_results_not_sent_are_ignored_and_counted() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = NodeStore::open(dir.path()).expect("store");
        let spool = Spool::open(&store).expect("spool");
        for _ in 0..3 {
            spool.append(crate::spool::test_result()).expect("append");
        }
        let inc = spool.incarnation();
        let mut sent = Vec::new();
        note_sent(&mut sent, inc, 1);
        note_sent(&mut sent, inc, 2);
        assert_eq!(sent, vec![(inc, 2)]);
        // A forged ack for everything, one for another store, one past what was sent.
        take_ack(&spool, (inc, u64::MAX), &sent).expect("forged");
        take_ack(&spool, (inc + 1, 2), &sent).expect("other incarnation");
        take_ack(&spool, (inc, 3), &sent).expect("past what was sent");
        assert_eq!((spool.pending(), spool.acks_refused()), (3, 3));
        // A late ack for an earlier incarnation's run still counts once that run was sent.
        note_sent(&mut sent, inc + 1, 9);
        take_ack(&spool, (inc, 2), &sent).expect("genuine");
        assert_eq!((spool.pending(), spool.acks_refused()), (1, 3));
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let first = backoff(1, &mut rng);
        assert!(first >= Duration::from_millis(50) && first < Duration::from_millis(150));
        for attempt in 1..40 {
            assert!(backoff(attempt, &mut rng) < Duration::from_millis(7_500));
        }
        let late: Vec<Duration> = (0..20).map(|_| backoff(30, &mut rng)).collect();
        assert!(
            late.iter().any(|d| *d != late[0]),
            "jitter must vary the delay"
        );
    }
}
