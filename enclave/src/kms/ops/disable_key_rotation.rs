//! DisableKeyRotation: stops automatic rotation; earlier versions keep decrypting.

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::error::KmsResult;
use crate::keys::rotation;
use crate::kms::validate;

/// DisableKeyRotation request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
}

/// DisableKeyRotation response (empty).
#[derive(Debug, Serialize)]
pub struct Response {}

/// Disables automatic rotation.
///
/// # Errors
/// `ValidationException`, `NotFoundException`, `UnsupportedOperationException` for keys that do
/// not rotate, `DisabledException`, `KMSInvalidStateException` (pending deletion).
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    let mut store = ctx.keys_mut();
    let proof = store.authorize(
        "keyId",
        &key_id,
        "DisableKeyRotation",
        &crate::kms::authz::Conditions::default(),
    )?;
    let key = store.get(&proof)?;
    rotation::check_rotatable(key, ctx.config)?;
    key.check_usable(ctx.config)?;
    let id = key.id;
    store.set_rotation(&proof, None)?;
    store.touch(crate::kms::state::Touched::Key(id));
    Ok(Response {})
}
