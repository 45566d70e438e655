//! GenerateMac: the HMAC of up to 4 KiB under an HMAC key (RFC 2104).

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::json::{Blob, SecretBlob};
use crate::keys::{Key, KeyMaterial, KeyUsage};
use crate::keys::mac::{self, MacAlgorithm};
use crate::kms::validate;

/// Largest message GenerateMac and VerifyMac accept.
pub const MAX_MESSAGE: usize = 4096;

/// GenerateMac request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    message: Option<SecretBlob>,
    key_id: Option<String>,
    mac_algorithm: Option<String>,
    grant_tokens: Option<Vec<String>>,
    dry_run: Option<bool>,
}

/// GenerateMac response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    mac: Blob,
    mac_algorithm: &'static str,
    key_id: String,
}

/// Checks the fields GenerateMac and VerifyMac share; returns the key id and the algorithm.
///
/// # Errors
/// `ValidationException` for a missing field, a message outside 1–4096 bytes or an unknown
/// algorithm.
pub fn common_fields(
    key_id: Option<String>,
    message: Option<&SecretBlob>,
    mac_algorithm: Option<&str>,
    grant_tokens: Option<&[String]>,
) -> KmsResult<(String, MacAlgorithm)> {
    let key_id = validate::required("keyId", key_id)?;
    let message = validate::required("message", message)?;
    validate::blob_len("message", &message.0, 1, MAX_MESSAGE)?;
    let algorithm = validate::required("macAlgorithm", mac_algorithm)?;
    let algorithm = validate::one_of("macAlgorithm", algorithm, MacAlgorithm::ALL)?;
    let algorithm = MacAlgorithm::parse(algorithm).ok_or(KmsError::Internal("MAC algorithm"))?;
    super::grant_tokens(grant_tokens)?;
    Ok((key_id, algorithm))
}

/// Checks that `key` is a usable HMAC key for `algorithm`; returns its material.
///
/// # Errors
/// `DisabledException`, `KMSInvalidStateException`, `InvalidKeyUsageException` for a key that
/// is not for MACs or whose spec pairs with another algorithm.
pub fn mac_key<'k>(
    ctx: &Ctx<'_>,
    key: &'k Key,
    algorithm: MacAlgorithm,
) -> KmsResult<&'k KeyMaterial> {
    key.check_usable(ctx.config)?;
    key.check_usage(KeyUsage::GenerateVerifyMac, ctx.operation(), ctx.config)?;
    if MacAlgorithm::of_spec(key.spec) != Some(algorithm) {
        return Err(KmsError::InvalidKeyUsage(format!(
            "Algorithm {} is incompatible with key spec {}.",
            algorithm.as_str(),
            key.spec.as_str()
        )));
    }
    // HMAC keys do not rotate: their only version is the current one.
    let (_, material) = key.current_version()?;
    Ok(material)
}

/// Generates a MAC.
///
/// # Errors
/// As [`common_fields`] and [`mac_key`]; `NotFoundException`, `DryRunOperationException`.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let (key_id, algorithm) = common_fields(
        req.key_id,
        req.message.as_ref(),
        req.mac_algorithm.as_deref(),
        req.grant_tokens.as_deref(),
    )?;
    let message = validate::required("message", req.message)?;
    let store = ctx.keys();
    let key = store.key(
        "keyId",
        &key_id,
        "GenerateMac",
        &crate::kms::authz::Conditions::default(),
    )?;
    let material = mac_key(ctx, key, algorithm)?;
    super::dry_run(req.dry_run)?;
    let tag = mac::compute(algorithm, material, &message.0)?;
    Ok(Response {
        mac: Blob(tag),
        mac_algorithm: algorithm.as_str(),
        key_id: ctx.answer_key(ctx.config.key_arn(&key.id)),
    })
}
