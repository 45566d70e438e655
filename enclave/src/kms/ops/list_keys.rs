//! ListKeys, paginated by an opaque marker (the next key id).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::kms::validate;

/// ListKeys request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    limit: Option<i64>,
    marker: Option<String>,
}

/// One entry of the list.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Entry {
    key_id: String,
    key_arn: String,
}

/// ListKeys response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    keys: Vec<Entry>,
    truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
}

/// Parses a marker this service issued.
///
/// # Errors
/// `ValidationException` for a bad length, `InvalidMarkerException` for anything else.
pub fn marker_uuid(marker: Option<&str>) -> KmsResult<Option<Uuid>> {
    let Some(marker) = marker else {
        return Ok(None);
    };
    validate::str_len("marker", marker, 1, 1024)?;
    Uuid::try_parse(marker).map(Some).map_err(|_| {
        KmsError::InvalidMarker("The marker is not one this service issued.".to_owned())
    })
}

/// Lists keys.
///
/// # Errors
/// `ValidationException`, `InvalidMarkerException`.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let limit = req.limit.unwrap_or(100);
    validate::range("limit", limit, 1, 1000)?;
    let from = marker_uuid(req.marker.as_deref())?;
    let keys_guard = ctx.keys();
    let store = keys_guard.listing()?;
    let (keys, next) = store.list(from, usize::try_from(limit).unwrap_or(100), ctx.env.now());
    Ok(Response {
        keys: keys
            .into_iter()
            .map(|k| Entry {
                key_id: k.id.to_string(),
                key_arn: ctx.config.key_arn(&k.id),
            })
            .collect(),
        truncated: next.is_some(),
        next_marker: next.map(|id| id.to_string()),
    })
}
