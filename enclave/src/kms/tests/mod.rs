//! The KMS core driven through `dispatch::handle` with JSON bodies, on a fixed clock.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::kms::ops::{Caller, Ctx, State};
use crate::config::Config;
use crate::kms::dispatch::{self, Operation};
use crate::env::{Env, FixedClock};
use crate::error::KmsError;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

struct Core {
    state: State,
    config: Config,
    clock: Arc<FixedClock>,
    env: Env,
    caller: Caller,
}

impl Core {
    /// An operation context over this core, its effects kept in `kept`, for calling
    /// `dispatch::handle` directly.
    fn ctx<'a>(&'a self, kept: &'a crate::kms::authz::Kept) -> Ctx<'a> {
        Ctx::new(&self.state, &self.config, &self.env, &self.caller, kept)
    }

    fn new() -> Self {
        let clock = Arc::new(FixedClock::new(1_700_000_000_000));
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

    fn create_key(&self) -> String {
        let out = self.call("CreateKey", json!({})).unwrap();
        out["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()
    }

    fn encrypt(&self, key_id: &str, plaintext: &[u8]) -> Result<String, KmsError> {
        let out = self.call(
            "Encrypt",
            json!({"KeyId": key_id, "Plaintext": B64.encode(plaintext)}),
        )?;
        Ok(out["CiphertextBlob"].as_str().unwrap().to_owned())
    }
}

fn code(result: Result<Value, KmsError>) -> &'static str {
    match result {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => e.aws_code(),
    }
}

#[test]
fn key_is_destroyed_when_its_deletion_date_passes_on_the_enclave_clock() {
    let core = Core::new();
    let id = core.create_key();
    core.call(
        "CreateAlias",
        json!({"AliasName": "alias/doomed", "TargetKeyId": id}),
    )
    .unwrap();
    let blob = core.encrypt(&id, b"data").unwrap();
    let out = core
        .call(
            "ScheduleKeyDeletion",
            json!({"KeyId": id, "PendingWindowInDays": 7}),
        )
        .unwrap();
    assert_eq!(out["KeyState"], "PendingDeletion");
    assert_eq!(
        out["DeletionDate"].as_f64().unwrap(),
        (1_700_000_000_000 + 7 * DAY_MS) as f64 / 1000.0
    );
    assert_eq!(
        code(core.call("Decrypt", json!({"CiphertextBlob": blob}))),
        "KMSInvalidStateException"
    );
    // One millisecond before the date the key still exists; at the date it is gone.
    core.clock.advance(7 * DAY_MS - 1);
    assert!(core.call("DescribeKey", json!({"KeyId": id})).is_ok());
    core.clock.advance(1);
    assert_eq!(
        code(core.call("DescribeKey", json!({"KeyId": id}))),
        "NotFoundException"
    );
    assert_eq!(
        code(core.call("DescribeKey", json!({"KeyId": "alias/doomed"}))),
        "NotFoundException"
    );
    assert_eq!(
        code(core.call("Decrypt", json!({"CiphertextBlob": blob}))),
        "InvalidCiphertextException"
    );
    // The sweep frees the memory and the alias name.
    assert_eq!(core.state.write().sweep(core.env.now()).0.len(), 1);
    assert_eq!(core.state.read().key_count(), 0);
    let other = core.create_key();
    core.call(
        "CreateAlias",
        json!({"AliasName": "alias/doomed", "TargetKeyId": other}),
    )
    .unwrap();
}

#[test]
fn cancelled_deletion_leaves_the_key_disabled_and_never_destroys_it() {
    let core = Core::new();
    let id = core.create_key();
    core.call(
        "ScheduleKeyDeletion",
        json!({"KeyId": id, "PendingWindowInDays": 7}),
    )
    .unwrap();
    assert_eq!(
        code(core.call("ScheduleKeyDeletion", json!({"KeyId": id}))),
        "KMSInvalidStateException"
    );
    core.call("CancelKeyDeletion", json!({"KeyId": id}))
        .unwrap();
    let meta = core.call("DescribeKey", json!({"KeyId": id})).unwrap();
    assert_eq!(meta["KeyMetadata"]["KeyState"], "Disabled");
    assert!(meta["KeyMetadata"].get("DeletionDate").is_none());
    core.clock.advance(31 * DAY_MS);
    assert!(core.state.write().sweep(core.env.now()).0.is_empty());
    assert_eq!(
        code(core.call("Encrypt", json!({"KeyId": id, "Plaintext": "AA=="}))),
        "DisabledException"
    );
    core.call("EnableKey", json!({"KeyId": id})).unwrap();
    core.encrypt(&id, b"x").unwrap();
}

#[test]
fn deletion_window_is_7_to_30_days() {
    let core = Core::new();
    let id = core.create_key();
    for days in [6, 31, 0, -1] {
        assert_eq!(
            code(core.call(
                "ScheduleKeyDeletion",
                json!({"KeyId": id, "PendingWindowInDays": days})
            )),
            "ValidationException"
        );
    }
    let out = core
        .call("ScheduleKeyDeletion", json!({"KeyId": id}))
        .unwrap();
    assert_eq!(out["PendingWindowInDays"], 30);
}

#[test]
fn key_id_accepts_id_arn_alias_and_alias_arn() {
    let core = Core::new();
    let id = core.create_key();
    core.call(
        "CreateAlias",
        json!({"AliasName": "alias/app", "TargetKeyId": id}),
    )
    .unwrap();
    let arn = format!("arn:aws:kms:us-east-1:111122223333:key/{id}");
    for form in [
        id.clone(),
        arn.clone(),
        "alias/app".to_owned(),
        "arn:aws:kms:us-east-1:111122223333:alias/app".to_owned(),
    ] {
        let out = core.call("DescribeKey", json!({"KeyId": form})).unwrap();
        assert_eq!(out["KeyMetadata"]["Arn"], arn.as_str(), "{form}");
        let out = core
            .call("Encrypt", json!({"KeyId": form, "Plaintext": "AQID"}))
            .unwrap();
        assert_eq!(out["KeyId"], arn.as_str());
    }
    for bad in [
        format!("arn:aws:kms:eu-west-1:111122223333:key/{id}"),
        format!("arn:aws:kms:us-east-1:999999999999:key/{id}"),
        "alias/missing".to_owned(),
        "not-a-key".to_owned(),
        id.to_uppercase().replace('-', ""),
    ] {
        assert_eq!(
            code(core.call("DescribeKey", json!({"KeyId": bad}))),
            "NotFoundException",
            "{bad}"
        );
    }
    assert_eq!(
        code(core.call("DescribeKey", json!({"KeyId": ""}))),
        "ValidationException"
    );
    assert_eq!(
        code(core.call("DescribeKey", json!({}))),
        "ValidationException"
    );
}

#[test]
fn decrypt_needs_no_key_id_and_refuses_the_wrong_one() {
    let core = Core::new();
    let a = core.create_key();
    let b = core.create_key();
    let blob = core.encrypt(&a, b"secret").unwrap();
    let out = core
        .call("Decrypt", json!({"CiphertextBlob": blob}))
        .unwrap();
    assert_eq!(
        B64.decode(out["Plaintext"].as_str().unwrap()).unwrap(),
        b"secret"
    );
    assert_eq!(
        code(core.call("Decrypt", json!({"CiphertextBlob": blob, "KeyId": b}))),
        "IncorrectKeyException"
    );
    assert!(core
        .call("Decrypt", json!({"CiphertextBlob": blob, "KeyId": a}))
        .is_ok());
}

#[test]
fn list_keys_pages_through_every_key_once() {
    let core = Core::new();
    let mut created: Vec<String> = (0..7).map(|_| core.create_key()).collect();
    created.sort();
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut req = json!({"Limit": 3});
        if let Some(m) = &marker {
            req["Marker"] = json!(m);
        }
        let out = core.call("ListKeys", req).unwrap();
        let page = out["Keys"].as_array().unwrap();
        assert!(page.len() <= 3);
        seen.extend(page.iter().map(|k| k["KeyId"].as_str().unwrap().to_owned()));
        if out["Truncated"] == json!(true) {
            marker = Some(out["NextMarker"].as_str().unwrap().to_owned());
        } else {
            assert!(out.get("NextMarker").is_none());
            break;
        }
    }
    seen.sort();
    assert_eq!(seen, created);
    assert_eq!(
        code(core.call("ListKeys", json!({"Limit": 0}))),
        "ValidationException"
    );
    assert_eq!(
        code(core.call("ListKeys", json!({"Limit": 1001}))),
        "ValidationException"
    );
    assert_eq!(
        code(core.call("ListKeys", json!({"Marker": "junk"}))),
        "InvalidMarkerException"
    );
}

#[test]
fn aliases_create_update_delete_and_list_by_key() {
    let core = Core::new();
    let a = core.create_key();
    let b = core.create_key();
    core.call(
        "CreateAlias",
        json!({"AliasName": "alias/one", "TargetKeyId": a}),
    )
    .unwrap();
    core.call(
        "CreateAlias",
        json!({"AliasName": "alias/two", "TargetKeyId": a}),
    )
    .unwrap();
    assert_eq!(
        code(core.call(
            "CreateAlias",
            json!({"AliasName": "alias/one", "TargetKeyId": b})
        )),
        "AlreadyExistsException"
    );
    assert_eq!(
        code(core.call(
            "CreateAlias",
            json!({"AliasName": "alias/aws/x", "TargetKeyId": b})
        )),
        "InvalidAliasNameException"
    );
    core.call(
        "UpdateAlias",
        json!({"AliasName": "alias/two", "TargetKeyId": b}),
    )
    .unwrap();
    let of_a = core.call("ListAliases", json!({"KeyId": a})).unwrap();
    let names: Vec<&str> = of_a["Aliases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["AliasName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alias/one"]);
    let blob = core.encrypt("alias/two", b"x").unwrap();
    let out = core
        .call("Decrypt", json!({"CiphertextBlob": blob}))
        .unwrap();
    assert!(out["KeyId"].as_str().unwrap().ends_with(&b));
    core.call("DeleteAlias", json!({"AliasName": "alias/two"}))
        .unwrap();
    assert_eq!(
        code(core.call("DeleteAlias", json!({"AliasName": "alias/two"}))),
        "NotFoundException"
    );
    assert_eq!(
        code(core.call(
            "UpdateAlias",
            json!({"AliasName": "alias/two", "TargetKeyId": a})
        )),
        "NotFoundException"
    );
    let all = core.call("ListAliases", json!({"Limit": 1})).unwrap();
    assert_eq!(all["Truncated"], json!(false));
    assert_eq!(all["Aliases"].as_array().unwrap().len(), 1);
}

#[test]
fn data_keys_and_random_respect_their_sizes() {
    let core = Core::new();
    let id = core.create_key();
    for (req, len) in [
        (json!({"KeyId": id, "KeySpec": "AES_256"}), 32),
        (json!({"KeyId": id, "KeySpec": "AES_128"}), 16),
        (json!({"KeyId": id, "NumberOfBytes": 1}), 1),
        (json!({"KeyId": id, "NumberOfBytes": 1024}), 1024),
    ] {
        let out = core.call("GenerateDataKey", req.clone()).unwrap();
        let plaintext = B64.decode(out["Plaintext"].as_str().unwrap()).unwrap();
        assert_eq!(plaintext.len(), len);
        let opened = core
            .call("Decrypt", json!({"CiphertextBlob": out["CiphertextBlob"]}))
            .unwrap();
        assert_eq!(
            B64.decode(opened["Plaintext"].as_str().unwrap()).unwrap(),
            plaintext
        );
        let without = core.call("GenerateDataKeyWithoutPlaintext", req).unwrap();
        assert!(without.get("Plaintext").is_none());
        assert!(without["CiphertextBlob"].is_string());
    }
    for bad in [
        json!({"KeyId": id}),
        json!({"KeyId": id, "KeySpec": "AES_256", "NumberOfBytes": 32}),
        json!({"KeyId": id, "NumberOfBytes": 0}),
        json!({"KeyId": id, "NumberOfBytes": 1025}),
        json!({"KeyId": id, "KeySpec": "AES_512"}),
    ] {
        assert_eq!(
            code(core.call("GenerateDataKey", bad)),
            "ValidationException"
        );
    }
    let out = core
        .call("GenerateRandom", json!({"NumberOfBytes": 1024}))
        .unwrap();
    assert_eq!(
        B64.decode(out["Plaintext"].as_str().unwrap())
            .unwrap()
            .len(),
        1024
    );
    for n in [0, 1025] {
        assert_eq!(
            code(core.call("GenerateRandom", json!({"NumberOfBytes": n}))),
            "ValidationException"
        );
    }
}

#[test]
fn bad_requests_get_the_aws_error() {
    let core = Core::new();
    let id = core.create_key();
    let big = B64.encode(vec![0u8; 4097]);
    assert_eq!(
        code(core.call("Encrypt", json!({"KeyId": id, "Plaintext": big}))),
        "ValidationException"
    );
    assert_eq!(
        code(core.call("Encrypt", json!({"KeyId": id, "Plaintext": "!!notbase64"}))),
        "SerializationException"
    );
    assert_eq!(
        code(core.call("Encrypt", json!({"KeyId": id, "Plaintext": 5}))),
        "SerializationException"
    );
    assert_eq!(
        code(core.call(
            "Encrypt",
            json!({"KeyId": id, "Plaintext": "AA==", "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"})
        )),
        "InvalidKeyUsageException"
    );
    assert_eq!(
        code(core.call(
            "Encrypt",
            json!({"KeyId": id, "Plaintext": "AA==", "DryRun": true})
        )),
        "DryRunOperationException"
    );
    assert_eq!(
        code(core.call(
            "CreateKey",
            json!({"KeySpec": "SM2", "KeyUsage": "SIGN_VERIFY"})
        )),
        "UnsupportedOperationException"
    );
    assert_eq!(
        code(core.call("CreateKey", json!({"KeySpec": "AES"}))),
        "ValidationException"
    );
    assert_eq!(
        code(core.call("ReplicateKey", json!({}))),
        "UnsupportedOperationException"
    );
    assert_eq!(
        code(core.call("NoSuchThing", json!({}))),
        "UnknownOperationException"
    );
    let kept = crate::kms::authz::Kept::default();
    let ctx = core.ctx(&kept);
    let err = dispatch::handle(&ctx, Operation::Encrypt, b"{not json").unwrap_err();
    assert_eq!(err.aws_code(), "SerializationException");
}

/// The operations with large answers note their KeyId for the audit record (which then does
/// not parse the answer back); `run` checks, in every operation test, that it is the answer's.
#[test]
fn large_answers_note_their_key_for_the_audit_record() {
    let core = Core::new();
    let id = core.call("CreateKey", json!({})).unwrap()["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let noted = |op: Operation, body: Value| {
        let kept = crate::kms::authz::Kept::default();
        let ctx = core.ctx(&kept);
        let result = dispatch::handle(&ctx, op, body.to_string().as_bytes());
        (result, kept.take_answer_key())
    };
    let arn = core.config.key_arn(&id.parse().unwrap());
    let (encrypted, key) = noted(
        Operation::Encrypt,
        json!({"KeyId": id, "Plaintext": "aGVsbG8="}),
    );
    assert_eq!(key.as_deref(), Some(arn.as_str()));
    let blob =
        serde_json::from_slice::<Value>(&encrypted.unwrap()).unwrap()["CiphertextBlob"].clone();
    let (_, key) = noted(Operation::Decrypt, json!({"CiphertextBlob": blob}));
    assert_eq!(key.as_deref(), Some(arn.as_str()));
    let (_, key) = noted(
        Operation::GenerateDataKey,
        json!({"KeyId": id, "KeySpec": "AES_256"}),
    );
    assert_eq!(key.as_deref(), Some(arn.as_str()));
    // A refused request notes nothing.
    let (refused, key) = noted(Operation::Decrypt, json!({"CiphertextBlob": "AAAA"}));
    assert!(refused.is_err());
    assert_eq!(key, None);
}

#[test]
fn tags_are_validated_replaced_and_removed() {
    let core = Core::new();
    let out = core
        .call(
            "CreateKey",
            json!({"Tags": [{"TagKey": "team", "TagValue": "a"}]}),
        )
        .unwrap();
    let id = out["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    core.call("TagResource", json!({"KeyId": id, "Tags": [{"TagKey": "team", "TagValue": "b"}, {"TagKey": "env", "TagValue": ""}]}))
        .unwrap();
    let tags = core.call("ListResourceTags", json!({"KeyId": id})).unwrap();
    assert_eq!(
        tags["Tags"],
        json!([{"TagKey": "team", "TagValue": "b"}, {"TagKey": "env", "TagValue": ""}])
    );
    core.call("UntagResource", json!({"KeyId": id, "TagKeys": ["team"]}))
        .unwrap();
    let tags = core.call("ListResourceTags", json!({"KeyId": id})).unwrap();
    assert_eq!(tags["Tags"], json!([{"TagKey": "env", "TagValue": ""}]));
    // AWS's codes, order and words.
    let refused = |tags: Value| {
        let e = core
            .call("TagResource", json!({"KeyId": id, "Tags": tags}))
            .unwrap_err();
        (e.aws_code(), e.to_string())
    };
    assert_eq!(
        refused(json!([{"TagKey": "aws:x", "TagValue": "v"}])),
        ("TagException", "Tags beginning with aws: are reserved".to_owned())
    );
    assert_eq!(
        refused(json!([{"TagKey": "k", "TagValue": "1"}, {"TagKey": "k", "TagValue": "2"}])),
        ("TagException", "Duplicate tag keys".to_owned())
    );
    let long = "v".repeat(257);
    assert_eq!(
        refused(json!([{"TagKey": "ok", "TagValue": ""}, {"TagKey": "k", "TagValue": long}])),
        (
            "ValidationException",
            format!(
                "1 validation error detected: Value '{long}' at 'tags.2.member.tagValue' failed \
                 to satisfy constraint: Member must have length less than or equal to 256"
            )
        )
    );
    assert_eq!(
        refused(json!([{"TagKey": "", "TagValue": "v"}])).0,
        "ValidationException"
    );
    let many: Vec<Value> = (0..51)
        .map(|i| json!({"TagKey": format!("k{i}"), "TagValue": "v"}))
        .collect();
    // More than a key may carry is TagException (the model bounds no tag list), whether
    // asked at once, added to those it has, or at CreateKey.
    let refused = core
        .call("TagResource", json!({"KeyId": id, "Tags": many}))
        .unwrap_err();
    assert_eq!(refused.aws_code(), "TagException");
    assert_eq!(refused.to_string(), "Too many tags");
    let fifty: Vec<Value> = (0..50)
        .map(|i| json!({"TagKey": format!("k{i}"), "TagValue": "v"}))
        .collect();
    assert_eq!(
        code(core.call("TagResource", json!({"KeyId": id, "Tags": fifty}))),
        "TagException"
    );
    assert_eq!(
        code(core.call("CreateKey", json!({"Tags": many}))),
        "TagException"
    );
}

mod asym;
mod authz;
mod grants;
mod key_materials;
mod mac_rotation;
mod memory;
mod messages;
