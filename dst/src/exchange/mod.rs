//! The node <-> coordinator exchange, run by the real I/O-free cores: each virtual node drives
//! the node's link core ([`link`]), each replica a real node session per connection with the
//! real result sink ([`session`], accepted by [`serve`], which also answers operator writers),
//! over simulated QUIC connections ([`conn`]) carrying the real wire messages encoded with the
//! real codec.

pub mod conn;
pub mod link;
pub mod serve;
pub mod session;

pub use crate::messages::{ToClient, ToCoord};
