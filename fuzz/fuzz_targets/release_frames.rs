//! The relay frames in which the enclave's answers reach the parent
//! (`ekms_shared::release`): `FrameReader` on fuzzed byte streams, delivered in fuzzed pieces,
//! and `HoldWriter` writing fuzzed answers through a transport that takes a fuzzed number of
//! bytes per call.
//!
//! Checks: no panic; `FrameReader` reads exactly the frames a plain reading of the whole
//! stream finds, whatever the pieces, and stops with the same error (a bad header, or a
//! stream cut inside a frame); what `HoldWriter` reports written is what the frames carry, in
//! order, each frame with the hold that was current when it was written.

#![no_main]

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arbitrary::Unstructured;
use ekms_shared::release::{FrameError, FrameReader, Header, Hold, HoldCell, HoldWriter, HEADER_LEN};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};

/// Hands out `data` in the given piece sizes.
struct Pieces<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    next: usize,
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let size = self.sizes.get(self.next).copied().unwrap_or(usize::MAX).max(1);
        self.next += 1;
        let n = size.min(buf.remaining()).min(self.data.len());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

/// Takes at most the given number of bytes per write.
struct Slow {
    out: Arc<std::sync::Mutex<Vec<u8>>>,
    sizes: Vec<usize>,
    next: usize,
}

impl AsyncWrite for Slow {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let size = self.sizes.get(self.next).copied().unwrap_or(usize::MAX).max(1);
        self.next += 1;
        let n = size.min(buf.len());
        self.out.lock().expect("lock").extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[derive(Debug, PartialEq)]
enum End {
    Clean,
    BadHeader,
    Truncated,
}

/// The frames of `data` read plainly, and how the stream ends.
fn plain(mut data: &[u8]) -> (Vec<(Hold, Vec<u8>)>, End) {
    let mut frames = Vec::new();
    loop {
        if data.is_empty() {
            return (frames, End::Clean);
        }
        let Some(head) = data.first_chunk::<HEADER_LEN>() else {
            return (frames, End::Truncated);
        };
        let Ok(header) = Header::decode(head) else {
            return (frames, End::BadHeader);
        };
        if data.len() < HEADER_LEN + header.len {
            return (frames, End::Truncated);
        }
        frames.push((header.hold, data[HEADER_LEN..HEADER_LEN + header.len].to_vec()));
        data = &data[HEADER_LEN + header.len..];
    }
}

async fn read(reader: &mut FrameReader, source: &mut Pieces<'_>) -> (Vec<(Hold, Vec<u8>)>, End) {
    let mut frames = Vec::new();
    loop {
        match reader.fill(source).await {
            Ok(Some(hold)) => {
                frames.push((hold, reader.payload().to_vec()));
                reader.consume();
            }
            Ok(None) => return (frames, End::Clean),
            Err(FrameError::Header(_)) => return (frames, End::BadHeader),
            Err(FrameError::Truncated) => return (frames, End::Truncated),
            Err(FrameError::Io(e)) => panic!("I/O error from an in-memory stream: {e}"),
        }
    }
}

fn sizes(u: &mut Unstructured<'_>) -> Vec<usize> {
    (0..u.int_in_range(0..=16u8).unwrap_or(0))
        .map(|_| match u.int_in_range(0..=2u8).unwrap_or(0) {
            0 => u.int_in_range(1..=32usize).unwrap_or(1),
            1 => u.int_in_range(1..=40_000usize).unwrap_or(1),
            _ => usize::MAX,
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    if u.arbitrary().unwrap_or(false) {
        let sizes = sizes(&mut u);
        let stream = u.take_rest();
        let mut source = Pieces { data: stream, sizes, next: 0 };
        let mut reader = FrameReader::new();
        let got = runtime.block_on(read(&mut reader, &mut source));
        assert_eq!(got, plain(stream), "FrameReader disagrees with a plain reading");
        return;
    }
    let cell = Arc::new(HoldCell::default());
    let out = Arc::new(std::sync::Mutex::new(Vec::new()));
    let transport = Slow { out: out.clone(), sizes: sizes(&mut u), next: 0 };
    let mut writer = HoldWriter::new(transport, cell.clone());
    let mut written: Vec<(Hold, Vec<u8>)> = Vec::new();
    runtime.block_on(async {
        for _ in 0..u.int_in_range(0..=6u8).unwrap_or(0) {
            if u.arbitrary().unwrap_or(false) {
                cell.raise(Hold {
                    session: u.int_in_range(0..=2u64).unwrap_or(0),
                    seq: u.int_in_range(0..=5u64).unwrap_or(0),
                });
            }
            let len = u.int_in_range(0..=40_000usize).unwrap_or(0);
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let hold = cell.get();
            let n = writer.write(&bytes).await.expect("in-memory write");
            assert!(n <= bytes.len());
            if n > 0 {
                written.push((hold, bytes[..n].to_vec()));
            }
        }
        writer.flush().await.expect("flush");
    });
    drop(writer);
    let out = std::mem::take(&mut *out.lock().expect("lock"));
    let (frames, end) = plain(&out);
    assert_eq!(end, End::Clean);
    assert_eq!(frames, written, "the frames do not carry what was written");
});
