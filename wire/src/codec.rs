//! Encoding of every message on the wire. The only module that knows the encoding (bincode 2
//! through serde), so it can be swapped without touching callers. Moving frames over streams is
//! `mcdnn_net::framing`'s job; this module has no I/O.
//!
//! A frame on a stream is a `u32` big-endian length followed by that many payload bytes. The payload
//! is a 6-byte header (`b"MCDN"` and the protocol version as `u16` big-endian) and then the
//! bincode encoding of the message. The header makes a peer speaking something else, or another
//! protocol version, fail with an error that says so instead of a confusing decode error.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::msg::PROTOCOL_VERSION;

/// First four bytes of every payload.
pub const MAGIC: [u8; 4] = *b"MCDN";

/// Bytes of magic and version before the message body.
pub const HEADER_BYTES: usize = 6;

/// Default largest payload accepted or produced (4 MiB). Pass a larger limit to the `*_with_limit`
/// functions for large blobs.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

/// What went wrong while encoding, decoding or moving a frame.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The payload is larger than the limit (checked before any buffer is allocated).
    #[error(
        "frame of {len} bytes exceeds the limit of {max} bytes; split the message or raise the \
         limit for large blobs"
    )]
    FrameTooLarge {
        /// Size of the payload (or the size its length prefix claims).
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The payload cannot even hold the header.
    #[error("payload of {len} bytes is shorter than the {HEADER_BYTES}-byte MCDN header")]
    TooShort {
        /// Payload size received.
        len: usize,
    },
    /// The payload does not start with `b"MCDN"`.
    #[error(
        "not an MCDNN frame: magic {found:02x?}, expected {MAGIC:02x?} (\"MCDN\"); is the peer \
         speaking mcdnn/1?"
    )]
    BadMagic {
        /// The first four bytes received.
        found: [u8; 4],
    },
    /// The peer speaks another protocol version.
    #[error(
        "protocol version mismatch: frame has version {found}, this build speaks {expected}; \
         upgrade the older side"
    )]
    VersionMismatch {
        /// Version in the frame.
        found: u16,
        /// [`PROTOCOL_VERSION`].
        expected: u16,
    },
    /// The message decoded but bytes were left over: the peer's message type differs from ours.
    #[error(
        "message body has {extra} trailing bytes after the message; sender and receiver disagree on the message type"
    )]
    TrailingBytes {
        /// Unconsumed bytes.
        extra: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended mid-frame: expected {expected} bytes, got {got}")]
    Truncated {
        /// Bytes the frame needed (length prefix or body).
        expected: usize,
        /// Bytes that arrived before end of stream.
        got: usize,
    },
    /// The message could not be serialized.
    #[error("cannot encode message: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    /// The body is not a valid encoding of the expected message.
    #[error("malformed message body: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    /// The peer sent nothing (or not the rest of a frame) within the deadline.
    #[error("no {what} within {after:?}; the peer is too slow or stalling on purpose")]
    TimedOut {
        /// What was awaited: "frame" (between frames) or "rest of the frame".
        what: &'static str,
        /// The deadline that passed.
        after: std::time::Duration,
    },
    /// Reading or writing the stream failed.
    #[error("frame I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `msg` as a payload (header + body), refusing payloads over [`MAX_FRAME_BYTES`].
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    encode_with_limit(msg, MAX_FRAME_BYTES)
}

/// Encodes `msg` as a payload, refusing payloads over `max_bytes`.
pub fn encode_with_limit<T: Serialize>(msg: &T, max_bytes: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    bincode::serde::encode_into_std_write(msg, &mut out, bincode::config::standard())?;
    if out.len() > max_bytes {
        return Err(CodecError::FrameTooLarge {
            len: out.len(),
            max: max_bytes,
        });
    }
    Ok(out)
}

/// Decodes a payload produced by [`encode`], refusing payloads over [`MAX_FRAME_BYTES`].
/// Never panics; any input that is not exactly one valid message is an error.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    decode_with_limit(payload, MAX_FRAME_BYTES)
}

/// Decodes a payload, refusing payloads over `max_bytes`.
pub fn decode_with_limit<T: DeserializeOwned>(
    payload: &[u8],
    max_bytes: usize,
) -> Result<T, CodecError> {
    decode_borrowed(payload, max_bytes)
}

/// Decodes a payload into a message that may borrow from it (a blob's bytes as a slice of the
/// frame instead of a copy), refusing payloads over `max_bytes`. Same checks as [`decode`].
pub fn decode_borrowed<'de, T: Deserialize<'de>>(
    payload: &'de [u8],
    max_bytes: usize,
) -> Result<T, CodecError> {
    if payload.len() > max_bytes {
        return Err(CodecError::FrameTooLarge {
            len: payload.len(),
            max: max_bytes,
        });
    }
    let (header, body) = match payload.split_first_chunk::<HEADER_BYTES>() {
        Some(split) => split,
        None => return Err(CodecError::TooShort { len: payload.len() }),
    };
    let found = [header[0], header[1], header[2], header[3]];
    if found != MAGIC {
        return Err(CodecError::BadMagic { found });
    }
    let version = u16::from_be_bytes([header[4], header[5]]);
    if version != PROTOCOL_VERSION {
        return Err(CodecError::VersionMismatch {
            found: version,
            expected: PROTOCOL_VERSION,
        });
    }
    let (msg, used) = decode_body(body)?;
    if used != body.len() {
        return Err(CodecError::TrailingBytes {
            extra: body.len() - used,
        });
    }
    Ok(msg)
}

/// The encoding of a length (of a string or byte run) as the codec writes it before the bytes:
/// lets a sender frame a blob it holds without copying it into an encoded message.
pub fn encoded_len_prefix(len: usize) -> Result<Vec<u8>, CodecError> {
    Ok(bincode::encode_to_vec(
        len as u64,
        bincode::config::standard(),
    )?)
}

/// bincode allocates a string's or byte vector's claimed length before reading it, bounded only by
/// the config's limit. A body can never hold more than its own length, so the limit is the
/// smallest tier at least as large as the body: a lying length costs at most ~4x the frame size.
fn decode_body<'de, T: Deserialize<'de>>(body: &'de [u8]) -> Result<(T, usize), CodecError> {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;
    let len = body.len();
    let cfg = bincode::config::standard();
    let decoded = if len <= 64 * KIB {
        bincode::serde::borrow_decode_from_slice(body, cfg.with_limit::<{ 64 * KIB }>())
    } else if len <= MIB {
        bincode::serde::borrow_decode_from_slice(body, cfg.with_limit::<MIB>())
    } else if len <= 4 * MIB {
        bincode::serde::borrow_decode_from_slice(body, cfg.with_limit::<{ 4 * MIB }>())
    } else if len <= 16 * MIB {
        bincode::serde::borrow_decode_from_slice(body, cfg.with_limit::<{ 16 * MIB }>())
    } else if len <= 64 * MIB {
        bincode::serde::borrow_decode_from_slice(body, cfg.with_limit::<{ 64 * MIB }>())
    } else if len <= 256 * MIB {
        bincode::serde::borrow_decode_from_slice(body, cfg.with_limit::<{ 256 * MIB }>())
    } else if len <= 1024 * MIB {
        bincode::serde::borrow_decode_from_slice(body, cfg.with_limit::<{ 1024 * MIB }>())
    } else {
        // Only reachable with a caller-raised limit; the u32 length prefix caps frames at 4 GiB.
        bincode::serde::borrow_decode_from_slice(body, cfg.with_limit::<{ u32::MAX as usize }>())
    };
    Ok(decoded?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{CoordMsg, ErrorCode, NodeMsg};

    #[test]
    fn header_errors_say_what_is_wrong() {
        let good = encode(&NodeMsg::Bye).expect("encode");
        assert_eq!(&good[..4], b"MCDN");

        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        let err = decode::<NodeMsg>(&bad_magic).expect_err("bad magic");
        assert!(matches!(err, CodecError::BadMagic { .. }), "{err}");
        assert!(err.to_string().contains("not an MCDNN frame"));

        let mut bad_version = good.clone();
        let other = PROTOCOL_VERSION + 1;
        bad_version[4..6].copy_from_slice(&other.to_be_bytes());
        let err = decode::<NodeMsg>(&bad_version).expect_err("bad version");
        assert!(
            matches!(
                err,
                CodecError::VersionMismatch {
                    found,
                    expected: PROTOCOL_VERSION
                } if found == other
            ),
            "{err}"
        );

        let err = decode::<NodeMsg>(&good[..3]).expect_err("short");
        assert!(matches!(err, CodecError::TooShort { len: 3 }), "{err}");

        let mut trailing = good.clone();
        trailing.push(0);
        let err = decode::<NodeMsg>(&trailing).expect_err("trailing");
        assert!(
            matches!(err, CodecError::TrailingBytes { extra: 1 }),
            "{err}"
        );
    }

    #[test]
    fn size_limits_apply_both_ways() {
        let big = CoordMsg::Error {
            code: ErrorCode::Internal,
            message: "x".repeat(100),
        };
        let err = encode_with_limit(&big, 50).expect_err("too big to encode");
        assert!(
            matches!(err, CodecError::FrameTooLarge { max: 50, .. }),
            "{err}"
        );
        let payload = encode(&big).expect("encode");
        let err = decode_with_limit::<CoordMsg>(&payload, 50).expect_err("too big to decode");
        assert!(
            matches!(err, CodecError::FrameTooLarge { max: 50, .. }),
            "{err}"
        );
    }

    #[test]
    fn lying_string_length_does_not_allocate_it() {
        // Header, then variant 4 (Error), code 0, then a string claiming u64::MAX bytes.
        let mut payload = MAGIC.to_vec();
        payload.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        payload.extend_from_slice(&[4, 0, 255, 255, 255, 255, 255, 255, 255, 255, 255]);
        assert!(decode::<CoordMsg>(&payload).is_err());
    }
}
