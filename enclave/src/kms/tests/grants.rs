//! Grants through `dispatch::handle`, with two callers: `dev` (an identity policy allowing
//! everything) and `bob` (no identity policy: only key policies naming him, or grants, let him
//! do anything).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::kms::state::{Caller, State};
use crate::config::Config;
use crate::env::{Env, FixedClock};
use crate::error::KmsError;
use crate::kms::state::Touched;

const DEV: &str = "arn:aws:iam::111122223333:user/dev";
const BOB: &str = "arn:aws:iam::111122223333:user/bob";
const CAROL: &str = "arn:aws:iam::111122223333:user/carol";

struct Core {
    state: State,
    config: Config,
    clock: Arc<FixedClock>,
    env: Env,
    dev: Caller,
    bob: Caller,
}

impl Core {
    fn new() -> Self {
        let clock = Arc::new(FixedClock::new(1_700_000_000_000));
        let env = crate::kms::ops::test_support::env(clock.clone());
        Core {
            state: State::default(),
            config: Config::default(),
            clock,
            env,
            dev: Caller {
                arn: DEV.to_owned(),
                access_key_id: "AKIADEVTEST".to_owned(),
                identity_policy: Some(crate::kms::authz::allow_all().unwrap()),
            },
            bob: Caller {
                arn: BOB.to_owned(),
                access_key_id: "AKIABOBTEST".to_owned(),
                identity_policy: None,
            },
        }
    }

    /// Runs `op` as `caller`; the answer and the records it touched.
    fn run(
        &self,
        caller: &Caller,
        op: &str,
        body: &Value,
    ) -> (Result<Value, KmsError>, Vec<Touched>) {
        crate::kms::ops::test_support::run(&self.state, &self.config, &self.env, caller, op, body)
    }

    fn dev(&self, op: &str, body: Value) -> Result<Value, KmsError> {
        self.run(&self.dev, op, &body).0
    }

    fn bob(&self, op: &str, body: Value) -> Result<Value, KmsError> {
        self.run(&self.bob, op, &body).0
    }

    fn create_key(&self) -> String {
        let out = self.dev("CreateKey", json!({})).unwrap();
        out["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()
    }

    fn create_grant(&self, body: Value) -> (String, String) {
        let out = self.dev("CreateGrant", body).unwrap();
        (
            out["GrantId"].as_str().unwrap().to_owned(),
            out["GrantToken"].as_str().unwrap().to_owned(),
        )
    }

    fn list(&self, key: &str, extra: Value) -> Value {
        let mut body = json!({"KeyId": key});
        if let Value::Object(m) = extra {
            body.as_object_mut().unwrap().extend(m);
        }
        self.dev("ListGrants", body).unwrap()
    }
}

fn code(result: Result<Value, KmsError>) -> &'static str {
    match result {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => e.aws_code(),
    }
}

fn encrypt_body(key: &str, context: Value) -> Value {
    json!({"KeyId": key, "Plaintext": B64.encode(b"bob's data"), "EncryptionContext": context})
}

fn purpose_grant(key: &str) -> Value {
    json!({
        "KeyId": key,
        "GranteePrincipal": BOB,
        "RetiringPrincipal": BOB,
        "Operations": ["Encrypt", "Decrypt"],
        "Constraints": {"EncryptionContextSubset": {"purpose": "x"}},
    })
}

#[test]
fn bob_is_allowed_by_a_grant_only_for_its_operations_and_constraints() {
    let core = Core::new();
    let key = core.create_key();
    // Denied by default, with AWS's message.
    let err = core
        .bob("Encrypt", encrypt_body(&key, json!({"purpose": "x"})))
        .unwrap_err();
    assert_eq!(err.aws_code(), "AccessDeniedException");
    assert!(
        err.to_string().starts_with(&format!(
            "User: {BOB} is not authorized to perform: kms:Encrypt on resource: arn:aws:kms:us-east-1:111122223333:key/{key}"
        )),
        "{err}"
    );

    let (grant_id, token) = core.create_grant(purpose_grant(&key));
    assert_eq!(grant_id.len(), 64);
    assert!(grant_id.bytes().all(|b| b.is_ascii_hexdigit()));

    // Allowed with the constrained context (and a superset of it), at once.
    let blob = core
        .bob("Encrypt", encrypt_body(&key, json!({"purpose": "x"})))
        .unwrap()["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_owned();
    core.bob(
        "Encrypt",
        encrypt_body(&key, json!({"purpose": "x", "team": "a"})),
    )
    .unwrap();
    let plain = core
        .bob(
            "Decrypt",
            json!({"CiphertextBlob": blob, "EncryptionContext": {"purpose": "x"}, "GrantTokens": [token]}),
        )
        .unwrap();
    assert_eq!(
        B64.decode(plain["Plaintext"].as_str().unwrap()).unwrap(),
        b"bob's data"
    );
    // Not with another context, or none.
    for context in [json!({"purpose": "y"}), json!({}), json!({"Purpose": "X"})] {
        assert_eq!(
            code(core.bob("Encrypt", encrypt_body(&key, context))),
            "AccessDeniedException"
        );
    }
    // Not for operations the grant does not name.
    assert_eq!(
        code(core.bob(
            "GenerateDataKey",
            json!({"KeyId": key, "KeySpec": "AES_256", "EncryptionContext": {"purpose": "x"}})
        )),
        "AccessDeniedException"
    );
    assert_eq!(
        code(core.bob("DescribeKey", json!({"KeyId": key}))),
        "AccessDeniedException"
    );
    // Not on another key.
    let other = core.create_key();
    assert_eq!(
        code(core.bob("Encrypt", encrypt_body(&other, json!({"purpose": "x"})))),
        "AccessDeniedException"
    );

    // Bob retires it by its token (he is the retiring principal): denied again at once.
    let (result, touched) = core.run(&core.bob, "RetireGrant", &json!({"GrantToken": token}));
    result.unwrap();
    assert_eq!(touched.len(), 1);
    assert!(
        matches!(&touched[0], Touched::Grant(id, g) if id.to_string() == key && *g == grant_id)
    );
    assert_eq!(
        code(core.bob("Encrypt", encrypt_body(&key, json!({"purpose": "x"})))),
        "AccessDeniedException"
    );
    // Gone: bob, whom no policy allows RetireGrant, learns nothing of it; the owner hears
    // that it does not exist.
    assert_eq!(
        code(core.bob("RetireGrant", json!({"GrantToken": token}))),
        "AccessDeniedException"
    );
    assert_eq!(
        code(
            core.run(&core.dev, "RetireGrant", &json!({"GrantToken": token}))
                .0
        ),
        "NotFoundException"
    );
    assert!(core.list(&key, json!({}))["Grants"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn a_revoked_grant_stops_working_and_only_policies_may_revoke() {
    let core = Core::new();
    let key = core.create_key();
    let (grant_id, _) = core.create_grant(purpose_grant(&key));
    core.bob("Encrypt", encrypt_body(&key, json!({"purpose": "x"})))
        .unwrap();
    // Bob may not revoke (no policy allows him kms:RevokeGrant), nor list.
    assert_eq!(
        code(core.bob("RevokeGrant", json!({"KeyId": key, "GrantId": grant_id}))),
        "AccessDeniedException"
    );
    assert_eq!(
        code(core.bob("ListGrants", json!({"KeyId": key}))),
        "AccessDeniedException"
    );
    assert_eq!(
        code(core.bob("ListRetirableGrants", json!({"RetiringPrincipal": BOB}))),
        "AccessDeniedException"
    );
    assert_eq!(
        code(core.dev(
            "RevokeGrant",
            json!({"KeyId": key, "GrantId": grant_id, "DryRun": true})
        )),
        "DryRunOperationException"
    );
    core.bob("Encrypt", encrypt_body(&key, json!({"purpose": "x"})))
        .unwrap();
    let (result, touched) = core.run(
        &core.dev,
        "RevokeGrant",
        &json!({"KeyId": key, "GrantId": grant_id}),
    );
    result.unwrap();
    assert_eq!(touched.len(), 1);
    assert_eq!(
        code(core.bob("Encrypt", encrypt_body(&key, json!({"purpose": "x"})))),
        "AccessDeniedException"
    );
    assert_eq!(
        code(core.dev("RevokeGrant", json!({"KeyId": key, "GrantId": grant_id}))),
        "NotFoundException"
    );
}

#[test]
fn who_may_retire_a_grant() {
    let core = Core::new();
    let key = core.create_key();
    // Bob is the grantee, without RetireGrant in the grant and not the retiring principal.
    let (plain, plain_token) = core.create_grant(json!({
        "KeyId": key, "GranteePrincipal": BOB, "RetiringPrincipal": CAROL,
        "Operations": ["Encrypt"],
    }));
    assert_eq!(
        code(core.bob("RetireGrant", json!({"GrantToken": plain_token}))),
        "AccessDeniedException"
    );
    assert_eq!(
        code(core.bob("RetireGrant", json!({"KeyId": key, "GrantId": plain}))),
        "AccessDeniedException"
    );
    // With RetireGrant in the grant, the grantee may retire it (by key and grant id too).
    let (with_retire, _) = core.create_grant(json!({
        "KeyId": key, "GranteePrincipal": BOB, "Operations": ["Encrypt", "RetireGrant"],
    }));
    core.bob(
        "RetireGrant",
        json!({"KeyId": format!("arn:aws:kms:us-east-1:111122223333:key/{key}"), "GrantId": with_retire}),
    )
    .unwrap();
    // A principal the policies allow kms:RetireGrant (dev) may retire any grant on the key.
    assert_eq!(
        code(core.dev(
            "RetireGrant",
            json!({"GrantToken": plain_token, "DryRun": true})
        )),
        "DryRunOperationException"
    );
    core.dev("RetireGrant", json!({"GrantToken": plain_token}))
        .unwrap();
    assert!(core.list(&key, json!({}))["Grants"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn an_explicit_deny_in_the_key_policy_beats_a_grant() {
    let core = Core::new();
    let key = core.create_key();
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "root", "Effect": "Allow",
             "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
             "Action": "kms:*", "Resource": "*"},
            {"Sid": "no bob", "Effect": "Deny", "Principal": {"AWS": BOB},
             "Action": "kms:Encrypt", "Resource": "*"},
        ]
    });
    core.dev(
        "PutKeyPolicy",
        json!({"KeyId": key, "Policy": policy.to_string()}),
    )
    .unwrap();
    core.create_grant(purpose_grant(&key));
    let err = core
        .bob("Encrypt", encrypt_body(&key, json!({"purpose": "x"})))
        .unwrap_err();
    assert_eq!(err.aws_code(), "AccessDeniedException");
    assert!(err.to_string().contains("explicit deny"), "{err}");
    let blob = core
        .dev("Encrypt", encrypt_body(&key, json!({"purpose": "x"})))
        .unwrap()["CiphertextBlob"]
        .clone();
    core.bob(
        "Decrypt",
        json!({"CiphertextBlob": blob, "EncryptionContext": {"purpose": "x"}}),
    )
    .unwrap();
}

#[test]
fn a_name_makes_create_grant_idempotent_for_the_same_parameters() {
    let core = Core::new();
    let key = core.create_key();
    let body = json!({
        "KeyId": key, "GranteePrincipal": BOB, "Operations": ["Encrypt", "Decrypt"],
        "Name": "app-1",
    });
    let (id, token) = core.create_grant(body.clone());
    // The same operations in another order are the same parameters.
    let mut reordered = body.clone();
    reordered["Operations"] = json!(["Decrypt", "Encrypt", "Decrypt"]);
    let (result, touched) = core.run(&core.dev, "CreateGrant", &reordered);
    let again = result.unwrap();
    assert_eq!(again["GrantId"], id.as_str());
    assert_eq!(again["GrantToken"], token.as_str());
    assert!(touched.is_empty(), "a retry changes nothing");
    assert_eq!(
        core.list(&key, json!({}))["Grants"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Other parameters with the same name: a new grant, as AWS.
    let mut other = body.clone();
    other["Operations"] = json!(["Encrypt"]);
    let (other_id, _) = core.create_grant(other);
    assert_ne!(other_id, id);
    // No name: a new grant every time.
    let mut unnamed = body;
    unnamed.as_object_mut().unwrap().remove("Name");
    let (a, _) = core.create_grant(unnamed.clone());
    let (b, _) = core.create_grant(unnamed);
    assert_ne!(a, b);
    let listed = core.list(&key, json!({}));
    assert_eq!(listed["Grants"].as_array().unwrap().len(), 4);
    let named: Vec<&Value> = listed["Grants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["Name"] == "app-1")
        .collect();
    assert_eq!(named.len(), 2);
}

#[test]
fn list_grants_entries_filters_and_pages() {
    let core = Core::new();
    let key = core.create_key();
    let (first, _) = core.create_grant(json!({
        "KeyId": key, "GranteePrincipal": BOB, "RetiringPrincipal": DEV,
        "Operations": ["Encrypt", "Decrypt"], "Name": "first",
        "Constraints": {"EncryptionContextEquals": {"purpose": "x"}},
    }));
    let mut ids = vec![first.clone()];
    for i in 0..6 {
        if i % 2 == 0 {
            core.clock.advance(1000);
        }
        let grantee = if i < 3 { CAROL } else { BOB };
        ids.push(
            core.create_grant(
                json!({"KeyId": key, "GranteePrincipal": grantee, "Operations": ["DescribeKey"]}),
            )
            .0,
        );
    }
    // The full entry, as AWS's GrantListEntry.
    let one = core.list(&key, json!({"GrantId": first}));
    assert_eq!(one["Truncated"], false);
    let entry = &one["Grants"][0];
    assert_eq!(
        entry["KeyId"],
        format!("arn:aws:kms:us-east-1:111122223333:key/{key}")
    );
    assert_eq!(entry["GrantId"], first.as_str());
    assert_eq!(entry["Name"], "first");
    assert_eq!(entry["CreationDate"], 1_700_000_000.0);
    assert_eq!(entry["GranteePrincipal"], BOB);
    assert_eq!(entry["RetiringPrincipal"], DEV);
    assert_eq!(entry["IssuingAccount"], "arn:aws:iam::111122223333:root");
    assert_eq!(entry["Operations"], json!(["Encrypt", "Decrypt"]));
    assert_eq!(
        entry["Constraints"],
        json!({"EncryptionContextEquals": {"purpose": "x"}})
    );
    // Filters.
    let carol = core.list(&key, json!({"GranteePrincipal": CAROL}));
    assert_eq!(carol["Grants"].as_array().unwrap().len(), 3);
    let none = core.list(&key, json!({"GranteePrincipal": DEV}));
    assert!(none["Grants"].as_array().unwrap().is_empty());
    // Pages of 2 cover every grant once, in creation order; a grant retired between pages does
    // not break the marker.
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut extra = json!({"Limit": 2});
        if let Some(m) = &marker {
            extra["Marker"] = json!(m);
        }
        let page = core.list(&key, extra);
        pages += 1;
        let grants = page["Grants"].as_array().unwrap();
        assert!(grants.len() <= 2);
        seen.extend(
            grants
                .iter()
                .map(|g| g["GrantId"].as_str().unwrap().to_owned()),
        );
        if pages == 1 {
            // Retire the first grant of the next page: the marker still works.
            let next = page["NextMarker"].as_str().unwrap();
            let next_id = next.split_once('.').unwrap().1;
            core.dev("RevokeGrant", json!({"KeyId": key, "GrantId": next_id}))
                .unwrap();
            ids.retain(|id| id != next_id);
        }
        if page["Truncated"] == false {
            assert!(page.get("NextMarker").is_none());
            break;
        }
        marker = Some(page["NextMarker"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen.len(), ids.len());
    let mut sorted_seen = seen.clone();
    sorted_seen.sort();
    let mut sorted_ids = ids.clone();
    sorted_ids.sort();
    assert_eq!(sorted_seen, sorted_ids);
    assert_eq!(seen[0], first);
    // Bad inputs.
    assert_eq!(
        code(core.dev("ListGrants", json!({"KeyId": key, "Marker": "nope"}))),
        "InvalidMarkerException"
    );
    for limit in [0, 101] {
        assert_eq!(
            code(core.dev("ListGrants", json!({"KeyId": key, "Limit": limit}))),
            "ValidationException"
        );
    }
    assert_eq!(
        code(core.dev("ListGrants", json!({"KeyId": key, "GrantId": "xyz"}))),
        "InvalidGrantIdException"
    );
    assert_eq!(
        code(core.dev("ListGrants", json!({}))),
        "ValidationException"
    );
    assert_eq!(
        code(core.dev(
            "ListGrants",
            json!({"KeyId": "6f1b3c1e-0000-4000-8000-000000000000"})
        )),
        "NotFoundException"
    );
}

#[test]
fn list_retirable_grants_walks_every_key_in_pages() {
    let core = Core::new();
    let keys: Vec<String> = (0..3).map(|_| core.create_key()).collect();
    let mut expected = Vec::new();
    for key in &keys {
        for _ in 0..2 {
            expected.push(
                core.create_grant(json!({
                    "KeyId": key, "GranteePrincipal": CAROL, "RetiringPrincipal": BOB,
                    "Operations": ["Encrypt"],
                }))
                .0,
            );
        }
        // Not retirable by bob.
        core.create_grant(json!({
            "KeyId": key, "GranteePrincipal": BOB, "RetiringPrincipal": CAROL,
            "Operations": ["Encrypt"],
        }));
    }
    core.create_key(); // a key without grants
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    for _ in 0..20 {
        let mut body = json!({"RetiringPrincipal": BOB, "Limit": 4});
        if let Some(m) = &marker {
            body["Marker"] = json!(m);
        }
        let page = core.dev("ListRetirableGrants", body).unwrap();
        for g in page["Grants"].as_array().unwrap() {
            assert_eq!(g["RetiringPrincipal"], BOB);
            seen.push(g["GrantId"].as_str().unwrap().to_owned());
        }
        if page["Truncated"] == false {
            marker = None;
            break;
        }
        marker = Some(page["NextMarker"].as_str().unwrap().to_owned());
    }
    assert!(marker.is_none(), "the listing ends");
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected);
    assert_eq!(
        code(core.dev(
            "ListRetirableGrants",
            json!({"RetiringPrincipal": BOB, "Marker": "x"})
        )),
        "InvalidMarkerException"
    );
    assert_eq!(
        code(core.dev("ListRetirableGrants", json!({}))),
        "ValidationException"
    );
}

#[test]
fn grant_tokens_ids_and_requests_are_validated() {
    let core = Core::new();
    let key = core.create_key();
    let (id, token) = core.create_grant(purpose_grant(&key));
    // A token this service issued is accepted wherever GrantTokens is; others are not.
    core.dev(
        "Encrypt",
        json!({"KeyId": key, "Plaintext": "AA==", "GrantTokens": [token]}),
    )
    .unwrap();
    for bad in ["bogus", "AAAA", &format!("{token}A")] {
        assert_eq!(
            code(core.dev(
                "Encrypt",
                json!({"KeyId": key, "Plaintext": "AA==", "GrantTokens": [bad]})
            )),
            "InvalidGrantTokenException"
        );
        assert_eq!(
            code(core.dev("RetireGrant", json!({"GrantToken": bad}))),
            "InvalidGrantTokenException"
        );
    }
    assert_eq!(
        code(core.dev("RetireGrant", json!({"GrantToken": "A".repeat(8193)}))),
        "ValidationException"
    );
    // A well-formed token of a grant that does not exist.
    let unknown =
        crate::kms::ops::create_grant::grant_token(&uuid::Uuid::parse_str(&key).unwrap(), &"ab".repeat(32))
            .unwrap();
    assert_eq!(
        code(core.dev("RetireGrant", json!({"GrantToken": unknown}))),
        "NotFoundException"
    );
    // RetireGrant needs a token, or key and grant id; they must agree.
    assert_eq!(
        code(core.dev("RetireGrant", json!({"KeyId": key}))),
        "ValidationException"
    );
    assert_eq!(
        code(core.dev(
            "RetireGrant",
            json!({"GrantToken": token, "GrantId": "cd".repeat(32)})
        )),
        "ValidationException"
    );
    for bad_id in ["xyz", &"AB".repeat(32), &"a".repeat(63)] {
        assert_eq!(
            code(core.dev("RevokeGrant", json!({"KeyId": key, "GrantId": bad_id}))),
            "InvalidGrantIdException"
        );
    }
    assert_eq!(
        code(core.dev(
            "RevokeGrant",
            json!({"KeyId": key, "GrantId": "a".repeat(129)})
        )),
        "ValidationException"
    );
    assert_eq!(
        code(core.dev(
            "RevokeGrant",
            json!({"KeyId": key, "GrantId": "ab".repeat(32)})
        )),
        "NotFoundException"
    );
    core.dev("RevokeGrant", json!({"KeyId": key, "GrantId": id}))
        .unwrap();

    let grant = |extra: Value| {
        let mut body = json!({"KeyId": key, "GranteePrincipal": BOB, "Operations": ["Encrypt"]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        core.dev("CreateGrant", body)
    };
    for (extra, want) in [
        (json!({"Operations": []}), "ValidationException"),
        (json!({"Operations": ["Fly"]}), "ValidationException"),
        (json!({"Operations": ["encrypt"]}), "ValidationException"),
        (json!({"Operations": ["Sign"]}), "ValidationException"),
        (
            json!({"Operations": ["GenerateMac"]}),
            "ValidationException",
        ),
        (json!({"GranteePrincipal": "bob"}), "ValidationException"),
        (json!({"GranteePrincipal": ""}), "ValidationException"),
        (
            json!({"RetiringPrincipal": "arn:aws:iam::1:user/a b"}),
            "ValidationException",
        ),
        (json!({"Name": "has space"}), "ValidationException"),
        (json!({"Name": "n".repeat(257)}), "ValidationException"),
        (
            json!({"Constraints": {"EncryptionContextSubset": {"": "x"}}}),
            "ValidationException",
        ),
        (
            json!({"Constraints": {"EncryptionContextSubset": {"a": "x".repeat(385)}}}),
            "ValidationException",
        ),
        (
            json!({"GrantTokens": ["bogus"]}),
            "InvalidGrantTokenException",
        ),
        (json!({"KeyId": "alias/nope"}), "NotFoundException"),
        (json!({"DryRun": true}), "DryRunOperationException"),
    ] {
        assert_eq!(code(grant(extra.clone())), want, "{extra}");
    }
    assert!(core.list(&key, json!({}))["Grants"]
        .as_array()
        .unwrap()
        .is_empty());
    // An alias names no key for grant operations, as AWS (KeyId: key id or key ARN).
    core.dev(
        "CreateAlias",
        json!({"AliasName": "alias/g", "TargetKeyId": key}),
    )
    .unwrap();
    assert_eq!(
        code(grant(json!({"KeyId": "alias/g"}))),
        "NotFoundException"
    );
    // Constraints only with operations that take an encryption context.
    let sign_key = core
        .dev(
            "CreateKey",
            json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"}),
        )
        .unwrap()["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let sign = |extra: Value| {
        let mut body =
            json!({"KeyId": sign_key, "GranteePrincipal": BOB, "Operations": ["Sign", "Verify"]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        core.dev("CreateGrant", body)
    };
    assert_eq!(
        code(sign(
            json!({"Constraints": {"EncryptionContextSubset": {"a": "b"}}})
        )),
        "ValidationException"
    );
    assert_eq!(
        code(sign(json!({"Operations": ["Encrypt"]}))),
        "ValidationException"
    );
    sign(json!({})).unwrap();
    // Not on a key pending deletion; listing and revoking still work there.
    core.dev(
        "ScheduleKeyDeletion",
        json!({"KeyId": sign_key, "PendingWindowInDays": 7}),
    )
    .unwrap();
    assert_eq!(code(sign(json!({}))), "KMSInvalidStateException");
    let listed = core.list(&sign_key, json!({}));
    let id = listed["Grants"][0]["GrantId"].as_str().unwrap().to_owned();
    core.dev("RevokeGrant", json!({"KeyId": sign_key, "GrantId": id}))
        .unwrap();
}

#[test]
fn a_grantee_with_create_grant_creates_only_grants_no_broader() {
    let core = Core::new();
    let key = core.create_key();
    core.create_grant(json!({
        "KeyId": key, "GranteePrincipal": BOB, "Operations": ["Encrypt", "CreateGrant"],
        "Constraints": {"EncryptionContextSubset": {"purpose": "x"}},
    }));
    let child = |ops: Value, constraints: Value| {
        let mut body = json!({"KeyId": key, "GranteePrincipal": CAROL, "Operations": ops});
        if !constraints.is_null() {
            body["Constraints"] = constraints;
        }
        core.bob("CreateGrant", body)
    };
    // Narrower: allowed.
    child(
        json!(["Encrypt"]),
        json!({"EncryptionContextSubset": {"purpose": "x", "team": "a"}}),
    )
    .unwrap();
    child(
        json!(["Encrypt"]),
        json!({"EncryptionContextEquals": {"purpose": "x"}}),
    )
    .unwrap();
    // Broader: denied.
    for (ops, constraints) in [
        (
            json!(["Decrypt"]),
            json!({"EncryptionContextSubset": {"purpose": "x"}}),
        ),
        (json!(["Encrypt"]), Value::Null),
        (
            json!(["Encrypt"]),
            json!({"EncryptionContextSubset": {"purpose": "y"}}),
        ),
        (
            json!(["Encrypt"]),
            json!({"EncryptionContextSubset": {"team": "a"}}),
        ),
    ] {
        assert_eq!(
            code(child(ops.clone(), constraints.clone())),
            "AccessDeniedException",
            "{ops} {constraints}"
        );
    }
    // Bob's grant does not let him list or revoke.
    assert_eq!(
        code(core.bob("ListGrants", json!({"KeyId": key}))),
        "AccessDeniedException"
    );
}

#[test]
fn fifty_thousand_grants_on_one_key_each_one_record_and_listed_in_full() {
    let core = Core::new();
    let key = core.create_key();
    let uuid: uuid::Uuid = key.parse().unwrap();
    let quotas = core.config.quotas;
    assert_eq!(quotas.grants_per_key, 50_000);
    let grantees = quotas.grants_per_key / quotas.grants_per_grantee;
    let mut made = std::collections::BTreeSet::new();
    for g in 0..grantees {
        let grantee = format!("arn:aws:iam::111122223333:user/grantee-{g}");
        for _ in 0..quotas.grants_per_grantee {
            let (out, touched) = core.run(
                &core.dev,
                "CreateGrant",
                &json!({"KeyId": key, "GranteePrincipal": grantee, "RetiringPrincipal": CAROL,
                        "Operations": ["Encrypt"]}),
            );
            let id = out.unwrap()["GrantId"].as_str().unwrap().to_owned();
            // Whatever the number of grants on the key, a grant commits its record alone.
            assert_eq!(touched, [Touched::Grant(uuid, id.clone())]);
            made.insert(id);
        }
    }
    assert_eq!(made.len(), 50_000);
    let err = core.dev(
        "CreateGrant",
        json!({"KeyId": key, "GranteePrincipal": CAROL, "Operations": ["Encrypt"]}),
    );
    assert_eq!(code(err), "LimitExceededException");

    // ListGrants pages through every one, once, in creation order.
    let mut listed = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut body = json!({"Limit": 100});
        if let Some(m) = &marker {
            body["Marker"] = json!(m);
        }
        let page = core.list(&key, body);
        let grants = page["Grants"].as_array().unwrap();
        listed.extend(
            grants
                .iter()
                .map(|g| g["GrantId"].as_str().unwrap().to_owned()),
        );
        if page["Truncated"] != json!(true) {
            assert_eq!(page.get("NextMarker"), None);
            break;
        }
        assert_eq!(grants.len(), 100);
        marker = Some(page["NextMarker"].as_str().unwrap().to_owned());
    }
    assert_eq!(listed.len(), 50_000);
    assert_eq!(
        listed
            .iter()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        made
    );
    // One grantee's grants, through its index.
    let page = core.list(
        &key,
        json!({"GranteePrincipal": "arn:aws:iam::111122223333:user/grantee-7", "Limit": 100}),
    );
    assert_eq!(page["Grants"].as_array().unwrap().len(), 100);
    assert!(page["Grants"]
        .as_array()
        .unwrap()
        .iter()
        .all(|g| g["GranteePrincipal"] == "arn:aws:iam::111122223333:user/grantee-7"));

    // Retiring one commits that record alone, and makes room for one more.
    let (out, touched) = core.run(
        &core.dev,
        "RevokeGrant",
        &json!({"KeyId": key, "GrantId": listed[0]}),
    );
    out.unwrap();
    assert_eq!(touched, [Touched::Grant(uuid, listed[0].clone())]);
    core.create_grant(json!({"KeyId": key, "GranteePrincipal": CAROL, "Operations": ["Encrypt"]}));
}

#[test]
fn grant_quotas_per_key_and_per_grantee_are_settable() {
    let mut core = Core::new();
    core.config.quotas.grants_per_key = 5;
    core.config.quotas.grants_per_grantee = 3;
    let key = core.create_key();
    let grant = |grantee: &str| {
        core.dev(
            "CreateGrant",
            json!({"KeyId": key, "GranteePrincipal": grantee, "Operations": ["Encrypt"]}),
        )
    };
    for _ in 0..3 {
        grant(BOB).unwrap();
    }
    let err = grant(BOB).unwrap_err();
    assert_eq!(err.aws_code(), "LimitExceededException");
    assert!(err.to_string().contains(BOB), "{err}");
    grant(CAROL).unwrap();
    grant(CAROL).unwrap();
    assert_eq!(code(grant(CAROL)), "LimitExceededException");
    // Another key has its own count.
    let other = core.create_key();
    core.dev(
        "CreateGrant",
        json!({"KeyId": other, "GranteePrincipal": BOB, "Operations": ["Encrypt"]}),
    )
    .unwrap();
    // A retry by name answers the grant it made, even at the quota.
    let mut core = Core::new();
    core.config.quotas.grants_per_grantee = 1;
    let key = core.create_key();
    let body =
        json!({"KeyId": key, "GranteePrincipal": BOB, "Operations": ["Encrypt"], "Name": "job-1"});
    let first = core.create_grant(body.clone());
    assert_eq!(core.create_grant(body), first);
}

#[test]
fn grants_survive_the_sealed_record_codec() {
    let core = Core::new();
    let key = core.create_key();
    core.create_grant(purpose_grant(&key));
    core.create_grant(json!({
        "KeyId": key, "GranteePrincipal": CAROL, "Operations": ["DescribeKey"], "Name": "n",
        "Constraints": {"EncryptionContextEquals": {"a": "b"}},
    }));
    let uuid: uuid::Uuid = key.parse().unwrap();
    let before = core.list(&key, json!({}));
    // The key's record without its grants, and one record per grant.
    let (restored, grants) = {
        let store = core.state.read();
        let key = store.raw(&uuid).unwrap();
        let record = crate::durability::seal::codec::encode_key(key).unwrap();
        let grants: Vec<_> = key
            .grants
            .iter()
            .map(|g| {
                let id = crate::durability::seal::codec::grant_record_id(&uuid, &g.grant_id);
                let record = crate::durability::seal::codec::encode_grant(g).unwrap();
                crate::durability::seal::codec::decode_grant(&id, &record).unwrap()
            })
            .collect();
        (crate::durability::seal::codec::decode_key(&record).unwrap(), grants)
    };
    assert!(restored.grants.is_empty());
    assert_eq!(grants.len(), 2);
    // A store loaded from the records answers the same grants, and they still work.
    let mut keys = crate::keys::KeyStore::default();
    keys.insert(restored, &core.config).unwrap();
    for (key_id, grant) in grants {
        assert_eq!(key_id, uuid);
        keys.load_grant(&key_id, grant).unwrap();
    }
    core.state
        .replace(keys, crate::access::principals::Principals::default());
    assert_eq!(core.list(&key, json!({})), before);
    core.bob("Encrypt", encrypt_body(&key, json!({"purpose": "x"})))
        .unwrap();
    assert_eq!(
        code(core.bob("Encrypt", encrypt_body(&key, json!({"purpose": "y"})))),
        "AccessDeniedException"
    );
}

#[test]
fn a_grant_record_names_its_key_and_id() {
    let core = Core::new();
    let key = core.create_key();
    let other = core.create_key();
    core.create_grant(purpose_grant(&key));
    let uuid: uuid::Uuid = key.parse().unwrap();
    let store = core.state.read();
    let grant = store
        .raw(&uuid)
        .unwrap()
        .grants
        .iter()
        .next()
        .unwrap()
        .clone();
    let record = crate::durability::seal::codec::encode_grant(&grant).unwrap();
    use crate::durability::seal::codec::{decode_grant, grant_record_id};
    // Moved to another key's id, or another grant id: refused.
    let elsewhere = grant_record_id(&other.parse().unwrap(), &grant.grant_id);
    assert!(decode_grant(&elsewhere, &record).is_err());
    let renamed = grant_record_id(&uuid, &"0".repeat(64));
    assert!(decode_grant(&renamed, &record).is_err());
    assert!(decode_grant(&uuid.as_bytes()[..], &record).is_err());
    assert!(decode_grant(&grant_record_id(&uuid, &grant.grant_id), &record).is_ok());
    // A grant for a key that is not loaded is refused by the store.
    let mut empty = crate::keys::KeyStore::default();
    assert!(empty.load_grant(&uuid, grant).is_err());
}

#[test]
fn a_grant_record_written_with_its_token_still_loads() {
    // Records written before the token was derived on answer carry a `token` member.
    let core = Core::new();
    let key = core.create_key();
    let (grant_id, token) = core.create_grant(purpose_grant(&key));
    let uuid: uuid::Uuid = key.parse().unwrap();
    let grant = core.state.read().raw(&uuid).unwrap().grants.get(&grant_id).unwrap().clone();
    let record = crate::durability::seal::codec::encode_grant(&grant).unwrap();
    let mut value: serde_cbor::Value = serde_cbor::from_slice(&record).unwrap();
    let serde_cbor::Value::Map(fields) = &mut value else {
        panic!("a grant record is a map")
    };
    let serde_cbor::Value::Map(inner) = fields
        .get_mut(&serde_cbor::Value::Text("grant".to_owned()))
        .unwrap()
    else {
        panic!("the grant is a map")
    };
    inner.insert(
        serde_cbor::Value::Text("token".to_owned()),
        serde_cbor::Value::Text(token.clone()),
    );
    let old = serde_cbor::to_vec(&value).unwrap();
    let id = crate::durability::seal::codec::grant_record_id(&uuid, &grant_id);
    let (_, loaded) = crate::durability::seal::codec::decode_grant(&id, &old).unwrap();
    assert_eq!(loaded.grant_id, grant_id);
    // The token answered for it is the one first issued.
    let again = core.create_grant(purpose_grant(&key));
    assert_ne!(again.0, grant_id, "no Name: a new grant");
    assert_eq!(
        crate::kms::ops::create_grant::grant_token(&uuid, &grant_id).unwrap(),
        token
    );
}
