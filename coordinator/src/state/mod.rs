//! The replicated state machine of the coordinator: what Raft agrees on.
//!
//! Plans, policies (budgets), the node registry, the catalog index, specialised-variant
//! metadata and the result ledger (what each node's results were recorded up to) are replicated so that a new leader resumes from the last committed plan.
//! Telemetry is soft state and deliberately not here.

pub mod backup;
mod codec;
mod command;
mod fleet;
mod results;

pub use codec::StateError;
pub use command::{Command, PolicyValue, SpecialisedVariant};
pub use fleet::{ApplyOutcome, CommittedPlan, FleetState, NodeRecord, PolicyWrite};
pub use results::{NodeResults, ResultRecord};
