//! Periodic node state (soft state on the leader; never in the Raft log).

use serde::{Deserialize, Serialize};

/// One telemetry report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    /// Increases by one per report so the leader can drop stale or duplicate ones.
    pub seq: u64,
    /// Wall-clock time the report was taken, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    pub battery: Battery,
    pub memory_free_bytes: u64,
    /// Memory the node allows for loaded model variants.
    pub model_memory_budget_bytes: u64,
    /// Variant ids currently loaded in the model cache.
    pub loaded_variants: Vec<String>,
    pub apps: Vec<AppTelemetry>,
    pub link: Link,
    /// Offload requests waiting on this node (server role).
    pub offload_queue: u32,
    /// Offload requests served since start (server role).
    pub served_offload: u64,
    /// Measured paging cost per variant loaded since start (smoothed), so the coordinator's
    /// per-class profiles follow what loading really costs on the fleet's hardware.
    pub load_profiles: Vec<LoadProfile>,
    /// What this run's result spool took in, so the leader can check that every request was
    /// dropped or accepted (`requests == dropped + accepted`, `failures == 0`).
    pub spool: SpoolCounters,
}

/// Results accepted into the spool and answered requests the spool could not hold, since the
/// node process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolCounters {
    pub accepted: u64,
    pub failures: u64,
}

/// The measured cost of paging one variant into memory on this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadProfile {
    pub variant: String,
    /// Load time, ms (moving average of the measured loads).
    pub load_ms: f64,
    /// Load energy, J: `load_ms` at the device class's profiled paging power.
    pub load_j: f64,
    /// Loads measured.
    pub loads: u64,
}

/// Battery state in SI units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Battery {
    /// Full capacity in joules.
    pub capacity_j: f64,
    /// Energy remaining in joules.
    pub energy_left_j: f64,
    /// Current drain in watts.
    pub drain_w: f64,
    /// When the shift ends (the battery must last until then), ms since the Unix epoch.
    pub shift_end_unix_ms: u64,
    pub source: BatterySource,
}

impl Battery {
    /// What a node reports before its first battery reading: zeros, from the model.
    pub fn unreported() -> Self {
        Battery {
            capacity_j: 0.0,
            energy_left_j: 0.0,
            drain_w: 0.0,
            shift_end_unix_ms: 0,
            source: BatterySource::Model,
        }
    }
}

/// Where battery numbers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatterySource {
    /// Read from `/sys/class/power_supply`.
    Sysfs,
    /// Simulated by an energy model.
    Model,
}

/// Counters for one app since the node started (monotonic, so lost reports lose nothing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppTelemetry {
    pub app: String,
    /// Recent request rate, requests per second.
    pub rate_per_s: f64,
    /// Count per class over the recent window; index = class id (input to skew detection).
    pub class_histogram: Vec<u32>,
    pub requests: u64,
    /// Requests whose ground truth was known and matched.
    pub correct: u64,
    /// Requests that carried a ground truth (the replay's; API calls, video frames and face
    /// requests carry none): accuracy is `correct / labelled`.
    pub labelled: u64,
    pub dropped: u64,
    pub offloaded: u64,
    pub latency_ms_p50: f64,
    pub energy_used_j: f64,
    pub cost_used_usd: f64,
}

/// The node's view of its uplink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub rtt_ms: f64,
    pub bandwidth_bps: f64,
    pub connected: bool,
}
