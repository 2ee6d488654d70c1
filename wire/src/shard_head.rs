//! The head of a shard reply's frame, so a server can send a shard's bytes from where it holds
//! them (a `bytes::Bytes` in its store) after the head instead of copying them into an encoded
//! message. Its own module because it needs both the message (`msg`) and the encoding (`codec`),
//! and `codec` already depends on `msg` for the protocol version.

use crate::codec::{self, CodecError};
use crate::msg::BlobReply;

/// The frame of a [`BlobReply::Shard`] (length prefix, header, digest, length of the bytes)
/// without the shard's bytes, which follow it on the stream: a server sends a shard from where it
/// holds it instead of copying it into an encoded message. The frame is the one
/// `framing::write_frame` would write for the same reply; refused over `max_frame` bytes.
pub fn shard_reply_head(
    digest: &str,
    shard_len: usize,
    max_frame: usize,
) -> Result<Vec<u8>, CodecError> {
    let mut payload = codec::encode(&BlobReply::Shard {
        digest: digest.to_string(),
        bytes: Vec::new(),
    })?;
    // The reply ends with its bytes: an empty run is its one-byte length (0) alone.
    payload.pop();
    payload.extend_from_slice(&codec::encoded_len_prefix(shard_len)?);
    let len = payload.len() + shard_len;
    if len > max_frame {
        return Err(CodecError::FrameTooLarge {
            len,
            max: max_frame,
        });
    }
    let prefix = u32::try_from(len).map_err(|_| CodecError::FrameTooLarge {
        len,
        max: u32::MAX as usize,
    })?;
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&prefix.to_be_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::SHARD_BYTES;

    #[test]
    fn a_shard_head_and_its_bytes_are_the_encoded_reply() {
        for len in [0, 1, 250, 251, 65_535, 65_536, SHARD_BYTES] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 13) as u8).collect();
            let digest = "ab".repeat(32);
            let mut sent = shard_reply_head(&digest, len, codec::MAX_FRAME_BYTES).expect("head");
            sent.extend_from_slice(&bytes);
            let payload = codec::encode(&BlobReply::Shard { digest, bytes }).expect("encode");
            let mut framed = (payload.len() as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(&payload);
            assert_eq!(sent, framed, "shard of {len} bytes");
        }
        assert!(matches!(
            shard_reply_head("d", codec::MAX_FRAME_BYTES, codec::MAX_FRAME_BYTES),
            Err(CodecError::FrameTooLarge { .. })
        ));
    }
}
