//! Measured paging costs fed back into the profiles.
//!
//! A node measures how long each variant takes to load into memory. The measurements are
//! smoothed (EWMA, seeded with the profiled figure so a single slow first load cannot swing
//! decisions) and the load energy is the smoothed time times the device class's paging power,
//! taken from the profile's own ratio `load_energy_j / load_latency_ms`.

use std::collections::BTreeMap;

use crate::catalog::Catalog;

/// Weight of a new load measurement in the moving average: about the last four loads count.
pub const LOAD_EWMA_ALPHA: f64 = 0.25;

/// The smoothed paging cost of one variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadEstimate {
    pub load_ms: f64,
    pub load_j: f64,
    /// Measurements folded in.
    pub loads: u64,
}

/// Smoothed load costs per variant name.
#[derive(Debug, Clone, Default)]
pub struct LoadProfiles {
    by_variant: BTreeMap<String, LoadEstimate>,
}

impl LoadProfiles {
    /// Folds one measured load of `variant` (`measured_ms`) into its estimate and returns the
    /// new estimate. The first measurement is averaged against the catalog's profile. `None`
    /// for a variant the catalog lacks or a measurement that is not a finite non-negative time.
    pub fn observe(
        &mut self,
        catalog: &Catalog,
        variant: &str,
        measured_ms: f64,
    ) -> Option<LoadEstimate> {
        if !measured_ms.is_finite() || measured_ms < 0.0 {
            return None;
        }
        let (profile_ms, _) = catalog.load_profile(variant)?;
        let j_per_ms = catalog.load_j_per_ms(variant)?;
        let e = self
            .by_variant
            .entry(variant.to_string())
            .or_insert(LoadEstimate {
                load_ms: profile_ms,
                load_j: profile_ms * j_per_ms,
                loads: 0,
            });
        e.load_ms += LOAD_EWMA_ALPHA * (measured_ms - e.load_ms);
        e.load_j = e.load_ms * j_per_ms;
        e.loads += 1;
        Some(*e)
    }

    /// Estimates by variant name, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &LoadEstimate)> {
        self.by_variant.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn get(&self, variant: &str) -> Option<&LoadEstimate> {
        self.by_variant.get(variant)
    }
}

/// Energy of one measured load: `measured_ms` at the class's paging power for `variant`.
pub fn measured_load_j(catalog: &Catalog, variant: &str, measured_ms: f64) -> f64 {
    if !measured_ms.is_finite() || measured_ms < 0.0 {
        return 0.0;
    }
    catalog
        .load_j_per_ms(variant)
        .map_or(0.0, |p| p * measured_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_variant(c: &Catalog) -> String {
        c.apps[0].variants[0].name.clone()
    }

    #[test]
    fn ewma_starts_at_the_profile_and_follows_measurements() {
        let c = Catalog::paper();
        let v = first_variant(&c);
        let (ms0, j0) = c.load_profile(&v).unwrap();
        assert!(ms0 > 0.0 && j0 > 0.0);
        let mut p = LoadProfiles::default();
        // One load ten times slower moves the estimate by a quarter of the gap, not all of it.
        let e = p.observe(&c, &v, 10.0 * ms0).unwrap();
        assert!((e.load_ms - ms0 * (1.0 + 0.25 * 9.0)).abs() < 1e-9);
        assert!(
            (e.load_j / e.load_ms - j0 / ms0).abs() < 1e-12,
            "energy scales with time"
        );
        assert_eq!(e.loads, 1);
        for _ in 0..60 {
            p.observe(&c, &v, 0.5 * ms0);
        }
        let e = *p.get(&v).unwrap();
        assert!(
            (e.load_ms - 0.5 * ms0).abs() < 1e-3 * ms0,
            "converges to the measured time"
        );
        assert_eq!(e.loads, 61);
        assert!(p.observe(&c, &v, f64::NAN).is_none());
        assert!(p.observe(&c, "no-such-variant", 1.0).is_none());
        assert!((measured_load_j(&c, &v, 2.0 * ms0) - 2.0 * j0).abs() < 1e-9);
    }

    #[test]
    fn smoothed_measurements_change_the_paging_charge() {
        use std::sync::Arc;

        use crate::catalog::Place;
        use crate::policy::{Core, run_cost};
        use crate::state::{Budgets, DeviceState};

        let c = Arc::new(Catalog::paper());
        let v = first_variant(&c);
        let key = c.key(&c.apps[0].name, &v).unwrap();
        let budgets = Budgets::from_catalog(&c);
        let state = DeviceState::new(&budgets, 0.0);
        let mut core = Core::new(c.clone(), budgets);
        let before = run_cost(&core.catalog, key, Place::Device, &state);
        let (ms0, j0) = c.load_profile(&v).unwrap();
        assert!(
            (before.load_j - j0).abs() < 1e-12,
            "not resident: the profile's load is charged"
        );

        // Loads on this device take three times the profile.
        let mut p = LoadProfiles::default();
        let mut e = None;
        for _ in 0..3 {
            e = p.observe(&core.catalog, &v, 3.0 * ms0);
        }
        let e = e.unwrap();
        assert!(core.update_load_profile(&v, e.load_ms, e.load_j));
        let after = run_cost(&core.catalog, key, Place::Device, &state);
        assert!((after.load_j - e.load_j).abs() < 1e-12);
        assert!(after.load_j > before.load_j && after.load_j < 3.0 * j0);
        assert!(
            (after.energy_j - after.load_j - (before.energy_j - before.load_j)).abs() < 1e-12,
            "only the paging part changes"
        );
        // Every app's entry of the variant pages the same model in.
        for (a, app) in core.catalog.apps.iter().enumerate() {
            if let Some(k) = core.catalog.key(&app.name, &v) {
                assert_eq!(core.catalog.variant(k).load_energy_j, e.load_j, "app {a}");
            }
        }
        // Copy-on-write: the catalog handed out before is untouched.
        assert_eq!(c.load_profile(&v), Some((ms0, j0)));
        // Through the trait, as the node calls it.
        let mut policy = crate::policy::by_name("mcdnn", &c, &Budgets::from_catalog(&c)).unwrap();
        assert!(policy.update_load_profile(&v, e.load_ms, e.load_j));
        assert!(!policy.update_load_profile(&v, f64::NAN, 1.0));
    }
}
