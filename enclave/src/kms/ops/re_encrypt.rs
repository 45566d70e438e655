//! ReEncrypt: decrypt and encrypt again inside the enclave; the plaintext never leaves.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::decrypt::open_blob;
use super::encrypt::seal_with;
use super::Ctx;
use crate::kms::authz::Conditions;
use crate::error::KmsResult;
use crate::json::Blob;
use crate::kms::validate;

/// ReEncrypt request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    ciphertext_blob: Option<Blob>,
    source_encryption_context: Option<BTreeMap<String, String>>,
    source_key_id: Option<String>,
    destination_key_id: Option<String>,
    destination_encryption_context: Option<BTreeMap<String, String>>,
    source_encryption_algorithm: Option<String>,
    destination_encryption_algorithm: Option<String>,
    grant_tokens: Option<Vec<String>>,
    dry_run: Option<bool>,
}

/// ReEncrypt response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    ciphertext_blob: Blob,
    source_key_id: String,
    key_id: String,
    source_encryption_algorithm: &'static str,
    destination_encryption_algorithm: &'static str,
}

/// Re-encrypts.
///
/// # Errors
/// As Decrypt for the source and Encrypt for the destination.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let blob = validate::required("ciphertextBlob", req.ciphertext_blob)?;
    validate::blob_len("ciphertextBlob", &blob.0, 1, super::MAX_CIPHERTEXT)?;
    let destination = validate::required("destinationKeyId", req.destination_key_id)?;
    let source_context =
        super::encryption_context("sourceEncryptionContext", req.source_encryption_context)?;
    let destination_context = super::encryption_context(
        "destinationEncryptionContext",
        req.destination_encryption_context,
    )?;
    super::grant_tokens(req.grant_tokens.as_deref())?;
    let source_algorithm = super::symmetric_algorithm(
        "sourceEncryptionAlgorithm",
        req.source_encryption_algorithm.as_deref(),
    )?;
    let destination_algorithm = super::symmetric_algorithm(
        "destinationEncryptionAlgorithm",
        req.destination_encryption_algorithm.as_deref(),
    )?;
    let store = ctx.keys();
    // kms:ReEncryptFrom on the key that opens the blob, kms:ReEncryptTo on the destination,
    // each with its own encryption context.
    let destination_conditions = Conditions {
        encryption_algorithm: req.destination_encryption_algorithm.as_deref(),
        ..Conditions::context(&destination_context)
    };
    let destination_key = store.key(
        "destinationKeyId",
        &destination,
        "ReEncryptTo",
        &destination_conditions,
    )?;
    destination_key.check_usable(ctx.config)?;
    let source_conditions = Conditions {
        encryption_algorithm: req.source_encryption_algorithm.as_deref(),
        ..Conditions::context(&source_context)
    };
    let (source_id, plaintext) = open_blob(
        ctx,
        &store,
        "sourceKeyId",
        &blob.0,
        req.source_key_id.as_deref(),
        "ReEncryptFrom",
        &source_conditions,
        None,
    )?;
    super::dry_run(req.dry_run)?;
    let out = seal_with(ctx, destination_key, &destination_context, &plaintext)?;
    Ok(Response {
        ciphertext_blob: Blob(out),
        source_key_id: ctx.config.key_arn(&source_id),
        key_id: ctx.answer_key(ctx.config.key_arn(&destination_key.id)),
        source_encryption_algorithm: source_algorithm,
        destination_encryption_algorithm: destination_algorithm,
    })
}
