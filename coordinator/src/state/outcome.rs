//! What applying one command did, as every part of the state machine reports it.

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The state changed.
    Applied,
    /// Already applied earlier (same `(writer, write_id)`, or an index at or below the state's
    /// applied index); nothing changed. Reported as success: the write is in the state.
    Duplicate,
    /// The command was valid but the state machine refused it; nothing changed.
    Rejected(String),
}
