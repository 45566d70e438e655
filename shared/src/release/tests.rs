use super::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn hold(session: u64, seq: u64) -> Hold {
    Hold { session, seq }
}

#[test]
fn header_round_trips_and_refuses_bad_lengths() {
    let header = Header {
        len: 5,
        hold: hold(0x0102_0304_0506_0708, 9),
    };
    let bytes = header.encode();
    assert_eq!(&bytes[..4], &[0, 0, 0, 5]);
    assert_eq!(&bytes[4..12], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(&bytes[12..], &[0, 0, 0, 0, 0, 0, 0, 9]);
    assert_eq!(Header::decode(&bytes), Ok(header));

    let mut zero = bytes;
    zero[..4].copy_from_slice(&0u32.to_be_bytes());
    assert_eq!(Header::decode(&zero), Err(BadHeader(0)));
    let mut over = bytes;
    let too_long = MAX_PAYLOAD as u32 + 1;
    over[..4].copy_from_slice(&too_long.to_be_bytes());
    assert_eq!(Header::decode(&over), Err(BadHeader(too_long)));
    let mut max = bytes;
    max[..4].copy_from_slice(&(MAX_PAYLOAD as u32).to_be_bytes());
    assert_eq!(Header::decode(&max).unwrap().len, MAX_PAYLOAD);
}

#[test]
fn a_hold_rises_within_a_session_and_a_new_session_replaces_it() {
    let cell = HoldCell::default();
    assert_eq!(cell.get(), Hold::NONE);
    cell.raise(hold(7, 10));
    cell.raise(hold(7, 4));
    assert_eq!(cell.get(), hold(7, 10), "never lowered within a session");
    cell.raise(Hold::NONE);
    assert_eq!(
        cell.get(),
        hold(7, 10),
        "waiting for nothing changes nothing"
    );
    cell.raise(hold(8, 3));
    assert_eq!(
        cell.get(),
        hold(8, 3),
        "a new session's holds replace the old"
    );
}

/// Everything `reader` yields as (hold, payload) until a clean end.
async fn frames<R: AsyncRead + Unpin>(mut reader: R) -> Result<Vec<(Hold, Vec<u8>)>, FrameError> {
    let mut frames = FrameReader::new();
    let mut out = Vec::new();
    while let Some(hold) = frames.fill(&mut reader).await? {
        // Filling again without consuming returns the same frame.
        assert_eq!(frames.fill(&mut reader).await?, Some(hold));
        out.push((hold, frames.payload().to_vec()));
        frames.consume();
    }
    Ok(out)
}

#[tokio::test]
async fn writes_become_frames_with_the_hold_of_their_time() {
    let (near, far) = tokio::io::duplex(1024);
    let cell = Arc::new(HoldCell::default());
    let mut writer = HoldWriter::new(near, cell.clone());
    let reading = tokio::spawn(frames(far));

    writer.write_all(b"before").await.unwrap();
    cell.raise(hold(3, 41));
    // A vectored write is one frame.
    let parts = [io::IoSlice::new(b"head "), io::IoSlice::new(b"body")];
    let n = writer.write_vectored(&parts).await.unwrap();
    assert_eq!(n, 9);
    // A write over MAX_PAYLOAD is split, every part with the hold of its time.
    let big: Vec<u8> = (0..MAX_PAYLOAD + 100).map(|i| i as u8).collect();
    writer.write_all(&big).await.unwrap();
    writer.shutdown().await.unwrap();
    drop(writer);

    let got = reading.await.unwrap().unwrap();
    assert_eq!(got.len(), 4);
    assert_eq!(got[0], (Hold::NONE, b"before".to_vec()));
    assert_eq!(got[1], (hold(3, 41), b"head body".to_vec()));
    assert_eq!(got[2].0, hold(3, 41));
    assert_eq!(got[2].1.len(), MAX_PAYLOAD);
    let rejoined: Vec<u8> = [got[2].1.clone(), got[3].1.clone()].concat();
    assert_eq!(rejoined, big);
}

#[tokio::test]
async fn reads_pass_through_unframed() {
    let (near, mut far) = tokio::io::duplex(64);
    let mut writer = HoldWriter::new(near, Arc::new(HoldCell::default()));
    far.write_all(b"request").await.unwrap();
    let mut got = [0u8; 7];
    writer.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"request");
}

#[tokio::test]
async fn frames_arriving_a_byte_at_a_time_are_reassembled() {
    let mut stream = Vec::new();
    for (i, payload) in [&b"one"[..], b"two two", &[7u8; MAX_PAYLOAD][..]]
        .iter()
        .enumerate()
    {
        let header = Header {
            len: payload.len(),
            hold: hold(1, i as u64),
        };
        stream.extend_from_slice(&header.encode());
        stream.extend_from_slice(payload);
    }
    let (mut near, far) = tokio::io::duplex(1);
    let feeding = tokio::spawn(async move {
        for byte in stream {
            near.write_all(&[byte]).await.unwrap();
        }
    });
    let got = frames(far).await.unwrap();
    feeding.await.unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0], (hold(1, 0), b"one".to_vec()));
    assert_eq!(got[1], (hold(1, 1), b"two two".to_vec()));
    assert_eq!(got[2], (hold(1, 2), vec![7u8; MAX_PAYLOAD]));
}

#[tokio::test]
async fn a_cut_frame_and_a_bad_header_are_errors() {
    let header = Header {
        len: 10,
        hold: Hold::NONE,
    };
    let mut cut = header.encode().to_vec();
    cut.extend_from_slice(b"short");
    assert!(matches!(
        frames(cut.as_slice()).await,
        Err(FrameError::Truncated)
    ));
    assert!(matches!(
        frames(&header.encode()[..7]).await,
        Err(FrameError::Truncated)
    ));

    let mut bad = header.encode();
    bad[..4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        frames(&bad[..]).await,
        Err(FrameError::Header(BadHeader(u32::MAX)))
    ));
    assert!(frames(&b""[..]).await.unwrap().is_empty());
}
