//! DeleteImportedKeyMaterial: drops an EXTERNAL key's material from memory and, durably, from
//! its sealed record. The key waits in PendingImport until the same material is imported
//! again; ciphertexts made before then decrypt again after it.

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
}

/// Deletes the material.
///
/// # Errors
/// `ValidationException`, `NotFoundException`, `UnsupportedOperationException` for a key
/// that is not EXTERNAL (or a KeyMaterialId), `KMSInvalidStateException` when pending
/// deletion.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    if req.key_material_id.is_some() {
        return Err(KmsError::UnsupportedOperation(
            "KeyMaterialId (multiple imported key materials) is not supported.".to_owned(),
        ));
    }
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
    let key = store.set_valid_to(&proof, None)?;
    key.remove_imported_material();
    store.touch(crate::kms::state::Touched::Key(id));
    Ok(Response {
        key_id: ctx.config.key_arn(&id),
    })
}
