//! The coordinator's fleet hub: soft state, catalogs, policy, metrics and the last plan, shared by
//! the node sessions, the solve loop and the admin API.

use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use scheduler::catalog::Catalog;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use wire::manifest::Manifest;

use super::metrics::Metrics;
use super::plan::FleetPolicy;
use super::registry::Registry;
use crate::cluster::leader::LeaderView;
use crate::cluster::peers::Peers;
use crate::raft::ReplicaHandle;

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
    pub mixes: std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<String>>>,
}

pub struct Hub {
    pub name: String,
    pub manifest: Manifest,
    pub catalog_digest: String,
    pub catalogs: Vec<Catalog>,
    registry: Mutex<Registry>,
    /// Defaults from configuration; replicated policy writes override them.
    pub policy: Mutex<FleetPolicy>,
    /// This replica of the coordinator's Raft group: plans, registry and policies commit here.
    pub raft: ReplicaHandle,
    pub self_id: u64,
    pub peers: Peers,
    pub leader: LeaderView,
    pub last_plan: Mutex<PlanInfo>,
    /// Connected nodes the last solve left out, with the reason ([`super::validate`]).
    excluded: Mutex<std::collections::BTreeMap<String, String>>,
    pub metrics: Metrics,
    /// One connection per node identity and its message rates.
    pub limits: super::limits::NodeLimits,
    /// Latency histograms and build info (`prometheus-client`).
    pub histograms: super::prom::Histograms,
    /// Wakes the solve loop early (a node joined or left).
    pub replan: Notify,
    pub started: Instant,
    /// The node endpoint's address, as nodes are told in redirects.
    pub node_addr: String,
    /// Whether every worker of this replica still runs (`/readyz` fails at once when not).
    pub health: crate::supervisor::Health,
    /// Model shards served to nodes (set at start by [`crate::blobs::attach`]).
    pub blobs: std::sync::OnceLock<std::sync::Arc<crate::blobs::BlobStore>>,
    /// Revoked node names, live: consulted by the node endpoint's TLS verifier at every
    /// handshake and kept in step with the replicated list by [`super::identity`].
    pub revoked: net::identity::RevokedSet,
    /// The issuing CA, if this replica holds one (enrollment and renewal need it).
    pub issuer: std::sync::OnceLock<super::identity::Issuer>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere while holding the lock leaves it usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a hub is built from.
pub struct HubConfig {
    pub name: String,
    pub manifest: Manifest,
    pub catalog_digest: String,
    pub policy: FleetPolicy,
    pub raft: ReplicaHandle,
    pub self_id: u64,
    pub peers: Peers,
    pub node_addr: String,
}

impl Hub {
    pub fn new(c: HubConfig) -> Self {
        let catalogs = super::plan::catalogs(&c.manifest);
        Self {
            name: c.name,
            manifest: c.manifest,
            catalog_digest: c.catalog_digest,
            catalogs,
            registry: Mutex::new(Registry::default()),
            policy: Mutex::new(c.policy),
            raft: c.raft,
            self_id: c.self_id,
            peers: c.peers,
            leader: LeaderView::default(),
            last_plan: Mutex::new(PlanInfo::default()),
            excluded: Mutex::new(std::collections::BTreeMap::new()),
            metrics: Metrics::default(),
            limits: super::limits::NodeLimits::default(),
            histograms: super::prom::Histograms::default(),
            replan: Notify::new(),
            started: Instant::now(),
            node_addr: c.node_addr,
            health: crate::supervisor::Health::default(),
            blobs: std::sync::OnceLock::new(),
            revoked: net::identity::RevokedSet::default(),
            issuer: std::sync::OnceLock::new(),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.leader.is_leader()
    }

    /// The fleet policy: configuration defaults overridden by replicated operator writes.
    pub fn effective_policy(&self) -> FleetPolicy {
        let mut policy = self.policy();
        self.raft.with_state(|s| {
            if let Some(crate::state::PolicyValue::Number(v)) =
                s.policies().get(super::plan::COST_BUDGET_KEY)
                && v.is_finite()
                && *v >= 0.0
            {
                policy.cost_budget_usd = *v;
            }
        });
        policy
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

    /// Nodes the last solve left out, by id, with the reason.
    pub fn excluded(&self) -> MutexGuard<'_, std::collections::BTreeMap<String, String>> {
        lock(&self.excluded)
    }

    pub fn set_last_plan(&self, info: PlanInfo) {
        *lock(&self.last_plan) = info;
    }
}
