//! Answers held by the parent until what they depend on is durable.
//!
//! The enclave answers a request as soon as it has queued the request's changes and audit
//! record for the store, without waiting for the store's acknowledgement. The parent holds the
//! answer instead: everything the enclave writes on a relayed stream goes in frames, each
//! naming the commit it must wait for ([`Hold`]), and the relay passes a frame's bytes to the
//! client only once its store made that commit durable. The durability promise is the same as
//! when the enclave waited (no answer reaches a client before what it changed and its audit
//! record are on disk), and it rests on the same party: a parent that lies about durability
//! could already acknowledge a commit it never wrote. What the enclave saves is a wake-up of
//! every waiting request per commit.
//!
//! A frame is a 20-byte header, then the payload:
//!
//! | bytes | field |
//! | --- | --- |
//! | 4 | payload length, big-endian, 1 to [`MAX_PAYLOAD`] |
//! | 8 | store session ([`Hold::session`]), big-endian |
//! | 8 | commit sequence number ([`Hold::seq`]), big-endian; 0: release at once |
//!
//! Only the enclave-to-client direction is framed; clients' bytes reach the enclave as sent.
//! The payload is what the enclave's TLS (or HTTP, without TLS) wrote: the parent learns when
//! answers are released, which it could already see from the timing of commits, and nothing
//! of their content.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes of a frame header.
pub const HEADER_LEN: usize = 20;

/// Most payload bytes in one frame; longer writes are split.
pub const MAX_PAYLOAD: usize = 16 * 1024;

/// What a frame waits for: commit `seq` of store session `session` made durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hold {
    /// The store session the enclave announced when it opened its store channel.
    pub session: u64,
    /// The commit's sequence number; 0 waits for nothing.
    pub seq: u64,
}

impl Hold {
    /// Waits for nothing.
    pub const NONE: Hold = Hold { session: 0, seq: 0 };

    /// Whether the frame may be released without asking the store.
    pub fn is_none(self) -> bool {
        self.seq == 0
    }
}

/// A frame header that cannot be.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("relay frame with a payload length of {0} bytes (1 to {MAX_PAYLOAD} allowed)")]
pub struct BadHeader(pub u32);

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Payload bytes that follow, 1 to [`MAX_PAYLOAD`].
    pub len: usize,
    /// What the payload waits for.
    pub hold: Hold,
}

impl Header {
    /// The header's bytes.
    ///
    /// # Panics
    /// If `len` is 0 or over [`MAX_PAYLOAD`]: callers split their writes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        assert!(
            (1..=MAX_PAYLOAD).contains(&self.len),
            "a frame carries 1 to MAX_PAYLOAD bytes"
        );
        let mut out = [0u8; HEADER_LEN];
        // MAX_PAYLOAD fits in a u32.
        out[..4].copy_from_slice(&(self.len as u32).to_be_bytes());
        out[4..12].copy_from_slice(&self.hold.session.to_be_bytes());
        out[12..].copy_from_slice(&self.hold.seq.to_be_bytes());
        out
    }

    /// Reads a header.
    ///
    /// # Errors
    /// [`BadHeader`] if the length is 0 or over [`MAX_PAYLOAD`].
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Header, BadHeader> {
        let mut len = [0u8; 4];
        let mut session = [0u8; 8];
        let mut seq = [0u8; 8];
        len.copy_from_slice(&bytes[..4]);
        session.copy_from_slice(&bytes[4..12]);
        seq.copy_from_slice(&bytes[12..]);
        let len = u32::from_be_bytes(len);
        if len == 0 || len as usize > MAX_PAYLOAD {
            return Err(BadHeader(len));
        }
        Ok(Header {
            len: len as usize,
            hold: Hold {
                session: u64::from_be_bytes(session),
                seq: u64::from_be_bytes(seq),
            },
        })
    }
}

/// What a connection's next frames wait for, raised by whoever answers on it.
#[derive(Debug, Default)]
pub struct HoldCell(Mutex<Hold>);

impl HoldCell {
    /// Frames written from now on wait for at least `hold`. Within a session the hold only
    /// rises; a new session (after unseal) replaces it.
    pub fn raise(&self, hold: Hold) {
        if hold.is_none() {
            return;
        }
        let mut current = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if current.session != hold.session || current.seq < hold.seq {
            *current = hold;
        }
    }

    /// What the next frame waits for.
    pub fn get(&self) -> Hold {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A stream whose writes go out as frames held by [`HoldCell`]; reads pass through.
///
/// Each write becomes one frame (up to [`MAX_PAYLOAD`] bytes), copied with its header into a
/// buffer that is written out before the next write is taken, so a frame is never interleaved
/// with another and is written by as few calls as the transport allows.
pub struct HoldWriter<S> {
    inner: S,
    hold: Arc<HoldCell>,
    /// `out[sent..]` is still to be written to `inner`.
    out: Vec<u8>,
    sent: usize,
}

/// Names the type only: the buffer holds answers (plaintext ones too, without TLS).
impl<S> std::fmt::Debug for HoldWriter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HoldWriter").finish_non_exhaustive()
    }
}

impl<S> HoldWriter<S> {
    /// Frames the writes to `inner` with the holds in `hold`.
    pub fn new(inner: S, hold: Arc<HoldCell>) -> Self {
        HoldWriter {
            inner,
            hold,
            out: Vec::new(),
            sent: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> HoldWriter<S> {
    /// Writes out the buffered frame.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.out.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Frames the first bytes of `bufs` (up to [`MAX_PAYLOAD`]); returns how many.
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_drain(cx))?;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let len = total.min(MAX_PAYLOAD);
        if len == 0 {
            return Poll::Ready(Ok(0));
        }
        let header = Header {
            len,
            hold: self.hold.get(),
        };
        self.out.reserve(HEADER_LEN + len);
        self.out.extend_from_slice(&header.encode());
        let mut left = len;
        for buf in bufs {
            let take = left.min(buf.len());
            self.out.extend_from_slice(&buf[..take]);
            left -= take;
            if left == 0 {
                break;
            }
        }
        // The frame is taken; a write that cannot finish now finishes on the next call.
        if let Poll::Ready(Err(e)) = self.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(len))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HoldWriter<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_frame(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_frame(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HoldWriter<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

/// Reads frames from a stream of them: the parent's side.
///
/// [`FrameReader::fill`] reads until the front frame is whole, [`FrameReader::payload`] shows
/// it and [`FrameReader::consume`] drops it. `fill` is cancel-safe (what was read stays
/// buffered), so it can race other work in a `select!`.
pub struct FrameReader {
    buf: Box<[u8]>,
    /// `buf[start..end]` holds bytes read and not yet consumed.
    start: usize,
    end: usize,
    /// The front frame, once it is whole.
    front: Option<Header>,
}

/// Why frames could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Reading failed.
    #[error("reading relay frames: {0}")]
    Io(#[from] io::Error),
    /// A header that cannot be.
    #[error(transparent)]
    Header(#[from] BadHeader),
    /// The stream ended inside a frame.
    #[error("the stream ended inside a relay frame")]
    Truncated,
}

/// Names the type only: the buffer holds answers.
impl std::fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader").finish_non_exhaustive()
    }
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader::new()
    }
}

impl FrameReader {
    /// A reader with room for two whole frames.
    pub fn new() -> Self {
        FrameReader {
            buf: vec![0; 2 * (HEADER_LEN + MAX_PAYLOAD)].into_boxed_slice(),
            start: 0,
            end: 0,
            front: None,
        }
    }

    /// The front frame's header, if it is whole in the buffer.
    fn whole_front(&self) -> Result<Option<Header>, BadHeader> {
        let Some(bytes) = self.buf[self.start..self.end].first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let header = Header::decode(bytes)?;
        Ok((self.end - self.start >= HEADER_LEN + header.len).then_some(header))
    }

    /// Reads until the front frame is whole; returns what it waits for, or `None` if the
    /// stream ended cleanly between frames.
    ///
    /// # Errors
    /// [`FrameError`] on a read error, a bad header or a stream cut inside a frame.
    pub async fn fill<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
    ) -> Result<Option<Hold>, FrameError> {
        use tokio::io::AsyncReadExt as _;
        loop {
            if let Some(header) = self.front {
                return Ok(Some(header.hold));
            }
            if let Some(header) = self.whole_front()? {
                self.front = Some(header);
                continue;
            }
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
            } else if self.buf.len() - self.start < HEADER_LEN + MAX_PAYLOAD {
                // No room after `start` for the largest frame: move the partial one to the
                // front.
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let n = reader.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                return if self.start == self.end {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                };
            }
            self.end += n;
        }
    }

    /// The front frame's payload (empty if no frame is whole yet).
    pub fn payload(&self) -> &[u8] {
        match self.front {
            Some(header) => {
                &self.buf[self.start + HEADER_LEN..self.start + HEADER_LEN + header.len]
            }
            None => &[],
        }
    }

    /// Drops the front frame.
    pub fn consume(&mut self) {
        if let Some(header) = self.front.take() {
            self.start += HEADER_LEN + header.len;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
