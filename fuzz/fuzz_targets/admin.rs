//! The custody operations answered without SigV4 (`admin::Custody`: `Ekms.GetAttestation`,
//! `Ekms.Initialize`, `Ekms.Unseal`, `Ekms.Status`): their bodies come from anyone who can
//! reach the enclave, before there is any principal.
//!
//! Inputs: fuzzed bodies for each; and structure-aware ones: an `Initialize` with fuzzed
//! custodian keys (real P-384 keys, or bytes), threshold, client key, nonce and admin name,
//! then, when it succeeds, the shares it made submitted to a sealed enclave of that deployment
//! as custodians submit them (re-sealed to the boot key and signed), in a fuzzed order, with
//! repeats, shares of another deployment, bad signatures and altered envelopes mixed in.
//!
//! Checks: no panic; nothing is answered `KMSInternalException`; the domain key is rebuilt
//! exactly when `threshold` distinct genuine shares have been accepted, and it is the one
//! `Initialize` made; a share that is altered, signed by another key, or of another deployment
//! never counts.

#![no_main]

use std::sync::OnceLock;

use arbitrary::Unstructured;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ekms_enclave::custody::admin::{Custody, Phase};
use ekms_enclave::error::KmsError;
use ekms_enclave::durability::persist::Deployment;
use ekms_fuzz::SeededEntropy;
use ekms_shared::custody::{self, ShareFile};
use ekms_shared::envelope::{self, Purpose};
use libfuzzer_sys::fuzz_target;
use p384::ecdsa::signature::Signer as _;
use p384::SecretKey;
use serde_json::{json, Value};

/// Custodian key pairs (fixed, so that inputs replay).
fn custodians() -> &'static [SecretKey] {
    static KEYS: OnceLock<Vec<SecretKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        (1..=5u8)
            .map(|i| SecretKey::from_bytes(&[i; 48].into()).expect("a valid scalar"))
            .collect()
    })
}

fn spki(key: &SecretKey) -> Vec<u8> {
    envelope::public_key_to_spki_der(&key.public_key()).expect("SPKI")
}

fn attester() -> &'static ekms_enclave::custody::attest::insecure::MockAttester {
    static A: OnceLock<ekms_enclave::custody::attest::insecure::MockAttester> = OnceLock::new();
    A.get_or_init(|| {
        let ca = ekms_shared::attestation::insecure::MockCa::generate(std::time::SystemTime::now())
            .expect("CA");
        ekms_enclave::custody::attest::insecure::MockAttester(
            ekms_shared::attestation::insecure::MockAttester::new(
                ca,
                ekms_shared::attestation::insecure::pcrs_from_binary(b"admin fuzz"),
            )
            .expect("attester"),
        )
    })
}

fn no_internal(what: &str, error: Option<&KmsError>, body: &[u8]) {
    if let Some(KmsError::Internal(why)) = error {
        panic!("{what}: KMSInternalException ({why}) for {}", String::from_utf8_lossy(body));
    }
}

/// A custodian's `ekms unseal` submission of `file` to the enclave whose boot key is `boot`.
fn submission(file: &ShareFile, custodian: &SecretKey, signer: &SecretKey, boot: &[u8]) -> Option<Vec<u8>> {
    let plain = custody::open_share_file(file, custodian).ok()?;
    let bytes = plain.to_bytes().ok()?;
    let boot_key = envelope::public_key_from_spki_der(boot).ok()?;
    let sealed = envelope::seal_to(&boot_key, &Purpose::Unseal, boot, &bytes).ok()?;
    let signing = p384::ecdsa::SigningKey::from(signer);
    let signature: p384::ecdsa::Signature =
        signing.sign(&custody::unseal_signed_message(boot, sealed.as_bytes()));
    Some(
        json!({
            "Envelope": B64.encode(sealed.as_bytes()),
            "Signature": B64.encode(signature.to_der().as_bytes()),
        })
        .to_string()
        .into_bytes(),
    )
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let entropy = SeededEntropy::new(u.arbitrary().unwrap_or(0));
    let keys = custodians();
    if !u.ratio(2, 3).unwrap_or(true) {
        // Fuzzed bodies, each operation in the phase where it does something.
        let body: &[u8] = u.arbitrary().unwrap_or_default();
        let uninit = Custody::new(Phase::Uninitialized, None, &entropy).unwrap();
        no_internal("GetAttestation", uninit.attestation(body, attester()).as_ref().err(), body);
        let _ = uninit.status_json();
        let mut uninit = uninit;
        let result = uninit.initialize(body, &entropy, attester());
        no_internal("Initialize", result.as_ref().err(), body);
        let deployment = Deployment {
            v: 1,
            deployment_id: "d".to_owned(),
            threshold: 2,
            total: 3,
            commitment: custody::commitment(&[1; 32]).to_vec(),
            custodians: keys[..3].iter().map(|k| serde_bytes::ByteBuf::from(spki(k))).collect(),
        };
        let mut sealed = Custody::new(Phase::Sealed, Some(deployment), &entropy).unwrap();
        no_internal("Unseal", sealed.unseal(body).as_ref().err(), body);
        return;
    }

    // Initialize, structure-aware.
    let count = u.int_in_range(1..=5usize).unwrap_or(3);
    let mut custodian_ders: Vec<Value> = Vec::new();
    for i in 0..count {
        if !u.ratio(9, 10).unwrap_or(true) {
            let bytes: Vec<u8> = u.arbitrary().unwrap_or_default();
            custodian_ders.push(json!(B64.encode(bytes)));
        } else {
            custodian_ders.push(json!(B64.encode(spki(&keys[i]))));
        }
    }
    let threshold: i64 = if u.ratio(7, 8).unwrap_or(true) {
        u.int_in_range(1..=count as i64).unwrap_or(1)
    } else {
        u.arbitrary().unwrap_or(0)
    };
    let client = SecretKey::from_bytes(&[9; 48].into()).expect("client key");
    let nonce: Vec<u8> = if u.ratio(7, 8).unwrap_or(true) {
        vec![7; 16]
    } else {
        u.arbitrary().unwrap_or_default()
    };
    let mut body = json!({
        "Custodians": custodian_ders,
        "Threshold": threshold,
        "ClientPublicKey": B64.encode(spki(&client)),
        "Nonce": B64.encode(&nonce),
    });
    if !u.ratio(3, 4).unwrap_or(true) {
        body["AdminName"] = json!(u.arbitrary::<String>().unwrap_or_default());
    }
    let body = body.to_string().into_bytes();
    let mut custody = Custody::new(Phase::Uninitialized, None, &entropy).unwrap();
    let result = custody.initialize(&body, &entropy, attester());
    no_internal("Initialize", result.as_ref().err(), &body);
    let Ok(init) = result else {
        return;
    };
    let response: Value = serde_json::from_slice(&init.response).expect("JSON answer");
    let files: Vec<ShareFile> =
        serde_json::from_value(response["Shares"].clone()).expect("share files");
    assert_eq!(files.len(), count);
    let domain_key = *init.domain_key.expose_secret();
    let threshold = usize::from(init.deployment.threshold);

    // Unseal: genuine shares in a fuzzed order, with noise.
    let mut sealed = Custody::new(Phase::Sealed, Some(init.deployment.clone()), &entropy).unwrap();
    let boot = sealed.boot_public_key().to_vec();
    let mut accepted = std::collections::BTreeSet::new();
    for _ in 0..u.int_in_range(0..=8u8).unwrap_or(0) {
        let i = u.choose_index(count).unwrap_or(0);
        let kind = u.int_in_range(0..=5u8).unwrap_or(0);
        let genuine = kind <= 2;
        let body = match kind {
            0..=2 => submission(&files[i], &keys[i], &keys[i], &boot),
            // Signed by another custodian.
            3 => submission(&files[i], &keys[i], &keys[(i + 1) % keys.len()], &boot),
            // Sealed to another boot key.
            4 => {
                let other = Custody::new(Phase::Sealed, None, &entropy).unwrap();
                submission(&files[i], &keys[i], &keys[i], other.boot_public_key())
            }
            // Altered.
            _ => submission(&files[i], &keys[i], &keys[i], &boot).map(|b| {
                let mut v: Value = serde_json::from_slice(&b).expect("json");
                let mut env = B64.decode(v["Envelope"].as_str().unwrap_or_default()).unwrap_or_default();
                if !env.is_empty() {
                    let at = u.choose_index(env.len()).unwrap_or(0);
                    env[at] ^= u.int_in_range(1..=255u8).unwrap_or(1);
                }
                v["Envelope"] = json!(B64.encode(env));
                v.to_string().into_bytes()
            }),
        };
        let Some(body) = body else {
            // The custodian's file did not open (a fuzzed custodian key made no share).
            continue;
        };
        let before = accepted.len();
        let result = sealed.unseal(&body);
        no_internal("Unseal", result.as_ref().err(), &body);
        match result {
            Ok((key, _)) => {
                assert!(genuine, "a bad submission ({kind}) counted");
                assert!(accepted.insert(i), "a repeated share counted");
                match key {
                    Some(key) => {
                        assert_eq!(accepted.len(), threshold, "rebuilt with {} shares", accepted.len());
                        assert_eq!(*key.expose_secret(), domain_key, "rebuilt another key");
                        return;
                    }
                    None => assert!(accepted.len() < threshold),
                }
            }
            Err(_) => {
                assert!(
                    !genuine || accepted.contains(&i),
                    "a genuine first submission of share {} was refused",
                    i + 1
                );
                assert_eq!(accepted.len(), before);
            }
        }
    }
});
