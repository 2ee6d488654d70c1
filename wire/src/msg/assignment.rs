//! The coordinator's per-node share of a plan epoch.

use serde::{Deserialize, Serialize};

/// What one node should do until the next epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// Plan epoch; increases with every committed plan.
    pub epoch: u64,
    pub node_id: String,
    /// When the leader issued it, ms since the Unix epoch.
    pub issued_unix_ms: u64,
    pub apps: Vec<AppAssignment>,
    /// Lagrange price of energy in the fleet solve (accuracy per joule).
    pub energy_price: f64,
    /// Lagrange price of cloud cost in the fleet solve (accuracy per dollar).
    pub cost_price: f64,
    /// Certified optimality gap of the plan (upper bound minus achieved, in accuracy points).
    pub plan_gap: f64,
}

/// One app's part of an [`Assignment`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppAssignment {
    pub app: String,
    /// Planned split of requests over variants and places; fractions sum to 1.
    pub mix: Vec<MixEntry>,
    /// Variants the per-request heuristic may pick from.
    pub allowed_variants: Vec<String>,
    /// `host:port` of the offload server for this app, if offloading is allowed.
    pub offload_target: Option<String>,
    /// Certificate name of the server at `offload_target`; the client refuses any other peer.
    pub offload_server: Option<String>,
    pub energy_budget_j_per_request: f64,
    pub cost_budget_usd_per_request: f64,
}

/// A share of requests to run with one variant in one place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixEntry {
    pub variant: String,
    pub place: PlaceTag,
    /// Share of the app's requests, in `[0, 1]`.
    pub fraction: f64,
}

/// Where a request runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PlaceTag {
    Device,
    Server,
}
