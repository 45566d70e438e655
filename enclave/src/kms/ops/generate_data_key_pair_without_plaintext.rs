//! GenerateDataKeyPairWithoutPlaintext: as GenerateDataKeyPair, without the plaintext private key.

use serde::Serialize;

use super::generate_data_key_pair::generate;
pub use super::generate_data_key_pair::Request;
use super::Ctx;
use crate::error::KmsResult;
use crate::json::Blob;

/// GenerateDataKeyPairWithoutPlaintext response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    private_key_ciphertext_blob: Blob,
    public_key: Blob,
    key_id: String,
    key_pair_spec: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_material_id: Option<String>,
}

/// Generates a data key pair and returns the private key encrypted only; its plaintext is zeroed
/// here.
///
/// # Errors
/// As [`generate`].
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let pair = generate(ctx, "GenerateDataKeyPairWithoutPlaintext", req)?;
    Ok(Response {
        private_key_ciphertext_blob: Blob(pair.private_ciphertext),
        public_key: Blob(pair.public_key),
        key_id: ctx.answer_key(pair.key_arn),
        key_pair_spec: pair.spec.as_str(),
        key_material_id: pair.key_material_id,
    })
}
