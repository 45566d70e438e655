//! GetKeyRotationStatus: whether automatic rotation is on, its period and next date.

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::error::KmsResult;
use crate::json::Timestamp;
use crate::keys::KeyState;
use crate::keys::rotation;
use crate::kms::validate;

/// GetKeyRotationStatus request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
}

/// GetKeyRotationStatus response. `OnDemandRotationStartDate` is never sent: an on-demand
/// rotation here completes within its request, so none is ever in progress.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    key_rotation_enabled: bool,
    key_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation_period_in_days: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_rotation_date: Option<Timestamp>,
}

/// Reports the rotation status. As AWS, a key pending deletion reports rotation disabled (its
/// setting comes back if the deletion is cancelled); a disabled key reports its setting. A
/// symmetric key of imported material (which rotates on demand only, to material imported for
/// it) reports automatic rotation off, as AWS's is always false for it.
///
/// # Errors
/// `ValidationException`, `NotFoundException`, `UnsupportedOperationException` for keys whose
/// material never rotates (asymmetric, HMAC).
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    let store = ctx.keys();
    let key = store.key(
        "keyId",
        &key_id,
        "GetKeyRotationStatus",
        &crate::kms::authz::Conditions::default(),
    )?;
    rotation::check_rotates_on_demand(key, ctx.config)?;
    let rotation = key
        .rotation
        .filter(|_| key.state != KeyState::PendingDeletion);
    Ok(Response {
        key_rotation_enabled: rotation.is_some(),
        key_id: key.id.to_string(),
        rotation_period_in_days: rotation.map(|r| r.period_days),
        next_rotation_date: rotation.map(|r| Timestamp(r.next)),
    })
}
