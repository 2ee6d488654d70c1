//! Frames over async streams: a `u32` big-endian length, then a payload made by
//! [`wire::codec`]. Reads grow their buffer as bytes arrive and run under deadlines, so a peer that
//! announces a large frame and sends nothing costs neither memory nor a stuck task.

use serde::Serialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use wire::codec::{CodecError, MAX_FRAME_BYTES, encode_with_limit};

mod read;

pub use read::{Deadlines, read_frame, read_frame_within, read_payload_within};

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
    // One buffer, one write: a frame is never interleaved with a half-written prefix.
    let mut frame = Vec::new();
    append_frame(&mut frame, msg, max_bytes)?;
    writer.write_all(&frame).await?;
    Ok(())
}

/// Appends `msg` as one frame (length prefix + payload) to `out`, for a writer that sends
/// several frames in one write. Refuses payloads over `max_bytes`, leaving `out` as it was.
pub fn append_frame<T: Serialize>(
    out: &mut Vec<u8>,
    msg: &T,
    max_bytes: usize,
) -> Result<(), CodecError> {
    let payload = encode_with_limit(msg, max_bytes)?;
    let len = u32::try_from(payload.len()).map_err(|_| CodecError::FrameTooLarge {
        len: payload.len(),
        max: u32::MAX as usize,
    })?;
    out.reserve(4 + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}
