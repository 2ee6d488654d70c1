//! From soft state to a plan: the fleet problem built from the latest telemetry of every
//! connected node, solved with the scheduler's price-based fleet solver, and cut into one
//! assignment per node.

use std::time::{SystemTime, UNIX_EPOCH};

use protocol::manifest::Manifest;
use protocol::msg::{AppAssignment, Assignment, MixEntry as WireMix, PlaceTag};
use scheduler::catalog::{Catalog, Place};
use scheduler::fleet::{FleetPlan, FleetProblem, NodeState};

use super::registry::Registry;

/// Request rate assumed for an app before its first telemetry arrives.
const DEFAULT_RATE: f64 = 1.0;

/// One catalog per device class of the manifest, built once.
pub fn catalogs(manifest: &Manifest) -> Vec<Catalog> {
    manifest
        .device_classes
        .iter()
        .filter_map(|dc| match Catalog::from_manifest(manifest, &dc.name) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(class = %dc.name, error = %e, "device class unusable; its nodes cannot be planned");
                None
            }
        })
        .collect()
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Policy key of the fleet's cloud budget (USD over the shift), written by operators.
pub const COST_BUDGET_KEY: &str = "fleet.cost_budget_usd";

/// Fleet-wide knobs: configuration defaults, overridden by replicated policy writes.
#[derive(Debug, Clone)]
pub struct FleetPolicy {
    /// Cloud budget over the nodes' remaining shift, USD.
    pub cost_budget_usd: f64,
}

/// The problem for every connected device node whose class has a catalog. Returns it with the
/// offload target (the first connected server node) if any.
pub fn problem(
    registry: &Registry,
    catalogs: &[Catalog],
    policy: &FleetPolicy,
) -> (FleetProblem, Option<String>) {
    let now = unix_ms();
    let servers: Vec<(&String, f64, Option<String>)> = registry
        .iter()
        .filter(|(_, e)| e.connected && e.is_server())
        .map(|(id, e)| {
            let cap = match e.hello.role {
                protocol::msg::Role::Server { capacity_rps } => capacity_rps,
                protocol::msg::Role::Device => 0.0,
            };
            (id, cap, e.hello.offload_addr.clone())
        })
        .collect();
    let target = servers.iter().find_map(|(_, _, addr)| addr.clone());
    let capacity: f64 = servers.iter().map(|(_, c, _)| *c).sum();
    let nodes = registry
        .iter()
        .filter(|(_, e)| e.connected && !e.is_server())
        .filter(|(_, e)| {
            catalogs
                .iter()
                .any(|c| c.device_class == e.hello.device_class)
        })
        .map(|(id, e)| {
            let battery = e
                .telemetry
                .as_ref()
                .map_or(&e.hello.battery, |t| &t.battery);
            let rates = e
                .hello
                .apps
                .iter()
                .map(|app| {
                    let measured = e
                        .telemetry
                        .as_ref()
                        .and_then(|t| t.apps.iter().find(|a| &a.app == app))
                        .map(|a| a.rate_per_s)
                        .filter(|r| *r > 0.0);
                    (app.clone(), measured.unwrap_or(DEFAULT_RATE))
                })
                .collect();
            NodeState {
                id: id.clone(),
                device_class: e.hello.device_class.clone(),
                energy_left_j: battery.energy_left_j.max(0.0),
                remaining_s: (battery.shift_end_unix_ms.saturating_sub(now) as f64 / 1000.0)
                    .max(1.0),
                rates,
                connected: target.is_some(),
            }
        })
        .collect();
    let problem = FleetProblem {
        catalogs: catalogs.to_vec(),
        nodes,
        cost_budget_usd: if target.is_some() {
            policy.cost_budget_usd
        } else {
            0.0
        },
        server_capacity_rps: if target.is_some() { capacity } else { 0.0 },
        tolerance: 1e-3,
    };
    (problem, target)
}

/// One node's assignment from the plan. The allowed set is the plan's variants plus the app's
/// cheapest one, so the node can still degrade gracefully if its budget drains faster than the
/// plan expected before the next epoch arrives.
pub fn assignments(
    plan: &FleetPlan,
    catalogs: &[Catalog],
    problem: &FleetProblem,
    epoch: u64,
    target: Option<&str>,
) -> Vec<Assignment> {
    let issued = unix_ms();
    plan.nodes
        .iter()
        .zip(&problem.nodes)
        .map(|(np, ns)| {
            let catalog = catalogs.iter().find(|c| c.device_class == ns.device_class);
            let apps = np
                .apps
                .iter()
                .map(|ap| {
                    let mix: Vec<WireMix> = ap
                        .mix
                        .iter()
                        .filter(|m| m.fraction > 1e-9)
                        .map(|m| WireMix {
                            variant: m.variant.clone(),
                            place: match m.place {
                                Place::Device => PlaceTag::Device,
                                Place::Server => PlaceTag::Server,
                            },
                            fraction: m.fraction,
                        })
                        .collect();
                    let mut allowed: Vec<String> = mix.iter().map(|m| m.variant.clone()).collect();
                    if let Some(cheapest) = catalog.and_then(|c| cheapest_variant(c, &ap.app)) {
                        allowed.push(cheapest);
                    }
                    allowed.sort();
                    allowed.dedup();
                    let offloads = mix.iter().any(|m| m.place == PlaceTag::Server);
                    AppAssignment {
                        app: ap.app.clone(),
                        mix,
                        allowed_variants: allowed,
                        offload_target: if offloads {
                            target.map(str::to_string)
                        } else {
                            None
                        },
                        energy_budget_j_per_request: ap.energy_per_request_j,
                        cost_budget_usd_per_request: ap.cost_per_request_usd,
                    }
                })
                .collect();
            Assignment {
                epoch,
                node_id: np.id.clone(),
                issued_unix_ms: issued,
                apps,
                energy_price: 0.0,
                cost_price: plan.cost_price,
                plan_gap: plan.gap,
            }
        })
        .collect()
}

fn cheapest_variant(catalog: &Catalog, app: &str) -> Option<String> {
    let a = catalog.app_index(app)?;
    catalog.apps[a]
        .variants
        .iter()
        .filter(|v| !v.is_specialised())
        .min_by(|x, y| x.device_energy_j.total_cmp(&y.device_energy_j))
        .map(|v| v.name.clone())
}
