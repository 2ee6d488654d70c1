//! The replicated state machine of the coordinator: what Raft agrees on.
//!
//! Plans, policies (budgets), the node registry, the catalog index, specialised-variant
//! metadata, the watchlist (descriptors only) and the result ledger (what each node's results were recorded up to) are replicated so that a new leader resumes from the last committed plan.
//! Telemetry is soft state and deliberately not here.

pub mod backup;
mod codec;
mod command;
mod fleet;
mod identity;
mod legacy;
mod outcome;
mod plan;
mod policy;
mod policy_schema;
mod results;
mod servers;
mod size_guard;
mod specialised;
mod watchlist;

#[cfg(test)]
pub(crate) use codec::STATE_BUDGET;
pub use codec::StateError;
pub use command::{Command, MAX_REGISTRATIONS, NodeRegistration, PolicyValue, SpecialisedVariant};
pub use fleet::{FleetState, NodeRecord};
pub use identity::{IdentityState, Revocation, TokenRecord, constant_time_eq};
pub use outcome::ApplyOutcome;
pub use plan::{CommittedPlan, MAX_PLAN_BYTES};
pub use policy::{MAX_WRITERS, POLICY_LOG_CAPACITY, PolicyWrite, WRITE_ID_WINDOW};
pub use policy_schema::{
    COST_BUDGET_KEY, MAX_KEY_BYTES, MAX_TEXT_BYTES, MAX_WRITER_BYTES, known_keys,
    validate as validate_policy,
};
pub use results::{NodeResults, ResultRecord};
pub use servers::{ServerApproval, ServerApprovals};
#[cfg(test)]
pub(crate) use specialised::tests as tests_support;
pub use specialised::{MAX_PER_APP as MAX_SPECIALISED_PER_APP, check as check_specialised};
pub use watchlist::{Watchlist, WatchlistRecord};
