//! What the serving thread last published for telemetry; the link reads it every interval.

use std::sync::{Arc, Mutex};

use wire::msg::{AppTelemetry, Battery, LoadProfile, SpoolCounters};

use super::lock;

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub battery: Option<Battery>,
    pub apps: Vec<AppTelemetry>,
    pub loaded_variants: Vec<String>,
    pub model_memory_budget_bytes: u64,
    /// Smoothed measured load cost per variant loaded so far.
    pub load_profiles: Vec<LoadProfile>,
    /// Spool intake as of the same frame as `apps`, so `requests == dropped + accepted` holds
    /// within one snapshot.
    pub spool: SpoolCounters,
}

/// Cheap to clone; the serving thread writes, the link reads.
#[derive(Debug, Clone, Default)]
pub struct TelemetryCell(Arc<Mutex<Snapshot>>);

impl TelemetryCell {
    pub fn publish(&self, snapshot: Snapshot) {
        *lock(&self.0) = snapshot;
    }

    pub fn get(&self) -> Snapshot {
        lock(&self.0).clone()
    }

    pub fn battery(&self) -> Option<Battery> {
        lock(&self.0).battery.clone()
    }
}
