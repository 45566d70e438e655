//! Sign: a signature over a message (or its digest) with an asymmetric SIGN_VERIFY key.

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::keys::asym::{self, MessageType, SigningAlgorithm};
use crate::error::{KmsError, KmsResult};
use crate::json::{Blob, SecretBlob};
use crate::keys::KeyUsage;
use crate::kms::validate;

/// Sign request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
    message: Option<SecretBlob>,
    message_type: Option<String>,
    grant_tokens: Option<Vec<String>>,
    signing_algorithm: Option<String>,
    dry_run: Option<bool>,
}

/// Sign response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    key_id: String,
    signature: Blob,
    signing_algorithm: &'static str,
}

/// Largest `Message` AWS KMS signs.
pub const MAX_MESSAGE: usize = 4096;

/// Checks `Message` (1–4096 bytes), `MessageType` (default RAW) and `SigningAlgorithm`, as Sign
/// and Verify take them.
///
/// # Errors
/// `ValidationException` for a missing or malformed field, or EXTERNAL_MU (ML-DSA keys only).
pub fn signing_fields(
    message: Option<&SecretBlob>,
    message_type: Option<&str>,
    algorithm: Option<&str>,
) -> KmsResult<(MessageType, SigningAlgorithm)> {
    let message = validate::required("message", message)?;
    validate::blob_len("message", &message.0, 1, MAX_MESSAGE)?;
    let message_type = match message_type {
        None => MessageType::Raw,
        Some(t) => match validate::one_of("messageType", t, &["RAW", "DIGEST", "EXTERNAL_MU"])? {
            "RAW" => MessageType::Raw,
            "DIGEST" => MessageType::Digest,
            _ => {
                return Err(KmsError::Validation(
                    "MessageType EXTERNAL_MU is valid only with ML_DSA keys.".to_owned(),
                ))
            }
        },
    };
    let algorithm = validate::required("signingAlgorithm", algorithm)?;
    validate::one_of("signingAlgorithm", algorithm, asym::SIGNING_ALGORITHMS)?;
    // SM2DSA and ML_DSA_SHAKE_256 name keys this service does not make: no key fits them.
    let algorithm = SigningAlgorithm::parse(algorithm).ok_or_else(|| {
        KmsError::InvalidKeyUsage(format!(
            "The signing algorithm {algorithm} is not valid for this key."
        ))
    })?;
    Ok((message_type, algorithm))
}

/// Checks that `key` may sign or verify with `algorithm`: usable, a SIGN_VERIFY key, and a
/// key spec the algorithm fits.
///
/// # Errors
/// `DisabledException`, `KMSInvalidStateException`, `InvalidKeyUsageException`.
pub fn check_signing_key(
    key: &crate::keys::Key,
    algorithm: SigningAlgorithm,
    operation: &str,
    config: &crate::config::Config,
) -> KmsResult<()> {
    key.check_usable(config)?;
    key.check_usage(KeyUsage::SignVerify, operation, config)?;
    if !algorithm.fits(key.spec) {
        return Err(KmsError::InvalidKeyUsage(format!(
            "The signing algorithm {} is not valid for {} (key spec {}).",
            algorithm.as_str(),
            config.key_arn(&key.id),
            key.spec.as_str()
        )));
    }
    Ok(())
}

/// Signs.
///
/// # Errors
/// `ValidationException` (fields; a DIGEST of the wrong length), `NotFoundException`,
/// `DisabledException`, `KMSInvalidStateException`, `InvalidKeyUsageException` (not a
/// SIGN_VERIFY key, or an algorithm the key spec does not allow), `DryRunOperationException`.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    let (message_type, algorithm) = signing_fields(
        req.message.as_ref(),
        req.message_type.as_deref(),
        req.signing_algorithm.as_deref(),
    )?;
    let message = validate::required("message", req.message)?;
    super::grant_tokens(req.grant_tokens.as_deref())?;
    let store = ctx.keys();
    let key = store.key(
        "keyId",
        &key_id,
        "Sign",
        &crate::kms::authz::Conditions::default(),
    )?;
    check_signing_key(key, algorithm, ctx.operation(), ctx.config)?;
    super::dry_run(req.dry_run)?;
    let (_, material) = key.current_version()?;
    let signature = asym::sign(key.spec, material, algorithm, &message.0, message_type)?;
    Ok(Response {
        key_id: ctx.answer_key(ctx.config.key_arn(&key.id)),
        signature: Blob(signature),
        signing_algorithm: algorithm.as_str(),
    })
}
