//! EnableKey.

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::keys::KeyState;
use crate::kms::validate;

/// EnableKey request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
}

/// EnableKey response (empty).
#[derive(Debug, Serialize)]
pub struct Response {}

/// Sets the key Enabled.
///
/// # Errors
/// `ValidationException`, `NotFoundException`, `KMSInvalidStateException` when pending deletion.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    set_enabled(ctx, req.key_id, KeyState::Enabled)?;
    Ok(Response {})
}

/// Moves a key between Enabled and Disabled.
///
/// # Errors
/// As [`handle`].
pub fn set_enabled(ctx: &Ctx<'_>, key_id: Option<String>, to: KeyState) -> KmsResult<()> {
    let key_id = validate::required("keyId", key_id)?;
    let action = if to == KeyState::Enabled {
        "EnableKey"
    } else {
        "DisableKey"
    };
    let mut store = ctx.keys_mut();
    let key = store.key_mut(
        "keyId",
        &key_id,
        action,
        &crate::kms::authz::Conditions::default(),
    )?;
    if matches!(
        key.state,
        KeyState::PendingDeletion | KeyState::PendingImport
    ) {
        return Err(KmsError::InvalidState(format!(
            "{} is {}.",
            ctx.config.key_arn(&key.id),
            key.state.as_str()
        )));
    }
    key.state = to;
    let id = key.id;
    store.touch(crate::kms::state::Touched::Key(id));
    Ok(())
}
