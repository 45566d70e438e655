//! TagResource: adds or replaces tags on a key.

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::keys::{KeyState, Tag};
use crate::kms::validate;

/// Most tags a key carries, as in AWS.
pub const MAX_TAGS: usize = 50;

/// More tags than a key may carry, in AWS's words.
fn too_many_tags() -> KmsError {
    KmsError::Tag("Too many tags".to_owned())
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

/// Checks tags as AWS does, in its order and words (as AWS KMS answers them, recorded in
/// LocalStack's AWS-validated tag tests): duplicate keys, then more than [`MAX_TAGS`] (both
/// `TagException`: the API model bounds neither), then each tag in turn: its key 1–128
/// characters and its value 0–256 (`ValidationException` naming the tag's position and value),
/// no `aws:` prefix (`TagException`).
///
/// # Errors
/// `ValidationException` for lengths, `TagException` for duplicate or reserved keys and for
/// more than [`MAX_TAGS`].
pub fn validate_tags(tags: &[Tag]) -> KmsResult<()> {
    for (i, tag) in tags.iter().enumerate() {
        if tags[..i].iter().any(|t| t.tag_key == tag.tag_key) {
            return Err(KmsError::Tag("Duplicate tag keys".to_owned()));
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(too_many_tags());
    }
    for (i, tag) in tags.iter().enumerate() {
        let position = i + 1;
        for (member, value, max) in [("tagKey", &tag.tag_key, 128), ("tagValue", &tag.tag_value, 256)] {
            let min = usize::from(member == "tagKey");
            let n = value.chars().count();
            let constraint = if n < min {
                format!("Member must have length greater than or equal to {min}")
            } else if n > max {
                format!("Member must have length less than or equal to {max}")
            } else {
                continue;
            };
            return Err(KmsError::invalid_value(
                &format!("tags.{position}.member.{member}"),
                format_args!("'{value}'"),
                constraint,
            ));
        }
        if tag.tag_key.to_ascii_lowercase().starts_with("aws:") {
            return Err(KmsError::Tag(
                "Tags beginning with aws: are reserved".to_owned(),
            ));
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
