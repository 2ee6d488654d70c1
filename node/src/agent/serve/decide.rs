//! The per-request decision inputs: the device state the policy decides on (energy and cloud
//! budget left, resident variants), and the local fallback when an offload fails.

use std::collections::BTreeSet;

use scheduler::catalog::{Catalog, VariantKey};
use scheduler::state::DeviceState;
use wire::manifest::Manifest;

use crate::cache::ModelCache;
use crate::stats::AppStats;

/// Brings `state`'s budgets up to date for the next decision (its resident variants come from
/// [`resident_keys`]).
pub fn refresh_state(
    state: &mut DeviceState,
    energy_left_j: f64,
    cost_budget_usd: f64,
    stats: &[AppStats],
) {
    state.energy_left_j = energy_left_j;
    state.cost_left_usd =
        (cost_budget_usd - stats.iter().map(|s| s.cost_used_usd).sum::<f64>()).max(0.0);
}

/// Every (app, loaded variant) key into `out` (replacing its contents, reusing its allocation):
/// a loaded variant serves all apps through its heads.
pub fn resident_keys(catalog: &Catalog, cache: &ModelCache, out: &mut Vec<VariantKey>) {
    out.clear();
    for a in &catalog.apps {
        out.extend(
            cache
                .resident_names()
                .filter_map(|n| catalog.key(&a.name, n)),
        );
    }
}

/// Where a failed offload is answered: the cheapest variant already loaded, else the cheapest
/// present one (`present` is `None` when every variant is).
pub fn local_fallback(
    catalog: &Catalog,
    manifest: &Manifest,
    resident: Vec<String>,
    present: Option<&BTreeSet<String>>,
    app: &str,
) -> String {
    let cheapest = |names: &mut dyn Iterator<Item = String>| {
        names
            .filter_map(|n| {
                catalog
                    .key(app, &n)
                    .map(|k| (catalog.variant(k).device_energy_j, n))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, n)| n)
    };
    cheapest(&mut resident.into_iter())
        .or_else(|| {
            cheapest(
                &mut manifest
                    .variants
                    .iter()
                    .map(|v| v.name.clone())
                    .filter(|n| present.is_none_or(|set| set.contains(n))),
            )
        })
        .unwrap_or_default()
}
