//! RotateKeyOnDemand: a new version of the key's material now, at most 25 times per key: fresh
//! material for an AWS_KMS key; for a symmetric EXTERNAL key, the material imported for it
//! (ImportType NEW_KEY_MATERIAL, PENDING_ROTATION), which becomes current.

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

fn check_limit(key: &crate::keys::Key, ctx: &Ctx<'_>) -> KmsResult<()> {
    if rotation::on_demand_count(key) >= MAX_ON_DEMAND {
        return Err(KmsError::LimitExceeded(format!(
            "{} has reached the limit of {MAX_ON_DEMAND} on-demand rotations.",
            ctx.config.key_arn(&key.id)
        )));
    }
    Ok(())
}

/// Rotates the key now. The automatic schedule, if any, is unchanged (as AWS).
///
/// # Errors
/// `ValidationException`, `NotFoundException`, `UnsupportedOperationException` for keys that do
/// not rotate, `DisabledException`, `KMSInvalidStateException` (also for an EXTERNAL key with no
/// new material pending), `LimitExceededException` after 25 on-demand rotations.
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
    key.check_usable_at(ctx.config, now)?;
    // AWS rotates an EXTERNAL key on demand to new material imported for it beforehand
    // (ImportType NEW_KEY_MATERIAL); with none pending it answers KMSInvalidStateException.
    if key.origin == Origin::External
        && key.spec == KeySpec::SymmetricDefault
        && key.usage == KeyUsage::EncryptDecrypt
    {
        // Pending material past its ValidTo is gone, whether or not the tick has dropped it.
        let pending = key
            .pending
            .as_ref()
            .is_some_and(|p| p.valid_to.is_none_or(|t| t > now));
        if !pending {
            return Err(KmsError::InvalidState(format!(
                "{} has no new key material pending rotation.",
                ctx.config.key_arn(&key.id)
            )));
        }
        check_limit(key, ctx)?;
        if let Some(mut version) = key.pending.take() {
            version.created = now;
            version.rotation = Some(RotationType::OnDemand);
            key.versions.push(version);
        }
        let id = key.id;
        store.touch(crate::kms::state::Touched::Key(id));
        return Ok(Response {
            key_id: ctx.config.key_arn(&id),
        });
    }
    rotation::check_rotatable(key, ctx.config)?;
    check_limit(key, ctx)?;
    rotation::add_version(key, now, RotationType::OnDemand, ctx.env.entropy.as_ref())?;
    let id = key.id;
    store.touch(crate::kms::state::Touched::Key(id));
    // The key's ARN, as AWS answers.
    Ok(Response {
        key_id: ctx.config.key_arn(&id),
    })
}
