//! GetKeyPolicy: the key's policy document (AWS's default when none was set).

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::access::policy::Policy;
use crate::kms::validate;

/// GetKeyPolicy request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
    policy_name: Option<String>,
}

/// GetKeyPolicy response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    policy: String,
    policy_name: &'static str,
}

/// Returns the policy.
///
/// # Errors
/// `ValidationException`, `NotFoundException`.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    if req.policy_name.as_deref().is_some_and(|n| n != "default") {
        return Err(KmsError::NotFound("No such policy exists.".to_owned()));
    }
    let store = ctx.keys();
    let key = store.key(
        "keyId",
        &key_id,
        "GetKeyPolicy",
        &crate::kms::authz::Conditions::default(),
    )?;
    Ok(Response {
        policy: key
            .policy
            .clone()
            .unwrap_or_else(|| Policy::default_key_policy(&ctx.config.account)),
        policy_name: "default",
    })
}
