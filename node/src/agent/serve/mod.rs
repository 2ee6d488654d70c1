//! The serving loop: requests arrive (`request`, `pacing`): outside clients (the local API, a
//! video source) put them on a bounded intake, the Fashion-MNIST replay draws them in the
//! serving thread; every request takes the same path. The per-request policy picks variant and place
//! under the coordinator's assignment (`follow`, `decide`), the node runs real ONNX inference
//! (`infer`: one trunk run per frame shared by every app that chose that variant on the device),
//! charges the profiled energy (`energy`, with loads as measured by `learning`), spools each
//! answer (`results`), publishes telemetry (`telemetry`) and ends with a summary (`summary`).
//! An answer with a ground truth (the replay's) is checked against it, so accuracy is measured,
//! not assumed; a request past its deadline is dropped and counted as late, never served stale.

mod cascade;
mod decide;
mod energy;
mod face;
mod face_recent;
mod follow;
mod infer;
mod learning;
mod pacing;
mod request_path;
mod results;
mod summary;
mod telemetry;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use net::clock::SharedClock;
use scheduler::catalog::{Catalog, Place};
use scheduler::policy::{Policy, Run};
use scheduler::state::{Budgets, DeviceState};
use wire::manifest::Manifest;
use wire::summary::Summary;

pub use follow::Follower;
pub use learning::LoadLearning;
pub use request_path::Meta;
pub use results::{Answer, Results};
pub use summary::offload_server as offload_server_summary;

use self::face::FaceCall;
use self::infer::InferError;
use self::pacing::{Next, Pacer};
use self::summary::RunFigures;
use crate::battery::EnergyAccount;
use crate::cache::ModelCache;
use crate::dataset::Dataset;
use crate::engine::Prediction;
use crate::face_memory::FaceMemory;
use crate::frames::FrameSource;
use crate::handles::{AssignmentCell, HeadCell, ModelAvailability, TelemetryCell, WatchlistCell};
use crate::offload::Offloader;
use crate::picture::{Picture, PixelFormat};
use crate::request::{self, Intake};
use crate::stats::AppStats;

/// What the serving loop needs besides its collaborators.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// App name and requests per second (the replay's rates, and the API's admitted rates).
    pub apps: Vec<(String, f64)>,
    /// Draw requests from the Fashion-MNIST replay (off: outside clients only).
    pub replay: bool,
    pub budgets: Budgets,
    pub duration: Option<Duration>,
    /// How often the telemetry snapshot is refreshed.
    pub publish_every: Duration,
    /// Face apps run their reference variant on every this many requests too (0: never).
    pub face_audit_every: u64,
}

/// The shared state the serving thread reads and writes.
#[derive(Debug, Clone, Default)]
pub struct ServeHandles {
    pub assignment: AssignmentCell,
    pub models: ModelAvailability,
    pub telemetry: TelemetryCell,
    /// Specialised heads the head fetcher holds.
    pub heads: HeadCell,
    /// The watchlist face apps match against.
    pub watchlist: WatchlistCell,
}

pub struct Server<'a> {
    pub manifest: &'a Manifest,
    pub catalog: Arc<Catalog>,
    pub data: &'a Dataset,
    pub cache: ModelCache,
    pub policy: Box<dyn Policy>,
    pub frames: FrameSource,
    /// Where outside clients' requests arrive (`None`: the replay alone).
    pub intake: Option<Intake>,
    pub energy: EnergyAccount,
    pub handles: ServeHandles,
    pub results: Results,
    pub offloader: Option<Box<dyn Offloader>>,
    pub stop: Arc<AtomicBool>,
    pub clock: SharedClock,
    /// Measured load costs, smoothed; each load updates `catalog` and the policy's catalog.
    pub learning: LoadLearning,
    pub follower: Follower,
    /// Who the face apps saw lately (recent galleries, strangers); memory only.
    pub faces: FaceMemory,
}

/// Where a request was answered, by which variant, with what.
struct Ran {
    variant: String,
    place: Place,
    prediction: Prediction,
    loaded_ms: Option<f64>,
    /// The answer's class when it is not the catalog's (a face app's watchlist name).
    class: Option<String>,
    /// A face app's: who the answer is about (what the policy's skew window counts).
    identity: Option<String>,
}

/// Share of the energy budget below which it counts as run out (the summary's
/// `energy_out_at_s`): what is left then pays for a handful of the cheapest requests.
const ENERGY_OUT: f64 = 0.01;

impl Server<'_> {
    /// Serves until `duration` passes, `stop` is set, or (no replay) every outside client has
    /// gone.
    pub fn run(mut self, cfg: &ServeConfig) -> anyhow::Result<Summary> {
        let frame_rate: f64 = cfg.apps.iter().map(|(_, r)| *r).fold(0.0, f64::max);
        anyhow::ensure!(
            !cfg.replay || frame_rate > 0.0,
            "no app has a positive request rate"
        );
        anyhow::ensure!(
            cfg.apps.len() <= request::MAX_APPS,
            "a node serves at most {} apps",
            request::MAX_APPS
        );
        let mut stats: Vec<AppStats> = cfg
            .apps
            .iter()
            .map(|(name, _)| {
                let classes = self.manifest.app(name).map_or(0, |a| a.classes.len());
                let mut s = AppStats::new(name, classes);
                s.face = face::stats_for(self.manifest, &self.catalog, name, cfg.face_audit_every);
                s
            })
            .collect();
        let mut state = DeviceState::new(&cfg.budgets, 0.0);
        state.connected = self.offloader.is_some();
        let app_names: Vec<String> = cfg.apps.iter().map(|(a, _)| a.clone()).collect();
        self.follower = Follower::start(&self.handles.assignment, &self.handles.models);
        self.follow(&app_names);
        let clock = self.clock.clone();
        let mut pacer = Pacer::new(clock.as_ref(), cfg.duration);
        let mut last_publish: Option<std::time::Instant> = None;
        let mut energy_out_at_s = None;
        let mut intake = self.intake.take();
        // The replay's picture, refilled per frame (no allocation per frame).
        let mut replayed = Picture {
            width: 0,
            height: 0,
            format: PixelFormat::Gray8,
            pixels: Vec::new(),
        };
        while let Some(next) =
            pacer.next(clock.as_ref(), &self.stop, cfg.replay, &mut intake, || {
                self.frames.interarrival_s(frame_rate)
            })
        {
            if self
                .follower
                .refresh(&self.handles.assignment, &self.handles.models)
            {
                self.follow(&app_names);
            }
            let now_s = match next {
                Next::Replay(now_s) => {
                    self.serve_frame(
                        &mut replayed,
                        now_s,
                        frame_rate,
                        cfg,
                        &mut stats,
                        &mut state,
                    )?;
                    now_s
                }
                Next::Request(mut request, now_s) => {
                    let meta = Meta {
                        apps: request.apps,
                        truth: request.truth,
                        skewed: request.skewed,
                        arrived: request.arrived,
                        deadline: request.deadline,
                    };
                    let reply = request.reply.take();
                    self.serve_request(
                        &request.picture,
                        meta,
                        reply,
                        now_s,
                        cfg,
                        &mut stats,
                        &mut state,
                    )?;
                    now_s
                }
            };
            if energy_out_at_s.is_none() && self.energy.left_j() < ENERGY_OUT * self.energy.budget_j
            {
                energy_out_at_s = Some(now_s);
            }
            let now = clock.now();
            if last_publish.is_none_or(|t| now.duration_since(t) >= cfg.publish_every) {
                self.publish(now_s, &stats);
                last_publish = Some(now);
            }
        }
        let now_s = pacer.elapsed_s(clock.as_ref());
        self.publish(now_s, &stats);
        Ok(summary::summarize(
            &stats,
            RunFigures {
                energy_used_j: self.energy.used_j,
                energy_budget_j: cfg.budgets.energy_j,
                model_loads: self.cache.loads,
                assignments_applied: self.follower.applied,
                last_epoch: self.follower.last_epoch,
                energy_out_at_s,
            },
        ))
    }

    /// Sets the policy's constraints from what the follower holds.
    fn follow(&mut self, apps: &[String]) {
        let fixed = self
            .offloader
            .as_ref()
            .is_some_and(|o| o.has_fixed_target());
        // A baseline policy (paper, best-device, cheapest, cloud) is the per-device scheduler
        // it is named after: it decides alone, on its own budget, as it would without a fleet
        // plan, so that comparing it with `mcdnn` compares the schedulers.
        let follows_plan = self.policy.name() == "mcdnn";
        let c = self.follower.constraints(
            self.manifest,
            apps,
            self.offloader.is_some(),
            fixed,
            follows_plan,
        );
        self.policy.set_constraints(c);
    }

    /// Runs the decision where it was planned; a failed offload is answered on the device with
    /// the cheapest local variant rather than dropped. `None`: the variant could not be loaded
    /// (it is reported to the fetcher) and the request is dropped.
    fn execute(
        &mut self,
        call: FaceCall<'_>,
        run: &Run,
        stats: &mut AppStats,
    ) -> anyhow::Result<Option<Ran>> {
        let (app, picture) = (call.app, call.picture);
        if let Some(face) = stats.face.as_mut() {
            return self.execute_face(&run.variant, call, face);
        }
        let variant = match run.place {
            Place::Server => match self.offload(app, &run.variant, picture) {
                Some(prediction) => {
                    return Ok(Some(Ran {
                        variant: run.variant.clone(),
                        place: Place::Server,
                        prediction,
                        loaded_ms: None,
                        class: None,
                        identity: None,
                    }));
                }
                None => {
                    stats.offload_fallbacks += 1;
                    decide::local_fallback(
                        &self.catalog,
                        self.manifest,
                        self.cache.resident(),
                        self.follower.present(),
                        app,
                    )
                }
            },
            Place::Device => run.variant.clone(),
        };
        match infer::on_device(&mut self.cache, &variant, app, picture) {
            Ok(done) => Ok(Some(Ran {
                variant,
                place: Place::Device,
                prediction: done.prediction,
                loaded_ms: done.loaded_ms,
                class: None,
                identity: None,
            })),
            Err(InferError::Load(e)) => {
                tracing::warn!(variant, error = %e, "cannot load variant; dropping the request and refetching");
                self.handles.models.mark_broken(&variant);
                Ok(None)
            }
            Err(InferError::Engine(e)) => Err(e.into()),
        }
    }

    /// Offloads `picture`, sent as the catalog's input (gray at the input size: what every
    /// offload server's variants take).
    fn offload(&mut self, app: &str, variant: &str, picture: &Picture) -> Option<Prediction> {
        let off = self.offloader.as_mut()?;
        let (w, h) = (self.manifest.input.width, self.manifest.input.height);
        let fits = picture.format == PixelFormat::Gray8
            && picture.width as usize == w
            && picture.height as usize == h;
        let converted;
        let pixels = if fits {
            &picture.pixels
        } else {
            converted = picture.to_gray().resize(w as u32, h as u32);
            &converted.pixels
        };
        match off.offload(app, variant, pixels) {
            Ok((p, _server_ms)) => Some(p),
            Err(e) => {
                tracing::warn!(app, variant, error = %e, "offload failed; answering locally");
                None
            }
        }
    }

    fn publish(&mut self, now_s: f64, stats: &[AppStats]) {
        let snapshot = telemetry::snapshot(
            self.clock.as_ref(),
            now_s,
            telemetry::Sources {
                stats,
                energy: &mut self.energy,
                cache: &self.cache,
                learning: &self.learning,
                results: &self.results,
            },
        );
        self.handles.telemetry.publish(snapshot);
    }
}
