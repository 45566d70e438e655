//! UpdateAlias: points an existing alias at another key.

use serde::{Deserialize, Serialize};

use super::create_alias::{check_alias_name, check_target};
use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::kms::validate;

/// UpdateAlias request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    alias_name: Option<String>,
    target_key_id: Option<String>,
}

/// UpdateAlias response (empty).
#[derive(Debug, Serialize)]
pub struct Response {}

/// Repoints the alias.
///
/// # Errors
/// `ValidationException`, `InvalidAliasNameException`, `NotFoundException` (alias or key),
/// `KMSInvalidStateException`.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let name = validate::required("aliasName", req.alias_name)?;
    let target = validate::required("targetKeyId", req.target_key_id)?;
    check_alias_name(&name)?;
    let now = ctx.env.now();
    let mut store = ctx.keys_mut();
    // kms:UpdateAlias on the alias (identity policy), on the key it names now, and on the key
    // it will name.
    let alias = store.authorize_alias(&name, "UpdateAlias")?;
    let (created, current) = match store.alias(&alias)? {
        Some(a) => (a.created, a.target),
        None => {
            return Err(KmsError::NotFound(format!(
                "Alias {} is not found.",
                ctx.config.alias_arn(&name)
            )))
        }
    };
    store
        .authorize_id(current, "UpdateAlias", &crate::kms::authz::Conditions::default())?
        .ok_or(KmsError::Internal("a live alias names a missing key"))?;
    let key = store.authorize(
        "targetKeyId",
        &target,
        "UpdateAlias",
        &crate::kms::authz::Conditions::default(),
    )?;
    check_target(store.get(&key)?, ctx.config)?;
    store.put_alias(&alias, &key, created, now)?;
    store.touch(crate::kms::state::Touched::Alias(name));
    Ok(Response {})
}
