//! How replicas reach each other: the [`Transport`] trait the driver sends through. The
//! in-process implementation for tests lives in the `testing` module.
//!
//! Inbound messages enter a replica through [`super::ReplicaHandle::step`]; a network
//! transport (QUIC) decodes frames with [`super::decode_message`] and calls it.

use raft::prelude::Message;

/// Outbound side of a replica's network.
///
/// `send` must not block and may drop messages (Raft retransmits): it is called from the
/// replica's driver task between persisting and applying, where waiting would stall the group.
pub trait Transport: Send + Sync + 'static {
    /// Queues `msgs` for delivery to their `to` peers, best effort.
    fn send(&self, msgs: Vec<Message>);
}
