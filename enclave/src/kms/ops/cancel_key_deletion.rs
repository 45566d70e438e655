//! CancelKeyDeletion: the key returns in the Disabled state, as in AWS.

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::keys::KeyState;
use crate::kms::validate;

/// CancelKeyDeletion request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
}

/// CancelKeyDeletion response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    key_id: String,
}

/// Cancels the deletion.
///
/// # Errors
/// `ValidationException`, `NotFoundException`, `KMSInvalidStateException` when the key is not
/// pending deletion.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    let mut store = ctx.keys_mut();
    let proof = store.authorize(
        "keyId",
        &key_id,
        "CancelKeyDeletion",
        &crate::kms::authz::Conditions::default(),
    )?;
    let key = store.get(&proof)?;
    let id = key.id;
    if key.state != KeyState::PendingDeletion {
        return Err(KmsError::InvalidState(format!(
            "{} is not pending deletion.",
            ctx.config.key_arn(&id)
        )));
    }
    store.cancel_deletion(&proof)?;
    store.touch(crate::kms::state::Touched::Key(id));
    Ok(Response {
        key_id: ctx.config.key_arn(&id),
    })
}
