//! DeleteAlias.

use serde::{Deserialize, Serialize};

use super::create_alias::check_alias_name;
use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::kms::validate;

/// DeleteAlias request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    alias_name: Option<String>,
}

/// DeleteAlias response (empty).
#[derive(Debug, Serialize)]
pub struct Response {}

/// Deletes the alias; the key is untouched.
///
/// # Errors
/// `ValidationException`, `InvalidAliasNameException`, `NotFoundException`.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let name = validate::required("aliasName", req.alias_name)?;
    check_alias_name(&name)?;
    let mut store = ctx.keys_mut();
    // kms:DeleteAlias on the alias (identity policy) and on the key it names.
    let alias = store.authorize_alias(&name, "DeleteAlias")?;
    let Some(current) = store.alias(&alias)?.map(|a| a.target) else {
        return Err(KmsError::NotFound(format!(
            "Alias {} is not found.",
            ctx.config.alias_arn(&name)
        )));
    };
    store
        .authorize_id(current, "DeleteAlias", &crate::kms::authz::Conditions::default())?
        .ok_or(KmsError::Internal("a live alias names a missing key"))?;
    store.remove_alias(&alias)?;
    store.touch(crate::kms::state::Touched::Alias(name));
    Ok(Response {})
}
