//! The node <-> coordinator exchange, kept apart from the rest of the harness so the real
//! I/O-free cores (the coordinator's node session and the node's link, `handle(event, now) ->
//! actions`) can replace it: [`link::NodeLink`] is the node side, [`serve`] the coordinator side.
//! Both speak [`ToCoord`] / [`ToClient`], which carry the real wire `ResultBatch` and propose
//! the same `Command::RecordResults` the coordinator's session proposes.

pub mod link;
pub mod serve;

pub use crate::messages::{ToClient, ToCoord};
