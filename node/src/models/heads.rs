//! The head fetcher: keeps the specialised heads the assignment names, fetched as shards by
//! digest on a blob stream (a head fits in one shard, so its digest is its only shard's),
//! verified (sha256, then the head's own bounds) before the serving thread may use them, and
//! dropped once no app of the assignment names them.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use wire::head::{Head, MAX_HEAD_BYTES};
use wire::msg::{BlobReply, BlobRequest};

use crate::handles::{AssignmentCell, CoordinatorLink, HeadCell};

/// How long one head's fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs until `cancel`.
pub async fn run(
    assignment: AssignmentCell,
    coordinator: CoordinatorLink,
    heads: HeadCell,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = cancel.cancelled() => return,
        }
        let wanted = wanted(&assignment);
        let dropped = heads.retain(&wanted);
        if dropped > 0 {
            tracing::info!(dropped, "specialised heads no longer assigned were dropped");
        }
        let held = heads.digests();
        let Some(streams) = coordinator.streams() else {
            continue;
        };
        for digest in wanted.difference(&held) {
            let fetched = tokio::time::timeout(FETCH_TIMEOUT, async {
                let (mut send, mut recv) = streams.open().await.context("opening a blob stream")?;
                let req = BlobRequest::Shard {
                    digest: digest.clone(),
                };
                net::framing::write_frame(&mut send, &req).await?;
                let reply = net::framing::read_frame::<_, BlobReply>(
                    &mut recv,
                    wire::codec::MAX_FRAME_BYTES,
                )
                .await?
                .context("the coordinator closed the blob stream")?;
                let _ = send.finish();
                check(digest, reply)
            })
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")));
            match fetched {
                Ok(head) => {
                    tracing::info!(%digest, classes = ?head.classes, "specialised head fetched and verified");
                    heads.insert(digest.clone(), head);
                }
                Err(e) => {
                    tracing::warn!(%digest, error = format!("{e:#}"), "cannot fetch a specialised head; retrying")
                }
            }
        }
    }
}

/// Digests of the heads the current assignment names.
fn wanted(assignment: &AssignmentCell) -> BTreeSet<String> {
    assignment.read(|a| {
        a.iter()
            .flat_map(|a| &a.apps)
            .filter_map(|app| app.specialised.as_ref())
            .map(|s| s.head_sha256.clone())
            .collect()
    })
}

/// A reply is a head only if its bytes hash to the digest asked for and decode within bounds.
fn check(digest: &str, reply: BlobReply) -> anyhow::Result<Head> {
    let bytes = match reply {
        BlobReply::Shard { digest: d, bytes } if d == digest => bytes,
        BlobReply::Missing { what } => bail!("the coordinator has no {what}"),
        _ => bail!("asked for head {digest}, got something else"),
    };
    if bytes.len() > MAX_HEAD_BYTES {
        bail!("{} bytes is larger than any head", bytes.len());
    }
    if hex::encode(Sha256::digest(&bytes)) != digest {
        bail!("bytes do not match the digest");
    }
    Ok(Head::decode(&bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_verified_heads_are_taken() {
        let head = Head {
            dim: 2,
            classes: vec![3],
            weights: vec![1.0; 4],
            bias: vec![0.0; 2],
        };
        let bytes = head.encode().expect("encode");
        let digest = hex::encode(Sha256::digest(&bytes));
        let reply = |bytes: Vec<u8>| BlobReply::Shard {
            digest: digest.clone(),
            bytes,
        };
        assert_eq!(check(&digest, reply(bytes.clone())).expect("ok"), head);
        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        assert!(check(&digest, reply(flipped)).is_err(), "tampered bytes");
        let other = BlobReply::Missing { what: "x".into() };
        assert!(check(&digest, other).is_err());
    }
}
