//! The fractional (LP) optimum behind `mcdnn`, `bound` and the fleet solver.
//!
//! Problem: nodes, each with an energy budget and groups of requests (an app on a node, or a
//! class of trace requests). A group has a weight (requests) and a table of options (variant x
//! place); each request takes a mix of options or is dropped. Maximise total accuracy subject to
//! each node's energy and two coupling budgets: cloud cost and server capacity.
//!
//! Method: price-based (Lagrangian) decomposition. Given prices for cost and server use, each
//! node's problem is a multiple-choice knapsack LP over energy, solved exactly by the greedy on
//! the upper concave hull of every group's (energy, priced value) points. Prices are found by a
//! cutting-plane method on the (convex, piecewise-linear) dual; the primal is the best convex
//! combination of at most three evaluated pure solutions that meets both coupling budgets
//! (feasible by construction), and every evaluated price pair gives a dual value, so the gap is
//! certified.

mod cuts;
mod mixes;
mod solve;
mod table;

pub use mixes::{MixIter, Mixes};
pub use table::Table;

/// Problems with at least this many nodes are solved on `CHUNKS` threads.
const PARALLEL_MIN_NODES: usize = 4096;
const CHUNKS: usize = 2;

/// Sentinel option index for "drop the request".
pub const DROP: u32 = u32::MAX;

/// One (variant, place) choice for a request of a group, per request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Opt {
    /// Accuracy (percent) credited per request.
    pub value: f64,
    /// Device energy per request (J).
    pub energy: f64,
    /// Cloud cost per request (USD).
    pub cost: f64,
    /// Server use per request: 1 if offloaded, else 0.
    pub server: f64,
}

/// A group of requests sharing one option table.
#[derive(Debug, Clone, Copy)]
pub struct Group {
    pub table: u32,
    /// Requests in the group (objective, energy and cost scale with it).
    pub weight: f64,
    /// What one unit of `Opt::server` counts against the server budget for the whole group
    /// (e.g. the request rate when the budget is in requests/s).
    pub server_weight: f64,
}

/// A node: its energy budget and its groups `groups[first..first + len]`. Nodes with groups
/// take them in order: each one's start after the previous one's end (a solve refuses
/// anything else with [`SolveError::Layout`]).
#[derive(Debug, Clone, Copy)]
pub struct Node {
    pub energy_budget: f64,
    pub first: u32,
    pub len: u32,
}

/// The whole problem.
#[derive(Debug, Clone, Default)]
pub struct Problem {
    pub tables: Vec<Table>,
    pub groups: Vec<Group>,
    pub nodes: Vec<Node>,
    /// Coupling budgets; `f64::INFINITY` when absent.
    pub cost_budget: f64,
    pub server_budget: f64,
}

/// `(dual - primal) / |dual|`, 0 when both are 0 (nothing to serve), unclamped.
pub fn relative_gap(primal: f64, dual: f64) -> f64 {
    if dual == 0.0 && primal == 0.0 {
        0.0
    } else {
        (dual - primal) / dual.abs().max(f64::MIN_POSITIVE)
    }
}

/// Why a solve produced no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SolveError {
    /// A worker thread of the parallel node sweep panicked: its share of the sum is unknown, so
    /// no plan or bound built from it can be trusted.
    #[error("a solver worker thread panicked: {0}")]
    WorkerPanicked(String),
    /// A node's groups run past the problem's, or start before the previous node's end.
    #[error("malformed problem: {0}")]
    Layout(String),
}

/// Solution: per group a mix of options (the rest is dropped), the primal value and the dual
/// bound.
#[derive(Debug, Clone)]
pub struct Solution {
    /// Objective of the returned (feasible) mix: sum of weight x accuracy.
    pub value: f64,
    /// Certified upper bound on the LP optimum (best dual value found).
    pub dual: f64,
    pub cost_price: f64,
    pub server_price: f64,
    pub cost_used: f64,
    pub server_used: f64,
    pub energy_used: f64,
    /// Per group: (option index, fraction of the group's requests); drop is the remainder.
    pub mixes: Mixes,
    pub evaluations: usize,
    /// The price pairs `(mu, nu)` the returned mix combines: what a warm start of the next
    /// solve of a similar problem should evaluate first ([`Problem::solve_warm`]).
    pub prices: Vec<(f64, f64)>,
}

impl Solution {
    /// Relative optimality gap (dual - primal) / dual; 0 when both are 0. Not clamped: a
    /// negative gap means the "bound" is below a feasible plan, i.e. the dual is broken, and
    /// callers must see that rather than a reassuring 0.
    pub fn gap(&self) -> f64 {
        relative_gap(self.value, self.dual)
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Totals {
    adj: f64,
    value: f64,
    energy: f64,
    cost: f64,
    server: f64,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.adj += o.adj;
        self.value += o.value;
        self.energy += o.energy;
        self.cost += o.cost;
        self.server += o.server;
    }
}

#[cfg(test)]
#[path = "../lp_tests.rs"]
mod tests;
