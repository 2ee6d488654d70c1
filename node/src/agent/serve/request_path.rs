//! One request through the node: the apps due on it each get a policy decision, a run (the
//! cascade's first stage, then the planned variant, on the device or offloaded), their energy
//! and cost charged, their answer spooled and counted, and the caller told. The replay's frames
//! come here as requests too ([`Server::serve_frame`]).

use std::time::{Duration, Instant};

use scheduler::catalog::Place;
use scheduler::policy::{Decision, Outcome, Run, run_cost};
use scheduler::state::DeviceState;

use super::face::{FaceCall, with_face};
use super::{Answer, ServeConfig, Server, cascade, decide, energy};
use crate::picture::Picture;
use crate::request::{AppSet, Reply, Served};
use crate::stats::AppStats;

/// A request's facts the loop needs besides its picture.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub apps: AppSet,
    pub truth: Option<u8>,
    pub skewed: bool,
    pub arrived: Instant,
    pub deadline: Instant,
}

/// How long a replayed frame may wait: it is drawn when due and served at once, so only a
/// stalled loop (a model load, a slow offload) makes it late.
const REPLAY_DEADLINE: Duration = Duration::from_secs(2);

/// Tells the caller, if it waits for an answer (it may have gone: nothing to tell then).
fn tell(reply: &mut Option<tokio::sync::oneshot::Sender<Reply>>, r: Reply) {
    if let Some(tx) = reply.take() {
        let _ = tx.send(r);
    }
}

impl Server<'_> {
    /// The replay as a client: draws the next frame into `picture`, picks the apps due on it at
    /// their rates and serves it as a request. Returns the dataset index of its image.
    pub fn serve_frame(
        &mut self,
        picture: &mut Picture,
        now_s: f64,
        frame_rate: f64,
        cfg: &ServeConfig,
        stats: &mut [AppStats],
        state: &mut DeviceState,
    ) -> anyhow::Result<usize> {
        let frame = self.frames.next(now_s);
        self.data.picture_into(frame.index, picture);
        let mut apps = AppSet::default();
        for (i, (_, rate)) in cfg.apps.iter().enumerate() {
            // Face apps take camera frames (video, API), not the replay's Fashion-MNIST images.
            if self.frames.app_due(*rate, frame_rate) && stats[i].face.is_none() {
                apps.insert(i);
            }
        }
        let arrived = self.clock.now();
        let meta = Meta {
            apps,
            truth: Some(frame.label),
            skewed: frame.skewed,
            arrived,
            deadline: arrived + REPLAY_DEADLINE,
        };
        self.serve_request(picture, meta, None, now_s, cfg, stats, state)?;
        Ok(frame.index)
    }

    /// Serves one request: every app due on it, sharing one trunk run per variant.
    #[allow(clippy::too_many_arguments)]
    pub fn serve_request(
        &mut self,
        picture: &Picture,
        meta: Meta,
        mut reply: Option<tokio::sync::oneshot::Sender<Reply>>,
        now_s: f64,
        cfg: &ServeConfig,
        stats: &mut [AppStats],
        state: &mut DeviceState,
    ) -> anyhow::Result<()> {
        state.frame_trunks.clear();
        self.cache.begin_frame();
        let late = self.clock.now() > meta.deadline;
        for (i, (app, _)) in cfg.apps.iter().enumerate() {
            if !meta.apps.contains(i) {
                continue;
            }
            let Some(spec) = self.manifest.app(app) else {
                continue;
            };
            let truth = meta
                .truth
                .and_then(|l| spec.label_map.get(l as usize).copied());
            stats[i].arrival(now_s, meta.skewed);
            // A face app has no label map: its requests are unlabelled.
            stats[i].labelled_requests += u64::from(truth.is_some());
            if late {
                stats[i].dropped += 1;
                stats[i].late += 1;
                tell(&mut reply, Reply::Late);
                continue;
            }
            let left_j = self.energy.left_j();
            decide::refresh_state(state, left_j, cfg.budgets.cost_usd, stats);
            decide::resident_keys(&self.catalog, &self.cache, &mut state.resident);
            let Decision::Run(run) = self.policy.decide(now_s, app, state) else {
                stats[i].dropped += 1;
                self.policy.observe(now_s, app, &Outcome::default());
                tell(&mut reply, Reply::Dropped);
                continue;
            };
            let t0 = self.clock.now();
            let call = FaceCall {
                app,
                now_s,
                picture,
            };
            let recent = self.recent_spec(&run);
            let stage = match &recent {
                Some(spec) => self.recent_first(call, &run, spec, state, &mut stats[i])?,
                None => self.cascade_first(
                    app,
                    &run,
                    cascade::Frame { now_s, picture },
                    state,
                    &mut stats[i],
                )?,
            };
            if stage.dropped {
                stats[i].dropped += 1;
                let spent = Outcome {
                    energy_j: stage.energy_j,
                    ..Outcome::default()
                };
                self.policy.observe(now_s, app, &spent);
                tell(&mut reply, Reply::Dropped);
                continue;
            }
            // What runs when the first stage did not answer: a recent-gallery cascade's fallback
            // (its first stage could not run), else the decision itself.
            let general = match (&recent, &run.cascade) {
                (Some(_), Some(c)) => Run {
                    variant: c.fallback.clone(),
                    place: Place::Device,
                    cascade: None,
                },
                _ => run.clone(),
            };
            let Some(key) = self.catalog.key(app, &general.variant) else {
                anyhow::bail!(
                    "policy chose {} which the catalog lacks for {app}",
                    general.variant
                );
            };
            // Costed after the first stage, so a trunk it already ran is not charged twice.
            let cost = run_cost(&self.catalog, key, general.place, state);
            let cascaded = stage.answer.is_some();
            let ran = match stage.answer {
                Some(r) => Some(r),
                None => self.execute(call, &general, &mut stats[i])?,
            };
            let Some(ran) = ran else {
                stats[i].dropped += 1;
                tell(&mut reply, Reply::Dropped);
                continue;
            };
            let done = self.clock.now();
            let latency_ms = done.duration_since(t0).as_secs_f64() * 1e3;
            let (general_j, usd) = if cascaded {
                (0.0, 0.0)
            } else {
                let load_j = ran.loaded_ms.map_or(0.0, |ms| {
                    self.learning
                        .observe(&mut self.catalog, self.policy.as_mut(), &ran.variant, ms)
                });
                let (j, usd) = energy::charged(&cost, general.place, ran.place, load_j);
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
            // Face answers stay out of the class histogram the coordinator specialises heads
            // from; the node's own recent galleries specialise faces.
            if s.face.is_none() {
                s.labelled(now_s, ran.prediction.label as usize);
            }
            s.cost_used_usd += usd;
            let correct = truth.is_some_and(|t| ran.prediction.label as usize == t);
            s.answered(
                &ran.variant,
                correct,
                latency_ms,
                ran.place == Place::Server,
            );
            let answer = Answer {
                app,
                prediction: ran.prediction,
                truth: truth.and_then(|t| u32::try_from(t).ok()),
                variant: &ran.variant,
                place: ran.place,
                energy_j,
                cost_usd: usd,
                latency_ms,
            };
            if !self.results.record(self.clock.as_ref(), &answer) {
                s.spool_failures += 1;
            }
            let class = match &ran.class {
                Some(c) => Some(c.as_str()),
                None => spec
                    .classes
                    .get(ran.prediction.label as usize)
                    .map(String::as_str),
            };
            self.policy.observe(
                now_s,
                app,
                &Outcome {
                    // A face app's skew window counts who was seen, not the answered class.
                    class: if s.face.is_some() {
                        ran.identity.as_deref()
                    } else {
                        class
                    },
                    place: Some(ran.place),
                    variant: Some(&run.variant),
                    energy_j,
                    cost_usd: usd,
                    swapped_in: ran.loaded_ms.is_some(),
                },
            );
            if reply.is_some() {
                tell(
                    &mut reply,
                    Reply::Served(Served {
                        prediction: ran.prediction,
                        class: class.unwrap_or_default().to_string(),
                        variant: ran.variant.clone(),
                        place: ran.place,
                        latency_ms: done.duration_since(meta.arrived).as_secs_f64() * 1e3,
                        plan_epoch: self.follower.last_epoch,
                    }),
                );
            }
            with_face(&mut stats[i], |s, face| {
                self.audit_face(app, &ran, picture, state, s, face)
            })
            .unwrap_or(Ok(()))?;
        }
        Ok(())
    }
}
