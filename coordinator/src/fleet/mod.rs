//! Fleet management on the leader: node sessions over QUIC, soft state, the solve loop and the
//! assignments it pushes. Each task takes only the handles it uses (built in
//! the daemon's wiring).

pub mod blob_streams;
pub mod catalog;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod handoff;
pub mod identity;
pub mod limits;
pub mod liveness;
pub mod metrics;
pub mod node_endpoint;
pub mod plan;
pub mod plan_delta;
pub mod plan_view;
pub mod policies;
pub mod prom;
pub mod push;
pub mod registrar;
pub mod registry;
pub mod result_sink;
pub mod session_core;
pub mod session_reader;
pub mod sessions;
pub mod solve_loop;
pub mod specialiser;
pub mod status;
pub mod validate;
pub mod watchlist_push;

/// Wakes the solve loop early (a node joined or left, a policy changed).
pub type Replan = std::sync::Arc<tokio::sync::Notify>;
