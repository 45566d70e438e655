//! Symmetric ciphertext blobs (`ciphertext::parse`, `ParsedBlob::open`) on fuzzed bytes, and
//! sealing round trips.
//!
//! Checks: no panic; a fuzzed blob never opens under a fixed key (no
//! forgery); a blob sealed with a fuzzed header, context and plaintext parses to that header
//! and opens to that plaintext, and not with another context or with any byte changed; two
//! different encryption contexts never have the same canonical encoding (the AAD).

#![no_main]

use std::collections::BTreeMap;

use arbitrary::Unstructured;
use ekms_enclave::keys::ciphertext::{self, canonical_context, Header};
use ekms_enclave::keys::KeyMaterial;
use ekms_fuzz::SeededEntropy;
use libfuzzer_sys::fuzz_target;
use zeroize::Zeroizing;

fn context(u: &mut Unstructured<'_>) -> BTreeMap<String, String> {
    (0..u.int_in_range(0..=3u8).unwrap_or(0))
        .map(|_| (u.arbitrary().unwrap_or_default(), u.arbitrary().unwrap_or_default()))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let material = KeyMaterial::symmetric(&Zeroizing::new([7u8; 32]));
    let blob: &[u8] = u.arbitrary().unwrap_or_default();
    let ctx = context(&mut u);

    // Raw bytes and their base64.
    let parsed = ciphertext::parse(blob);
    if let Ok(p) = &parsed {
        assert!(p.open(&material, &ctx).is_err(), "a fuzzed blob opened");
    }
    // Round trip.
    let header = Header {
        key_id: uuid::Uuid::from_bytes(u.arbitrary().unwrap_or_default()),
        key_version: u.arbitrary().unwrap_or(0),
    };
    let plaintext: &[u8] = u.arbitrary().unwrap_or_default();
    let entropy = SeededEntropy::new(u.arbitrary().unwrap_or(0));
    let sealed = ciphertext::seal(&material, header, &ctx, plaintext, &entropy).expect("seal");
    let p = ciphertext::parse(&sealed).expect("a sealed blob parses");
    assert_eq!(p.header, header);
    assert_eq!(&p.open(&material, &ctx).expect("opens")[..], plaintext);
    let other = context(&mut u);
    if canonical_context(&other) != canonical_context(&ctx) {
        assert!(p.open(&material, &other).is_err(), "opened with another context");
    }
    assert_eq!(canonical_context(&other) == canonical_context(&ctx), other == ctx);
    let at = u.choose_index(sealed.len()).unwrap_or(0);
    let mut altered = sealed.clone();
    altered[at] ^= u.int_in_range(1..=255u8).unwrap_or(1);
    if let Ok(p) = ciphertext::parse(&altered) {
        assert!(p.open(&material, &ctx).is_err(), "opened with byte {at} changed");
    }
    let short = &sealed[..u.choose_index(sealed.len()).unwrap_or(0)];
    if let Ok(p) = ciphertext::parse(short) {
        assert!(p.open(&material, &ctx).is_err(), "a truncated blob opened");
    }
});
