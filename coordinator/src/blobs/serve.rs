//! Blob streams: after a node's hello, every further bi stream it opens on the connection carries
//! [`BlobRequest`]s, each answered in order by one [`BlobReply`]. The connection was
//! authenticated by mutual TLS, so only enrolled nodes get model bytes.

use std::sync::Arc;

use protocol::codec::{self, MAX_FRAME_BYTES};
use protocol::msg::{BlobReply, BlobRequest};

use super::store::BlobStore;

/// Accepts blob streams on `conn` until it closes.
pub async fn accept(conn: quinn::Connection, store: Arc<BlobStore>, node: String) {
    while let Ok((send, recv)) = conn.accept_bi().await {
        tokio::spawn(stream(send, recv, store.clone(), node.clone()));
    }
}

async fn stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    store: Arc<BlobStore>,
    node: String,
) {
    loop {
        let req = match codec::read_frame::<_, BlobRequest>(&mut recv, MAX_FRAME_BYTES).await {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(%node, error = %e, "blob stream ended");
                break;
            }
        };
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
            BlobRequest::Shard { digest } => match store.shard(&digest) {
                Some(bytes) => BlobReply::Shard {
                    digest,
                    bytes: bytes.to_vec(),
                },
                None => BlobReply::Missing {
                    what: format!("shard {digest}"),
                },
            },
        };
        if let Err(e) = codec::write_frame(&mut send, &reply).await {
            tracing::debug!(%node, error = %e, "blob stream closed by the node");
            break;
        }
    }
    let _ = send.finish();
}
