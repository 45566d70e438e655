//! TagResource: adds or replaces tags on a key.

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::keys::{KeyState, Tag};
use crate::kms::validate;

/// Most tags a key carries, as in AWS.
pub const MAX_TAGS: usize = 50;

/// More tags than a key may carry.
fn too_many_tags() -> KmsError {
    KmsError::Tag(format!("A key can have at most {MAX_TAGS} tags."))
}

/// TagResource request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
    tags: Option<Vec<Tag>>,
}

/// TagResource response (empty).
#[derive(Debug, Serialize)]
pub struct Response {}

/// Checks tags as AWS does: keys 1–128 characters, values 0–256, no `aws:` prefix, no
/// duplicate keys, at most [`MAX_TAGS`].
///
/// # Errors
/// `ValidationException` for lengths, `TagException` for reserved or duplicate keys and for
/// more than [`MAX_TAGS`].
pub fn validate_tags(tags: &[Tag]) -> KmsResult<()> {
    // The API model bounds no tag list: more than a key may carry is the service's TagException.
    if tags.len() > MAX_TAGS {
        return Err(too_many_tags());
    }
    for (i, tag) in tags.iter().enumerate() {
        validate::str_len("tags.member.tagKey", &tag.tag_key, 1, 128)?;
        validate::str_len("tags.member.tagValue", &tag.tag_value, 0, 256)?;
        if tag.tag_key.to_ascii_lowercase().starts_with("aws:") {
            return Err(KmsError::Tag(format!(
                "Tag key {} uses the reserved prefix aws:",
                tag.tag_key
            )));
        }
        if tags[..i].iter().any(|t| t.tag_key == tag.tag_key) {
            return Err(KmsError::Tag(format!("Duplicate tag key {}", tag.tag_key)));
        }
    }
    Ok(())
}

/// Tags the key.
///
/// # Errors
/// `ValidationException`, `TagException`, `NotFoundException`, `KMSInvalidStateException`.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    let tags = validate::required("tags", req.tags)?;
    validate_tags(&tags)?;
    let mut store = ctx.keys_mut();
    store.ensure_room()?;
    let key = store.key_mut(
        "keyId",
        &key_id,
        "TagResource",
        &crate::kms::authz::Conditions::default(),
    )?;
    if key.state == KeyState::PendingDeletion {
        return Err(KmsError::InvalidState(format!(
            "{} is pending deletion.",
            ctx.config.key_arn(&key.id)
        )));
    }
    let mut merged = key.tags.clone();
    for tag in tags {
        match merged.iter_mut().find(|t| t.tag_key == tag.tag_key) {
            Some(existing) => existing.tag_value = tag.tag_value,
            None => merged.push(tag),
        }
    }
    if merged.len() > MAX_TAGS {
        return Err(too_many_tags());
    }
    key.tags = merged;
    let id = key.id;
    store.touch(crate::kms::state::Touched::Key(id));
    Ok(Response {})
}
