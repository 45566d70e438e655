//! UpdateKeyDescription.

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::keys::KeyState;
use crate::kms::validate;

/// UpdateKeyDescription request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
    description: Option<String>,
}

/// UpdateKeyDescription response (empty).
#[derive(Debug, Serialize)]
pub struct Response {}

/// Replaces the description.
///
/// # Errors
/// `ValidationException`, `NotFoundException`, `KMSInvalidStateException` when pending deletion.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    let description = validate::required("description", req.description)?;
    validate::str_len("description", &description, 0, 8192)?;
    let mut store = ctx.keys_mut();
    store.ensure_room()?;
    let key = store.key_mut(
        "keyId",
        &key_id,
        "UpdateKeyDescription",
        &crate::kms::authz::Conditions::default(),
    )?;
    if key.state == KeyState::PendingDeletion {
        return Err(KmsError::InvalidState(format!(
            "{} is pending deletion.",
            ctx.config.key_arn(&key.id)
        )));
    }
    key.description = description;
    let id = key.id;
    store.touch(crate::kms::state::Touched::Key(id));
    Ok(Response {})
}
