//! The MCDNN coordinator: library part shared by the `mcdnn-coordinator` daemon and the
//! `mcdnnctl` operator CLI.

pub mod admin;
pub mod blobs;
pub mod cluster;
pub mod ctl;
pub mod daemon;
pub mod enrollment;
pub mod faces;
pub mod fleet;
pub mod raft;
pub mod rate;
pub mod special;
pub mod state;
pub mod supervisor;
pub mod wiring;
