//! The sealed manifest: which records exist, at which generation.
//!
//! Records are spread over [`BUCKETS`] buckets by a hash of (kind, id). Each bucket is a
//! sealed record listing its entries and their generations; the root record lists the
//! generation of every bucket and the last commit sequence number. A commit re-seals the root
//! and the buckets it touched, so its cost does not grow with the number of keys.
//!
//! On load, a record is refused (and reported, while the rest load) when the parent:
//! - dropped it (listed, never seen),
//! - replays an older generation of it (generation differs from the manifest's),
//! - swapped it with another (the AAD binds kind and id, so it does not open),
//! - mixed in a bucket from another point in time (bucket generation differs from the root's:
//!   every record of that bucket is refused).
//!
//! A rollback of the whole store to an older consistent state (root included) cannot be seen
//! by one enclave alone.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::record::{self, OpenError};
use super::{DomainKey, RecordKind};
use crate::env::Entropy;
use crate::error::KmsError;

/// Number of manifest buckets.
pub const BUCKETS: usize = 4096;
/// The root record's id.
pub const ROOT_ID: &[u8] = b"root";

type EntryKey = (u8, Box<[u8]>);

/// Set, during a load only, in the manifest entry of a record the store returned (instead of a
/// set of every id seen, which at a million keys costs tens of MB at the load's peak). Real
/// generations are commit sequence numbers, far below this bit; [`Loader::finish`] clears it.
const SEEN: u64 = 1 << 63;

/// The bucket of a record.
pub fn bucket_of(kind: RecordKind, id: &[u8]) -> u16 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&[kind as u8]);
    ctx.update(id);
    let d = ctx.finish();
    let b = d.as_ref();
    (u16::from(b[0]) << 8 | u16::from(b[1])) % BUCKETS as u16
}

/// The root as loaded: the last commit's sequence number and every bucket's generation.
struct RootPlain {
    seq: u64,
    buckets: Vec<u64>,
}

/// The root as sealed. Version 2 packs the generations as one byte string of big-endian u64s
/// (one copy to encode, where version 1's CBOR array of integers cost a call per bucket on
/// every commit); version 1 is still read.
#[derive(Serialize, Deserialize)]
struct RootWire {
    v: u8,
    seq: u64,
    buckets: BucketGens,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum BucketGens {
    Packed(ByteBuf),
    List(Vec<u64>),
}

impl RootPlain {
    fn encode(seq: u64, buckets: &[u64]) -> Result<Vec<u8>, KmsError> {
        let packed: Vec<u8> = buckets.iter().flat_map(|g| g.to_be_bytes()).collect();
        serde_cbor::to_vec(&RootWire {
            v: 2,
            seq,
            buckets: BucketGens::Packed(ByteBuf::from(packed)),
        })
        .map_err(|_| KmsError::Internal("manifest encoding"))
    }

    fn decode(plain: &[u8]) -> Result<Self, String> {
        let wire: RootWire = serde_cbor::from_slice(plain).map_err(|e| e.to_string())?;
        let buckets = match (wire.v, wire.buckets) {
            (1, BucketGens::List(list)) => list,
            (2, BucketGens::Packed(packed)) if packed.len() == BUCKETS * 8 => packed
                .chunks_exact(8)
                .map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default()))
                .collect(),
            _ => return Err("malformed root manifest".to_owned()),
        };
        Ok(RootPlain {
            seq: wire.seq,
            buckets,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct BucketPlain {
    v: u8,
    entries: Vec<(u8, ByteBuf, u64)>,
}

/// The enclave's view of what the store holds.
pub struct Manifest {
    seq: u64,
    bucket_gens: Vec<u64>,
    buckets: Vec<HashMap<EntryKey, u64>>,
    dirty: BTreeSet<u16>,
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// A sealed record ready for the store: kind, id, bytes.
pub type SealedRecord = (RecordKind, Vec<u8>, Vec<u8>);

impl Manifest {
    /// The manifest of an empty store.
    pub fn empty() -> Self {
        Manifest {
            seq: 0,
            bucket_gens: vec![0; BUCKETS],
            buckets: (0..BUCKETS).map(|_| HashMap::new()).collect(),
            dirty: BTreeSet::new(),
        }
    }

    /// The last sequence number committed (or being committed).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Starts the next commit; returns its sequence number.
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Notes that record (kind, id) is written at `generation`, or deleted (`None`).
    pub fn set(&mut self, kind: RecordKind, id: &[u8], generation: Option<u64>) {
        let bucket = bucket_of(kind, id);
        let entries = &mut self.buckets[usize::from(bucket)];
        let key: EntryKey = (kind as u8, id.into());
        match generation {
            Some(g) => {
                entries.insert(key, g);
            }
            None => {
                entries.remove(&key);
            }
        }
        self.dirty.insert(bucket);
    }

    /// The expected generation of (kind, id), noting that its record was seen (load only).
    fn see(&mut self, kind: RecordKind, id: &[u8]) -> Option<u64> {
        let bucket = bucket_of(kind, id);
        self.buckets[usize::from(bucket)]
            .get_mut(&(kind as u8, Box::from(id)))
            .map(|g| {
                *g |= SEEN;
                *g & !SEEN
            })
    }

    /// The generation the manifest expects for (kind, id).
    pub fn expected(&self, kind: RecordKind, id: &[u8]) -> Option<u64> {
        let bucket = bucket_of(kind, id);
        self.buckets[usize::from(bucket)]
            .get(&(kind as u8, Box::from(id)))
            .copied()
    }

    /// Seals every bucket changed since the last call, and the root, at the current sequence.
    ///
    /// # Errors
    /// [`KmsError::Internal`] if encoding or sealing fails.
    pub fn seal_changes(
        &mut self,
        domain: &DomainKey,
        entropy: &dyn Entropy,
    ) -> Result<Vec<SealedRecord>, KmsError> {
        let seq = self.seq;
        let mut out = Vec::with_capacity(self.dirty.len() + 1);
        for bucket in std::mem::take(&mut self.dirty) {
            let entries = &self.buckets[usize::from(bucket)];
            let plain = BucketPlain {
                v: 1,
                entries: entries
                    .iter()
                    .map(|((k, id), g)| (*k, ByteBuf::from(id.to_vec()), *g))
                    .collect(),
            };
            let bytes =
                serde_cbor::to_vec(&plain).map_err(|_| KmsError::Internal("manifest encoding"))?;
            let id = bucket.to_be_bytes().to_vec();
            let sealed = record::seal(domain, RecordKind::Bucket, &id, seq, &bytes, entropy)?;
            self.bucket_gens[usize::from(bucket)] = seq;
            out.push((RecordKind::Bucket, id, sealed));
        }
        let bytes = RootPlain::encode(seq, &self.bucket_gens)?;
        let sealed = record::seal(domain, RecordKind::Root, ROOT_ID, seq, &bytes, entropy)?;
        out.push((RecordKind::Root, ROOT_ID.to_vec(), sealed));
        Ok(out)
    }
}

/// Why a record was refused at load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The root manifest is missing or does not open: nothing can be trusted.
    #[error("root manifest: {0}")]
    Root(String),
    /// A bucket manifest is missing, does not open, or is from another point in time.
    #[error("manifest bucket {bucket}: {why}")]
    Bucket {
        /// Bucket number.
        bucket: u16,
        /// What is wrong.
        why: String,
    },
    /// A record does not open (altered, swapped, or under another domain key).
    #[error("{kind:?} record {id}: does not open ({why})")]
    Unopenable {
        /// Record kind.
        kind: RecordKind,
        /// Record id, printable.
        id: String,
        /// Why.
        why: OpenError,
    },
    /// A record's generation is not the one the manifest lists (replayed or mixed in time).
    #[error("{kind:?} record {id}: generation {found} but the manifest lists {expected}")]
    Generation {
        /// Record kind.
        kind: RecordKind,
        /// Record id, printable.
        id: String,
        /// Generation found.
        found: u64,
        /// Generation expected.
        expected: u64,
    },
    /// The manifest lists a record the store did not return (dropped).
    #[error("{kind:?} record {id}: listed in the manifest but missing from the store")]
    Missing {
        /// Record kind.
        kind: RecordKind,
        /// Record id, printable.
        id: String,
    },
    /// A record's plaintext is malformed.
    #[error("{kind:?} record {id}: {why}")]
    Malformed {
        /// Record kind.
        kind: RecordKind,
        /// Record id, printable.
        id: String,
        /// Why.
        why: String,
    },
}

/// A printable record id.
pub fn show_id(kind: RecordKind, id: &[u8]) -> String {
    match kind {
        RecordKind::Key => {
            uuid::Uuid::from_slice(id).map_or_else(|_| hex::encode(id), |u| u.to_string())
        }
        _ => String::from_utf8(id.to_vec()).unwrap_or_else(|_| hex::encode(id)),
    }
}

/// Rebuilds the manifest from a store stream (records in (kind, id) order) and verifies every
/// record against it.
pub struct Loader<'a> {
    domain: &'a DomainKey,
    root: Option<RootPlain>,
    manifest: Manifest,
    bad_buckets: BTreeSet<u16>,
    /// Everything refused so far.
    pub refused: Vec<Refusal>,
}

impl<'a> Loader<'a> {
    /// A loader for a store sealed under `domain`.
    pub fn new(domain: &'a DomainKey) -> Self {
        Loader {
            domain,
            root: None,
            manifest: Manifest::empty(),
            bad_buckets: BTreeSet::new(),
            refused: Vec::new(),
        }
    }

    /// Whether the root opened (if not, nothing else may be trusted).
    pub fn has_root(&self) -> bool {
        self.root.is_some()
    }

    /// Takes one stored record; returns its verified plaintext when it is a data record
    /// (key, alias, principal) that matches the manifest.
    pub fn feed(
        &mut self,
        kind_byte: u8,
        id: &[u8],
        sealed: &[u8],
    ) -> Option<(RecordKind, zeroize::Zeroizing<Vec<u8>>)> {
        let Some(kind) = RecordKind::from_u8(kind_byte) else {
            self.refused.push(Refusal::Malformed {
                kind: RecordKind::Root,
                id: hex::encode(id),
                why: format!("unknown record kind {kind_byte}"),
            });
            return None;
        };
        match kind {
            RecordKind::Root => {
                self.load_root(id, sealed);
                None
            }
            RecordKind::Bucket => {
                self.load_bucket(id, sealed);
                None
            }
            RecordKind::Key | RecordKind::Alias | RecordKind::Principal | RecordKind::Setting => {
                self.load_record(kind, id, sealed)
            }
        }
    }

    fn load_root(&mut self, id: &[u8], sealed: &[u8]) {
        if id != ROOT_ID {
            self.refused.push(Refusal::Root(format!(
                "unexpected root id {}",
                hex::encode(id)
            )));
            return;
        }
        let root = record::open(self.domain, RecordKind::Root, ROOT_ID, sealed)
            .map_err(|e| e.to_string())
            .and_then(|(generation, plain)| {
                let root = RootPlain::decode(&plain)?;
                if root.buckets.len() != BUCKETS || root.seq != generation {
                    return Err("malformed root manifest".to_owned());
                }
                Ok(root)
            });
        match root {
            Ok(root) => {
                self.manifest.seq = root.seq;
                self.manifest.bucket_gens.clone_from(&root.buckets);
                for (b, g) in root.buckets.iter().enumerate() {
                    if *g > 0 {
                        // Until its manifest arrives and verifies, the bucket is unaccounted.
                        self.bad_buckets
                            .insert(u16::try_from(b).unwrap_or(u16::MAX));
                    }
                }
                self.root = Some(root);
            }
            Err(why) => self.refused.push(Refusal::Root(why)),
        }
    }

    fn load_bucket(&mut self, id: &[u8], sealed: &[u8]) {
        let Some(root) = &self.root else { return };
        let bucket = match <[u8; 2]>::try_from(id) {
            Ok(b) if usize::from(u16::from_be_bytes(b)) < BUCKETS => u16::from_be_bytes(b),
            _ => {
                self.refused.push(Refusal::Bucket {
                    bucket: u16::MAX,
                    why: format!("unexpected bucket id {}", hex::encode(id)),
                });
                return;
            }
        };
        let expected = root.buckets[usize::from(bucket)];
        let result = record::open(self.domain, RecordKind::Bucket, id, sealed)
            .map_err(|e| e.to_string())
            .and_then(|(generation, plain)| {
                if generation != expected {
                    return Err(format!(
                        "generation {generation}, but the root lists {expected} (mixed from another point in time)"
                    ));
                }
                let b: BucketPlain = serde_cbor::from_slice(&plain).map_err(|e| e.to_string())?;
                if b.entries.iter().any(|(_, _, g)| g & SEEN != 0) {
                    return Err("malformed bucket manifest".to_owned());
                }
                Ok(b)
            });
        match result {
            Ok(b) => {
                let entries = &mut self.manifest.buckets[usize::from(bucket)];
                for (k, id, g) in b.entries {
                    entries.insert((k, id.into_vec().into_boxed_slice()), g);
                }
                self.bad_buckets.remove(&bucket);
            }
            Err(why) => self.refused.push(Refusal::Bucket { bucket, why }),
        }
    }

    fn load_record(
        &mut self,
        kind: RecordKind,
        id: &[u8],
        sealed: &[u8],
    ) -> Option<(RecordKind, zeroize::Zeroizing<Vec<u8>>)> {
        self.root.as_ref()?;
        let bucket = bucket_of(kind, id);
        if self.bad_buckets.contains(&bucket) {
            self.refused.push(Refusal::Bucket {
                bucket,
                why: format!(
                    "{kind:?} record {} cannot be vouched for",
                    show_id(kind, id)
                ),
            });
            return None;
        }
        let Some(expected) = self.manifest.see(kind, id) else {
            // Not listed: a record deleted since, left behind by the parent. Ignore it.
            tracing::debug!(?kind, id = %show_id(kind, id), "ignoring a record the manifest does not list");
            return None;
        };
        match record::open(self.domain, kind, id, sealed) {
            Ok((generation, plain)) if generation == expected => Some((kind, plain)),
            Ok((found, _)) => {
                self.refused.push(Refusal::Generation {
                    kind,
                    id: show_id(kind, id),
                    found,
                    expected,
                });
                None
            }
            Err(why) => {
                self.refused.push(Refusal::Unopenable {
                    kind,
                    id: show_id(kind, id),
                    why,
                });
                None
            }
        }
    }

    /// Ends the load: reports every listed record never seen; returns the manifest to continue
    /// committing from, and everything refused.
    pub fn finish(mut self) -> (Manifest, Vec<Refusal>) {
        if self.root.is_some() {
            for (b, entries) in self.manifest.buckets.iter().enumerate() {
                if self
                    .bad_buckets
                    .contains(&u16::try_from(b).unwrap_or(u16::MAX))
                {
                    continue;
                }
                for (key, g) in entries {
                    if g & SEEN == 0 {
                        let kind = RecordKind::from_u8(key.0).unwrap_or(RecordKind::Key);
                        self.refused.push(Refusal::Missing {
                            kind,
                            id: show_id(kind, &key.1),
                        });
                    }
                }
            }
            for b in &self.bad_buckets {
                self.refused.push(Refusal::Bucket {
                    bucket: *b,
                    why: "listed in the root but missing or unverifiable".to_owned(),
                });
            }
        }
        for entries in &mut self.manifest.buckets {
            for g in entries.values_mut() {
                *g &= !SEEN;
            }
        }
        (self.manifest, self.refused)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn gens() -> Vec<u64> {
        (0..BUCKETS as u64).map(|b| b * 1_000_003 % 7919).collect()
    }

    #[test]
    fn root_round_trips_packed() {
        let root = RootPlain::decode(&RootPlain::encode(42, &gens()).unwrap()).unwrap();
        assert_eq!((root.seq, root.buckets), (42, gens()));
    }

    /// Stores written before the packed form still load.
    #[test]
    fn version_1_roots_still_load() {
        let v1 = serde_cbor::to_vec(&RootWire {
            v: 1,
            seq: 7,
            buckets: BucketGens::List(gens()),
        })
        .unwrap();
        let root = RootPlain::decode(&v1).unwrap();
        assert_eq!((root.seq, root.buckets), (7, gens()));
    }

    #[test]
    fn mismatched_or_short_roots_are_refused() {
        for (v, buckets) in [
            (2, BucketGens::List(gens())),
            (1, BucketGens::Packed(ByteBuf::from(vec![0; BUCKETS * 8]))),
            (
                2,
                BucketGens::Packed(ByteBuf::from(vec![0; BUCKETS * 8 - 1])),
            ),
            (3, BucketGens::Packed(ByteBuf::from(vec![0; BUCKETS * 8]))),
        ] {
            let bytes = serde_cbor::to_vec(&RootWire { v, seq: 1, buckets }).unwrap();
            assert!(RootPlain::decode(&bytes).is_err(), "version {v}");
        }
    }
}
