//! Raft messages between replicas over QUIC with mutual TLS (coordinator certificates only).
//!
//! Outbound: one queue and one sender task per peer; `send` never blocks (a full queue drops,
//! Raft retransmits), and a sender reconnects with backoff when its peer is gone. Inbound: a QUIC
//! endpoint on the Raft port; each message must come from the replica its certificate names.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use net::identity::Kind;
use net::tls;
use raft::prelude::Message;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::peers::Peers;
use crate::raft::{MAX_MESSAGE_BYTES, ReplicaHandle, Transport, decode_message, encode_message};

/// Messages queued per peer before new ones are dropped.
const QUEUE: usize = 4096;

/// Deadlines on an inbound Raft stream: the leader's heartbeats come every tick (100 ms), so 10 s
/// of silence means the peer is gone; a large snapshot message gets a minute to arrive.
const RAFT_STREAM: net::framing::Deadlines = net::framing::Deadlines {
    idle: Duration::from_secs(10),
    frame: Duration::from_secs(60),
};

/// One frame between replicas.
#[derive(Debug, Serialize, Deserialize)]
enum PeerFrame {
    /// A protobuf-encoded raft message.
    Raft(Vec<u8>),
}

pub struct QuicTransport {
    queues: HashMap<u64, mpsc::Sender<Message>>,
}

impl Transport for QuicTransport {
    fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            if let Some(q) = self.queues.get(&m.to)
                && q.try_send(m).is_err()
            {
                tracing::trace!("raft queue to a peer is full; dropping (raft retransmits)");
            }
        }
    }
}

impl QuicTransport {
    /// Starts one sender task per peer other than `self_id`. Outbound connections leave from
    /// `local_ip` (the replica's own address), so a firewall rule on that address cuts the
    /// replica off in both directions.
    pub fn start(
        self_id: u64,
        peers: &Peers,
        local_ip: std::net::IpAddr,
        client: quinn::ClientConfig,
        cancel: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let mut endpoint = quinn::Endpoint::client(SocketAddr::new(local_ip, 0))?;
        endpoint.set_default_client_config(client);
        let mut queues = HashMap::new();
        for peer in peers.0.values().filter(|p| p.id != self_id) {
            let (tx, rx) = mpsc::channel(QUEUE);
            queues.insert(peer.id, tx);
            tokio::spawn(sender(
                endpoint.clone(),
                peer.raft_addr.clone(),
                peer.name.clone(),
                rx,
                cancel.clone(),
            ));
        }
        Ok(Arc::new(Self { queues }))
    }
}

async fn sender(
    endpoint: quinn::Endpoint,
    addr: String,
    name: String,
    mut rx: mpsc::Receiver<Message>,
    cancel: CancellationToken,
) {
    let mut attempt = 0u32;
    while !cancel.is_cancelled() {
        match connect(&endpoint, &addr, &name).await {
            Ok((conn, mut send)) => {
                attempt = 0;
                loop {
                    let msg = tokio::select! {
                        _ = cancel.cancelled() => return,
                        m = rx.recv() => match m { Some(m) => m, None => return },
                    };
                    let Ok(bytes) = encode_message(&msg) else {
                        continue;
                    };
                    if let Err(e) = net::framing::write_frame_with_limit(
                        &mut send,
                        &PeerFrame::Raft(bytes),
                        MAX_MESSAGE_BYTES + 1024,
                    )
                    .await
                    {
                        tracing::debug!(peer = %addr, error = %e, "raft link broke");
                        break;
                    }
                }
                conn.close(0u32.into(), b"reconnect");
            }
            Err(e) => {
                tracing::debug!(peer = %addr, error = format!("{e:#}"), "cannot reach raft peer")
            }
        }
        // Messages queued while the peer was down are stale by the time it returns: drop them.
        while rx.try_recv().is_ok() {}
        attempt = attempt.saturating_add(1);
        let delay = Duration::from_millis((50u64 << attempt.min(5)).min(1000));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

async fn connect(
    endpoint: &quinn::Endpoint,
    addr: &str,
    name: &str,
) -> anyhow::Result<(quinn::Connection, quinn::SendStream)> {
    let sock = tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{addr} resolves to nothing"))?;
    let conn = tokio::time::timeout(
        Duration::from_secs(2),
        endpoint.connect(sock, &tls::server_name_for(addr))?,
    )
    .await??;
    let peer = tls::peer(&conn)?;
    if peer.kind != Kind::Coordinator || peer.name != name {
        conn.close(1u32.into(), b"not the replica configured here");
        anyhow::bail!("{addr} is {}, not coordinator {name}", peer.dns_name());
    }
    let send = conn.open_uni().await?;
    Ok((conn, send))
}

/// Accepts Raft connections from other replicas and steps their messages into `replica`.
pub async fn serve(
    endpoint: quinn::Endpoint,
    replica: ReplicaHandle,
    peers: Peers,
    cancel: CancellationToken,
) {
    loop {
        let incoming = tokio::select! {
            _ = cancel.cancelled() => break,
            i = endpoint.accept() => match i { Some(i) => i, None => break },
        };
        let Some(incoming) = tls::validated(incoming) else {
            continue;
        };
        let replica = replica.clone();
        let peers = peers.clone();
        tokio::spawn(async move {
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "refused a raft connection at the TLS handshake");
                    return;
                }
            };
            let from = match tls::peer(&conn) {
                Ok(p) if p.kind == Kind::Coordinator => match peers.id_by_name(&p.name) {
                    Some(id) => id,
                    None => {
                        tracing::warn!(peer = %p.name, "refused a raft peer not in --peers");
                        conn.close(1u32.into(), b"not a member of this replica set");
                        return;
                    }
                },
                _ => {
                    conn.close(1u32.into(), b"only coordinator certificates may speak raft");
                    return;
                }
            };
            while let Ok(mut recv) = conn.accept_uni().await {
                loop {
                    match net::framing::read_frame_within::<_, PeerFrame>(
                        &mut recv,
                        MAX_MESSAGE_BYTES + 1024,
                        RAFT_STREAM,
                    )
                    .await
                    {
                        Ok(Some(PeerFrame::Raft(bytes))) => match decode_message(&bytes) {
                            // A replica may only speak for itself.
                            Ok(msg) if msg.from == from => {
                                let _ = replica.step(msg);
                            }
                            Ok(msg) => tracing::warn!(
                                claimed = msg.from,
                                cert = from,
                                "dropped a raft message with a forged sender"
                            ),
                            Err(e) => {
                                tracing::warn!(from, error = %e, "dropped a malformed raft message")
                            }
                        },
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!(from, error = %e, "raft stream ended");
                            break;
                        }
                    }
                }
            }
        });
    }
}
