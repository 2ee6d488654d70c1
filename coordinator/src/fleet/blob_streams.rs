//! Blob streams: after a node's hello, every further bi stream it opens on the connection carries
//! [`BlobRequest`]s, each answered in order by one [`BlobReply`]. The connection was
//! authenticated by mutual TLS, so only enrolled nodes get model bytes.

use std::sync::Arc;

use bytes::Bytes;

use net::clock::SharedClock;
use wire::codec::MAX_FRAME_BYTES;
use wire::msg::{BlobReply, BlobRequest};

use super::limits::{NODE_STREAM, NodeLimits, Rated};
use super::metrics::Metrics;
use crate::blobs::BlobStore;
use crate::raft::ReplicaHandle;

/// Accepts blob streams on `conn` until it closes. How many streams a node may open at once is
/// capped by the QUIC transport ([`net::tls`]); how many requests a second, by its
/// identity's blob rate ([`super::limits`]).
pub async fn accept(conn: quinn::Connection, node: String, served: BlobService) {
    while let Ok((send, recv)) = conn.accept_bi().await {
        tokio::spawn(stream(send, recv, node.clone(), served.clone()));
    }
}

/// What serving blobs needs: the store, and the per-identity rates with their counter.
#[derive(Clone)]
pub struct BlobService {
    pub store: Arc<BlobStore>,
    pub limits: Arc<NodeLimits>,
    pub metrics: Arc<Metrics>,
    pub clock: SharedClock,
    /// Specialised heads are served from the replicated state (any replica can serve them).
    pub raft: ReplicaHandle,
}

async fn stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    node: String,
    served: BlobService,
) {
    loop {
        let req = match net::framing::read_frame_within::<_, BlobRequest>(
            &mut recv,
            MAX_FRAME_BYTES,
            NODE_STREAM,
        )
        .await
        {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(%node, error = %e, "blob stream ended");
                break;
            }
        };
        let reply = if !served.limits.allow(&node, Rated::Blob, served.clock.now()) {
            Metrics::inc(&served.metrics.rate_limited_total);
            Reply::Message(BlobReply::Missing {
                what: "answer: blob request rate exceeded, retry later".into(),
            })
        } else {
            answer(&served.store, &served.raft, req)
        };
        if let Err(e) = send_reply(&mut send, reply).await {
            tracing::debug!(%node, error = %e, "blob stream closed by the node");
            break;
        }
    }
    let _ = send.finish();
}

/// What to send: a shard goes out from the store's own buffer, after a head that frames it
/// exactly as the encoded [`BlobReply::Shard`] would be (no copy into an encoded message).
enum Reply {
    Shard { digest: String, bytes: Bytes },
    Message(BlobReply),
}

async fn send_reply(send: &mut quinn::SendStream, reply: Reply) -> anyhow::Result<()> {
    match reply {
        Reply::Shard { digest, bytes } => {
            let head = wire::shard_head::shard_reply_head(&digest, bytes.len(), MAX_FRAME_BYTES)?;
            send.write_all_chunks(&mut [Bytes::from(head), bytes])
                .await?;
        }
        Reply::Message(msg) => net::framing::write_frame(send, &msg).await?,
    }
    Ok(())
}

fn answer(store: &BlobStore, raft: &ReplicaHandle, req: BlobRequest) -> Reply {
    let reply = match req {
        BlobRequest::Catalog => BlobReply::Catalog {
            bytes: store.catalog().to_vec(),
        },
        BlobRequest::Manifest { variant } => match store.manifest(&variant) {
            Some(m) => BlobReply::Manifest(m.clone()),
            None => BlobReply::Missing {
                what: format!("variant {variant}"),
            },
        },
        BlobRequest::Shard { digest } => match store.shard(&digest).or_else(|| {
            raft.with_state(|s| s.specialised_head(&digest).map(Bytes::copy_from_slice))
        }) {
            Some(bytes) => return Reply::Shard { digest, bytes },
            None => BlobReply::Missing {
                what: format!("shard {digest}"),
            },
        },
    };
    Reply::Message(reply)
}
