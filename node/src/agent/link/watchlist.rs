//! Receives watchlist pushes: the coordinator opens a unidirectional stream per push and
//! writes the list as `WatchlistPart` frames. Each part is checked as it arrives (frame size,
//! deadlines, every bound of `wire::msg::WatchlistAssembly`); the list is installed only once
//! complete, so a reset, truncated or bad push leaves the held list as it was. Only the
//! coordinator of the current session can push (this runs on that connection and ends with it).

use net::framing::Deadlines;
use std::time::Duration;
use wire::codec::MAX_FRAME_BYTES;
use wire::msg::{WatchlistAssembly, WatchlistPart};

use crate::handles::WatchlistCell;

/// A push in progress sends its next part at once; the largest list takes a few hundred parts.
const PART_WITHIN: Deadlines = Deadlines {
    idle: Duration::from_secs(30),
    frame: Duration::from_secs(30),
};

/// Installs every complete push on `conn` into `cell` until the connection ends.
pub async fn receive(conn: quinn::Connection, cell: WatchlistCell) {
    // One push at a time: a newer one resets the older stream on the coordinator's side.
    while let Ok(mut stream) = conn.accept_uni().await {
        match read_push(&mut stream).await {
            Ok((version, entries)) => {
                let names = entries.len();
                cell.install(version, entries);
                tracing::info!(version, names, "watchlist installed");
            }
            Err(e) => tracing::warn!(error = %e, "watchlist push refused; keeping the held list"),
        }
    }
}

async fn read_push(
    stream: &mut quinn::RecvStream,
) -> anyhow::Result<(u64, Vec<wire::msg::WatchlistEntry>)> {
    let mut assembly = WatchlistAssembly::default();
    loop {
        let part = net::framing::read_frame_within::<_, WatchlistPart>(
            stream,
            MAX_FRAME_BYTES,
            PART_WITHIN,
        )
        .await?
        .ok_or_else(|| anyhow::anyhow!("the push ended before its last part"))?;
        if let Some(done) = assembly.take(part).map_err(anyhow::Error::msg)? {
            return Ok(done);
        }
    }
}
