//! UntagResource: removes tags from a key by tag key.

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::keys::KeyState;
use crate::kms::validate;

/// UntagResource request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
    tag_keys: Option<Vec<String>>,
}

/// UntagResource response (empty).
#[derive(Debug, Serialize)]
pub struct Response {}

/// Removes the tags.
///
/// # Errors
/// `ValidationException`, `NotFoundException`, `KMSInvalidStateException`.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    let tag_keys = validate::required("tagKeys", req.tag_keys)?;
    validate::count("tagKeys", &tag_keys, super::tag_resource::MAX_TAGS)?;
    for k in &tag_keys {
        validate::str_len("tagKeys.member", k, 1, 128)?;
    }
    let mut store = ctx.keys_mut();
    let key = store.key_mut(
        "keyId",
        &key_id,
        "UntagResource",
        &crate::kms::authz::Conditions::default(),
    )?;
    if key.state == KeyState::PendingDeletion {
        return Err(KmsError::InvalidState(format!(
            "{} is pending deletion.",
            ctx.config.key_arn(&key.id)
        )));
    }
    key.tags.retain(|t| !tag_keys.contains(&t.tag_key));
    let id = key.id;
    store.touch(crate::kms::state::Touched::Key(id));
    Ok(Response {})
}
