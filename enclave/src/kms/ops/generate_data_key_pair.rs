//! GenerateDataKeyPair: a fresh asymmetric key pair; the private key is returned in plaintext
//! and encrypted under a symmetric KMS key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::encrypt::seal_with;
use super::Ctx;
use crate::keys::asym;
use crate::error::{KmsError, KmsResult};
use crate::json::{Blob, SecretBlob};
use crate::keys::{KeySpec, KeyUsage};
use crate::kms::validate;

/// GenerateDataKeyPair (and GenerateDataKeyPairWithoutPlaintext) request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    encryption_context: Option<BTreeMap<String, String>>,
    key_id: Option<String>,
    key_pair_spec: Option<String>,
    grant_tokens: Option<Vec<String>>,
    recipient: Option<crate::keys::recipient::RecipientInfoRequest>,
    dry_run: Option<bool>,
}

/// GenerateDataKeyPair response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    private_key_ciphertext_blob: Blob,
    /// Absent when the answer goes to a Recipient.
    #[serde(skip_serializing_if = "Option::is_none")]
    private_key_plaintext: Option<SecretBlob>,
    /// The private key as CMS EnvelopedData for an attested Recipient.
    #[serde(skip_serializing_if = "Option::is_none")]
    ciphertext_for_recipient: Option<Blob>,
    public_key: Blob,
    key_id: String,
    key_pair_spec: &'static str,
    /// The material that encrypted the private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_material_id: Option<String>,
}

/// Every `KeyPairSpec` AWS KMS names.
const KEY_PAIR_SPECS: &[&str] = &[
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "SM2",
    "ECC_NIST_EDWARDS25519",
];

/// A generated data key pair.
pub struct DataKeyPair {
    /// The private key (PKCS #8 DER) under the KMS key.
    pub private_ciphertext: Vec<u8>,
    /// The private key itself, PKCS #8 DER.
    pub private_plaintext: Zeroizing<Vec<u8>>,
    /// The public key, DER SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
    /// The KMS key's ARN.
    pub key_arn: String,
    /// The `KeyMaterialId` of the material that encrypted the private key.
    pub key_material_id: Option<String>,
    /// What was generated.
    pub spec: KeySpec,
    /// The verified Recipient the private key must go to instead of the caller.
    pub recipient: Option<crate::keys::recipient::Recipient>,
}

/// Generates a key pair as the request asks.
///
/// The key is checked before the (possibly slow: RSA 4096) generation and again when the private
/// key is sealed; the store lock is not held while generating, so writers are not stalled.
///
/// # Errors
/// `ValidationException` (also for a Recipient that does not verify),
/// `UnsupportedOperationException` (SM2, Ed25519), `NotFoundException`, `DisabledException`, `KMSInvalidStateException`,
/// `InvalidKeyUsageException` (not a symmetric encryption key), `DryRunOperationException`.
pub fn generate(ctx: &Ctx<'_>, action: &'static str, req: Request) -> KmsResult<DataKeyPair> {
    let key_id = validate::required("keyId", req.key_id)?;
    let spec = validate::required("keyPairSpec", req.key_pair_spec)?;
    validate::one_of("keyPairSpec", &spec, KEY_PAIR_SPECS)?;
    let spec = KeySpec::parse(&spec)
        .filter(|s| s.is_rsa() || s.is_ecc())
        .ok_or_else(|| {
            KmsError::UnsupportedOperation(format!("KeyPairSpec {spec} is not supported."))
        })?;
    let context = super::encryption_context("encryptionContext", req.encryption_context)?;
    super::grant_tokens(req.grant_tokens.as_deref())?;
    let recipient = super::recipient(ctx, req.recipient)?;
    let conditions = crate::kms::authz::Conditions::context(&context).with_recipient(recipient.as_ref());
    {
        let store = ctx.keys();
        let key = store.key("keyId", &key_id, action, &conditions)?;
        key.check_usable(ctx.config)?;
        key.check_usage(KeyUsage::EncryptDecrypt, ctx.operation(), ctx.config)?;
        if key.spec != KeySpec::SymmetricDefault {
            return Err(KmsError::InvalidKeyUsage(format!(
                "{} is an asymmetric key: this operation needs a symmetric encryption key.",
                ctx.config.key_arn(&key.id)
            )));
        }
        super::dry_run(req.dry_run)?;
    }
    let (private, public_key) = asym::generate_pair(spec)?;
    let store = ctx.keys();
    let key = store.key("keyId", &key_id, action, &conditions)?;
    let (private_ciphertext, key_material_id) =
        seal_with(ctx, key, &context, private.expose_secret())?;
    Ok(DataKeyPair {
        private_ciphertext,
        key_material_id,
        private_plaintext: Zeroizing::new(private.expose_secret().to_vec()),
        public_key,
        key_arn: ctx.config.key_arn(&key.id),
        spec,
        recipient,
    })
}

/// Generates a data key pair.
///
/// # Errors
/// As [`generate`].
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let pair = generate(ctx, "GenerateDataKeyPair", req)?;
    let (private_key_plaintext, ciphertext_for_recipient) =
        super::for_recipient(ctx, pair.recipient.as_ref(), pair.private_plaintext)?;
    Ok(Response {
        private_key_ciphertext_blob: Blob(pair.private_ciphertext),
        private_key_plaintext,
        ciphertext_for_recipient,
        public_key: Blob(pair.public_key),
        key_id: ctx.answer_key(pair.key_arn),
        key_pair_spec: pair.spec.as_str(),
        key_material_id: pair.key_material_id,
    })
}
