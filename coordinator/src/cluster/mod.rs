//! The coordinator as a replica set: peers from configuration, Raft over QUIC, and the leader
//! view that gates solving, plan pushes and node sessions.

pub mod leader;
pub mod peers;
pub mod transport;
