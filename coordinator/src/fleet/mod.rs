//! Fleet management on the leader: node sessions over QUIC, soft state, the solve loop and the
//! assignments it pushes.

#[cfg(test)]
mod fixtures;
pub mod hub;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod plan;
pub mod prom;
pub mod registry;
pub mod sessions;
pub mod solve_loop;
pub mod status;
pub mod validate;
