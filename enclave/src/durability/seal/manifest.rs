//! The sealed manifest: which records exist, at which generation.
//!
//! Records are spread over [`BUCKETS`] buckets by a hash of (kind, id). Each bucket is a
//! sealed record listing its entries and their generations; [`PAGES`] page records each list
//! the generations of [`BUCKETS_PER_PAGE`] buckets; the root record lists the generation of
//! every page and the last commit sequence number. A commit re-seals the root, the buckets it
//! touched and their pages, so its cost does not grow with the number of keys (and the root
//! sealed on every commit is 512 bytes of generations, not 32 KiB). Pages are sealed as kind
//! [`RecordKind::Root`] with id `root` + page number, so a load meets the root, then the pages,
//! then the buckets.
//!
//! The root also carries the audit chain's head (opaque bytes here, [`Manifest::set_head`]).
//! The head moves with nearly every commit (every audited request), and the root is sealed on
//! every commit anyway, so a commit that only audits (Encrypt, Decrypt, ...) seals the root and
//! nothing else. Kept as a record of its own, as stores before root version 4 did, it re-sealed
//! that record, its bucket (which lists about N / 4096 of N keys) and its page on every such
//! commit.
//!
//! A load is exact: the store streams every record once, in strictly increasing (kind, id)
//! order, so the root comes first, then the pages in order, then the buckets, then the data
//! records. A stream that repeats a record or goes back (a second root, a page or bucket twice,
//! an old snapshot's records after the current ones) refuses the whole load, by name: mixing
//! snapshots is how a parent would bring back what was deleted. A bucket's entries are the
//! bucket's, replacing (never merged with) anything before.
//!
//! Within an exact stream, a record is refused (and reported, while the rest load) when the
//! parent:
//! - dropped it (listed, never seen),
//! - replays an older generation of it (generation differs from the manifest's),
//! - swapped it with another (the AAD binds kind and id, so it does not open),
//! - mixed in a bucket or page from another point in time (its generation differs from the
//!   one its page or the root lists: every record of that bucket, or page, is refused),
//! - kept one the manifest does not list (deleted since): it is not loaded, and reported.
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
/// Number of manifest pages.
pub const PAGES: usize = 64;
/// Buckets listed by one page.
pub const BUCKETS_PER_PAGE: usize = BUCKETS / PAGES;
/// The width of the random gap each boot skips before its first commit ([`Manifest::skip`]):
/// two boots on the same root share a commit number with probability 2^-40, and about 2^22
/// boots fit below the bit loading reserves ([`SEEN`], 2^63).
pub const BOOT_GAP_BITS: u32 = 40;
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

/// The root as loaded: the last commit's sequence number, either every page's generation
/// (versions 3 and 4) or every bucket's (versions 1 and 2, which had no pages), and the audit
/// head (version 4).
struct RootPlain {
    seq: u64,
    gens: RootGens,
    head: Option<Vec<u8>>,
}

enum RootGens {
    Pages(Vec<u64>),
    Buckets(Vec<u64>),
}

/// The root, and pages, as sealed. Versions 4, 3 (pages) and 2 pack generations as one byte
/// string of big-endian u64s (one copy to encode, where version 1's CBOR array of integers cost
/// a call per bucket on every commit); versions 1 and 2 list every bucket in the root and are
/// still read. In a page, `seq` is the page's generation and `buckets` its buckets'. Version 4
/// is a version-3 root with the audit head; a version-3 root is still written until a store
/// has one (and pages are always version 3).
#[derive(Serialize, Deserialize)]
struct RootWire {
    v: u8,
    seq: u64,
    buckets: BucketGens,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    head: Option<ByteBuf>,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum BucketGens {
    Packed(ByteBuf),
    List(Vec<u64>),
}

/// Version-3 encoding of a page (`seq` = its generation, `gens` = its buckets').
fn encode_gens(seq: u64, gens: &[u64]) -> Result<Vec<u8>, KmsError> {
    encode_packed(3, seq, gens, None)
}

/// A root: version 4 with the audit head, version 3 (`gens` = page generations) before a store
/// has one.
fn encode_root(seq: u64, gens: &[u64], head: Option<&[u8]>) -> Result<Vec<u8>, KmsError> {
    match head {
        Some(head) => encode_packed(4, seq, gens, Some(head)),
        None => encode_packed(3, seq, gens, None),
    }
}

fn encode_packed(v: u8, seq: u64, gens: &[u64], head: Option<&[u8]>) -> Result<Vec<u8>, KmsError> {
    let packed: Vec<u8> = gens.iter().flat_map(|g| g.to_be_bytes()).collect();
    serde_cbor::to_vec(&RootWire {
        v,
        seq,
        buckets: BucketGens::Packed(ByteBuf::from(packed)),
        head: head.map(ByteBuf::from),
    })
    .map_err(|_| KmsError::Internal("manifest encoding"))
}

fn unpack(packed: &[u8]) -> Vec<u64> {
    packed
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default()))
        .collect()
}

impl RootPlain {
    fn decode(plain: &[u8]) -> Result<Self, String> {
        let wire: RootWire = serde_cbor::from_slice(plain).map_err(|e| e.to_string())?;
        let head = wire.head.map(ByteBuf::into_vec);
        let gens = match (wire.v, wire.buckets, head.is_some()) {
            (1, BucketGens::List(list), false) if list.len() == BUCKETS => RootGens::Buckets(list),
            (2, BucketGens::Packed(p), false) if p.len() == BUCKETS * 8 => {
                RootGens::Buckets(unpack(&p))
            }
            (3, BucketGens::Packed(p), false) | (4, BucketGens::Packed(p), true)
                if p.len() == PAGES * 8 =>
            {
                RootGens::Pages(unpack(&p))
            }
            _ => return Err("malformed root manifest".to_owned()),
        };
        Ok(RootPlain {
            seq: wire.seq,
            gens,
            head,
        })
    }
}

/// A page's bucket generations, checked against the generation the record was sealed at.
fn decode_page(plain: &[u8], generation: u64) -> Result<Vec<u64>, String> {
    let wire: RootWire = serde_cbor::from_slice(plain).map_err(|e| e.to_string())?;
    match (wire.v, wire.buckets, wire.head) {
        (3, BucketGens::Packed(p), None)
            if p.len() == BUCKETS_PER_PAGE * 8 && wire.seq == generation =>
        {
            Ok(unpack(&p))
        }
        _ => Err("malformed page manifest".to_owned()),
    }
}

/// The record id of page `page`.
fn page_id(page: usize) -> Vec<u8> {
    let mut id = ROOT_ID.to_vec();
    id.push(u8::try_from(page).unwrap_or(u8::MAX));
    id
}

#[derive(Serialize, Deserialize)]
struct BucketPlain {
    v: u8,
    entries: Vec<(u8, ByteBuf, u64)>,
}

/// The enclave's view of what the store holds.
pub struct Manifest {
    seq: u64,
    page_gens: Vec<u64>,
    bucket_gens: Vec<u64>,
    buckets: Vec<HashMap<EntryKey, u64>>,
    dirty: BTreeSet<u16>,
    /// Loaded from a root without pages: the next commit writes every page.
    unpaged: bool,
    /// The audit chain head the root carries (see [`Manifest::set_head`]).
    head: Option<Vec<u8>>,
    /// The last commit made or loaded, when [`Manifest::skip`] moved `seq` past it: the base
    /// of the next commit.
    skipped_from: Option<u64>,
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
            page_gens: vec![0; PAGES],
            bucket_gens: vec![0; BUCKETS],
            buckets: (0..BUCKETS).map(|_| HashMap::new()).collect(),
            dirty: BTreeSet::new(),
            unpaged: false,
            head: None,
            skipped_from: None,
        }
    }

    /// The last sequence number committed (or being committed).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Moves the sequence number on by `gap` without a commit. Each boot does this once, by a
    /// random gap, before its first commit ([`BOOT_GAP_BITS`]): a generation is the number of
    /// the commit that wrote it, and a commit the parent refused (and kept) in one boot must
    /// never share its number with a commit of a later boot built on the same root, or the
    /// parent could serve the refused commit's records in place of the acknowledged ones.
    pub fn skip(&mut self, gap: u64) {
        self.skipped_from.get_or_insert(self.seq);
        self.seq = self.seq.saturating_add(gap);
    }

    /// The commit the next one builds on: the last one made or loaded.
    pub fn base(&self) -> u64 {
        self.skipped_from.unwrap_or(self.seq)
    }

    /// This manifest (of a newer state of a shared store, loaded) as the one to commit on
    /// from a member whose commits are numbered up to `counter`: its next commit builds on
    /// this state's last commit, and is numbered after the member's own.
    #[must_use]
    pub fn rebased(mut self, counter: u64) -> Self {
        self.skipped_from = Some(self.seq);
        self.seq = counter;
        self
    }

    /// Starts the next commit; returns its sequence number.
    pub fn next_seq(&mut self) -> u64 {
        self.next_commit().1
    }

    /// Starts the next commit; returns the commit it builds on (the last one made or loaded,
    /// whatever gap [`Manifest::skip`] left since) and its own sequence number.
    pub fn next_commit(&mut self) -> (u64, u64) {
        let base = self.skipped_from.take().unwrap_or(self.seq);
        self.seq += 1;
        (base, self.seq)
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

    /// Sets the audit chain head the root carries, sealed with it from this commit on.
    pub fn set_head(&mut self, head: Vec<u8>) {
        self.head = Some(head);
    }

    /// The audit chain head the root carries: `None` for a store whose root predates it (or
    /// that audited nothing yet).
    pub fn head(&self) -> Option<&[u8]> {
        self.head.as_deref()
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

    /// Seals every bucket changed since the last call, their pages, and the root, at the
    /// current sequence.
    ///
    /// # Errors
    /// [`KmsError::Internal`] if encoding or sealing fails.
    pub fn seal_changes(
        &mut self,
        domain: &DomainKey,
        entropy: &dyn Entropy,
    ) -> Result<Vec<SealedRecord>, KmsError> {
        let seq = self.seq;
        let mut out = Vec::with_capacity(2 * self.dirty.len() + 1);
        let mut pages = BTreeSet::new();
        if std::mem::take(&mut self.unpaged) {
            pages.extend(0..PAGES);
        }
        for bucket in std::mem::take(&mut self.dirty) {
            pages.insert(usize::from(bucket) / BUCKETS_PER_PAGE);
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
        for page in pages {
            let start = page * BUCKETS_PER_PAGE;
            let bytes = encode_gens(seq, &self.bucket_gens[start..start + BUCKETS_PER_PAGE])?;
            let id = page_id(page);
            let sealed = record::seal(domain, RecordKind::Root, &id, seq, &bytes, entropy)?;
            self.page_gens[page] = seq;
            out.push((RecordKind::Root, id, sealed));
        }
        let bytes = encode_root(seq, &self.page_gens, self.head.as_deref())?;
        let sealed = record::seal(domain, RecordKind::Root, ROOT_ID, seq, &bytes, entropy)?;
        out.push((RecordKind::Root, ROOT_ID.to_vec(), sealed));
        Ok(out)
    }
}

/// A manifest's generations, copied so that a catch-up reads the store without holding the
/// manifest ([`Manifest::generations`]).
#[derive(Debug, Clone)]
pub struct Generations {
    /// The commit the manifest is the state of.
    pub base: u64,
    page_gens: Vec<u64>,
    bucket_gens: Vec<u64>,
}

/// A newer root, opened and checked ([`open_root`]).
#[derive(Debug)]
pub struct NewRoot {
    seq: u64,
    page_gens: Vec<u64>,
    head: Option<Vec<u8>>,
}

impl NewRoot {
    /// The commit whose state it is.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The pages whose generations differ from `current`'s: `(page, its new generation)`.
    pub fn changed_pages(&self, current: &Generations) -> Vec<(usize, u64)> {
        (0..PAGES)
            .filter(|&p| self.page_gens[p] != current.page_gens[p])
            .map(|p| (p, self.page_gens[p]))
            .collect()
    }
}

/// The manifest's part of a catch-up: the newer root, the pages and buckets that changed, each
/// verified against the generation the level above lists ([`Manifest::catch_up`]).
#[derive(Debug)]
pub struct ManifestChanges {
    root: NewRoot,
    /// Changed pages: their buckets' generations.
    pages: Vec<(usize, Vec<u64>)>,
    /// Changed buckets: their entries.
    buckets: Vec<(u16, Vec<Entry>)>,
}

/// One manifest entry: a record's kind, id and generation.
pub type Entry = (u8, Vec<u8>, u64);

impl ManifestChanges {
    /// The changes of `root` over a manifest: `pages` (each with its buckets' generations) and
    /// `buckets` (each with its entries), as [`open_page`] and [`open_bucket`] verified them.
    pub fn new(root: NewRoot, pages: Vec<(usize, Vec<u64>)>, buckets: Vec<(u16, Vec<Entry>)>) -> Self {
        ManifestChanges {
            root,
            pages,
            buckets,
        }
    }

    /// The commit whose state this is.
    pub fn seq(&self) -> u64 {
        self.root.seq
    }
}

impl Manifest {
    /// Its generations, for a catch-up; `None` when it cannot be caught up by difference (a
    /// root without pages, or changes not sealed yet).
    pub fn generations(&self) -> Option<Generations> {
        (!self.unpaged && self.dirty.is_empty()).then(|| Generations {
            base: self.base(),
            page_gens: self.page_gens.clone(),
            bucket_gens: self.bucket_gens.clone(),
        })
    }

    /// The entries of `buckets`.
    pub fn entries_of(&self, buckets: &[u16]) -> Vec<(u16, Vec<Entry>)> {
        buckets
            .iter()
            .map(|&b| {
                let entries = self.buckets[usize::from(b) % BUCKETS]
                    .iter()
                    .map(|((kind, id), g)| (*kind, id.to_vec(), *g))
                    .collect();
                (b, entries)
            })
            .collect()
    }

    /// Takes a newer state's manifest changes, as [`Manifest::rebased`] takes a whole newer
    /// manifest: the next commit builds on the newer root's commit, numbered after this
    /// member's own.
    pub fn catch_up(&mut self, changes: ManifestChanges) {
        let ManifestChanges {
            root,
            pages,
            buckets,
        } = changes;
        for (page, gens) in pages {
            let start = (page % PAGES) * BUCKETS_PER_PAGE;
            for (slot, g) in self.bucket_gens[start..start + BUCKETS_PER_PAGE]
                .iter_mut()
                .zip(gens)
            {
                *slot = g;
            }
        }
        for (bucket, entries) in buckets {
            self.buckets[usize::from(bucket) % BUCKETS] = entries
                .into_iter()
                .map(|(kind, id, g)| ((kind, id.into_boxed_slice()), g))
                .collect();
        }
        self.page_gens = root.page_gens;
        self.head = root.head;
        self.skipped_from = Some(root.seq);
    }
}

impl Generations {
    /// The buckets of `page` whose generations in `gens` (the page's newer ones) differ from
    /// these: `(bucket, its new generation)`.
    pub fn changed_buckets(&self, page: usize, gens: &[u64]) -> Vec<(u16, u64)> {
        let start = (page % PAGES) * BUCKETS_PER_PAGE;
        gens.iter()
            .enumerate()
            .filter(|(i, g)| self.bucket_gens.get(start + i) != Some(g))
            .map(|(i, g)| (u16::try_from(start + i).unwrap_or(u16::MAX), *g))
            .collect()
    }
}

/// Opens a root read from the store: sealed under `domain` as the root, at its own sequence
/// number, with pages.
///
/// # Errors
/// Why it is refused.
pub fn open_root(domain: &DomainKey, sealed: &[u8]) -> Result<NewRoot, String> {
    let (generation, plain) =
        record::open(domain, RecordKind::Root, ROOT_ID, sealed).map_err(|e| e.to_string())?;
    let root = RootPlain::decode(&plain)?;
    if root.seq != generation {
        return Err("malformed root manifest".to_owned());
    }
    match root.gens {
        RootGens::Pages(page_gens) => Ok(NewRoot {
            seq: root.seq,
            page_gens,
            head: root.head,
        }),
        RootGens::Buckets(_) => Err("a root without pages".to_owned()),
    }
}

/// Opens page `page` read from the store, which `root` lists at `expected`: its buckets'
/// generations.
///
/// # Errors
/// Why it is refused (another generation, altered, moved, malformed).
pub fn open_page(domain: &DomainKey, page: usize, sealed: &[u8], expected: u64) -> Result<Vec<u64>, String> {
    let (generation, plain) = record::open(domain, RecordKind::Root, &page_id(page), sealed)
        .map_err(|e| e.to_string())?;
    if generation != expected {
        return Err(format!(
            "page {page}: generation {generation}, but the root lists {expected}"
        ));
    }
    decode_page(&plain, generation)
}

/// Opens bucket `bucket` read from the store, which its page lists at `expected`: its entries.
///
/// # Errors
/// Why it is refused (another generation, altered, moved, malformed, an entry in another
/// bucket).
pub fn open_bucket(domain: &DomainKey, bucket: u16, sealed: &[u8], expected: u64) -> Result<Vec<Entry>, String> {
    let id = bucket.to_be_bytes();
    let (generation, plain) =
        record::open(domain, RecordKind::Bucket, &id, sealed).map_err(|e| e.to_string())?;
    if generation != expected {
        return Err(format!(
            "bucket {bucket}: generation {generation}, but its page lists {expected}"
        ));
    }
    let b: BucketPlain = serde_cbor::from_slice(&plain).map_err(|e| e.to_string())?;
    let mut entries = Vec::with_capacity(b.entries.len());
    for (kind, id, g) in b.entries {
        let in_bucket = RecordKind::from_u8(kind).is_some_and(|k| bucket_of(k, &id) == bucket);
        if g & SEEN != 0 || !in_bucket {
            return Err(format!("bucket {bucket}: malformed bucket manifest"));
        }
        entries.push((kind, id.into_vec(), g));
    }
    Ok(entries)
}

/// The record id of page `page`.
pub fn page_record_id(page: usize) -> Vec<u8> {
    page_id(page)
}

#[cfg(test)]
impl Manifest {
    /// The page holding record (kind, id), and that page's record id.
    pub(crate) fn page_of(kind: RecordKind, id: &[u8]) -> (usize, Vec<u8>) {
        let page = usize::from(bucket_of(kind, id)) / BUCKETS_PER_PAGE;
        (page, page_id(page))
    }

    /// A root as stores before pages had it (version 2: every bucket's generation), sealed at
    /// the current sequence.
    pub(crate) fn seal_unpaged_root(&self, domain: &DomainKey) -> Vec<u8> {
        let bytes = encode_packed(2, self.seq, &self.bucket_gens, None).unwrap_or_default();
        record::seal(
            domain,
            RecordKind::Root,
            ROOT_ID,
            self.seq,
            &bytes,
            &crate::env::OsEntropy::default(),
        )
        .unwrap_or_default()
    }
}

/// Why a record was refused at load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The root manifest is missing or does not open: nothing can be trusted.
    #[error("root manifest: {0}")]
    Root(String),
    /// A page of the manifest is missing, does not open, or is from another point in time:
    /// none of its buckets can be vouched for.
    #[error("manifest page {page}: {why}")]
    Page {
        /// Page number.
        page: u8,
        /// What is wrong.
        why: String,
    },
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
    /// The store holds a record the manifest does not list (deleted since, or from another
    /// point in time): it is not loaded.
    #[error("{kind:?} record {id}: not listed in the manifest (not loaded)")]
    Unlisted {
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
        RecordKind::Grant => match crate::durability::seal::codec::split_grant_id(id) {
            Some((key, grant)) => format!("{key}/{grant}"),
            None => hex::encode(id),
        },
        _ => String::from_utf8(id.to_vec()).unwrap_or_else(|_| hex::encode(id)),
    }
}

/// Rebuilds the manifest from a store stream (records in (kind, id) order) and verifies every
/// record against it.
pub struct Loader<'a> {
    domain: &'a DomainKey,
    /// The root opened.
    root: bool,
    manifest: Manifest,
    /// Pages the root lists that have not (yet) verified.
    bad_pages: BTreeSet<u8>,
    bad_buckets: BTreeSet<u16>,
    /// The (kind, id) of the last record fed: each must be greater than the one before.
    last: Option<(u8, Vec<u8>)>,
    /// The stream was not exact: the load is refused and nothing more is taken.
    broken: bool,
    /// Everything refused so far.
    pub refused: Vec<Refusal>,
}

impl<'a> Loader<'a> {
    /// A loader for a store sealed under `domain`.
    pub fn new(domain: &'a DomainKey) -> Self {
        Loader {
            domain,
            root: false,
            manifest: Manifest::empty(),
            bad_pages: BTreeSet::new(),
            bad_buckets: BTreeSet::new(),
            last: None,
            broken: false,
            refused: Vec::new(),
        }
    }

    /// Whether the root opened (if not, nothing else may be trusted).
    pub fn has_root(&self) -> bool {
        self.root
    }

    /// Takes one stored record; returns its verified plaintext when it is a data record
    /// (key, alias, principal) that matches the manifest.
    pub fn feed(
        &mut self,
        kind_byte: u8,
        id: &[u8],
        sealed: &[u8],
    ) -> Option<(RecordKind, zeroize::Zeroizing<Vec<u8>>)> {
        if self.broken {
            return None;
        }
        // Exactly once each, in order: anything else is a parent mixing streams.
        if let Some((last_kind, last_id)) = &self.last {
            if (*last_kind, last_id.as_slice()) >= (kind_byte, id) {
                self.broken = true;
                self.refused.push(Refusal::Root(format!(
                    "the store returned record ({kind_byte}, {}) after ({last_kind}, {}): records repeated or out of order, as when snapshots are mixed",
                    hex::encode(id),
                    hex::encode(last_id)
                )));
                return None;
            }
        }
        self.last = Some((kind_byte, id.to_vec()));
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
            RecordKind::Key
            | RecordKind::Alias
            | RecordKind::Principal
            | RecordKind::Setting
            | RecordKind::Grant => self.load_record(kind, id, sealed),
        }
    }

    fn load_root(&mut self, id: &[u8], sealed: &[u8]) {
        if id != ROOT_ID {
            self.load_page(id, sealed);
            return;
        }
        let root = record::open(self.domain, RecordKind::Root, ROOT_ID, sealed)
            .map_err(|e| e.to_string())
            .and_then(|(generation, plain)| {
                let root = RootPlain::decode(&plain)?;
                if root.seq != generation {
                    return Err("malformed root manifest".to_owned());
                }
                Ok(root)
            });
        let root = match root {
            Ok(root) => root,
            Err(why) => {
                self.refused.push(Refusal::Root(why));
                return;
            }
        };
        self.manifest.seq = root.seq;
        self.manifest.head = root.head;
        self.root = true;
        match root.gens {
            RootGens::Pages(pages) => {
                for (p, g) in pages.iter().enumerate() {
                    if *g > 0 {
                        // Until the page arrives and verifies, its buckets are unaccounted.
                        self.bad_pages.insert(u8::try_from(p).unwrap_or(u8::MAX));
                        self.bad_buckets.extend(
                            (p * BUCKETS_PER_PAGE..(p + 1) * BUCKETS_PER_PAGE)
                                .map(|b| u16::try_from(b).unwrap_or(u16::MAX)),
                        );
                    }
                }
                self.manifest.page_gens = pages;
            }
            RootGens::Buckets(buckets) => {
                self.note_bucket_gens(0, &buckets);
                self.manifest.unpaged = true;
            }
        }
    }

    /// Takes the generations of buckets `first..`: each listed bucket is unaccounted until its
    /// manifest arrives and verifies; an unlisted one is empty.
    fn note_bucket_gens(&mut self, first: usize, gens: &[u64]) {
        for (i, g) in gens.iter().enumerate() {
            let b = u16::try_from(first + i).unwrap_or(u16::MAX);
            self.manifest.bucket_gens[usize::from(b)] = *g;
            if *g > 0 {
                self.bad_buckets.insert(b);
            } else {
                self.bad_buckets.remove(&b);
            }
        }
    }

    fn load_page(&mut self, id: &[u8], sealed: &[u8]) {
        if !self.root {
            return;
        }
        let page = match id.strip_prefix(ROOT_ID) {
            Some(&[p]) if usize::from(p) < PAGES => p,
            _ => {
                self.refused.push(Refusal::Root(format!(
                    "unexpected root id {}",
                    hex::encode(id)
                )));
                return;
            }
        };
        let expected = self.manifest.page_gens[usize::from(page)];
        let gens = record::open(self.domain, RecordKind::Root, id, sealed)
            .map_err(|e| e.to_string())
            .and_then(|(generation, plain)| {
                if generation != expected {
                    return Err(format!(
                        "generation {generation}, but the root lists {expected} (mixed from another point in time)"
                    ));
                }
                decode_page(&plain, generation)
            });
        match gens {
            Ok(gens) => {
                self.note_bucket_gens(usize::from(page) * BUCKETS_PER_PAGE, &gens);
                self.bad_pages.remove(&page);
            }
            Err(why) => self.refused.push(Refusal::Page { page, why }),
        }
    }

    fn load_bucket(&mut self, id: &[u8], sealed: &[u8]) {
        if !self.root {
            return;
        }
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
        if self.page_refused(bucket) {
            return; // its page's refusal covers it
        }
        let expected = self.manifest.bucket_gens[usize::from(bucket)];
        let result = record::open(self.domain, RecordKind::Bucket, id, sealed)
            .map_err(|e| e.to_string())
            .and_then(|(generation, plain)| {
                if generation != expected {
                    return Err(format!(
                        "generation {generation}, but the manifest lists {expected} (mixed from another point in time)"
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
                // The bucket's entries, and nothing else: never merged with earlier ones.
                self.manifest.buckets[usize::from(bucket)] = b
                    .entries
                    .into_iter()
                    .map(|(k, id, g)| ((k, id.into_vec().into_boxed_slice()), g))
                    .collect();
                self.bad_buckets.remove(&bucket);
            }
            Err(why) => self.refused.push(Refusal::Bucket { bucket, why }),
        }
    }

    /// Whether the page listing `bucket` did not verify.
    fn page_refused(&self, bucket: u16) -> bool {
        u8::try_from(usize::from(bucket) / BUCKETS_PER_PAGE)
            .is_ok_and(|page| self.bad_pages.contains(&page))
    }

    fn load_record(
        &mut self,
        kind: RecordKind,
        id: &[u8],
        sealed: &[u8],
    ) -> Option<(RecordKind, zeroize::Zeroizing<Vec<u8>>)> {
        if !self.root {
            return None;
        }
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
            // Not listed: deleted since (or from another point in time), kept by the parent.
            self.refused.push(Refusal::Unlisted {
                kind,
                id: show_id(kind, id),
            });
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
        // A stream that was not exact refused the load: that is the whole answer.
        if self.root && !self.broken {
            for p in &self.bad_pages {
                self.refused.push(Refusal::Page {
                    page: *p,
                    why: "listed in the root but missing or unverifiable".to_owned(),
                });
            }
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
            let bad_buckets: Vec<u16> = self
                .bad_buckets
                .iter()
                .copied()
                .filter(|b| !self.page_refused(*b))
                .collect();
            for b in bad_buckets {
                self.refused.push(Refusal::Bucket {
                    bucket: b,
                    why: "listed in the manifest but missing or unverifiable".to_owned(),
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

    /// Feeds `records` to a loader in the store's (kind, id) order, as a load does; none is
    /// a data record, so none comes back.
    fn load_sealed(domain: &DomainKey, mut records: Vec<SealedRecord>) -> (Manifest, Vec<Refusal>) {
        records.sort_by(|a, b| (a.0 as u8, &a.1).cmp(&(b.0 as u8, &b.1)));
        let mut loader = Loader::new(domain);
        for (kind, id, s) in &records {
            assert!(loader.feed(*kind as u8, id, s).is_none());
        }
        loader.finish()
    }

    fn gens(n: usize) -> Vec<u64> {
        (0..n as u64).map(|b| b * 1_000_003 % 7919).collect()
    }

    fn bucket_gens(root: RootPlain) -> Vec<u64> {
        match root.gens {
            RootGens::Buckets(b) => b,
            RootGens::Pages(_) => panic!("a paged root"),
        }
    }

    #[test]
    fn roots_and_pages_round_trip_packed() {
        let root = RootPlain::decode(&encode_gens(42, &gens(PAGES)).unwrap()).unwrap();
        assert_eq!(root.seq, 42);
        assert!(matches!(root.gens, RootGens::Pages(p) if p == gens(PAGES)));
        let page = encode_gens(9, &gens(BUCKETS_PER_PAGE)).unwrap();
        assert_eq!(decode_page(&page, 9).unwrap(), gens(BUCKETS_PER_PAGE));
        // A page's generation inside must be the one it was sealed at.
        assert!(decode_page(&page, 10).is_err());
    }

    /// Stores written before pages still load (and their next commit writes every page).
    #[test]
    fn version_1_and_2_roots_still_load() {
        let v1 = serde_cbor::to_vec(&RootWire {
            v: 1,
            seq: 7,
            buckets: BucketGens::List(gens(BUCKETS)),
            head: None,
        })
        .unwrap();
        let root = RootPlain::decode(&v1).unwrap();
        assert_eq!(root.seq, 7);
        assert_eq!(bucket_gens(root), gens(BUCKETS));
        let packed: Vec<u8> = gens(BUCKETS).iter().flat_map(|g| g.to_be_bytes()).collect();
        let v2 = serde_cbor::to_vec(&RootWire {
            v: 2,
            seq: 8,
            buckets: BucketGens::Packed(ByteBuf::from(packed)),
            head: None,
        })
        .unwrap();
        assert_eq!(bucket_gens(RootPlain::decode(&v2).unwrap()), gens(BUCKETS));
    }

    #[test]
    fn mismatched_or_short_roots_are_refused() {
        for (v, buckets) in [
            (2, BucketGens::List(gens(BUCKETS))),
            (1, BucketGens::List(gens(BUCKETS - 1))),
            (1, BucketGens::Packed(ByteBuf::from(vec![0; BUCKETS * 8]))),
            (
                2,
                BucketGens::Packed(ByteBuf::from(vec![0; BUCKETS * 8 - 1])),
            ),
            (3, BucketGens::Packed(ByteBuf::from(vec![0; BUCKETS * 8]))),
            (3, BucketGens::List(gens(PAGES))),
            (4, BucketGens::Packed(ByteBuf::from(vec![0; PAGES * 8]))),
        ] {
            let bytes = serde_cbor::to_vec(&RootWire {
                v,
                seq: 1,
                buckets,
                head: None,
            })
            .unwrap();
            assert!(RootPlain::decode(&bytes).is_err(), "version {v}");
        }
        // A head only in a version-4 root; never in a page.
        let head = Some(&[7u8; 40][..]);
        let v3_with_head = encode_packed(3, 1, &gens(PAGES), head).unwrap();
        assert!(RootPlain::decode(&v3_with_head).is_err());
        let page_with_head = encode_packed(3, 5, &gens(BUCKETS_PER_PAGE), head).unwrap();
        assert!(decode_page(&page_with_head, 5).is_err());
        let v4 = encode_root(1, &gens(PAGES), head).unwrap();
        assert_eq!(RootPlain::decode(&v4).unwrap().head.as_deref(), head);
    }

    /// The audit head rides in the root: a commit that only moves it (an audited Encrypt)
    /// seals the root alone, whatever the number of records; loaded back, the root gives it.
    #[test]
    fn a_commit_that_only_moves_the_audit_head_seals_the_root_alone() {
        let domain = DomainKey::new(zeroize::Zeroizing::new([3; 32]));
        let entropy = crate::env::OsEntropy::default();
        let mut m = Manifest::empty();
        let seq = m.next_seq();
        for n in 0..20_000u32 {
            m.set(RecordKind::Key, &n.to_be_bytes(), Some(seq));
        }
        let mut records = m.seal_changes(&domain, &entropy).unwrap();

        m.next_seq();
        m.set_head(vec![9; 40]);
        let sealed = m.seal_changes(&domain, &entropy).unwrap();
        let ids: Vec<(RecordKind, Vec<u8>)> =
            sealed.iter().map(|(k, id, _)| (*k, id.clone())).collect();
        assert_eq!(ids, vec![(RecordKind::Root, ROOT_ID.to_vec())]);
        assert!(sealed[0].2.len() < 1024, "{}", sealed[0].2.len());

        records.retain(|(_, id, _)| id != ROOT_ID);
        records.extend(sealed);
        let (loaded, refused) = load_sealed(&domain, records);
        // The keys' records themselves were never stored: each is reported missing, and
        // nothing else is refused.
        assert!(refused.iter().all(|r| matches!(
            r,
            Refusal::Missing {
                kind: RecordKind::Key,
                ..
            }
        )));
        assert_eq!(refused.len(), 20_000);
        assert_eq!(loaded.head(), Some(&[9; 40][..]));
        assert_eq!(loaded.seq(), 2);
    }

    /// A commit that touches one bucket seals that bucket, its page and the root: a few
    /// hundred bytes of generations, not one per bucket.
    #[test]
    fn a_commit_seals_its_buckets_their_pages_and_the_root() {
        let domain = DomainKey::new(zeroize::Zeroizing::new([3; 32]));
        let entropy = crate::env::OsEntropy::default();
        let mut m = Manifest::empty();
        let seq = m.next_seq();
        m.set(RecordKind::Key, b"k1", Some(seq));
        let sealed = m.seal_changes(&domain, &entropy).unwrap();
        let bucket = bucket_of(RecordKind::Key, b"k1");
        let page = usize::from(bucket) / BUCKETS_PER_PAGE;
        let ids: Vec<(RecordKind, Vec<u8>)> =
            sealed.iter().map(|(k, id, _)| (*k, id.clone())).collect();
        assert_eq!(
            ids,
            vec![
                (RecordKind::Bucket, bucket.to_be_bytes().to_vec()),
                (RecordKind::Root, page_id(page)),
                (RecordKind::Root, ROOT_ID.to_vec()),
            ]
        );
        assert!(
            sealed.iter().all(|(_, _, s)| s.len() < 1024),
            "{:?}",
            sealed.iter().map(|r| r.2.len()).collect::<Vec<_>>()
        );

        // Loaded back: the root, the page, the bucket; the record is expected at its seq.
        let (loaded, refused) = load_sealed(&domain, sealed);
        assert_eq!(refused.len(), 1, "{refused:?}"); // the record itself was never fed
        assert!(matches!(
            &refused[0],
            Refusal::Missing {
                kind: RecordKind::Key,
                ..
            }
        ));
        assert_eq!(loaded.expected(RecordKind::Key, b"k1"), Some(seq));
    }

    #[test]
    fn a_commit_after_the_boot_gap_builds_on_the_last_commit_before_it() {
        let mut m = Manifest::empty();
        assert_eq!(m.next_commit(), (0, 1));
        assert_eq!(m.next_commit(), (1, 2));
        m.skip(1000);
        m.skip(5);
        assert_eq!(m.next_commit(), (2, 1008));
        assert_eq!(m.next_commit(), (1008, 1009));
    }

}
