//! GetParametersForImport: a fresh RSA wrapping key and a single-use import token for an
//! EXTERNAL key, and an attestation document binding the wrapping key to this enclave.
//!
//! The `AttestationDocument` field is ekms's addition to the AWS answer: a COSE_Sign1 whose
//! `public_key` is exactly `PublicKey` (DER SubjectPublicKeyInfo), so that an importer can
//! check which enclave image will unwrap its material before it wraps anything.

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::keys::import::{WrappingAlgorithm, WrappingKey, WrappingKeySpec, TOKEN_LEN};
use crate::json::{Blob, Timestamp};
use crate::keys::{KeyState, Origin};
use crate::kms::validate;

/// GetParametersForImport request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
    wrapping_algorithm: Option<String>,
    wrapping_key_spec: Option<String>,
}

/// GetParametersForImport response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    key_id: String,
    import_token: Blob,
    public_key: Blob,
    parameters_valid_to: Timestamp,
    attestation_document: Blob,
}

/// Checks that `key` takes imported material at all, as AWS answers.
///
/// # Errors
/// `UnsupportedOperationException` for a key whose origin is not EXTERNAL,
/// `KMSInvalidStateException` for a key pending deletion.
pub fn check_importable(key: &crate::keys::Key, ctx: &Ctx<'_>) -> KmsResult<()> {
    if key.origin != Origin::External {
        return Err(KmsError::UnsupportedOperation(format!(
            "{} origin is {} which is not valid for this operation.",
            ctx.config.key_arn(&key.id),
            key.origin.as_str()
        )));
    }
    if key.state == KeyState::PendingDeletion {
        return Err(KmsError::InvalidState(format!(
            "{} is pending deletion.",
            ctx.config.key_arn(&key.id)
        )));
    }
    Ok(())
}

/// Makes the wrapping key and token.
///
/// # Errors
/// `ValidationException` for missing or unknown fields, `UnsupportedOperationException` for
/// RSAES_PKCS1_V1_5, SM2 or a key that is not EXTERNAL, `NotFoundException`,
/// `KMSInvalidStateException`, `LimitExceededException` when too many tokens are
/// outstanding, `KMSInternalException` if key generation or attestation fails.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    let algorithm = validate::required("wrappingAlgorithm", req.wrapping_algorithm)?;
    validate::one_of(
        "wrappingAlgorithm",
        &algorithm,
        WrappingAlgorithm::AWS_NAMES,
    )?;
    let spec = validate::required("wrappingKeySpec", req.wrapping_key_spec)?;
    validate::one_of("wrappingKeySpec", &spec, WrappingKeySpec::AWS_NAMES)?;
    let algorithm = WrappingAlgorithm::parse(&algorithm).ok_or_else(|| {
        KmsError::UnsupportedOperation(format!(
            "WrappingAlgorithm {algorithm} is not supported: use RSAES_OAEP_SHA_256 or RSA_AES_KEY_WRAP_SHA_256."
        ))
    })?;
    let spec = WrappingKeySpec::parse(&spec).ok_or_else(|| {
        KmsError::UnsupportedOperation(format!("WrappingKeySpec {spec} is not supported."))
    })?;
    let id = {
        let store = ctx.keys();
        let key = store.key(
            "keyId",
            &key_id,
            "GetParametersForImport",
            &crate::kms::authz::Conditions::default(),
        )?;
        check_importable(key, ctx)?;
        key.id
    };
    // No lock is held while the RSA key is generated (up to a second for RSA_4096).
    let wrapping = WrappingKey::generate(spec).map_err(|e| {
        tracing::warn!(error = %e, "wrapping key generation failed");
        KmsError::Internal("wrapping key generation failed")
    })?;
    let public_key = wrapping.public_key_der().to_vec();
    let attestation_document = ctx
        .env
        .attester
        .attest(None, None, Some(&public_key))
        .map_err(|e| {
            tracing::warn!(error = %e, "attesting the wrapping key failed");
            KmsError::Internal("attesting the wrapping key failed")
        })?;
    let mut token = [0u8; TOKEN_LEN];
    ctx.env.entropy.fill(&mut token)?;
    let valid_to = ctx
        .imports()
        .issue(token, id, algorithm, wrapping, ctx.env.now())
        .map_err(|e| {
            KmsError::LimitExceeded(format!("{e}: import, or wait for tokens to expire."))
        })?;
    Ok(Response {
        key_id: ctx.config.key_arn(&id),
        import_token: Blob(token.to_vec()),
        public_key: Blob(public_key),
        parameters_valid_to: Timestamp(valid_to),
        attestation_document: Blob(attestation_document),
    })
}
