//! Nitro attestation documents (`ekms_shared::attestation::verify`, `unverified_timestamp`):
//! COSE_Sign1, the CBOR payload, the X.509 chain and the PCR policy, on
//! - fuzzed bytes, against the real AWS Nitro root (shared/tests/fixtures/nitro/root.pem, read
//!   at build time) at the time the document claims, and against a mock CA;
//! - the eleven real NSM documents of shared/tests/fixtures/nitro with bytes changed, at their
//!   own timestamps;
//! - documents the mock attester signs with fuzzed `public_key`, `user_data`, `nonce` and
//!   time, with bytes changed or not;
//! and the PCR parsers of `ekms init --expect-pcrs` (`pcr_set_from_json`, `pcr_from_arg`).
//!
//! Checks: no panic; a document that verifies claims the timestamp it verified with; a
//! document the mock signs verifies under a pinned policy, with exactly the fields it was
//! given; and a changed document that still verifies (real or mock) says exactly what the
//! original said (only unsigned bytes, such as the unprotected header, may change).

#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbitrary::Unstructured;
use ekms_fuzz::{mock_anchor, mock_attester, now};
use ekms_shared::attestation::{
    pcr_from_arg, pcr_set_from_json, unverified_timestamp, verify, Policy, TrustAnchor,
    VerifiedAttestation,
};
use libfuzzer_sys::fuzz_target;

const ROOT_PEM: &str = include_str!("../../shared/tests/fixtures/nitro/root.pem");
const FIXTURES: [&[u8]; 11] = [
    include_bytes!("../../shared/tests/fixtures/nitro/blocky-nitrite-2024-09-07-us-east-1-debug-maxfields.cbor"),
    include_bytes!("../../shared/tests/fixtures/nitro/blocky-nitrite-2024-09-07-us-east-1-nondebug-maxfields.cbor"),
    include_bytes!("../../shared/tests/fixtures/nitro/cape-js-2022-07-14-us-east-2-debug.cbor"),
    include_bytes!("../../shared/tests/fixtures/nitro/cape-js-2022-09-15-us-east-1-nondebug.cbor"),
    include_bytes!("../../shared/tests/fixtures/nitro/eternis-2024-09-09-us-east-1-debug.cbor"),
    include_bytes!("../../shared/tests/fixtures/nitro/evervault-2022-10-12-us-east-1-debug.cbor"),
    include_bytes!("../../shared/tests/fixtures/nitro/evervault-2022-10-13-us-east-1-nondebug.cbor"),
    include_bytes!("../../shared/tests/fixtures/nitro/evervault-2023-09-18-us-east-1-debug.cbor"),
    include_bytes!("../../shared/tests/fixtures/nitro/ic-tee-2024-08-07-ap-south-1-nondebug.cbor"),
    include_bytes!("../../shared/tests/fixtures/nitro/ic-tee-2024-11-05-us-west-1-nondebug.cbor"),
    include_bytes!("../../shared/tests/fixtures/nitro/nitro-attest-2025-01-06-eu-central-1-nondebug.cbor"),
];

fn aws_root() -> &'static TrustAnchor {
    static ROOT: std::sync::OnceLock<TrustAnchor> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        let root = TrustAnchor::from_pem(ROOT_PEM).expect("the AWS root parses");
        assert_eq!(
            root.fingerprint_sha256(),
            TrustAnchor::aws_nitro_root().fingerprint_sha256(),
            "the fixture root is the pinned root"
        );
        root
    })
}

fn any() -> Policy {
    Policy::accept_any_pcrs().allowing_debug()
}

/// Verifies `doc` against `anchor` at the time it claims; checks the claim is consistent.
fn verify_at_claim(doc: &[u8], anchor: &TrustAnchor) -> Option<VerifiedAttestation> {
    let at = unverified_timestamp(doc).ok()?;
    let verified = verify(doc, anchor, at, &any()).ok()?;
    assert_eq!(verified.timestamp(), at, "verified with another timestamp than claimed");
    Some(verified)
}

/// `doc` with up to four bytes changed, cut, or extended.
fn mutate(u: &mut Unstructured<'_>, doc: &[u8]) -> Vec<u8> {
    let mut out = doc.to_vec();
    for _ in 0..u.int_in_range(1..=4u8).unwrap_or(1) {
        if out.is_empty() {
            break;
        }
        match u.int_in_range(0..=5u8).unwrap_or(0) {
            0 => {
                let at = u.int_in_range(0..=out.len()).unwrap_or(0);
                out.truncate(at);
            }
            1 => {
                let more: Vec<u8> = u.arbitrary().unwrap_or_default();
                let at = u.int_in_range(0..=out.len()).unwrap_or(0);
                out.splice(at..at, more);
            }
            _ => {
                let at = u.choose_index(out.len()).unwrap_or(0);
                out[at] ^= u.int_in_range(1..=255u8).unwrap_or(1);
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    match u.int_in_range(0..=3u8).unwrap_or(0) {
        0 => {
            let doc: &[u8] = u.take_rest();
            let _ = verify_at_claim(doc, aws_root());
            let _ = verify_at_claim(doc, &mock_anchor());
            let _ = verify(doc, aws_root(), now(), &any());
            let _ = verify(doc, &mock_anchor(), now(), &any());
        }
        1 => {
            let original = *u.choose(&FIXTURES).unwrap_or(&FIXTURES[0]);
            let expected = verify_at_claim(original, aws_root()).expect("a fixture verifies");
            let doc = mutate(&mut u, original);
            if let Some(got) = verify_at_claim(&doc, aws_root()) {
                assert_eq!(got, expected, "a changed real document verified saying something else");
            }
        }
        2 => {
            let field = |u: &mut Unstructured<'_>| -> Option<Vec<u8>> {
                u.arbitrary::<bool>()
                    .unwrap_or(false)
                    .then(|| {
                        let n = u.int_in_range(0..=1100usize).unwrap_or(0);
                        u.bytes(n.min(u.len())).unwrap_or_default().to_vec()
                    })
            };
            let (public_key, user_data, nonce) = (field(&mut u), field(&mut u), field(&mut u));
            // Within the mock chain's validity (from an hour before `now` for a year).
            let offset_ms: u32 = u.arbitrary().unwrap_or(0);
            let at = now() + Duration::from_millis(offset_ms.into());
            let attester = mock_attester();
            let Ok(doc) = attester.attest_at(at, user_data.as_deref(), nonce.as_deref(), public_key.as_deref()) else {
                assert!(
                    [&public_key, &user_data, &nonce].iter().any(|f| f.as_ref().is_some_and(|f| f.len() > 1024)),
                    "the mock refused fields within bounds"
                );
                return;
            };
            let mut policy = Policy::pinned(attester.pcr_set());
            if let Some(n) = &nonce {
                policy = policy.with_nonce(n.clone());
            }
            let result = verify(&doc, &mock_anchor(), at, &policy);
            let verified = match result {
                Ok(v) => v,
                Err(e) => panic!("a mock document does not verify at its own time: {e}"),
            };
            assert_eq!(verified.public_key(), public_key.as_deref());
            assert_eq!(verified.user_data(), user_data.as_deref());
            assert_eq!(verified.nonce(), nonce.as_deref());
            assert_eq!(verified.timestamp_ms(), at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64));
            // Another root never accepts it.
            assert!(verify(&doc, aws_root(), at, &any()).is_err());
            let changed = mutate(&mut u, &doc);
            if let Ok(got) = verify(&changed, &mock_anchor(), at, &policy) {
                assert_eq!(got, verified, "a changed mock document verified saying something else");
            }
        }
        _ => {
            let text: &str = u.arbitrary().unwrap_or_default();
            let _ = pcr_set_from_json(text);
            let _ = pcr_from_arg(text);
            let secs: i64 = u.arbitrary().unwrap_or(0);
            let at = if secs >= 0 {
                UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))
            } else {
                UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
            };
            let doc = *u.choose(&FIXTURES).unwrap_or(&FIXTURES[0]);
            if let Some(at) = at.filter(|t| *t < SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 40)) {
                let _ = verify(doc, aws_root(), at, &any());
            }
        }
    }
});
