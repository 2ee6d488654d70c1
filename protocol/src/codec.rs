//! Framing and encoding of every message on the wire. The only module that knows the encoding
//! (bincode 2 through serde), so it can be swapped without touching callers.
//!
//! A frame on a stream is a `u32` big-endian length followed by that many payload bytes. The payload
//! is a 6-byte header (`b"MCDN"` and the protocol version as `u16` big-endian) and then the
//! bincode encoding of the message. The header makes a peer speaking something else, or another
//! protocol version, fail with an error that says so instead of a confusing decode error.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::msg::PROTOCOL_VERSION;

/// First four bytes of every payload.
pub const MAGIC: [u8; 4] = *b"MCDN";

/// Bytes of magic and version before the message body.
pub const HEADER_BYTES: usize = 6;

/// Default largest payload accepted or produced (4 MiB). Pass a larger limit to the `*_with_limit`
/// functions for large blobs.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

/// Bytes read per step while filling a frame body; the body buffer never runs ahead of the data.
const READ_CHUNK_BYTES: usize = 16 * 1024;

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

/// bincode allocates a string's or byte vector's claimed length before reading it, bounded only by
/// the config's limit. A body can never hold more than its own length, so the limit is the
/// smallest tier at least as large as the body: a lying length costs at most ~4x the frame size.
fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<(T, usize), CodecError> {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;
    let len = body.len();
    let cfg = bincode::config::standard();
    let decoded = if len <= 64 * KIB {
        bincode::serde::decode_from_slice(body, cfg.with_limit::<{ 64 * KIB }>())
    } else if len <= MIB {
        bincode::serde::decode_from_slice(body, cfg.with_limit::<MIB>())
    } else if len <= 4 * MIB {
        bincode::serde::decode_from_slice(body, cfg.with_limit::<{ 4 * MIB }>())
    } else if len <= 16 * MIB {
        bincode::serde::decode_from_slice(body, cfg.with_limit::<{ 16 * MIB }>())
    } else if len <= 64 * MIB {
        bincode::serde::decode_from_slice(body, cfg.with_limit::<{ 64 * MIB }>())
    } else if len <= 256 * MIB {
        bincode::serde::decode_from_slice(body, cfg.with_limit::<{ 256 * MIB }>())
    } else if len <= 1024 * MIB {
        bincode::serde::decode_from_slice(body, cfg.with_limit::<{ 1024 * MIB }>())
    } else {
        // Only reachable with a caller-raised limit; the u32 length prefix caps frames at 4 GiB.
        bincode::serde::decode_from_slice(body, cfg.with_limit::<{ u32::MAX as usize }>())
    };
    Ok(decoded?)
}

/// Writes `msg` as one frame (length prefix + payload), limited to [`MAX_FRAME_BYTES`].
/// Does not flush or finish the stream.
pub async fn write_frame<W, T>(writer: &mut W, msg: &T) -> Result<(), CodecError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    write_frame_with_limit(writer, msg, MAX_FRAME_BYTES).await
}

/// Writes `msg` as one frame, refusing payloads over `max_bytes`.
pub async fn write_frame_with_limit<W, T>(
    writer: &mut W,
    msg: &T,
    max_bytes: usize,
) -> Result<(), CodecError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let payload = encode_with_limit(msg, max_bytes)?;
    let len = u32::try_from(payload.len()).map_err(|_| CodecError::FrameTooLarge {
        len: payload.len(),
        max: u32::MAX as usize,
    })?;
    // One buffer, one write: a frame is never interleaved with a half-written prefix.
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&payload);
    writer.write_all(&frame).await?;
    Ok(())
}

/// Reads one frame and decodes it.
///
/// Returns `Ok(None)` when the stream ends cleanly before a length prefix (the peer is done).
/// A length prefix over `max_bytes` is rejected before any buffer for the body is allocated, and
/// the body buffer grows only as bytes arrive (a half-sent frame holds what was sent, no more).
/// No deadline: use [`read_frame_within`] on anything a peer could stall.
pub async fn read_frame<R, T>(reader: &mut R, max_bytes: usize) -> Result<Option<T>, CodecError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let Some(len) = read_prefix(reader, max_bytes).await? else {
        return Ok(None);
    };
    let payload = read_body(reader, len).await?;
    decode_with_limit(&payload, max_bytes).map(Some)
}

/// How long a peer may take: `idle` for the next frame to start, `frame` for the rest of a
/// frame once its first bytes arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    pub idle: std::time::Duration,
    pub frame: std::time::Duration,
}

/// [`read_frame`] with deadlines, so a peer that goes quiet or sends half a frame cannot hold a
/// stream (and its buffer) open for as long as it likes.
pub async fn read_frame_within<R, T>(
    reader: &mut R,
    max_bytes: usize,
    deadlines: Deadlines,
) -> Result<Option<T>, CodecError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut first = [0u8; 1];
    let n = tokio::time::timeout(deadlines.idle, reader.read(&mut first))
        .await
        .map_err(|_| CodecError::TimedOut {
            what: "frame",
            after: deadlines.idle,
        })??;
    if n == 0 {
        return Ok(None);
    }
    let rest = async {
        let mut chained = (&first[..]).chain(&mut *reader);
        let Some(len) = read_prefix(&mut chained, max_bytes).await? else {
            return Ok(None);
        };
        let payload = read_body(&mut chained, len).await?;
        decode_with_limit(&payload, max_bytes).map(Some)
    };
    tokio::time::timeout(deadlines.frame, rest)
        .await
        .map_err(|_| CodecError::TimedOut {
            what: "rest of the frame",
            after: deadlines.frame,
        })?
}

/// The length prefix, or `None` at a clean end of stream.
async fn read_prefix<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_bytes: usize,
) -> Result<Option<usize>, CodecError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < prefix.len() {
        let n = reader.read(&mut prefix[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(CodecError::Truncated { expected: 4, got });
        }
        got += n;
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max_bytes {
        return Err(CodecError::FrameTooLarge {
            len,
            max: max_bytes,
        });
    }
    Ok(Some(len))
}

/// `len` payload bytes. The buffer grows with the bytes that actually arrive: a peer that
/// announces 4 MiB and sends nothing more costs one chunk, not the announced length.
async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    len: usize,
) -> Result<Vec<u8>, CodecError> {
    let mut payload = Vec::with_capacity(len.min(READ_CHUNK_BYTES));
    let mut chunk = [0u8; READ_CHUNK_BYTES];
    while payload.len() < len {
        let want = (len - payload.len()).min(READ_CHUNK_BYTES);
        let n = reader.read(&mut chunk[..want]).await?;
        if n == 0 {
            return Err(CodecError::Truncated {
                expected: len,
                got: payload.len(),
            });
        }
        payload.extend_from_slice(&chunk[..n]);
    }
    Ok(payload)
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
        bad_version[4..6].copy_from_slice(&7u16.to_be_bytes());
        let err = decode::<NodeMsg>(&bad_version).expect_err("bad version");
        assert!(
            matches!(
                err,
                CodecError::VersionMismatch {
                    found: 7,
                    expected: PROTOCOL_VERSION
                }
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

    #[tokio::test]
    async fn frames_round_trip_and_eof_is_clean() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let msg = NodeMsg::Ack { epoch: 42 };
        write_frame(&mut a, &msg).await.expect("write");
        write_frame(&mut a, &NodeMsg::Bye).await.expect("write");
        drop(a);
        let got: Option<NodeMsg> = read_frame(&mut b, MAX_FRAME_BYTES).await.expect("read");
        assert_eq!(got, Some(msg));
        let got: Option<NodeMsg> = read_frame(&mut b, MAX_FRAME_BYTES).await.expect("read");
        assert_eq!(got, Some(NodeMsg::Bye));
        let got: Option<NodeMsg> = read_frame(&mut b, MAX_FRAME_BYTES).await.expect("eof");
        assert_eq!(got, None);
    }

    #[tokio::test]
    async fn oversized_prefix_is_rejected_before_reading_the_body() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&u32::MAX.to_be_bytes()).await.expect("write");
        // `a` stays open: had the reader tried to allocate and fill 4 GiB it would block here.
        let err = read_frame::<_, NodeMsg>(&mut b, MAX_FRAME_BYTES)
            .await
            .expect_err("oversized");
        assert!(
            matches!(err, CodecError::FrameTooLarge { len, max } if len == u32::MAX as usize && max == MAX_FRAME_BYTES),
            "{err}"
        );
    }

    #[tokio::test]
    async fn half_sent_frame_holds_only_what_arrived() {
        let (mut a, b) = tokio::io::duplex(64 * 1024);
        let len = MAX_FRAME_BYTES as u32;
        a.write_all(&len.to_be_bytes()).await.expect("write");
        a.write_all(&[7u8; 100]).await.expect("write");
        let reader = tokio::spawn(async move {
            let mut counting = CountingReader { inner: b, read: 0 };
            let r = read_frame::<_, NodeMsg>(&mut counting, MAX_FRAME_BYTES).await;
            (r, counting.read)
        });
        drop(a);
        let (r, read) = reader.await.expect("join");
        assert!(matches!(r, Err(CodecError::Truncated { got: 100, .. })));
        assert_eq!(read, 104);
    }

    /// Counts bytes read so the test can check the reader never asked for more than arrived.
    struct CountingReader<R> {
        inner: R,
        read: usize,
    }

    impl<R: AsyncRead + Unpin> AsyncRead for CountingReader<R> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let before = buf.filled().len();
            let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
            let n = buf.filled().len() - before;
            self.read += n;
            r
        }
    }

    #[tokio::test]
    async fn deadlines_end_idle_and_half_sent_frames() {
        let d = Deadlines {
            idle: std::time::Duration::from_millis(50),
            frame: std::time::Duration::from_millis(50),
        };
        let (mut a, mut b) = tokio::io::duplex(1024);
        let err = read_frame_within::<_, NodeMsg>(&mut b, MAX_FRAME_BYTES, d)
            .await
            .expect_err("idle");
        assert!(
            matches!(err, CodecError::TimedOut { what: "frame", .. }),
            "{err}"
        );
        a.write_all(&[0, 0, 0, 10, 1, 2]).await.expect("write");
        let err = read_frame_within::<_, NodeMsg>(&mut b, MAX_FRAME_BYTES, d)
            .await
            .expect_err("half sent");
        assert!(
            matches!(
                err,
                CodecError::TimedOut {
                    what: "rest of the frame",
                    ..
                }
            ),
            "{err}"
        );
        let (mut a, mut b) = tokio::io::duplex(1024);
        write_frame(&mut a, &NodeMsg::Ack { epoch: 3 })
            .await
            .expect("write");
        drop(a);
        let got: Option<NodeMsg> = read_frame_within(&mut b, MAX_FRAME_BYTES, d)
            .await
            .expect("read");
        assert_eq!(got, Some(NodeMsg::Ack { epoch: 3 }));
        let got: Option<NodeMsg> = read_frame_within(&mut b, MAX_FRAME_BYTES, d)
            .await
            .expect("eof");
        assert_eq!(got, None);
    }

    #[tokio::test]
    async fn eof_inside_a_frame_is_an_error() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0, 0, 0, 10, 1, 2]).await.expect("write");
        drop(a);
        let err = read_frame::<_, NodeMsg>(&mut b, MAX_FRAME_BYTES)
            .await
            .expect_err("truncated");
        assert!(
            matches!(
                err,
                CodecError::Truncated {
                    expected: 10,
                    got: 2
                }
            ),
            "{err}"
        );
    }
}
