//! CreateAlias.

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::config::Config;
use crate::error::{KmsError, KmsResult};
use crate::keys::{Key, KeyState};
use crate::kms::validate;

/// CreateAlias request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    alias_name: Option<String>,
    target_key_id: Option<String>,
}

/// CreateAlias response (empty).
#[derive(Debug, Serialize)]
pub struct Response {}

/// Checks an alias name: `alias/` followed by `[a-zA-Z0-9/_-]`, 1–256 characters, and not in the
/// reserved `alias/aws/` namespace.
///
/// # Errors
/// `ValidationException` for the length, the characters or a missing `alias/` prefix,
/// `InvalidAliasNameException` otherwise.
pub fn check_alias_name(name: &str) -> KmsResult<()> {
    validate::str_len("aliasName", name, 1, 256)?;
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'/' | b'_' | b'-'))
    {
        return Err(KmsError::invalid_field("aliasName", "Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$"));
    }
    // A name without the prefix breaks the documented pattern (`alias/` then the name): AWS
    // answers ValidationException, in these words.
    let Some(rest) = name.strip_prefix("alias/") else {
        return Err(KmsError::Validation(
            "Alias must start with the prefix \"alias/\". Please see \
             https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html"
                .to_owned(),
        ));
    };
    if rest.is_empty() || rest.contains(':') {
        return Err(KmsError::InvalidAliasName(format!(
            "Invalid alias name: {name}"
        )));
    }
    if name.starts_with("alias/aws/") {
        return Err(KmsError::InvalidAliasName(format!(
            "Alias names that begin with alias/aws/ are reserved: {name}"
        )));
    }
    Ok(())
}

/// Checks that an alias may point at `key`.
///
/// # Errors
/// `KMSInvalidStateException` when the key is pending deletion.
pub fn check_target(key: &Key, config: &Config) -> KmsResult<()> {
    if key.state == KeyState::PendingDeletion {
        return Err(KmsError::InvalidState(format!(
            "{} is pending deletion.",
            config.key_arn(&key.id)
        )));
    }
    Ok(())
}

/// Creates the alias.
///
/// # Errors
/// `ValidationException`, `InvalidAliasNameException`, `AlreadyExistsException`,
/// `NotFoundException`, `KMSInvalidStateException`, `LimitExceededException`.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let name = validate::required("aliasName", req.alias_name)?;
    let target = validate::required("targetKeyId", req.target_key_id)?;
    check_alias_name(&name)?;
    let now = ctx.env.now();
    let mut store = ctx.keys_mut();
    // kms:CreateAlias on the alias (identity policy) and on the key it will name.
    let alias = store.authorize_alias(&name, "CreateAlias")?;
    let key = store.authorize(
        "targetKeyId",
        &target,
        "CreateAlias",
        &crate::kms::authz::Conditions::default(),
    )?;
    check_target(store.get(&key)?, ctx.config)?;
    // An alias whose key has been destroyed no longer exists.
    if store.alias(&alias)?.is_some() {
        return Err(KmsError::AlreadyExists(format!(
            "An alias with the name {} already exists",
            ctx.config.alias_arn(&name)
        )));
    }
    store.put_alias(&alias, &key, now, now)?;
    store.touch(crate::kms::state::Touched::Alias(name));
    Ok(Response {})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_names() {
        assert!(check_alias_name("alias/app").is_ok());
        assert!(check_alias_name("alias/team-a/app_1").is_ok());
        let no_prefix = check_alias_name("app").expect_err("a name without the prefix");
        assert_eq!(no_prefix.aws_code(), "ValidationException");
        assert_eq!(
            no_prefix.to_string(),
            "Alias must start with the prefix \"alias/\". Please see \
             https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html"
        );
        assert!(matches!(
            check_alias_name("alias/"),
            Err(KmsError::InvalidAliasName(_))
        ));
        assert!(matches!(
            check_alias_name("alias/aws/s3"),
            Err(KmsError::InvalidAliasName(_))
        ));
        assert!(matches!(
            check_alias_name("alias/a b"),
            Err(KmsError::Validation(_))
        ));
        assert!(matches!(check_alias_name(""), Err(KmsError::Validation(_))));
        let long = format!("alias/{}", "a".repeat(251));
        assert!(matches!(
            check_alias_name(&long),
            Err(KmsError::Validation(_))
        ));
    }
}
