//! ListGrants: the grants on one key, optionally one grant or one grantee's, paginated.
//!
//! Grants are listed in (creation date, grant id) order; the marker is the position of the
//! next grant, `<creation millis>.<grant id>`, so that retiring a grant between pages does not
//! invalidate it.

use serde::{Deserialize, Serialize};

use super::create_grant::{check_grant_id, check_key_ref, check_principal};
use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::json::Timestamp;
use crate::access::policy::grants::{Grant, GrantConstraints, GrantOperation};
use crate::kms::validate;

/// ListGrants request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
    grant_id: Option<String>,
    grantee_principal: Option<String>,
}

/// One grant, as AWS's `GrantListEntry`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Entry {
    key_id: String,
    grant_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    creation_date: Timestamp,
    grantee_principal: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    retiring_principal: Option<String>,
    issuing_account: String,
    operations: Vec<GrantOperation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    constraints: Option<GrantConstraints>,
}

/// ListGrants (and ListRetirableGrants) response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    /// The page.
    pub grants: Vec<Entry>,
    /// Whether more follow.
    pub truncated: bool,
    /// Where the next page starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// Where a grant sorts among a key's grants.
pub type Position = (i64, String);

/// The sort position of a grant.
pub fn position(grant: &Grant) -> Position {
    (grant.creation_date, grant.grant_id.clone())
}

/// `<millis>.<grant id>`.
pub fn position_text(p: &Position) -> String {
    format!("{}.{}", p.0, p.1)
}

/// Parses [`position_text`]; `None` for anything else.
pub fn parse_position(text: &str) -> Option<Position> {
    let (millis, grant_id) = text.split_once('.')?;
    let millis: i64 = millis.parse().ok()?;
    check_grant_id("marker", grant_id).ok()?;
    Some((millis, grant_id.to_owned()))
}

/// The answer for an unknown marker.
pub fn invalid_marker() -> KmsError {
    KmsError::InvalidMarker("The marker is not one this service issued.".to_owned())
}

/// A grant as listed.
pub fn entry(ctx: &Ctx<'_>, key_id: &uuid::Uuid, grant: &Grant) -> Entry {
    Entry {
        key_id: ctx.config.key_arn(key_id),
        grant_id: grant.grant_id.clone(),
        name: grant.name.clone(),
        creation_date: Timestamp(grant.creation_date),
        grantee_principal: grant.grantee_principal.clone(),
        retiring_principal: grant.retiring_principal.clone(),
        issuing_account: format!("arn:aws:iam::{}:root", grant.issuing_account),
        operations: grant.operations.clone(),
        constraints: grant.constraints.clone(),
    }
}

/// Checks `Limit` (1–100, default 50) and the marker's length.
///
/// # Errors
/// `ValidationException`.
pub fn page_limit(limit: Option<i64>, marker: Option<&str>) -> KmsResult<usize> {
    let limit = limit.unwrap_or(50);
    validate::range("limit", limit, 1, 100)?;
    if let Some(marker) = marker {
        validate::str_len("marker", marker, 1, 1024)?;
    }
    usize::try_from(limit).map_err(|_| KmsError::Internal("limit"))
}

/// Lists a key's grants.
///
/// # Errors
/// `ValidationException`, `InvalidMarkerException`, `InvalidGrantIdException`,
/// `NotFoundException`.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    let limit = page_limit(req.limit, req.marker.as_deref())?;
    let from = match &req.marker {
        Some(m) => Some(parse_position(m).ok_or_else(invalid_marker)?),
        None => None,
    };
    if let Some(id) = &req.grant_id {
        check_grant_id("grantId", id)?;
    }
    if let Some(p) = &req.grantee_principal {
        check_principal("granteePrincipal", p)?;
    }
    check_key_ref(ctx, &key_id)?;
    let store = ctx.keys();
    // Any key state: grants of a disabled or pending-deletion key can be listed.
    let key = store.key(
        "keyId",
        &key_id,
        "ListGrants",
        &crate::kms::authz::Conditions::default(),
    )?;
    // By id: one lookup. Otherwise a walk of the position index (or the grantee's) from the
    // marker: a page costs its length, whatever the number of grants.
    let mut selected: Vec<&Grant> = match &req.grant_id {
        Some(id) => key
            .grants
            .get(id)
            .filter(|g| {
                req.grantee_principal
                    .as_ref()
                    .is_none_or(|p| &g.grantee_principal == p)
                    && from
                        .as_ref()
                        .is_none_or(|from| (g.creation_date, &g.grant_id) >= (from.0, &from.1))
            })
            .into_iter()
            .collect(),
        None => key
            .grants
            .page(from.as_ref(), req.grantee_principal.as_deref(), None)
            .take(limit + 1)
            .collect(),
    };
    let next_marker = selected.get(limit).map(|g| position_text(&position(g)));
    selected.truncate(limit);
    Ok(Response {
        grants: selected
            .into_iter()
            .map(|g| entry(ctx, &key.id, g))
            .collect(),
        truncated: next_marker.is_some(),
        next_marker,
    })
}
