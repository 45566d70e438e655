//! GenerateRandom: 1–1024 random bytes from the enclave's random source.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::json::SecretBlob;
use crate::validate;

/// GenerateRandom request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    number_of_bytes: Option<i64>,
    custom_key_store_id: Option<String>,
    recipient: Option<serde_json::Value>,
}

/// GenerateRandom response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    plaintext: SecretBlob,
}

/// Generates random bytes.
///
/// # Errors
/// `ValidationException` (1–1024), `UnsupportedOperationException` for custom key stores or a
/// Recipient.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let n = validate::required("numberOfBytes", req.number_of_bytes)?;
    validate::range("numberOfBytes", n, 1, 1024)?;
    if req.custom_key_store_id.is_some() {
        return Err(KmsError::UnsupportedOperation(
            "Custom key stores are not supported.".to_owned(),
        ));
    }
    super::no_recipient(req.recipient.as_ref())?;
    let n = usize::try_from(n).map_err(|_| KmsError::Internal("range-checked length"))?;
    let mut bytes = Zeroizing::new(vec![0u8; n]);
    ctx.env.entropy.fill(&mut bytes)?;
    Ok(Response {
        plaintext: SecretBlob(bytes),
    })
}
