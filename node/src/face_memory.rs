//! What a node remembers of the faces it saw, in memory only, per face app:
//! - the recent gallery of each recent-gallery variant (`wire::manifest::RecentSpec`): the
//!   cheap network's descriptors of the people seen lately, each labelled with what the general
//!   variant answered for them;
//! - strangers: unknown faces grouped into people (`vision::face::Strangers`), so the identity
//!   the policy's skew window records tells one stranger from a crowd.
//!
//! Both forget a person not seen for their window, and everything when the watchlist changes
//! (a remembered label is an index into the list it was answered from). Nothing is persisted:
//! a stolen camera keeps no record of who it saw.

use std::collections::BTreeMap;

use vision::face::recent::STRANGER_DISTANCE;
use vision::face::{Descriptor, RecentGallery, RecentLimits, Strangers};
use wire::manifest::RecentSpec;

/// What the general variant answered for a remembered person: served again on a hit.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceLabel {
    /// The watchlist label, or `face_variant::UNKNOWN`.
    pub label: u32,
    /// The watchlist name, or "unknown".
    pub class: String,
    pub score: f32,
}

/// The identity recorded for a frame without faces: the stream is "nobody", which the cascade's
/// first stage answers alone (the detector finds nothing to describe).
pub const NOBODY: &str = "nobody";

#[derive(Default)]
pub struct FaceMemory {
    watchlist_version: u64,
    /// Per (app, variant).
    recent: BTreeMap<(String, String), RecentGallery<FaceLabel>>,
    /// Per app.
    strangers: BTreeMap<String, Strangers>,
}

impl FaceMemory {
    /// Forgets everything when the watchlist is not the one the memory was answered from.
    pub fn sync(&mut self, watchlist_version: u64) {
        if watchlist_version != self.watchlist_version {
            self.recent.clear();
            self.strangers.clear();
            self.watchlist_version = watchlist_version;
        }
    }

    /// The recent gallery `variant` keeps for `app`.
    pub fn gallery(
        &mut self,
        app: &str,
        variant: &str,
        spec: &RecentSpec,
    ) -> &mut RecentGallery<FaceLabel> {
        self.recent
            .entry((app.to_string(), variant.to_string()))
            .or_insert_with(|| {
                RecentGallery::new(RecentLimits {
                    identities: spec.identities,
                    threshold: spec.threshold,
                    window_s: spec.window_s,
                })
            })
    }

    /// The identity of a face of `app`: its watchlist name, else the stranger its (general
    /// variant's) descriptor belongs to within `window_s`.
    pub fn identity(
        &mut self,
        app: &str,
        now_s: f64,
        name: Option<&str>,
        descriptor: &Descriptor,
        window_s: f64,
    ) -> String {
        match name {
            Some(n) => n.to_string(),
            None => self
                .strangers
                .entry(app.to_string())
                .or_insert_with(|| Strangers::new(STRANGER_DISTANCE, window_s))
                .key(now_s, descriptor),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RecentSpec {
        RecentSpec {
            identities: 2,
            threshold: 0.3,
            window_s: 60.0,
            hit_accuracy: 100.0,
            hit_rate: 90.0,
        }
    }

    fn label(class: &str) -> FaceLabel {
        FaceLabel {
            label: 0,
            class: class.into(),
            score: 0.5,
        }
    }

    #[test]
    fn a_new_watchlist_forgets_everyone() {
        let mut m = FaceMemory::default();
        m.sync(1);
        m.gallery("face-id", "recent", &spec())
            .remember(0.0, "ann", label("ann"), vec![0.0; 4]);
        let stranger = m.identity("face-id", 0.0, None, &vec![1.0; 4], 60.0);
        m.sync(1);
        assert_eq!(m.gallery("face-id", "recent", &spec()).len(), 1);
        assert_eq!(
            m.identity("face-id", 1.0, None, &vec![1.0; 4], 60.0),
            stranger
        );
        m.sync(2);
        assert!(m.gallery("face-id", "recent", &spec()).is_empty());
        assert_eq!(
            m.identity("face-id", 2.0, Some("bob"), &vec![1.0; 4], 60.0),
            "bob"
        );
    }
}
