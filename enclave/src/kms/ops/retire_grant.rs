//! RetireGrant: removes a grant named by its token, or by key and grant id.
//!
//! Authorized here, not by the dispatcher (the grant must be found first): the grant's
//! retiring principal may retire it, its grantee may when the grant includes RetireGrant
//! ([`may_retire`]), and so may anyone the key policy (with the identity policy) allows
//! `kms:RetireGrant`. An explicit deny in a policy wins.
//!
//! [`may_retire`]: crate::access::policy::grants::may_retire

use serde::{Deserialize, Serialize};

use super::create_grant::{check_grant_id, check_key_ref, parse_grant_token};
use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::keys::Key;

/// RetireGrant request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    grant_token: Option<String>,
    key_id: Option<String>,
    grant_id: Option<String>,
    dry_run: Option<bool>,
}

/// RetireGrant response (empty).
#[derive(Debug, Serialize)]
pub struct Response {}

/// The answer for a grant that is not on the key.
pub fn grant_not_found(ctx: &Ctx<'_>, key: &Key, grant_id: &str) -> KmsError {
    KmsError::NotFound(format!(
        "Grant {grant_id} does not exist on key {}",
        ctx.config.key_arn(&key.id)
    ))
}

/// Retires the grant.
///
/// # Errors
/// `ValidationException`, `InvalidGrantTokenException`, `InvalidGrantIdException`,
/// `NotFoundException`, `AccessDeniedException`, `DryRunOperationException`.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    if let Some(id) = &req.grant_id {
        check_grant_id("grantId", id)?;
    }
    if let Some(key_id) = &req.key_id {
        check_key_ref(ctx, key_id)?;
    }
    let mut store = ctx.keys_mut();
    let (key_uuid, grant_id) = match (&req.grant_token, &req.key_id, &req.grant_id) {
        (Some(token), _, _) => {
            let (key_uuid, grant_id) = parse_grant_token("grantToken", token)?;
            if req.grant_id.as_ref().is_some_and(|id| *id != grant_id) {
                return Err(KmsError::Validation(
                    "The GrantToken and the GrantId name different grants.".to_owned(),
                ));
            }
            if let Some(key_id) = &req.key_id {
                if store.id_of("keyId", key_id)? != key_uuid {
                    return Err(KmsError::Validation(
                        "The GrantToken and the KeyId name different keys.".to_owned(),
                    ));
                }
            }
            (key_uuid, grant_id)
        }
        (None, Some(key_id), Some(grant_id)) => (store.id_of("keyId", key_id)?, grant_id.clone()),
        (None, _, _) => {
            return Err(KmsError::one_validation_error("either GrantToken, or both KeyId and GrantId, must be specified"))
        }
    };
    // Any key state: grants of a disabled or pending-deletion key can be retired.
    let proof = store
        .authorize_retire(key_uuid, &grant_id)?
        .ok_or_else(|| {
            KmsError::NotFound(format!(
                "Key '{}' does not exist",
                ctx.config.key_arn(&key_uuid)
            ))
        })?;
    super::dry_run(req.dry_run)?;
    let key = store.get_mut(&proof)?;
    key.remove_grant(&grant_id);
    let id = key.id;
    store.touch(crate::kms::state::Touched::Grant(id, grant_id));
    Ok(Response {})
}
