//! The parent's commit journal (parent/src/store/journal.rs): entry decoding as `Reader`
//! reads a journal file, and replay as `RedbStore::open` does it at start-up.
//!
//! The journal module is private to `ekms-parent`, so its source is compiled in here as it is
//! (`#[path]`), inside a `store` module that re-exports what it takes from its parent
//! (`CommitBatch`, `StoreError`): the code fuzzed is the code shipped, unmodified.
//!
//! Inputs are journal files: entries whose bodies are fuzzed bytes, framed with a correct
//! header and digest (or a broken one), whole or torn, padded or not, or encoded from fuzzed
//! commit batches with `journal::encode`.
//!
//! Checks: no panic; every entry read back from a body re-encodes to that same body (one
//! encoding per entry); entries encoded from batches read back as their puts and deletes, in
//! order, and their audit lines; a torn last entry is cut off and the whole ones before it
//! are kept (`valid_len`). Sometimes the files go to `RedbStore::open` (replay into redb and
//! the audit log): it must not panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

// What journal.rs takes from its parent module (`super::`), at the crate root here.
use ekms_parent::store::{CommitBatch, StoreError};

#[path = "../../parent/src/store/journal.rs"]
#[allow(dead_code)]
mod journal;

mod store {
    use super::{journal, CommitBatch};
    use std::io::Write as _;
    use std::path::{Path, PathBuf};

    use arbitrary::Unstructured;
    use ekms_shared::wire::v1::{Record, RecordKey};
    use journal::{Entry, Op, Reader, BLOCK, HEADER_LEN};

    fn digest(head: &[u8], body: &[u8]) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(head);
        ctx.update(body);
        ctx.finish().as_ref().try_into().expect("32 bytes")
    }

    /// An entry around `body` as the format frames it.
    fn frame(gen: u64, body: &[u8], good_digest: bool, pad: bool) -> Vec<u8> {
        let mut out = b"ekj1".to_vec();
        out.extend_from_slice(&gen.to_le_bytes());
        out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
        let mut d = digest(&out, body);
        if !good_digest {
            d[0] ^= 1;
        }
        out.extend_from_slice(&d);
        out.extend_from_slice(body);
        if pad {
            out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
        }
        out
    }

    /// The batches that encode `entry` back: one batch per op, the lines in one.
    fn batches_of(entry: &Entry) -> Vec<CommitBatch> {
        let mut out: Vec<CommitBatch> = entry
            .ops
            .iter()
            .map(|op| match op {
                Op::Put(key, sealed) => CommitBatch {
                    puts: vec![Record {
                        key: key.clone(),
                        sealed: sealed.clone(),
                    }],
                    ..CommitBatch::default()
                },
                Op::Delete(key) => CommitBatch {
                    deletes: vec![key.clone()],
                    ..CommitBatch::default()
                },
            })
            .collect();
        let mut lines: Vec<Vec<u8>> = entry
            .lines
            .split(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect();
        lines.pop(); // after the last '\n'
        out.push(CommitBatch {
            audit: lines,
            ..CommitBatch::default()
        });
        out
    }

    /// A directory of this process's, in memory where there is /dev/shm (each input writes
    /// its journal to a file: `Reader` reads files).
    fn scratch() -> PathBuf {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
        base.join(format!("ekms-fuzz-journal-{}", std::process::id()))
    }

    fn read_all(path: &Path, bytes: &[u8]) -> (Vec<Entry>, u64) {
        let mut file = std::fs::File::create(path).expect("scratch file");
        file.write_all(bytes).expect("write scratch");
        drop(file);
        let file = std::fs::File::open(path).expect("open scratch");
        let mut reader = Reader::new(file, bytes.len() as u64);
        let mut entries = Vec::new();
        while let Some(entry) = reader.next_entry(path).expect("read scratch") {
            entries.push(entry);
        }
        (entries, reader.valid_len)
    }

    fn batch(u: &mut Unstructured<'_>) -> CommitBatch {
        let key = |u: &mut Unstructured<'_>| RecordKey {
            kind: u.int_in_range(0..=6).unwrap_or(3),
            id: u.arbitrary().unwrap_or_default(),
        };
        CommitBatch {
            seq: u.arbitrary().unwrap_or(0),
            session: u.arbitrary().unwrap_or(None),
            base: u.arbitrary().unwrap_or(None),
            puts: (0..u.int_in_range(0..=3u8).unwrap_or(0))
                .map(|_| Record {
                    key: key(u),
                    sealed: u.arbitrary().unwrap_or_default(),
                })
                .collect(),
            deletes: (0..u.int_in_range(0..=2u8).unwrap_or(0)).map(|_| key(u)).collect(),
            audit: (0..u.int_in_range(0..=2u8).unwrap_or(0))
                .map(|_| {
                    let line: Vec<u8> = u.arbitrary().unwrap_or_default();
                    line.into_iter().filter(|&b| b != b'\n').collect()
                })
                .collect(),
        }
    }

    pub fn run(data: &[u8]) {
        let mut u = Unstructured::new(data);
        let dir = scratch();
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let path = dir.join("journal.fuzz");
        let mut file = Vec::new();
        let mut whole: Vec<(u64, Option<Vec<CommitBatch>>)> = Vec::new();
        let mut gen: u64 = u.arbitrary().unwrap_or(0);
        let mut torn = false;
        for _ in 0..u.int_in_range(0..=4u8).unwrap_or(0) {
            match u.int_in_range(0..=3u8).unwrap_or(0) {
                0 | 1 => {
                    let body: &[u8] = u.arbitrary().unwrap_or_default();
                    let good = u.ratio(7, 8).unwrap_or(true);
                    let pad = u.ratio(3, 4).unwrap_or(true);
                    file.extend_from_slice(&frame(gen, body, good, pad));
                    if !good || !pad {
                        torn = true;
                        break;
                    }
                    whole.push((gen, None));
                }
                2 => {
                    let batches: Vec<CommitBatch> =
                        (0..u.int_in_range(1..=3u8).unwrap_or(1)).map(|_| batch(&mut u)).collect();
                    let offset: u64 = u.arbitrary().unwrap_or(0);
                    let encoded = journal::encode(gen, offset, &batches).expect("encode");
                    file.extend_from_slice(encoded.entry.bytes());
                    whole.push((gen, Some(batches)));
                }
                _ => {
                    // Raw bytes (a torn or foreign tail).
                    let tail: &[u8] = u.arbitrary().unwrap_or_default();
                    file.extend_from_slice(tail);
                    torn = true;
                    break;
                }
            }
            gen = gen.wrapping_add(1);
        }
        let (entries, valid_len) = read_all(&path, &file);
        assert!(valid_len <= file.len() as u64);
        for entry in &entries {
            let encoded = journal::encode(entry.gen, entry.audit_offset, &batches_of(entry))
                .expect("a read entry encodes");
            let (again, _) = read_all(&path, encoded.entry.bytes());
            assert_eq!(again.as_slice(), std::slice::from_ref(entry), "re-encoded entry differs");
        }
        // Entries written whole read back (a fuzzed body may not decode: then reading stops).
        let decoded_bodies = entries.len();
        assert!(decoded_bodies <= whole.len() + usize::from(torn));
        for (entry, (gen, batches)) in entries.iter().zip(&whole) {
            assert_eq!(entry.gen, *gen);
            if let Some(batches) = batches {
                let mut ops = Vec::new();
                let mut lines = Vec::new();
                for b in batches {
                    ops.extend(b.puts.iter().map(|r| Op::Put(r.key.clone(), r.sealed.clone())));
                    ops.extend(b.deletes.iter().cloned().map(Op::Delete));
                    for line in &b.audit {
                        lines.extend_from_slice(line);
                        lines.push(b'\n');
                    }
                }
                assert_eq!(entry.ops, ops);
                assert_eq!(entry.lines, lines);
            }
        }
        if entries.len() == whole.len() && !torn {
            assert_eq!(valid_len, file.len() as u64, "whole entries not all kept");
        }
        let _ = HEADER_LEN;

        // Sometimes: replay at start-up, with this file as one journal and the rest of the
        // input as the other.
        if !u.ratio(255, 256).unwrap_or(true) {
            let store_dir = dir.join("store");
            let _ = std::fs::remove_dir_all(&store_dir);
            std::fs::create_dir_all(&store_dir).expect("store dir");
            std::fs::write(store_dir.join("journal.0"), &file).expect("journal.0");
            let other: &[u8] = u.take_rest();
            std::fs::write(store_dir.join("journal.1"), other).expect("journal.1");
            let _ = ekms_parent::store::RedbStore::open(&store_dir);
        }
    }
}

fuzz_target!(|data: &[u8]| store::run(data));
