//! What clients (nodes, operator writers) and replicas say to each other over the simulated
//! network: below both the network ([`crate::net`]) and the exchange that speaks it.

use wire::msg::ResultBatch;

/// Client -> replica.
#[derive(Debug, Clone, PartialEq)]
pub enum ToCoord {
    /// A node's spooled results (one incarnation's, in order).
    Results { node: usize, batch: ResultBatch },
    /// An operator's policy write; `(writer, write_id)` makes retries idempotent.
    Write { writer: usize, write_id: u64 },
}

/// Replica -> client.
#[derive(Debug, Clone, PartialEq)]
pub enum ToClient {
    /// Every result of `incarnation` up to `up_to_seq` is committed.
    ResultsAck { incarnation: u64, up_to_seq: u64 },
    /// Not the leader; try this one (if known).
    Redirect { leader: Option<u64> },
    /// A committed plan's epoch, pushed by the leader that committed it.
    Plan { epoch: u64 },
    /// The write is committed (applied at `index`).
    WriteOk { write_id: u64, index: u64 },
    /// The committed write was refused by the state machine.
    WriteRejected { write_id: u64, reason: String },
}
