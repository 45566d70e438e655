//! Commits per second of [`RedbStore`] with fsync, one commit per `Store::commit` call and 64
//! per call (what group commit achieves under concurrency). Ignored: it measures the disk.
//!
//! `cargo test --release -p ekms-parent --test store_bench -- --ignored --nocapture`
//! (`EKMS_BENCH_DIR` picks the disk; default: the system temp directory).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use ekms_parent::store::{CommitBatch, RedbStore, Store};
use ekms_shared::wire::v1::{Record, RecordKey};

/// A CreateKey-sized commit: one sealed record of ~200 bytes and one audit line.
fn batch(seq: u64) -> CommitBatch {
    CommitBatch {
        session: None,
        seq,
        base: seq.checked_sub(1),
        puts: vec![Record {
            key: RecordKey {
                kind: 1,
                id: format!("key-{seq:012}").into_bytes(),
            },
            sealed: vec![0x5a; 200],
        }],
        deletes: vec![],
        audit: vec![format!(
            "{{\"seq\":{seq},\"op\":\"CreateKey\",\"sig\":\"{}\"}}",
            "0".repeat(128)
        )
        .into_bytes()],
    }
}

fn measure(store: &RedbStore, group: usize, duration: Duration, next_seq: &mut u64) -> f64 {
    let start = Instant::now();
    let mut commits = 0u64;
    while start.elapsed() < duration {
        let batches: Vec<CommitBatch> = (0..group)
            .map(|_| {
                *next_seq += 1;
                batch(*next_seq)
            })
            .collect();
        store.commit(&batches).unwrap();
        commits += group as u64;
    }
    commits as f64 / start.elapsed().as_secs_f64()
}

#[test]
#[ignore = "benchmark: measures this machine's fsync"]
fn commits_per_second() {
    let base = std::env::var_os("EKMS_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    let mut seq = 0;
    measure(&store, 1, Duration::from_millis(300), &mut seq); // warm-up
    for group in [1usize, 64] {
        let rate = measure(&store, group, Duration::from_secs(3), &mut seq);
        println!(
            "group of {group:>2}: {rate:>8.0} commits/s ({:.0} fsync groups/s)",
            rate / group as f64
        );
    }
}
