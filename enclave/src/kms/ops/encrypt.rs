//! Encrypt: up to 4 KiB of plaintext under a symmetric key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::keys::asym::OaepAlgorithmSpec;
use crate::keys::ciphertext::{self, EncryptionContext, Header};
use crate::error::{KmsError, KmsResult};
use crate::json::{Blob, SecretBlob};
use crate::keys::{Key, KeySpec, KeyUsage};
use crate::kms::validate;

/// Encrypt request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
    plaintext: Option<SecretBlob>,
    encryption_context: Option<BTreeMap<String, String>>,
    grant_tokens: Option<Vec<String>>,
    encryption_algorithm: Option<String>,
    dry_run: Option<bool>,
}

/// Encrypt response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    ciphertext_blob: Blob,
    key_id: String,
    encryption_algorithm: &'static str,
}

/// Seals `plaintext` under the key's current version (the key must be usable); answers the
/// blob and the `KeyMaterialId` of the material that sealed it.
///
/// # Errors
/// `DisabledException`, `KMSInvalidStateException`, `KMSInternalException`.
pub fn seal_with(
    ctx: &Ctx<'_>,
    key: &Key,
    context: &EncryptionContext,
    plaintext: &[u8],
) -> KmsResult<(Vec<u8>, Option<String>)> {
    key.check_usable_at(ctx.config, ctx.env.now())?;
    key.check_usage(KeyUsage::EncryptDecrypt, ctx.operation(), ctx.config)?;
    if key.spec != KeySpec::SymmetricDefault {
        return Err(KmsError::InvalidKeyUsage(format!(
            "{} is an asymmetric key: this operation needs a symmetric encryption key.",
            ctx.config.key_arn(&key.id)
        )));
    }
    let (key_version, material) = key.current_version()?;
    let blob = ciphertext::seal(
        material,
        Header {
            key_id: key.id,
            key_version,
        },
        context,
        plaintext,
        ctx.env.entropy.as_ref(),
    )?;
    Ok((blob, key.material_id_hex(key_version)))
}

/// The RSAES-OAEP algorithm an RSA ENCRYPT_DECRYPT key is asked to use (Encrypt and Decrypt):
/// required, as in AWS; an encryption context does not apply to asymmetric keys.
///
/// # Errors
/// `InvalidKeyUsageException` for SYMMETRIC_DEFAULT (or none) and SM2PKE;
/// `ValidationException` for an encryption context.
pub fn rsa_algorithm(
    ctx: &Ctx<'_>,
    key: &Key,
    name: Option<&str>,
    context: &EncryptionContext,
) -> KmsResult<OaepAlgorithmSpec> {
    let algorithm = name.and_then(OaepAlgorithmSpec::parse).ok_or_else(|| {
        KmsError::InvalidKeyUsage(format!(
            "The encryption algorithm {} is not compatible with {} (key spec {}).",
            name.unwrap_or("SYMMETRIC_DEFAULT"),
            ctx.config.key_arn(&key.id),
            key.spec.as_str()
        ))
    })?;
    if !context.is_empty() {
        return Err(KmsError::Validation(
            "EncryptionContext is not supported with asymmetric KMS keys.".to_owned(),
        ));
    }
    Ok(algorithm)
}

/// Encrypts: under a symmetric key (AES-256-GCM envelope), or with RSAES-OAEP under an RSA key.
///
/// # Errors
/// `ValidationException`, `NotFoundException`, `DisabledException`, `KMSInvalidStateException`,
/// `InvalidKeyUsageException`, `DryRunOperationException`.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    let plaintext = validate::required("plaintext", req.plaintext)?;
    validate::blob_len("plaintext", &plaintext.0, 1, super::MAX_PLAINTEXT)?;
    let context = super::encryption_context("encryptionContext", req.encryption_context)?;
    super::grant_tokens(req.grant_tokens.as_deref())?;
    if let Some(name) = req.encryption_algorithm.as_deref() {
        validate::one_of("encryptionAlgorithm", name, super::ENCRYPTION_ALGORITHMS)?;
    }
    let store = ctx.keys();
    let conditions = crate::kms::authz::Conditions {
        encryption_algorithm: req.encryption_algorithm.as_deref(),
        ..crate::kms::authz::Conditions::context(&context)
    };
    let key = store.key("keyId", &key_id, "Encrypt", &conditions)?;
    key.check_usable(ctx.config)?;
    if key.spec.is_rsa() {
        key.check_usage(KeyUsage::EncryptDecrypt, ctx.operation(), ctx.config)?;
        let algorithm = rsa_algorithm(ctx, key, req.encryption_algorithm.as_deref(), &context)?;
        super::dry_run(req.dry_run)?;
        let (_, material) = key.current_version()?;
        let blob = crate::keys::asym::oaep_encrypt(key.spec, material, algorithm, &plaintext.0)?;
        return Ok(Response {
            ciphertext_blob: Blob(blob),
            key_id: ctx.answer_key(ctx.config.key_arn(&key.id)),
            encryption_algorithm: algorithm.as_str(),
        });
    }
    let algorithm =
        super::symmetric_algorithm("encryptionAlgorithm", req.encryption_algorithm.as_deref())?;
    super::dry_run(req.dry_run)?;
    // Encrypt answers no KeyMaterialId (AWS's EncryptResponse has none).
    let (blob, _) = seal_with(ctx, key, &context, &plaintext.0)?;
    Ok(Response {
        ciphertext_blob: Blob(blob),
        key_id: ctx.answer_key(ctx.config.key_arn(&key.id)),
        encryption_algorithm: algorithm,
    })
}
