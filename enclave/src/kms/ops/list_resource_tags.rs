//! ListResourceTags.

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::keys::Tag;
use crate::kms::validate;

/// ListResourceTags request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
}

/// ListResourceTags response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    tags: Vec<Tag>,
    truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
}

/// Lists a key's tags; the marker is the index of the next tag.
///
/// # Errors
/// `ValidationException`, `InvalidMarkerException`, `NotFoundException`.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    let limit = req.limit.unwrap_or(50);
    validate::range("limit", limit, 1, 50)?;
    let start = match &req.marker {
        Some(m) => {
            validate::str_len("marker", m, 1, 1024)?;
            m.parse::<usize>().map_err(|_| {
                KmsError::InvalidMarker("The marker is not one this service issued.".to_owned())
            })?
        }
        None => 0,
    };
    let store = ctx.keys();
    let key = store.key(
        "keyId",
        &key_id,
        "ListResourceTags",
        &crate::kms::authz::Conditions::default(),
    )?;
    let limit = usize::try_from(limit).unwrap_or(50);
    let tags: Vec<Tag> = key.tags.iter().skip(start).take(limit).cloned().collect();
    let next = start.saturating_add(tags.len());
    let truncated = next < key.tags.len();
    Ok(Response {
        tags,
        truncated,
        next_marker: truncated.then(|| next.to_string()),
    })
}
