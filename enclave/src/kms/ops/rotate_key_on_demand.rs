//! RotateKeyOnDemand: a new version of the key's material now, at most 10 times per key.

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::keys::{KeySpec, KeyUsage, Origin, RotationType};
use crate::keys::rotation::{self, MAX_ON_DEMAND};
use crate::kms::validate;

/// RotateKeyOnDemand request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
}

/// RotateKeyOnDemand response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    key_id: String,
}

/// Rotates the key now. The automatic schedule, if any, is unchanged (as AWS).
///
/// # Errors
/// `ValidationException`, `NotFoundException`, `UnsupportedOperationException` for keys that do
/// not rotate, `DisabledException`, `KMSInvalidStateException` (also for an EXTERNAL key: it has
/// no new material pending), `LimitExceededException` after 10 on-demand rotations.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    let now = ctx.env.now();
    let mut store = ctx.keys_mut();
    store.ensure_room()?;
    let key = store.key_mut(
        "keyId",
        &key_id,
        "RotateKeyOnDemand",
        &crate::kms::authz::Conditions::default(),
    )?;
    // AWS checks the key's state before its type: a disabled HMAC key is DisabledException.
    key.check_usable(ctx.config)?;
    // AWS rotates an EXTERNAL key on demand to new material imported for it beforehand
    // (ImportType NEW_KEY_MATERIAL); with none pending it answers KMSInvalidStateException.
    // This service keeps one material per key, so none is ever pending.
    if key.origin == Origin::External
        && key.spec == KeySpec::SymmetricDefault
        && key.usage == KeyUsage::EncryptDecrypt
    {
        return Err(KmsError::InvalidState(format!(
            "{} has no new key material pending rotation: importing new key material into a \
             key that has some (KeyMaterialId, ImportType NEW_KEY_MATERIAL) is not supported.",
            ctx.config.key_arn(&key.id)
        )));
    }
    rotation::check_rotatable(key, ctx.config)?;
    if rotation::on_demand_count(key) >= MAX_ON_DEMAND {
        return Err(KmsError::LimitExceeded(format!(
            "{} has reached the limit of {MAX_ON_DEMAND} on-demand rotations.",
            ctx.config.key_arn(&key.id)
        )));
    }
    rotation::add_version(key, now, RotationType::OnDemand, ctx.env.entropy.as_ref())?;
    let id = key.id;
    store.touch(crate::kms::state::Touched::Key(id));
    // The key's ARN, as AWS answers.
    Ok(Response {
        key_id: ctx.config.key_arn(&id),
    })
}
