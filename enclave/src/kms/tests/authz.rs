//! Authorization, table-driven: for every operation of the table that touches a key or an
//! alias, a principal without rights on it is refused and changes nothing.
//!
//! The story: authorization once ran as a pre-check beside the operations. It guessed which
//! member named "the key" and failed open when it could not parse its own view of the body, so
//! an ill-typed extra member (`"Operations": 1`), or a second key-bearing member naming the
//! caller's own key (`TargetKeyId` on a Decrypt, `KeyId` on a DeleteAlias), let any principal
//! use and take over keys it had no right to. Now operations reach keys only through the
//! authorizing guard; these tests try every such trick on every operation, from the table, so
//! a new operation is covered (its [`sample`] arm is required by an exhaustive match).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::kms::state::{Caller, State};
use crate::config::Config;
use crate::kms::dispatch::{request_members, Operation, Scope};
use crate::env::{Env, FixedClock};
use crate::error::KmsError;
use crate::kms::state::Touched;

const OWNER: &str = "arn:aws:iam::111122223333:user/owner";
const MALLORY: &str = "arn:aws:iam::111122223333:user/mallory";
/// The grantee of the owner's grants (never a caller here).
const CAROL: &str = "arn:aws:iam::111122223333:user/carol";
const NOBODY: &str = "arn:aws:iam::111122223333:user/nobody";

/// Every member that names a key, an alias or a grant (and so a key).
const KEY_MEMBERS: &[&str] = &[
    "KeyId",
    "TargetKeyId",
    "DestinationKeyId",
    "SourceKeyId",
    "AliasName",
];

/// Members the operations do not all define, to add ill-typed.
const STRAY_MEMBERS: &[&str] = &[
    "KeyId",
    "TargetKeyId",
    "DestinationKeyId",
    "SourceKeyId",
    "AliasName",
    "Operations",
    "GrantTokens",
    "EncryptionContext",
    "Recipient",
    "CiphertextBlob",
];

/// The kind of key an operation's sample needs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Symmetric,
    Hmac,
    Sign,
    Agreement,
    External,
    PendingDeletion,
}

struct Fixture {
    state: State,
    config: Config,
    env: Env,
    owner: Caller,
    /// May use only her own key, and any alias (as alias permissions are often granted).
    mallory: Caller,
    /// Has no identity policy at all.
    nobody: Caller,
    /// Mallory's own key, alias and ciphertext.
    own_key: String,
    own_alias: String,
    own_blob: String,
    serial: std::cell::Cell<u32>,
    /// The keys [`Fixture::fingerprint`] looks at (all when empty).
    watched: std::cell::RefCell<Vec<String>>,
}

/// What the owner holds for one operation's test.
struct Victim {
    key: String,
    alias: String,
    blob: String,
    grant_id: String,
    grant_token: String,
    /// A MAC, a signature or a public key the sample needs.
    extra: String,
}

fn code(result: &Result<Value, KmsError>) -> &'static str {
    match result {
        Ok(_) => "Ok",
        Err(e) => e.aws_code(),
    }
}

impl Fixture {
    fn new() -> Self {
        let clock = Arc::new(FixedClock::new(1_700_000_000_000));
        let env = crate::kms::ops::test_support::env(clock);
        let config = Config::default();
        let owner = Caller {
            arn: OWNER.to_owned(),
            access_key_id: "AKIAOWNERTEST".to_owned(),
            identity_policy: Some(crate::kms::authz::allow_all().unwrap()),
        };
        let mut fx = Fixture {
            state: State::default(),
            config,
            env,
            owner,
            mallory: Caller {
                arn: MALLORY.to_owned(),
                access_key_id: "AKIAMALLORYTEST".to_owned(),
                identity_policy: None,
            },
            nobody: Caller {
                arn: NOBODY.to_owned(),
                access_key_id: "AKIANOBODYTEST".to_owned(),
                identity_policy: None,
            },
            own_key: String::new(),
            own_alias: "alias/mallory-own".to_owned(),
            own_blob: String::new(),
            serial: std::cell::Cell::new(0),
            watched: std::cell::RefCell::default(),
        };
        fx.own_key = fx.create_key(Kind::Symmetric);
        fx.ok(
            "CreateAlias",
            json!({"AliasName": fx.own_alias, "TargetKeyId": fx.own_key}),
        );
        fx.own_blob = fx.ok(
            "Encrypt",
            json!({"KeyId": fx.own_key, "Plaintext": "bWluZQ=="}),
        )["CiphertextBlob"]
            .as_str()
            .unwrap()
            .to_owned();
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Action": "kms:*",
                "Resource": [
                    fx.config.key_arn(&fx.own_key.parse().unwrap()),
                    // Every alias: only the keys behind them stand in her way.
                    format!("arn:aws:kms:{}:{}:alias/*", fx.config.region, fx.config.account),
                ],
            }],
        });
        fx.mallory.identity_policy = Some(Arc::new(
            crate::access::policy::parse_identity(&policy.to_string()).unwrap(),
        ));
        fx
    }

    fn run(
        &self,
        caller: &Caller,
        op: &str,
        body: &Value,
    ) -> (Result<Value, KmsError>, Vec<Touched>) {
        crate::kms::ops::test_support::run(&self.state, &self.config, &self.env, caller, op, body)
    }

    /// Runs `op` as the owner; it must succeed.
    fn ok(&self, op: &str, body: Value) -> Value {
        match self.run(&self.owner, op, &body).0 {
            Ok(v) => v,
            Err(e) => panic!("{op} {body}: {e:?}"),
        }
    }

    fn next(&self) -> u32 {
        self.serial.set(self.serial.get() + 1);
        self.serial.get()
    }

    fn create_key(&self, kind: Kind) -> String {
        let body = match kind {
            Kind::Symmetric | Kind::PendingDeletion => json!({}),
            Kind::Hmac => json!({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}),
            Kind::Sign => json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"}),
            Kind::Agreement => json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "KEY_AGREEMENT"}),
            Kind::External => json!({"Origin": "EXTERNAL"}),
        };
        let id = self.ok("CreateKey", body)["KeyMetadata"]["KeyId"]
            .as_str()
            .unwrap()
            .to_owned();
        if kind == Kind::PendingDeletion {
            self.ok(
                "ScheduleKeyDeletion",
                json!({"KeyId": id, "PendingWindowInDays": 7}),
            );
        }
        id
    }

    /// The owner's resources for one operation: a key of `kind` with an alias and a grant (to
    /// someone else), and a ciphertext under a symmetric key of the owner's.
    fn victim(&self, kind: Kind) -> Victim {
        let key = self.create_key(kind);
        let n = self.next();
        let alias = format!("alias/victim-{n}");
        let symmetric = if kind == Kind::Symmetric {
            key.clone()
        } else {
            self.create_key(Kind::Symmetric)
        };
        let blob = self.ok(
            "Encrypt",
            json!({"KeyId": symmetric, "Plaintext": "c2VjcmV0"}),
        )["CiphertextBlob"]
            .as_str()
            .unwrap()
            .to_owned();
        if kind != Kind::PendingDeletion {
            self.ok(
                "CreateAlias",
                json!({"AliasName": alias, "TargetKeyId": key}),
            );
        }
        let operation = match kind {
            Kind::Hmac => "GenerateMac",
            Kind::Sign => "Sign",
            Kind::Agreement => "DeriveSharedSecret",
            _ => "Encrypt",
        };
        let grant = if kind == Kind::PendingDeletion {
            json!({"GrantId": "", "GrantToken": ""})
        } else {
            self.ok(
                "CreateGrant",
                json!({"KeyId": key, "GranteePrincipal": CAROL, "Operations": [operation], "RetiringPrincipal": OWNER}),
            )
        };
        let extra = match kind {
            Kind::Hmac => self.ok(
                "GenerateMac",
                json!({"KeyId": key, "Message": "bWFj", "MacAlgorithm": "HMAC_SHA_256"}),
            )["Mac"]
                .as_str()
                .unwrap()
                .to_owned(),
            Kind::Sign => self.ok(
                "Sign",
                json!({"KeyId": key, "Message": "c2lnbg==", "SigningAlgorithm": "ECDSA_SHA_256"}),
            )["Signature"]
                .as_str()
                .unwrap()
                .to_owned(),
            Kind::Agreement => self.ok("GetPublicKey", json!({"KeyId": key}))["PublicKey"]
                .as_str()
                .unwrap()
                .to_owned(),
            _ => String::new(),
        };
        Victim {
            key,
            alias,
            blob,
            grant_id: grant["GrantId"].as_str().unwrap().to_owned(),
            grant_token: grant["GrantToken"].as_str().unwrap().to_owned(),
            extra,
        }
    }

    /// What the owner sees of every key and alias: changes by anyone show here.
    fn fingerprint(&self) -> Vec<String> {
        let keys = self.ok("ListKeys", json!({"Limit": 1000}));
        let mut out = vec![keys.to_string()];
        let mut marker = Value::Null;
        loop {
            let page = self.ok("ListAliases", json!({"Limit": 100, "Marker": marker}));
            out.push(page["Aliases"].to_string());
            match page.get("NextMarker") {
                Some(next) => marker = next.clone(),
                None => break,
            }
        }
        let watched = self.watched.borrow();
        for key in keys["Keys"].as_array().unwrap() {
            let id = &key["KeyId"];
            if !watched.is_empty() && !watched.iter().any(|w| id == w) {
                continue;
            }
            for op in [
                "DescribeKey",
                "GetKeyPolicy",
                "ListGrants",
                "ListResourceTags",
                "GetKeyRotationStatus",
                "ListKeyRotations",
            ] {
                let (result, _) = self.run(&self.owner, op, &json!({"KeyId": id}));
                out.push(format!("{op} {id}: {result:?}"));
            }
        }
        out
    }
}

/// The owner's request for `op` on the victim's resources, or `None` for an operation that
/// touches no key or alias (account-level, or unsupported). Exhaustive: a new operation must
/// say what it touches.
fn sample(op: Operation, fx: &Fixture, v: &Victim) -> Option<(Kind, Value)> {
    use Operation as O;
    let key = &v.key;
    let n = fx.next();
    Some(match op {
        O::GetKeyPolicy => (
            Kind::Symmetric,
            json!({"KeyId": key, "PolicyName": "default"}),
        ),
        O::ListKeyPolicies => (Kind::Symmetric, json!({"KeyId": key})),
        O::PutKeyPolicy => (
            Kind::Symmetric,
            json!({"KeyId": key, "PolicyName": "default",
                   "Policy": crate::access::policy::Policy::default_key_policy(&fx.config.account)}),
        ),
        O::CancelKeyDeletion => (Kind::PendingDeletion, json!({"KeyId": key})),
        O::CreateAlias => (
            Kind::Symmetric,
            json!({"AliasName": format!("alias/new-{n}"), "TargetKeyId": key}),
        ),
        O::DeleteAlias => (Kind::Symmetric, json!({"AliasName": v.alias})),
        O::DescribeKey | O::DisableKey | O::EnableKey | O::ListResourceTags => {
            (Kind::Symmetric, json!({"KeyId": key}))
        }
        O::ScheduleKeyDeletion => (
            Kind::Symmetric,
            json!({"KeyId": key, "PendingWindowInDays": 7}),
        ),
        O::TagResource => (
            Kind::Symmetric,
            json!({"KeyId": key, "Tags": [{"TagKey": "team", "TagValue": "a"}]}),
        ),
        O::UntagResource => (Kind::Symmetric, json!({"KeyId": key, "TagKeys": ["team"]})),
        O::UpdateAlias => (
            Kind::Symmetric,
            json!({"AliasName": v.alias, "TargetKeyId": key}),
        ),
        O::UpdateKeyDescription => (Kind::Symmetric, json!({"KeyId": key, "Description": "x"})),
        O::Decrypt => (Kind::Symmetric, json!({"CiphertextBlob": v.blob})),
        O::Encrypt => (Kind::Symmetric, json!({"KeyId": key, "Plaintext": "aGk="})),
        O::GenerateDataKey | O::GenerateDataKeyWithoutPlaintext => {
            (Kind::Symmetric, json!({"KeyId": key, "KeySpec": "AES_256"}))
        }
        O::ReEncrypt => (
            Kind::Symmetric,
            json!({"CiphertextBlob": v.blob, "DestinationKeyId": key}),
        ),
        O::DisableKeyRotation
        | O::EnableKeyRotation
        | O::GetKeyRotationStatus
        | O::RotateKeyOnDemand => (Kind::Symmetric, json!({"KeyId": key})),
        O::ListKeyRotations => (
            Kind::Symmetric,
            json!({"KeyId": key, "IncludeKeyMaterial": "ALL_KEY_MATERIAL"}),
        ),
        O::GenerateMac => (
            Kind::Hmac,
            json!({"KeyId": key, "Message": "bWFj", "MacAlgorithm": "HMAC_SHA_256"}),
        ),
        O::VerifyMac => (
            Kind::Hmac,
            json!({"KeyId": key, "Message": "bWFj", "MacAlgorithm": "HMAC_SHA_256", "Mac": v.extra}),
        ),
        // With a KeyMaterialId: a caller without the action learns nothing of the key's
        // materials (AccessDenied comes before NotFoundException for an id not the key's).
        O::DeleteImportedKeyMaterial => (
            Kind::External,
            json!({"KeyId": key, "KeyMaterialId": "ab".repeat(32)}),
        ),
        O::GetParametersForImport => (
            Kind::External,
            json!({"KeyId": key, "WrappingAlgorithm": "RSAES_OAEP_SHA_256", "WrappingKeySpec": "RSA_2048"}),
        ),
        O::ImportKeyMaterial => (
            Kind::External,
            json!({"KeyId": key, "ImportToken": "AAAA", "EncryptedKeyMaterial": "AAAA",
                   "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE",
                   "ImportType": "EXISTING_KEY_MATERIAL", "KeyMaterialId": "cd".repeat(32)}),
        ),
        O::DeriveSharedSecret => (
            Kind::Agreement,
            json!({"KeyId": key, "KeyAgreementAlgorithm": "ECDH", "PublicKey": v.extra}),
        ),
        O::GenerateDataKeyPair | O::GenerateDataKeyPairWithoutPlaintext => (
            Kind::Symmetric,
            json!({"KeyId": key, "KeyPairSpec": "ECC_NIST_P256"}),
        ),
        O::GetPublicKey => (Kind::Sign, json!({"KeyId": key})),
        O::Sign => (
            Kind::Sign,
            json!({"KeyId": key, "Message": "c2lnbg==", "SigningAlgorithm": "ECDSA_SHA_256"}),
        ),
        O::Verify => (
            Kind::Sign,
            json!({"KeyId": key, "Message": "c2lnbg==", "SigningAlgorithm": "ECDSA_SHA_256",
                   "Signature": v.extra}),
        ),
        O::CreateGrant => (
            Kind::Symmetric,
            json!({"KeyId": key, "GranteePrincipal": MALLORY, "Operations": ["Decrypt"]}),
        ),
        O::ListGrants => (Kind::Symmetric, json!({"KeyId": key})),
        O::RetireGrant => (Kind::Symmetric, json!({"GrantToken": v.grant_token})),
        O::RevokeGrant => (
            Kind::Symmetric,
            json!({"KeyId": key, "GrantId": v.grant_id}),
        ),
        O::CreateKey
        | O::ListAliases
        | O::ListKeys
        | O::GenerateRandom
        | O::ListRetirableGrants
        | O::ConnectCustomKeyStore
        | O::CreateCustomKeyStore
        | O::DeleteCustomKeyStore
        | O::DescribeCustomKeyStores
        | O::DisconnectCustomKeyStore
        | O::ReplicateKey
        | O::UpdateCustomKeyStore
        | O::UpdatePrimaryRegion => return None,
    })
}

/// Operations whose owner sample answers an error other than AccessDenied by design (an import
/// token that was never issued; a material id that is not the key's).
fn owner_may_fail(op: Operation) -> bool {
    matches!(
        op,
        Operation::ImportKeyMaterial | Operation::DeleteImportedKeyMaterial
    )
}

fn with(body: &Value, member: &str, value: Value) -> Value {
    let mut body = body.clone();
    body.as_object_mut()
        .unwrap()
        .insert(member.to_owned(), value);
    body
}

/// The value of a key-bearing member that names one of mallory's own resources.
fn own_value(fx: &Fixture, member: &str) -> Value {
    match member {
        "AliasName" => json!(fx.own_alias),
        _ => json!(fx.own_key),
    }
}

/// Runs `body` as `caller`: it must be refused with one of `codes` and change nothing.
fn refused(fx: &Fixture, caller: &Caller, op: Operation, body: &Value, codes: &[&str]) {
    let before = fx.fingerprint();
    let (result, touched) = fx.run(caller, op.name(), body);
    assert!(
        codes.contains(&code(&result)),
        "{} {body} as {}: answered {result:?}, expected one of {codes:?}",
        op.name(),
        caller.arn
    );
    assert!(
        touched.is_empty(),
        "{} {body}: touched {touched:?}",
        op.name()
    );
    assert_eq!(
        before,
        fx.fingerprint(),
        "{} {body} changed the state",
        op.name()
    );
}

/// The table-driven test: every operation that touches a key or an alias.
#[test]
fn no_operation_lets_a_stranger_touch_a_key_or_alias() {
    let fx = Fixture::new();
    let mut covered = 0;
    for &op in Operation::ALL {
        let probe = fx.victim(Kind::Symmetric);
        let Some((kind, _)) = sample(op, &fx, &probe) else {
            assert!(
                op.scope() == Scope::Account,
                "{} touches resources but has no sample",
                op.name()
            );
            continue;
        };
        assert_eq!(op.scope(), Scope::Resources, "{}", op.name());
        let victim = fx.victim(kind);
        let (_, body) = sample(op, &fx, &victim).unwrap();
        *fx.watched.borrow_mut() = vec![victim.key.clone(), fx.own_key.clone()];
        let defined = request_members(op);
        for member in body.as_object().unwrap().keys() {
            assert!(
                defined.contains(&member.as_str()),
                "{}: the sample's {member} is not a member of the request",
                op.name()
            );
        }
        const DENIED: &[&str] = &["AccessDeniedException"];
        // Without rights: no permission at all, and permission on her own resources only.
        refused(&fx, &fx.nobody, op, &body, DENIED);
        refused(&fx, &fx.mallory, op, &body, DENIED);
        // Every other key-bearing member added, naming mallory's own key or alias.
        let mut all_own = body.clone();
        for member in KEY_MEMBERS {
            if body.get(*member).is_none() {
                let one = with(&body, member, own_value(&fx, member));
                refused(
                    &fx,
                    &fx.mallory,
                    op,
                    &one,
                    &[
                        "AccessDeniedException",
                        "IncorrectKeyException",
                        "ValidationException",
                    ],
                );
                all_own = with(&all_own, member, own_value(&fx, member));
            }
        }
        refused(
            &fx,
            &fx.mallory,
            op,
            &all_own,
            &[
                "AccessDeniedException",
                "IncorrectKeyException",
                "ValidationException",
            ],
        );
        // With two or more of the victim's resources named, each swapped for her own in turn.
        let victim_values = [
            &victim.key,
            &victim.alias,
            &victim.blob,
            &victim.grant_token,
        ];
        let names_victim = |member: &str| {
            body.get(member)
                .is_some_and(|v| victim_values.iter().any(|w| v == *w))
        };
        let named: Vec<&str> = KEY_MEMBERS
            .iter()
            .copied()
            .filter(|m| names_victim(m))
            .collect();
        let victim_refs = named.len()
            + usize::from(names_victim("CiphertextBlob"))
            + usize::from(names_victim("GrantToken"));
        if victim_refs >= 2 {
            for member in &named {
                let swapped = with(&body, member, own_value(&fx, member));
                refused(&fx, &fx.mallory, op, &swapped, DENIED);
            }
            if names_victim("CiphertextBlob") {
                let swapped = with(&body, "CiphertextBlob", json!(fx.own_blob));
                refused(&fx, &fx.mallory, op, &swapped, DENIED);
            }
        }
        // Ill-typed members: one the operation defines is a SerializationException for anyone;
        // one it does not define is ignored, as AWS does, and authorization still decides.
        for member in &defined {
            let ill = with(&body, member, json!([[1]]));
            refused(&fx, &fx.mallory, op, &ill, &["SerializationException"]);
            refused(&fx, &fx.owner, op, &ill, &["SerializationException"]);
        }
        for member in STRAY_MEMBERS {
            if !defined.contains(member) {
                for ill in [json!(1), json!(false), json!([]), json!({"a": 7})] {
                    refused(&fx, &fx.mallory, op, &with(&body, member, ill), DENIED);
                }
            }
        }
        // The owner's own use still works.
        let (result, _) = fx.run(&fx.owner, op.name(), &body);
        if owner_may_fail(op) {
            assert_ne!(
                code(&result),
                "AccessDeniedException",
                "{}: {result:?}",
                op.name()
            );
        } else {
            assert!(
                result.is_ok(),
                "{} {body} as the owner: {result:?}",
                op.name()
            );
        }
        covered += 1;
    }
    assert!(covered >= 40, "only {covered} operations covered");
}

/// Mallory's own key works for her (the policy above is not simply "deny everything").
#[test]
fn mallory_may_use_her_own_key_and_alias() {
    let fx = Fixture::new();
    let (result, _) = fx.run(
        &fx.mallory,
        "Encrypt",
        &json!({"KeyId": fx.own_alias, "Plaintext": "aGk="}),
    );
    assert!(result.is_ok(), "{result:?}");
    let (result, _) = fx.run(
        &fx.mallory,
        "Decrypt",
        &json!({"CiphertextBlob": fx.own_blob}),
    );
    assert_eq!(result.unwrap()["Plaintext"], "bWluZQ==");
}

/// A deterministic generator for the randomized test (not for anything secret).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let i = usize::try_from(self.next() % items.len() as u64).unwrap();
        &items[i]
    }
}

/// Random well-formed and malformed requests from principals without rights on the owner's
/// keys never succeed and never change anything. `EKMS_AUTHZ_RANDOM_ITERATIONS` runs longer
/// (CI runs the fixed seed at the default count); `EKMS_AUTHZ_RANDOM_SEED` picks another seed.
#[test]
fn random_requests_from_strangers_never_succeed() {
    let iterations: usize = std::env::var("EKMS_AUTHZ_RANDOM_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let seed: u64 = std::env::var("EKMS_AUTHZ_RANDOM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x656b_6d73);
    let fx = Fixture::new();
    let victims: Vec<Victim> = [
        Kind::Symmetric,
        Kind::Hmac,
        Kind::Sign,
        Kind::Agreement,
        Kind::External,
    ]
    .into_iter()
    .map(|k| fx.victim(k))
    .collect();
    let mut members: Vec<&'static str> = Operation::ALL
        .iter()
        .flat_map(|op| request_members(*op))
        .collect();
    members.sort_unstable();
    members.dedup();
    let mut values: Vec<Value> = vec![
        json!(null),
        json!(1),
        json!(-1),
        json!(1.5),
        json!(true),
        json!(""),
        json!([]),
        json!({}),
        json!([[1]]),
        json!("alias/aws/s3"),
        json!("AAAA"),
        json!(["Encrypt", "Decrypt"]),
        json!({"a": "b"}),
        json!([{"TagKey": "a", "TagValue": "b"}]),
        json!(7),
        json!("SYMMETRIC_DEFAULT"),
        json!("ECDSA_SHA_256"),
        json!("HMAC_SHA_256"),
        json!(MALLORY),
        json!(crate::access::policy::Policy::default_key_policy(
            &fx.config.account
        )),
    ];
    for v in &victims {
        values.extend([
            json!(v.key),
            json!(fx.config.key_arn(&v.key.parse().unwrap())),
            json!(v.alias),
            json!(fx.config.alias_arn(&v.alias)),
            json!(v.blob),
            json!(v.grant_id),
            json!(v.grant_token),
            json!(v.extra),
        ]);
    }
    let before = fx.fingerprint();
    let mut rng = SplitMix(seed);
    let mut codes = std::collections::BTreeMap::<&str, usize>::new();
    for i in 0..iterations {
        let op = *rng.pick(Operation::ALL);
        let mut body = Map::new();
        // Mostly the operation's own members, some of everyone's.
        let own = request_members(op);
        let count = rng.next() % 6;
        for _ in 0..count {
            let member = if !own.is_empty() && !rng.next().is_multiple_of(4) {
                *rng.pick(&own)
            } else {
                *rng.pick(&members)
            };
            body.insert(member.to_owned(), rng.pick(&values).clone());
        }
        let body = Value::Object(body);
        let caller = if i % 2 == 0 { &fx.nobody } else { &fx.mallory };
        let (result, touched) = fx.run(caller, op.name(), &body);
        assert!(
            result.is_err(),
            "seed {seed} iteration {i}: {} {body} as {} succeeded: {result:?}",
            op.name(),
            caller.arn
        );
        assert!(
            touched.is_empty(),
            "seed {seed} iteration {i}: {} {body}",
            op.name()
        );
        *codes.entry(code(&result)).or_default() += 1;
    }
    assert_eq!(before, fx.fingerprint(), "seed {seed}: the state changed");
    // The run reached past parsing and validation often enough to test authorization.
    assert!(
        codes.get("AccessDeniedException").copied().unwrap_or(0) > iterations / 20,
        "{codes:?}"
    );
}

/// A sink that checks it is given each change while the key store is still locked for writing.
struct LockedSink<'s> {
    state: &'s State,
    queued: std::cell::RefCell<Vec<Touched>>,
}

impl crate::kms::authz::Effects for LockedSink<'_> {
    fn answer_key(&self, _: &str) {}

    fn changed(&self, touched: Vec<Touched>) -> crate::error::KmsResult<()> {
        assert!(
            self.state.keys_write_locked(),
            "a change was queued after its lock was released: {touched:?}"
        );
        self.queued.borrow_mut().extend(touched);
        Ok(())
    }
}

/// An Encrypt that ran between a rotation's change and its queueing used the new key version
/// while its answer waited only for an earlier commit. Changes are now queued by the write
/// guard before it releases its lock, so any request that can see a change is answered only
/// after the commit that carries it.
#[test]
fn changes_are_queued_before_their_lock_is_released() {
    let fx = Fixture::new();
    let key = fx.create_key(Kind::Symmetric);
    let sink = LockedSink {
        state: &fx.state,
        queued: std::cell::RefCell::default(),
    };
    for (op, body) in [
        ("RotateKeyOnDemand", json!({"KeyId": key})),
        ("DisableKey", json!({"KeyId": key})),
        (
            "CreateAlias",
            json!({"AliasName": "alias/locked", "TargetKeyId": key}),
        ),
        ("CreateKey", json!({})),
    ] {
        let ctx = crate::kms::authz::Ctx::new(&fx.state, &fx.config, &fx.env, &fx.owner, &sink);
        let op = crate::kms::dispatch::parse_target(Some(&format!("TrentService.{op}"))).unwrap();
        crate::kms::dispatch::handle(&ctx, op, body.to_string().as_bytes()).unwrap();
        assert!(!ctx.effects_failed(), "{op:?}");
    }
    assert_eq!(sink.queued.borrow().len(), 4);
}
