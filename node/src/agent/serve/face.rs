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
use crate::face_variant::{UNKNOWN, is_face_app};
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
struct Answered {
    prediction: Prediction,
    class: String,
    loaded_ms: Option<f64>,
}

impl Server<'_> {
    /// Runs face variant `variant` on `picture` (on the device whatever the decision's place:
    /// face apps are device-only). `None`: the variant could not be loaded (reported to the
    /// fetcher; the request is dropped).
    pub(super) fn execute_face(
        &mut self,
        variant: &str,
        picture: &Picture,
        face: &mut FaceStats,
    ) -> anyhow::Result<Option<Ran>> {
        let list = self.handles.watchlist.current();
        let Some(a) = self.answer_face(variant, picture, &list, face, true)? else {
            return Ok(None);
        };
        Ok(Some(Ran {
            variant: variant.to_string(),
            place: Place::Device,
            prediction: a.prediction,
            loaded_ms: a.loaded_ms,
            class: Some(a.class),
        }))
    }

    /// `variant`'s answer, timed into `face`; with `count_seen`, the names recognised in the
    /// frame are counted as seen.
    fn answer_face(
        &mut self,
        variant: &str,
        picture: &Picture,
        list: &Watchlist,
        face: &mut FaceStats,
        count_seen: bool,
    ) -> anyhow::Result<Option<Answered>> {
        let (model, swapped_in) = match self.cache.get_face(variant) {
            Ok(m) => m,
            // Over the memory budget: the bytes are fine, nothing to refetch.
            Err(e @ CacheError::TooLarge { .. }) => {
                tracing::warn!(variant, error = %e, "face variant does not fit the model memory");
                return Ok(None);
            }
            Err(e) => {
                tracing::warn!(variant, error = %e, "cannot load face variant; dropping the request and refetching");
                self.handles.models.mark_broken(variant);
                return Ok(None);
            }
        };
        let started = Instant::now();
        // ONNX Runtime failing on a loaded model stops serving, as for a gray variant.
        let answer = model.answer(picture, &list.gallery)?;
        face.timed(variant, answer.faces, started.elapsed().as_secs_f64() * 1e3);
        let loaded_ms = swapped_in
            .then(|| self.cache.load_ms.get(variant).copied())
            .flatten();
        let label = (answer.label != UNKNOWN)
            .then(|| list.label_of(answer.label as usize))
            .flatten();
        if count_seen {
            face.faces += answer.faces as u64;
            let mut names: Vec<u32> = answer
                .named
                .iter()
                .filter_map(|&e| list.label_of(e))
                .collect();
            names.sort_unstable();
            names.dedup();
            for name in names.iter().filter_map(|&l| list.name(l)) {
                *face.seen.entry(name.to_string()).or_default() += 1;
            }
        }
        // A recognised face's score: how far inside the threshold it is (1 = identical).
        let score = label.map_or(0.0, |_| {
            (1.0 - answer.distance / list.gallery.threshold).clamp(0.0, 1.0)
        });
        Ok(Some(Answered {
            prediction: Prediction {
                label: label.unwrap_or(UNKNOWN),
                score,
            },
            class: label
                .and_then(|l| list.name(l))
                .unwrap_or(UNKNOWN_CLASS)
                .to_string(),
            loaded_ms,
        }))
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
    ) -> anyhow::Result<()> {
        let Some(face) = stats.face.as_mut() else {
            return Ok(());
        };
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
        let Some(key) = self.catalog.key(app, &reference) else {
            return Ok(());
        };
        let cost = run_cost(&self.catalog, key, Place::Device, state);
        let list = self.handles.watchlist.current();
        let Some(a) = self.answer_face(&reference, picture, &list, face, false)? else {
            return Ok(());
        };
        let load_j = a.loaded_ms.map_or(0.0, |ms| {
            self.learning
                .observe(&mut self.catalog, self.policy.as_mut(), &reference, ms)
        });
        let (j, _) = energy::charged(&cost, Place::Device, Place::Device, load_j);
        self.energy.charge(j);
        stats.energy_used_j += j;
        face.audited += 1;
        face.agreed += u64::from(ran.class.as_deref() == Some(a.class.as_str()));
        Ok(())
    }
}
