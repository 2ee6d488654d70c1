//! What operator writers and replicas say to each other over the simulated network (nodes talk
//! to replicas over simulated connections instead: [`crate::exchange::conn`]): below both the
//! network ([`crate::net`]) and the server that answers ([`crate::exchange::serve`]).

/// Writer -> replica: a policy write; `(writer, write_id)` makes retries idempotent.
#[derive(Debug, Clone, PartialEq)]
pub enum ToCoord {
    Write { writer: usize, write_id: u64 },
}

/// Replica -> writer.
#[derive(Debug, Clone, PartialEq)]
pub enum ToClient {
    /// Not the leader; try this one (if known).
    Redirect { leader: Option<u64> },
    /// The write is committed (applied at `index`).
    WriteOk { write_id: u64, index: u64 },
    /// The committed write was refused by the state machine.
    WriteRejected { write_id: u64, reason: String },
}
