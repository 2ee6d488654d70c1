//! `mcdnnctl` operator commands, as functions over parsed arguments so they can be tested and
//! reused without the binary.

pub mod bench;
pub mod cluster;
pub mod demo;
pub mod fleet_bench;
pub mod fleet_view;
pub mod http;
pub mod identity;
pub mod node_identity;
pub mod output;
pub mod plan_bench;
pub mod server_approval;
pub mod snapshot;
pub mod watchlist;
