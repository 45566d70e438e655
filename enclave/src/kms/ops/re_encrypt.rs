//! ReEncrypt: decrypt and encrypt again inside the enclave; the plaintext never leaves.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::decrypt::open_blob;
use super::encrypt::{rsa_algorithm, seal_with};
use super::Ctx;
use crate::error::KmsResult;
use crate::json::Blob;
use crate::keys::asym::{oaep_decrypt, oaep_encrypt};
use crate::keys::KeyUsage;
use crate::kms::authz::Conditions;
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
    /// The material that opened a symmetric source ciphertext.
    #[serde(skip_serializing_if = "Option::is_none")]
    source_key_material_id: Option<String>,
    /// The material that sealed a symmetric destination ciphertext.
    #[serde(skip_serializing_if = "Option::is_none")]
    destination_key_material_id: Option<String>,
}

/// Re-encrypts: from a symmetric ciphertext (the blob names its key) or, with `SourceKeyId`
/// naming an RSA key and an RSAES-OAEP `SourceEncryptionAlgorithm`, from an RSA ciphertext; to
/// a symmetric key or, with an RSAES-OAEP `DestinationEncryptionAlgorithm`, to an RSA key.
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
    let source_name = req.source_encryption_algorithm.as_deref();
    let destination_name = req.destination_encryption_algorithm.as_deref();
    if let Some(name) = source_name {
        validate::one_of("sourceEncryptionAlgorithm", name, super::ENCRYPTION_ALGORITHMS)?;
    }
    if let Some(name) = destination_name {
        validate::one_of(
            "destinationEncryptionAlgorithm",
            name,
            super::ENCRYPTION_ALGORITHMS,
        )?;
    }
    let store = ctx.keys();
    // kms:ReEncryptFrom on the key that opens the blob, kms:ReEncryptTo on the destination,
    // each with its own encryption context.
    let destination_conditions = Conditions {
        encryption_algorithm: destination_name,
        ..Conditions::context(&destination_context)
    };
    let destination_key = store.key(
        "destinationKeyId",
        &destination,
        "ReEncryptTo",
        &destination_conditions,
    )?;
    destination_key.check_usable(ctx.config)?;
    let destination_rsa = if destination_key.spec.is_rsa() {
        destination_key.check_usage(KeyUsage::EncryptDecrypt, ctx.operation(), ctx.config)?;
        Some(rsa_algorithm(
            ctx,
            destination_key,
            destination_name,
            &destination_context,
        )?)
    } else {
        super::symmetric_algorithm("destinationEncryptionAlgorithm", destination_name)?;
        None
    };
    let source_conditions = Conditions {
        encryption_algorithm: source_name,
        ..Conditions::context(&source_context)
    };
    // An RSA ciphertext does not name its key: AWS (and this service) needs the SourceKeyId.
    // The named key is authorized whichever path follows, as in Decrypt.
    let named_source = req
        .source_key_id
        .as_deref()
        .map(|id| store.key("sourceKeyId", id, "ReEncryptFrom", &source_conditions))
        .transpose()?;
    let (source_id, plaintext, source_algorithm, source_key_material_id) = match named_source {
        Some(key) if key.spec.is_rsa() => {
            key.check_usable(ctx.config)?;
            key.check_usage(KeyUsage::EncryptDecrypt, ctx.operation(), ctx.config)?;
            let algorithm = rsa_algorithm(ctx, key, source_name, &source_context)?;
            let (_, material) = key.current_version()?;
            let plaintext = oaep_decrypt(key.spec, material, algorithm, &blob.0)?;
            (key.id, plaintext, algorithm.as_str(), None)
        }
        _ => {
            let algorithm =
                super::symmetric_algorithm("sourceEncryptionAlgorithm", source_name)?;
            let (id, plaintext, material_id) = open_blob(
                ctx,
                &store,
                "sourceKeyId",
                &blob.0,
                req.source_key_id.as_deref(),
                "ReEncryptFrom",
                &source_conditions,
                None,
            )?;
            (id, plaintext, algorithm, material_id)
        }
    };
    super::dry_run(req.dry_run)?;
    let (out, destination_algorithm, destination_key_material_id) = match destination_rsa {
        Some(algorithm) => {
            let (_, material) = destination_key.current_version()?;
            let out = oaep_encrypt(destination_key.spec, material, algorithm, &plaintext)?;
            (out, algorithm.as_str(), None)
        }
        None => {
            let (out, material_id) =
                seal_with(ctx, destination_key, &destination_context, &plaintext)?;
            (out, "SYMMETRIC_DEFAULT", material_id)
        }
    };
    Ok(Response {
        ciphertext_blob: Blob(out),
        source_key_id: ctx.config.key_arn(&source_id),
        key_id: ctx.answer_key(ctx.config.key_arn(&destination_key.id)),
        source_encryption_algorithm: source_algorithm,
        destination_encryption_algorithm: destination_algorithm,
        source_key_material_id,
        destination_key_material_id,
    })
}
