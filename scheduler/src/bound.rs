//! An upper bound on the mean accuracy any policy can reach on a trace: the LP relaxation with
//! perfect knowledge of the whole trace, no paging costs, no cold-start latency, each request
//! free to take any mix of the options it could have had (server only while connected; a
//! shared trunk's cost split among the requests of its frame). The reported figure is the dual
//! value, so numerical tolerance can only make it larger.
//!
//! Under the authors' evaluation model ([`crate::catalog::EvalModel::Authors`]) a specialised
//! variant is an option on its own wherever the engine would credit it (the authors' top-N
//! share of the window before the request reaches the trigger), worth the best profiled
//! accuracy for any share up to that one, and no latency limit applies (the authors check it
//! only on a cold miss): every run the engine credits is an option of the LP, at no less
//! value and no more cost, so the bound holds.
//!
//! Under the cascade model, specialisation is modelled as the cascade every policy runs: a specialised variant can run
//! only while the shared skew tracker ([`crate::specialise::tracker_for`]) has an active set; it
//! runs first on every request it is chosen for (the class is not known before it answers), and
//! its "other" answers fall back to a general variant or are dropped. Requests are grouped by
//! what is known before the answer (app, connectivity, the set's share of the window), and each
//! group's cascades are credited with the group's observed in-set fraction and the best
//! specialised accuracy any share up to the group's gives. So the bound is exact about what a
//! cascade costs; it bounds policies that cannot see a request's class before running it (all
//! of ours) in the sense of that fraction, not a clairvoyant one that picks in-set requests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, EvalModel, Place};
use crate::lp::{Group, Problem, SolveError, Table};
use crate::options::{OptionSpec, Specialised, steady_options};
use crate::state::Budgets;

/// What the bound needs to know about one request of the trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundRequest {
    /// App index in the catalog.
    pub app: usize,
    pub connected: bool,
    /// Share of the skew window (this request included) of the set the skew tracker had active
    /// when the request arrived, which the specialised accuracy is credited at; 0 when no set
    /// was active (no cascade can run).
    pub spec_share: f64,
    /// Whether the request's class is in that set (a cascade answers it without the fallback).
    pub in_set: bool,
    /// Requests in the same frame whose apps share a trunk with this one (>= 1).
    pub trunk_split: u32,
}

/// The bound and the totals of the relaxed optimum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoundResult {
    /// Mean accuracy in percent over all requests (dropped count 0).
    pub mean_accuracy: f64,
    pub requests: usize,
    pub energy_used_j: f64,
    pub cost_used_usd: f64,
    /// Relative gap between the LP's primal and the reported dual value.
    pub gap: f64,
}

/// Shares are rounded up to this grid so requests fall into few groups (rounding up keeps it a
/// bound: the specialised accuracy is non-decreasing in the share).
const SHARE_STEPS: f64 = 100.0;

/// Computes the bound for `requests` under `budgets`.
pub fn bound(
    catalog: &Catalog,
    budgets: &Budgets,
    requests: &[BoundRequest],
) -> Result<BoundResult, SolveError> {
    let trigger_min = catalog
        .apps
        .iter()
        .flat_map(|a| a.variants.iter())
        .filter_map(|v| v.specialised.first().map(|p| p.min_share))
        .fold(f64::INFINITY, f64::min);
    // (app, connected, share step, trunk split) -> (requests, in-set requests)
    let mut counts: BTreeMap<(usize, bool, u32, u32), (f64, f64)> = BTreeMap::new();
    for r in requests {
        if r.app >= catalog.apps.len() {
            continue;
        }
        let has_spec = catalog.apps[r.app]
            .variants
            .iter()
            .any(|v| v.is_specialised());
        let step = if has_spec && r.spec_share > 0.0 {
            (r.spec_share.min(1.0) * SHARE_STEPS).ceil() as u32
        } else {
            0
        };
        let c = counts
            .entry((r.app, r.connected, step, r.trunk_split.max(1)))
            .or_default();
        c.0 += 1.0;
        if step > 0 && r.in_set {
            c.1 += 1.0;
        }
    }
    let authors = catalog.constants.model == EvalModel::Authors;
    let admits = |_: usize, _: Place| true;
    let mut tables = Vec::new();
    let mut groups = Vec::new();
    for (&(app, connected, step, split), &(n, in_set)) in &counts {
        let share = step as f64 / SHARE_STEPS;
        // Below the lowest measured share a specialised variant is credited nothing.
        let specialised = if step > 0 && share >= trigger_min && authors {
            Specialised::Standalone(share)
        } else if step > 0 && share >= trigger_min {
            Specialised::Observed {
                share,
                in_set: in_set / n,
            }
        } else {
            Specialised::None
        };
        let spec = OptionSpec {
            connected,
            memory_mb: budgets.memory_mb,
            specialised,
            trunk_split: split as f64,
            admits: &admits,
        };
        let opts = steady_options(catalog, app, &spec);
        tables.push(Table::new(opts.into_iter().map(|o| o.opt).collect()));
        groups.push(Group {
            table: (tables.len() - 1) as u32,
            weight: n,
            server_weight: 0.0,
        });
    }
    let problem = Problem::single(tables, groups, budgets.energy_j, budgets.cost_usd);
    let sol = problem.solve(1e-9)?;
    let n = requests.len();
    Ok(BoundResult {
        mean_accuracy: if n == 0 { 0.0 } else { sol.dual / n as f64 },
        requests: n,
        energy_used_j: sol.energy_used,
        cost_used_usd: sol.cost_used,
        gap: sol.gap(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reqs(catalog: &Catalog, app: &str, n: usize) -> Vec<BoundRequest> {
        let a = catalog.app_index(app).unwrap_or(0);
        vec![
            BoundRequest {
                app: a,
                connected: true,
                spec_share: 0.0,
                in_set: false,
                trunk_split: 1
            };
            n
        ]
    }

    #[test]
    fn ample_budget_gives_the_best_variant() {
        let c = Catalog::paper();
        let b = Budgets {
            energy_j: 1e9,
            cost_usd: 1e9,
            horizon_s: 36_000.0,
            memory_mb: 1e9,
        };
        let r = bound(&c, &b, &reqs(&c, "deepface", 100)).expect("bound");
        assert!((r.mean_accuracy - 78.6).abs() < 1e-6, "{}", r.mean_accuracy);
    }

    #[test]
    fn zero_budget_gives_zero() {
        let c = Catalog::paper();
        let b = Budgets {
            energy_j: 0.0,
            cost_usd: 0.0,
            horizon_s: 36_000.0,
            memory_mb: 1e9,
        };
        let r = bound(&c, &b, &reqs(&c, "deepface", 100)).expect("bound");
        assert!(r.mean_accuracy.abs() < 1e-9);
    }
}
