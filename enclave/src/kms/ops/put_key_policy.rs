//! PutKeyPolicy: replaces a key's policy, refusing one that would lock the caller out unless
//! `BypassPolicyLockoutSafetyCheck` is set.

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::keys::KeyState;
use crate::kms::validate;

/// PutKeyPolicy request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
    policy_name: Option<String>,
    policy: Option<String>,
    bypass_policy_lockout_safety_check: Option<bool>,
}

/// PutKeyPolicy response (empty).
#[derive(Debug, Serialize)]
pub struct Response {}

/// Checks a key policy document: it parses, and (unless bypassed) still lets the caller
/// change the key's policy.
///
/// # Errors
/// `ValidationException` for the length, `MalformedPolicyDocumentException` naming the problem.
pub fn check_policy(
    ctx: &Ctx<'_>,
    policy: &str,
    key_arn: &str,
    bypass_lockout_check: bool,
) -> KmsResult<()> {
    validate::str_len("policy", policy, 1, 32768)?;
    let parsed = crate::access::policy::parse(policy, &ctx.config.account)
        .map_err(|e| KmsError::MalformedPolicy(e.to_string()))?;
    if !bypass_lockout_check {
        crate::access::policy::lockout_check(
            &parsed,
            ctx.caller.identity_policy.as_deref(),
            &ctx.caller.arn,
            key_arn,
            &ctx.config.account,
            ctx.env.now(),
        )
        .map_err(|e| KmsError::MalformedPolicy(e.to_string()))?;
    }
    Ok(())
}

/// Replaces the policy.
///
/// # Errors
/// `ValidationException`, `MalformedPolicyDocumentException`, `NotFoundException`,
/// `KMSInvalidStateException` when pending deletion.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    let policy = validate::required("policy", req.policy)?;
    if let Some(name) = &req.policy_name {
        if name != "default" {
            return Err(KmsError::invalid_field("policyName", "the only valid policy name is default"));
        }
    }
    let mut store = ctx.keys_mut();
    store.ensure_room()?;
    let key = store.key_mut(
        "keyId",
        &key_id,
        "PutKeyPolicy",
        &crate::kms::authz::Conditions::default(),
    )?;
    if key.state == KeyState::PendingDeletion {
        return Err(KmsError::InvalidState(format!(
            "{} is pending deletion.",
            ctx.config.key_arn(&key.id)
        )));
    }
    check_policy(
        ctx,
        &policy,
        &ctx.config.key_arn(&key.id),
        req.bypass_policy_lockout_safety_check == Some(true),
    )?;
    key.policy = Some(policy);
    let id = key.id;
    store.touch(crate::kms::state::Touched::Key(id));
    Ok(Response {})
}
