//! DeriveSharedSecret: ECDH between a KEY_AGREEMENT key and the caller's public key.

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::keys::asym;
use crate::error::KmsResult;
use crate::json::{Blob, SecretBlob};
use crate::keys::KeyUsage;
use crate::kms::validate;

/// DeriveSharedSecret request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
    key_agreement_algorithm: Option<String>,
    public_key: Option<Blob>,
    grant_tokens: Option<Vec<String>>,
    dry_run: Option<bool>,
    recipient: Option<crate::keys::recipient::RecipientInfoRequest>,
}

/// DeriveSharedSecret response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    key_id: String,
    /// Absent when the answer goes to a Recipient.
    #[serde(skip_serializing_if = "Option::is_none")]
    shared_secret: Option<SecretBlob>,
    /// The shared secret as CMS EnvelopedData for an attested Recipient.
    #[serde(skip_serializing_if = "Option::is_none")]
    ciphertext_for_recipient: Option<Blob>,
    key_agreement_algorithm: &'static str,
    key_origin: &'static str,
}

/// Largest `PublicKey` AWS KMS accepts.
pub const MAX_PUBLIC_KEY: usize = 8192;

/// Derives the raw ECDH shared secret (the x-coordinate of the shared point, as AWS answers).
///
/// # Errors
/// `ValidationException` (fields; a public key that is not DER SubjectPublicKeyInfo on the key's
/// curve), `NotFoundException`, `DisabledException`, `KMSInvalidStateException`,
/// `InvalidKeyUsageException` (not a KEY_AGREEMENT key), `DryRunOperationException`,
/// `ValidationException` for a Recipient whose attestation does not verify.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    let algorithm = validate::required("keyAgreementAlgorithm", req.key_agreement_algorithm)?;
    validate::one_of("keyAgreementAlgorithm", &algorithm, &["ECDH"])?;
    let public_key = validate::required("publicKey", req.public_key)?;
    validate::blob_len("publicKey", &public_key.0, 1, MAX_PUBLIC_KEY)?;
    super::grant_tokens(req.grant_tokens.as_deref())?;
    let recipient = super::recipient(ctx, req.recipient)?;
    let store = ctx.keys();
    let conditions = crate::kms::authz::Conditions::default().with_recipient(recipient.as_ref());
    let key = store.key("keyId", &key_id, "DeriveSharedSecret", &conditions)?;
    key.check_usable(ctx.config)?;
    key.check_usage(KeyUsage::KeyAgreement, ctx.operation(), ctx.config)?;
    super::dry_run(req.dry_run)?;
    let (_, material) = key.current_version()?;
    let secret = asym::derive_shared_secret(key.spec, material, &public_key.0)?;
    let (shared_secret, ciphertext_for_recipient) =
        super::for_recipient(ctx, recipient.as_ref(), secret)?;
    Ok(Response {
        key_id: ctx.config.key_arn(&key.id),
        shared_secret,
        ciphertext_for_recipient,
        key_agreement_algorithm: "ECDH",
        key_origin: key.origin.as_str(),
    })
}
