//! Offloading over QUIC with mutual TLS: a server role that runs requested variants for enrolled
//! nodes, and the device-side client the serving loop calls (falling back locally on failure).

pub mod client;
pub mod server;

use crate::engine::Prediction;

/// Runs a request on an offload server (blocking from the serving thread).
pub trait Offloader: Send {
    /// Label, score and the server's compute time in ms.
    fn offload(
        &mut self,
        app: &str,
        variant: &str,
        pixels: &[u8],
    ) -> Result<(Prediction, f64), String>;

    /// Whether the operator fixed the offload server (so offloading is allowed whatever the
    /// assignment says about targets).
    fn has_fixed_target(&self) -> bool {
        false
    }
}
