//! RevokeGrant: removes a grant by key and grant id. The dispatcher has checked
//! `kms:RevokeGrant` on the key (policies only: no grant can allow it).

use serde::{Deserialize, Serialize};

use super::create_grant::{check_grant_id, check_key_ref};
use super::retire_grant::grant_not_found;
use super::Ctx;
use crate::error::KmsResult;
use crate::kms::validate;

/// RevokeGrant request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
    grant_id: Option<String>,
    dry_run: Option<bool>,
}

/// RevokeGrant response (empty).
#[derive(Debug, Serialize)]
pub struct Response {}

/// Revokes the grant.
///
/// # Errors
/// `ValidationException`, `InvalidGrantIdException`, `NotFoundException`,
/// `DryRunOperationException`.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    let grant_id = validate::required("grantId", req.grant_id)?;
    check_grant_id("grantId", &grant_id)?;
    check_key_ref(ctx, &key_id)?;
    let mut store = ctx.keys_mut();
    // Any key state: grants of a disabled or pending-deletion key can be revoked.
    let key = store.key_mut(
        "keyId",
        &key_id,
        "RevokeGrant",
        &crate::kms::authz::Conditions::default(),
    )?;
    if key.grant(&grant_id).is_none() {
        return Err(grant_not_found(ctx, key, &grant_id));
    }
    super::dry_run(req.dry_run)?;
    key.remove_grant(&grant_id);
    let id = key.id;
    store.touch(crate::kms::state::Touched::Grant(id, grant_id));
    Ok(Response {})
}
