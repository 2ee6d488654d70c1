//! The serving loop: frames arrive, the per-request policy picks variant and place under the
//! coordinator's assignment, the node runs real ONNX inference (one trunk run per frame shared by
//! every app that chose that variant on the device), charges the profiled energy, and checks each
//! answer against the image's label so accuracy is measured, not assumed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use scheduler::catalog::{Catalog, Place};
use scheduler::load::{LoadProfiles, measured_load_j};
use scheduler::policy::{Decision, Outcome, Policy, run_cost};
use scheduler::state::{Budgets, DeviceState};
use serde::Serialize;
use wire::manifest::Manifest;

use super::constraints;
use super::shared::{Shared, Snapshot};
use crate::battery::EnergyAccount;
use crate::cache::ModelCache;
use crate::dataset::Dataset;
use crate::engine::Prediction;
use crate::frames::FrameSource;
use crate::stats::AppStats;

/// Runs a request on an offload server (blocking from the serving thread).
pub trait Offloader: Send {
    /// Label, score and the server's compute time in ms.
    fn offload(
        &mut self,
        app: &str,
        variant: &str,
        pixels: &[u8],
    ) -> Result<(Prediction, f64), String>;

    /// Whether the operator fixed the offload server (so offloading is allowed whatever the
    /// assignment says about targets).
    fn has_fixed_target(&self) -> bool {
        false
    }
}

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

/// Per-app figures at the end of a run.
#[derive(Debug, Clone, Serialize)]
pub struct AppSummary {
    pub requests: u64,
    pub correct: u64,
    pub dropped: u64,
    /// Answered requests the spool could not hold: never reported, so counted as lost.
    pub spool_failures: u64,
    pub offloaded: u64,
    pub offload_fallbacks: u64,
    pub accuracy: f64,
    pub energy_used_j: f64,
    pub by_variant: BTreeMap<String, u64>,
}

/// The node's figures at the end of a run (`--summary`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub requests: u64,
    pub accuracy: f64,
    pub energy_used_j: f64,
    pub energy_budget_j: f64,
    pub cost_used_usd: f64,
    pub model_loads: u64,
    pub assignments_applied: u64,
    pub last_epoch: u64,
    pub apps: BTreeMap<String, AppSummary>,
    /// Results this run accepted into the spool (each must reach the coordinator exactly once).
    pub results_accepted: u64,
    /// Results still waiting for the coordinator's ack when the node stopped.
    pub results_pending: u64,
    /// Requests dropped (no affordable or loadable variant) over all apps.
    pub dropped: u64,
    /// Answered requests the spool could not hold; with a spool, `requests == dropped +
    /// results_accepted + spool_failures`, and a sound run has no failures.
    pub spool_failures: u64,
    pub offload_fallbacks: u64,
    /// Offload requests this node served (server role).
    pub served_offload: u64,
    /// Model store figures (when models come from the coordinator).
    pub models: Option<crate::models::StoreStats>,
}

pub struct Server<'a> {
    pub manifest: &'a Manifest,
    pub catalog: Arc<Catalog>,
    pub data: &'a Dataset,
    pub cache: ModelCache,
    pub policy: Box<dyn Policy>,
    pub frames: FrameSource,
    pub energy: EnergyAccount,
    pub shared: Shared,
    pub offloader: Option<Box<dyn Offloader>>,
    pub stop: Arc<AtomicBool>,
    /// Measured load costs, smoothed; each load updates `catalog` and the policy's catalog.
    pub load_profiles: LoadProfiles,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Server<'_> {
    /// Serves until `duration` passes or `stop` is set.
    pub fn run(mut self, cfg: &ServeConfig) -> anyhow::Result<Summary> {
        let started = Instant::now();
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
        let spool = self.shared.lock().spool.clone();
        let app_names: Vec<String> = cfg.apps.iter().map(|(a, _)| a.clone()).collect();
        let mut assignment: Option<wire::msg::Assignment> = self.shared.take_fresh_assignment();
        let mut available = self.shared.lock().available.clone();
        self.apply(assignment.as_ref(), available.as_ref(), &app_names);
        let (mut applied, mut last_epoch) = (0u64, 0u64);
        let mut next_frame_s = 0.0;
        let mut last_publish = Instant::now() - cfg.publish_every;
        loop {
            if self.stop.load(Ordering::Relaxed)
                || cfg.duration.is_some_and(|d| started.elapsed() >= d)
            {
                break;
            }
            let wait = next_frame_s - started.elapsed().as_secs_f64();
            if wait > 0.0 {
                std::thread::sleep(Duration::from_secs_f64(wait.min(0.1)));
                continue;
            }
            let now_s = started.elapsed().as_secs_f64();
            next_frame_s += self.frames.interarrival_s(frame_rate);
            let now_available = self.shared.lock().available.clone();
            let fresh = self.shared.take_fresh_assignment();
            if let Some(a) = &fresh {
                applied += 1;
                last_epoch = a.epoch;
            }
            if fresh.is_some() || now_available != available {
                assignment = fresh.or(assignment);
                available = now_available;
                self.apply(assignment.as_ref(), available.as_ref(), &app_names);
            }
            self.serve_frame(
                now_s,
                frame_rate,
                cfg,
                &mut stats,
                &mut state,
                spool.as_ref(),
            )?;
            if last_publish.elapsed() >= cfg.publish_every {
                self.publish(now_s, &stats);
                last_publish = Instant::now();
            }
        }
        let now_s = started.elapsed().as_secs_f64();
        self.publish(now_s, &stats);
        Ok(self.summary(&stats, cfg, applied, last_epoch))
    }

    /// Sets the policy's constraints from the assignment (if any), narrowed to present variants.
    fn apply(
        &mut self,
        assignment: Option<&wire::msg::Assignment>,
        available: Option<&std::collections::BTreeSet<String>>,
        apps: &[String],
    ) {
        let can_offload = self.offloader.is_some();
        let mut c = match assignment {
            Some(a) => {
                tracing::info!(epoch = a.epoch, "following assignment");
                constraints::from_assignment(a, can_offload)
            }
            None => constraints::standalone(can_offload),
        };
        if self
            .offloader
            .as_ref()
            .is_some_and(|o| o.has_fixed_target())
        {
            c.offload_forbidden = false;
        }
        if let Some(available) = available {
            let names: Vec<String> = self
                .manifest
                .variants
                .iter()
                .map(|v| v.name.clone())
                .collect();
            constraints::restrict_to_available(&mut c, apps, &names, available);
        }
        self.policy.set_constraints(c);
    }

    /// A variant that cannot be loaded (missing or corrupt bytes) is reported to the fetcher and
    /// leaves the available set until it is fetched and verified again; the request is dropped
    /// rather than the node stopping.
    fn load_failed(&self, variant: &str, error: &crate::cache::CacheError) {
        tracing::warn!(variant, error = %error, "cannot load variant; dropping the request and refetching");
        let mut inner = self.shared.lock();
        if let Some(set) = inner.available.as_mut() {
            set.remove(variant);
        }
        inner.broken.insert(variant.to_string());
    }

    /// Serves one frame (every app due on it) and returns the dataset index of its image.
    pub(crate) fn serve_frame(
        &mut self,
        now_s: f64,
        frame_rate: f64,
        cfg: &ServeConfig,
        stats: &mut [AppStats],
        state: &mut DeviceState,
        spool: Option<&crate::spool::Spool>,
    ) -> anyhow::Result<usize> {
        let frame = self.frames.next(now_s);
        let pixels = self.data.image(frame.index);
        state.frame_trunks.clear();
        let mut embeddings: HashMap<String, Vec<f32>> = HashMap::new();
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
            stats[i].arrival(now_s, truth);
            state.energy_left_j = self.energy.left_j();
            state.cost_left_usd = (cfg.budgets.cost_usd
                - stats.iter().map(|s| s.cost_used_usd).sum::<f64>())
            .max(0.0);
            state.resident = self.resident_keys();
            let decision = self.policy.decide(now_s, app, state);
            let Decision::Run(run) = decision else {
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
            let cost = run_cost(&self.catalog, key, run.place, state);
            let t0 = Instant::now();
            let mut ran_variant = run.variant.clone();
            // `loaded_ms`: the variant had to be paged in, and this is how long it took.
            let (prediction, place, swapped_in, loaded_ms) = match run.place {
                Place::Device => {
                    let (model, swapped_in) = match self.cache.get(&run.variant) {
                        Ok(got) => got,
                        Err(e) => {
                            self.load_failed(&run.variant, &e);
                            stats[i].dropped += 1;
                            continue;
                        }
                    };
                    if !embeddings.contains_key(&run.variant) {
                        embeddings.insert(run.variant.clone(), model.embed(pixels)?);
                    }
                    let loaded_ms = swapped_in.then_some(model.load_ms);
                    let emb = &embeddings[&run.variant];
                    (
                        model.classify(app, emb)?,
                        Place::Device,
                        swapped_in,
                        loaded_ms,
                    )
                }
                Place::Server => match self.offload(app, &run.variant, pixels) {
                    Some(p) => (p, Place::Server, false, None),
                    None => {
                        // The server is slow, gone or refused: answer locally with the cheapest
                        // resident-or-present variant rather than drop the request.
                        ran_variant = self.local_fallback(app);
                        stats[i].offload_fallbacks += 1;
                        let (model, swapped_in) = match self.cache.get(&ran_variant) {
                            Ok(got) => got,
                            Err(e) => {
                                self.load_failed(&ran_variant, &e);
                                stats[i].dropped += 1;
                                continue;
                            }
                        };
                        let loaded_ms = swapped_in.then_some(model.load_ms);
                        let emb = model.embed(pixels)?;
                        (
                            model.classify(app, &emb)?,
                            Place::Device,
                            swapped_in,
                            loaded_ms,
                        )
                    }
                },
            };
            let latency_ms = t0.elapsed().as_secs_f64() * 1e3;
            // Paging is charged as measured: the profile's load energy in `cost` (charged when
            // the variant was not resident) is replaced by this load's measured time at the
            // class's paging power, so a load is never counted twice nor at a stale profile.
            let load_j = loaded_ms.map_or(0.0, |ms| self.loaded(&ran_variant, ms));
            let (energy_j, usd) = if place == run.place {
                (cost.energy_j - cost.load_j + load_j, cost.usd)
            } else {
                (cost.energy_j + load_j, 0.0)
            };
            self.energy.charge(energy_j);
            if let Some(t) = self.catalog.variant(key).trunk {
                state.frame_trunks.push((t, place));
            }
            if place == Place::Server {
                state.touch(&self.catalog, key, Place::Server);
            }
            let s = &mut stats[i];
            s.energy_used_j += energy_j;
            s.cost_used_usd += usd;
            s.answered(
                &ran_variant,
                prediction.label as usize == truth,
                latency_ms,
                place == Place::Server,
            );
            if let Some(spool) = spool {
                let result = wire::msg::InferenceResult {
                    seq: 0,
                    app: app.clone(),
                    at_unix_ms: unix_ms(),
                    label: prediction.label,
                    truth: u32::try_from(truth).ok(),
                    score: prediction.score,
                    variant: ran_variant.clone(),
                    place: match place {
                        Place::Device => wire::msg::PlaceTag::Device,
                        Place::Server => wire::msg::PlaceTag::Server,
                    },
                    energy_j,
                    cost_usd: usd,
                    latency_ms,
                };
                // A result the spool cannot hold is not accepted; serving goes on.
                if let Err(e) = spool.append(result) {
                    tracing::error!(error = %e, "cannot spool a result");
                    s.spool_failures += 1;
                }
            }
            let class = spec
                .classes
                .get(prediction.label as usize)
                .map(String::as_str);
            self.policy.observe(
                now_s,
                app,
                &Outcome {
                    class,
                    place: Some(place),
                    variant: Some(&run.variant),
                    energy_j,
                    cost_usd: usd,
                    swapped_in,
                },
            );
        }
        Ok(frame.index)
    }

    /// Folds a measured load of `variant` (`ms`) into the profiles: the smoothed figure
    /// replaces the catalog's load cost here and in the policy (copy-on-write, so the next
    /// decisions and charges use it). Returns this load's measured energy.
    fn loaded(&mut self, variant: &str, ms: f64) -> f64 {
        let measured_j = measured_load_j(&self.catalog, variant, ms);
        if let Some(e) = self.load_profiles.observe(&self.catalog, variant, ms) {
            let mut next = (*self.catalog).clone();
            if next.set_load_profile(variant, e.load_ms, e.load_j) {
                self.catalog = Arc::new(next);
            }
            self.policy
                .update_load_profile(variant, e.load_ms, e.load_j);
            tracing::debug!(
                variant,
                measured_ms = ms,
                smoothed_ms = e.load_ms,
                load_j = e.load_j,
                "load profile updated"
            );
        }
        measured_j
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

    /// The smallest variant already loaded, else the smallest present one.
    fn local_fallback(&self, app: &str) -> String {
        let resident = self.cache.resident();
        let available = self.shared.lock().available.clone();
        let cheapest = |names: &mut dyn Iterator<Item = String>| {
            names
                .filter_map(|n| {
                    self.catalog
                        .key(app, &n)
                        .map(|k| (self.catalog.variant(k).device_energy_j, n))
                })
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, n)| n)
        };
        cheapest(&mut resident.into_iter())
            .or_else(|| {
                cheapest(
                    &mut self
                        .manifest
                        .variants
                        .iter()
                        .map(|v| v.name.clone())
                        .filter(|n| available.as_ref().is_none_or(|set| set.contains(n))),
                )
            })
            .unwrap_or_default()
    }

    /// Every (app, loaded variant) key: a loaded variant serves all apps through its heads.
    fn resident_keys(&self) -> Vec<scheduler::catalog::VariantKey> {
        let names = self.cache.resident();
        self.catalog
            .apps
            .iter()
            .flat_map(|a| names.iter().filter_map(|n| self.catalog.key(&a.name, n)))
            .collect()
    }

    fn publish(&mut self, now_s: f64, stats: &[AppStats]) {
        let accepted = self
            .shared
            .lock()
            .spool
            .as_ref()
            .map_or(0, |s| s.accepted());
        let snapshot = Snapshot {
            spool: wire::msg::SpoolCounters {
                accepted,
                failures: stats.iter().map(|s| s.spool_failures).sum(),
            },
            battery: Some(self.energy.reading(unix_ms())),
            apps: stats.iter().map(|s| s.telemetry(now_s)).collect(),
            loaded_variants: self.cache.resident(),
            model_memory_budget_bytes: self.cache.budget_bytes(),
            load_profiles: self
                .load_profiles
                .iter()
                .map(|(variant, e)| wire::msg::LoadProfile {
                    variant: variant.to_string(),
                    load_ms: e.load_ms,
                    load_j: e.load_j,
                    loads: e.loads,
                })
                .collect(),
        };
        self.shared.lock().snapshot = snapshot;
    }

    fn summary(
        &self,
        stats: &[AppStats],
        cfg: &ServeConfig,
        applied: u64,
        last_epoch: u64,
    ) -> Summary {
        let requests: u64 = stats.iter().map(|s| s.requests).sum();
        let correct: u64 = stats.iter().map(|s| s.correct).sum();
        Summary {
            requests,
            accuracy: if requests == 0 {
                0.0
            } else {
                100.0 * correct as f64 / requests as f64
            },
            energy_used_j: self.energy.used_j,
            energy_budget_j: cfg.budgets.energy_j,
            cost_used_usd: stats.iter().map(|s| s.cost_used_usd).sum(),
            model_loads: self.cache.loads,
            assignments_applied: applied,
            last_epoch,
            results_accepted: 0,
            results_pending: 0,
            dropped: stats.iter().map(|s| s.dropped).sum(),
            spool_failures: stats.iter().map(|s| s.spool_failures).sum(),
            offload_fallbacks: stats.iter().map(|s| s.offload_fallbacks).sum(),
            served_offload: 0,
            models: None,
            apps: stats
                .iter()
                .map(|s| {
                    (
                        s.app.clone(),
                        AppSummary {
                            requests: s.requests,
                            correct: s.correct,
                            dropped: s.dropped,
                            spool_failures: s.spool_failures,
                            offloaded: s.offloaded,
                            offload_fallbacks: s.offload_fallbacks,
                            accuracy: s.accuracy_pct(),
                            energy_used_j: s.energy_used_j,
                            by_variant: s.by_variant.clone(),
                        },
                    )
                })
                .collect(),
        }
    }
}
