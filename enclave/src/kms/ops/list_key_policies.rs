//! ListKeyPolicies: every key has exactly one policy, named `default`.

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::error::KmsResult;
use crate::kms::validate;

/// ListKeyPolicies request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
}

/// ListKeyPolicies response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    policy_names: [&'static str; 1],
    truncated: bool,
}

/// Lists the key's policy names.
///
/// # Errors
/// `ValidationException`, `NotFoundException`.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    if let Some(limit) = req.limit {
        validate::range("limit", limit, 1, 1000)?;
    }
    if let Some(marker) = &req.marker {
        validate::str_len("marker", marker, 1, 320)?;
    }
    let store = ctx.keys();
    store.key(
        "keyId",
        &key_id,
        "ListKeyPolicies",
        &crate::kms::authz::Conditions::default(),
    )?;
    Ok(Response {
        policy_names: ["default"],
        truncated: false,
    })
}
