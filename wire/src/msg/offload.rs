//! Requests one node offloads to a server node, and the answers.

use serde::{Deserialize, Serialize};

/// One frame to classify remotely.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffloadRequest {
    /// Client-chosen id echoed in the reply.
    pub id: u64,
    pub app: String,
    pub variant: String,
    /// Grayscale pixels, row-major, `height * width` bytes.
    pub pixels: Vec<u8>,
    pub height: u16,
    pub width: u16,
}

/// The server's answer to an [`OffloadRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffloadReply {
    pub id: u64,
    /// `(label, score, server_ms)` on success, or why the server could not run it.
    pub result: Result<(u32, f32, f64), String>,
}
