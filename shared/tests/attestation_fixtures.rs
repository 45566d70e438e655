//! The verifier against every real AWS Nitro attestation document in
//! `tests/fixtures/nitro/` (copied from the shared fixtures; provenance, licences and the
//! independently checked facts are in that folder's README.md).
//!
//! Real documents expire within hours, so each is verified at its own timestamp, and also
//! checked to be refused at today's date. Tampered copies must fail at the step that owns
//! the tampered part, with that step's error.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ekms_shared::attestation::insecure::MockCa;
use ekms_shared::attestation::{
    unverified_timestamp, verify, AttestationError, CertPosition, ChainFailure, FreshnessError,
    PcrError, Policy, StructureError, TrustAnchor, MAX_DOCUMENT_LEN,
};
use serde_cbor::Value;

/// Each fixture, its `timestamp` (ms) and whether it is a debug-mode document, as the
/// fixtures README lists them.
const FIXTURES: [(&str, u64, bool); 11] = [
    (
        "cape-js-2022-07-14-us-east-2-debug.cbor",
        1657831567740,
        true,
    ),
    (
        "cape-js-2022-09-15-us-east-1-nondebug.cbor",
        1663263808848,
        false,
    ),
    (
        "evervault-2022-10-12-us-east-1-debug.cbor",
        1665582606081,
        true,
    ),
    (
        "evervault-2022-10-13-us-east-1-nondebug.cbor",
        1665651482136,
        false,
    ),
    (
        "evervault-2023-09-18-us-east-1-debug.cbor",
        1695049410860,
        true,
    ),
    (
        "ic-tee-2024-08-07-ap-south-1-nondebug.cbor",
        1723012992231,
        false,
    ),
    (
        "blocky-nitrite-2024-09-07-us-east-1-nondebug-maxfields.cbor",
        1725719859545,
        false,
    ),
    (
        "blocky-nitrite-2024-09-07-us-east-1-debug-maxfields.cbor",
        1725719886508,
        true,
    ),
    (
        "eternis-2024-09-09-us-east-1-debug.cbor",
        1725911352400,
        true,
    ),
    (
        "ic-tee-2024-11-05-us-west-1-nondebug.cbor",
        1730792863352,
        false,
    ),
    (
        "nitro-attest-2025-01-06-eu-central-1-nondebug.cbor",
        1736179625472,
        false,
    ),
];

/// 2026-11-28T00:00:00Z, "today" for this suite: long after every fixture expired.
const TODAY: u64 = 1_795_824_000;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nitro")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir().join(name)).unwrap()
}

fn at_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn lenient(debug: bool) -> Policy {
    Policy {
        allow_debug: debug,
        ..Policy::accept_any_pcrs()
    }
}

fn aws() -> TrustAnchor {
    TrustAnchor::aws_nitro_root()
}

/// The chain failure inside an error, or a panic naming what came instead.
fn chain_failure(error: &AttestationError) -> (&CertPosition, &ChainFailure) {
    match error {
        AttestationError::Chain(e) => (&e.position, &e.reason),
        other => panic!("expected a chain error, got {other:?}"),
    }
}

/// Flips the last byte of the first occurrence of `needle` at or after `from`.
fn flip_in(doc: &mut [u8], needle: &[u8], from: usize) {
    let at = doc[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
        + from
        + needle.len()
        - 1;
    doc[at] ^= 0x01;
}

/// Decodes the envelope and payload, lets `edit` change the payload map, re-encodes both
/// with the original signature.
fn rewrite_payload(doc: &[u8], edit: impl FnOnce(&mut BTreeMap<Value, Value>)) -> Vec<u8> {
    let Value::Array(mut envelope) = serde_cbor::from_slice(doc).unwrap() else {
        panic!("not an array")
    };
    let Value::Bytes(payload) = &envelope[2] else {
        panic!("payload not bytes")
    };
    let Value::Map(mut map) = serde_cbor::from_slice(payload).unwrap() else {
        panic!("payload not a map")
    };
    edit(&mut map);
    envelope[2] = Value::Bytes(serde_cbor::to_vec(&Value::Map(map)).unwrap());
    serde_cbor::to_vec(&Value::Array(envelope)).unwrap()
}

fn field(name: &str) -> Value {
    Value::Text(name.to_owned())
}

#[test]
fn every_fixture_is_listed() {
    let mut on_disk: Vec<String> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".cbor"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = FIXTURES.iter().map(|(n, _, _)| (*n).to_owned()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

#[test]
fn fixture_root_is_the_embedded_root() {
    let pem = std::fs::read_to_string(fixture_dir().join("root.pem")).unwrap();
    assert_eq!(TrustAnchor::from_pem(&pem).unwrap(), aws());
}

#[test]
fn every_fixture_verifies_at_its_own_time() {
    for (name, timestamp, debug) in FIXTURES {
        let doc = read(name);
        assert_eq!(
            unverified_timestamp(&doc).unwrap(),
            at_ms(timestamp),
            "{name}"
        );
        let verified = verify(&doc, &aws(), at_ms(timestamp), &lenient(debug))
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(verified.timestamp_ms(), timestamp, "{name}");
        assert_eq!(verified.digest(), "SHA384");
        assert!(verified.module_id().starts_with("i-"), "{name}");
        assert_eq!(verified.pcrs().len(), 16, "{name}");
        assert_eq!(verified.is_debug(), debug, "{name}");

        // Pinned to its own PCR0..2, with its own nonce, fresh within a minute.
        let own: BTreeMap<u8, Vec<u8>> = (0..3).map(|i| (i, verified.pcrs()[&i].clone())).collect();
        let mut strict = Policy::pinned(own).with_max_age(Duration::from_secs(60));
        strict.allow_debug = debug;
        strict.expected_nonce = verified.nonce().map(<[u8]>::to_vec);
        verify(&doc, &aws(), at_ms(timestamp), &strict)
            .unwrap_or_else(|e| panic!("{name} strict: {e:?}"));
    }
}

#[test]
fn every_fixture_is_refused_today_as_expired() {
    for (name, _, debug) in FIXTURES {
        let now = UNIX_EPOCH + Duration::from_secs(TODAY);
        let error = verify(&read(name), &aws(), now, &lenient(debug)).unwrap_err();
        let (position, reason) = chain_failure(&error);
        // The regional CA, cabundle[1], is the first certificate below the root, and expired.
        assert_eq!(*position, CertPosition::CaBundle(1), "{name}");
        assert!(
            matches!(reason, ChainFailure::Expired { .. }),
            "{name}: {reason:?}"
        );
    }
}

#[test]
fn every_fixture_is_refused_outside_its_leaf_window() {
    for (name, timestamp, debug) in FIXTURES {
        let doc = read(name);
        // The leaf lives 3 h 0 min 3 s from at most 26 min before the timestamp.
        let late = at_ms(timestamp) + Duration::from_secs(4 * 3600);
        let error = verify(&doc, &aws(), late, &lenient(debug)).unwrap_err();
        assert!(
            matches!(chain_failure(&error).1, ChainFailure::Expired { .. }),
            "{name}"
        );
        let early = at_ms(timestamp) - Duration::from_secs(3600);
        let error = verify(&doc, &aws(), early, &lenient(debug)).unwrap_err();
        assert!(
            matches!(chain_failure(&error).1, ChainFailure::NotYetValid { .. }),
            "{name}"
        );
    }
}

#[test]
fn debug_documents_need_allow_debug() {
    for (name, timestamp, debug) in FIXTURES {
        let result = verify(&read(name), &aws(), at_ms(timestamp), &lenient(false));
        if debug {
            assert!(matches!(result, Err(AttestationError::DebugMode)), "{name}");
        } else {
            result.unwrap();
        }
    }
}

#[test]
fn tag_18_is_accepted() {
    for (name, timestamp, debug) in FIXTURES {
        let mut doc = vec![0xd2];
        doc.extend(read(name));
        verify(&doc, &aws(), at_ms(timestamp), &lenient(debug)).unwrap();
    }
}

#[test]
fn tampered_payload_byte_fails_the_signature() {
    for (name, timestamp, debug) in FIXTURES {
        let mut doc = read(name);
        let verified = verify(&doc, &aws(), at_ms(timestamp), &lenient(debug)).unwrap();
        // The first occurrence of module_id is the payload field (the leaf's CN comes later).
        flip_in(&mut doc, verified.module_id().as_bytes(), 0);
        let error = verify(&doc, &aws(), at_ms(timestamp), &lenient(debug)).unwrap_err();
        assert!(
            matches!(error, AttestationError::Signature),
            "{name}: {error:?}"
        );
    }
}

#[test]
fn tampered_signature_byte_fails_the_signature() {
    for (name, timestamp, debug) in FIXTURES {
        let mut doc = read(name);
        // The signature is the last element: its last byte is the document's last byte.
        *doc.last_mut().unwrap() ^= 0x01;
        let error = verify(&doc, &aws(), at_ms(timestamp), &lenient(debug)).unwrap_err();
        assert!(
            matches!(error, AttestationError::Signature),
            "{name}: {error:?}"
        );
    }
}

#[test]
fn tampered_certificate_byte_fails_the_chain() {
    for (name, timestamp, debug) in FIXTURES {
        let mut doc = read(name);
        let verified = verify(&doc, &aws(), at_ms(timestamp), &lenient(debug)).unwrap();
        let module_id = verified.module_id().as_bytes().to_vec();
        // Second occurrence of module_id: inside the leaf certificate's subject CN.
        let first = doc
            .windows(module_id.len())
            .position(|w| w == module_id.as_slice())
            .unwrap();
        flip_in(&mut doc, &module_id, first + module_id.len());
        let error = verify(&doc, &aws(), at_ms(timestamp), &lenient(debug)).unwrap_err();
        let (position, reason) = chain_failure(&error);
        assert_eq!(*position, CertPosition::Leaf, "{name}");
        assert!(
            matches!(reason, ChainFailure::BadSignature),
            "{name}: {reason:?}"
        );
    }
}

#[test]
fn tampered_intermediate_fails_the_chain_at_that_certificate() {
    let (name, timestamp, debug) = FIXTURES[10];
    let doc = rewrite_payload(&read(name), |map| {
        let Some(Value::Array(bundle)) = map.get_mut(&field("cabundle")) else {
            panic!("cabundle")
        };
        let Value::Bytes(zonal) = &mut bundle[2] else {
            panic!("cabundle[2]")
        };
        // Its subject CN, `<16 hex>.zonal.<region>.aws.nitro-enclaves`.
        let at = zonal.windows(5).position(|w| w == b"zonal").unwrap();
        zonal[at] ^= 0x01;
    });
    let error = verify(&doc, &aws(), at_ms(timestamp), &lenient(debug)).unwrap_err();
    let (position, _) = chain_failure(&error);
    assert!(
        matches!(
            position,
            CertPosition::CaBundle(2) | CertPosition::CaBundle(3)
        ),
        "{error:?}"
    );
}

#[test]
fn reversed_cabundle_fails_the_chain() {
    for (name, timestamp, debug) in FIXTURES {
        let doc = rewrite_payload(&read(name), |map| {
            let Some(Value::Array(bundle)) = map.get_mut(&field("cabundle")) else {
                panic!("cabundle")
            };
            bundle.reverse();
        });
        let error = verify(&doc, &aws(), at_ms(timestamp), &lenient(debug)).unwrap_err();
        let (position, reason) = chain_failure(&error);
        assert_eq!(*position, CertPosition::CaBundle(0), "{name}");
        assert!(
            matches!(reason, ChainFailure::WrongRoot),
            "{name}: {reason:?}"
        );
    }
}

#[test]
fn another_root_fails_the_chain() {
    let mock_root = MockCa::generate(SystemTime::now())
        .unwrap()
        .insecure_trust_anchor()
        .unwrap();
    for (name, timestamp, debug) in FIXTURES {
        let error = verify(&read(name), &mock_root, at_ms(timestamp), &lenient(debug)).unwrap_err();
        let (position, reason) = chain_failure(&error);
        assert_eq!(*position, CertPosition::CaBundle(0), "{name}");
        assert!(
            matches!(reason, ChainFailure::WrongRoot),
            "{name}: {reason:?}"
        );
    }
}

#[test]
fn a_wrong_pcr_in_the_policy_fails_the_pcr_check() {
    for (name, timestamp, debug) in FIXTURES {
        let doc = read(name);
        let verified = verify(&doc, &aws(), at_ms(timestamp), &lenient(debug)).unwrap();
        let mut pcrs: BTreeMap<u8, Vec<u8>> =
            (0..5).map(|i| (i, verified.pcrs()[&i].clone())).collect();
        pcrs.get_mut(&4).unwrap()[0] ^= 0x01;
        let mut policy = Policy::pinned(pcrs);
        policy.allow_debug = debug;
        let error = verify(&doc, &aws(), at_ms(timestamp), &policy).unwrap_err();
        assert!(
            matches!(error, AttestationError::Pcrs(PcrError::NoMatch { ref mismatches }) if mismatches == &[4]),
            "{name}: {error:?}"
        );
    }
}

#[test]
fn a_different_nonce_fails_the_nonce_check() {
    for (name, timestamp, debug) in FIXTURES {
        let policy = lenient(debug).with_nonce(b"another nonce".to_vec());
        let error = verify(&read(name), &aws(), at_ms(timestamp), &policy).unwrap_err();
        assert!(
            matches!(error, AttestationError::Nonce),
            "{name}: {error:?}"
        );
    }
}

#[test]
fn an_old_document_fails_the_freshness_check() {
    let (name, timestamp, debug) = FIXTURES[6];
    let policy = lenient(debug).with_max_age(Duration::from_secs(60));
    let later = at_ms(timestamp) + Duration::from_secs(61);
    let error = verify(&read(name), &aws(), later, &policy).unwrap_err();
    assert!(
        matches!(
            error,
            AttestationError::Freshness(FreshnessError::Stale { .. })
        ),
        "{error:?}"
    );
}

#[test]
fn structure_errors() {
    let (name, timestamp, debug) = FIXTURES[0];
    let doc = read(name);
    let at = at_ms(timestamp);

    let too_large = vec![0u8; MAX_DOCUMENT_LEN + 1];
    assert!(matches!(
        verify(&too_large, &aws(), at, &lenient(debug)),
        Err(AttestationError::TooLarge { .. })
    ));
    assert!(matches!(
        verify(&doc[..doc.len() - 1], &aws(), at, &lenient(debug)),
        Err(AttestationError::Structure(StructureError::Cbor(_)))
    ));
    let mut trailing = doc.clone();
    trailing.push(0);
    assert!(matches!(
        verify(&trailing, &aws(), at, &lenient(debug)),
        Err(AttestationError::Structure(StructureError::Cbor(_)))
    ));
    let sha256_digest = rewrite_payload(&doc, |map| {
        map.insert(field("digest"), field("SHA256"));
    });
    assert!(matches!(
        verify(&sha256_digest, &aws(), at, &lenient(debug)),
        Err(AttestationError::Structure(StructureError::Digest(_)))
    ));
    // Every prefix is refused without a panic.
    for len in 0..doc.len() {
        assert!(verify(&doc[..len], &aws(), at, &lenient(debug)).is_err());
    }
}
