//! HMAC keys and key rotation, driven through `dispatch::handle` with JSON bodies on a fixed
//! clock. Automatic rotation is driven as the server's 10 s tick drives it: the clock moves,
//! then [`crate::keys::rotation::rotate_due`] runs over the store.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::kms::state::{Caller, State};
use crate::config::Config;
use crate::env::{Env, FixedClock};
use crate::error::KmsError;
use crate::keys::mac::{self, MacAlgorithm};
use crate::kms::state::Touched;

const T0: i64 = 1_700_000_000_000;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

struct Core {
    state: State,
    config: Config,
    clock: Arc<FixedClock>,
    env: Env,
    caller: Caller,
}

impl Core {
    fn new() -> Self {
        let clock = Arc::new(FixedClock::new(T0));
        let env = crate::kms::ops::test_support::env(clock.clone());
        Core {
            state: State::default(),
            config: Config::default(),
            clock,
            env,
            caller: crate::kms::ops::test_support::dev_caller(),
        }
    }

    /// Runs one operation; returns its answer and the records it touched.
    fn call_touched(&self, op: &str, body: Value) -> (Result<Value, KmsError>, Vec<Touched>) {
        crate::kms::ops::test_support::run(
            &self.state,
            &self.config,
            &self.env,
            &self.caller,
            op,
            &body,
        )
    }

    fn call(&self, op: &str, body: Value) -> Result<Value, KmsError> {
        self.call_touched(op, body).0
    }

    fn create(&self, body: Value) -> String {
        let out = self.call("CreateKey", body).unwrap();
        out["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()
    }

    fn encrypt(&self, key_id: &str, plaintext: &[u8]) -> Vec<u8> {
        let out = self
            .call(
                "Encrypt",
                json!({"KeyId": key_id, "Plaintext": B64.encode(plaintext)}),
            )
            .unwrap();
        B64.decode(out["CiphertextBlob"].as_str().unwrap()).unwrap()
    }

    fn decrypt(&self, blob: &[u8]) -> Vec<u8> {
        let out = self
            .call("Decrypt", json!({"CiphertextBlob": B64.encode(blob)}))
            .unwrap();
        B64.decode(out["Plaintext"].as_str().unwrap()).unwrap()
    }

    /// What the server's periodic tick does, minus the persisting.
    fn tick(&self) -> Vec<Uuid> {
        crate::keys::rotation::rotate_due(
            &mut self.state.write(),
            self.env.now(),
            self.env.entropy.as_ref(),
        )
    }
}

fn code(result: Result<Value, KmsError>) -> &'static str {
    match result {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => e.aws_code(),
    }
}

fn version_of(blob: &[u8]) -> u32 {
    crate::keys::ciphertext::parse(blob).unwrap().header.key_version
}

const HMAC_SPECS: &[(&str, &str, usize)] = &[
    ("HMAC_224", "HMAC_SHA_224", 28),
    ("HMAC_256", "HMAC_SHA_256", 32),
    ("HMAC_384", "HMAC_SHA_384", 48),
    ("HMAC_512", "HMAC_SHA_512", 64),
];

fn hmac_key(core: &Core, spec: &str) -> String {
    core.create(json!({"KeySpec": spec, "KeyUsage": "GENERATE_VERIFY_MAC"}))
}

#[test]
fn mac_round_trips_for_every_hmac_spec_and_matches_the_crypto_helper() {
    let core = Core::new();
    for &(spec, algorithm, len) in HMAC_SPECS {
        let out = core
            .call(
                "CreateKey",
                json!({"KeySpec": spec, "KeyUsage": "GENERATE_VERIFY_MAC"}),
            )
            .unwrap();
        let meta = &out["KeyMetadata"];
        assert_eq!(meta["KeySpec"], spec);
        assert_eq!(meta["KeyUsage"], "GENERATE_VERIFY_MAC");
        assert_eq!(meta["MacAlgorithms"], json!([algorithm]));
        assert!(meta.get("EncryptionAlgorithms").is_none());
        let id = meta["KeyId"].as_str().unwrap().to_owned();

        let message = B64.encode(b"header.payload");
        let out = core
            .call(
                "GenerateMac",
                json!({"KeyId": id, "Message": message, "MacAlgorithm": algorithm}),
            )
            .unwrap();
        assert_eq!(out["MacAlgorithm"], algorithm);
        assert_eq!(out["KeyId"], core.config.key_arn(&id.parse().unwrap()));
        let tag = B64.decode(out["Mac"].as_str().unwrap()).unwrap();
        assert_eq!(tag.len(), len, "{spec}");

        // The service computes RFC 2104 HMAC with the key's material (whose length is AWS's).
        {
            let store = core.state.read();
            let key = store.raw(&id.parse().unwrap()).unwrap();
            let material = key.versions[0].material.as_ref().unwrap();
            assert_eq!(material.expose_secret().len(), len, "{spec}");
            let expected = mac::compute(
                MacAlgorithm::parse(algorithm).unwrap(),
                material,
                b"header.payload",
            )
            .unwrap();
            assert_eq!(tag, expected);
        }

        let out = core
            .call(
                "VerifyMac",
                json!({"KeyId": id, "Message": message, "MacAlgorithm": algorithm,
                       "Mac": B64.encode(&tag)}),
            )
            .unwrap();
        assert_eq!(out["MacValid"], true);
        assert_eq!(out["MacAlgorithm"], algorithm);

        let mut bad = tag.clone();
        bad[len - 1] ^= 1;
        for (msg, mac) in [
            (message.clone(), B64.encode(&bad)),
            (message.clone(), B64.encode(&tag[..len - 1])),
            (B64.encode(b"header.payloaD"), B64.encode(&tag)),
        ] {
            assert_eq!(
                code(core.call(
                    "VerifyMac",
                    json!({"KeyId": id, "Message": msg, "MacAlgorithm": algorithm, "Mac": mac}),
                )),
                "KMSInvalidMacException"
            );
        }
    }
}

#[test]
fn a_mac_does_not_verify_under_another_key_of_the_same_spec() {
    let core = Core::new();
    let a = hmac_key(&core, "HMAC_256");
    let b = hmac_key(&core, "HMAC_256");
    let message = B64.encode(b"m");
    let out = core
        .call(
            "GenerateMac",
            json!({"KeyId": a, "Message": message, "MacAlgorithm": "HMAC_SHA_256"}),
        )
        .unwrap();
    assert_eq!(
        code(core.call(
            "VerifyMac",
            json!({"KeyId": b, "Message": message, "MacAlgorithm": "HMAC_SHA_256",
                   "Mac": out["Mac"]}),
        )),
        "KMSInvalidMacException"
    );
}

#[test]
fn mac_algorithm_must_match_the_key_spec() {
    let core = Core::new();
    let id = hmac_key(&core, "HMAC_384");
    let message = B64.encode(b"m");
    assert_eq!(
        code(core.call(
            "GenerateMac",
            json!({"KeyId": id, "Message": message, "MacAlgorithm": "HMAC_SHA_256"}),
        )),
        "InvalidKeyUsageException"
    );
    assert_eq!(
        code(core.call(
            "VerifyMac",
            json!({"KeyId": id, "Message": message, "MacAlgorithm": "HMAC_SHA_512",
                   "Mac": B64.encode([0u8; 64])}),
        )),
        "InvalidKeyUsageException"
    );
    assert_eq!(
        code(core.call(
            "GenerateMac",
            json!({"KeyId": id, "Message": message, "MacAlgorithm": "HMAC_MD5"}),
        )),
        "ValidationException"
    );
}

#[test]
fn keys_used_for_the_wrong_purpose_answer_invalid_key_usage() {
    let core = Core::new();
    let symmetric = core.create(json!({}));
    let hmac = hmac_key(&core, "HMAC_256");
    assert_eq!(
        code(core.call(
            "GenerateMac",
            json!({"KeyId": symmetric, "Message": B64.encode(b"m"), "MacAlgorithm": "HMAC_SHA_256"}),
        )),
        "InvalidKeyUsageException"
    );
    assert_eq!(
        code(core.call(
            "VerifyMac",
            json!({"KeyId": symmetric, "Message": B64.encode(b"m"),
                   "MacAlgorithm": "HMAC_SHA_256", "Mac": B64.encode([0u8; 32])}),
        )),
        "InvalidKeyUsageException"
    );
    for (op, body) in [
        (
            "Encrypt",
            json!({"KeyId": hmac, "Plaintext": B64.encode(b"x")}),
        ),
        (
            "GenerateDataKey",
            json!({"KeyId": hmac, "KeySpec": "AES_256"}),
        ),
    ] {
        assert_eq!(
            code(core.call(op, body)),
            "InvalidKeyUsageException",
            "{op}"
        );
    }
}

#[test]
fn create_key_requires_the_mac_usage_for_hmac_specs() {
    let core = Core::new();
    for (body, expected) in [
        (json!({"KeySpec": "HMAC_256"}), "ValidationException"),
        (
            json!({"KeySpec": "HMAC_256", "KeyUsage": "ENCRYPT_DECRYPT"}),
            "ValidationException",
        ),
        (
            json!({"KeyUsage": "GENERATE_VERIFY_MAC"}),
            "ValidationException",
        ),
        (
            json!({"KeySpec": "SYMMETRIC_DEFAULT", "KeyUsage": "GENERATE_VERIFY_MAC"}),
            "ValidationException",
        ),
        (
            json!({"KeySpec": "HMAC_1024", "KeyUsage": "GENERATE_VERIFY_MAC"}),
            "ValidationException",
        ),
    ] {
        assert_eq!(
            code(core.call("CreateKey", body.clone())),
            expected,
            "{body}"
        );
    }
    // The deprecated field works too.
    let out = core
        .call(
            "CreateKey",
            json!({"CustomerMasterKeySpec": "HMAC_512", "KeyUsage": "GENERATE_VERIFY_MAC"}),
        )
        .unwrap();
    assert_eq!(out["KeyMetadata"]["KeySpec"], "HMAC_512");
}

#[test]
fn mac_message_and_tag_bounds() {
    let core = Core::new();
    let id = hmac_key(&core, "HMAC_256");
    let gen = |message: Vec<u8>| {
        core.call(
            "GenerateMac",
            json!({"KeyId": id, "Message": B64.encode(message), "MacAlgorithm": "HMAC_SHA_256"}),
        )
    };
    assert!(gen(vec![1; 4096]).is_ok());
    assert_eq!(code(gen(vec![1; 4097])), "ValidationException");
    assert_eq!(code(gen(Vec::new())), "ValidationException");
    assert_eq!(
        code(core.call(
            "GenerateMac",
            json!({"KeyId": id, "Message": B64.encode(b"m")}),
        )),
        "ValidationException"
    );
    assert_eq!(
        code(core.call(
            "VerifyMac",
            json!({"KeyId": id, "Message": B64.encode(b"m"), "MacAlgorithm": "HMAC_SHA_256"}),
        )),
        "ValidationException"
    );
    assert_eq!(
        code(core.call(
            "VerifyMac",
            json!({"KeyId": id, "Message": B64.encode(b"m"), "MacAlgorithm": "HMAC_SHA_256",
                   "Mac": B64.encode(vec![0u8; 6145])}),
        )),
        "ValidationException"
    );
    // DryRun answers after every check, without computing.
    assert_eq!(
        code(core.call(
            "GenerateMac",
            json!({"KeyId": id, "Message": B64.encode(b"m"), "MacAlgorithm": "HMAC_SHA_256",
                   "DryRun": true}),
        )),
        "DryRunOperationException"
    );
}

#[test]
fn disabled_and_pending_deletion_hmac_keys_refuse_macs() {
    let core = Core::new();
    let id = hmac_key(&core, "HMAC_256");
    let body = json!({"KeyId": id, "Message": B64.encode(b"m"), "MacAlgorithm": "HMAC_SHA_256"});
    core.call("DisableKey", json!({"KeyId": id})).unwrap();
    assert_eq!(
        code(core.call("GenerateMac", body.clone())),
        "DisabledException"
    );
    core.call(
        "ScheduleKeyDeletion",
        json!({"KeyId": id, "PendingWindowInDays": 7}),
    )
    .unwrap();
    assert_eq!(
        code(core.call("GenerateMac", body)),
        "KMSInvalidStateException"
    );
}

#[test]
fn ciphertexts_made_before_two_rotations_decrypt_after_them() {
    let core = Core::new();
    let id = core.create(json!({}));
    let c0 = core.encrypt(&id, b"before any rotation");
    assert_eq!(version_of(&c0), 0);

    let (result, touched) = core.call_touched(
        "EnableKeyRotation",
        json!({"KeyId": id, "RotationPeriodInDays": 90}),
    );
    result.unwrap();
    assert_eq!(touched, vec![Touched::Key(id.parse().unwrap())]);
    let status = core
        .call("GetKeyRotationStatus", json!({"KeyId": id}))
        .unwrap();
    assert_eq!(status["KeyRotationEnabled"], true);
    assert_eq!(status["RotationPeriodInDays"], 90);
    assert_eq!(
        status["NextRotationDate"].as_f64().unwrap(),
        (T0 + 90 * DAY_MS) as f64 / 1000.0
    );
    assert!(status.get("OnDemandRotationStartDate").is_none());

    // Rotation 1: automatic, on the enclave clock. Not a millisecond early.
    core.clock.advance(90 * DAY_MS - 1);
    assert!(core.tick().is_empty());
    core.clock.advance(1);
    assert_eq!(core.tick(), vec![id.parse::<Uuid>().unwrap()]);
    assert!(core.tick().is_empty(), "rotates once per period");
    let c1 = core.encrypt(&id, b"after the automatic rotation");
    assert_eq!(version_of(&c1), 1);

    // Rotation 2: on demand, a day later. The automatic schedule does not move.
    core.clock.advance(DAY_MS);
    let (result, touched) = core.call_touched("RotateKeyOnDemand", json!({"KeyId": id}));
    // AWS answers the key's ARN.
    assert_eq!(
        result.unwrap()["KeyId"],
        core.config.key_arn(&id.parse().unwrap())
    );
    assert_eq!(touched, vec![Touched::Key(id.parse().unwrap())]);
    let c2 = core.encrypt(&id, b"after the on-demand rotation");
    assert_eq!(version_of(&c2), 2);
    let status = core
        .call("GetKeyRotationStatus", json!({"KeyId": id}))
        .unwrap();
    assert_eq!(
        status["NextRotationDate"].as_f64().unwrap(),
        (T0 + 180 * DAY_MS) as f64 / 1000.0
    );

    assert_eq!(core.decrypt(&c0), b"before any rotation");
    assert_eq!(core.decrypt(&c1), b"after the automatic rotation");
    assert_eq!(core.decrypt(&c2), b"after the on-demand rotation");
    // ReEncrypt moves an old ciphertext to the newest version.
    let out = core
        .call(
            "ReEncrypt",
            json!({"CiphertextBlob": B64.encode(&c0), "DestinationKeyId": id}),
        )
        .unwrap();
    let moved = B64.decode(out["CiphertextBlob"].as_str().unwrap()).unwrap();
    assert_eq!(version_of(&moved), 2);
    assert_eq!(core.decrypt(&moved), b"before any rotation");

    let list = core.call("ListKeyRotations", json!({"KeyId": id})).unwrap();
    assert_eq!(list["Truncated"], false);
    let versions = {
        let store = core.state.read();
        let key = store.raw(&id.parse().unwrap()).unwrap();
        key.versions.iter().map(|v| v.id.to_hex()).collect::<Vec<_>>()
    };
    assert_eq!(
        list["Rotations"],
        json!([
            {"KeyId": id, "KeyMaterialId": versions[1], "KeyMaterialState": "NON_CURRENT",
             "RotationDate": (T0 + 90 * DAY_MS) as f64 / 1000.0, "RotationType": "AUTOMATIC"},
            {"KeyId": id, "KeyMaterialId": versions[2], "KeyMaterialState": "CURRENT",
             "RotationDate": (T0 + 91 * DAY_MS) as f64 / 1000.0, "RotationType": "ON_DEMAND"},
        ])
    );
}

#[test]
fn the_versions_a_rotation_adds_are_sealed_with_the_key() {
    // Rotation changes only `versions` and `rotation`; both must survive the sealed record.
    let core = Core::new();
    let id = core.create(json!({}));
    core.call("EnableKeyRotation", json!({"KeyId": id}))
        .unwrap();
    core.call("RotateKeyOnDemand", json!({"KeyId": id}))
        .unwrap();
    let store = core.state.read();
    let key = store.raw(&id.parse().unwrap()).unwrap();
    let back =
        crate::durability::seal::codec::decode_key(&crate::durability::seal::codec::encode_key(key).unwrap()).unwrap();
    assert_eq!(back.versions.len(), 2);
    assert_eq!(back.rotation, key.rotation);
    assert_eq!(
        back.rotation.unwrap().next,
        T0 + 365 * DAY_MS,
        "the default period is 365 days"
    );
    let mut loaded = crate::keys::KeyStore::default();
    loaded.insert(back, &core.config).unwrap();
    assert!(loaded.due_rotations(T0 + 365 * DAY_MS - 1).is_empty());
    assert_eq!(
        loaded.due_rotations(T0 + 365 * DAY_MS),
        vec![id.parse::<Uuid>().unwrap()],
        "a key loaded from the store is back in the due-rotation index"
    );
}

#[test]
fn rotation_period_bounds() {
    let core = Core::new();
    let id = core.create(json!({}));
    for days in [89, 2561, 0, -1] {
        assert_eq!(
            code(core.call(
                "EnableKeyRotation",
                json!({"KeyId": id, "RotationPeriodInDays": days}),
            )),
            "ValidationException",
            "{days}"
        );
    }
    for days in [90, 2560] {
        core.call(
            "EnableKeyRotation",
            json!({"KeyId": id, "RotationPeriodInDays": days}),
        )
        .unwrap();
        let status = core
            .call("GetKeyRotationStatus", json!({"KeyId": id}))
            .unwrap();
        assert_eq!(status["RotationPeriodInDays"], days);
    }
    core.call("DisableKeyRotation", json!({"KeyId": id}))
        .unwrap();
    let status = core
        .call("GetKeyRotationStatus", json!({"KeyId": id}))
        .unwrap();
    assert_eq!(status["KeyRotationEnabled"], false);
    assert!(status.get("RotationPeriodInDays").is_none());
    assert!(status.get("NextRotationDate").is_none());
    // Disabled rotation: the tick never rotates it.
    core.clock.advance(3000 * DAY_MS);
    assert!(core.tick().is_empty());
}

#[test]
fn on_demand_rotation_is_limited_to_twenty_five_per_key() {
    let core = Core::new();
    let id = core.create(json!({}));
    for _ in 0..25 {
        core.call("RotateKeyOnDemand", json!({"KeyId": id}))
            .unwrap();
    }
    assert_eq!(
        code(core.call("RotateKeyOnDemand", json!({"KeyId": id}))),
        "LimitExceededException"
    );
    // Automatic rotations do not count against it, and still happen.
    core.call(
        "EnableKeyRotation",
        json!({"KeyId": id, "RotationPeriodInDays": 90}),
    )
    .unwrap();
    core.clock.advance(90 * DAY_MS);
    assert_eq!(core.tick().len(), 1);
    let blob = core.encrypt(&id, b"x");
    assert_eq!(version_of(&blob), 26);
}

#[test]
fn only_symmetric_encryption_keys_rotate() {
    let core = Core::new();
    let hmac = hmac_key(&core, "HMAC_256");
    for op in [
        "EnableKeyRotation",
        "DisableKeyRotation",
        "GetKeyRotationStatus",
        "RotateKeyOnDemand",
        "ListKeyRotations",
    ] {
        assert_eq!(
            code(core.call(op, json!({"KeyId": hmac}))),
            "UnsupportedOperationException",
            "{op}"
        );
    }
    assert_eq!(
        code(core.call("EnableKeyRotation", json!({}))),
        "ValidationException"
    );
    assert_eq!(
        code(core.call("RotateKeyOnDemand", json!({"KeyId": "alias/none-such"}))),
        "NotFoundException"
    );
    // AWS checks the state before the type: a disabled HMAC key is DisabledException.
    core.call("DisableKey", json!({"KeyId": hmac})).unwrap();
    assert_eq!(
        code(core.call("RotateKeyOnDemand", json!({"KeyId": hmac}))),
        "DisabledException"
    );
}

#[test]
fn rotation_follows_the_key_state_rules() {
    let core = Core::new();
    let id = core.create(json!({}));
    core.call(
        "EnableKeyRotation",
        json!({"KeyId": id, "RotationPeriodInDays": 90}),
    )
    .unwrap();

    // Disabled: the setting cannot change and is still reported; no rotation happens.
    core.call("DisableKey", json!({"KeyId": id})).unwrap();
    for op in [
        "EnableKeyRotation",
        "DisableKeyRotation",
        "RotateKeyOnDemand",
    ] {
        assert_eq!(
            code(core.call(op, json!({"KeyId": id}))),
            "DisabledException",
            "{op}"
        );
    }
    let status = core
        .call("GetKeyRotationStatus", json!({"KeyId": id}))
        .unwrap();
    assert_eq!(status["KeyRotationEnabled"], true);
    core.clock.advance(100 * DAY_MS);
    assert!(core.tick().is_empty());
    // Enabled again past its date: it rotates at the next tick.
    core.call("EnableKey", json!({"KeyId": id})).unwrap();
    assert_eq!(core.tick().len(), 1);
    assert_eq!(version_of(&core.encrypt(&id, b"x")), 1);

    // Pending deletion: reported as not rotating, cannot change, never rotates.
    core.call(
        "ScheduleKeyDeletion",
        json!({"KeyId": id, "PendingWindowInDays": 30}),
    )
    .unwrap();
    let status = core
        .call("GetKeyRotationStatus", json!({"KeyId": id}))
        .unwrap();
    assert_eq!(status["KeyRotationEnabled"], false);
    for op in [
        "EnableKeyRotation",
        "DisableKeyRotation",
        "RotateKeyOnDemand",
    ] {
        assert_eq!(
            code(core.call(op, json!({"KeyId": id}))),
            "KMSInvalidStateException",
            "{op}"
        );
    }
    core.clock.advance(29 * DAY_MS);
    assert!(core.tick().is_empty());
    // Cancelled: the setting comes back (the key is Disabled, as AWS leaves it).
    core.call("CancelKeyDeletion", json!({"KeyId": id}))
        .unwrap();
    let status = core
        .call("GetKeyRotationStatus", json!({"KeyId": id}))
        .unwrap();
    assert_eq!(status["KeyRotationEnabled"], true);
    assert_eq!(status["RotationPeriodInDays"], 90);
}

#[test]
fn a_destroyed_key_leaves_the_due_rotation_index() {
    let core = Core::new();
    let id = core.create(json!({}));
    core.call(
        "EnableKeyRotation",
        json!({"KeyId": id, "RotationPeriodInDays": 90}),
    )
    .unwrap();
    core.call(
        "ScheduleKeyDeletion",
        json!({"KeyId": id, "PendingWindowInDays": 7}),
    )
    .unwrap();
    core.clock.advance(7 * DAY_MS);
    let (destroyed, _, _) = core.state.write().sweep(core.env.now());
    assert_eq!(destroyed.len(), 1);
    assert!(core
        .state
        .write()
        .due_rotations(T0 + 1000 * DAY_MS)
        .is_empty());
}

#[test]
fn list_key_rotations_pages_with_an_opaque_marker() {
    let core = Core::new();
    let id = core.create(json!({}));
    let empty = core.call("ListKeyRotations", json!({"KeyId": id})).unwrap();
    assert_eq!(empty["Rotations"], json!([]));
    assert_eq!(empty["Truncated"], false);
    for _ in 0..3 {
        core.clock.advance(1000);
        core.call("RotateKeyOnDemand", json!({"KeyId": id}))
            .unwrap();
    }
    let page = core
        .call("ListKeyRotations", json!({"KeyId": id, "Limit": 2}))
        .unwrap();
    assert_eq!(page["Rotations"].as_array().unwrap().len(), 2);
    assert_eq!(page["Truncated"], true);
    let marker = page["NextMarker"].as_str().unwrap().to_owned();
    let rest = core
        .call(
            "ListKeyRotations",
            json!({"KeyId": id, "Limit": 2, "Marker": marker}),
        )
        .unwrap();
    assert_eq!(rest["Rotations"].as_array().unwrap().len(), 1);
    assert_eq!(rest["Truncated"], false);
    assert!(rest.get("NextMarker").is_none());
    assert_eq!(
        rest["Rotations"][0]["RotationDate"].as_f64().unwrap(),
        (T0 + 3000) as f64 / 1000.0
    );
    for marker in ["0", "99", "x", "-1"] {
        assert_eq!(
            code(core.call("ListKeyRotations", json!({"KeyId": id, "Marker": marker}),)),
            "InvalidMarkerException",
            "{marker}"
        );
    }
    for limit in [0, 1001] {
        assert_eq!(
            code(core.call("ListKeyRotations", json!({"KeyId": id, "Limit": limit}),)),
            "ValidationException"
        );
    }
}
