//! Error messages worded as AWS KMS words them, where AWS's answer is on record (AWS's API
//! reference, or answers recorded from AWS KMS itself, such as LocalStack's AWS-validated
//! snapshots of its KMS suite): a client that shows or matches the message sees the same
//! text. Where AWS sends no message (a ciphertext that does not open, a signature or MAC that
//! does not verify), none is sent ([`KmsError::client_message`]).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

use super::Core;
use crate::error::KmsError;

/// The error's code and the message the client is sent.
fn answer(result: Result<Value, KmsError>) -> (&'static str, Option<String>) {
    match result {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => (e.aws_code(), e.client_message()),
    }
}

fn key(core: &Core, body: Value) -> (String, String) {
    let out = core.call("CreateKey", body).expect("CreateKey");
    let meta = &out["KeyMetadata"];
    (
        meta["KeyId"].as_str().expect("KeyId").to_owned(),
        meta["Arn"].as_str().expect("Arn").to_owned(),
    )
}

#[test]
fn key_usage_names_the_operation() {
    let core = Core::new();
    let (signing, signing_arn) = key(
        &core,
        json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"}),
    );
    let (symmetric, symmetric_arn) = key(&core, json!({}));
    let (hmac, hmac_arn) = key(
        &core,
        json!({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}),
    );
    assert_eq!(
        answer(core.call("Encrypt", json!({"KeyId": signing, "Plaintext": "eA=="}))),
        (
            "InvalidKeyUsageException",
            Some(format!(
                "{signing_arn} key usage is SIGN_VERIFY which is not valid for Encrypt."
            ))
        )
    );
    assert_eq!(
        answer(core.call(
            "GenerateMac",
            json!({"KeyId": symmetric, "Message": "eA==", "MacAlgorithm": "HMAC_SHA_256"})
        )),
        (
            "InvalidKeyUsageException",
            Some(format!(
                "{symmetric_arn} key usage is ENCRYPT_DECRYPT which is not valid for GenerateMac."
            ))
        )
    );
    assert_eq!(
        answer(core.call(
            "Sign",
            json!({"KeyId": hmac, "Message": "eA==", "SigningAlgorithm": "ECDSA_SHA_256"})
        )),
        (
            "InvalidKeyUsageException",
            Some(format!(
                "{hmac_arn} key usage is GENERATE_VERIFY_MAC which is not valid for Sign."
            ))
        )
    );
    assert_eq!(
        answer(core.call(
            "Verify",
            json!({"KeyId": symmetric, "Message": "eA==", "Signature": "eA==",
                   "SigningAlgorithm": "ECDSA_SHA_256"})
        )),
        (
            "InvalidKeyUsageException",
            Some(format!(
                "{symmetric_arn} key usage is ENCRYPT_DECRYPT which is not valid for Verify."
            ))
        )
    );
}

#[test]
fn algorithm_and_length_refusals() {
    let core = Core::new();
    let (hmac, _) = key(
        &core,
        json!({"KeySpec": "HMAC_224", "KeyUsage": "GENERATE_VERIFY_MAC"}),
    );
    assert_eq!(
        answer(core.call(
            "GenerateMac",
            json!({"KeyId": hmac, "Message": "eA==", "MacAlgorithm": "HMAC_SHA_256"})
        )),
        (
            "InvalidKeyUsageException",
            Some("Algorithm HMAC_SHA_256 is incompatible with key spec HMAC_224.".to_owned())
        )
    );
    let (signing, _) = key(
        &core,
        json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"}),
    );
    assert_eq!(
        answer(core.call(
            "Sign",
            json!({"KeyId": signing, "Message": B64.encode([0u8; 20]), "MessageType": "DIGEST",
                   "SigningAlgorithm": "ECDSA_SHA_256"})
        )),
        (
            "ValidationException",
            Some("Digest is invalid length for algorithm ECDSA_SHA_256.".to_owned())
        )
    );
    let (rsa, _) = key(
        &core,
        json!({"KeySpec": "RSA_2048", "KeyUsage": "ENCRYPT_DECRYPT"}),
    );
    assert_eq!(
        answer(core.call(
            "Encrypt",
            json!({"KeyId": rsa, "Plaintext": B64.encode([0u8; 191]),
                   "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"})
        )),
        (
            "ValidationException",
            Some(
                "Algorithm RSAES_OAEP_SHA_256 and key spec RSA_2048 cannot encrypt data larger \
                 than 190 bytes."
                    .to_owned()
            )
        )
    );
    let (symmetric, _) = key(&core, json!({}));
    assert_eq!(
        answer(core.call(
            "Encrypt",
            json!({"KeyId": symmetric, "Plaintext": B64.encode([0u8; 4097])})
        )),
        (
            "ValidationException",
            Some(
                "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: \
                 Member must have length less than or equal to 4096"
                    .to_owned()
            )
        )
    );
    assert_eq!(
        answer(core.call("GenerateRandom", json!({"NumberOfBytes": 1025}))),
        (
            "ValidationException",
            Some(
                "1 validation error detected: Value '1025' at 'numberOfBytes' failed to satisfy \
                 constraint: Member must have value less than or equal to 1024"
                    .to_owned()
            )
        )
    );
}

#[test]
fn keys_that_are_not_there_or_not_the_one() {
    let core = Core::new();
    assert_eq!(
        answer(core.call("DescribeKey", json!({"KeyId": "key_id"}))),
        ("NotFoundException", Some("Invalid keyId 'key_id'".to_owned()))
    );
    let a = core.create_key();
    assert_eq!(
        answer(core.call(
            "DescribeKey",
            json!({"KeyId": format!("arn:aws:kms:ap-southeast-1:{}:key/{a}", core.config.account)})
        )),
        ("NotFoundException", Some("Invalid arn ap-southeast-1".to_owned()))
    );
    assert_eq!(
        answer(core.call("DescribeKey", json!({"KeyId": ""}))),
        (
            "ValidationException",
            Some(
                "1 validation error detected: Value at 'keyId' failed to satisfy constraint: \
                 Member must have length greater than or equal to 1"
                    .to_owned()
            )
        )
    );
    let b = core.create_key();
    let blob = core.encrypt(&a, b"x").expect("Encrypt");
    assert_eq!(
        answer(core.call("Decrypt", json!({"CiphertextBlob": blob, "KeyId": b}))),
        (
            "IncorrectKeyException",
            Some(
                "The key ID in the request does not identify a CMK that can perform this \
                 operation."
                    .to_owned()
            )
        )
    );
}

#[test]
fn failures_aws_answers_without_a_message() {
    let core = Core::new();
    let a = core.create_key();
    let blob = core.encrypt(&a, b"x").expect("Encrypt");
    assert_eq!(
        answer(core.call(
            "Decrypt",
            json!({"CiphertextBlob": blob, "EncryptionContext": {"k": "v"}})
        )),
        ("InvalidCiphertextException", None)
    );
    let (signing, _) = key(
        &core,
        json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"}),
    );
    let signature = core
        .call(
            "Sign",
            json!({"KeyId": signing, "Message": "eA==", "SigningAlgorithm": "ECDSA_SHA_256"}),
        )
        .expect("Sign")["Signature"]
        .clone();
    assert_eq!(
        answer(core.call(
            "Verify",
            json!({"KeyId": signing, "Message": "eQ==", "Signature": signature,
                   "SigningAlgorithm": "ECDSA_SHA_256"})
        )),
        ("KMSInvalidSignatureException", None)
    );
    let (hmac, _) = key(
        &core,
        json!({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}),
    );
    assert_eq!(
        answer(core.call(
            "VerifyMac",
            json!({"KeyId": hmac, "Message": "eA==", "MacAlgorithm": "HMAC_SHA_256",
                   "Mac": B64.encode([0u8; 32])})
        )),
        ("KMSInvalidMacException", None)
    );
}
