//! Wire encoding of raft messages (protobuf, as raft-rs defines them), so a network transport
//! such as QUIC can carry them as opaque frames.

use protobuf::Message as PbMessage;
use raft::prelude::Message;
use thiserror::Error;

/// Largest encoded raft message accepted (snapshots included). Bigger frames are refused
/// before decoding so a peer cannot make us allocate without bound.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Why raft message bytes could not be encoded or decoded.
#[derive(Debug, Error)]
pub enum MessageCodecError {
    /// The frame is larger than [`MAX_MESSAGE_BYTES`].
    #[error("raft message of {0} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge(usize),
    /// The bytes are not a valid protobuf raft message.
    #[error("malformed raft message: {0}")]
    Malformed(#[from] protobuf::ProtobufError),
}

/// Encodes a raft message as protobuf bytes.
pub fn encode_message(msg: &Message) -> Result<Vec<u8>, MessageCodecError> {
    let bytes = msg.write_to_bytes()?;
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(MessageCodecError::TooLarge(bytes.len()));
    }
    Ok(bytes)
}

/// Decodes protobuf bytes from a peer into a raft message.
pub fn decode_message(bytes: &[u8]) -> Result<Message, MessageCodecError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(MessageCodecError::TooLarge(bytes.len()));
    }
    let mut m = Message::default();
    m.merge_from_bytes(bytes)?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_largest_state_fits_a_snapshot_message() {
        // Worst case a varint takes 9 bytes for 8 claimed; 16 MiB is room for Raft framing.
        let worst_encoded = crate::state::STATE_BUDGET / 8 * 9;
        assert!(worst_encoded + 16 * 1024 * 1024 < MAX_MESSAGE_BYTES);
    }
    use raft::prelude::{Entry, MessageType};

    #[test]
    fn round_trip() {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.from = 1;
        m.to = 2;
        m.term = 5;
        let e = Entry {
            index: 9,
            term: 5,
            data: b"payload".to_vec().into(),
            ..Default::default()
        };
        m.entries = vec![e].into();
        let bytes = encode_message(&m).unwrap();
        assert_eq!(decode_message(&bytes).unwrap(), m);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode_message(b"\xff\xff\xff\xff\xff").is_err());
    }
}
