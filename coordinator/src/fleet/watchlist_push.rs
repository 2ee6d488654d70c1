//! Pushing the replicated watchlist to connected nodes.
//!
//! [`sync`] runs on every replica: when the applied watchlist's version changes it publishes
//! the list once (one shared copy, however many sessions). Each leader session runs [`push`]:
//! whenever the published version differs from what its node holds (the node's hello says
//! which version it has, so a reconnecting node with a current list gets nothing), it opens a
//! unidirectional stream and writes the list as `WatchlistPart` frames, at a lower priority
//! than the control stream so heartbeats and assignments are not held up behind a large list.
//! A newer version arriving mid-push resets that stream and starts over. A revoked node's
//! session is closed (and its handshakes refused), so it receives nothing more.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use wire::msg::{WatchlistEntry, watchlist_part, watchlist_part_ranges};

use crate::raft::ReplicaHandle;

/// How often the applied watchlist's version is compared with the published one.
const SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// A version of the list as pushed to nodes: names and descriptors only.
#[derive(Debug, Default, PartialEq)]
pub struct Published {
    pub version: u64,
    pub entries: Vec<WatchlistEntry>,
}

/// The latest published list: the sync task writes it, sessions read it.
#[derive(Clone)]
pub struct WatchlistFeed {
    tx: Arc<watch::Sender<Arc<Published>>>,
}

impl Default for WatchlistFeed {
    fn default() -> Self {
        WatchlistFeed {
            tx: Arc::new(watch::channel(Arc::new(Published::default())).0),
        }
    }
}

impl WatchlistFeed {
    /// A receiver for one session.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Published>> {
        self.tx.subscribe()
    }

    fn publish(&self, list: Published) {
        self.tx.send_replace(Arc::new(list));
    }

    fn version(&self) -> u64 {
        self.tx.borrow().version
    }
}

/// Publishes the applied watchlist whenever its version changes, until `cancel`.
pub async fn sync(raft: ReplicaHandle, feed: WatchlistFeed, cancel: CancellationToken) {
    loop {
        let applied = raft.with_state(|s| s.watchlist().version());
        if applied != feed.version() {
            let list = raft.with_state(|s| Published {
                version: s.watchlist().version(),
                entries: s.watchlist().to_wire(),
            });
            tracing::info!(
                version = list.version,
                names = list.entries.len(),
                "watchlist changed; pushing it to connected nodes"
            );
            feed.publish(list);
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(SYNC_INTERVAL) => {}
        }
    }
}

/// Keeps node `id` on the current list for as long as its session lasts (the caller aborts
/// this when the session ends). `held` is the version the node said it holds.
pub async fn push(
    conn: quinn::Connection,
    mut feed: watch::Receiver<Arc<Published>>,
    mut held: u64,
    id: String,
) {
    loop {
        let list = feed.borrow_and_update().clone();
        if list.version != held {
            tokio::select! {
                sent = send(&conn, &list) => match sent {
                    Ok(()) => {
                        tracing::debug!(node = %id, version = list.version, "watchlist pushed");
                        held = list.version;
                    }
                    Err(e) => {
                        // The connection is failing; the session ends and the node gets the
                        // list on its next one.
                        tracing::warn!(node = %id, error = %e, "could not push the watchlist");
                        return;
                    }
                },
                // A newer list while this one was on its way: `send` is dropped, which resets
                // its stream; start over with the newer one.
                changed = feed.changed() => if changed.is_err() { return },
            }
            continue;
        }
        if feed.changed().await.is_err() {
            return;
        }
    }
}

/// Writes one list on a stream of its own; a dropped future resets the stream.
async fn send(conn: &quinn::Connection, list: &Published) -> anyhow::Result<()> {
    let mut stream = ResetOnDrop(Some(conn.open_uni().await?));
    let s = stream
        .0
        .as_mut()
        .ok_or_else(|| anyhow::anyhow!("stream gone"))?;
    // Below the control stream (priority 0): a large list must not delay heartbeats.
    s.set_priority(-1)?;
    let ranges = watchlist_part_ranges(&list.entries);
    for i in 0..ranges.len() {
        let part = watchlist_part(list.version, &list.entries, &ranges, i);
        net::framing::write_frame(s, &part).await?;
    }
    if let Some(mut s) = stream.0.take() {
        s.finish()?;
    }
    Ok(())
}

/// A send stream that is reset (not finished) unless it was completed.
struct ResetOnDrop(Option<quinn::SendStream>);

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        if let Some(s) = self.0.as_mut() {
            let _ = s.reset(0u32.into());
        }
    }
}
