//! UpdateAlias: points an existing alias at another key.

use serde::{Deserialize, Serialize};

use super::create_alias::{check_alias_name, check_target};
use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::keys::Alias;
use crate::validate;

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
    let mut store = ctx.state.write();
    let created = match store.alias(&name) {
        Some(alias) if store.by_id(&alias.target, now).is_some() => alias.created,
        _ => {
            return Err(KmsError::NotFound(format!(
                "Alias {} is not found.",
                ctx.config.alias_arn(&name)
            )))
        }
    };
    let key = store.resolve("targetKeyId", &target, ctx.config, now)?;
    check_target(key, ctx.config)?;
    let target = key.id;
    ctx.touch(crate::persist::Touched::Alias(name.clone()));
    store.put_alias(
        name,
        Alias {
            target,
            created,
            updated: now,
        },
        ctx.config,
    )?;
    Ok(Response {})
}
