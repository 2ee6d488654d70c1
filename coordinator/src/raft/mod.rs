//! Raft replication core of the coordinator.
//!
//! One tokio task per replica ([`Replica::start`]) drives a raft-rs `RawNode` over a sled
//! log ([`SledStorage`]) and applies committed commands to the [`crate::state::FleetState`].
//! Callers talk to it through a cloneable [`ReplicaHandle`]; peers' messages come in through
//! [`ReplicaHandle::step`] and go out through a [`Transport`] (in-process channels for tests,
//! QUIC later, carrying bytes from [`encode_message`]).
//!
//! Cluster lifecycle:
//! - a brand-new cluster: every replica starts with `bootstrap: true` and the same peer list
//!   (ids 1..=N, the StatefulSet ordinal + 1); they all write an identical initial snapshot;
//! - restart: the replica resumes from its sled log (bootstrap is ignored when the disk holds
//!   state);
//! - lost disk, or a new member: start with `bootstrap: false`; the replica waits with an empty
//!   log until the leader sends it a snapshot (members are added with
//!   [`ReplicaHandle::add_member`] first).

mod codec;
mod driver;
mod error;
mod logger;
mod replica;
pub mod storage;
mod transport;

pub use codec::{MAX_MESSAGE_BYTES, MessageCodecError, decode_message, encode_message};
pub use error::{ProposeError, ReplicaError, StepError, StorageError};
pub use replica::{PeerProgress, Replica, ReplicaConfig, ReplicaHandle, Role, Status};
pub use storage::SledStorage;
pub use transport::{InProcessNetwork, Transport};
