//! Starting the serving loop's outside inputs from the command line: the local API listeners
//! and a video source, all feeding one bounded intake; and their figures for the summary.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use wire::manifest::Manifest;
use wire::summary::InputSummary;

use crate::api::{self, Api, ApiLimits};
use crate::config::{RunArgs, Source};
use crate::handles::AssignmentCell;
use crate::input::video::{self, VideoCounters};
use crate::request::{self, Intake};
use crate::video::{DecodeOptions, Decoder};

/// The inputs that were started.
#[derive(Default)]
pub struct Inputs {
    pub api: Option<Arc<Api>>,
    pub video: Option<(Arc<VideoCounters>, f64)>,
    /// Serve the replay too.
    pub replay: bool,
}

impl Inputs {
    /// The summary's input figures (`None`: the replay alone).
    pub fn summary(&self) -> Option<InputSummary> {
        if self.api.is_none() && self.video.is_none() {
            return None;
        }
        let mut s = InputSummary::default();
        if let Some((c, fps)) = &self.video {
            s.video_frames = c.frames.load(Ordering::Relaxed);
            s.video_decode_fps = c.decode_fps();
            s.video_stream_fps = *fps;
            s.video_sampled = c.sampled.load(Ordering::Relaxed);
            s.video_intake_full = c.intake_full.load(Ordering::Relaxed);
        }
        if let Some(api) = &self.api {
            (s.api_accepted, s.api_over_rate, s.api_intake_full) = api.figures();
        }
        Some(s)
    }
}

/// Starts the API listeners and the video source the flags ask for; the intake they share
/// goes to the serving loop (`None` when neither is asked for).
pub async fn start(
    args: &RunArgs,
    apps: &[(String, f64)],
    manifest: &Manifest,
    assignment: &AssignmentCell,
    stop: &Arc<AtomicBool>,
    cancel: &CancellationToken,
) -> anyhow::Result<(Inputs, Option<Intake>)> {
    let source = args.input_source()?;
    let wants_api = args.api_listen.is_some() || args.api_socket.is_some();
    let mut inputs = Inputs {
        replay: source == Source::Replay,
        ..Inputs::default()
    };
    if !wants_api && !matches!(source, Source::Video(_)) {
        return Ok((inputs, None));
    }
    let (tx, intake) = request::intake(args.intake);
    if wants_api {
        let limits = ApiLimits {
            deadline: Duration::from_millis(args.api_deadline_ms.max(1)),
            ..ApiLimits::default()
        };
        let api = Api::new(
            apps.to_vec(),
            Arc::new(manifest.clone()),
            tx.clone(),
            assignment.clone(),
            limits,
        );
        if let Some(addr) = args.api_listen {
            api::check_loopback(addr)?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--api-listen {addr}"))?;
            tracing::info!(addr = %listener.local_addr()?, "local inference API listening");
            tokio::spawn(api::serve_tcp(api.clone(), listener, cancel.clone()));
        }
        if let Some(path) = &args.api_socket {
            let listener = api::bind_socket(path)?;
            tracing::info!(socket = %path.display(), "local inference API listening");
            tokio::spawn(api::serve_unix(api.clone(), listener, cancel.clone()));
        }
        inputs.api = Some(api);
    }
    if let Source::Video(src) = source {
        let decoder = Decoder::open(&src, DecodeOptions::default())
            .with_context(|| format!("--source {}", args.source))?;
        let info = decoder.info();
        tracing::info!(
            width = info.width,
            height = info.height,
            fps = info.fps,
            "video source open"
        );
        let reopen = args.source_loop.then(|| -> video::Reopen {
            Box::new(move || Decoder::open(&src, DecodeOptions::default()))
        });
        let counters = Arc::new(VideoCounters::default());
        let rates = apps.iter().map(|(_, r)| *r).collect();
        let (c, stop) = (counters.clone(), stop.clone());
        std::thread::Builder::new()
            .name("video".into())
            .spawn(move || {
                if let Err(e) = video::play(decoder, reopen, rates, tx, stop, c) {
                    tracing::error!(error = %e, "video source failed");
                }
            })
            .context("starting the video thread")?;
        inputs.video = Some((counters, info.fps));
    }
    Ok((inputs, Some(intake)))
}
