//! Verify: checks a signature with an asymmetric SIGN_VERIFY key, inside the enclave.

use serde::{Deserialize, Serialize};

use super::sign::signing_fields;
use super::Ctx;
use crate::keys::asym;
use crate::error::KmsResult;
use crate::json::{Blob, SecretBlob};
use crate::kms::validate;

/// Verify request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
    message: Option<SecretBlob>,
    message_type: Option<String>,
    signature: Option<Blob>,
    signing_algorithm: Option<String>,
    grant_tokens: Option<Vec<String>>,
    dry_run: Option<bool>,
}

/// Verify response: only ever `SignatureValid: true`; a bad signature is an error, as in AWS.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    key_id: String,
    signature_valid: bool,
    signing_algorithm: &'static str,
}

/// Largest `Signature` AWS KMS accepts.
pub const MAX_SIGNATURE: usize = 6144;

/// Verifies.
///
/// # Errors
/// `KMSInvalidSignatureException` when the signature does not verify; otherwise as
/// [`super::sign::handle`].
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    let (message_type, algorithm) = signing_fields(
        req.message.as_ref(),
        req.message_type.as_deref(),
        req.signing_algorithm.as_deref(),
    )?;
    let message = validate::required("message", req.message)?;
    let signature = validate::required("signature", req.signature)?;
    validate::blob_len("signature", &signature.0, 1, MAX_SIGNATURE)?;
    super::grant_tokens(req.grant_tokens.as_deref())?;
    let store = ctx.keys();
    let key = store.key(
        "keyId",
        &key_id,
        "Verify",
        &crate::kms::authz::Conditions::default(),
    )?;
    super::sign::check_signing_key(key, algorithm, ctx.operation(), ctx.config)?;
    super::dry_run(req.dry_run)?;
    let (_, material) = key.current_version()?;
    asym::verify(
        key.spec,
        material,
        algorithm,
        &message.0,
        message_type,
        &signature.0,
    )?;
    Ok(Response {
        key_id: ctx.answer_key(ctx.config.key_arn(&key.id)),
        signature_valid: true,
        signing_algorithm: algorithm.as_str(),
    })
}
