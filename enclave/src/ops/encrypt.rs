//! Encrypt: up to 4 KiB of plaintext under a symmetric key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::ciphertext::{self, EncryptionContext, Header};
use crate::error::{KmsError, KmsResult};
use crate::json::{Blob, SecretBlob};
use crate::keys::{Key, KeySpec, KeyUsage};
use crate::validate;

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

/// Seals `plaintext` under the key's current version (the key must be usable).
///
/// # Errors
/// `DisabledException`, `KMSInvalidStateException`, `KMSInternalException`.
pub fn seal_with(
    ctx: &Ctx<'_>,
    key: &Key,
    context: &EncryptionContext,
    plaintext: &[u8],
) -> KmsResult<Vec<u8>> {
    key.check_usable(ctx.config)?;
    key.check_usage(KeyUsage::EncryptDecrypt, ctx.config)?;
    if key.spec != KeySpec::SymmetricDefault {
        return Err(KmsError::InvalidKeyUsage(format!(
            "{} is an asymmetric key: this operation needs a symmetric encryption key.",
            ctx.config.key_arn(&key.id)
        )));
    }
    let (key_version, material) = key.current_version()?;
    ciphertext::seal(
        material,
        Header {
            key_id: key.id,
            key_version,
        },
        context,
        plaintext,
        ctx.env.entropy.as_ref(),
    )
}

/// Encrypts.
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
    let algorithm =
        super::symmetric_algorithm("encryptionAlgorithm", req.encryption_algorithm.as_deref())?;
    let store = ctx.state.read();
    let key = store.resolve("keyId", &key_id, ctx.config, ctx.env.now())?;
    key.check_usable(ctx.config)?;
    super::dry_run(req.dry_run)?;
    let blob = seal_with(ctx, key, &context, &plaintext.0)?;
    Ok(Response {
        ciphertext_blob: Blob(blob),
        key_id: ctx.config.key_arn(&key.id),
        encryption_algorithm: algorithm,
    })
}
