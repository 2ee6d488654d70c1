//! The messages nodes and coordinators exchange over QUIC, grouped by topic.
//!
//! Every stream carries frames of one direction's enum: a node sends [`NodeMsg`], a coordinator
//! answers with [`CoordMsg`]; an offload stream carries [`OffloadRequest`] / [`OffloadReply`].
//! Frames are built by [`crate::codec`]; the peer's identity comes from its certificate
//! (`mcdnn_net::tls::peer`), never from a field in these messages.

mod assignment;
mod blobs;
mod hello;
mod offload;
mod results;
mod telemetry;
mod watchlist;

use serde::{Deserialize, Serialize};

pub use assignment::{AppAssignment, Assignment, MixEntry, PlaceTag, SpecialisedRun};
pub use blobs::{BlobReply, BlobReplyView, BlobRequest, FileShards, SHARD_BYTES, VariantManifest};
pub use hello::{Hello, Role};
pub use offload::{OffloadReply, OffloadRequest};
pub use results::{InferenceResult, ResultBatch};
pub use telemetry::{
    AppTelemetry, Battery, BatterySource, Link, LoadProfile, SpoolCounters, Telemetry,
};
pub use watchlist::{
    Assembly as WatchlistAssembly, DESCRIPTOR_LEN, MAX_DESCRIPTORS_PER_NAME,
    MAX_DESCRIPTORS_PER_PART, MAX_NAME_CHARS, MAX_NAMES as MAX_WATCHLIST_NAMES,
    MAX_PARTS as MAX_WATCHLIST_PARTS, WatchlistEntry, WatchlistPart,
    check_entry as check_watchlist_entry, check_name as check_watchlist_name,
    part as watchlist_part, part_ranges as watchlist_part_ranges, split as split_watchlist,
};

/// Version of the message set; carried in every frame header and in [`Hello`]. Bump on any change
/// to a message's shape: bincode is not self-describing, so old and new peers cannot mix.
pub const PROTOCOL_VERSION: u16 = 7;

/// TLS ALPN identifier for this protocol version.
pub const ALPN: &[u8] = b"mcdnn/1";

/// Node -> coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NodeMsg {
    /// First message on a connection: who the node says it is and what it holds.
    Hello(Hello),
    /// Periodic soft state (1 s default); the leader keeps only the latest per node.
    Telemetry(Telemetry),
    /// The node has taken the assignment of this epoch into use.
    Ack {
        /// Epoch of the acknowledged [`Assignment`].
        epoch: u64,
    },
    /// Spooled inference results; the coordinator answers [`CoordMsg::ResultsAck`].
    Results(ResultBatch),
    /// Orderly goodbye before closing the connection.
    Bye,
    /// Asks for a new certificate for a key the node just made (its identity is the session's
    /// certificate, never a field); answered with [`CoordMsg::Renewed`] or an error.
    Renew {
        /// PKCS#10 request, PEM, at most `mcdnn_net::identity::MAX_CSR_PEM_BYTES`.
        csr_pem: String,
    },
}

/// Coordinator -> node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CoordMsg {
    /// Answer to [`Hello`] from the leader.
    Welcome {
        /// The node's id as its certificate says (authoritative over `Hello::node_id`).
        node_id: String,
        /// Identity of the leader replica answering.
        leader: String,
        /// Epoch of the newest committed plan.
        epoch: u64,
    },
    /// A new plan epoch for this node.
    Assignment(Assignment),
    /// This replica is a follower: reconnect to the leader.
    Redirect {
        /// `host:port` of the leader's node endpoint.
        leader_addr: String,
    },
    /// Results up to and including this sequence number are durable; the node may drop them.
    ResultsAck {
        /// The store incarnation ([`ResultBatch::incarnation`]) the acknowledged results came from.
        incarnation: u64,
        /// Highest acknowledged [`InferenceResult::seq`].
        up_to_seq: u64,
    },
    /// Answer to [`NodeMsg::Renew`]: the new chain (leaf, then the issuing CA), PEM.
    Renewed {
        /// Leaf certificate followed by the issuing CA certificate.
        chain_pem: String,
    },
    /// A renewal the coordinator refused (the session stays open; the node retries later).
    RenewRefused {
        /// Why, and what to do.
        reason: String,
    },
    /// The fleet's revoked node names (the whole list, sent on welcome and on every change):
    /// an offload server refuses these peers and closes their connections.
    Revocations {
        /// Revoked node names (at most [`crate::identity::MAX_REVOKED`]).
        names: Vec<String>,
    },
    /// The coordinator refuses something; the connection is usually closed after this.
    Error {
        /// Machine-readable class of the problem.
        code: ErrorCode,
        /// Human-readable explanation with what to do.
        message: String,
    },
    /// The leader is alive. Leaders of protocol 4 sent one every 200 ms; since protocol 5 the
    /// node's pings and the leader's acknowledgements of them carry that evidence (see
    /// [`LIVENESS_PING_INTERVAL`]), so a leader no longer sends it. A node still counts it as a
    /// sign of life. Kept so the other messages keep their encoding.
    Heartbeat,
    /// How often this node is to ping the leader from now on (protocol 7): sent after
    /// [`CoordMsg::Welcome`] and whenever the fleet's size moves the interval
    /// ([`liveness_ping_interval`]). A node refuses a value outside
    /// [`LIVENESS_PING_INTERVAL`]..=[`MAX_LIVENESS_PING_INTERVAL`] and keeps the one it has.
    Liveness {
        /// Milliseconds between the node's pings.
        ping_interval_ms: u32,
    },
}

/// How often a node pings its coordinator until told otherwise, and the shortest interval it
/// accepts. A ping is an empty QUIC datagram the leader never reads: its QUIC stack
/// acknowledges it within its ACK delay, so a node that receives no datagram for three
/// intervals knows its leader is gone instead of waiting for the idle timeout, and the leader
/// spends no timer, task or stream frame per node on it.
pub const LIVENESS_PING_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);
/// The longest ping interval a leader may ask for: a dead leader is then noticed after three
/// seconds of silence. It bounds failover time in the largest fleets.
pub const MAX_LIVENESS_PING_INTERVAL: std::time::Duration = std::time::Duration::from_millis(1000);
/// Pings per second a leader budgets for the whole fleet (each is a received and an
/// acknowledging packet): 1000 nodes ping every 200 ms, 10 000 every second. Measured on the
/// 2-core machine, 10 000 nodes at 200 ms (100 000 packets/s at the leader) overflowed its
/// socket and lost nodes faster than they joined.
pub const LIVENESS_PINGS_PER_S: usize = 5000;

/// The ping interval a leader with `connected` node sessions asks for: the fleet's pings within
/// [`LIVENESS_PINGS_PER_S`], in steps of 100 ms, between [`LIVENESS_PING_INTERVAL`] and
/// [`MAX_LIVENESS_PING_INTERVAL`].
pub fn liveness_ping_interval(connected: usize) -> std::time::Duration {
    let ms = (connected as u64)
        .saturating_mul(1000)
        .div_ceil(LIVENESS_PINGS_PER_S as u64);
    let stepped = ms.div_ceil(100) * 100;
    std::time::Duration::from_millis(stepped)
        .clamp(LIVENESS_PING_INTERVAL, MAX_LIVENESS_PING_INTERVAL)
}

/// A [`CoordMsg::Liveness`] interval a node may take, or why not.
pub fn check_liveness_interval(ping_interval_ms: u32) -> Result<std::time::Duration, String> {
    let interval = std::time::Duration::from_millis(ping_interval_ms.into());
    if (LIVENESS_PING_INTERVAL..=MAX_LIVENESS_PING_INTERVAL).contains(&interval) {
        Ok(interval)
    } else {
        Err(format!(
            "ping interval {ping_interval_ms} ms is outside {}..={} ms",
            LIVENESS_PING_INTERVAL.as_millis(),
            MAX_LIVENESS_PING_INTERVAL.as_millis()
        ))
    }
}

/// Why a coordinator refused a node's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The node speaks another protocol version.
    VersionMismatch,
    /// The node reported for an identity other than its certificate's.
    IdentityMismatch,
    /// The certificate's kind may not send this (e.g. an operator sending telemetry).
    Forbidden,
    /// The message arrived out of order (e.g. telemetry before hello).
    BadSequence,
    /// The node's catalog does not match the fleet's.
    CatalogMismatch,
    /// The coordinator cannot serve right now (no quorum, shutting down); retry later.
    Unavailable,
    /// A bug on the coordinator side.
    Internal,
}
