//! The telemetry report a session sends every interval, from the node's shared handles.

use wire::msg::{Link, Telemetry};

use super::LinkHandles;

/// Report `seq`, with the link's measured round trip.
pub(super) fn telemetry(seq: u64, handles: &LinkHandles, rtt_ms: f64) -> Telemetry {
    let snap = handles.telemetry.get();
    Telemetry {
        seq,
        at_unix_ms: handles.clock.unix_ms(),
        battery: snap.battery.unwrap_or_else(wire::msg::Battery::unreported),
        memory_free_bytes: crate::meminfo::available_bytes().unwrap_or(0),
        model_memory_budget_bytes: snap.model_memory_budget_bytes,
        loaded_variants: snap.loaded_variants,
        apps: snap.apps,
        link: Link {
            rtt_ms,
            bandwidth_bps: 0.0,
            connected: true,
        },
        offload_queue: handles.offload.queue(),
        served_offload: handles.offload.served(),
        load_profiles: snap.load_profiles,
        spool: snap.spool,
    }
}
