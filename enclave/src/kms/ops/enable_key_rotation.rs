//! EnableKeyRotation: automatic rotation of a symmetric encryption key every 90–2560 days.

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::error::KmsResult;
use crate::keys::Rotation;
use crate::keys::rotation::{self, DEFAULT_PERIOD_DAYS, MAX_PERIOD_DAYS, MIN_PERIOD_DAYS};
use crate::kms::validate;

/// EnableKeyRotation request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
    rotation_period_in_days: Option<i64>,
}

/// EnableKeyRotation response (empty).
#[derive(Debug, Serialize)]
pub struct Response {}

/// Enables automatic rotation, or changes its period; the next rotation is one period from now.
///
/// # Errors
/// `ValidationException` for a period outside 90–2560 days, `NotFoundException`,
/// `UnsupportedOperationException` for keys that do not rotate, `DisabledException`,
/// `KMSInvalidStateException` (pending deletion).
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    let period = req
        .rotation_period_in_days
        .unwrap_or(i64::from(DEFAULT_PERIOD_DAYS));
    validate::range(
        "rotationPeriodInDays",
        period,
        i64::from(MIN_PERIOD_DAYS),
        i64::from(MAX_PERIOD_DAYS),
    )?;
    let period_days = u32::try_from(period).unwrap_or(DEFAULT_PERIOD_DAYS);
    let now = ctx.env.now();
    let mut store = ctx.keys_mut();
    let proof = store.authorize(
        "keyId",
        &key_id,
        "EnableKeyRotation",
        &crate::kms::authz::Conditions::default(),
    )?;
    let key = store.get(&proof)?;
    rotation::check_rotatable(key, ctx.config)?;
    key.check_usable(ctx.config)?;
    let id = key.id;
    let rotation = Rotation {
        period_days,
        next: rotation::after_days(now, period_days),
    };
    store.set_rotation(&proof, Some(rotation))?;
    store.touch(crate::kms::state::Touched::Key(id));
    Ok(Response {})
}
