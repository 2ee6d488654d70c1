//! The fleet-wide plan: per node and app a mix of (variant, place), under each node's energy
//! and two coupling constraints: the fleet's cloud budget (USD over the horizon) and the offload
//! server's capacity (requests/s). Price-based decomposition (see [`crate::lp`]): each node
//! solves its own small problem given the prices; prices move until the coupling constraints
//! hold; every plan reports the dual bound and its gap. Deterministic: same input, same plan.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, Place};
use crate::lp::{Group, Node, Problem, Table};
use crate::options::{OptionSpec, PlanOpt, Specialised, steady_options};

/// What the coordinator knows about one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    pub id: String,
    pub device_class: String,
    pub energy_left_j: f64,
    /// Until the end of the node's shift.
    pub remaining_s: f64,
    /// Requests/s per app name.
    pub rates: Vec<(String, f64)>,
    pub connected: bool,
}

/// The fleet problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetProblem {
    /// One catalog per device class (`Catalog::device_class` is the key); apps by name.
    pub catalogs: Vec<Catalog>,
    pub nodes: Vec<NodeState>,
    /// Fleet cloud budget over the nodes' remaining time (USD); infinite if none.
    pub cost_budget_usd: f64,
    /// Offload server capacity (requests/s); infinite if none.
    pub server_capacity_rps: f64,
    /// Target relative optimality gap (e.g. 1e-3).
    pub tolerance: f64,
}

/// One share of an app's requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixEntry {
    /// Shared by every entry naming this variant: a million-node plan names a few dozen.
    pub variant: Arc<str>,
    pub place: Place,
    pub fraction: f64,
}

/// The plan for one app on one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppPlan {
    pub app: Arc<str>,
    pub mix: Vec<MixEntry>,
    /// Share of requests the plan cannot afford to serve.
    pub drop_fraction: f64,
    /// Expected energy / cost of one request under the mix: the per-request budget.
    pub energy_per_request_j: f64,
    pub cost_per_request_usd: f64,
}

/// The plan for one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodePlan {
    pub id: String,
    pub apps: Vec<AppPlan>,
}

/// The fleet plan with its certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetPlan {
    pub nodes: Vec<NodePlan>,
    /// Price of one USD of cloud budget and of one request/s of server capacity, in accuracy
    /// points x requests.
    pub cost_price: f64,
    pub capacity_price: f64,
    /// Mean accuracy (percent over all expected requests) of the plan.
    pub primal: f64,
    /// Certified upper bound on the mean accuracy any plan can reach, as the solver found it
    /// (never raised to the primal, so a broken bound shows).
    pub dual: f64,
    /// (dual - primal) / dual, not clamped: negative means the bound is wrong.
    pub gap: f64,
    pub cost_usd: f64,
    pub server_rps: f64,
    /// Node sub-problem sweeps the solver needed.
    pub evaluations: usize,
    /// Price pairs (cost, capacity) the plan combines: the warm start of the next solve
    /// ([`solve_warm`]).
    pub prices: Vec<(f64, f64)>,
}

/// Errors in a fleet problem.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Serialize, Deserialize)]
pub enum FleetError {
    #[error("node {node}: no catalog for device class {class:?}")]
    UnknownDeviceClass { node: String, class: String },
    #[error("node {node}: app {app:?} is not in the catalog of its device class")]
    UnknownApp { node: String, app: String },
    #[error("node {node}: negative or non-finite energy, time or rate")]
    BadNumber { node: String },
    #[error("the fleet solver failed: {0}")]
    Solver(String),
}

/// Solves the fleet problem.
pub fn solve(problem: &FleetProblem) -> Result<FleetPlan, FleetError> {
    solve_warm(problem, &[])
}

/// Solves the fleet problem, evaluating the previous plan's [`FleetPlan::prices`] first (see
/// [`Problem::solve_warm`]): same certificate, fewer node sweeps when little changed.
pub fn solve_warm(problem: &FleetProblem, warm: &[(f64, f64)]) -> Result<FleetPlan, FleetError> {
    let admits = |_: usize, _: Place| true;
    let mut lp = Problem {
        cost_budget: problem.cost_budget_usd,
        server_budget: problem.server_capacity_rps,
        ..Problem::default()
    };
    // Tables are shared by every node of a class: (class, app, connected) -> table.
    let mut table_of: HashMap<(usize, usize, bool), u32> = HashMap::new();
    let mut table_opts: Vec<TableNames> = Vec::new();
    let mut total_weight = 0.0;
    for node in &problem.nodes {
        let bad = || FleetError::BadNumber {
            node: node.id.clone(),
        };
        let ci = problem
            .catalogs
            .iter()
            .position(|c| c.device_class == node.device_class)
            .ok_or_else(|| FleetError::UnknownDeviceClass {
                node: node.id.clone(),
                class: node.device_class.clone(),
            })?;
        let cat = &problem.catalogs[ci];
        let ok = |x: f64| x.is_finite() && x >= 0.0;
        if !(ok(node.energy_left_j) && ok(node.remaining_s)) {
            return Err(bad());
        }
        let first = lp.groups.len() as u32;
        for (app, rate) in &node.rates {
            if !(rate.is_finite() && *rate >= 0.0) {
                return Err(bad());
            }
            let ai = cat.app_index(app).ok_or_else(|| FleetError::UnknownApp {
                node: node.id.clone(),
                app: app.clone(),
            })?;
            let key = (ci, ai, node.connected);
            let table = *table_of.entry(key).or_insert_with(|| {
                let spec = OptionSpec {
                    connected: node.connected,
                    memory_mb: cat.constants.memory_mb,
                    specialised: Specialised::None,
                    trunk_split: 1.0,
                    admits: &admits,
                };
                let opts = steady_options(cat, ai, &spec);
                lp.tables
                    .push(Table::new(opts.iter().map(|o| o.opt).collect()));
                table_opts.push(TableNames::new(cat, ai, opts));
                (lp.tables.len() - 1) as u32
            });
            let weight = rate * node.remaining_s;
            total_weight += weight;
            lp.groups.push(Group {
                table,
                weight,
                server_weight: *rate,
            });
        }
        let len = lp.groups.len() as u32 - first;
        lp.nodes.push(Node {
            energy_budget: node.energy_left_j,
            first,
            len,
        });
    }
    let tol = if problem.tolerance > 0.0 {
        problem.tolerance
    } else {
        1e-3
    };
    let sol = lp
        .solve_warm(tol, warm)
        .map_err(|e| FleetError::Solver(e.to_string()))?;
    let mut nodes = Vec::with_capacity(problem.nodes.len());
    for (node, n) in problem.nodes.iter().zip(&lp.nodes) {
        let mut apps = Vec::with_capacity(n.len as usize);
        for gi in n.first..n.first + n.len {
            let g = &lp.groups[gi as usize];
            let names = &table_opts[g.table as usize];
            let mix_src = &sol.mixes[gi as usize];
            let mut plan = AppPlan {
                app: names.app.clone(),
                mix: Vec::with_capacity(mix_src.len()),
                drop_fraction: 1.0,
                energy_per_request_j: 0.0,
                cost_per_request_usd: 0.0,
            };
            for &(o, f) in mix_src {
                let (po, variant) = &names.opts[o as usize];
                plan.drop_fraction -= f;
                plan.energy_per_request_j += f * po.opt.energy;
                plan.cost_per_request_usd += f * po.opt.cost;
                plan.mix.push(MixEntry {
                    variant: variant.clone(),
                    place: po.place,
                    fraction: f,
                });
            }
            plan.drop_fraction = plan.drop_fraction.max(0.0);
            apps.push(plan);
        }
        nodes.push(NodePlan {
            id: node.id.clone(),
            apps,
        });
    }
    let per = |x: f64| {
        if total_weight > 0.0 {
            x / total_weight
        } else {
            0.0
        }
    };
    Ok(FleetPlan {
        nodes,
        cost_price: sol.cost_price,
        capacity_price: sol.server_price,
        primal: per(sol.value),
        dual: per(sol.dual),
        gap: sol.gap(),
        cost_usd: sol.cost_used,
        server_rps: sol.server_used,
        evaluations: sol.evaluations,
        prices: sol.prices,
    })
}

/// A table's app and options with their names, shared by every plan entry that uses them.
struct TableNames {
    app: Arc<str>,
    opts: Vec<(PlanOpt, Arc<str>)>,
}

impl TableNames {
    fn new(cat: &Catalog, app: usize, opts: Vec<PlanOpt>) -> TableNames {
        let a = &cat.apps[app];
        let variants: Vec<Arc<str>> = a.variants.iter().map(|v| v.name.as_str().into()).collect();
        TableNames {
            app: a.name.as_str().into(),
            opts: opts
                .into_iter()
                .map(|o| {
                    let name = variants[o.variant].clone();
                    (o, name)
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(nodes: usize, cost: f64, cap: f64) -> FleetProblem {
        let cat = Catalog::paper();
        FleetProblem {
            catalogs: vec![cat.clone()],
            nodes: (0..nodes)
                .map(|i| NodeState {
                    id: format!("n{i}"),
                    device_class: cat.device_class.clone(),
                    energy_left_j: 500.0 + 100.0 * (i % 7) as f64,
                    remaining_s: 36_000.0,
                    rates: vec![("deepface".into(), 0.2), ("object_alexnet".into(), 1.0)],
                    connected: i % 5 != 0,
                })
                .collect(),
            cost_budget_usd: cost,
            server_capacity_rps: cap,
            tolerance: 1e-4,
        }
    }

    #[test]
    fn plan_respects_coupling_and_reports_small_gap() -> Result<(), FleetError> {
        let p = problem(50, 0.5, 20.0);
        let plan = solve(&p)?;
        assert!(plan.cost_usd <= 0.5 * (1.0 + 1e-9));
        assert!(plan.server_rps <= 20.0 * (1.0 + 1e-9));
        assert!(plan.gap < 1e-3, "gap {}", plan.gap);
        assert!(plan.primal <= plan.dual + 1e-9);
        for (n, state) in plan.nodes.iter().zip(&p.nodes) {
            let energy: f64 = n
                .apps
                .iter()
                .zip(&state.rates)
                .map(|(a, (_, r))| a.energy_per_request_j * r * state.remaining_s)
                .sum();
            assert!(energy <= state.energy_left_j * (1.0 + 1e-9) + 1e-9);
            for a in &n.apps {
                let served: f64 = a.mix.iter().map(|m| m.fraction).sum();
                assert!(served + a.drop_fraction <= 1.0 + 1e-9);
                if !state.connected {
                    assert!(a.mix.iter().all(|m| m.place == Place::Device));
                }
            }
        }
        Ok(())
    }

    #[test]
    fn deterministic() -> Result<(), FleetError> {
        let p = problem(20, 0.1, 5.0);
        assert_eq!(solve(&p)?, solve(&p)?);
        Ok(())
    }

    /// A warm start from the previous plan's prices after 1 % of the nodes changed gives a plan
    /// of the same certified quality as a cold solve (both within the tolerance, each bound at
    /// or above its primal), in no more node sweeps.
    #[test]
    fn warm_start_keeps_the_certified_quality() -> Result<(), FleetError> {
        for (cost, cap) in [(0.5, 20.0), (0.05, 3.0), (f64::INFINITY, 8.0)] {
            let mut p = problem(300, cost, cap);
            let before = solve(&p)?;
            for (i, n) in p.nodes.iter_mut().enumerate().filter(|(i, _)| i % 100 == 7) {
                n.energy_left_j *= 0.5;
                n.rates[1].1 = 1.0 + (i % 3) as f64;
            }
            let cold = solve(&p)?;
            let warm = solve_warm(&p, &before.prices)?;
            for plan in [&cold, &warm] {
                assert!(plan.gap <= p.tolerance, "gap {}", plan.gap);
                assert!(plan.gap >= -1e-9, "broken bound: gap {}", plan.gap);
                assert!(plan.cost_usd <= cost * (1.0 + 1e-9));
                assert!(plan.server_rps <= cap * (1.0 + 1e-9));
            }
            // Both certified within the tolerance of the same optimum.
            assert!((warm.primal - cold.primal).abs() <= 2.0 * p.tolerance * cold.dual);
            assert!(warm.primal <= cold.dual * (1.0 + 1e-9));
            assert!(cold.primal <= warm.dual * (1.0 + 1e-9));
            assert!(
                warm.evaluations <= cold.evaluations,
                "warm {} cold {}",
                warm.evaluations,
                cold.evaluations
            );
        }
        Ok(())
    }

    #[test]
    fn unknown_class_is_an_error() {
        let mut p = problem(2, 0.1, 5.0);
        p.nodes[1].device_class = "toaster".into();
        assert!(matches!(
            solve(&p),
            Err(FleetError::UnknownDeviceClass { .. })
        ));
    }
}
