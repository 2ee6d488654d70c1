//! The node endpoint: QUIC with mutual TLS against the fleet CA. The peer's identity comes from
//! its certificate; a node may only report for itself. Bad input (a malformed, oversized or
//! out-of-order frame, a hello for someone else) closes that one connection with a clear error
//! and touches nothing else.
//!
//! This is the I/O shell of a session: it reads frames (in their own task, paced by the node's
//! rates: [`session_reader`]), feeds them to the session's state machine ([`session_core`]) with
//! the rate limiter's verdict, and carries out its actions; result batches go to the result sink
//! and their outcome comes back as an event.

use std::sync::Arc;
use std::time::Duration;

use net::identity::Kind;
use net::tls;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::SendTimeoutError;
use tokio_util::sync::CancellationToken;
use wire::codec::MAX_FRAME_BYTES;
use wire::msg::{CoordMsg, ErrorCode, NodeMsg};

use net::clock::SharedClock;
use net::identity::RevokedSet;

use super::Replan;
use super::blob_streams::{self, BlobService};
use super::identity::Renewals;
use super::limits::NodeLimits;
use super::metrics::Metrics;
use super::prom::Histograms;
use super::registrar::Registrar;
use super::registry::Nodes;
use super::result_sink::{Job, ResultSink};
use super::session_core::{self, Action, Counter, Event, NodeSession};
use super::session_reader::{Pacer, Read, read_frames};
use crate::cluster::leader::LeaderWatch;
use crate::raft::ReplicaHandle;

/// What node sessions use.
#[derive(Clone)]
pub struct Sessions {
    pub nodes: Nodes,
    pub leader: LeaderWatch,
    pub raft: ReplicaHandle,
    /// Records joining nodes in the replicated registry, in batches.
    pub registrar: Registrar,
    /// The fleet catalog's digest: a node must hold it.
    pub catalog_digest: String,
    pub metrics: Arc<Metrics>,
    pub histograms: Arc<Histograms>,
    pub limits: Arc<NodeLimits>,
    /// Model shards, if this replica serves them.
    pub blobs: Option<BlobService>,
    pub revoked: RevokedSet,
    pub renewals: Renewals,
    /// Where result batches go to be committed.
    pub results: ResultSink,
    pub replan: Replan,
    pub clock: SharedClock,
    /// The published watchlist each session keeps its node on.
    pub watchlist: super::watchlist_push::WatchlistFeed,
}

/// How long a node may take to say hello after its handshake.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages queued to one node before its writer is considered stuck.
const QUEUE: usize = 64;
/// How long the session waits for room in a full queue before it ends the session.
const SEND_STALL_LIMIT: Duration = Duration::from_secs(5);

/// Accepts connections until `cancel`.
pub async fn serve(endpoint: quinn::Endpoint, hub: Sessions, cancel: CancellationToken) {
    loop {
        let incoming = tokio::select! {
            _ = cancel.cancelled() => break,
            i = endpoint.accept() => match i { Some(i) => i, None => break },
        };
        let Some(incoming) = tls::validated(incoming) else {
            continue;
        };
        let hub = hub.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    Metrics::inc(&hub.metrics.handshakes_refused_total);
                    tracing::warn!(%remote, error = %e, "refused a connection at the TLS handshake");
                    return;
                }
            };
            match session(conn.clone(), &hub).await {
                Ok(()) => conn.close(0u32.into(), b"bye"),
                Err(reason) => {
                    tracing::warn!(%remote, %reason, "closed a node connection");
                    conn.close(1u32.into(), reason.as_bytes());
                }
            }
        });
    }
    endpoint.close(0u32.into(), b"coordinator stopping");
}

/// Sends an error frame, then the caller closes the connection with the same reason.
async fn refuse(send: &mut quinn::SendStream, code: ErrorCode, message: String) -> String {
    let _ = net::framing::write_frame(
        send,
        &CoordMsg::Error {
            code,
            message: message.clone(),
        },
    )
    .await;
    let _ = send.finish();
    // Let the error frame reach the peer before the connection is closed.
    tokio::time::sleep(Duration::from_millis(50)).await;
    message
}

/// Holds an identity's one live connection; releases it when the session ends.
struct Admitted<'a> {
    limits: &'a NodeLimits,
    node: String,
    id: u64,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.limits.release(&self.node, self.id);
    }
}

async fn session(conn: quinn::Connection, hub: &Sessions) -> Result<(), String> {
    let peer = tls::peer(&conn).map_err(|e| e.to_string())?;
    let (mut send, mut recv) = conn
        .accept_bi()
        .await
        .map_err(|e| format!("no control stream: {e}"))?;
    if peer.kind != Kind::Node {
        Metrics::inc(&hub.metrics.sessions_rejected_total);
        let msg = format!(
            "{} may not connect to the node endpoint: only node certificates may",
            peer.dns_name()
        );
        return Err(refuse(&mut send, ErrorCode::Forbidden, msg).await);
    }
    // One connection per identity: a reconnect replaces (and closes) the older one, so a stolen
    // certificate cannot pile up sessions.
    let (conn_id, replaced) = hub.limits.admit(&peer.name, &conn);
    if replaced {
        Metrics::inc(&hub.metrics.sessions_replaced_total);
    }
    let _admitted = Admitted {
        limits: &hub.limits,
        node: peer.name.clone(),
        id: conn_id,
    };
    let first = tokio::time::timeout(
        HELLO_TIMEOUT,
        net::framing::read_frame::<_, NodeMsg>(&mut recv, MAX_FRAME_BYTES),
    )
    .await;
    let first = match first {
        Ok(Ok(Some(msg))) => msg,
        Ok(Ok(None)) => return Err("the node closed its stream before hello".into()),
        Ok(Err(e)) => {
            Metrics::inc(&hub.metrics.frames_rejected_total);
            return Err(format!("bad hello frame from {}: {e}", peer.name));
        }
        Err(_) => {
            return Err(format!(
                "{} sent no hello within {HELLO_TIMEOUT:?}",
                peer.name
            ));
        }
    };
    let hello = match session_core::check_hello(&peer.name, first, &hub.catalog_digest) {
        Ok(hello) => hello,
        Err(refusal) => {
            Metrics::inc(&hub.metrics.sessions_rejected_total);
            if refusal.code == ErrorCode::CatalogMismatch {
                Metrics::inc(&hub.metrics.catalog_mismatch_total);
            }
            return Err(refuse(&mut send, refusal.code, refusal.message).await);
        }
    };
    let id = peer.name.clone();
    if !hub.leader.is_leader() {
        // Only the leader serves nodes: point this one at the leader (or say there is none yet).
        let msg = hub.leader.redirect_message();
        let _ = net::framing::write_frame(&mut send, &msg).await;
        let _ = send.finish();
        tokio::time::sleep(Duration::from_millis(50)).await;
        return Ok(());
    }
    hub.registrar.register(&id, &hello.device_class);
    let epoch = hub.raft.with_state(|s| s.plan_epoch());
    let (tx, mut rx) = mpsc::channel::<CoordMsg>(QUEUE);
    let welcome = CoordMsg::Welcome {
        node_id: id.clone(),
        leader: hub.leader.self_name(),
        epoch,
    };
    net::framing::write_frame(&mut send, &welcome)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(node = %id, class = %hello.device_class, "node joined");
    let held_watchlist = hello.watchlist_version;
    let sid = hub.nodes.lock().connect(hello, tx, hub.clock.now());
    Metrics::inc(&hub.metrics.sessions_total);
    hub.replan.notify_one();
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if net::framing::write_frame(&mut send, &msg).await.is_err() {
                break;
            }
        }
    });
    // Further bi streams on this connection are blob streams (model shards).
    let blobs = hub
        .blobs
        .clone()
        .map(|served| tokio::spawn(blob_streams::accept(conn.clone(), id.clone(), served)));
    // The revoked list first, so an offload server learns it before it serves anyone.
    let _ = hub
        .nodes
        .lock()
        .get(&id)
        .and_then(|e| e.tx.clone())
        .map(|tx| tx.try_send(super::identity::revocations_msg(&hub.revoked)));
    let watchlist = tokio::spawn(super::watchlist_push::push(
        conn.clone(),
        hub.watchlist.subscribe(),
        held_watchlist,
        id.clone(),
    ));
    let (frames_tx, frames) = mpsc::channel(1);
    let pacer = Pacer {
        limits: hub.limits.clone(),
        node: id.clone(),
        clock: hub.clock.clone(),
    };
    let reader = tokio::spawn(read_frames(recv, frames_tx, pacer));
    // A revocation committed while the session is live ends it (within the sync interval).
    let result = tokio::select! {
        r = drive(hub, &id, sid, frames) => r,
        () = hub.revoked.revoked(&id) => Err(format!("{id} was revoked")),
    };
    hub.nodes.lock().disconnect(&id, sid);
    reader.abort();
    writer.abort();
    watchlist.abort();
    if let Some(b) = blobs {
        b.abort();
    }
    hub.replan.notify_one();
    tracing::info!(node = %id, "node session ended");
    result
}

/// Runs the session's state machine: frames and commit outcomes in, actions out.
async fn drive(
    hub: &Sessions,
    id: &str,
    sid: u64,
    mut frames: mpsc::Receiver<Read>,
) -> Result<(), String> {
    let mut core = NodeSession::new(id);
    // One batch is in flight per session, so one outcome at a time comes back.
    let (outcomes_tx, mut outcomes) = mpsc::channel::<Event>(4);
    // No timer: the node's QUIC pings, answered by quinn, tell it this leader lives.
    loop {
        let event = tokio::select! {
            read = frames.recv() => match read {
                Some(Read::Frame(msg, rate)) => Event::Frame(msg, rate),
                Some(Read::Bad(e)) => Event::BadFrame(e),
                Some(Read::Ended) | None => return Ok(()),
            },
            Some(outcome) = outcomes.recv() => outcome,
        };
        for action in core.handle(event, hub.clock.now()) {
            match action {
                Action::Send(msg) => send_to_session(hub, id, sid, msg).await?,
                Action::Telemetry(t) => {
                    hub.nodes.lock().telemetry(id, sid, t, hub.clock.now());
                }
                Action::PlanAcked(epoch) => {
                    let latency = hub.nodes.lock().ack(id, sid, epoch, hub.clock.now());
                    if let Some(d) = latency {
                        hub.histograms.observe_plan_push(d);
                    }
                }
                Action::Propose(proposal) => hub.results.submit(Job {
                    node: id.to_owned(),
                    proposal,
                    reply: outcomes_tx.clone(),
                }),
                Action::Renew(csr_pem) => {
                    let reply = super::identity::renew(&hub.renewals, id, csr_pem);
                    send_to_session(hub, id, sid, reply).await?;
                }
                Action::Count(counter) => Metrics::inc(counter_of(&hub.metrics, counter)),
                Action::End => return Ok(()),
                Action::Close(reason) => return Err(reason),
            }
        }
    }
}

fn counter_of(metrics: &Metrics, counter: Counter) -> &std::sync::atomic::AtomicU64 {
    match counter {
        Counter::Telemetry => &metrics.telemetry_messages_total,
        Counter::RateLimited => &metrics.rate_limited_total,
        Counter::FramesRejected => &metrics.frames_rejected_total,
        Counter::ProposalsCommitted => &metrics.proposals_committed_total,
        Counter::ProposalsFailed => &metrics.proposals_failed_total,
    }
}

/// Queues `msg` for node `id` if session `sid` is still its current one; a node whose queue
/// stays full for [`SEND_STALL_LIMIT`] ends its session.
async fn send_to_session(hub: &Sessions, id: &str, sid: u64, msg: CoordMsg) -> Result<(), String> {
    let tx = hub
        .nodes
        .lock()
        .get(id)
        .filter(|e| e.session == sid)
        .and_then(|e| e.tx.clone());
    match tx {
        Some(tx) => queue(&tx, msg, SEND_STALL_LIMIT)
            .await
            .map_err(|why| format!("{id} {why}")),
        None => Ok(()),
    }
}

/// Queues `msg`, waiting at most `stall` for room. A node that reads nothing fills its QUIC
/// window, then this queue; heartbeats and acks would then block its session for good (its
/// keep-alives still answer), so it is closed instead. A closed queue is not an error here: the
/// session is ending anyway.
async fn queue(tx: &mpsc::Sender<CoordMsg>, msg: CoordMsg, stall: Duration) -> Result<(), String> {
    match tx.send_timeout(msg, stall).await {
        Ok(()) | Err(SendTimeoutError::Closed(_)) => Ok(()),
        Err(SendTimeoutError::Timeout(_)) => Err(format!(
            "read nothing for {stall:?}: its send queue stayed full"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_node_that_reads_nothing_is_closed_once_its_queue_stays_full() {
        let (tx, mut rx) = mpsc::channel(1);
        let stall = Duration::from_millis(50);
        assert_eq!(queue(&tx, CoordMsg::Heartbeat, stall).await, Ok(()));
        let stuck = queue(&tx, CoordMsg::Heartbeat, stall).await;
        assert!(
            stuck
                .as_ref()
                .is_err_and(|why| why.contains("send queue stayed full")),
            "{stuck:?}"
        );
        assert_eq!(
            rx.recv().await,
            Some(CoordMsg::Heartbeat),
            "the first one was queued"
        );
        assert_eq!(
            queue(&tx, CoordMsg::Heartbeat, stall).await,
            Ok(()),
            "a node that reads again has room again"
        );
        drop(rx);
        assert_eq!(
            queue(&tx, CoordMsg::Heartbeat, stall).await,
            Ok(()),
            "a session already ending is not stalled"
        );
    }
}
