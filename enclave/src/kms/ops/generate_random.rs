//! GenerateRandom: 1–1024 random bytes from the enclave's random source.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::json::SecretBlob;
use crate::kms::validate;

/// GenerateRandom request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    number_of_bytes: Option<i64>,
    custom_key_store_id: Option<String>,
    recipient: Option<crate::keys::recipient::RecipientInfoRequest>,
}

/// GenerateRandom response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    /// Absent when the answer goes to a Recipient.
    #[serde(skip_serializing_if = "Option::is_none")]
    plaintext: Option<SecretBlob>,
    /// The bytes as CMS EnvelopedData for an attested Recipient.
    #[serde(skip_serializing_if = "Option::is_none")]
    ciphertext_for_recipient: Option<crate::json::Blob>,
}

/// Generates random bytes.
///
/// # Errors
/// `ValidationException` (1–1024, or a Recipient whose attestation does not verify),
/// `UnsupportedOperationException` for custom key stores.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let n = validate::required("numberOfBytes", req.number_of_bytes)?;
    validate::range("numberOfBytes", n, 1, 1024)?;
    if req.custom_key_store_id.is_some() {
        return Err(KmsError::UnsupportedOperation(
            "Custom key stores are not supported.".to_owned(),
        ));
    }
    let recipient = super::recipient(ctx, req.recipient)?;
    let n = usize::try_from(n).map_err(|_| KmsError::Internal("range-checked length"))?;
    let mut bytes = Zeroizing::new(vec![0u8; n]);
    ctx.env.entropy.fill(&mut bytes)?;
    let (plaintext, ciphertext_for_recipient) =
        super::for_recipient(ctx, recipient.as_ref(), bytes)?;
    Ok(Response {
        plaintext,
        ciphertext_for_recipient,
    })
}
