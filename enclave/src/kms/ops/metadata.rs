//! `KeyMetadata`, as CreateKey and DescribeKey return it.

use serde::Serialize;

use crate::config::Config;
use crate::json::Timestamp;
use crate::keys::{Key, KeySpec, KeyUsage, Origin};

/// The AWS `KeyMetadata` structure for a symmetric key.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMetadata {
    #[serde(rename = "AWSAccountId")]
    aws_account_id: String,
    key_id: String,
    arn: String,
    creation_date: Timestamp,
    enabled: bool,
    description: String,
    key_usage: &'static str,
    key_state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    deletion_date: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    valid_to: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration_model: Option<&'static str>,
    origin: &'static str,
    key_manager: &'static str,
    customer_master_key_spec: &'static str,
    key_spec: &'static str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    encryption_algorithms: &'static [&'static str],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    signing_algorithms: &'static [&'static str],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    mac_algorithms: &'static [&'static str],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    key_agreement_algorithms: &'static [&'static str],
    multi_region: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_key_material_id: Option<String>,
}

/// The algorithms AWS lists for a key of this spec and usage.
pub struct Algorithms {
    /// EncryptionAlgorithms.
    pub encryption: &'static [&'static str],
    /// SigningAlgorithms.
    pub signing: &'static [&'static str],
    /// MacAlgorithms.
    pub mac: &'static [&'static str],
    /// KeyAgreementAlgorithms.
    pub key_agreement: &'static [&'static str],
}

/// The algorithm lists of a key, as AWS reports them in `KeyMetadata` and `GetPublicKey`.
pub fn algorithms(spec: KeySpec, usage: KeyUsage) -> Algorithms {
    const NONE: &[&str] = &[];
    let mut a = Algorithms {
        encryption: NONE,
        signing: NONE,
        mac: NONE,
        key_agreement: NONE,
    };
    match (spec, usage) {
        (KeySpec::SymmetricDefault, _) => a.encryption = &["SYMMETRIC_DEFAULT"],
        (s, KeyUsage::EncryptDecrypt) if s.is_rsa() => {
            a.encryption = &["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"];
        }
        (s, KeyUsage::SignVerify) if s.is_rsa() => {
            a.signing = &[
                "RSASSA_PSS_SHA_256",
                "RSASSA_PSS_SHA_384",
                "RSASSA_PSS_SHA_512",
                "RSASSA_PKCS1_V1_5_SHA_256",
                "RSASSA_PKCS1_V1_5_SHA_384",
                "RSASSA_PKCS1_V1_5_SHA_512",
            ];
        }
        (KeySpec::EccNistP256 | KeySpec::EccSecgP256k1, KeyUsage::SignVerify) => {
            a.signing = &["ECDSA_SHA_256"];
        }
        (KeySpec::EccNistP384, KeyUsage::SignVerify) => a.signing = &["ECDSA_SHA_384"],
        (KeySpec::EccNistP521, KeyUsage::SignVerify) => a.signing = &["ECDSA_SHA_512"],
        (s, KeyUsage::KeyAgreement) if s.is_ecc() => a.key_agreement = &["ECDH"],
        (KeySpec::Hmac224, _) => a.mac = &["HMAC_SHA_224"],
        (KeySpec::Hmac256, _) => a.mac = &["HMAC_SHA_256"],
        (KeySpec::Hmac384, _) => a.mac = &["HMAC_SHA_384"],
        (KeySpec::Hmac512, _) => a.mac = &["HMAC_SHA_512"],
        _ => {}
    }
    a
}

impl KeyMetadata {
    /// The metadata of `key`.
    pub fn of(key: &Key, config: &Config) -> Self {
        let algs = algorithms(key.spec, key.usage);
        KeyMetadata {
            aws_account_id: config.account.clone(),
            key_id: key.id.to_string(),
            arn: config.key_arn(&key.id),
            creation_date: Timestamp(key.created),
            enabled: key.state == crate::keys::KeyState::Enabled,
            description: key.description.clone(),
            key_usage: key.usage.as_str(),
            key_state: key.state.as_str(),
            deletion_date: key.deletion_date.map(Timestamp),
            valid_to: key.metadata_valid_to().map(Timestamp),
            // Only once there is material to expire (AWS omits it before the first import).
            expiration_model: (key.origin == Origin::External
                && key.versions.iter().any(|v| v.material.is_some()))
            .then_some(
                if key.metadata_valid_to().is_some() {
                    "KEY_MATERIAL_EXPIRES"
                } else {
                    "KEY_MATERIAL_DOES_NOT_EXPIRE"
                },
            ),
            origin: key.origin.as_str(),
            key_manager: "CUSTOMER",
            customer_master_key_spec: key.spec.as_str(),
            key_spec: key.spec.as_str(),
            encryption_algorithms: algs.encryption,
            signing_algorithms: algs.signing,
            mac_algorithms: algs.mac,
            key_agreement_algorithms: algs.key_agreement,
            multi_region: false,
            // Symmetric encryption keys (AWS_KMS or EXTERNAL) once they have material.
            current_key_material_id: key.current_material_id_hex(),
        }
    }
}
