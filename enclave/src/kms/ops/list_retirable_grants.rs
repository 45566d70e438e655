//! ListRetirableGrants: every grant, on any key, whose retiring principal is the one given.
//!
//! Each key indexes its grants by retiring principal, but there is no index across keys, so
//! this walks the keys in id order: O(keys) over a full listing, acceptable for an
//! administrative call. One request examines at most [`MAX_KEYS_SCANNED`] keys (under the store's read lock);
//! when it stops there it answers a short page with `Truncated` and a marker that resumes at
//! the next key, as AWS allows ("fewer results than the Limit").
//!
//! Marker: `<key id>` (resume at that key) or `<key id>.<millis>.<grant id>` (resume at that
//! grant of that key).

use serde::Deserialize;
use uuid::Uuid;

use super::create_grant::check_principal;
use super::list_grants::{
    entry, invalid_marker, page_limit, parse_position, position, position_text, Position, Response,
};
use super::Ctx;
use crate::error::KmsResult;
use crate::kms::validate;

/// Most keys one request looks at.
pub const MAX_KEYS_SCANNED: usize = 10_000;

/// ListRetirableGrants request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    retiring_principal: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
}

fn parse_marker(marker: &str) -> Option<(Uuid, Option<Position>)> {
    match marker.split_once('.') {
        None => Some((Uuid::try_parse(marker).ok()?, None)),
        Some((key, rest)) => Some((Uuid::try_parse(key).ok()?, Some(parse_position(rest)?))),
    }
}

/// Lists retirable grants.
///
/// # Errors
/// `ValidationException`, `InvalidMarkerException`.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let retiring = validate::required("retiringPrincipal", req.retiring_principal)?;
    check_principal("retiringPrincipal", &retiring)?;
    let limit = page_limit(req.limit, req.marker.as_deref())?;
    let (from_key, from_grant) = match &req.marker {
        Some(m) => {
            let (key, grant) = parse_marker(m).ok_or_else(invalid_marker)?;
            (Some(key), grant)
        }
        None => (None, None),
    };
    let keys_guard = ctx.keys();
    let store = keys_guard.listing()?;
    let (keys, next_key) = store.list(from_key, MAX_KEYS_SCANNED, ctx.env.now());
    let mut grants = Vec::new();
    for key in keys {
        if key.grants.is_empty() {
            continue;
        }
        let resume = from_grant.as_ref().filter(|_| Some(key.id) == from_key);
        for g in key.grants.page(resume, None, Some(retiring.as_str())) {
            if grants.len() == limit {
                let marker = format!("{}.{}", key.id, position_text(&position(g)));
                return Ok(Response {
                    grants,
                    truncated: true,
                    next_marker: Some(marker),
                });
            }
            grants.push(entry(ctx, &key.id, g));
        }
    }
    // The scan budget ran out (or the keys did): resume at the next key, if any.
    Ok(Response {
        grants,
        truncated: next_key.is_some(),
        next_marker: next_key.map(|id| id.to_string()),
    })
}
