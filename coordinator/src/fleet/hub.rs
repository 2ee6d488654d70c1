//! The coordinator's fleet hub: soft state, catalogs, policy, metrics and the last plan, shared by
//! the node sessions, the solve loop and the admin API.

use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use protocol::manifest::Manifest;
use scheduler::catalog::Catalog;
use serde::Serialize;
use tokio::sync::Notify;

use super::epochs::EpochStore;
use super::metrics::Metrics;
use super::plan::FleetPolicy;
use super::registry::Registry;

/// Figures of the last plan, for `/status`.
#[derive(Debug, Clone, Default, Serialize)]
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
    pub mixes: std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<String>>>,
}

pub struct Hub {
    pub name: String,
    pub manifest: Manifest,
    pub catalog_digest: String,
    pub catalogs: Vec<Catalog>,
    registry: Mutex<Registry>,
    pub policy: Mutex<FleetPolicy>,
    pub epochs: EpochStore,
    pub last_plan: Mutex<PlanInfo>,
    pub metrics: Metrics,
    /// Wakes the solve loop early (a node joined or left).
    pub replan: Notify,
    pub started: Instant,
    /// The node endpoint's address, as nodes are told in redirects.
    pub node_addr: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere while holding the lock leaves it usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    pub fn new(
        name: String,
        manifest: Manifest,
        catalog_digest: String,
        policy: FleetPolicy,
        epochs: EpochStore,
        node_addr: String,
    ) -> Self {
        let catalogs = super::plan::catalogs(&manifest);
        Self {
            name,
            manifest,
            catalog_digest,
            catalogs,
            registry: Mutex::new(Registry::default()),
            policy: Mutex::new(policy),
            epochs,
            last_plan: Mutex::new(PlanInfo::default()),
            metrics: Metrics::default(),
            replan: Notify::new(),
            started: Instant::now(),
            node_addr,
        }
    }

    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    pub fn policy(&self) -> FleetPolicy {
        lock(&self.policy).clone()
    }

    pub fn last_plan(&self) -> PlanInfo {
        lock(&self.last_plan).clone()
    }

    pub fn set_last_plan(&self, info: PlanInfo) {
        *lock(&self.last_plan) = info;
    }
}
