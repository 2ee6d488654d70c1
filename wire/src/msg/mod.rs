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
pub const PROTOCOL_VERSION: u16 = 6;

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
    /// node's QUIC pings and the leader's acknowledgements of them carry that evidence (see
    /// [`LIVENESS_PING_INTERVAL`]), so a leader no longer sends it. A node still counts it as a
    /// sign of life. Kept so the other messages keep their encoding.
    Heartbeat,
}

/// How often a node's QUIC connection to its coordinator pings it (the transport's keep-alive,
/// `net::tls::coordinator_client_config`). The coordinator's QUIC stack acknowledges every ping
/// within its ACK delay, so a node that receives no datagram for a few intervals knows its
/// leader is gone (sub-second) instead of waiting for the idle timeout; and the leader spends
/// no timer, task or stream frame per node on it.
pub const LIVENESS_PING_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

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
