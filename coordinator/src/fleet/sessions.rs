//! The node endpoint: QUIC with mutual TLS against the fleet CA. The peer's identity comes from
//! its certificate; a node may only report for itself. Bad input (a malformed, oversized or
//! out-of-order frame, a hello for someone else) closes that one connection with a clear error
//! and touches nothing else.

use std::sync::Arc;
use std::time::Duration;

use net::identity::Kind;
use net::tls;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wire::codec::MAX_FRAME_BYTES;
use wire::msg::{CoordMsg, ErrorCode, NodeMsg, PROTOCOL_VERSION};

use super::hub::Hub;
use super::limits::{NODE_STREAM, Rated};
use super::metrics::Metrics;
use crate::state::ResultRecord;

/// How long a node may take to say hello after its handshake.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages queued to one node before its writer is considered stuck.
const QUEUE: usize = 64;

/// Accepts connections until `cancel`.
pub async fn serve(endpoint: quinn::Endpoint, hub: Arc<Hub>, cancel: CancellationToken) {
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
    hub: &'a Hub,
    node: String,
    id: u64,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.hub.limits.release(&self.node, self.id);
    }
}

async fn session(conn: quinn::Connection, hub: &Arc<Hub>) -> Result<(), String> {
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
        hub,
        node: peer.name.clone(),
        id: conn_id,
    };
    let first = tokio::time::timeout(
        HELLO_TIMEOUT,
        net::framing::read_frame::<_, NodeMsg>(&mut recv, MAX_FRAME_BYTES),
    )
    .await;
    let hello = match first {
        Ok(Ok(Some(NodeMsg::Hello(h)))) => h,
        Ok(Ok(Some(_))) => {
            Metrics::inc(&hub.metrics.sessions_rejected_total);
            return Err(refuse(
                &mut send,
                ErrorCode::BadSequence,
                "the first message must be hello".into(),
            )
            .await);
        }
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
    if hello.protocol_version != PROTOCOL_VERSION {
        Metrics::inc(&hub.metrics.sessions_rejected_total);
        let msg = format!(
            "protocol version {} is not {PROTOCOL_VERSION}; upgrade the node",
            hello.protocol_version
        );
        return Err(refuse(&mut send, ErrorCode::VersionMismatch, msg).await);
    }
    if hello.node_id != peer.name {
        Metrics::inc(&hub.metrics.sessions_rejected_total);
        let msg = format!(
            "certificate is {} but hello claims {:?}: a node may only report for itself",
            peer.name, hello.node_id
        );
        return Err(refuse(&mut send, ErrorCode::IdentityMismatch, msg).await);
    }
    if !hello.catalog_digests.contains(&hub.catalog_digest) {
        Metrics::inc(&hub.metrics.sessions_rejected_total);
        Metrics::inc(&hub.metrics.catalog_mismatch_total);
        let msg = format!(
            "the node holds catalog {:?} but the fleet's is {}; install the fleet's catalog",
            hello.catalog_digests, hub.catalog_digest
        );
        return Err(refuse(&mut send, ErrorCode::CatalogMismatch, msg).await);
    }
    let id = peer.name.clone();
    if !hub.is_leader() {
        // Only the leader serves nodes: point this one at the leader (or say there is none yet).
        let msg = crate::cluster::leader::redirect_message(hub);
        let _ = net::framing::write_frame(&mut send, &msg).await;
        let _ = send.finish();
        tokio::time::sleep(Duration::from_millis(50)).await;
        return Ok(());
    }
    register_in_raft(hub, &id, &hello.device_class);
    let epoch = hub.raft.with_state(|s| s.plan_epoch());
    let (tx, mut rx) = mpsc::channel::<CoordMsg>(QUEUE);
    let welcome = CoordMsg::Welcome {
        node_id: id.clone(),
        leader: hub.name.clone(),
        epoch,
    };
    net::framing::write_frame(&mut send, &welcome)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(node = %id, class = %hello.device_class, "node joined");
    let sid = hub.registry().connect(hello, tx);
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
    let blobs = hub.blobs.get().cloned().map(|store| {
        tokio::spawn(crate::blobs::serve::accept(
            conn.clone(),
            store,
            id.clone(),
            hub.clone(),
        ))
    });
    // The revoked list first, so an offload server learns it before it serves anyone.
    let _ = hub
        .registry()
        .get(&id)
        .and_then(|e| e.tx.clone())
        .map(|tx| tx.try_send(super::identity::revocations_msg(hub)));
    // A revocation committed while the session is live ends it (within the sync interval).
    let result = tokio::select! {
        r = read_loop(&mut recv, hub, &id, sid) => r,
        () = hub.revoked.revoked(&id) => Err(format!("{id} was revoked")),
    };
    hub.registry().disconnect(&id, sid);
    writer.abort();
    if let Some(b) = blobs {
        b.abort();
    }
    hub.replan.notify_one();
    tracing::info!(node = %id, "node session ended");
    result
}

/// Records the node in the replicated registry the first time it joins (or when its class
/// changes), without holding up its session.
fn register_in_raft(hub: &Hub, id: &str, class: &str) {
    let known = hub
        .raft
        .with_state(|s| s.nodes().get(id).is_some_and(|n| n.device_class == class));
    if known {
        return;
    }
    let raft = hub.raft.clone();
    let cmd = crate::state::Command::RegisterNode {
        node_id: id.to_string(),
        device_class: class.to_string(),
    };
    let id = id.to_string();
    tokio::spawn(async move {
        if let Err(e) = raft.propose(cmd).await {
            tracing::warn!(node = %id, error = %e, "could not register the node in the replicated registry");
        }
    });
}

async fn read_loop(
    recv: &mut quinn::RecvStream,
    hub: &Hub,
    id: &str,
    sid: u64,
) -> Result<(), String> {
    let mut renew_gate = super::identity::RenewGate::default();
    loop {
        let msg =
            match net::framing::read_frame_within::<_, NodeMsg>(recv, MAX_FRAME_BYTES, NODE_STREAM)
                .await
            {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(()),
                // The connection went away (node stopped, crashed or lost its link): not bad input.
                Err(wire::codec::CodecError::Io(e)) => {
                    tracing::info!(node = %id, error = %e, "node connection lost");
                    return Ok(());
                }
                Err(e) => {
                    Metrics::inc(&hub.metrics.frames_rejected_total);
                    return Err(format!("bad frame from {id}: {e}"));
                }
            };
        // Over its rate a node's telemetry is dropped (the next report supersedes it). A result
        // batch over the rate ends the session instead: dropping it would leave a hole the next
        // batch's ack covers, while on a new session the node resends from its last ack.
        let rated = match &msg {
            NodeMsg::Telemetry(_) => Some(Rated::Telemetry),
            NodeMsg::Results(_) => Some(Rated::Results),
            _ => None,
        };
        if let Some(what) = rated
            && !hub.limits.allow(id, what)
        {
            Metrics::inc(&hub.metrics.rate_limited_total);
            if what == Rated::Results {
                return Err(format!("{id} sent result batches over its rate; reconnect"));
            }
            continue;
        }
        match msg {
            NodeMsg::Telemetry(t) => {
                Metrics::inc(&hub.metrics.telemetry_messages_total);
                hub.registry().telemetry(id, sid, t);
            }
            NodeMsg::Ack { epoch } => {
                let latency = hub.registry().ack(id, sid, epoch);
                if let Some(d) = latency {
                    hub.histograms.observe_plan_push(d);
                }
            }
            NodeMsg::Results(batch) => record_results(hub, id, sid, &batch).await?,
            NodeMsg::Renew { csr_pem } => {
                let reply = super::identity::renew(hub, id, csr_pem, &mut renew_gate);
                send_to_session(hub, id, sid, reply).await;
            }
            NodeMsg::Bye => return Ok(()),
            NodeMsg::Hello(_) => return Err(format!("{id} sent a second hello")),
        }
    }
}

/// Records a result batch through Raft, then acknowledges up to the node's high-water mark: the
/// acknowledgement means a quorum holds the results, so they survive a leader failover, and a
/// resend below the mark (its ack was lost) is dropped by the replicated ledger, so nothing is
/// counted twice. If the batch cannot be committed (no quorum, leadership lost) nothing is
/// acknowledged and the node keeps the results spooled.
async fn record_results(
    hub: &Hub,
    id: &str,
    sid: u64,
    batch: &wire::msg::ResultBatch,
) -> Result<(), String> {
    let records: Vec<ResultRecord> = batch
        .results
        .iter()
        .map(|r| ResultRecord {
            seq: r.seq,
            correct: r.truth.map(|t| t == r.label),
            offloaded: r.place == wire::msg::PlaceTag::Server,
            cost_usd: r.cost_usd,
        })
        .collect();
    let cmd = crate::state::Command::RecordResults {
        node_id: id.to_string(),
        incarnation: batch.incarnation,
        records,
    };
    if let Err(e) = hub.raft.propose(cmd).await {
        Metrics::inc(&hub.metrics.proposals_failed_total);
        tracing::warn!(node = %id, error = %e, "results not committed; the node keeps them spooled");
        return Ok(());
    }
    Metrics::inc(&hub.metrics.proposals_committed_total);
    let up_to_seq = hub
        .raft
        .with_state(|s| {
            s.results()
                .get(id)
                .map_or(0, |r| r.up_to_seq(batch.incarnation))
        })
        // Never past what this batch carried: a store rolled back below the mark resends old
        // results, and an ack above what it sent would be refused by the node.
        .min(batch.results.last().map_or(0, |r| r.seq));
    send_to_session(
        hub,
        id,
        sid,
        CoordMsg::ResultsAck {
            incarnation: batch.incarnation,
            up_to_seq,
        },
    )
    .await;
    Ok(())
}

/// Queues `msg` for node `id` if session `sid` is still its current one.
async fn send_to_session(hub: &Hub, id: &str, sid: u64, msg: CoordMsg) {
    let tx = hub
        .registry()
        .get(id)
        .filter(|e| e.session == sid)
        .and_then(|e| e.tx.clone());
    if let Some(tx) = tx {
        let _ = tx.send(msg).await;
    }
}
