//! The node's opening message.

use serde::{Deserialize, Serialize};

use super::telemetry::Battery;

/// What a node announces when it connects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The id the node believes it has; the coordinator checks it against the certificate.
    pub node_id: String,
    /// Device class naming the profile set in the catalog (e.g. `"phone"`).
    pub device_class: String,
    /// Whether this node runs requests for itself only or also serves offloads.
    pub role: Role,
    /// The sender's [`super::PROTOCOL_VERSION`].
    pub protocol_version: u16,
    /// Hex sha256 digests of the catalog manifests the node holds.
    pub catalog_digests: Vec<String>,
    /// `host:port` where the node serves offload requests, if it does.
    pub offload_addr: Option<String>,
    /// Battery state at connect time.
    pub battery: Battery,
    /// Apps the node runs.
    pub apps: Vec<String>,
    /// Version of the watchlist the node holds (0: none); the leader pushes its list only when
    /// its version differs (since protocol version 5).
    pub watchlist_version: u64,
}

/// What a node does in the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Role {
    /// A battery device running its own apps.
    Device,
    /// A server taking offloaded requests.
    Server {
        /// Requests per second the server can sustain.
        capacity_rps: f64,
    },
}
