//! The plain types a replica is configured with and reports (its configuration, role, status,
//! peer progress), shared by the driver that fills them and the handle that returns them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Tuning of a replica. `Default` gives the production values.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// Wall-clock length of one raft tick.
    pub tick_interval: Duration,
    /// Ticks without hearing from a leader before a follower campaigns.
    pub election_tick: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_tick: usize,
    /// Upper bound (exclusive) of raft-rs' randomized election timeout, in ticks; 0 keeps
    /// raft-rs' default of `2 * election_tick`. raft-rs draws the timeout from the OS-seeded
    /// thread RNG, so `election_tick + 1` (a fixed timeout) is what a deterministic simulation
    /// uses, varying `election_tick` per replica from its own seed instead.
    pub max_election_tick: usize,
    /// Take a state-machine snapshot and compact the log every this many applied entries.
    pub snapshot_interval: u64,
    /// Entries kept in the log behind a snapshot, so a briefly lagging follower can catch up
    /// from the log instead of receiving a whole snapshot.
    pub log_retain_entries: u64,
    /// How long [`ReplicaHandle::propose`] and membership changes wait for commit + apply.
    pub proposal_timeout: Duration,
    /// Name of the cluster; its hash is the cluster id stored with the log. Replicas of
    /// differently named clusters refuse each other.
    pub cluster_name: String,
    /// Leader steps down when it has not heard from a quorum for an election timeout, so a
    /// leader cut off in a minority stops accepting proposals.
    pub check_quorum: bool,
    /// Pre-vote keeps a replica rejoining after a partition from disrupting the leader.
    pub pre_vote: bool,
    /// Max bytes of entries in one append message.
    pub max_size_per_msg: u64,
    /// Max in-flight append messages per follower.
    pub max_inflight_msgs: usize,
    /// Capacity of the inbound message queue; messages beyond it are dropped.
    pub inbound_queue: usize,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            // LAN timing: Raft heartbeats every 100 ms, an election after 500-750 ms without
            // one (pre-vote and check-quorum keep a slow follower from deposing a live
            // leader). The narrow randomisation window bounds failover; with three replicas
            // and pre-vote a split vote costs one more window. See ARCHITECTURE "Failover
            // timing".
            tick_interval: Duration::from_millis(50),
            election_tick: 10,
            heartbeat_tick: 2,
            max_election_tick: 15,
            snapshot_interval: 1000,
            log_retain_entries: 100,
            proposal_timeout: Duration::from_secs(5),
            cluster_name: super::cluster_id::DEFAULT_CLUSTER_NAME.to_owned(),
            check_quorum: true,
            pre_vote: true,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            inbound_queue: 4096,
        }
    }
}

/// Raft role of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Pre-vote phase of an election.
    PreCandidate,
    /// Campaigning.
    Candidate,
    /// Leader of the current term.
    Leader,
}

/// Replication progress of one peer, as seen by the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerProgress {
    /// Highest index known replicated on the peer.
    pub matched: u64,
    /// Next index the leader will send.
    pub next_index: u64,
    /// raft-rs progress state (Probe, Replicate, Snapshot).
    pub state: String,
    /// Leader's last index minus `matched`.
    pub lag: u64,
    /// Whether the peer was heard from during the last election timeout.
    pub recent_active: bool,
}

/// A point-in-time view of a replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// This replica's id.
    pub id: u64,
    /// The leader it knows of.
    pub leader_id: Option<u64>,
    /// Current term.
    pub term: u64,
    /// Commit index.
    pub commit: u64,
    /// Applied index.
    pub applied: u64,
    /// First index still in the log (earlier ones are compacted into the snapshot).
    pub first_index: u64,
    /// Last log index.
    pub last_index: u64,
    /// Current role.
    pub role: Role,
    /// Voting members (sorted).
    pub voters: Vec<u64>,
    /// Non-voting members (sorted).
    pub learners: Vec<u64>,
    /// Per-peer progress; filled only on the leader.
    pub progress: BTreeMap<u64, PeerProgress>,
    /// Back with an empty disk and not yet re-admitted as a learner: it does not vote, even if
    /// a snapshot already restored its data and lists it as a voter.
    pub rejoining: bool,
}
