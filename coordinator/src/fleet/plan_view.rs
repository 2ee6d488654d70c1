//! What the last solve produced, for `/status`: its figures and the nodes it left out.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

/// Figures of the last plan, for `/status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PlanInfo {
    pub epoch: u64,
    pub nodes: usize,
    pub primal: f64,
    pub dual: f64,
    pub gap: f64,
    pub solve_ms: f64,
    pub cost_usd: f64,
    pub server_rps: f64,
    /// Per node, app -> "variant@place:fraction" list of the plan.
    pub mixes: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// Assignments this epoch changed (the others kept theirs and were not pushed).
    #[serde(default)]
    pub changed: usize,
    /// Size of the plan command committed through Raft, bytes.
    #[serde(default)]
    pub raft_bytes: usize,
    /// The plan's price pairs (cost, capacity): the next solve's warm start.
    #[serde(default)]
    pub prices: Vec<(f64, f64)>,
}

/// Written by the solve loop, read by the status view.
#[derive(Debug, Clone, Default)]
pub struct PlanBoard {
    last: Arc<Mutex<PlanInfo>>,
    /// Connected nodes the last solve left out, with the reason ([`super::validate`]).
    excluded: Arc<Mutex<BTreeMap<String, String>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere while holding the lock leaves it usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PlanBoard {
    pub fn last_plan(&self) -> PlanInfo {
        lock(&self.last).clone()
    }

    pub fn set_last_plan(&self, info: PlanInfo) {
        *lock(&self.last) = info;
    }

    /// Nodes the last solve left out, by id, with the reason.
    pub fn excluded(&self) -> MutexGuard<'_, BTreeMap<String, String>> {
        lock(&self.excluded)
    }
}
