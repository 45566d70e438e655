//! DeleteImportedKeyMaterial: drops one of an EXTERNAL key's imported materials from memory
//! and, durably, from its sealed record: the one `KeyMaterialId` names, else the current one.
//! The material's id stays, so only the same material can be imported again. Deleting material
//! associated with the key (current or not) leaves the key PendingImport until it is imported
//! again, and ciphertexts made under it decrypt again after that; deleting material pending
//! rotation drops it, and the key can take other new material instead.

use serde::{Deserialize, Serialize};

use super::get_parameters_for_import::check_importable;
use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::kms::validate;

/// DeleteImportedKeyMaterial request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
    key_material_id: Option<String>,
}

/// DeleteImportedKeyMaterial response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    key_id: String,
    /// The deleted material's id (symmetric encryption keys, as AWS).
    #[serde(skip_serializing_if = "Option::is_none")]
    key_material_id: Option<String>,
}

/// Deletes the material.
///
/// # Errors
/// `ValidationException`, `NotFoundException` (also for a `KeyMaterialId` that is not one of
/// the key's), `UnsupportedOperationException` for a key that is not EXTERNAL,
/// `KMSInvalidStateException` when pending deletion.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    let material_id = req
        .key_material_id
        .as_deref()
        .map(|id| validate::key_material_id("keyMaterialId", id))
        .transpose()?;
    let mut store = ctx.keys_mut();
    let proof = store.authorize(
        "keyId",
        &key_id,
        "DeleteImportedKeyMaterial",
        &crate::kms::authz::Conditions::default(),
    )?;
    let key = store.get(&proof)?;
    check_importable(key, ctx)?;
    let id = key.id;
    let key = store.get_mut(&proof)?;
    let deleted = match material_id {
        // The current material (none before the first import: nothing to delete).
        None => key.versions.last_mut().map(|version| {
            version.material = None; // key material is zeroed here
            version.valid_to = None;
            version.id
        }),
        Some(wanted) => {
            if key.pending.as_ref().is_some_and(|p| p.id == wanted) {
                key.pending = None; // key material is zeroed here
            } else {
                let version = key
                    .versions
                    .iter_mut()
                    .find(|v| v.id == wanted)
                    .ok_or_else(|| {
                        KmsError::NotFound(format!(
                            "Key material {} does not exist in {}",
                            wanted.to_hex(),
                            ctx.config.key_arn(&id)
                        ))
                    })?;
                version.material = None; // key material is zeroed here
                version.valid_to = None;
            }
            Some(wanted)
        }
    };
    key.settle_import_state();
    let key_material_id = deleted
        .filter(|_| key.shows_material_ids())
        .map(|d| d.to_hex());
    store.refresh_expiry(&proof)?;
    store.touch(crate::kms::state::Touched::Key(id));
    Ok(Response {
        key_id: ctx.config.key_arn(&id),
        key_material_id,
    })
}
