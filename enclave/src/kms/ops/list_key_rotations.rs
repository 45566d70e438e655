//! ListKeyRotations: a key's materials, oldest first. By default (`IncludeKeyMaterial`
//! ROTATIONS_ONLY) the rotations, each version after the first; with ALL_KEY_MATERIAL also the
//! first material and material imported for the next on-demand rotation (PENDING_ROTATION).
//! For an EXTERNAL key each entry also says whether its material is held (ImportState), its
//! expiry and its description.

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::json::Timestamp;
use crate::keys::{rotation, Key, KeyVersion, Origin};
use crate::kms::validate;

/// ListKeyRotations request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
    include_key_material: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
}

/// One material (AWS `RotationsListEntry`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Entry {
    key_id: String,
    key_material_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_material_description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    import_state: Option<&'static str>,
    key_material_state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration_model: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    valid_to: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation_date: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation_type: Option<&'static str>,
}

/// ListKeyRotations response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    rotations: Vec<Entry>,
    truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
}

const ALL_KEY_MATERIAL: &str = "ALL_KEY_MATERIAL";
const ROTATIONS_ONLY: &str = "ROTATIONS_ONLY";

fn invalid_marker() -> KmsError {
    KmsError::InvalidMarker("The marker is not one this service issued.".to_owned())
}

fn entry(key: &Key, version: &KeyVersion, state: &'static str) -> Entry {
    let imported = key.origin == Origin::External;
    let held = version.material.is_some();
    Entry {
        key_id: key.id.to_string(),
        key_material_id: version.id.to_hex(),
        key_material_description: version.description.clone().filter(|_| imported),
        import_state: imported.then_some(if held { "IMPORTED" } else { "PENDING_IMPORT" }),
        key_material_state: state,
        expiration_model: (imported && held).then_some(if version.valid_to.is_some() {
            "KEY_MATERIAL_EXPIRES"
        } else {
            "KEY_MATERIAL_DOES_NOT_EXPIRE"
        }),
        valid_to: version.valid_to.filter(|_| imported && held).map(Timestamp),
        // Not for the first material, nor for material pending rotation.
        rotation_date: version.rotation.map(|_| Timestamp(version.created)),
        rotation_type: version.rotation.map(|r| r.as_str()),
    }
}

/// Lists materials. The marker is the index of the next entry: a version's index, and for
/// material pending rotation the number of versions.
///
/// # Errors
/// `ValidationException`, `NotFoundException`, `InvalidMarkerException`,
/// `UnsupportedOperationException` for keys whose material does not rotate.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    let all = match req.include_key_material.as_deref() {
        None => false,
        Some(v) => {
            validate::one_of("includeKeyMaterial", v, &[ALL_KEY_MATERIAL, ROTATIONS_ONLY])?
                == ALL_KEY_MATERIAL
        }
    };
    let limit = req.limit.unwrap_or(100);
    validate::range("limit", limit, 1, 1000)?;
    let limit = usize::try_from(limit).unwrap_or(100);
    let store = ctx.keys();
    let key = store.key(
        "keyId",
        &key_id,
        "ListKeyRotations",
        &crate::kms::authz::Conditions::default(),
    )?;
    rotation::check_rotates_on_demand(key, ctx.config)?;
    let current = key.versions.len().checked_sub(1);
    let mut materials: Vec<(&KeyVersion, &'static str)> = key
        .versions
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let state = if Some(i) == current {
                "CURRENT"
            } else {
                "NON_CURRENT"
            };
            (v, state)
        })
        .collect();
    if all {
        materials.extend(key.pending.as_ref().map(|p| (p, "PENDING_ROTATION")));
    }
    let first = usize::from(!all);
    let start = match req.marker.as_deref() {
        None => first,
        Some(marker) => {
            validate::str_len("marker", marker, 1, 1024)?;
            let index: usize = marker.parse().map_err(|_| invalid_marker())?;
            if index < first || index > materials.len() {
                return Err(invalid_marker());
            }
            index
        }
    };
    let rotations: Vec<Entry> = materials
        .iter()
        .skip(start)
        .take(limit)
        .map(|(v, state)| entry(key, v, state))
        .collect();
    let next = start.saturating_add(limit);
    let truncated = next < materials.len();
    Ok(Response {
        rotations,
        truncated,
        next_marker: truncated.then(|| next.to_string()),
    })
}
