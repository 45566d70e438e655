//! What the fuzz targets share: a deterministic enclave environment (fixed clock, seeded
//! entropy, mock attester), a "world" of keys, aliases, a grant and sample blobs made once per
//! process and rebuilt into a fresh [`State`] for every input, a JSON generator for
//! structure-aware request bodies, and a mock CA valid at the fixed clock.
//!
//! Everything made once per process is made with the enclave's own operations
//! (`dispatch::handle`), so what the targets start from is what a real enclave holds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbitrary::Unstructured;
use aws_lc_rs::encoding::AsDer as _;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ekms_enclave::kms::authz::Ctx;
use ekms_enclave::config::Config;
use ekms_enclave::kms::dispatch::{self, Operation};
use ekms_enclave::env::{Entropy, Env, FixedClock};
use ekms_enclave::error::KmsError;
use ekms_enclave::keys::{Alias, KeyStore};
use ekms_enclave::kms::ops::{Caller, State};
use ekms_enclave::access::principals::Principals;
use ekms_enclave::durability::seal::codec;
use ekms_shared::attestation::insecure::{pcrs_from_binary, MockAttester, MockCa};
use ekms_shared::attestation::TrustAnchor;
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

/// The enclave clock of every target: 2023-11-14T22:13:20Z.
pub const NOW_MS: i64 = 1_700_000_000_000;

/// [`NOW_MS`] as a `SystemTime`.
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(NOW_MS as u64)
}

/// A random source that is a function of its seed: SHA-256(seed ‖ counter) blocks. Inputs
/// replay exactly (a crash reproduces), and nothing depends on the OS.
pub struct SeededEntropy {
    seed: u64,
    counter: Mutex<u64>,
}

impl SeededEntropy {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SeededEntropy {
            seed,
            counter: Mutex::new(0),
        }
    }
}

impl Entropy for SeededEntropy {
    fn fill(&self, buf: &mut [u8]) -> Result<(), KmsError> {
        let mut counter = self.counter.lock().unwrap_or_else(|e| e.into_inner());
        for chunk in buf.chunks_mut(32) {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            ctx.update(&self.seed.to_be_bytes());
            ctx.update(&counter.to_be_bytes());
            *counter += 1;
            let block = ctx.finish();
            chunk.copy_from_slice(&block.as_ref()[..chunk.len()]);
        }
        Ok(())
    }
}

/// A mock CA valid at [`NOW_MS`] (generated once per process) and an attester signing with it.
pub fn mock_attester() -> &'static MockAttester {
    static ATTESTER: OnceLock<MockAttester> = OnceLock::new();
    ATTESTER.get_or_init(|| {
        let ca = MockCa::generate(now()).expect("mock CA");
        MockAttester::new(ca, pcrs_from_binary(b"ekms fuzz enclave")).expect("mock attester")
    })
}

/// The trust anchor of [`mock_attester`]'s CA.
pub fn mock_anchor() -> TrustAnchor {
    mock_attester()
        .ca()
        .insecure_trust_anchor()
        .expect("mock anchor")
}

/// The deployment settings: the defaults, with the mock root trusted for Recipient documents
/// too (as `main` does in mock mode), so that Recipient answers are reached.
pub fn config() -> Config {
    let mut config = Config::default();
    config.recipient_anchors.push(mock_anchor());
    config
}

/// The enclave's own attester (a second mock CA, as the enclave has its own).
fn enclave_attester() -> Arc<dyn ekms_enclave::env::Attester> {
    static ATTESTER: OnceLock<Arc<dyn ekms_enclave::env::Attester>> = OnceLock::new();
    ATTESTER
        .get_or_init(|| {
            let ca = MockCa::generate(now()).expect("mock CA");
            Arc::new(ekms_enclave::custody::attest::insecure::MockAttester(
                MockAttester::new(ca, pcrs_from_binary(b"ekms fuzz enclave")).expect("attester"),
            ))
        })
        .clone()
}

/// An environment on the fixed clock with entropy seeded by `seed`.
pub fn env(seed: u64) -> Env {
    Env {
        clock: Arc::new(FixedClock::new(NOW_MS)),
        entropy: Arc::new(SeededEntropy::new(seed)),
        attester: enclave_attester(),
    }
}

/// `arn:aws:iam::111122223333:user/dev`, with the allow-all identity policy.
pub fn dev_caller() -> Caller {
    Caller {
        arn: "arn:aws:iam::111122223333:user/dev".to_owned(),
        access_key_id: DEV_AKID.to_owned(),
        identity_policy: Some(ekms_enclave::kms::authz::allow_all().expect("allow-all")),
    }
}

/// `arn:aws:iam::111122223333:user/alice`, whose identity policy allows only some actions
/// (so the grant and the key policies decide).
pub fn alice_caller() -> Caller {
    Caller {
        arn: "arn:aws:iam::111122223333:user/alice".to_owned(),
        access_key_id: ALICE_AKID.to_owned(),
        identity_policy: Some(Arc::new(
            ekms_enclave::access::policy::parse_identity(ALICE_POLICY).expect("alice policy"),
        )),
    }
}

/// The dev principal's access key id.
pub const DEV_AKID: &str = "AKIAFUZZDEV000000001";
/// Alice's access key id.
pub const ALICE_AKID: &str = "AKIAFUZZALICE0000001";
static DEFAULT_KEY_POLICY: OnceLock<String> = OnceLock::new();
const ALICE_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:Encrypt","kms:Decrypt","kms:DescribeKey","kms:ListKeys","kms:CreateGrant"],"Resource":"*"},{"Effect":"Deny","Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:deny":"yes"}}}]}"#;

/// Keys, aliases and sample values made once per process with the enclave's operations.
pub struct World {
    /// Every key, as its sealed-record plaintext (`codec::encode_key`).
    keys: Vec<Zeroizing<Vec<u8>>>,
    aliases: Vec<(String, Alias)>,
    /// Strings worth putting in a request: key ids, ARNs, aliases, blobs, tokens, names.
    pub dictionary: Vec<String>,
    /// The keys' ids, ARNs, aliases and alias ARNs.
    pub key_refs: Vec<String>,
    /// The same, by the key's alias (`alias/fuzz-sym`, ...).
    pub refs_by_alias: Vec<(String, Vec<String>)>,
    /// Base64 blobs: a ciphertext, a MAC, a signature, public keys, a Recipient document.
    pub blobs: Vec<String>,
    /// The deployment settings the world was made under.
    pub config: Config,
}

fn call(ctx: &Ctx<'_>, op: &str, body: Value) -> Value {
    let op = Operation::from_name(op).expect("operation");
    let out = dispatch::handle(ctx, op, body.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("{}: {e:?} for {body}", op.name()));
    serde_json::from_slice(&out).expect("answer")
}

/// The world, made on first use.
pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(make_world)
}

fn make_world() -> World {
    let config = config();
    let state = State::default();
    let env = env(0);
    let caller = dev_caller();
    let kept = ekms_enclave::kms::authz::Kept::default();
    let ctx = Ctx::new(&state, &config, &env, &caller, &kept);
    let mut dictionary: Vec<String> = Vec::new();
    let mut key_refs: Vec<String> = Vec::new();
    let mut refs_by_alias: Vec<(String, Vec<String>)> = Vec::new();
    let mut blobs: Vec<String> = Vec::new();
    let mut ids = Vec::new();
    let specs = [
        ("fuzz-sym", json!({})),
        (
            "fuzz-hmac",
            json!({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}),
        ),
        (
            "fuzz-sign",
            json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"}),
        ),
        (
            "fuzz-ecdh",
            json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "KEY_AGREEMENT"}),
        ),
        (
            "fuzz-rsa",
            json!({"KeySpec": "RSA_2048", "KeyUsage": "ENCRYPT_DECRYPT"}),
        ),
        ("fuzz-import", json!({"Origin": "EXTERNAL"})),
        (
            "fuzz-policy",
            json!({"Policy": ekms_enclave::access::policy::Policy::default_key_policy("111122223333")
                .replace("\"kms:*\"", "[\"kms:Encrypt\",\"kms:Decrypt\",\"kms:PutKeyPolicy\",\"kms:DescribeKey\",\"kms:CreateAlias\"]"),
                "Tags": [{"TagKey": "team", "TagValue": "fuzz"}]}),
        ),
    ];
    for (alias, body) in specs {
        let out = call(&ctx, "CreateKey", body);
        let id = out["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
        let arn = out["KeyMetadata"]["Arn"].as_str().unwrap().to_owned();
        let alias = format!("alias/{alias}");
        call(
            &ctx,
            "CreateAlias",
            json!({"AliasName": alias, "TargetKeyId": id}),
        );
        let refs = vec![config.alias_arn(&alias), id.clone(), arn, alias.clone()];
        key_refs.extend(refs.iter().cloned());
        refs_by_alias.push((alias, refs));
        ids.push(id);
    }
    let sym = &ids[0];
    let out = call(
        &ctx,
        "Encrypt",
        json!({"KeyId": sym, "Plaintext": B64.encode(b"fuzz"), "EncryptionContext": {"k": "v"}}),
    );
    blobs.push(out["CiphertextBlob"].as_str().unwrap().to_owned());
    let out = call(&ctx, "GenerateMac", json!({"KeyId": ids[1], "Message": B64.encode(b"m"), "MacAlgorithm": "HMAC_SHA_256"}));
    blobs.push(out["Mac"].as_str().unwrap().to_owned());
    let out = call(&ctx, "Sign", json!({"KeyId": ids[2], "Message": B64.encode(b"m"), "SigningAlgorithm": "ECDSA_SHA_256"}));
    blobs.push(out["Signature"].as_str().unwrap().to_owned());
    for id in [&ids[2], &ids[3], &ids[4]] {
        let out = call(&ctx, "GetPublicKey", json!({"KeyId": id}));
        blobs.push(out["PublicKey"].as_str().unwrap().to_owned());
    }
    let out = call(
        &ctx,
        "CreateGrant",
        json!({"KeyId": sym, "GranteePrincipal": "arn:aws:iam::111122223333:user/alice",
               "RetiringPrincipal": "arn:aws:iam::111122223333:user/dev",
               "Operations": ["Encrypt", "Decrypt", "CreateGrant", "RetireGrant"],
               "Constraints": {"EncryptionContextSubset": {"k": "v"}}, "Name": "g"}),
    );
    dictionary.push(out["GrantToken"].as_str().unwrap().to_owned());
    dictionary.push(out["GrantId"].as_str().unwrap().to_owned());
    // A Recipient document binding an RSA key, valid at the fixed clock under the mock root.
    let rsa = aws_lc_rs::rsa::PrivateDecryptingKey::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .expect("RSA key");
    let spki = rsa.public_key().as_der().expect("SPKI").as_ref().to_vec();
    let doc = mock_attester()
        .attest_at(now(), None, None, Some(&spki))
        .expect("recipient document");
    blobs.push(B64.encode(&doc));
    blobs.push(B64.encode(&spki));

    let keys = state.read();
    let encoded = ids
        .iter()
        .map(|id| {
            let key = keys
                .raw(&uuid::Uuid::parse_str(id).unwrap())
                .expect("key made above");
            codec::encode_key(key).expect("key encodes")
        })
        .collect();
    let aliases = specs_aliases()
        .into_iter()
        .map(|name| (name.clone(), keys.alias(&name).expect("alias made above").clone()))
        .collect();
    drop(keys);
    dictionary.extend(
        [
            "arn:aws:iam::111122223333:user/dev",
            "arn:aws:iam::111122223333:user/alice",
            "arn:aws:iam::111122223333:root",
            "arn:aws:iam::444455556666:user/eve",
            "dev",
            "alice",
            DEV_AKID,
            ALICE_AKID,
            ekms_enclave::access::policy::ALLOW_ALL_IDENTITY_POLICY,
            ALICE_POLICY,
            "alias/aws/s3",
            "alias/new",
            "alias/",
            "RSAES_OAEP_SHA_256",
            "RSAES_OAEP_SHA_1",
            "RSA_AES_KEY_WRAP_SHA_256",
            "ECDH",
            "HMAC_SHA_256",
            "HMAC_SHA_512",
            "ECDSA_SHA_256",
            "RSASSA_PSS_SHA_256",
            "RAW",
            "DIGEST",
            "AES_256",
            "AES_128",
            "KEY_MATERIAL_EXPIRES",
            "KEY_MATERIAL_DOES_NOT_EXPIRE",
            "SYMMETRIC_DEFAULT",
            "k",
            "v",
            "",
        ]
        .map(str::to_owned),
    );
    for list in [
        ekms_enclave::keys::KeySpec::ALL,
        ekms_enclave::keys::KeyUsage::ALL,
        ekms_enclave::keys::Origin::ALL,
        ekms_enclave::keys::asym::SIGNING_ALGORITHMS,
        ekms_enclave::keys::mac::MacAlgorithm::ALL,
    ] {
        dictionary.extend(list.iter().map(|s| (*s).to_owned()));
    }
    dictionary.extend(
        ekms_enclave::access::policy::grants::GrantOperation::ALL
            .iter()
            .map(|op| op.as_str().to_owned()),
    );
    dictionary.extend(key_refs.iter().cloned());
    dictionary.extend(blobs.iter().cloned());
    World {
        keys: encoded,
        aliases,
        dictionary,
        key_refs,
        refs_by_alias,
        blobs,
        config,
    }
}

fn specs_aliases() -> Vec<String> {
    [
        "fuzz-sym",
        "fuzz-hmac",
        "fuzz-sign",
        "fuzz-ecdh",
        "fuzz-rsa",
        "fuzz-import",
        "fuzz-policy",
    ]
    .iter()
    .map(|a| format!("alias/{a}"))
    .collect()
}

impl World {
    /// A state holding the world's keys, aliases and principals, as made: every input starts
    /// from the same state.
    pub fn fresh_state(&self) -> State {
        let mut keys = KeyStore::default();
        for record in &self.keys {
            keys.insert(codec::decode_key(record).expect("key decodes"), &self.config)
                .expect("key fits");
        }
        for (name, alias) in &self.aliases {
            keys.put_alias(name.clone(), alias.clone(), &self.config)
                .expect("alias fits");
        }
        let mut principals = Principals::default();
        for (name, akid, policy) in [
            ("dev", DEV_AKID, ekms_enclave::access::policy::ALLOW_ALL_IDENTITY_POLICY),
            ("alice", ALICE_AKID, ALICE_POLICY),
        ] {
            principals
                .insert(
                    name.to_owned(),
                    akid.to_owned(),
                    format!("{name}-secret-access-key-0000"),
                    false,
                    Some(policy.to_owned()),
                    &self.config,
                )
                .expect("principal");
        }
        State::new(keys, principals)
    }
}

/// Builds JSON request bodies from fuzz bytes: objects whose members are the request type's
/// (and a few others), whose values come from the world's dictionary or are made up.
pub struct JsonGen<'a, 'u> {
    /// The fuzz bytes.
    pub u: &'a mut Unstructured<'u>,
    /// Interesting strings.
    pub dictionary: &'a [String],
    /// Key references.
    pub key_refs: &'a [String],
    /// References to the keys the operation at hand suits best, if any.
    pub preferred: Vec<&'a str>,
    /// Base64 blobs.
    pub blobs: &'a [String],
}

impl<'a, 'u> JsonGen<'a, 'u> {
    /// A generator drawing on `world`.
    pub fn new(u: &'a mut Unstructured<'u>, world: &'a World) -> Self {
        JsonGen {
            u,
            dictionary: &world.dictionary,
            key_refs: &world.key_refs,
            preferred: Vec::new(),
            blobs: &world.blobs,
        }
    }

    /// Prefers the keys with these aliases for `KeyId` members.
    pub fn prefer(mut self, world: &'a World, aliases: &[&str]) -> Self {
        self.preferred = world
            .refs_by_alias
            .iter()
            .filter(|(alias, _)| aliases.iter().any(|a| alias.ends_with(a)))
            .flat_map(|(_, refs)| refs.iter().map(String::as_str))
            .collect();
        self
    }
}

impl JsonGen<'_, '_> {
    /// An object with members chosen from `members`, each mostly of the type the KMS API
    /// gives it (so that a request gets past its parsing), sometimes of any type.
    pub fn object(&mut self, members: &[&str], depth: u32) -> Value {
        let mut map = Map::new();
        // Each member, more often present than not; now and then one the type does not have.
        // Members that turn a request into another kind of answer (a dry run, an answer for
        // a Recipient) or add a check are there less often, so that the plain path is reached.
        let mut names: Vec<String> = Vec::new();
        for m in members {
            let present = if matches!(*m, "DryRun" | "Recipient" | "GrantTokens") {
                !self.u.ratio(3, 4).unwrap_or(true)
            } else {
                self.u.ratio(2, 3).unwrap_or(true)
            };
            if present {
                names.push((*m).to_owned());
            }
        }
        if members.is_empty() || !self.u.ratio(15, 16).unwrap_or(true) {
            names.push(self.string());
        }
        for name in names {
            let value = if !self.u.ratio(7, 8).unwrap_or(true) {
                self.value(depth + 1)
            } else {
                self.member(&name, depth + 1)
            };
            map.insert(name, value);
        }
        Value::Object(map)
    }

    /// A value of the type the KMS API gives the member `name`.
    pub fn member(&mut self, name: &str, depth: u32) -> Value {
        match name {
            "DryRun" | "BypassPolicyLockoutSafetyCheck" | "MultiRegion" | "IncludeKeyMaterial" => {
                Value::Bool(self.u.arbitrary().unwrap_or(false))
            }
            "Limit" | "NumberOfBytes" | "PendingWindowInDays" | "RotationPeriodInDays" => {
                let n: i64 = match self.u.int_in_range(0..=3u8).unwrap_or(0) {
                    0 => self.u.arbitrary().unwrap_or(0),
                    _ => *self
                        .u
                        .choose(&[0, 1, 2, 7, 30, 32, 90, 365, 1000, 1001, 1024, 2560, 2561])
                        .unwrap_or(&1),
                };
                json!(n)
            }
            "ValidTo" => json!((NOW_MS / 1000) as f64 + f64::from(self.u.arbitrary::<i32>().unwrap_or(0))),
            "EncryptionContext" | "SourceEncryptionContext" | "DestinationEncryptionContext"
            | "EncryptionContextEquals" | "EncryptionContextSubset" => {
                let mut map = Map::new();
                // The context the sample ciphertext and the grant were made with, or made up.
                if self.u.ratio(1, 2).unwrap_or(true) {
                    map.insert("k".to_owned(), json!("v"));
                    return Value::Object(map);
                }
                for _ in 0..self.u.int_in_range(0..=3u8).unwrap_or(0) {
                    let k = self.pick(&["k", "K", "deny", "", "kk"]);
                    let v = self.pick(&["v", "V", "yes", ""]);
                    map.insert(k, Value::String(v));
                }
                Value::Object(map)
            }
            "GrantTokens" | "TagKeys" => {
                let n = self.u.int_in_range(0..=3u8).unwrap_or(0);
                Value::Array((0..n).map(|_| Value::String(self.string())).collect())
            }
            "Tags" => {
                let n = self.u.int_in_range(0..=3u8).unwrap_or(0);
                Value::Array(
                    (0..n)
                        .map(|_| json!({"TagKey": self.string(), "TagValue": self.string()}))
                        .collect(),
                )
            }
            "Constraints" if depth < 4 => {
                self.object(&["EncryptionContextEquals", "EncryptionContextSubset"], depth)
            }
            "Recipient" if depth < 4 => {
                self.object(&["AttestationDocument", "KeyEncryptionAlgorithm"], depth)
            }
            "SigningAlgorithm" => self.one_of(ekms_enclave::keys::asym::SIGNING_ALGORITHMS),
            "MacAlgorithm" => self.one_of(ekms_enclave::keys::mac::MacAlgorithm::ALL),
            "EncryptionAlgorithm" | "SourceEncryptionAlgorithm" | "DestinationEncryptionAlgorithm" => {
                self.one_of(ekms_enclave::kms::ops::ENCRYPTION_ALGORITHMS)
            }
            "MessageType" => self.one_of(&["RAW", "DIGEST", "EXTERNAL_MU"]),
            "KeySpec" | "KeyPairSpec" | "CustomerMasterKeySpec" | "DataKeySpec" => {
                self.one_of(&[ekms_enclave::keys::KeySpec::ALL, &["AES_256", "AES_128"]].concat())
            }
            "KeyUsage" => self.one_of(ekms_enclave::keys::KeyUsage::ALL),
            "Origin" => self.one_of(ekms_enclave::keys::Origin::ALL),
            "KeyAgreementAlgorithm" => self.one_of(&["ECDH"]),
            "KeyEncryptionAlgorithm" => self.one_of(&["RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1"]),
            "WrappingAlgorithm" => self.one_of(ekms_enclave::keys::import::WrappingAlgorithm::AWS_NAMES),
            "WrappingKeySpec" => self.one_of(ekms_enclave::keys::import::WrappingKeySpec::AWS_NAMES),
            "ExpirationModel" => {
                self.one_of(&["KEY_MATERIAL_EXPIRES", "KEY_MATERIAL_DOES_NOT_EXPIRE"])
            }
            "ImportType" => self.one_of(&["NEW_KEY_MATERIAL", "EXISTING_KEY_MATERIAL"]),
            "PolicyName" => self.one_of(&["default"]),
            "GranteePrincipal" | "RetiringPrincipal" => self.one_of(&[
                "arn:aws:iam::111122223333:user/dev",
                "arn:aws:iam::111122223333:user/alice",
                "arn:aws:iam::111122223333:root",
                "arn:aws:iam::444455556666:user/eve",
            ]),
            "UserName" => self.one_of(&["dev", "alice", "bob"]),
            "AccessKeyId" => self.one_of(&[DEV_AKID, ALICE_AKID]),
            "AliasName" => self.one_of(&["alias/fuzz-sym", "alias/new", "alias/aws/x", "alias/fuzz-rsa"]),
            "Operations" => {
                let n = self.u.int_in_range(1..=3u8).unwrap_or(1);
                let names: Vec<&str> = ekms_enclave::access::policy::grants::GrantOperation::ALL
                    .iter()
                    .map(|o| o.as_str())
                    .collect();
                Value::Array((0..n).map(|_| self.one_of(&names)).collect())
            }
            "Policy" => self.one_of(&[
                ekms_enclave::access::policy::ALLOW_ALL_IDENTITY_POLICY,
                ALICE_POLICY,
                DEFAULT_KEY_POLICY.get_or_init(|| {
                    ekms_enclave::access::policy::Policy::default_key_policy("111122223333")
                }),
            ]),
            "KeyId" | "TargetKeyId" | "SourceKeyId" | "DestinationKeyId"
                if self.u.ratio(3, 4).unwrap_or(true) =>
            {
                let pool: Vec<&str> = if !self.preferred.is_empty() && self.u.ratio(2, 3).unwrap_or(true) {
                    self.preferred.clone()
                } else {
                    self.key_refs.iter().map(String::as_str).collect()
                };
                Value::String((*self.u.choose(&pool).unwrap_or(&"")).to_owned())
            }
            "Plaintext" | "CiphertextBlob" | "Message" | "Signature" | "Mac" | "PublicKey"
            | "EncryptedKeyMaterial" | "ImportToken" | "AttestationDocument"
                if self.u.ratio(3, 4).unwrap_or(true) =>
            {
                if self.u.ratio(1, 2).unwrap_or(true) {
                    Value::String(self.u.choose(self.blobs).cloned().unwrap_or_default())
                } else {
                    let bytes: Vec<u8> = self.u.arbitrary().unwrap_or_default();
                    Value::String(B64.encode(bytes))
                }
            }
            _ => Value::String(self.string()),
        }
    }

    /// Mostly one of `options`, sometimes any string.
    fn one_of(&mut self, options: &[&str]) -> Value {
        if self.u.ratio(7, 8).unwrap_or(true) {
            Value::String((*self.u.choose(options).unwrap_or(&"")).to_owned())
        } else {
            Value::String(self.string())
        }
    }

    fn pick(&mut self, options: &[&str]) -> String {
        if !self.u.ratio(7, 8).unwrap_or(true) {
            self.u.arbitrary().unwrap_or_default()
        } else {
            (*self.u.choose(options).unwrap_or(&"")).to_owned()
        }
    }

    /// A string: from the dictionary, made up, a base64 blob, or a dictionary entry altered.
    pub fn string(&mut self) -> String {
        match self.u.int_in_range(0..=9u8).unwrap_or(0) {
            0..=4 => self
                .u
                .choose(self.dictionary)
                .cloned()
                .unwrap_or_default(),
            5 => {
                let bytes: Vec<u8> = self.u.arbitrary().unwrap_or_default();
                B64.encode(bytes)
            }
            6 => {
                // A dictionary blob with one byte changed (a tampered ciphertext, token, ...).
                let base = self.u.choose(self.dictionary).cloned().unwrap_or_default();
                match B64.decode(&base) {
                    Ok(mut bytes) if !bytes.is_empty() => {
                        let at = self.u.choose_index(bytes.len()).unwrap_or(0);
                        bytes[at] ^= self.u.int_in_range(1..=255u8).unwrap_or(1);
                        B64.encode(bytes)
                    }
                    _ => base,
                }
            }
            7 => {
                // A prefix of a dictionary entry.
                let base = self.u.choose(self.dictionary).cloned().unwrap_or_default();
                let cut = self.u.int_in_range(0..=base.len()).unwrap_or(0);
                base.get(..cut).unwrap_or_default().to_owned()
            }
            _ => self.u.arbitrary().unwrap_or_default(),
        }
    }

    /// Any JSON value, nesting at most a few levels.
    pub fn value(&mut self, depth: u32) -> Value {
        let top = if depth >= 3 { 5 } else { 8 };
        match self.u.int_in_range(0..=top).unwrap_or(0) {
            0..=2 => Value::String(self.string()),
            3 => {
                let n: i64 = match self.u.int_in_range(0..=3u8).unwrap_or(0) {
                    0 => self.u.int_in_range(-2..=40).unwrap_or(0),
                    1 => self.u.arbitrary().unwrap_or(0),
                    2 => *self
                        .u
                        .choose(&[7, 30, 90, 365, 1000, 1024, 2560, 4096, 6144, 8192])
                        .unwrap_or(&0),
                    _ => i64::from(self.u.arbitrary::<i32>().unwrap_or(0)),
                };
                if !self.u.ratio(7, 8).unwrap_or(true) {
                    json!(n as f64 + 0.5)
                } else {
                    json!(n)
                }
            }
            4 => Value::Bool(self.u.arbitrary().unwrap_or(false)),
            5 => Value::Null,
            6 | 7 => {
                let n = self.u.int_in_range(0..=4u8).unwrap_or(0);
                Value::Array((0..n).map(|_| self.value(depth + 1)).collect())
            }
            _ => {
                // Nested objects: encryption contexts, tags, constraints, recipients.
                const NESTED: &[&str] = &[
                    "k",
                    "v",
                    "deny",
                    "TagKey",
                    "TagValue",
                    "EncryptionContextEquals",
                    "EncryptionContextSubset",
                    "AttestationDocument",
                    "KeyEncryptionAlgorithm",
                ];
                self.object(NESTED, depth + 1)
            }
        }
    }
}

/// The field names a derived `Deserialize` of `T` asks for (the members of a request type).
pub fn field_names<T: serde::de::DeserializeOwned>() -> Vec<&'static str> {
    let names = FieldNames(std::cell::RefCell::new(Vec::new()));
    let _ = T::deserialize(&names);
    names.0.into_inner()
}

struct FieldNames(std::cell::RefCell<Vec<&'static str>>);

impl<'de> serde::Deserializer<'de> for &FieldNames {
    type Error = serde::de::value::Error;
    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("only a struct's field names are read"))
    }
    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.borrow_mut().extend_from_slice(fields);
        self.deserialize_any(visitor)
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}
