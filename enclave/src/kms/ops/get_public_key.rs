//! GetPublicKey: the public half of an asymmetric key, as DER SubjectPublicKeyInfo.

use serde::{Deserialize, Serialize};

use super::metadata::algorithms;
use super::Ctx;
use crate::keys::asym;
use crate::error::{KmsError, KmsResult};
use crate::json::Blob;
use crate::kms::validate;

/// GetPublicKey request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
    grant_tokens: Option<Vec<String>>,
}

/// GetPublicKey response; algorithm lists that do not apply to the key are left out, as AWS does.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    key_id: String,
    public_key: Blob,
    customer_master_key_spec: &'static str,
    key_spec: &'static str,
    key_usage: &'static str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    encryption_algorithms: &'static [&'static str],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    signing_algorithms: &'static [&'static str],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    key_agreement_algorithms: &'static [&'static str],
}

/// Answers the public key.
///
/// # Errors
/// `ValidationException`, `NotFoundException`, `DisabledException`, `KMSInvalidStateException`,
/// `UnsupportedOperationException` for a symmetric or HMAC key (it has no public key).
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    super::grant_tokens(req.grant_tokens.as_deref())?;
    let store = ctx.keys();
    let key = store.key(
        "keyId",
        &key_id,
        "GetPublicKey",
        &crate::kms::authz::Conditions::default(),
    )?;
    if !(key.spec.is_rsa() || key.spec.is_ecc()) {
        return Err(KmsError::UnsupportedOperation(format!(
            "{} is a {} key, which has no public key.",
            ctx.config.key_arn(&key.id),
            key.spec.as_str()
        )));
    }
    key.check_usable(ctx.config)?;
    let (_, material) = key.current_version()?;
    let public_key = asym::public_key(key.spec, material)?;
    let algs = algorithms(key.spec, key.usage);
    Ok(Response {
        key_id: ctx.config.key_arn(&key.id),
        public_key: Blob(public_key),
        customer_master_key_spec: key.spec.as_str(),
        key_spec: key.spec.as_str(),
        key_usage: key.usage.as_str(),
        encryption_algorithms: algs.encryption,
        signing_algorithms: algs.signing,
        key_agreement_algorithms: algs.key_agreement,
    })
}
