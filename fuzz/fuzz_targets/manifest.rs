//! The sealed manifest (`seal::manifest::Loader`) fed by a hostile parent, and the plaintext
//! decoders of sealed records (`seal::codec::decode_key`, `decode_alias`,
//! `decode_principal`).
//!
//! The input first makes a store history: a few commits, each putting or deleting records
//! (keys, aliases, principals, a setting) and sometimes moving the audit head, sealed under a
//! fixed domain key with the enclave's own `Manifest` (root, pages, buckets). Then the
//! parent answers the load, in one of these ways:
//! - honestly, with the store as some commit left it (the last one, or an older one: a
//!   rollback of the whole store, which one enclave cannot see);
//! - with that answer altered: records dropped, duplicated, moved, or taken from other points
//!   in the history (replays, mixes);
//! - with any sequence of records of the history, in any order;
//! - with records of fuzzed kind, id and bytes, some sealed under the domain key with fuzzed
//!   plaintext (what the decoders of roots, pages, buckets and data records see).
//!
//! Checks: no panic; an honest answer loads with nothing refused, every record as that commit
//! left it, and the manifest it rebuilds commits on and reloads with nothing refused; and
//! whenever a load refuses nothing, what it returns is exactly the records of the commit its
//! root names, at that commit (no record dropped, replayed, resurrected or mixed in from
//! another point in time goes unreported). The codec decoders never panic, and what decodes
//! re-encodes to bytes that decode to the same encoding.
//!
//! `EKMS_FUZZ_DEBUG=1` prints what each load refused and returned.

#![no_main]

use std::collections::BTreeMap;

use arbitrary::Unstructured;
use ekms_enclave::durability::seal::manifest::{Loader, Manifest};
use ekms_enclave::durability::seal::{codec, record, DomainKey, RecordKind};
use ekms_fuzz::SeededEntropy;
use libfuzzer_sys::fuzz_target;
use zeroize::Zeroizing;

type RecordId = (u8, Vec<u8>);
type Store = BTreeMap<RecordId, Vec<u8>>;

const DATA_KINDS: [RecordKind; 4] = [
    RecordKind::Key,
    RecordKind::Alias,
    RecordKind::Principal,
    RecordKind::Setting,
];

fn data_id(kind: RecordKind, n: u8) -> Vec<u8> {
    match kind {
        RecordKind::Key => vec![n; 16],
        RecordKind::Setting => b"audit-head".to_vec(),
        _ => format!("{kind:?}-{n}").into_bytes(),
    }
}

/// A store history: the store and its data records' plaintexts after each commit (index 0:
/// empty), and the audit head each commit's root carries.
struct History {
    stores: Vec<Store>,
    data: Vec<BTreeMap<RecordId, Vec<u8>>>,
    heads: Vec<Option<Vec<u8>>>,
}

fn history(u: &mut Unstructured<'_>, domain: &DomainKey, entropy: &SeededEntropy) -> History {
    let mut manifest = Manifest::empty();
    let mut store = Store::new();
    let mut data = BTreeMap::new();
    let mut head = None;
    let mut h = History {
        stores: vec![store.clone()],
        data: vec![data.clone()],
        heads: vec![None],
    };
    for _ in 0..u.int_in_range(0..=5u8).unwrap_or(0) {
        let seq = manifest.next_seq();
        for _ in 0..u.int_in_range(1..=4u8).unwrap_or(1) {
            let kind = *u.choose(&DATA_KINDS).unwrap_or(&RecordKind::Key);
            let id = data_id(kind, u.int_in_range(0..=3u8).unwrap_or(0));
            let key = (kind as u8, id.clone());
            if !u.ratio(3, 4).unwrap_or(true) {
                manifest.set(kind, &id, None);
                store.remove(&key);
                data.remove(&key);
            } else {
                let plain = format!("{kind:?} {} at {seq}", hex::encode(&id)).into_bytes();
                let sealed = record::seal(domain, kind, &id, seq, &plain, entropy).expect("seal");
                manifest.set(kind, &id, Some(seq));
                store.insert(key.clone(), sealed);
                data.insert(key, plain);
            }
        }
        if !u.ratio(2, 3).unwrap_or(true) {
            let bytes = seq.to_be_bytes().to_vec();
            manifest.set_head(bytes.clone());
            head = Some(bytes);
        }
        for (kind, id, sealed) in manifest.seal_changes(domain, entropy).expect("seal manifest") {
            store.insert((kind as u8, id), sealed);
        }
        h.stores.push(store.clone());
        h.data.push(data.clone());
        h.heads.push(head.clone());
    }
    h
}

/// What a load returned: the last plaintext of each data record, whether the root opened,
/// the manifest and what was refused.
struct Loaded {
    returned: BTreeMap<RecordId, Vec<u8>>,
    has_root: bool,
    manifest: Manifest,
    refused: Vec<ekms_enclave::durability::seal::manifest::Refusal>,
}

fn load(domain: &DomainKey, stream: &[(u8, Vec<u8>, Vec<u8>)]) -> Loaded {
    let mut loader = Loader::new(domain);
    let mut returned = BTreeMap::new();
    for (kind, id, sealed) in stream {
        if let Some((k, plain)) = loader.feed(*kind, id, sealed) {
            assert_eq!(k as u8, *kind, "returned as another kind");
            match k {
                RecordKind::Key => {
                    let _ = codec::decode_key(&plain);
                }
                RecordKind::Alias => {
                    let _ = codec::decode_alias(&plain);
                }
                RecordKind::Principal => {
                    let _ = codec::decode_principal(&plain);
                }
                _ => {}
            }
            returned.insert((*kind, id.clone()), plain.to_vec());
        }
    }
    let has_root = loader.has_root();
    let (manifest, refused) = loader.finish();
    Loaded {
        returned,
        has_root,
        manifest,
        refused,
    }
}

fn in_order(store: &Store) -> Vec<(u8, Vec<u8>, Vec<u8>)> {
    store
        .iter()
        .map(|((k, id), s)| (*k, id.clone(), s.clone()))
        .collect()
}

/// Whenever nothing is refused, the load is exactly the commit its root names.
fn check_consistent(h: &History, loaded: &Loaded) {
    if std::env::var_os("EKMS_FUZZ_DEBUG").is_some() {
        eprintln!(
            "commits {}, root {}, seq {}, refused {:?}, returned {:?}",
            h.stores.len() - 1,
            loaded.has_root,
            loaded.manifest.seq(),
            loaded.refused,
            loaded.returned.keys().collect::<Vec<_>>()
        );
    }
    if !loaded.has_root || !loaded.refused.is_empty() {
        return;
    }
    let commit = usize::try_from(loaded.manifest.seq()).expect("seq");
    let data = h.data.get(commit).expect("the root names a commit of the history");
    assert_eq!(
        &loaded.returned, data,
        "a load that refused nothing is not commit {commit} as it was"
    );
    assert_eq!(
        loaded.manifest.head(),
        h.heads[commit].as_deref(),
        "the audit head is not commit {commit}'s"
    );
}

fn decoders(bytes: &[u8]) {
    if let Ok(key) = codec::decode_key(bytes) {
        let once = codec::encode_key(&key).expect("a decoded key encodes");
        let again = codec::decode_key(&once).expect("an encoded key decodes");
        assert_eq!(*codec::encode_key(&again).expect("encodes"), *once);
    }
    if let Ok((name, alias)) = codec::decode_alias(bytes) {
        let once = codec::encode_alias(name.as_deref().unwrap_or_default(), &alias)
            .expect("a decoded alias encodes");
        let (name2, alias2) = codec::decode_alias(&once).expect("an encoded alias decodes");
        assert_eq!(name2.as_deref(), Some(name.as_deref().unwrap_or_default()));
        assert_eq!((alias2.target, alias2.created, alias2.updated), (alias.target, alias.created, alias.updated));
    }
    if let Ok(p) = codec::decode_principal(bytes) {
        let once = codec::encode_principal(&p).expect("a decoded principal encodes");
        let again = codec::decode_principal(&once).expect("an encoded principal decodes");
        assert_eq!(*codec::encode_principal(&again).expect("encodes"), *once);
        let _ = p.keys();
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let domain = DomainKey::new(Zeroizing::new([5u8; 32]));
    let entropy = SeededEntropy::new(u.arbitrary().unwrap_or(0));
    let mode = u.int_in_range(0..=5u8).unwrap_or(0);
    if mode == 5 {
        // Fuzzed records; some sealed with fuzzed plaintext, so that the root, page and
        // bucket decoders and the data record decoders see arbitrary bytes.
        let mut stream = Vec::new();
        while !u.is_empty() && stream.len() < 64 {
            let kind: u8 = if u.ratio(7, 8).unwrap_or(true) {
                u.int_in_range(1..=6).unwrap_or(1)
            } else {
                u.arbitrary().unwrap_or(0)
            };
            let id: Vec<u8> = match u.int_in_range(0..=3u8).unwrap_or(0) {
                0 => b"root".to_vec(),
                1 => {
                    let mut id = b"root".to_vec();
                    id.push(u.int_in_range(0..=64u8).unwrap_or(0));
                    id
                }
                2 => u.int_in_range(0..=4096u16).unwrap_or(0).to_be_bytes().to_vec(),
                _ => u.arbitrary().unwrap_or_default(),
            };
            let bytes: Vec<u8> = u.arbitrary().unwrap_or_default();
            decoders(&bytes);
            let sealed = match RecordKind::from_u8(kind) {
                Some(k) if u.ratio(3, 4).unwrap_or(true) => {
                    let generation = u.int_in_range(0..=3u64).unwrap_or(0);
                    record::seal(&domain, k, &id, generation, &bytes, &entropy).expect("seal")
                }
                _ => bytes,
            };
            stream.push((kind, id, sealed));
        }
        let loaded = load(&domain, &stream);
        let mut manifest = loaded.manifest;
        manifest.next_seq();
        let _ = manifest.seal_changes(&domain, &entropy);
        return;
    }

    let h = history(&mut u, &domain, &entropy);
    let last = h.stores.len() - 1;
    match mode {
        0 => {
            // Honest, at some commit.
            let commit = if u.ratio(3, 4).unwrap_or(true) {
                last
            } else {
                u.int_in_range(0..=last).unwrap_or(last)
            };
            let loaded = load(&domain, &in_order(&h.stores[commit]));
            assert!(
                loaded.refused.is_empty(),
                "an honest load of commit {commit} refused {:?}",
                loaded.refused
            );
            assert_eq!(loaded.returned, h.data[commit], "an honest load lost records");
            check_consistent(&h, &loaded);
            // The rebuilt manifest commits on, and that reloads.
            let mut manifest = loaded.manifest;
            let mut store = h.stores[commit].clone();
            let mut data = h.data[commit].clone();
            let seq = manifest.next_seq();
            let kind = *u.choose(&DATA_KINDS).unwrap_or(&RecordKind::Key);
            let id = data_id(kind, u.int_in_range(0..=3u8).unwrap_or(0));
            if !u.ratio(2, 3).unwrap_or(true) {
                manifest.set(kind, &id, None);
                store.remove(&(kind as u8, id.clone()));
                data.remove(&(kind as u8, id));
            } else {
                let plain = b"after reload".to_vec();
                let sealed = record::seal(&domain, kind, &id, seq, &plain, &entropy).expect("seal");
                manifest.set(kind, &id, Some(seq));
                store.insert((kind as u8, id.clone()), sealed);
                data.insert((kind as u8, id), plain);
            }
            for (k, id, sealed) in manifest.seal_changes(&domain, &entropy).expect("seal") {
                store.insert((k as u8, id), sealed);
            }
            let reloaded = load(&domain, &in_order(&store));
            assert!(
                reloaded.refused.is_empty(),
                "a store committed after a reload refused {:?}",
                reloaded.refused
            );
            assert_eq!(reloaded.returned, data);
        }
        1 | 2 => {
            // An honest answer, altered.
            let mut stream = in_order(&h.stores[last]);
            for _ in 0..u.int_in_range(1..=4u8).unwrap_or(1) {
                let len = stream.len();
                match u.int_in_range(0..=4u8).unwrap_or(0) {
                    0 if len > 0 => {
                        stream.remove(u.choose_index(len).unwrap_or(0));
                    }
                    1 if len > 0 => {
                        let r = stream[u.choose_index(len).unwrap_or(0)].clone();
                        stream.insert(u.int_in_range(0..=len).unwrap_or(0), r);
                    }
                    2 if len > 1 => {
                        let (a, b) = (u.choose_index(len).unwrap_or(0), u.choose_index(len).unwrap_or(0));
                        stream.swap(a, b);
                    }
                    _ => {
                        // A record from another point in the history.
                        let commit = u.int_in_range(0..=last).unwrap_or(0);
                        let old = in_order(&h.stores[commit]);
                        if !old.is_empty() {
                            let r = old[u.choose_index(old.len()).unwrap_or(0)].clone();
                            if u.arbitrary().unwrap_or(false) {
                                // In place of the current one (a replay).
                                if let Some(at) = stream.iter().position(|s| (s.0, &s.1) == (r.0, &r.1)) {
                                    stream[at] = r;
                                    continue;
                                }
                            }
                            stream.insert(u.int_in_range(0..=len).unwrap_or(0), r);
                        }
                    }
                }
            }
            check_consistent(&h, &load(&domain, &stream));
        }
        3 => {
            // Two answers one after the other: the store at one commit, then at another
            // (a parent that sends an older root and what it vouches for, then the current
            // one), some records left out of either.
            let first = u.int_in_range(0..=last).unwrap_or(0);
            let second = u.int_in_range(0..=last).unwrap_or(last);
            let mut stream = Vec::new();
            for commit in [first, second] {
                for r in in_order(&h.stores[commit]) {
                    if u.ratio(7, 8).unwrap_or(true) {
                        stream.push(r);
                    }
                }
            }
            check_consistent(&h, &load(&domain, &stream));
        }
        _ => {
            // Any records of the history, in any order.
            let mut stream = Vec::new();
            for _ in 0..u.int_in_range(0..=40u8).unwrap_or(0) {
                let commit = u.int_in_range(0..=last).unwrap_or(0);
                let old = in_order(&h.stores[commit]);
                if !old.is_empty() {
                    stream.push(old[u.choose_index(old.len()).unwrap_or(0)].clone());
                }
            }
            check_consistent(&h, &load(&domain, &stream));
        }
    }
});
