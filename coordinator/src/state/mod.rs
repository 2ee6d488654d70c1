//! The replicated state machine of the coordinator: what Raft agrees on.
//!
//! Plans, policies (budgets), the node registry, the catalog index and specialised-variant
//! metadata are replicated so that a new leader resumes from the last committed plan.
//! Telemetry is soft state and deliberately not here.

mod codec;
mod command;
mod fleet;

pub use codec::StateError;
pub use command::{Command, PolicyValue, SpecialisedVariant};
pub use fleet::{ApplyOutcome, CommittedPlan, FleetState, NodeRecord, PolicyWrite};
