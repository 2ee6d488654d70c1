//! The telemetry snapshot the serving thread publishes for the link: battery, per-app counters,
//! loaded variants, load profiles and the spool's intake, all as of the same frame.

use net::clock::Clock;
use wire::msg::SpoolCounters;

use super::learning::LoadLearning;
use super::results::Results;
use crate::battery::EnergyAccount;
use crate::cache::ModelCache;
use crate::handles::Snapshot;
use crate::stats::AppStats;

/// What a snapshot is made of.
pub struct Sources<'a> {
    pub stats: &'a [AppStats],
    pub energy: &'a mut EnergyAccount,
    pub cache: &'a ModelCache,
    pub learning: &'a LoadLearning,
    pub results: &'a Results,
}

pub fn snapshot(clock: &dyn Clock, now_s: f64, from: Sources<'_>) -> Snapshot {
    Snapshot {
        spool: SpoolCounters {
            accepted: from.results.accepted(),
            failures: from.stats.iter().map(|s| s.spool_failures).sum(),
        },
        battery: Some(from.energy.reading(clock.unix_ms())),
        apps: from.stats.iter().map(|s| s.telemetry(now_s)).collect(),
        loaded_variants: from.cache.resident(),
        model_memory_budget_bytes: from.cache.budget_bytes(),
        load_profiles: from.learning.reported(),
    }
}
