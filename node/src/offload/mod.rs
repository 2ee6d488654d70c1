//! Offloading over QUIC with mutual TLS: a server role that runs requested variants for enrolled
//! nodes, and the device-side client the serving loop calls (falling back locally on failure).

pub mod client;
pub mod server;
