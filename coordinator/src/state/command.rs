//! Commands proposed through Raft and applied by [`super::FleetState`].

use serde::{Deserialize, Serialize};

use super::codec::{self, StateError};

/// One replicated change to the fleet state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// A node joined (or re-registered with a new device class).
    RegisterNode {
        /// The node's identity (from its certificate).
        node_id: String,
        /// Its device class (a key of the catalog's profiles).
        device_class: String,
    },
    /// A node left the fleet.
    RemoveNode {
        /// The node's identity.
        node_id: String,
    },
    /// An operator's policy or budget write (fleet cost budget, per-class energy budget...).
    /// `(writer, write_id)` makes retries idempotent: a write already applied is not applied
    /// or logged twice.
    SetPolicy {
        /// Policy key, e.g. `fleet.cloud_budget_usd_per_day`.
        key: String,
        /// New value; [`PolicyValue::Unset`] removes the key.
        value: PolicyValue,
        /// Who wrote it (operator identity).
        writer: String,
        /// Writer-chosen id, unique per writer.
        write_id: u64,
    },
    /// A new fleet plan from the leader's solver. Ignored unless `epoch` is greater than the
    /// current plan's: plan epochs never go back, so a deposed leader cannot roll a plan back.
    CommitPlan {
        /// Plan epoch.
        epoch: u64,
        /// The encoded plan (opaque here; the scheduler owns its format).
        plan: Vec<u8>,
    },
    /// Replaces the index of catalog content digests the fleet should hold.
    SetCatalogIndex {
        /// Content digests (sha256 hex).
        digests: Vec<String>,
    },
    /// Registers a specialised variant built by the trainer.
    AddSpecialisedVariant(SpecialisedVariant),
    /// A node's spooled results, recorded once each (resends below the node's high-water mark
    /// are dropped).
    RecordResults {
        /// The node (from its certificate).
        node_id: String,
        /// The node's store incarnation the results belong to (sequence numbers are per
        /// incarnation).
        incarnation: u64,
        /// In sequence order.
        records: Vec<super::results::ResultRecord>,
    },
    /// An operator made a one-time enrollment token for `name` (only its hash is replicated).
    IssueToken {
        /// Node name the token enrolls (the certificate's identity comes from here).
        name: String,
        /// sha256 of the secret.
        sha256: [u8; 32],
        /// Unix milliseconds when it stops working.
        expires_unix_ms: u64,
        /// The proposing leader's clock, so every replica prunes expired tokens alike.
        now_unix_ms: u64,
        /// Operator (from the operator certificate).
        by: String,
    },
    /// A device used its token: consumed before its certificate is returned, so a token works
    /// once, even across failover.
    RedeemToken {
        /// Name the device enrolls as.
        name: String,
        /// sha256 of the secret it presented.
        sha256: [u8; 32],
        /// The proposing leader's clock (expiry check).
        now_unix_ms: u64,
    },
    /// A node's identity is revoked: refused at every handshake, enrollment and renewal.
    Revoke {
        /// Node name.
        name: String,
        /// Operator (from the operator certificate).
        by: String,
    },
    /// Retires a specialised variant.
    RemoveSpecialisedVariant {
        /// App it belongs to.
        app: String,
        /// Variant name.
        variant: String,
    },
    /// An operator approves (or withdraws) a node for the offload-server role; only approved
    /// nodes are planned as offload targets.
    SetServerApproval {
        /// The node's identity (certificate name).
        node_id: String,
        /// `false` withdraws the approval.
        approved: bool,
        /// The operator (from the operator's certificate).
        by: String,
    },
    /// A new plan as what changed since the committed one: applied only if `base_epoch` is the
    /// committed epoch (so it lands on the plan it was computed against) and `epoch` is newer.
    /// Nodes not named keep their assignment (and its older epoch). Applying it gives the same
    /// state as a `CommitPlan` of the whole resulting plan.
    CommitPlanDelta {
        /// The new plan epoch; every changed assignment carries it.
        epoch: u64,
        /// The committed epoch the delta was computed against.
        base_epoch: u64,
        /// New or changed assignments, one per node.
        changed: Vec<wire::msg::Assignment>,
        /// Nodes that are no longer in the plan.
        removed: Vec<String>,
    },
    /// An operator put a name on the watchlist (or replaced its descriptors): descriptors the
    /// leader computed from the operator's photos; the photos are not replicated.
    AddWatchlistEntry {
        /// Name and descriptors (bounds checked again on apply).
        entry: wire::msg::WatchlistEntry,
        /// The operator (from the operator's certificate).
        by: String,
    },
    /// An operator took a name off the watchlist.
    RemoveWatchlistEntry {
        /// The name.
        name: String,
        /// The operator (from the operator's certificate).
        by: String,
    },
    /// Nodes that joined in a burst, registered by one entry (format 5): a fleet of thousands
    /// joining at once costs a Raft round per batch instead of one per node. Applied as that
    /// many [`Command::RegisterNode`]s in order at the entry's index; refused whole when empty
    /// or longer than [`MAX_REGISTRATIONS`].
    RegisterNodes {
        /// In join order; a node named twice ends with its last class.
        nodes: Vec<NodeRegistration>,
    },
}

/// Most nodes one [`Command::RegisterNodes`] carries: about 40 bytes each, so an entry stays
/// far below Raft's message size (`max_size_per_msg`, 1 MiB) and a follower applies it in
/// well under a heartbeat.
pub const MAX_REGISTRATIONS: usize = 1024;

/// One node of a [`Command::RegisterNodes`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRegistration {
    /// The node's identity (from its certificate).
    pub node_id: String,
    /// Its device class.
    pub device_class: String,
}

/// Value of a policy key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PolicyValue {
    /// A number (budgets in base units: joules, dollars, seconds).
    Number(f64),
    /// Free text.
    Text(String),
    /// Removes the key.
    Unset,
}

/// A specialised variant the leader's trainer built: a head over `base_variant`'s trunk
/// embedding for a few dominant classes plus "other". The head's bytes are in the entry (a few
/// KiB, checked on apply by `super::specialised::check`) so every replica can serve them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecialisedVariant {
    /// App the variant serves.
    pub app: String,
    /// Name of the specialised variant.
    pub variant: String,
    /// The catalog variant whose trunk computes the embedding the head reads.
    pub base_variant: String,
    /// The dominant classes (the app's class ids) it is specialised to.
    pub classes: Vec<u32>,
    /// sha256 (hex) of `head`.
    pub digest: String,
    /// The encoded `wire::head::Head`.
    pub head: Vec<u8>,
    /// Accuracy measured on held-out images at the class mix it was trained for, percent.
    pub accuracy: f64,
}

impl Command {
    /// Encodes the command for a Raft entry.
    pub fn encode(&self) -> Result<Vec<u8>, StateError> {
        codec::encode(self, "command")
    }

    /// Decodes a command from a Raft entry. Entries of formats 2 to 4 still decode: each
    /// format since only added variants at the end, so every older command reads the same.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        match bytes.first() {
            Some(&old @ (codec::FORMAT_V2 | codec::FORMAT_V3 | codec::FORMAT_V4)) => {
                codec::decode_version(bytes, "command", old)
            }
            _ => codec::decode(bytes, "command"),
        }
    }
}
