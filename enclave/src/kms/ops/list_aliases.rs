//! ListAliases, optionally of one key, paginated by alias name.

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::json::Timestamp;
use crate::kms::validate;

/// ListAliases request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
}

/// One alias.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Entry {
    alias_name: String,
    alias_arn: String,
    target_key_id: String,
    creation_date: Timestamp,
    last_updated_date: Timestamp,
}

/// ListAliases response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    aliases: Vec<Entry>,
    truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
}

/// Lists aliases.
///
/// # Errors
/// `ValidationException`, `InvalidMarkerException`, `NotFoundException` for an unknown KeyId.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let limit = req.limit.unwrap_or(50);
    validate::range("limit", limit, 1, 100)?;
    if let Some(marker) = &req.marker {
        validate::str_len("marker", marker, 1, 1024)?;
        if !marker.starts_with("alias/") {
            return Err(KmsError::InvalidMarker(
                "The marker is not one this service issued.".to_owned(),
            ));
        }
    }
    let now = ctx.env.now();
    let keys = ctx.keys();
    let target = match &req.key_id {
        Some(key_id) => Some(keys.id_of("keyId", key_id)?),
        None => None,
    };
    let (aliases, next) = keys.listing()?.list_aliases(
        req.marker.as_deref(),
        target,
        usize::try_from(limit).unwrap_or(50),
        now,
    );
    Ok(Response {
        aliases: aliases
            .into_iter()
            .map(|(name, a)| Entry {
                alias_name: name.to_owned(),
                alias_arn: ctx.config.alias_arn(name),
                target_key_id: a.target.to_string(),
                creation_date: Timestamp(a.created),
                last_updated_date: Timestamp(a.updated),
            })
            .collect(),
        truncated: next.is_some(),
        next_marker: next,
    })
}
