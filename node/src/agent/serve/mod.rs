//! The serving loop: frames arrive (`pacing`), the per-request policy picks variant and place
//! under the coordinator's assignment (`follow`, `decide`), the node runs real ONNX inference
//! (`infer`: one trunk run per frame shared by every app that chose that variant on the device),
//! charges the profiled energy (`energy`, with loads as measured by `learning`), spools each
//! answer (`results`), publishes telemetry (`telemetry`) and ends with a summary (`summary`).
//! Each answer is checked against the image's label, so accuracy is measured, not assumed.

mod cascade;
mod decide;
mod energy;
mod follow;
mod infer;
mod learning;
mod pacing;
mod results;
mod summary;
mod telemetry;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use net::clock::SharedClock;
use scheduler::catalog::{Catalog, Place};
use scheduler::policy::{Decision, Outcome, Policy, Run, run_cost};
use scheduler::state::{Budgets, DeviceState};
use wire::manifest::Manifest;
use wire::summary::Summary;

pub use follow::Follower;
pub use learning::LoadLearning;
pub use results::{Answer, Results};
pub use summary::offload_server as offload_server_summary;

use self::infer::InferError;
use self::pacing::Pacer;
use self::summary::RunFigures;
use crate::battery::EnergyAccount;
use crate::cache::ModelCache;
use crate::dataset::Dataset;
use crate::engine::Prediction;
use crate::frames::FrameSource;
use crate::handles::{AssignmentCell, HeadCell, ModelAvailability, TelemetryCell};
use crate::offload::Offloader;
use crate::stats::AppStats;

/// What the serving loop needs besides its collaborators.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// App name and requests per second.
    pub apps: Vec<(String, f64)>,
    pub budgets: Budgets,
    pub duration: Option<Duration>,
    /// How often the telemetry snapshot is refreshed.
    pub publish_every: Duration,
}

/// The shared state the serving thread reads and writes.
#[derive(Debug, Clone, Default)]
pub struct ServeHandles {
    pub assignment: AssignmentCell,
    pub models: ModelAvailability,
    pub telemetry: TelemetryCell,
    /// Specialised heads the head fetcher holds.
    pub heads: HeadCell,
}

pub struct Server<'a> {
    pub manifest: &'a Manifest,
    pub catalog: Arc<Catalog>,
    pub data: &'a Dataset,
    pub cache: ModelCache,
    pub policy: Box<dyn Policy>,
    pub frames: FrameSource,
    pub energy: EnergyAccount,
    pub handles: ServeHandles,
    pub results: Results,
    pub offloader: Option<Box<dyn Offloader>>,
    pub stop: Arc<AtomicBool>,
    pub clock: SharedClock,
    /// Measured load costs, smoothed; each load updates `catalog` and the policy's catalog.
    pub learning: LoadLearning,
    pub follower: Follower,
}

/// Where a request was answered, by which variant, with what.
struct Ran {
    variant: String,
    place: Place,
    prediction: Prediction,
    loaded_ms: Option<f64>,
}

/// Share of the energy budget below which it counts as run out (the summary's
/// `energy_out_at_s`): what is left then pays for a handful of the cheapest requests.
const ENERGY_OUT: f64 = 0.01;

impl Server<'_> {
    /// Serves until `duration` passes or `stop` is set.
    pub fn run(mut self, cfg: &ServeConfig) -> anyhow::Result<Summary> {
        let frame_rate: f64 = cfg.apps.iter().map(|(_, r)| *r).fold(0.0, f64::max);
        anyhow::ensure!(frame_rate > 0.0, "no app has a positive request rate");
        let mut stats: Vec<AppStats> = cfg
            .apps
            .iter()
            .map(|(name, _)| {
                let classes = self.manifest.app(name).map_or(0, |a| a.classes.len());
                AppStats::new(name, classes)
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
        while let Some(now_s) = pacer.next_frame(clock.as_ref(), &self.stop, || {
            self.frames.interarrival_s(frame_rate)
        }) {
            if self
                .follower
                .refresh(&self.handles.assignment, &self.handles.models)
            {
                self.follow(&app_names);
            }
            self.serve_frame(now_s, frame_rate, cfg, &mut stats, &mut state)?;
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

    /// Serves one frame (every app due on it) and returns the dataset index of its image.
    pub fn serve_frame(
        &mut self,
        now_s: f64,
        frame_rate: f64,
        cfg: &ServeConfig,
        stats: &mut [AppStats],
        state: &mut DeviceState,
    ) -> anyhow::Result<usize> {
        let frame = self.frames.next(now_s);
        let pixels = self.data.image(frame.index);
        state.frame_trunks.clear();
        self.cache.begin_frame();
        for (i, (app, rate)) in cfg.apps.iter().enumerate() {
            if !self.frames.app_due(*rate, frame_rate) {
                continue;
            }
            let Some(spec) = self.manifest.app(app) else {
                continue;
            };
            let truth = spec
                .label_map
                .get(frame.label as usize)
                .copied()
                .unwrap_or(usize::MAX);
            stats[i].arrival(now_s, frame.skewed);
            let left_j = self.energy.left_j();
            decide::refresh_state(state, left_j, cfg.budgets.cost_usd, stats);
            decide::resident_keys(&self.catalog, &self.cache, &mut state.resident);
            let Decision::Run(run) = self.policy.decide(now_s, app, state) else {
                stats[i].dropped += 1;
                self.policy.observe(now_s, app, &Outcome::default());
                continue;
            };
            let Some(key) = self.catalog.key(app, &run.variant) else {
                anyhow::bail!(
                    "policy chose {} which the catalog lacks for {app}",
                    run.variant
                );
            };
            let t0 = self.clock.now();
            let stage = self.cascade_first(
                app,
                &run,
                cascade::Frame { now_s, pixels },
                state,
                &mut stats[i],
            )?;
            // Costed after the first stage, so a trunk it already ran is not charged twice.
            let cost = run_cost(&self.catalog, key, run.place, state);
            let cascaded = stage.answer.is_some();
            let ran = match stage.answer {
                Some(r) => Some(r),
                None => self.execute(app, &run, pixels, &mut stats[i])?,
            };
            let Some(ran) = ran else {
                stats[i].dropped += 1;
                continue;
            };
            let latency_ms = self.clock.now().duration_since(t0).as_secs_f64() * 1e3;
            let (general_j, usd) = if cascaded {
                (0.0, 0.0)
            } else {
                let load_j = ran.loaded_ms.map_or(0.0, |ms| {
                    self.learning
                        .observe(&mut self.catalog, self.policy.as_mut(), &ran.variant, ms)
                });
                let (j, usd) = energy::charged(&cost, run.place, ran.place, load_j);
                self.energy.charge(j);
                if let Some(t) = self.catalog.variant(key).trunk {
                    state.frame_trunks.push((t, ran.place));
                }
                (j, usd)
            };
            // The first stage's energy is already on the battery and the app's counters.
            let energy_j = general_j + stage.energy_j;
            if ran.place == Place::Server {
                state.touch(&self.catalog, key, Place::Server);
            }
            let s = &mut stats[i];
            s.energy_used_j += general_j;
            s.labelled(now_s, ran.prediction.label as usize);
            s.cost_used_usd += usd;
            let correct = ran.prediction.label as usize == truth;
            s.answered(
                &ran.variant,
                correct,
                latency_ms,
                ran.place == Place::Server,
            );
            let answer = Answer {
                app,
                prediction: ran.prediction,
                truth: u32::try_from(truth).ok(),
                variant: &ran.variant,
                place: ran.place,
                energy_j,
                cost_usd: usd,
                latency_ms,
            };
            if !self.results.record(self.clock.as_ref(), &answer) {
                s.spool_failures += 1;
            }
            let class = spec
                .classes
                .get(ran.prediction.label as usize)
                .map(String::as_str);
            self.policy.observe(
                now_s,
                app,
                &Outcome {
                    class,
                    place: Some(ran.place),
                    variant: Some(&run.variant),
                    energy_j,
                    cost_usd: usd,
                    swapped_in: ran.loaded_ms.is_some(),
                },
            );
        }
        Ok(frame.index)
    }

    /// Runs the decision where it was planned; a failed offload is answered on the device with
    /// the cheapest local variant rather than dropped. `None`: the variant could not be loaded
    /// (it is reported to the fetcher) and the request is dropped.
    fn execute(
        &mut self,
        app: &str,
        run: &Run,
        pixels: &[u8],
        stats: &mut AppStats,
    ) -> anyhow::Result<Option<Ran>> {
        let variant = match run.place {
            Place::Server => match self.offload(app, &run.variant, pixels) {
                Some(prediction) => {
                    return Ok(Some(Ran {
                        variant: run.variant.clone(),
                        place: Place::Server,
                        prediction,
                        loaded_ms: None,
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
        match infer::on_device(&mut self.cache, &variant, app, pixels) {
            Ok(done) => Ok(Some(Ran {
                variant,
                place: Place::Device,
                prediction: done.prediction,
                loaded_ms: done.loaded_ms,
            })),
            Err(InferError::Load(e)) => {
                tracing::warn!(variant, error = %e, "cannot load variant; dropping the request and refetching");
                self.handles.models.mark_broken(&variant);
                Ok(None)
            }
            Err(InferError::Engine(e)) => Err(e.into()),
        }
    }

    fn offload(&mut self, app: &str, variant: &str, pixels: &[u8]) -> Option<Prediction> {
        let off = self.offloader.as_mut()?;
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
