//! A face variant specialised to the people seen recently (`VariantSpec::recent`): its cheaper
//! descriptor network matches faces against a small gallery of its own descriptors, labelled
//! with what the app's general variant answered for those people; a face not in that gallery
//! falls back to the general variant (`vision::face::recent`). The figures come from
//! `mcdnn-node catalog face-eval`, which replays the videos through exactly that cascade.

use serde::{Deserialize, Serialize};

use super::ManifestError;

/// Most identities a recent gallery may hold: the point is a *small* gallery (the few people in
/// front of one camera), and every face is compared with each of them.
pub const MAX_RECENT_IDENTITIES: usize = 16;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecentSpec {
    /// Identities the gallery holds; also the N of the top-N share the scheduler's skew window
    /// measures (at most N identities dominating the stream).
    pub identities: usize,
    /// Largest distance between this network's descriptors that counts as the same person.
    pub threshold: f32,
    /// Seconds an identity not seen again is remembered.
    pub window_s: f64,
    /// Percent of the faces the gallery answered (hits) whose answer equals the reference's.
    pub hit_accuracy: f64,
    /// Percent of faces the gallery answered in the evaluation (the rest fell back).
    pub hit_rate: f64,
}

impl RecentSpec {
    pub(super) fn validate(&self, variant: &str) -> Result<(), ManifestError> {
        let bad = |what: &str| {
            Err(ManifestError::Invalid(format!(
                "variant {variant}: recent gallery {what}"
            )))
        };
        if !(1..=MAX_RECENT_IDENTITIES).contains(&self.identities) {
            return bad(&format!(
                "holds {} identities, allowed 1..={MAX_RECENT_IDENTITIES}",
                self.identities
            ));
        }
        if !(self.threshold.is_finite() && self.threshold > 0.0) {
            return bad("threshold must be a positive distance");
        }
        if !(self.window_s.is_finite() && self.window_s > 0.0 && self.window_s <= 3600.0) {
            return bad("window must be 0-3600 s");
        }
        let percent = |x: f64| x.is_finite() && (0.0..=100.0).contains(&x);
        if !percent(self.hit_accuracy) || !percent(self.hit_rate) {
            return bad("figures must be percentages");
        }
        Ok(())
    }
}
