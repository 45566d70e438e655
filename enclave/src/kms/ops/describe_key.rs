//! DescribeKey.

use serde::{Deserialize, Serialize};

use super::metadata::KeyMetadata;
use super::Ctx;
use crate::error::KmsResult;
use crate::kms::validate;

/// DescribeKey request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
    grant_tokens: Option<Vec<String>>,
}

/// DescribeKey response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    key_metadata: KeyMetadata,
}

/// Describes the key.
///
/// # Errors
/// `ValidationException`, `NotFoundException`.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    super::grant_tokens(req.grant_tokens.as_deref())?;
    let store = ctx.keys();
    let key = store.key(
        "keyId",
        &key_id,
        "DescribeKey",
        &crate::kms::authz::Conditions::default(),
    )?;
    Ok(Response {
        key_metadata: KeyMetadata::of(key, ctx.config),
    })
}
