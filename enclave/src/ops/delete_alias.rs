//! DeleteAlias.

use serde::{Deserialize, Serialize};

use super::create_alias::check_alias_name;
use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::validate;

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
    let now = ctx.env.now();
    let mut store = ctx.state.write();
    let live = store
        .alias(&name)
        .is_some_and(|a| store.by_id(&a.target, now).is_some());
    if !live || !store.remove_alias(&name) {
        return Err(KmsError::NotFound(format!(
            "Alias {} is not found.",
            ctx.config.alias_arn(&name)
        )));
    }
    ctx.touch(crate::persist::Touched::Alias(name));
    Ok(Response {})
}
