//! Asymmetric operations driven through `dispatch::handle` with JSON bodies: CreateKey for every
//! spec and usage, Sign/Verify, GetPublicKey, RSA Encrypt/Decrypt, GenerateDataKeyPair(+Without
//! Plaintext), DeriveSharedSecret, and the errors AWS answers for wrong usage and bad input.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::kms::state::{Caller, State};
use crate::config::Config;
use crate::env::{Env, FixedClock};
use crate::error::KmsError;

struct Core {
    state: State,
    config: Config,
    env: Env,
    caller: Caller,
}

impl Core {
    fn new() -> Self {
        let env = crate::kms::ops::test_support::env(Arc::new(FixedClock::new(1_700_000_000_000)));
        Core {
            state: State::default(),
            config: Config::default(),
            env,
            caller: crate::kms::ops::test_support::dev_caller(),
        }
    }

    /// Runs `op`; also answers the records the request touched.
    fn call_touching(
        &self,
        op: &str,
        body: Value,
    ) -> (Result<Value, KmsError>, Vec<crate::kms::state::Touched>) {
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
        self.call_touching(op, body).0
    }

    fn create(&self, spec: &str, usage: &str) -> String {
        let out = self
            .call("CreateKey", json!({"KeySpec": spec, "KeyUsage": usage}))
            .unwrap();
        out["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()
    }
}

fn code(result: Result<Value, KmsError>) -> &'static str {
    match result {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => e.aws_code(),
    }
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn unb64(v: &Value) -> Vec<u8> {
    B64.decode(v.as_str().unwrap()).unwrap()
}

#[test]
fn create_key_accepts_exactly_the_asymmetric_spec_and_usage_pairs_aws_does() {
    let core = Core::new();
    let specs = [
        "RSA_2048",
        "RSA_3072",
        "RSA_4096",
        "ECC_NIST_P256",
        "ECC_NIST_P384",
        "ECC_NIST_P521",
        "ECC_SECG_P256K1",
    ];
    for spec in specs {
        for usage in [
            "SIGN_VERIFY",
            "ENCRYPT_DECRYPT",
            "KEY_AGREEMENT",
            "GENERATE_VERIFY_MAC",
        ] {
            let allowed = match usage {
                "SIGN_VERIFY" => true,
                "ENCRYPT_DECRYPT" => spec.starts_with("RSA"),
                "KEY_AGREEMENT" => spec.starts_with("ECC_NIST"),
                _ => false,
            };
            let (result, touched) =
                core.call_touching("CreateKey", json!({"KeySpec": spec, "KeyUsage": usage}));
            if allowed {
                let meta = &result.unwrap()["KeyMetadata"];
                assert_eq!(meta["KeySpec"], spec);
                assert_eq!(meta["KeyUsage"], usage);
                assert_eq!(meta["CustomerMasterKeySpec"], spec);
                // The new key is sealed durably.
                let id = uuid::Uuid::parse_str(meta["KeyId"].as_str().unwrap()).unwrap();
                assert_eq!(touched, vec![crate::kms::state::Touched::Key(id)]);
                let algs = crate::kms::ops::metadata::algorithms(
                    crate::keys::KeySpec::parse(spec).unwrap(),
                    crate::keys::KeyUsage::parse(usage).unwrap(),
                );
                let listed = |field: &str| -> Vec<String> {
                    meta[field]
                        .as_array()
                        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
                        .unwrap_or_default()
                };
                assert_eq!(listed("SigningAlgorithms"), algs.signing);
                assert_eq!(listed("EncryptionAlgorithms"), algs.encryption);
                assert_eq!(listed("KeyAgreementAlgorithms"), algs.key_agreement);
            } else {
                assert_eq!(code(result), "ValidationException", "{spec} {usage}");
                assert!(touched.is_empty());
            }
        }
        // KeyUsage is required for asymmetric specs.
        assert_eq!(
            code(core.call("CreateKey", json!({"KeySpec": spec}))),
            "ValidationException"
        );
    }
    // The deprecated CustomerMasterKeySpec works the same.
    let out = core
        .call(
            "CreateKey",
            json!({"CustomerMasterKeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"}),
        )
        .unwrap();
    assert_eq!(out["KeyMetadata"]["KeySpec"], "ECC_NIST_P256");
    // SM2 (China regions only) stays unsupported.
    assert_eq!(
        code(core.call(
            "CreateKey",
            json!({"KeySpec": "SM2", "KeyUsage": "SIGN_VERIFY"})
        )),
        "UnsupportedOperationException"
    );
}

#[test]
fn sign_and_verify_every_spec_and_algorithm_raw_and_digest() {
    let core = Core::new();
    let cases: [(&str, &[(&str, usize)]); 7] = [
        (
            "RSA_2048",
            &[
                ("RSASSA_PSS_SHA_256", 32),
                ("RSASSA_PSS_SHA_384", 48),
                ("RSASSA_PSS_SHA_512", 64),
                ("RSASSA_PKCS1_V1_5_SHA_256", 32),
                ("RSASSA_PKCS1_V1_5_SHA_384", 48),
                ("RSASSA_PKCS1_V1_5_SHA_512", 64),
            ],
        ),
        ("RSA_3072", &[("RSASSA_PSS_SHA_384", 48)]),
        ("RSA_4096", &[("RSASSA_PKCS1_V1_5_SHA_512", 64)]),
        ("ECC_NIST_P256", &[("ECDSA_SHA_256", 32)]),
        ("ECC_NIST_P384", &[("ECDSA_SHA_384", 48)]),
        ("ECC_NIST_P521", &[("ECDSA_SHA_512", 64)]),
        ("ECC_SECG_P256K1", &[("ECDSA_SHA_256", 32)]),
    ];
    for (spec, algorithms) in cases {
        let id = core.create(spec, "SIGN_VERIFY");
        for &(algorithm, digest_len) in algorithms {
            for (message_type, message) in
                [("RAW", vec![1u8; 4096]), ("DIGEST", vec![2u8; digest_len])]
            {
                let out = core
                    .call(
                        "Sign",
                        json!({"KeyId": id, "Message": b64(&message), "MessageType": message_type,
                               "SigningAlgorithm": algorithm}),
                    )
                    .unwrap();
                assert_eq!(out["SigningAlgorithm"], algorithm);
                assert_eq!(out["KeyId"], core.config.key_arn(&id.parse().unwrap()));
                let signature = out["Signature"].as_str().unwrap().to_owned();
                let verify = |msg: &[u8], sig: &str| {
                    core.call(
                        "Verify",
                        json!({"KeyId": id, "Message": b64(msg), "MessageType": message_type,
                               "Signature": sig, "SigningAlgorithm": algorithm}),
                    )
                };
                let ok = verify(&message, &signature).unwrap();
                assert_eq!(ok["SignatureValid"], true);
                let mut other = message.clone();
                other[0] ^= 1;
                assert_eq!(
                    code(verify(&other, &signature)),
                    "KMSInvalidSignatureException"
                );
            }
            // A DIGEST of the wrong length.
            assert_eq!(
                code(core.call(
                    "Sign",
                    json!({"KeyId": id, "Message": b64(&vec![0u8; digest_len + 1]),
                           "MessageType": "DIGEST", "SigningAlgorithm": algorithm})
                )),
                "ValidationException"
            );
        }
    }
}

#[test]
fn sign_and_verify_refuse_bad_fields_wrong_algorithms_and_wrong_keys() {
    let core = Core::new();
    let p256 = core.create("ECC_NIST_P256", "SIGN_VERIFY");
    let sign = |body: Value| core.call("Sign", body);
    let msg = b64(b"m");
    // Message: required, 1–4096 bytes.
    for body in [
        json!({"KeyId": p256, "SigningAlgorithm": "ECDSA_SHA_256"}),
        json!({"KeyId": p256, "Message": "", "SigningAlgorithm": "ECDSA_SHA_256"}),
        json!({"KeyId": p256, "Message": b64(&[0u8; 4097]), "SigningAlgorithm": "ECDSA_SHA_256"}),
        json!({"KeyId": p256, "Message": msg}),
        json!({"KeyId": p256, "Message": msg, "SigningAlgorithm": "ECDSA_SHA_1"}),
        json!({"KeyId": p256, "Message": msg, "SigningAlgorithm": "ECDSA_SHA_256", "MessageType": "HASH"}),
        json!({"KeyId": p256, "Message": msg, "SigningAlgorithm": "ECDSA_SHA_256", "MessageType": "EXTERNAL_MU"}),
        json!({"Message": msg, "SigningAlgorithm": "ECDSA_SHA_256"}),
    ] {
        assert_eq!(code(sign(body)), "ValidationException");
    }
    // An algorithm AWS knows but the key spec does not allow.
    for algorithm in [
        "ECDSA_SHA_384",
        "RSASSA_PSS_SHA_256",
        "SM2DSA",
        "ML_DSA_SHAKE_256",
    ] {
        assert_eq!(
            code(sign(
                json!({"KeyId": p256, "Message": msg, "SigningAlgorithm": algorithm})
            )),
            "InvalidKeyUsageException",
            "{algorithm}"
        );
    }
    // Keys that do not sign.
    let symmetric = core.call("CreateKey", json!({})).unwrap()["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let rsa_enc = core.create("RSA_2048", "ENCRYPT_DECRYPT");
    let ecdh = core.create("ECC_NIST_P256", "KEY_AGREEMENT");
    for key in [&symmetric, &rsa_enc, &ecdh] {
        for op in ["Sign", "Verify"] {
            assert_eq!(
                code(core.call(
                    op,
                    json!({"KeyId": key, "Message": msg, "Signature": msg,
                           "SigningAlgorithm": "RSASSA_PSS_SHA_256"})
                )),
                "InvalidKeyUsageException",
                "{op}"
            );
        }
    }
    // Garbage signatures are invalid signatures, not errors of another kind.
    for signature in [b64(b"x"), b64(&[0x30; 72]), b64(&[0u8; 6144])] {
        assert_eq!(
            code(core.call(
                "Verify",
                json!({"KeyId": p256, "Message": msg, "Signature": signature,
                       "SigningAlgorithm": "ECDSA_SHA_256"})
            )),
            "KMSInvalidSignatureException"
        );
    }
    assert_eq!(
        code(core.call(
            "Verify",
            json!({"KeyId": p256, "Message": msg, "Signature": b64(&[0u8; 6145]),
                   "SigningAlgorithm": "ECDSA_SHA_256"})
        )),
        "ValidationException"
    );
    // Disabled keys neither sign nor answer their public key; DryRun checks everything first.
    assert_eq!(
        code(sign(
            json!({"KeyId": p256, "Message": msg, "SigningAlgorithm": "ECDSA_SHA_256", "DryRun": true})
        )),
        "DryRunOperationException"
    );
    core.call("DisableKey", json!({"KeyId": p256})).unwrap();
    assert_eq!(
        code(sign(
            json!({"KeyId": p256, "Message": msg, "SigningAlgorithm": "ECDSA_SHA_256"})
        )),
        "DisabledException"
    );
    assert_eq!(
        code(core.call("GetPublicKey", json!({"KeyId": p256}))),
        "DisabledException"
    );
}

#[test]
fn get_public_key_answers_spki_der_spec_usage_and_algorithms() {
    let core = Core::new();
    for (spec, usage, field, expected) in [
        (
            "RSA_2048",
            "ENCRYPT_DECRYPT",
            "EncryptionAlgorithms",
            json!(["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]),
        ),
        (
            "ECC_NIST_P384",
            "SIGN_VERIFY",
            "SigningAlgorithms",
            json!(["ECDSA_SHA_384"]),
        ),
        (
            "ECC_NIST_P521",
            "KEY_AGREEMENT",
            "KeyAgreementAlgorithms",
            json!(["ECDH"]),
        ),
    ] {
        let id = core.create(spec, usage);
        let out = core.call("GetPublicKey", json!({"KeyId": id})).unwrap();
        assert_eq!(out["KeySpec"], spec);
        assert_eq!(out["CustomerMasterKeySpec"], spec);
        assert_eq!(out["KeyUsage"], usage);
        assert_eq!(out[field], expected);
        let present: Vec<&str> = [
            "EncryptionAlgorithms",
            "SigningAlgorithms",
            "KeyAgreementAlgorithms",
        ]
        .into_iter()
        .filter(|f| out.get(*f).is_some())
        .collect();
        assert_eq!(present, vec![field]);
        assert_eq!(unb64(&out["PublicKey"])[0], 0x30);
    }
    let symmetric = core.call("CreateKey", json!({})).unwrap()["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        code(core.call("GetPublicKey", json!({"KeyId": symmetric}))),
        "UnsupportedOperationException"
    );
}

#[test]
fn rsa_encrypt_decrypt_with_oaep_and_awss_limits() {
    let core = Core::new();
    let id = core.create("RSA_2048", "ENCRYPT_DECRYPT");
    for (algorithm, max) in [("RSAES_OAEP_SHA_1", 214), ("RSAES_OAEP_SHA_256", 190)] {
        let plaintext = vec![0x42u8; max];
        let out = core
            .call(
                "Encrypt",
                json!({"KeyId": id, "Plaintext": b64(&plaintext), "EncryptionAlgorithm": algorithm}),
            )
            .unwrap();
        assert_eq!(out["EncryptionAlgorithm"], algorithm);
        let blob = out["CiphertextBlob"].as_str().unwrap().to_owned();
        assert_eq!(unb64(&out["CiphertextBlob"]).len(), 256);
        let back = core
            .call(
                "Decrypt",
                json!({"KeyId": id, "CiphertextBlob": blob, "EncryptionAlgorithm": algorithm}),
            )
            .unwrap();
        assert_eq!(unb64(&back["Plaintext"]), plaintext);
        assert_eq!(back["EncryptionAlgorithm"], algorithm);
        assert_eq!(back["KeyId"], core.config.key_arn(&id.parse().unwrap()));
        // Without the KeyId the blob names no key: as AWS, it cannot be opened.
        assert_eq!(
            code(core.call("Decrypt", json!({"CiphertextBlob": blob}))),
            "InvalidCiphertextException"
        );
        // The other OAEP hash does not open it, and says nothing more.
        let other = if max == 214 {
            "RSAES_OAEP_SHA_256"
        } else {
            "RSAES_OAEP_SHA_1"
        };
        assert_eq!(
            code(core.call(
                "Decrypt",
                json!({"KeyId": id, "CiphertextBlob": blob, "EncryptionAlgorithm": other})
            )),
            "InvalidCiphertextException"
        );
        assert_eq!(
            code(core.call(
                "Encrypt",
                json!({"KeyId": id, "Plaintext": b64(&vec![0u8; max + 1]), "EncryptionAlgorithm": algorithm})
            )),
            "ValidationException"
        );
    }
    // The algorithm is required for RSA keys; the symmetric one and SM2PKE do not fit them.
    for algorithm in [None, Some("SYMMETRIC_DEFAULT"), Some("SM2PKE")] {
        let mut body = json!({"KeyId": id, "Plaintext": b64(b"x")});
        if let Some(a) = algorithm {
            body["EncryptionAlgorithm"] = json!(a);
        }
        assert_eq!(code(core.call("Encrypt", body)), "InvalidKeyUsageException");
    }
    assert_eq!(
        code(core.call(
            "Encrypt",
            json!({"KeyId": id, "Plaintext": b64(b"x"), "EncryptionAlgorithm": "RSAES_OAEP_SHA_512"})
        )),
        "ValidationException"
    );
    // No encryption context with asymmetric keys.
    assert_eq!(
        code(core.call(
            "Encrypt",
            json!({"KeyId": id, "Plaintext": b64(b"x"), "EncryptionAlgorithm": "RSAES_OAEP_SHA_256",
                   "EncryptionContext": {"a": "b"}})
        )),
        "ValidationException"
    );
    // A signing RSA key does not encrypt; the symmetric key does not take RSA algorithms.
    let signing = core.create("RSA_2048", "SIGN_VERIFY");
    assert_eq!(
        code(core.call(
            "Encrypt",
            json!({"KeyId": signing, "Plaintext": b64(b"x"), "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"})
        )),
        "InvalidKeyUsageException"
    );
    let symmetric = core.call("CreateKey", json!({})).unwrap()["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        code(core.call(
            "Encrypt",
            json!({"KeyId": symmetric, "Plaintext": b64(b"x"), "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"})
        )),
        "InvalidKeyUsageException"
    );
    // Symmetric encryption is unchanged.
    let out = core
        .call(
            "Encrypt",
            json!({"KeyId": symmetric, "Plaintext": b64(b"x")}),
        )
        .unwrap();
    let back = core
        .call("Decrypt", json!({"CiphertextBlob": out["CiphertextBlob"]}))
        .unwrap();
    assert_eq!(unb64(&back["Plaintext"]), b"x");
}

#[test]
fn generate_data_key_pair_seals_a_pkcs8_private_key_under_a_symmetric_key() {
    let core = Core::new();
    let kek = core.call("CreateKey", json!({})).unwrap()["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    for spec in [
        "RSA_2048",
        "ECC_NIST_P256",
        "ECC_NIST_P384",
        "ECC_NIST_P521",
        "ECC_SECG_P256K1",
    ] {
        let out = core
            .call(
                "GenerateDataKeyPair",
                json!({"KeyId": kek, "KeyPairSpec": spec, "EncryptionContext": {"purpose": "test"}}),
            )
            .unwrap();
        assert_eq!(out["KeyPairSpec"], spec);
        let private = unb64(&out["PrivateKeyPlaintext"]);
        let public = unb64(&out["PublicKey"]);
        // The private key's public half is the PublicKey answered.
        let material = crate::keys::KeyMaterial::new(zeroize::Zeroizing::new(private.clone()));
        let spec_parsed = crate::keys::KeySpec::parse(spec).unwrap();
        assert_eq!(
            crate::keys::asym::public_key(spec_parsed, &material).unwrap(),
            public
        );
        // The blob decrypts (with its encryption context) to the same private key.
        let back = core
            .call(
                "Decrypt",
                json!({"CiphertextBlob": out["PrivateKeyCiphertextBlob"],
                       "EncryptionContext": {"purpose": "test"}}),
            )
            .unwrap();
        assert_eq!(unb64(&back["Plaintext"]), private);
        let without = core
            .call(
                "GenerateDataKeyPairWithoutPlaintext",
                json!({"KeyId": kek, "KeyPairSpec": spec}),
            )
            .unwrap();
        assert!(without.get("PrivateKeyPlaintext").is_none());
        assert_eq!(unb64(&without["PublicKey"])[0], 0x30);
        let back = core
            .call(
                "Decrypt",
                json!({"CiphertextBlob": without["PrivateKeyCiphertextBlob"]}),
            )
            .unwrap();
        let material =
            crate::keys::KeyMaterial::new(zeroize::Zeroizing::new(unb64(&back["Plaintext"])));
        assert_eq!(
            crate::keys::asym::public_key(spec_parsed, &material).unwrap(),
            unb64(&without["PublicKey"])
        );
    }
    // Bad specs, keys that cannot seal.
    assert_eq!(
        code(core.call(
            "GenerateDataKeyPair",
            json!({"KeyId": kek, "KeyPairSpec": "RSA_1024"})
        )),
        "ValidationException"
    );
    assert_eq!(
        code(core.call("GenerateDataKeyPair", json!({"KeyId": kek}))),
        "ValidationException"
    );
    assert_eq!(
        code(core.call(
            "GenerateDataKeyPair",
            json!({"KeyId": kek, "KeyPairSpec": "SM2"})
        )),
        "UnsupportedOperationException"
    );
    let rsa = core.create("RSA_2048", "ENCRYPT_DECRYPT");
    assert_eq!(
        code(core.call(
            "GenerateDataKeyPair",
            json!({"KeyId": rsa, "KeyPairSpec": "ECC_NIST_P256"})
        )),
        "InvalidKeyUsageException"
    );
    assert_eq!(
        code(core.call(
            "GenerateDataKeyPair",
            json!({"KeyId": kek, "KeyPairSpec": "ECC_NIST_P256", "DryRun": true})
        )),
        "DryRunOperationException"
    );
}

#[test]
fn derive_shared_secret_agrees_with_the_peer() {
    let core = Core::new();
    let a = core.create("ECC_NIST_P384", "KEY_AGREEMENT");
    let b = core.create("ECC_NIST_P384", "KEY_AGREEMENT");
    let public = |id: &str| {
        core.call("GetPublicKey", json!({"KeyId": id})).unwrap()["PublicKey"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let derive = |id: &str, peer: &str| {
        core.call(
            "DeriveSharedSecret",
            json!({"KeyId": id, "KeyAgreementAlgorithm": "ECDH", "PublicKey": peer}),
        )
    };
    let ab = derive(&a, &public(&b)).unwrap();
    let ba = derive(&b, &public(&a)).unwrap();
    assert_eq!(ab["SharedSecret"], ba["SharedSecret"]);
    assert_eq!(unb64(&ab["SharedSecret"]).len(), 48);
    assert_eq!(ab["KeyAgreementAlgorithm"], "ECDH");
    assert_eq!(ab["KeyOrigin"], "AWS_KMS");
    // A peer key on another curve, or not SPKI at all.
    let p256 = core.create("ECC_NIST_P256", "KEY_AGREEMENT");
    assert_eq!(code(derive(&a, &public(&p256))), "ValidationException");
    assert_eq!(code(derive(&a, &b64(b"not a key"))), "ValidationException");
    assert_eq!(
        code(core.call(
            "DeriveSharedSecret",
            json!({"KeyId": a, "KeyAgreementAlgorithm": "ECDH_X", "PublicKey": public(&b)})
        )),
        "ValidationException"
    );
    // A signing key does not agree keys.
    let signing = core.create("ECC_NIST_P384", "SIGN_VERIFY");
    assert_eq!(
        code(derive(&signing, &public(&b))),
        "InvalidKeyUsageException"
    );
    // An ECDH key neither signs nor encrypts.
    assert_eq!(
        code(core.call(
            "Sign",
            json!({"KeyId": a, "Message": b64(b"m"), "SigningAlgorithm": "ECDSA_SHA_384"})
        )),
        "InvalidKeyUsageException"
    );
    assert_eq!(
        code(core.call("Encrypt", json!({"KeyId": a, "Plaintext": b64(b"m")}))),
        "InvalidKeyUsageException"
    );
}
