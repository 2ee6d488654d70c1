//! Inference results a node spools and reports.

use serde::{Deserialize, Serialize};

use super::assignment::PlaceTag;

/// A contiguous run of spooled results, starting at `first_seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultBatch {
    /// Random id the node's store got when it was created: a wiped or restored store starts a
    /// new incarnation whose sequence numbers never collide with the old one's in the ledger.
    pub incarnation: u64,
    pub first_seq: u64,
    pub results: Vec<InferenceResult>,
}

/// The outcome of one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferenceResult {
    /// Node-local sequence number of the result (the spool key).
    pub seq: u64,
    pub app: String,
    pub at_unix_ms: u64,
    /// Predicted class.
    pub label: u32,
    /// Ground truth when the source knows it (replayed data sets).
    pub truth: Option<u32>,
    /// Confidence of `label`.
    pub score: f32,
    pub variant: String,
    pub place: PlaceTag,
    pub energy_j: f64,
    pub cost_usd: f64,
    pub latency_ms: f64,
}
