//! A node session's reader: reads frames from the control stream in its own task (reads are not
//! cancel-safe, so they stay out of the session's `select!`) and gives each rated message its
//! identity's verdict before passing it on.
//!
//! The reader paces itself by the verdict instead of reading as fast as the node writes: after
//! a telemetry report over the rate (dropped and counted) it waits for the next token before
//! reading on, and a result batch over the rate waits for its token (then passes, so the batch
//! is neither dropped nor fatal). While the reader waits, unread bytes fill the stream's QUIC
//! receive window and flow control stops the node, so a flooding connection costs the
//! coordinator about its rate in frames, its packets stop crowding the shared socket, and the
//! other connections keep their share.

use std::sync::Arc;
use std::time::Duration;

use net::clock::SharedClock;
use tokio::sync::mpsc;
use wire::codec::{CodecError, MAX_FRAME_BYTES};
use wire::msg::NodeMsg;

use super::limits::{NODE_STREAM, NodeLimits, Rated};
use super::session_core::Rate;

/// What the reader task passes on: a frame with its rate verdict, the end of the stream, or why
/// reading failed.
pub enum Read {
    Frame(NodeMsg, Rate),
    /// The node closed its stream, or the connection went away (node stopped, crashed or lost
    /// its link): not bad input.
    Ended,
    Bad(String),
}

/// Whose rates a reader applies.
pub struct Pacer {
    pub limits: Arc<NodeLimits>,
    pub node: String,
    pub clock: SharedClock,
}

impl Pacer {
    /// The verdict on `msg`, and how long to wait before reading the next frame. A result batch
    /// over the rate waits here for its token; only if the clock has not moved on by then (a
    /// manual clock in a test) is it passed on as over the rate.
    pub async fn verdict(&self, msg: &NodeMsg) -> (Rate, Duration) {
        let Some(what) = rated(msg) else {
            return (Rate::Within, Duration::ZERO);
        };
        let wait = match self.limits.take_or_wait(&self.node, what, self.clock.now()) {
            Ok(()) => return (Rate::Within, Duration::ZERO),
            Err(wait) => wait,
        };
        if what != Rated::Results {
            return (Rate::Over, wait);
        }
        tokio::time::sleep(wait).await;
        match self.limits.take_or_wait(&self.node, what, self.clock.now()) {
            Ok(()) => (Rate::Within, Duration::ZERO),
            Err(_) => (Rate::Over, Duration::ZERO),
        }
    }
}

/// What a message costs against its identity's rates, if anything.
fn rated(msg: &NodeMsg) -> Option<Rated> {
    match msg {
        NodeMsg::Telemetry(_) => Some(Rated::Telemetry),
        NodeMsg::Results(_) => Some(Rated::Results),
        _ => None,
    }
}

/// Reads frames until the stream ends or a frame is bad, paced by `pacer`.
pub async fn read_frames(mut recv: quinn::RecvStream, frames: mpsc::Sender<Read>, pacer: Pacer) {
    loop {
        let mut pause = Duration::ZERO;
        let read = match net::framing::read_frame_within::<_, NodeMsg>(
            &mut recv,
            MAX_FRAME_BYTES,
            NODE_STREAM,
        )
        .await
        {
            Ok(Some(m)) => {
                let (rate, wait) = pacer.verdict(&m).await;
                pause = wait;
                Read::Frame(m, rate)
            }
            Ok(None) => Read::Ended,
            Err(CodecError::Io(e)) => {
                tracing::info!(error = %e, "node connection lost");
                Read::Ended
            }
            Err(e) => Read::Bad(e.to_string()),
        };
        let last = !matches!(read, Read::Frame(..));
        if frames.send(read).await.is_err() || last {
            return;
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}
