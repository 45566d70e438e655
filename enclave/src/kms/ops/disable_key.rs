//! DisableKey.

use serde::{Deserialize, Serialize};

use super::enable_key::set_enabled;
use super::Ctx;
use crate::error::KmsResult;
use crate::keys::KeyState;

/// DisableKey request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
}

/// DisableKey response (empty).
#[derive(Debug, Serialize)]
pub struct Response {}

/// Sets the key Disabled.
///
/// # Errors
/// `ValidationException`, `NotFoundException`, `KMSInvalidStateException` when pending deletion.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    set_enabled(ctx, req.key_id, KeyState::Disabled)?;
    Ok(Response {})
}
