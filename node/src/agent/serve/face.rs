//! A face app's request on the device: the chosen face variant (detector, aligned crops,
//! descriptors) matched against the watchlist the coordinator pushed; the answer is the
//! nearest name within the threshold (its index in the list) or unknown. Every K-th answered
//! request is audited: the app's reference variant (the catalog's `full`-kind face variant)
//! runs on the same frame, its energy charged like any inference, and the two answers are
//! compared by name. Face requests have no ground truth, so the audit is their accuracy.
//!
//! Face requests never leave the device (the offload protocol carries the catalog's gray
//! input): the follower marks face apps device-only, so the policy never picks the server.

use std::time::Instant;

use scheduler::catalog::{Catalog, Place};
use scheduler::policy::run_cost;
use scheduler::state::DeviceState;
use wire::manifest::Manifest;

use super::{Ran, Server, energy};
use crate::cache::CacheError;
use crate::engine::Prediction;
use crate::face_memory::NOBODY;
use crate::face_variant::{FaceAnswer, FaceVariant, UNKNOWN, is_face_app};
use crate::handles::Watchlist;
use crate::picture::Picture;
use crate::stats::{AppStats, FaceStats};

/// The class a face app answers when nobody on the watchlist is recognised.
pub const UNKNOWN_CLASS: &str = "unknown";

/// A face app's counters, `None` for a gray app. Its reference is the `full`-kind face variant
/// that serves it.
pub fn stats_for(
    manifest: &Manifest,
    catalog: &Catalog,
    app: &str,
    audit_every: u64,
) -> Option<FaceStats> {
    if !is_face_app(manifest, app) {
        return None;
    }
    let reference = manifest
        .variants_for(app)
        .find(|v| v.kind == "full" && catalog.key(app, &v.name).is_some())
        .map(|v| v.name.clone());
    Some(FaceStats {
        reference,
        audit_every,
        ..FaceStats::default()
    })
}

/// One face variant's answer for a frame.
pub(super) struct Answered {
    pub prediction: Prediction,
    pub class: String,
    pub loaded_ms: Option<f64>,
    /// Who the answer is about ([`FaceMemory::identity`], or [`NOBODY`]).
    pub identity: String,
}

/// Where a face request is served: its app and the request's time.
#[derive(Clone, Copy)]
pub(super) struct FaceCall<'c> {
    pub app: &'c str,
    pub now_s: f64,
    pub picture: &'c Picture,
}

impl Server<'_> {
    /// Runs face variant `variant` on the call's frame (on the device whatever the decision's
    /// place: face apps are device-only). `None`: the variant could not be loaded (reported to
    /// the fetcher; the request is dropped).
    pub(super) fn execute_face(
        &mut self,
        variant: &str,
        call: FaceCall<'_>,
        face: &mut FaceStats,
    ) -> anyhow::Result<Option<Ran>> {
        let list = self.handles.watchlist.current();
        self.faces.sync(list.version);
        let Some((model, swapped_in)) = self.face_model(variant)? else {
            return Ok(None);
        };
        let started = Instant::now();
        // ONNX Runtime failing on a loaded model stops serving, as for a gray variant.
        let answer = model.answer(call.picture, &list.gallery)?;
        face.timed(variant, answer.faces, started.elapsed().as_secs_f64() * 1e3);
        let a = self.interpret(&answer, call, &list, face, swapped_in.then_some(variant));
        Ok(Some(Ran {
            variant: variant.to_string(),
            place: Place::Device,
            prediction: a.prediction,
            loaded_ms: a.loaded_ms,
            class: Some(a.class),
            identity: Some(a.identity),
        }))
    }

    /// The face variant `variant`, loaded if needed (`true`: it was swapped in now). `None`: it
    /// does not fit the memory budget, or cannot be loaded (then reported to the fetcher).
    pub(super) fn face_model(
        &mut self,
        variant: &str,
    ) -> anyhow::Result<Option<(&mut FaceVariant, bool)>> {
        match self.cache.get_face(variant) {
            Ok(m) => Ok(Some(m)),
            // Over the memory budget: the bytes are fine, nothing to refetch.
            Err(e @ CacheError::TooLarge { .. }) => {
                tracing::warn!(variant, error = %e, "face variant does not fit the model memory");
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(variant, error = %e, "cannot load face variant; dropping the request and refetching");
                self.handles.models.mark_broken(variant);
                Ok(None)
            }
        }
    }

    /// Turns a general face variant's `answer` into the served prediction and class, counts the
    /// names seen (when the answer is served, not audited) and names who it is about.
    /// `swapped_in`: the variant that was loaded for it, whose load time is reported.
    pub(super) fn interpret(
        &mut self,
        answer: &FaceAnswer,
        call: FaceCall<'_>,
        list: &Watchlist,
        face: &mut FaceStats,
        swapped_in: Option<&str>,
    ) -> Answered {
        let loaded_ms = swapped_in.and_then(|v| self.cache.load_ms.get(v).copied());
        let (label, class) = named(list, answer.label);
        let class = class.map(str::to_string);
        let names = (answer.named.iter())
            .filter_map(|&e| list.label_of(e))
            .filter_map(|l| list.name(l));
        face.saw(answer.faces, names);
        let identity = match answer.best {
            Some(i) => self.faces.identity(
                call.app,
                call.now_s,
                class.as_deref(),
                &answer.descriptors[i],
                self.catalog.constants.skew_window_s,
            ),
            None => NOBODY.to_string(),
        };
        Answered {
            prediction: Prediction {
                label: label.unwrap_or(UNKNOWN),
                score: label.map_or(0.0, |_| score(answer.distance, list.gallery.threshold)),
            },
            class: class.unwrap_or_else(|| UNKNOWN_CLASS.to_string()),
            loaded_ms,
            identity,
        }
    }

    /// After `ran` answered a face request: if an audit is due, runs the reference variant on
    /// the same frame, charges its energy to the battery and the app, and counts whether it
    /// named the same person. When the reference itself answered, it agrees by construction and
    /// is not run again.
    pub(super) fn audit_face(
        &mut self,
        app: &str,
        ran: &Ran,
        picture: &Picture,
        state: &mut DeviceState,
        stats: &mut AppStats,
        face: &mut FaceStats,
    ) -> anyhow::Result<()> {
        if !face.audit_due() {
            return Ok(());
        }
        let Some(reference) = face.reference.clone() else {
            return Ok(());
        };
        if reference == ran.variant {
            face.audited += 1;
            face.agreed += 1;
            return Ok(());
        }
        let list = self.handles.watchlist.current();
        let Some((model, swapped_in)) = self.face_model(&reference)? else {
            return Ok(());
        };
        let started = Instant::now();
        let answer = model.answer(picture, &list.gallery)?;
        face.timed(
            &reference,
            answer.faces,
            started.elapsed().as_secs_f64() * 1e3,
        );
        let (_, class) = named(&list, answer.label);
        let loaded_ms = swapped_in
            .then(|| self.cache.load_ms.get(&reference).copied())
            .flatten();
        self.charge_face(app, &reference, loaded_ms, state, stats);
        face.audited += 1;
        face.agreed += u64::from(ran.class.as_deref() == Some(class.unwrap_or(UNKNOWN_CLASS)));
        Ok(())
    }

    /// Charges one device run of face variant `variant` (its profiled energy; a load as
    /// measured) to the battery and the app; returns the joules.
    pub(super) fn charge_face(
        &mut self,
        app: &str,
        variant: &str,
        loaded_ms: Option<f64>,
        state: &DeviceState,
        stats: &mut AppStats,
    ) -> f64 {
        let Some(key) = self.catalog.key(app, variant) else {
            return 0.0;
        };
        let cost = run_cost(&self.catalog, key, Place::Device, state);
        let load_j = loaded_ms.map_or(0.0, |ms| {
            self.learning
                .observe(&mut self.catalog, self.policy.as_mut(), variant, ms)
        });
        let (j, _) = energy::charged(&cost, Place::Device, Place::Device, load_j);
        self.energy.charge(j);
        stats.energy_used_j += j;
        j
    }
}

/// Runs `f` on a face app's counters beside the rest of its stats (taken out for the call, so
/// both can be borrowed); `None` for a gray app.
pub(super) fn with_face<T>(
    stats: &mut AppStats,
    f: impl FnOnce(&mut AppStats, &mut FaceStats) -> T,
) -> Option<T> {
    let mut face = stats.face.take()?;
    let out = f(stats, &mut face);
    stats.face = Some(face);
    Some(out)
}

/// The watchlist label and name a matched gallery `entry` stands for (`UNKNOWN`: none).
pub(super) fn named(list: &Watchlist, entry: u32) -> (Option<u32>, Option<&str>) {
    let label = (entry != UNKNOWN)
        .then(|| list.label_of(entry as usize))
        .flatten();
    (label, label.and_then(|l| list.name(l)))
}

/// A recognised face's score: how far inside the threshold it is (1 = identical).
pub(super) fn score(distance: f32, threshold: f32) -> f32 {
    (1.0 - distance / threshold).clamp(0.0, 1.0)
}
