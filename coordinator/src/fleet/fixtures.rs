//! Messages for the fleet module's unit tests: one place to build a hello, a battery reading and
//! a telemetry report, so a new message field is added here once.

use wire::msg::{
    Assignment, Battery, BatterySource, Hello, Link, PROTOCOL_VERSION, Role, Telemetry,
};

/// Wall time for fixtures (tests only; the daemon reads its injected clock).
pub fn unix_ms() -> u64 {
    use net::clock::Clock;
    net::clock::SystemClock.unix_ms()
}

/// A full battery whose shift ends in an hour.
pub fn battery() -> Battery {
    Battery {
        capacity_j: 100.0,
        energy_left_j: 100.0,
        drain_w: 0.0,
        shift_end_unix_ms: unix_ms() + 3_600_000,
        source: BatterySource::Model,
    }
}

/// A hello; a server advertises `<id>:7000` for offload.
pub fn hello(id: &str, class: &str, role: Role) -> Hello {
    Hello {
        node_id: id.into(),
        device_class: class.into(),
        offload_addr: matches!(role, Role::Server { .. }).then(|| format!("{id}:7000")),
        role,
        protocol_version: PROTOCOL_VERSION,
        catalog_digests: vec![],
        battery: battery(),
        apps: vec![],
        watchlist_version: 0,
    }
}

/// A report with no apps, nothing loaded and an empty offload queue.
pub fn telemetry(seq: u64) -> Telemetry {
    Telemetry {
        seq,
        at_unix_ms: seq,
        battery: battery(),
        memory_free_bytes: 0,
        model_memory_budget_bytes: 0,
        loaded_variants: vec![],
        apps: vec![],
        link: Link {
            rtt_ms: 1.0,
            bandwidth_bps: 0.0,
            connected: true,
        },
        offload_queue: 0,
        served_offload: 0,
        load_profiles: vec![],
        spool: Default::default(),
    }
}

/// An empty assignment for `node` at `epoch` (what plan and push tests move around).
pub fn assignment(node: &str, epoch: u64) -> Assignment {
    Assignment {
        epoch,
        node_id: node.into(),
        issued_unix_ms: 0,
        apps: Vec::new(),
        energy_price: 0.0,
        cost_price: 0.0,
        plan_gap: 0.0,
    }
}
