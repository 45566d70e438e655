//! ScheduleKeyDeletion: the key is destroyed when its date passes on the enclave clock.

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::json::Timestamp;
use crate::keys::KeyState;
use crate::kms::validate;

/// ScheduleKeyDeletion request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
    pending_window_in_days: Option<i64>,
}

/// ScheduleKeyDeletion response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    key_id: String,
    deletion_date: Timestamp,
    key_state: &'static str,
    pending_window_in_days: i64,
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Schedules the deletion.
///
/// # Errors
/// `ValidationException` (window outside 7–30 days), `NotFoundException`,
/// `KMSInvalidStateException` when already pending deletion.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    let days = req.pending_window_in_days.unwrap_or(30);
    validate::range("pendingWindowInDays", days, 7, 30)?;
    let now = ctx.env.now();
    let mut store = ctx.keys_mut();
    let proof = store.authorize(
        "keyId",
        &key_id,
        "ScheduleKeyDeletion",
        &crate::kms::authz::Conditions::default(),
    )?;
    let key = store.get(&proof)?;
    let id = key.id;
    if key.state == KeyState::PendingDeletion {
        return Err(KmsError::InvalidState(format!(
            "{} is pending deletion.",
            ctx.config.key_arn(&id)
        )));
    }
    let date = now.saturating_add(days.saturating_mul(DAY_MS));
    store.schedule_deletion(&proof, date)?;
    store.touch(crate::kms::state::Touched::Key(id));
    Ok(Response {
        key_id: ctx.config.key_arn(&id),
        deletion_date: Timestamp(date),
        key_state: KeyState::PendingDeletion.as_str(),
        pending_window_in_days: days,
    })
}
