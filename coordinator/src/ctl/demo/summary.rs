//! The demo's summary: each node's own end-of-run report, and the fleet's accuracy weighted by
//! requests.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::fleet::NodeSpec;
use crate::fleet::status::FleetStatus;

#[derive(Debug, Clone, Serialize)]
pub struct NodeResult {
    pub id: String,
    pub device_class: String,
    pub requests: u64,
    /// Requests that got no answer (they count as wrong in `accuracy`).
    pub dropped: u64,
    pub accuracy: f64,
    pub energy_used_j: f64,
    pub energy_budget_j: f64,
    /// When the node's energy budget ran out, seconds into its run.
    pub energy_out_at_s: Option<f64>,
    pub model_loads: u64,
    pub last_epoch: u64,
    pub variants: BTreeMap<String, BTreeMap<String, u64>>,
    /// Requests dropped because their deadline passed first (of `dropped`).
    pub late: u64,
    /// Per face app: who was seen, faces, the audit's agreement, time per face per variant.
    pub face: BTreeMap<String, wire::summary::FaceSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DemoSummary {
    pub fleet_accuracy: f64,
    pub requests: u64,
    pub duration_s: f64,
    pub plan_epoch: u64,
    pub plan_gap: f64,
    /// Face apps over the fleet: audited requests that got the reference's answer, percent
    /// (`null` without face audits; face requests have no labels, so `fleet_accuracy` leaves
    /// them out).
    pub face_agreement: Option<f64>,
    pub nodes: Vec<NodeResult>,
}

impl DemoSummary {
    /// The fleet's figures from its nodes' reports and the coordinator's last plan.
    pub(super) fn new(
        nodes: Vec<NodeResult>,
        duration_s: f64,
        final_status: Option<&FleetStatus>,
    ) -> DemoSummary {
        let requests: u64 = nodes.iter().map(|n| n.requests).sum();
        let correct: f64 = nodes
            .iter()
            .map(|n| n.accuracy * n.requests as f64 / 100.0)
            .sum();
        DemoSummary {
            fleet_accuracy: if requests == 0 {
                0.0
            } else {
                100.0 * correct / requests as f64
            },
            requests,
            duration_s,
            plan_epoch: final_status.map_or(0, |s| s.plan.epoch),
            plan_gap: final_status.map_or(0.0, |s| s.plan.gap),
            face_agreement: face_agreement(&nodes),
            nodes,
        }
    }
}

fn face_agreement(nodes: &[NodeResult]) -> Option<f64> {
    let (audited, agreed) = nodes
        .iter()
        .flat_map(|n| n.face.values())
        .fold((0, 0), |(a, g), f| (a + f.audited, g + f.agreed));
    (audited > 0).then(|| 100.0 * agreed as f64 / audited as f64)
}

/// A node's result from the summary file `mcdnn-node run --summary` wrote. Typed: a summary
/// missing a field is an error, not a node that served nothing.
pub(super) fn read_node_result(spec: &NodeSpec, path: &Path) -> anyhow::Result<NodeResult> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v = wire::summary::Summary::from_json(&text)
        .with_context(|| format!("parsing {}", path.display()))?;
    Ok(NodeResult {
        id: spec.name.clone(),
        device_class: spec.class.to_string(),
        requests: v.requests,
        dropped: v.dropped,
        accuracy: v.accuracy,
        energy_used_j: v.energy_used_j,
        energy_budget_j: v.energy_budget_j,
        energy_out_at_s: v.energy_out_at_s,
        model_loads: v.model_loads,
        last_epoch: v.last_epoch,
        late: v.apps.values().map(|a| a.late).sum(),
        face: v
            .apps
            .iter()
            .filter_map(|(app, a)| Some((app.clone(), a.face.clone()?)))
            .collect(),
        variants: v
            .apps
            .into_iter()
            .map(|(app, a)| (app, a.by_variant))
            .collect(),
    })
}
