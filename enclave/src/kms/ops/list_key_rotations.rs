//! ListKeyRotations: every rotation of a key (each version after the first), oldest first.

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::json::Timestamp;
use crate::keys::rotation;
use crate::kms::validate;

/// ListKeyRotations request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
}

/// One rotation.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Entry {
    key_id: String,
    rotation_date: Timestamp,
    rotation_type: &'static str,
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

fn invalid_marker() -> KmsError {
    KmsError::InvalidMarker("The marker is not one this service issued.".to_owned())
}

/// Lists rotations. The marker is the index of the next version to list.
///
/// # Errors
/// `ValidationException`, `NotFoundException`, `InvalidMarkerException`,
/// `UnsupportedOperationException` for keys that do not rotate.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
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
    rotation::check_rotatable(key, ctx.config)?;
    let start = match req.marker.as_deref() {
        None => 1,
        Some(marker) => {
            validate::str_len("marker", marker, 1, 1024)?;
            let index: usize = marker.parse().map_err(|_| invalid_marker())?;
            if index < 1 || index > key.versions.len() {
                return Err(invalid_marker());
            }
            index
        }
    };
    let rotations: Vec<Entry> = key
        .versions
        .iter()
        .skip(start)
        .take(limit)
        .filter_map(|v| {
            v.rotation.map(|kind| Entry {
                key_id: key.id.to_string(),
                rotation_date: Timestamp(v.created),
                rotation_type: kind.as_str(),
            })
        })
        .collect();
    let next = start.saturating_add(limit);
    let truncated = next < key.versions.len();
    Ok(Response {
        rotations,
        truncated,
        next_marker: truncated.then(|| next.to_string()),
    })
}
