//! The specialised cascade's first stage on the device. When the assignment gives an app a
//! specialised head, the node has fetched it and its trunk variant is present, a device request
//! first runs that trunk (its embedding is shared with any app or fallback on the same trunk
//! this frame) and the head: one of its classes answers the request; "other" hands it to the
//! variant the per-request policy chose. The stage is charged the trunk variant's profiled
//! energy (its catalog head is comparable to the K+1-output head) plus any load as measured.

use std::sync::Arc;

use scheduler::catalog::Place;
use scheduler::policy::{Run, run_cost};
use scheduler::state::DeviceState;
use wire::head::{Head, Verdict};
use wire::msg::SpecialisedRun;

use super::infer::{self, InferError};
use super::{Ran, Server, energy};
use crate::engine::Prediction;
use crate::picture::Picture;
use crate::stats::AppStats;

/// What the first stage did: its answer (None: "other", or no head ready) and the energy it
/// was charged (already on the battery and the app's counters).
pub struct Stage {
    pub answer: Option<Ran>,
    pub energy_j: f64,
    /// The request ends here unanswered: "other" under a cascade that drops it.
    pub dropped: bool,
}

impl Stage {
    pub(super) fn skipped() -> Stage {
        Stage::skipped_after(0.0)
    }

    /// No answer, with `energy_j` already spent on the stage.
    pub(super) fn skipped_after(energy_j: f64) -> Stage {
        Stage {
            answer: None,
            energy_j,
            dropped: false,
        }
    }

    pub(super) fn answered(ran: Ran, energy_j: f64) -> Stage {
        Stage {
            answer: Some(ran),
            energy_j,
            dropped: false,
        }
    }

    pub(super) fn dropped_after(energy_j: f64) -> Stage {
        Stage {
            answer: None,
            energy_j,
            dropped: true,
        }
    }
}

/// Everything a frame needs to run the stage.
pub struct Frame<'f> {
    pub now_s: f64,
    pub picture: &'f Picture,
}

impl Server<'_> {
    /// The head for `app` if it is ready to run.
    fn ready_head(&self, app: &str) -> Option<(SpecialisedRun, Arc<Head>)> {
        let spec = self.follower.specialised(app)?;
        if self
            .follower
            .present()
            .is_some_and(|p| !p.contains(&spec.trunk_variant))
        {
            return None;
        }
        let head = self.handles.heads.get(&spec.head_sha256)?;
        Some((spec.clone(), head))
    }

    /// Runs the first stage for a device request, if a head is ready.
    pub(super) fn cascade_first(
        &mut self,
        app: &str,
        run: &Run,
        frame: Frame<'_>,
        state: &mut DeviceState,
        stats: &mut AppStats,
    ) -> anyhow::Result<Stage> {
        if run.place != Place::Device {
            return Ok(Stage::skipped());
        }
        let Some((spec, head)) = self.ready_head(app) else {
            return Ok(Stage::skipped());
        };
        let Some(key) = self.catalog.key(app, &spec.trunk_variant) else {
            return Ok(Stage::skipped());
        };
        let cost = run_cost(&self.catalog, key, Place::Device, state);
        let trunk = &spec.trunk_variant;
        let loaded_ms = match infer::embed(&mut self.cache, trunk, frame.picture) {
            Ok(ms) => ms,
            Err(InferError::Load(e)) => {
                tracing::warn!(variant = %trunk, error = %e, "cannot load the specialised trunk");
                self.handles.models.mark_broken(trunk);
                return Ok(Stage::skipped());
            }
            Err(InferError::Engine(e)) => return Err(e.into()),
        };
        let load_j = loaded_ms.map_or(0.0, |ms| {
            self.learning
                .observe(&mut self.catalog, self.policy.as_mut(), trunk, ms)
        });
        let (energy_j, _) = energy::charged(&cost, Place::Device, Place::Device, load_j);
        self.energy.charge(energy_j);
        stats.energy_used_j += energy_j;
        if let Some(t) = self.catalog.variant(key).trunk {
            state.frame_trunks.push((t, Place::Device));
        }
        let verdict = match infer::frame_embedding(&mut self.cache, trunk) {
            Ok(embedding) => head.verdict(embedding),
            Err(_) => return Ok(Stage::skipped_after(energy_j)),
        };
        let answer = match verdict {
            Ok(Verdict::Class { class, score }) => {
                stats.cascade.answered += 1;
                stats.cascade.first_answer_s.get_or_insert(frame.now_s);
                Some(Ran {
                    variant: spec.variant,
                    place: Place::Device,
                    prediction: Prediction {
                        label: class,
                        score,
                    },
                    loaded_ms: None,
                    class: None,
                    identity: None,
                })
            }
            Ok(Verdict::Other) => {
                stats.cascade.fell_back += 1;
                None
            }
            Err(e) => {
                tracing::warn!(variant = %spec.variant, error = %e, "specialised head does not fit its trunk");
                None
            }
        };
        Ok(Stage {
            answer,
            energy_j,
            dropped: false,
        })
    }
}
