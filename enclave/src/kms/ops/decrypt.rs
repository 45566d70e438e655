//! Decrypt: the blob names its key, so KeyId is optional; when given it must match.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::Ctx;
use crate::kms::authz::{Conditions, Keys};
use crate::keys::ciphertext::{self, EncryptionContext};
use crate::error::{KmsError, KmsResult};
use crate::json::{Blob, SecretBlob};
use crate::keys::{KeySpec, KeyStore, KeyUsage};
use crate::kms::validate;

static EMPTY_CONTEXT: EncryptionContext = EncryptionContext::new();

/// Decrypt request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    ciphertext_blob: Option<Blob>,
    encryption_context: Option<BTreeMap<String, String>>,
    grant_tokens: Option<Vec<String>>,
    key_id: Option<String>,
    encryption_algorithm: Option<String>,
    recipient: Option<crate::keys::recipient::RecipientInfoRequest>,
    dry_run: Option<bool>,
}

/// Decrypt response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    key_id: String,
    /// Absent when the answer goes to a Recipient.
    #[serde(skip_serializing_if = "Option::is_none")]
    plaintext: Option<SecretBlob>,
    encryption_algorithm: &'static str,
    /// The plaintext as CMS EnvelopedData for an attested Recipient.
    #[serde(skip_serializing_if = "Option::is_none")]
    ciphertext_for_recipient: Option<Blob>,
    /// The material that opened a symmetric ciphertext; absent for a Recipient (as AWS).
    #[serde(skip_serializing_if = "Option::is_none")]
    key_material_id: Option<String>,
}

/// Opens a blob with the key its header names, once `action` is authorized on that key (the
/// key actually used, whatever else the request names); a named key (if any) must be it.
///
/// Returns the id of the key that opened it, the plaintext and the `KeyMaterialId` of the
/// material that opened it.
///
/// # Errors
/// `InvalidCiphertextException` (opaque), `AccessDeniedException`, `IncorrectKeyException`,
/// `NotFoundException` for a named key that does not exist, `DisabledException`,
/// `KMSInvalidStateException`.
#[allow(clippy::too_many_arguments)] // each is one member of the request
pub fn open_blob<G: std::ops::Deref<Target = KeyStore>>(
    ctx: &Ctx<'_>,
    store: &Keys<'_, G>,
    field: &str,
    blob: &[u8],
    key_id: Option<&str>,
    action: &'static str,
    conditions: &Conditions<'_>,
    dry_run: Option<bool>,
) -> KmsResult<(Uuid, Zeroizing<Vec<u8>>, Option<String>)> {
    let now = ctx.env.now();
    let parsed = ciphertext::parse(blob)?;
    let id = parsed.header.key_id;
    let proof = store
        .authorize_id(id, action, conditions)?
        .ok_or(KmsError::InvalidCiphertext)?;
    if let Some(key_id) = key_id {
        if store.id_of(field, key_id)? != id {
            return Err(KmsError::IncorrectKey(
                "The key ID in the request does not identify a CMK that can perform this operation.".to_owned(),
            ));
        }
    }
    let key = store.get(&proof)?;
    let context = conditions.encryption_context.unwrap_or(&EMPTY_CONTEXT);
    key.check_usable_at(ctx.config, now)?;
    key.check_usage(KeyUsage::EncryptDecrypt, ctx.operation(), ctx.config)?;
    if key.spec != KeySpec::SymmetricDefault {
        return Err(KmsError::InvalidCiphertext);
    }
    let material = key
        .version(parsed.header.key_version)
        .ok_or(KmsError::InvalidCiphertext)?;
    super::dry_run(dry_run)?;
    let plaintext = parsed.open(material, context)?;
    Ok((id, plaintext, key.material_id_hex(parsed.header.key_version)))
}

/// Decrypts.
///
/// # Errors
/// As [`open_blob`], and `ValidationException`, `InvalidKeyUsageException`,
/// `ValidationException` for a Recipient whose attestation does not verify.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let blob = validate::required("ciphertextBlob", req.ciphertext_blob)?;
    validate::blob_len("ciphertextBlob", &blob.0, 1, super::MAX_CIPHERTEXT)?;
    let context = super::encryption_context("encryptionContext", req.encryption_context)?;
    super::grant_tokens(req.grant_tokens.as_deref())?;
    if let Some(name) = req.encryption_algorithm.as_deref() {
        validate::one_of("encryptionAlgorithm", name, super::ENCRYPTION_ALGORITHMS)?;
    }
    let recipient = super::recipient(ctx, req.recipient)?;
    let conditions = Conditions {
        encryption_algorithm: req.encryption_algorithm.as_deref(),
        ..Conditions::context(&context).with_recipient(recipient.as_ref())
    };
    let store = ctx.keys();
    if let Some(key_id) = req.key_id.as_deref() {
        // An RSA ciphertext does not name its key: AWS (and this service) needs the KeyId.
        // The named key is authorized whichever path follows.
        let key = store.key("keyId", key_id, "Decrypt", &conditions)?;
        if key.spec.is_rsa() {
            let name = req.encryption_algorithm.as_deref();
            key.check_usable(ctx.config)?;
            key.check_usage(KeyUsage::EncryptDecrypt, ctx.operation(), ctx.config)?;
            let algorithm = super::encrypt::rsa_algorithm(ctx, key, name, &context)?;
            super::dry_run(req.dry_run)?;
            let (_, material) = key.current_version()?;
            let plaintext = crate::keys::asym::oaep_decrypt(key.spec, material, algorithm, &blob.0)?;
            let (plaintext, ciphertext_for_recipient) =
                super::for_recipient(ctx, recipient.as_ref(), plaintext)?;
            return Ok(Response {
                key_id: ctx.answer_key(ctx.config.key_arn(&key.id)),
                plaintext,
                encryption_algorithm: algorithm.as_str(),
                ciphertext_for_recipient,
                key_material_id: None,
            });
        }
    }
    let algorithm =
        super::symmetric_algorithm("encryptionAlgorithm", req.encryption_algorithm.as_deref())?;
    let (id, plaintext, key_material_id) = open_blob(
        ctx,
        &store,
        "keyId",
        &blob.0,
        req.key_id.as_deref(),
        "Decrypt",
        &conditions,
        req.dry_run,
    )?;
    let (plaintext, ciphertext_for_recipient) =
        super::for_recipient(ctx, recipient.as_ref(), plaintext)?;
    Ok(Response {
        key_id: ctx.answer_key(ctx.config.key_arn(&id)),
        plaintext,
        encryption_algorithm: algorithm,
        key_material_id: key_material_id.filter(|_| ciphertext_for_recipient.is_none()),
        ciphertext_for_recipient,
    })
}
