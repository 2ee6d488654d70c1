//! Online per-request policies: "which variant, where" for one request given the device state.
//!
//! Every policy shares [`Core`]: rate and skew tracking, the coordinator's constraints, and the
//! candidate enumeration that applies the feasibility rules once for all of them (latency limit
//! with the cold-start rule, memory, remaining energy and money including the worst case of a
//! cascade), so no policy can exceed a budget and none duplicates the rules.

mod baselines;
mod candidates;
mod cost;
mod mcdnn;
mod mcdnn_history;
mod paper;
mod stretch;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use baselines::{BestDevice, Cheapest, Cloud};
pub use candidates::{Candidate, Core};
pub use cost::{RunCost, meets_latency, run_cost};
pub use mcdnn::Mcdnn;
pub use paper::Paper;

use crate::catalog::{Catalog, Place};
use crate::state::{Budgets, Constraints, DeviceState};

/// What to do with one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Run(Run),
    Drop,
}

/// Run `variant` of the request's app at `place`.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub variant: String,
    pub place: Place,
    /// Set when `variant` is specialised: its "other" answer falls back to `fallback`.
    pub cascade: Option<Cascade>,
}

/// The cascade behind a specialised variant.
#[derive(Debug, Clone, PartialEq)]
pub struct Cascade {
    /// General variant (same app, same place) that answers when the specialised one says
    /// "other".
    pub fallback: String,
    /// Classes the specialised variant answers for.
    pub classes: Arc<[Arc<str>]>,
    /// "Other" answers are dropped (nothing more runs; `fallback` is empty): the plan cannot
    /// afford the general model for them.
    pub drop_other: bool,
}

/// What actually happened to a request, fed back to the policy.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Outcome<'a> {
    /// The class label seen (ground truth in simulation, the answer on a device).
    pub class: Option<&'a str>,
    /// Where it ran, or None if dropped.
    pub place: Option<Place>,
    pub variant: Option<&'a str>,
    pub energy_j: f64,
    pub cost_usd: f64,
    /// A variant had to be paged into device memory for it.
    pub swapped_in: bool,
}

/// An online scheduling policy. Object safe: the node and the simulator hold `Box<dyn Policy>`.
pub trait Policy: Send {
    /// The name `by_name` knows it by.
    fn name(&self) -> &str;
    /// Chooses variant and place for one request of `app` arriving at `now_s`.
    fn decide(&mut self, now_s: f64, app: &str, state: &DeviceState) -> Decision;
    /// Feeds back what happened to the request last decided for `app`.
    fn observe(&mut self, now_s: f64, app: &str, outcome: &Outcome<'_>);
    /// Applies a coordinator assignment.
    fn set_constraints(&mut self, constraints: Constraints);
    /// Replaces the paging cost of `variant` with a measured (smoothed) one, so later
    /// decisions charge what loading really costs on this device. Returns whether it was
    /// applied; a policy without a catalog ignores it.
    fn update_load_profile(&mut self, variant: &str, load_ms: f64, load_j: f64) -> bool {
        let _ = (variant, load_ms, load_j);
        false
    }
    /// Tells the policy the request frequency `app` is declared to have (the authors' scheduler
    /// budgets by it instead of a measured rate). Policies that measure ignore it.
    fn declare_rate(&mut self, app: &str, per_s: f64) {
        let _ = (app, per_s);
    }
}

/// Names `by_name` accepts, in the order reports list them.
pub const POLICY_NAMES: &[&str] = &["paper", "mcdnn", "best-device", "cloud", "cheapest"];

/// Errors creating a policy.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Serialize, Deserialize)]
pub enum PolicyError {
    #[error("unknown policy {0:?}; known: paper, mcdnn, best-device, cloud, cheapest")]
    Unknown(String),
}

/// Creates a policy by name for a device with these budgets.
pub fn by_name(
    name: &str,
    catalog: &Catalog,
    budgets: &Budgets,
) -> Result<Box<dyn Policy>, PolicyError> {
    let core = Core::new(Arc::new(catalog.clone()), budgets.clone());
    Ok(match name {
        "paper" => Box::new(Paper::new(core)),
        "mcdnn" => Box::new(Mcdnn::new(core)),
        "best-device" => Box::new(BestDevice::new(core)),
        "cloud" => Box::new(Cloud::new(core)),
        "cheapest" => Box::new(Cheapest::new(core)),
        other => return Err(PolicyError::Unknown(other.to_string())),
    })
}
