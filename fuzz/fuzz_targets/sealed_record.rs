//! The sealed-record envelope (`seal::record::open`, `claimed_generation`) on fuzzed bytes
//! under a fixed domain key, and sealing round trips.
//!
//! Checks: no panic; a fuzzed record never opens (no forgery), and `claimed_generation` refuses
//! exactly what `open` refuses as `Format`; a record sealed with a fuzzed kind, id, generation
//! and plaintext opens to them, claims its generation, and does not open as another kind or
//! id, under another domain key, truncated, or with any byte changed.

#![no_main]

use arbitrary::Unstructured;
use ekms_enclave::durability::seal::record::{self, OpenError};
use ekms_enclave::durability::seal::{DomainKey, RecordKind};
use ekms_fuzz::SeededEntropy;
use libfuzzer_sys::fuzz_target;
use zeroize::Zeroizing;

const KINDS: [RecordKind; 7] = [
    RecordKind::Root,
    RecordKind::Bucket,
    RecordKind::Key,
    RecordKind::Alias,
    RecordKind::Principal,
    RecordKind::Setting,
    RecordKind::Grant,
];

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let domain = DomainKey::new(Zeroizing::new([3u8; 32]));
    let kind = *u.choose(&KINDS).unwrap_or(&RecordKind::Key);
    let id: &[u8] = u.arbitrary().unwrap_or_default();
    let sealed: &[u8] = u.arbitrary().unwrap_or_default();
    match record::open(&domain, kind, id, sealed) {
        Ok(_) => panic!("a fuzzed record opened"),
        Err(OpenError::Format) => assert!(record::claimed_generation(sealed).is_err()),
        Err(OpenError::Authentication) => assert!(record::claimed_generation(sealed).is_ok()),
    }

    let generation: u64 = u.arbitrary().unwrap_or(0);
    let plaintext: &[u8] = u.arbitrary().unwrap_or_default();
    let entropy = SeededEntropy::new(u.arbitrary().unwrap_or(0));
    let sealed = record::seal(&domain, kind, id, generation, plaintext, &entropy).expect("seal");
    assert_eq!(record::claimed_generation(&sealed), Ok(generation));
    let (g, plain) = record::open(&domain, kind, id, &sealed).expect("a sealed record opens");
    assert_eq!((g, &plain[..]), (generation, plaintext));

    let other_kind = *u.choose(&KINDS).unwrap_or(&RecordKind::Key);
    let other_id: &[u8] = u.arbitrary().unwrap_or_default();
    if (other_kind, other_id) != (kind, id) {
        assert!(record::open(&domain, other_kind, other_id, &sealed).is_err(), "moved record opened");
    }
    let other_domain = DomainKey::new(Zeroizing::new([4u8; 32]));
    assert!(record::open(&other_domain, kind, id, &sealed).is_err());
    let at = u.choose_index(sealed.len()).unwrap_or(0);
    let mut altered = sealed.clone();
    altered[at] ^= u.int_in_range(1..=255u8).unwrap_or(1);
    assert!(record::open(&domain, kind, id, &altered).is_err(), "byte {at} changed, opened");
    let cut = u.choose_index(sealed.len()).unwrap_or(0);
    assert!(record::open(&domain, kind, id, &sealed[..cut]).is_err(), "truncated, opened");
});
