//! Reading frames from a stream a peer controls: the body buffer grows only as bytes arrive, and
//! [`read_frame_within`] bounds how long a peer may stall between frames or inside one.

use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt};

use wire::codec::{CodecError, decode_with_limit};

/// Bytes read per step while filling a frame body; the body buffer never runs ahead of the data.
const READ_CHUNK_BYTES: usize = 16 * 1024;

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
    match read_payload_within(reader, max_bytes, deadlines).await? {
        Some(payload) => decode_with_limit(&payload, max_bytes).map(Some),
        None => Ok(None),
    }
}

/// One frame's payload, undecoded, under the same deadlines and limits as
/// [`read_frame_within`]: for a reader that decodes it borrowing from it
/// (`wire::codec::decode_borrowed`), so a blob is not copied out of its frame.
pub async fn read_payload_within<R>(
    reader: &mut R,
    max_bytes: usize,
    deadlines: Deadlines,
) -> Result<Option<Vec<u8>>, CodecError>
where
    R: AsyncRead + Unpin,
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
        read_body(&mut chained, len).await.map(Some)
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

/// `len` payload bytes. The buffer grows with the bytes that actually arrive (at most doubling
/// what arrived, from one chunk): a peer that announces 4 MiB and sends nothing more costs one
/// chunk, not the announced length. Bytes are read straight into the buffer (no bounce buffer),
/// and no further than `len`, so the next frame stays in the stream.
async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    len: usize,
) -> Result<Vec<u8>, CodecError> {
    let mut payload = Vec::with_capacity(len.min(READ_CHUNK_BYTES));
    while payload.len() < len {
        let have = payload.len();
        if have == payload.capacity() {
            payload.reserve_exact((len - have).min(have.max(READ_CHUNK_BYTES)));
        }
        let want = (len - have) as u64;
        let n = (&mut *reader).take(want).read_buf(&mut payload).await?;
        if n == 0 {
            return Err(CodecError::Truncated {
                expected: len,
                got: payload.len(),
            });
        }
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::write_frame;
    use tokio::io::AsyncWriteExt;
    use wire::codec::MAX_FRAME_BYTES;
    use wire::msg::NodeMsg;

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

    /// Frames appended to one buffer read back one by one; one over the limit is refused
    /// and leaves the buffer as it was.
    #[tokio::test]
    async fn appended_frames_read_back_and_an_oversized_one_adds_nothing() {
        let mut out = Vec::new();
        crate::framing::append_frame(&mut out, &NodeMsg::Ack { epoch: 7 }, MAX_FRAME_BYTES)
            .expect("append");
        crate::framing::append_frame(&mut out, &NodeMsg::Bye, MAX_FRAME_BYTES).expect("append");
        let before = out.clone();
        let err = crate::framing::append_frame(&mut out, &NodeMsg::Ack { epoch: 8 }, 2)
            .expect_err("over the limit");
        assert!(
            matches!(err, CodecError::FrameTooLarge { max: 2, .. }),
            "{err}"
        );
        assert_eq!(out, before);
        let mut r = &out[..];
        let got: Option<NodeMsg> = read_frame(&mut r, MAX_FRAME_BYTES).await.expect("read");
        assert_eq!(got, Some(NodeMsg::Ack { epoch: 7 }));
        let got: Option<NodeMsg> = read_frame(&mut r, MAX_FRAME_BYTES).await.expect("read");
        assert_eq!(got, Some(NodeMsg::Bye));
        let got: Option<NodeMsg> = read_frame(&mut r, MAX_FRAME_BYTES).await.expect("eof");
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
