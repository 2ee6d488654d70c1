//! Load learning: every measured load is smoothed into the variant's load profile, which then
//! replaces the profiled load cost in the node's catalog and in the policy's (copy-on-write), so
//! the next decisions and charges use what loading really costs on this device.

use std::sync::Arc;

use scheduler::catalog::Catalog;
use scheduler::load::{LoadProfiles, measured_load_j};
use scheduler::policy::Policy;
use wire::msg::LoadProfile;

#[derive(Debug, Default)]
pub struct LoadLearning {
    profiles: LoadProfiles,
}

impl LoadLearning {
    /// Folds a load of `variant` that took `ms` into the profiles, updating `catalog` and the
    /// policy; returns this load's measured energy (J).
    pub fn observe(
        &mut self,
        catalog: &mut Arc<Catalog>,
        policy: &mut dyn Policy,
        variant: &str,
        ms: f64,
    ) -> f64 {
        let measured_j = measured_load_j(catalog, variant, ms);
        if let Some(e) = self.profiles.observe(catalog, variant, ms) {
            let mut next = (**catalog).clone();
            if next.set_load_profile(variant, e.load_ms, e.load_j) {
                *catalog = Arc::new(next);
            }
            policy.update_load_profile(variant, e.load_ms, e.load_j);
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

    /// The smoothed profiles, for telemetry.
    pub fn reported(&self) -> Vec<LoadProfile> {
        self.profiles
            .iter()
            .map(|(variant, e)| LoadProfile {
                variant: variant.to_string(),
                load_ms: e.load_ms,
                load_j: e.load_j,
                loads: e.loads,
            })
            .collect()
    }
}
