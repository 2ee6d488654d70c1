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
    /// A specialised head to run first on the device while this node's stream is skewed; its
    /// "other" answers go to the variant the per-request policy chose (cascade).
    pub specialised: Option<SpecialisedRun>,
}

/// A specialised variant as a node runs it: `trunk_variant`'s trunk (a catalog variant the node
/// fetches like any other) followed by a head fetched as a shard by its digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecialisedRun {
    /// Name the node reports answers under.
    pub variant: String,
    /// The catalog variant whose trunk computes the embedding.
    pub trunk_variant: String,
    /// sha256 (hex) of the encoded [`crate::head::Head`]; also its only shard's digest.
    pub head_sha256: String,
    /// The app's class ids it answers for.
    pub classes: Vec<u32>,
    /// Its accuracy measured on held-out images at the node's class mix, percent.
    pub accuracy: f64,
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
