//! VerifyMac: recomputes the HMAC and compares it in constant time.

use serde::{Deserialize, Serialize};

use super::generate_mac::{common_fields, mac_key};
use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::json::{Blob, SecretBlob};
use crate::keys::mac;
use crate::kms::validate;

/// Largest MAC VerifyMac accepts (AWS's bound on the field).
pub const MAX_MAC: usize = 6144;

/// VerifyMac request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    message: Option<SecretBlob>,
    key_id: Option<String>,
    mac_algorithm: Option<String>,
    mac: Option<Blob>,
    grant_tokens: Option<Vec<String>>,
    dry_run: Option<bool>,
}

/// VerifyMac response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    key_id: String,
    mac_valid: bool,
    mac_algorithm: &'static str,
}

/// Verifies a MAC.
///
/// # Errors
/// `KMSInvalidMacException` when the MAC does not match; as
/// [`super::generate_mac::handle`] otherwise.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let (key_id, algorithm) = common_fields(
        req.key_id,
        req.message.as_ref(),
        req.mac_algorithm.as_deref(),
        req.grant_tokens.as_deref(),
    )?;
    let message = validate::required("message", req.message)?;
    let claimed = validate::required("mac", req.mac)?;
    validate::blob_len("mac", &claimed.0, 1, MAX_MAC)?;
    let store = ctx.keys();
    let key = store.key(
        "keyId",
        &key_id,
        "VerifyMac",
        &crate::kms::authz::Conditions::default(),
    )?;
    let material = mac_key(ctx, key, algorithm)?;
    super::dry_run(req.dry_run)?;
    // Constant-time comparison (`subtle`) inside `mac::verify`.
    if !mac::verify(algorithm, material, &message.0, &claimed.0)? {
        return Err(KmsError::InvalidMac);
    }
    Ok(Response {
        key_id: ctx.answer_key(ctx.config.key_arn(&key.id)),
        mac_valid: true,
        mac_algorithm: algorithm.as_str(),
    })
}
