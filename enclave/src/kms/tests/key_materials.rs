//! Key material ids and on-demand rotation of imported keys, driven through `dispatch::handle`
//! with JSON bodies on a fixed clock: ImportKeyMaterial NEW_KEY_MATERIAL puts new material
//! PENDING_ROTATION, RotateKeyOnDemand makes it current, old material keeps decrypting, and
//! DeleteImportedKeyMaterial by `KeyMaterialId` deletes one material. AWS KMS added this in
//! 2025; before, ekms kept one material per key and refused `KeyMaterialId`.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA256_MGF1SHA256};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::config::Config;
use crate::env::{Env, FixedClock};
use crate::error::KmsError;
use crate::kms::state::{Caller, State};

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

    fn call(&self, op: &str, body: Value) -> Result<Value, KmsError> {
        crate::kms::ops::test_support::run(
            &self.state,
            &self.config,
            &self.env,
            &self.caller,
            op,
            &body,
        )
        .0
    }

    fn ok(&self, op: &str, body: Value) -> Value {
        self.call(op, body.clone())
            .unwrap_or_else(|e| panic!("{op} {body}: {} {e}", e.aws_code()))
    }

    fn arn(&self, key: &str) -> String {
        self.config.key_arn(&uuid::Uuid::parse_str(key).unwrap())
    }

    fn external(&self, spec: &str) -> String {
        let usage = if spec.starts_with("HMAC") {
            "GENERATE_VERIFY_MAC"
        } else {
            "ENCRYPT_DECRYPT"
        };
        let out = self.ok(
            "CreateKey",
            json!({"Origin": "EXTERNAL", "KeySpec": spec, "KeyUsage": usage}),
        );
        out["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()
    }

    /// GetParametersForImport, then the material wrapped with RSAES_OAEP_SHA_256 into an
    /// ImportKeyMaterial request with `more` members.
    fn import(&self, key: &str, material: &[u8], more: Value) -> Result<Value, KmsError> {
        let parameters = self.ok(
            "GetParametersForImport",
            json!({"KeyId": key, "WrappingAlgorithm": "RSAES_OAEP_SHA_256",
                   "WrappingKeySpec": "RSA_2048"}),
        );
        let spki = B64.decode(parameters["PublicKey"].as_str().unwrap()).unwrap();
        let public =
            OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(&spki).unwrap()).unwrap();
        let mut out = vec![0u8; public.ciphertext_size()];
        let wrapped = public
            .encrypt(&OAEP_SHA256_MGF1SHA256, material, &mut out, None)
            .unwrap();
        let mut body = json!({
            "KeyId": key,
            "ImportToken": parameters["ImportToken"],
            "EncryptedKeyMaterial": B64.encode(wrapped),
            "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE",
        });
        for (k, v) in more.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        self.call("ImportKeyMaterial", body)
    }

    fn describe(&self, key: &str) -> Value {
        self.ok("DescribeKey", json!({"KeyId": key}))["KeyMetadata"].clone()
    }

    fn rotations(&self, key: &str, include: Option<&str>) -> Vec<Value> {
        let mut body = json!({"KeyId": key});
        if let Some(include) = include {
            body["IncludeKeyMaterial"] = json!(include);
        }
        self.ok("ListKeyRotations", body)["Rotations"]
            .as_array()
            .unwrap()
            .clone()
    }

    fn encrypt(&self, key: &str, plaintext: &[u8]) -> String {
        self.ok(
            "Encrypt",
            json!({"KeyId": key, "Plaintext": B64.encode(plaintext)}),
        )["CiphertextBlob"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The tick's expiry of imported material, minus the persisting.
    fn expire(&self) -> Vec<uuid::Uuid> {
        self.state.write().expire_material(self.env.now())
    }
}

/// A time as the JSON protocol answers it: epoch seconds, a float.
#[allow(clippy::cast_precision_loss)] // test dates fit an f64 mantissa exactly
fn secs(millis: i64) -> Value {
    json!(millis as f64 / 1000.0)
}

fn error(result: Result<Value, KmsError>) -> (&'static str, String) {
    match result {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => (e.aws_code(), e.to_string()),
    }
}

fn id_of(v: &Value) -> String {
    let id = v["KeyMaterialId"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 64);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    id
}

#[test]
fn new_material_pends_rotates_on_demand_and_old_material_still_decrypts() {
    let core = Core::new();
    let key = core.external("SYMMETRIC_DEFAULT");
    let arn = core.arn(&key);
    assert!(core.describe(&key).get("CurrentKeyMaterialId").is_none());
    // The first import (ImportType defaults to NEW_KEY_MATERIAL) becomes current.
    let first = core
        .import(&key, &[1; 32], json!({"KeyMaterialDescription": "first one"}))
        .unwrap();
    assert_eq!(first["KeyId"], json!(arn));
    let a = id_of(&first);
    assert_eq!(core.describe(&key)["CurrentKeyMaterialId"], json!(a));
    let old = core.encrypt(&key, b"under the first material");
    let opened = core.ok("Decrypt", json!({"CiphertextBlob": old}));
    assert_eq!(opened["KeyMaterialId"], json!(a));
    let data_key = core.ok("GenerateDataKey", json!({"KeyId": key, "KeySpec": "AES_256"}));
    assert_eq!(data_key["KeyMaterialId"], json!(a));

    // Nothing pending: KMSInvalidStateException, as AWS.
    assert_eq!(
        error(core.call("RotateKeyOnDemand", json!({"KeyId": key}))),
        (
            "KMSInvalidStateException",
            format!("{arn} has no new key material pending rotation.")
        )
    );
    // New material is pending until the rotation; the key keeps encrypting under the first.
    let second = core
        .import(
            &key,
            &[2; 32],
            json!({"ImportType": "NEW_KEY_MATERIAL", "ExpirationModel": "KEY_MATERIAL_EXPIRES",
                   "ValidTo": secs(T0 + 30 * DAY_MS), "KeyMaterialDescription": "second"}),
        )
        .unwrap();
    let b = id_of(&second);
    assert_ne!(a, b);
    let meta = core.describe(&key);
    assert_eq!(meta["CurrentKeyMaterialId"], json!(a));
    assert_eq!(meta["KeyState"], json!("Enabled"));
    // Pending material is not permanently associated: no ValidTo on the key yet.
    assert!(meta.get("ValidTo").is_none());
    assert_eq!(meta["ExpirationModel"], json!("KEY_MATERIAL_DOES_NOT_EXPIRE"));
    assert!(core.rotations(&key, None).is_empty());
    let all = core.rotations(&key, Some("ALL_KEY_MATERIAL"));
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["KeyMaterialId"], json!(a));
    assert_eq!(all[0]["KeyMaterialState"], json!("CURRENT"));
    assert_eq!(all[0]["ImportState"], json!("IMPORTED"));
    assert_eq!(all[0]["ExpirationModel"], json!("KEY_MATERIAL_DOES_NOT_EXPIRE"));
    assert_eq!(all[0]["KeyMaterialDescription"], json!("first one"));
    assert!(all[0].get("RotationDate").is_none());
    assert!(all[0].get("RotationType").is_none());
    assert_eq!(all[1]["KeyMaterialId"], json!(b));
    assert_eq!(all[1]["KeyMaterialState"], json!("PENDING_ROTATION"));
    assert_eq!(all[1]["ExpirationModel"], json!("KEY_MATERIAL_EXPIRES"));
    assert_eq!(all[1]["ValidTo"], secs(T0 + 30 * DAY_MS));
    assert!(all[1].get("RotationDate").is_none());

    // Rotate: the pending material becomes current, with its expiry.
    core.clock.advance(DAY_MS);
    let rotated = core.ok("RotateKeyOnDemand", json!({"KeyId": key}));
    assert_eq!(rotated["KeyId"], json!(arn));
    let meta = core.describe(&key);
    assert_eq!(meta["CurrentKeyMaterialId"], json!(b));
    assert_eq!(meta["ValidTo"], secs(T0 + 30 * DAY_MS));
    assert_eq!(meta["ExpirationModel"], json!("KEY_MATERIAL_EXPIRES"));
    let new = core.encrypt(&key, b"under the second material");
    assert_eq!(
        core.ok("Decrypt", json!({"CiphertextBlob": new}))["KeyMaterialId"],
        json!(b)
    );
    assert_eq!(
        core.ok("Decrypt", json!({"CiphertextBlob": old}))["KeyMaterialId"],
        json!(a)
    );
    let re = core.ok(
        "ReEncrypt",
        json!({"CiphertextBlob": old, "DestinationKeyId": key}),
    );
    assert_eq!(re["SourceKeyMaterialId"], json!(a));
    assert_eq!(re["DestinationKeyMaterialId"], json!(b));
    let rotations = core.rotations(&key, None);
    assert_eq!(rotations.len(), 1);
    assert_eq!(rotations[0]["KeyMaterialId"], json!(b));
    assert_eq!(rotations[0]["KeyMaterialState"], json!("CURRENT"));
    assert_eq!(rotations[0]["RotationType"], json!("ON_DEMAND"));
    assert_eq!(rotations[0]["RotationDate"], secs(T0 + DAY_MS));
    let all = core.rotations(&key, Some("ALL_KEY_MATERIAL"));
    assert_eq!(all[0]["KeyMaterialState"], json!("NON_CURRENT"));
    // Nothing pending again.
    assert_eq!(
        error(core.call("RotateKeyOnDemand", json!({"KeyId": key}))).0,
        "KMSInvalidStateException"
    );

    // Deleting the old material by id leaves the key waiting for it: nothing decrypts.
    let deleted = core.ok(
        "DeleteImportedKeyMaterial",
        json!({"KeyId": key, "KeyMaterialId": a}),
    );
    assert_eq!(deleted["KeyId"], json!(arn));
    assert_eq!(deleted["KeyMaterialId"], json!(a));
    assert_eq!(core.describe(&key)["KeyState"], json!("PendingImport"));
    assert_eq!(
        error(core.call("Decrypt", json!({"CiphertextBlob": new}))).0,
        "KMSInvalidStateException"
    );
    let all = core.rotations(&key, Some("ALL_KEY_MATERIAL"));
    assert_eq!(all[0]["ImportState"], json!("PENDING_IMPORT"));
    assert!(all[0].get("ExpirationModel").is_none());
    assert_eq!(all[1]["ImportState"], json!("IMPORTED"));
    // Only that material comes back, named or not.
    assert_eq!(
        error(core.import(&key, &[3; 32], json!({}))).0,
        "IncorrectKeyMaterialException"
    );
    assert_eq!(
        error(core.import(&key, &[2; 32], json!({"KeyMaterialId": a}))).0,
        "IncorrectKeyMaterialException"
    );
    let back = core
        .import(
            &key,
            &[1; 32],
            json!({"ImportType": "EXISTING_KEY_MATERIAL", "KeyMaterialId": a}),
        )
        .unwrap();
    assert_eq!(back["KeyMaterialId"], json!(a));
    assert_eq!(core.describe(&key)["KeyState"], json!("Enabled"));
    assert_eq!(
        core.ok("Decrypt", json!({"CiphertextBlob": old}))["KeyMaterialId"],
        json!(a)
    );
    // The description given at the first import was kept.
    assert_eq!(
        core.rotations(&key, Some("ALL_KEY_MATERIAL"))[0]["KeyMaterialDescription"],
        json!("first one")
    );
}

#[test]
fn import_type_and_material_id_errors() {
    let core = Core::new();
    let key = core.external("SYMMETRIC_DEFAULT");
    let arn = core.arn(&key);
    let some_id = "ab".repeat(32);
    // KeyMaterialId with NEW_KEY_MATERIAL: refused before the token is redeemed.
    assert_eq!(
        error(core.import(
            &key,
            &[1; 32],
            json!({"ImportType": "NEW_KEY_MATERIAL", "KeyMaterialId": some_id})
        )),
        (
            "ValidationException",
            "KeyMaterialId must not be specified when ImportType is NEW_KEY_MATERIAL".to_owned()
        )
    );
    // Malformed ids and descriptions, an unknown import type: AWS's validation messages.
    assert_eq!(
        error(core.import(&key, &[1; 32], json!({"KeyMaterialId": "AB".repeat(32)}))),
        (
            "ValidationException",
            "1 validation error detected: Value at 'keyMaterialId' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-f0-9]+$".to_owned()
        )
    );
    assert_eq!(
        error(core.import(&key, &[1; 32], json!({"KeyMaterialId": "ab"}))).1,
        "1 validation error detected: Value at 'keyMaterialId' failed to satisfy constraint: Member must have length greater than or equal to 64"
    );
    assert_eq!(
        error(core.import(&key, &[1; 32], json!({"KeyMaterialDescription": "semi;colon"}))).0,
        "ValidationException"
    );
    assert_eq!(
        error(core.import(&key, &[1; 32], json!({"ImportType": "SOME_MATERIAL"}))).1,
        "1 validation error detected: Value 'SOME_MATERIAL' at 'importType' failed to satisfy constraint: Member must satisfy enum value set: [NEW_KEY_MATERIAL, EXISTING_KEY_MATERIAL]"
    );
    // EXISTING_KEY_MATERIAL into a key that never had material: not the key's material.
    assert_eq!(
        error(core.import(&key, &[1; 32], json!({"ImportType": "EXISTING_KEY_MATERIAL"}))),
        (
            "IncorrectKeyMaterialException",
            format!("The key material is not the key material previously imported into {arn}.")
        )
    );
    let a = id_of(&core.import(&key, &[1; 32], json!({})).unwrap());
    // The current material again as NEW: refused; as EXISTING (the default now): re-imported.
    assert_eq!(
        error(core.import(&key, &[1; 32], json!({"ImportType": "NEW_KEY_MATERIAL"}))).0,
        "IncorrectKeyMaterialException"
    );
    assert_eq!(id_of(&core.import(&key, &[1; 32], json!({})).unwrap()), a);
    // A second NEW material while one is pending: the pending one must go first.
    let b = id_of(
        &core
            .import(&key, &[2; 32], json!({"ImportType": "NEW_KEY_MATERIAL"}))
            .unwrap(),
    );
    assert_eq!(
        error(core.import(&key, &[3; 32], json!({"ImportType": "NEW_KEY_MATERIAL"}))).0,
        "KMSInvalidStateException"
    );
    // Deleting the pending material drops it (the key stays Enabled) and makes room.
    let deleted = core.ok(
        "DeleteImportedKeyMaterial",
        json!({"KeyId": key, "KeyMaterialId": b}),
    );
    assert_eq!(deleted["KeyMaterialId"], json!(b));
    assert_eq!(core.describe(&key)["KeyState"], json!("Enabled"));
    assert_eq!(core.rotations(&key, Some("ALL_KEY_MATERIAL")).len(), 1);
    core.import(&key, &[3; 32], json!({"ImportType": "NEW_KEY_MATERIAL"}))
        .unwrap();
    // DeleteImportedKeyMaterial with an id that is not the key's, or malformed.
    let (code, message) = error(core.call(
        "DeleteImportedKeyMaterial",
        json!({"KeyId": key, "KeyMaterialId": "0".repeat(64)}),
    ));
    assert_eq!(code, "NotFoundException");
    assert_eq!(
        message,
        format!("Key material {} does not exist in {arn}", "0".repeat(64))
    );
    assert_eq!(
        error(core.call(
            "DeleteImportedKeyMaterial",
            json!({"KeyId": key, "KeyMaterialId": "xyz"})
        ))
        .0,
        "ValidationException"
    );
    // Without an id, the current material is deleted.
    let deleted = core.ok("DeleteImportedKeyMaterial", json!({"KeyId": key}));
    assert_eq!(deleted["KeyMaterialId"], json!(a));
    assert_eq!(core.describe(&key)["KeyState"], json!("PendingImport"));
    // A key waiting for material does not rotate: its state is checked first.
    assert_eq!(
        error(core.call("RotateKeyOnDemand", json!({"KeyId": key}))),
        (
            "KMSInvalidStateException",
            format!("{arn} is pending import.")
        )
    );
    // ListKeyRotations's IncludeKeyMaterial is an enum.
    assert_eq!(
        error(core.call(
            "ListKeyRotations",
            json!({"KeyId": key, "IncludeKeyMaterial": "SOME"})
        ))
        .0,
        "ValidationException"
    );
}

/// Asymmetric and HMAC keys have one material ever: AWS refuses ImportType (and the members that
/// go with it) for them, shows no material ids, and does not list their rotations.
#[test]
fn keys_with_one_material_refuse_import_types() {
    let core = Core::new();
    let key = core.external("HMAC_256");
    for more in [
        json!({"ImportType": "NEW_KEY_MATERIAL"}),
        json!({"KeyMaterialId": "ab".repeat(32)}),
        json!({"KeyMaterialDescription": "mac"}),
    ] {
        assert_eq!(
            error(core.import(&key, &[1; 32], more)).0,
            "ValidationException"
        );
    }
    let imported = core.import(&key, &[1; 32], json!({})).unwrap();
    assert!(imported.get("KeyMaterialId").is_none());
    assert!(core.describe(&key).get("CurrentKeyMaterialId").is_none());
    assert_eq!(
        error(core.import(&key, &[2; 32], json!({}))).0,
        "IncorrectKeyMaterialException"
    );
    assert_eq!(
        error(core.call("ListKeyRotations", json!({"KeyId": key}))).0,
        "UnsupportedOperationException"
    );
    // Deleted and imported again, as before.
    let deleted = core.ok("DeleteImportedKeyMaterial", json!({"KeyId": key}));
    assert!(deleted.get("KeyMaterialId").is_none());
    core.import(&key, &[1; 32], json!({})).unwrap();
    assert_eq!(core.describe(&key)["KeyState"], json!("Enabled"));
}

/// AWS_KMS keys show their current material's id, and each rotation's.
#[test]
fn generated_keys_show_material_ids() {
    let core = Core::new();
    let out = core.ok("CreateKey", json!({}));
    let key = out["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let first = out["KeyMetadata"]["CurrentKeyMaterialId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(first.len(), 64);
    let blob = core.encrypt(&key, b"x");
    core.ok("RotateKeyOnDemand", json!({"KeyId": key}));
    let current = core.describe(&key)["CurrentKeyMaterialId"].clone();
    assert_ne!(current, json!(first));
    let all = core.rotations(&key, Some("ALL_KEY_MATERIAL"));
    assert_eq!(all[0]["KeyMaterialId"], json!(first));
    assert_eq!(all[0]["KeyMaterialState"], json!("NON_CURRENT"));
    assert!(all[0].get("ImportState").is_none());
    assert_eq!(all[1]["KeyMaterialId"], current);
    assert_eq!(all[1]["RotationType"], json!("ON_DEMAND"));
    assert_eq!(
        core.ok("Decrypt", json!({"CiphertextBlob": blob}))["KeyMaterialId"],
        json!(first)
    );
    let pair = core.ok(
        "GenerateDataKeyPairWithoutPlaintext",
        json!({"KeyId": key, "KeyPairSpec": "ECC_NIST_P256"}),
    );
    assert_eq!(pair["KeyMaterialId"], current);
    // Encrypt answers none (AWS's EncryptResponse has no KeyMaterialId).
    let encrypted = core.ok("Encrypt", json!({"KeyId": key, "Plaintext": "eA=="}));
    assert!(encrypted.get("KeyMaterialId").is_none());
    // Asymmetric keys show none.
    let rsa = core.ok(
        "CreateKey",
        json!({"KeySpec": "RSA_2048", "KeyUsage": "ENCRYPT_DECRYPT"}),
    );
    assert!(rsa["KeyMetadata"].get("CurrentKeyMaterialId").is_none());
}

/// Each material expires on its own: pending material that expires is dropped; material of a
/// version that expires is deleted and the key waits for it.
#[test]
fn materials_expire_one_by_one() {
    let core = Core::new();
    let key = core.external("SYMMETRIC_DEFAULT");
    let in_days = |d: i64| secs(T0 + d * DAY_MS);
    core.import(&key, &[1; 32], json!({})).unwrap();
    core.import(
        &key,
        &[2; 32],
        json!({"ImportType": "NEW_KEY_MATERIAL", "ExpirationModel": "KEY_MATERIAL_EXPIRES",
               "ValidTo": in_days(2)}),
    )
    .unwrap();
    core.clock.advance(2 * DAY_MS);
    // Expired pending material is no longer there to rotate to, even before the tick.
    assert_eq!(
        error(core.call("RotateKeyOnDemand", json!({"KeyId": key}))).0,
        "KMSInvalidStateException"
    );
    assert_eq!(core.expire().len(), 1);
    assert_eq!(core.rotations(&key, Some("ALL_KEY_MATERIAL")).len(), 1);
    assert_eq!(core.describe(&key)["KeyState"], json!("Enabled"));
    // New material that expires, made current: when it expires the key waits for it.
    core.import(
        &key,
        &[3; 32],
        json!({"ImportType": "NEW_KEY_MATERIAL", "ExpirationModel": "KEY_MATERIAL_EXPIRES",
               "ValidTo": in_days(5)}),
    )
    .unwrap();
    core.ok("RotateKeyOnDemand", json!({"KeyId": key}));
    let blob = core.encrypt(&key, b"y");
    core.clock.advance(3 * DAY_MS);
    // Unusable at once, before the tick deletes it.
    assert_eq!(
        error(core.call("Decrypt", json!({"CiphertextBlob": blob}))).0,
        "KMSInvalidStateException"
    );
    assert_eq!(core.expire().len(), 1);
    let meta = core.describe(&key);
    assert_eq!(meta["KeyState"], json!("PendingImport"));
    let all = core.rotations(&key, Some("ALL_KEY_MATERIAL"));
    assert_eq!(all[0]["ImportState"], json!("IMPORTED"));
    assert_eq!(all[1]["ImportState"], json!("PENDING_IMPORT"));
    // Imported again (it takes a new expiry, or none), the key is usable.
    core.import(&key, &[3; 32], json!({})).unwrap();
    assert_eq!(core.describe(&key)["KeyState"], json!("Enabled"));
    core.ok("Decrypt", json!({"CiphertextBlob": blob}));
    assert!(core.expire().is_empty());
}

/// GetKeyRotationStatus on a symmetric key of imported material: automatic rotation is always
/// off (it rotates on demand only), so it answers `false` rather than refusing; EnableKeyRotation
/// still refuses, and an HMAC key of imported material never rotates at all.
#[test]
fn imported_symmetric_keys_report_automatic_rotation_off() {
    let core = Core::new();
    let key = core.external("SYMMETRIC_DEFAULT");
    let status = core.ok("GetKeyRotationStatus", json!({"KeyId": key}));
    assert_eq!(status["KeyRotationEnabled"], json!(false));
    assert_eq!(status["KeyId"], json!(key));
    assert!(status.get("RotationPeriodInDays").is_none());
    assert_eq!(
        error(core.call("EnableKeyRotation", json!({"KeyId": key}))).0,
        "UnsupportedOperationException"
    );
    let hmac = core.external("HMAC_256");
    assert_eq!(
        error(core.call("GetKeyRotationStatus", json!({"KeyId": hmac}))).0,
        "UnsupportedOperationException"
    );
}
