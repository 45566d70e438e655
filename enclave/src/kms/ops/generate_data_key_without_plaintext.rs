//! GenerateDataKeyWithoutPlaintext: as GenerateDataKey, returning only the encrypted key.

use serde::Serialize;

use super::generate_data_key::generate;
pub use super::generate_data_key::Request;
use super::Ctx;
use crate::error::KmsResult;
use crate::json::Blob;

/// GenerateDataKeyWithoutPlaintext response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    ciphertext_blob: Blob,
    key_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_material_id: Option<String>,
}

/// Generates a data key and returns it encrypted only; the plaintext is zeroed here.
///
/// # Errors
/// As [`generate`].
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key = generate(ctx, "GenerateDataKeyWithoutPlaintext", req)?;
    Ok(Response {
        ciphertext_blob: Blob(key.ciphertext),
        key_id: ctx.answer_key(key.key_arn),
        // As GenerateDataKey: not with a Recipient (AWS's request has none here).
        key_material_id: key.key_material_id.filter(|_| key.recipient.is_none()),
    })
}
