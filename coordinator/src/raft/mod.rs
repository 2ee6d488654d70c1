//! Raft replication core of the coordinator.
//!
//! One tokio task per replica ([`Replica::start`]) drives a raft-rs `RawNode` over a sled
//! log ([`SledStorage`]) and applies committed commands to the [`crate::state::FleetState`].
//! Callers talk to it through a cloneable [`ReplicaHandle`]; peers' messages come in through
//! [`ReplicaHandle::step`] and go out through a [`Transport`] (in-process channels for tests,
//! QUIC, carrying bytes from [`encode_message`]).
//!
//! Cluster lifecycle, the same configuration on every start (no bootstrap flag):
//! - an empty disk asks its configured peers what they hold ([`hello`], [`formation`]): a
//!   majority of empty (or genesis-only) replicas with the identical genesis write it and form
//!   a brand-new cluster; if any peer holds a log, the cluster exists and this replica lost
//!   its disk: it asks the leader to take it out, back in as a learner, restore it by snapshot
//!   and promote it once caught up; it votes only after that;
//! - restart: the replica resumes from its sled log;
//! - the log carries the cluster id (a hash of the configured cluster name); replicas refuse
//!   peers of another cluster and refuse to start on another cluster's data folder.

pub mod cluster_id;
mod codec;
mod driver;
mod error;
pub mod formation;
pub mod hello;
pub mod lock_wait;
mod logger;
mod replica;
pub mod storage;
pub mod testing;
mod transport;
mod types;
mod view;

pub use cluster_id::ClusterId;
pub use codec::{MAX_MESSAGE_BYTES, MessageCodecError, decode_message, encode_message};
pub use error::{ProposeError, ReplicaError, StepError, StorageError};
pub use replica::{Replica, ReplicaHandle};
pub use storage::SledStorage;
pub use testing::InProcessNetwork;
pub use transport::Transport;
pub use types::{PeerProgress, ReplicaConfig, Role, Status};
pub use view::RaftView;
