//! Error types of the replication core.

use thiserror::Error;

/// What went wrong in the sled-backed Raft log (`SledStorage`).
#[derive(Debug, Error)]
pub enum StorageError {
    /// sled itself failed (I/O error, lock held by another process, ...).
    #[error(
        "raft storage: sled error: {0} (check the data directory is writable and not used by another replica)"
    )]
    Sled(#[from] sled::Error),
    /// Bytes on disk did not decode or broke an invariant of the log.
    #[error(
        "raft storage is corrupt: {0}; wipe the data directory and restart the replica in join mode so the leader sends it a snapshot"
    )]
    Corrupt(String),
    /// A failpoint made this write fail (fault-injection tests only).
    #[cfg(feature = "failpoints")]
    #[error("raft storage: injected failure at failpoint {0}")]
    Injected(&'static str),
    /// A protobuf value could not be encoded (should not happen for well-formed raft values).
    #[error("raft storage: cannot encode {what}: {source}")]
    Encode {
        /// Which value failed.
        what: &'static str,
        /// The protobuf error.
        source: protobuf::ProtobufError,
    },
    /// `append` was given entries that start inside the compacted prefix.
    #[error("cannot append entries from index {first}: log is compacted up to {compacted}")]
    AppendCompacted {
        /// First index of the rejected batch.
        first: u64,
        /// Last compacted index.
        compacted: u64,
    },
    /// `append` was given entries that would leave a hole after the current last index.
    #[error("cannot append entries from index {first}: log ends at {last}, that would leave a gap")]
    AppendGap {
        /// First index of the rejected batch.
        first: u64,
        /// Current last index.
        last: u64,
    },
    /// The batch passed to `append` is not a run of consecutive indexes.
    #[error("entries to append are not consecutive at index {0}")]
    AppendNotConsecutive(u64),
    /// A snapshot older than what the log already covers.
    #[error("snapshot at index {index} is out of date: log already starts at {first}")]
    SnapshotOutOfDate {
        /// Index of the rejected snapshot.
        index: u64,
        /// First index of the current log.
        first: u64,
    },
    /// `compact` beyond the end of the log.
    #[error("cannot compact to index {index}: log ends at {last}")]
    CompactBeyondLog {
        /// Requested compact index.
        index: u64,
        /// Current last index.
        last: u64,
    },
    /// `create_snapshot` at an index whose term is no longer (or not yet) known.
    #[error("cannot snapshot at index {index}: only [{first}, {last}] are in the log")]
    SnapshotIndexOutOfRange {
        /// Requested snapshot index.
        index: u64,
        /// First index whose term is known (the compacted index).
        first: u64,
        /// Last index.
        last: u64,
    },
}

impl From<StorageError> for raft::Error {
    fn from(e: StorageError) -> Self {
        raft::Error::Store(raft::StorageError::Other(Box::new(e)))
    }
}

/// Why a replica could not start or stopped.
#[derive(Debug, Error)]
pub enum ReplicaError {
    /// The log storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// raft-rs refused an operation (bad config, corrupt state, ...).
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// The replicated state machine could not decode a snapshot or command.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// A committed entry could not be applied; the replica stops rather than diverge.
    #[error(
        "committed entry {index} cannot be applied: {reason}; the replica stopped to avoid diverging (version skew or corruption)"
    )]
    CorruptEntry {
        /// Raft index of the entry.
        index: u64,
        /// What was wrong with it.
        reason: String,
    },
    /// The data folder holds the log of another cluster than the configured one.
    #[error(
        "the data folder belongs to cluster {stored}, but this replica is configured for cluster {configured}; check the cluster name or point it at its own data folder"
    )]
    ForeignCluster {
        /// Cluster id stored with the log.
        stored: crate::raft::ClusterId,
        /// Cluster id of the configured cluster name.
        configured: crate::raft::ClusterId,
    },
    /// Ids must be non-zero (raft reserves 0 for "none").
    #[error("replica id must be non-zero (use StatefulSet ordinal + 1)")]
    ZeroId,
    /// The driver task panicked or was aborted.
    #[error("replica task ended abnormally: {0}")]
    Task(String),
}

/// Why a proposal (or membership/leadership request) did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProposeError {
    /// This replica is not the leader (or lost leadership before the entry applied). The write
    /// may or may not commit later; retry on the leader (writes carry ids so retries are safe).
    #[error("not the leader; leader hint: {leader_hint:?}")]
    NotLeader {
        /// The leader this replica believes in, if any.
        leader_hint: Option<u64>,
    },
    /// raft dropped the proposal (leadership transfer in progress, uncommitted-size limit).
    #[error("proposal dropped by raft: {0}; retry shortly")]
    Dropped(String),
    /// The entry committed but the state machine rejected it (e.g. a stale plan epoch).
    #[error("committed at index {index} but rejected by the state machine: {reason}")]
    Rejected {
        /// Index the entry was applied at.
        index: u64,
        /// Why the state machine ignored it.
        reason: String,
    },
    /// Another membership change has not been applied yet; raft allows one at a time.
    #[error("another membership change is still pending; retry after it applies")]
    ConfChangeInProgress,
    /// The membership change is unknown, redundant or would leave the group unable to commit.
    #[error("membership change refused: {0}")]
    MembershipRefused(String),
    /// Too few of the voters left after the change were heard from lately. Reachability is an
    /// observation, not a property of the request: a leader elected a moment ago has not heard
    /// from its followers yet, so callers may retry briefly before giving up.
    #[error("membership change refused: {0}")]
    VotersUnreachable(String),
    /// The leader was asked to remove itself; transfer leadership first.
    #[error("the leader cannot remove itself; transfer leadership to another member first")]
    CannotRemoveLeader,
    /// No answer within the configured proposal timeout (e.g. no quorum reachable).
    #[error("proposal timed out after {0:?} (no quorum reachable?)")]
    Timeout(std::time::Duration),
    /// The command could not be encoded.
    #[error("cannot encode command: {0}")]
    Encode(String),
    /// The replica task has stopped.
    #[error("replica has stopped")]
    Stopped,
}

/// Why an inbound raft message was not queued.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StepError {
    /// The inbound queue is full; the message was dropped (raft retransmits).
    #[error("replica inbound queue full; message dropped")]
    Busy,
    /// The replica task has stopped.
    #[error("replica has stopped")]
    Stopped,
}
