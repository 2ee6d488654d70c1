//! `mcdnnctl` operator commands, as functions over parsed arguments so they can be tested and
//! reused without the binary.

pub mod bench;
pub mod cluster;
pub mod demo;
pub mod http;
pub mod identity;
pub mod snapshot;
