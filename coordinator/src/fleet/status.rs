//! The fleet as an operator sees it (`/status`, `mcdnnctl demo`'s live view).

use std::sync::Arc;
use std::time::Instant;

use net::clock::SharedClock;
use serde::{Deserialize, Serialize};

use super::catalog::FleetCatalog;
use super::plan_view::{PlanBoard, PlanInfo};
use super::registry::Nodes;
use crate::raft::ReplicaHandle;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: String,
    pub device_class: String,
    pub server: bool,
    pub connected: bool,
    pub energy_budget_j: f64,
    pub energy_left_j: f64,
    pub energy_used_j: f64,
    pub loaded_variants: Vec<String>,
    pub requests: u64,
    pub correct: u64,
    /// Requests with a ground truth; `accuracy` is `correct` over these.
    #[serde(default)]
    pub labelled: u64,
    pub dropped: u64,
    pub offloaded: u64,
    pub requests_per_s: f64,
    pub accuracy: f64,
    pub sent_epoch: u64,
    pub acked_epoch: u64,
    pub telemetry_seq: u64,
    /// Offload requests waiting on / served by this node (server role).
    #[serde(default)]
    pub offload_queue: u32,
    #[serde(default)]
    pub served_offload: u64,
    /// Why the planner leaves this node out, if it does ([`super::validate`]).
    #[serde(default)]
    pub excluded: Option<String>,
    /// Seconds since the coordinator last heard from the node.
    #[serde(default)]
    pub last_seen_s: f64,
    /// The node's spool intake from its telemetry (results accepted, answered requests the
    /// spool could not hold): `requests == dropped + results_accepted` when nothing failed.
    #[serde(default)]
    pub results_accepted: u64,
    #[serde(default)]
    pub spool_failures: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetStatus {
    pub coordinator: String,
    pub uptime_s: f64,
    pub catalog_digest: String,
    pub nodes: Vec<NodeStatus>,
    pub plan: PlanInfo,
    /// Per node, the results the coordinator recorded (exactly once) from its spool.
    #[serde(default)]
    pub results: std::collections::BTreeMap<String, crate::state::NodeResults>,
}

/// A node's number as shown: JSON has no infinity or NaN (serde writes `null`, which readers then
/// fail on), so a non-finite report, from a node excluded for it, shows as 0.
fn shown(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

/// What the status view reads.
#[derive(Clone)]
pub struct StatusSources {
    /// This replica's name.
    pub name: String,
    pub nodes: Nodes,
    pub plans: PlanBoard,
    pub raft: ReplicaHandle,
    pub catalog: Arc<FleetCatalog>,
    pub clock: SharedClock,
    /// When this replica started (for its uptime).
    pub started: Instant,
}

pub fn fleet_status(src: &StatusSources) -> FleetStatus {
    let now = src.clock.now();
    let excluded = src.plans.excluded().clone();
    let nodes = src
        .nodes
        .lock()
        .iter()
        .map(|(id, e)| {
            let t = e.telemetry.as_ref();
            let battery = t.map_or(&e.hello.battery, |t| &t.battery);
            let sum = |f: fn(&wire::msg::AppTelemetry) -> u64| {
                t.map_or(0, |t| t.apps.iter().map(f).sum::<u64>())
            };
            let requests = sum(|a| a.requests);
            let correct = sum(|a| a.correct);
            let labelled = sum(|a| a.labelled);
            NodeStatus {
                id: id.clone(),
                device_class: e.hello.device_class.clone(),
                server: e.is_server(),
                connected: e.connected,
                energy_budget_j: shown(battery.capacity_j),
                energy_left_j: shown(battery.energy_left_j),
                energy_used_j: shown(
                    t.map_or(0.0, |t| t.apps.iter().map(|a| a.energy_used_j).sum()),
                ),
                loaded_variants: t.map_or_else(Vec::new, |t| t.loaded_variants.clone()),
                requests,
                correct,
                dropped: sum(|a| a.dropped),
                offloaded: sum(|a| a.offloaded),
                requests_per_s: shown(t.map_or(0.0, |t| t.apps.iter().map(|a| a.rate_per_s).sum())),
                labelled,
                // Over the requests that carried a ground truth: a face or API request has none
                // and is neither right nor wrong.
                accuracy: if labelled == 0 {
                    0.0
                } else {
                    100.0 * correct as f64 / labelled as f64
                },
                sent_epoch: e.sent_epoch,
                acked_epoch: e.acked_epoch,
                telemetry_seq: t.map_or(0, |t| t.seq),
                offload_queue: t.map_or(0, |t| t.offload_queue),
                served_offload: t.map_or(0, |t| t.served_offload),
                excluded: excluded.get(id).cloned(),
                last_seen_s: now.saturating_duration_since(e.last_seen).as_secs_f64(),
                results_accepted: t.map_or(0, |t| t.spool.accepted),
                spool_failures: t.map_or(0, |t| t.spool.failures),
            }
        })
        .collect();
    FleetStatus {
        coordinator: src.name.clone(),
        uptime_s: now.saturating_duration_since(src.started).as_secs_f64(),
        catalog_digest: src.catalog.digest.clone(),
        nodes,
        plan: src.plans.last_plan(),
        results: src.raft.with_state(|s| s.results().clone()),
    }
}
