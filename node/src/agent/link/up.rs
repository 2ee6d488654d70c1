//! A welcomed session's moving parts: the task that reads the coordinator's frames, and the
//! timers of telemetry, results, liveness ticks and certificate renewal.

use std::time::Duration;

use wire::codec::MAX_FRAME_BYTES;
use wire::msg::CoordMsg;

use super::core;
use super::watchlist;
use super::{LinkConfig, LinkHandles};
use crate::agent::renewal::Renewal;
use crate::credentials::Credentials;

/// How often spooled results are offered to the coordinator.
const RESULTS_INTERVAL: Duration = Duration::from_millis(100);

/// The core finds a silent coordinator from its connection's silence (the QUIC idle timeout is
/// the backstop), but a frame it starts must arrive whole soon.
const COORD_STREAM: net::framing::Deadlines = net::framing::Deadlines {
    idle: Duration::from_secs(3600),
    frame: Duration::from_secs(30),
};

/// Aborts a task when dropped, so a session's helper tasks end with it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(super) struct Up {
    pub(super) frames: tokio::sync::mpsc::Receiver<anyhow::Result<Option<CoordMsg>>>,
    _reader: AbortOnDrop,
    pub(super) ticker: tokio::time::Interval,
    pub(super) results_ticker: tokio::time::Interval,
    /// Paces [`core::Event::Tick`], with which the core pings the coordinator and measures its
    /// silence.
    pub(super) liveness: tokio::time::Interval,
    pub(super) renewal: Renewal,
    pub(super) rtt_ms: f64,
    /// Receives watchlist pushes on this session's connection.
    _watchlist: AbortOnDrop,
}

impl Up {
    pub(super) fn start(
        mut recv: quinn::RecvStream,
        cfg: &LinkConfig,
        credentials: &Credentials,
        conn: &quinn::Connection,
        handles: &LinkHandles,
    ) -> Self {
        // Frames are read by their own task: a half-read frame must never be dropped by
        // `select!`.
        let (frames_tx, frames) = tokio::sync::mpsc::channel(16);
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
        Self {
            frames,
            _reader: AbortOnDrop(reader),
            ticker: tokio::time::interval(cfg.telemetry_interval),
            results_ticker: tokio::time::interval(RESULTS_INTERVAL),
            liveness: tokio::time::interval(core::TICK_INTERVAL),
            renewal: Renewal::new(credentials),
            rtt_ms: conn.rtt().as_secs_f64() * 1e3,
            _watchlist: AbortOnDrop(tokio::spawn(watchlist::receive(
                conn.clone(),
                handles.watchlist.clone(),
            ))),
        }
    }
}
