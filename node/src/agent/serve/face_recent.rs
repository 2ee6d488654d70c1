//! Face specialisation on the device: the first stage of a recent-gallery cascade. The policy
//! chooses the cascade (a `RecentSpec` variant with a general fallback) when the skew window
//! says a few identities fill the stream and the cheaper stage pays off under the budget.
//!
//! The stage detects the frame's faces once and describes them with the cheap network. If every
//! face is within the threshold of someone in the recent gallery, the gallery's labels answer
//! (a hit). Otherwise (a miss, the cascade's "other") the fallback describes the same faces (no
//! second detection), answers from the watchlist, and each face's cheap descriptor is remembered
//! under its identity with that answer, unless that answer sits near the watchlist's line
//! (`vision::face::recent::confident`). A cascade that drops "other" drops the request instead.
//! Each stage is charged its variant's profiled energy, as the policy's cascade model costs it.

use std::time::Instant;

use scheduler::catalog::Place;
use scheduler::policy::Run;
use scheduler::state::DeviceState;
use vision::face::recent::confident;
use vision::face::{Descriptor, Face};
use wire::manifest::RecentSpec;

use super::cascade::Stage;
use super::face::{FaceCall, UNKNOWN_CLASS, named, score, with_face};
use super::{Ran, Server};
use crate::engine::Prediction;
use crate::face_memory::{FaceLabel, NOBODY};
use crate::face_variant::{FaceAnswer, UNKNOWN};
use crate::handles::Watchlist;
use crate::stats::{AppStats, FaceStats};

impl Server<'_> {
    /// The recent gallery `run` heads, when it is a face cascade with one.
    pub(super) fn recent_spec(&self, run: &Run) -> Option<RecentSpec> {
        run.cascade.as_ref()?;
        self.manifest.variant(&run.variant)?.recent.clone()
    }

    /// Runs the first stage (and on a miss the fallback) for one face request.
    pub(super) fn recent_first(
        &mut self,
        call: FaceCall<'_>,
        run: &Run,
        spec: &RecentSpec,
        state: &mut DeviceState,
        stats: &mut AppStats,
    ) -> anyhow::Result<Stage> {
        let Some(cascade) = run.cascade.as_ref() else {
            return Ok(Stage::skipped());
        };
        let plan = RecentCascade {
            cheap: &run.variant,
            fallback: &cascade.fallback,
            drop_other: cascade.drop_other,
            spec,
        };
        with_face(stats, |stats, face| {
            self.recent_stage(call, &plan, state, stats, face)
        })
        .unwrap_or(Ok(Stage::skipped()))
    }

    fn recent_stage(
        &mut self,
        call: FaceCall<'_>,
        plan: &RecentCascade<'_>,
        state: &mut DeviceState,
        stats: &mut AppStats,
        face: &mut FaceStats,
    ) -> anyhow::Result<Stage> {
        let list = self.handles.watchlist.current();
        self.faces.sync(list.version);
        let cheap = plan.cheap;
        let Some((model, swapped_in)) = self.face_model(cheap)? else {
            return Ok(Stage::skipped());
        };
        let started = Instant::now();
        let faces = model.detect(call.picture)?;
        let descriptors = model.describe(call.picture, &faces)?;
        face.timed(cheap, faces.len(), started.elapsed().as_secs_f64() * 1e3);
        let loaded_ms = swapped_in
            .then(|| self.cache.load_ms.get(cheap).copied())
            .flatten();
        let energy_j = self.charge_face(call.app, cheap, loaded_ms, state, stats);
        let gallery = self.faces.gallery(call.app, cheap, plan.spec);
        let hits: Option<Vec<(String, FaceLabel)>> = descriptors
            .iter()
            .map(|d| {
                gallery
                    .lookup(call.now_s, d)
                    .map(|h| (h.key.to_string(), h.label.clone()))
            })
            .collect();
        let Some(hits) = hits else {
            face.recent.misses += 1;
            if plan.drop_other {
                return Ok(Stage::dropped_after(energy_j));
            }
            let miss = Miss {
                list: &list,
                faces: &faces,
                cheap: descriptors,
                energy_j,
            };
            return self.recent_miss(call, plan, miss, state, stats, face);
        };
        face.recent.hits += 1;
        let names = hits.iter().filter(|(_, l)| l.label != UNKNOWN);
        face.saw(faces.len(), names.map(|(_, l)| l.class.as_str()));
        // The frame's answer is its most confidently named face, else its first.
        let answer = (hits.iter())
            .filter(|(_, l)| l.label != UNKNOWN)
            .max_by(|a, b| a.1.score.total_cmp(&b.1.score))
            .or(hits.first());
        let (identity, label) = match answer {
            Some((key, l)) => (key.clone(), l.clone()),
            None => (NOBODY.to_string(), unknown()),
        };
        let ran = Ran {
            variant: cheap.to_string(),
            place: Place::Device,
            prediction: Prediction {
                label: label.label,
                score: label.score,
            },
            loaded_ms,
            class: Some(label.class),
            identity: Some(identity),
        };
        Ok(Stage::answered(ran, energy_j))
    }

    /// A miss: the fallback describes the faces the first stage found and answers from the
    /// watchlist; each confidently answered face's cheap descriptor is remembered.
    fn recent_miss(
        &mut self,
        call: FaceCall<'_>,
        plan: &RecentCascade<'_>,
        miss: Miss<'_>,
        state: &mut DeviceState,
        stats: &mut AppStats,
        face: &mut FaceStats,
    ) -> anyhow::Result<Stage> {
        let list = miss.list;
        let fallback = plan.fallback;
        let Some((model, swapped_in)) = self.face_model(fallback)? else {
            return Ok(Stage::dropped_after(miss.energy_j));
        };
        let started = Instant::now();
        let general = model.describe(call.picture, miss.faces)?;
        // Timed apart from the fallback's own runs: here it only describes (no detection).
        let ms = started.elapsed().as_secs_f64() * 1e3;
        face.timed(
            &format!("{fallback} after {}", plan.cheap),
            miss.faces.len(),
            ms,
        );
        let answer = FaceAnswer::matching(general, &list.gallery);
        let a = self.interpret(&answer, call, list, face, swapped_in.then_some(fallback));
        let energy_j =
            miss.energy_j + self.charge_face(call.app, fallback, a.loaded_ms, state, stats);
        let window_s = self.catalog.constants.skew_window_s;
        for (i, cheap_descriptor) in miss.cheap.into_iter().enumerate() {
            let m = &answer.matches[i];
            if !confident(m.distance, list.gallery.threshold) {
                continue;
            }
            let entry = m.entry.and_then(|e| u32::try_from(e).ok());
            let (label, class) = named(list, entry.unwrap_or(UNKNOWN));
            let identity = if answer.best == Some(i) {
                a.identity.clone()
            } else {
                let descriptor = &answer.descriptors[i];
                (self.faces).identity(call.app, call.now_s, class, descriptor, window_s)
            };
            let remembered = FaceLabel {
                label: label.unwrap_or(UNKNOWN),
                class: class.unwrap_or(UNKNOWN_CLASS).to_string(),
                score: label.map_or(0.0, |_| score(m.distance, list.gallery.threshold)),
            };
            (self.faces.gallery(call.app, plan.cheap, plan.spec)).remember(
                call.now_s,
                &identity,
                remembered,
                cheap_descriptor,
            );
        }
        let ran = Ran {
            variant: fallback.to_string(),
            place: Place::Device,
            prediction: a.prediction,
            loaded_ms: a.loaded_ms,
            class: Some(a.class),
            identity: Some(a.identity),
        };
        Ok(Stage::answered(ran, energy_j))
    }
}

/// The cascade the policy chose: the recent-gallery variant, its fallback, and its gallery.
struct RecentCascade<'a> {
    cheap: &'a str,
    fallback: &'a str,
    drop_other: bool,
    spec: &'a RecentSpec,
}

/// What the first stage leaves a miss: the faces found, their cheap descriptors, and the
/// energy already charged.
struct Miss<'a> {
    /// The watchlist the first stage matched against (labels index into it).
    list: &'a Watchlist,
    faces: &'a [Face],
    cheap: Vec<Descriptor>,
    energy_j: f64,
}

fn unknown() -> FaceLabel {
    FaceLabel {
        label: UNKNOWN,
        class: UNKNOWN_CLASS.to_string(),
        score: 0.0,
    }
}
