//! Key policies, identity policies and grants, evaluated with AWS KMS semantics.
//!
//! Pure: no I/O, no clock (the time comes in [`RequestContext::now_millis`]), no randomness.
//! The grammar is AWS's IAM JSON policy grammar as KMS accepts it, with a closed set of
//! condition operators and keys: anything this module does not understand makes the document
//! malformed rather than being skipped, so a Deny can never be silently dropped.
//!
//! Trusts: the `account` it is given (the service's own account id) and the authenticated
//! principal ARN in the [`RequestContext`]. Does not trust: the policy text (size, depth and
//! counts are bounded before anything is evaluated).
//!
//! Every [`PolicyError`] answers `MalformedPolicyDocumentException`; every [`GrantError`]
//! answers `ValidationException` (the mapping belongs to `crate::error`).
//!
//! Authorization (AWS "Key policies in AWS KMS" and "Policy evaluation logic"):
//! 1. an explicit Deny in the key policy or in the caller's identity policy wins;
//! 2. else a key-policy Allow naming the caller directly (its ARN, or `*`) allows;
//! 3. else a key-policy Allow naming the caller's account root delegates to IAM: the caller's
//!    identity policy must allow too;
//! 4. else deny. A caller from another account always needs its identity policy to allow as well.

mod condition;
mod node;
pub mod grants;
mod parse;
mod pattern;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use grants::Grant;
pub use parse::is_unique_id;

use condition::Condition;

/// Largest policy document accepted, in bytes (AWS KMS: 32 KB).
pub const MAX_POLICY_BYTES: usize = 32 * 1024;
/// Most statements in one document.
pub const MAX_STATEMENTS: usize = 100;
/// Most entries in one list: Action, Resource, Principal `AWS`, or one condition's values.
pub const MAX_LIST_VALUES: usize = 100;
/// Most operator/key pairs in one statement's Condition block.
pub const MAX_CONDITIONS: usize = 100;
/// Longest string value (pattern, ARN, condition value), in characters. Bounds the cost of
/// wildcard matching on the request path.
pub const MAX_STRING_CHARS: usize = 2048;

/// The message AWS KMS gives when the lockout safety check refuses a policy.
#[cfg(test)]
pub const LOCKOUT_MESSAGE: &str =
    "The new key policy will not allow you to update the key policy in the future.";

/// A policy document that does not parse, or that would lock its caller out.
///
/// The message names the element and the problem, for example
/// `Statement[1].Condition: unknown operator StringEqualz`.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The document exceeds [`MAX_POLICY_BYTES`].
    #[error("The policy document is {len} bytes; the limit is {MAX_POLICY_BYTES} bytes")]
    TooLarge {
        /// Its size.
        len: usize,
    },
    /// Not JSON, or JSON with a duplicate object key.
    #[error("The policy document is not valid JSON: {0}")]
    Syntax(#[source] serde_json::Error),
    /// An element name the grammar does not have.
    #[error("{path}: unknown element {name}")]
    UnknownElement {
        /// Where.
        path: String,
        /// The element name (truncated).
        name: String,
    },
    /// A required element is absent.
    #[error("{path}: missing required element {name}")]
    MissingElement {
        /// Where.
        path: String,
        /// The element that is missing.
        name: &'static str,
    },
    /// A condition operator this service does not know.
    #[error("{path}: unknown operator {operator}")]
    UnknownOperator {
        /// Where.
        path: String,
        /// The operator as written (truncated).
        operator: String,
    },
    /// A condition key this service does not know.
    #[error("{path}: unknown condition key {key}")]
    UnknownConditionKey {
        /// Where.
        path: String,
        /// The key as written (truncated).
        key: String,
    },
    /// A part of the AWS grammar this service does not offer.
    #[error("{path}: {what} is not supported")]
    Unsupported {
        /// Where.
        path: String,
        /// What.
        what: &'static str,
    },
    /// An element has the wrong type or an invalid value.
    #[error("{path}: {reason}")]
    Invalid {
        /// Where.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A bound was exceeded.
    #[error("{path}: more than {limit} {what}")]
    TooMany {
        /// Where.
        path: String,
        /// What was counted.
        what: &'static str,
        /// The bound.
        limit: usize,
    },
    /// The lockout safety check: the caller could not call PutKeyPolicy under the new policy.
    #[error("The new key policy will not allow you to update the key policy in the future.")]
    Lockout,
}

/// A parsed key policy (a resource policy: every statement names its Principal).
#[derive(Debug, Clone)]
pub struct Policy {
    account: String,
    statements: Vec<Statement>,
}

/// A parsed identity policy (attached to one principal: no statement names a Principal).
///
/// A distinct type from [`Policy`] so that an identity policy can never be evaluated as a key
/// policy (where its Principal-less statements would apply to everyone).
#[derive(Debug, Clone)]
pub struct IdentityPolicy {
    statements: Vec<Statement>,
}

/// Parses a key policy for a key owned by `account` (12 digits).
///
/// # Errors
///
/// [`PolicyError`] naming the first problem: size, JSON syntax or duplicate keys, an unknown
/// element, operator or condition key, a missing Principal, `NotPrincipal`, a value of the
/// wrong type, a policy variable, or a bound exceeded.
pub fn parse(json: &str, account: &str) -> Result<Policy, PolicyError> {
    let statements = parse::document(json, node::Kind::Key)?;
    Ok(Policy {
        account: account.to_owned(),
        statements,
    })
}

/// Parses an identity policy (same grammar, but statements must not name a Principal).
///
/// # Errors
///
/// As [`parse`], and [`PolicyError::Invalid`] if a statement has a Principal.
pub fn parse_identity(json: &str) -> Result<IdentityPolicy, PolicyError> {
    let statements = parse::document(json, node::Kind::Identity)?;
    Ok(IdentityPolicy { statements })
}

/// An identity policy that allows every action on every resource (the `dev` principal and the
/// first admin).
pub const ALLOW_ALL_IDENTITY_POLICY: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

/// What a request is, as the conditions see it.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext<'a> {
    /// The authenticated caller, `arn:aws:iam::<account>:user/<name>`.
    pub principal_arn: &'a str,
    /// The caller's account (`kms:CallerAccount`); must be the account in `principal_arn`.
    pub account: &'a str,
    /// The action, for example `kms:Encrypt` (compared case-insensitively).
    pub action: &'a str,
    /// The key ARN, or `*` for operations without a key (CreateKey, ListKeys).
    pub resource: &'a str,
    /// `aws:CurrentTime`, in milliseconds since the Unix epoch.
    pub now_millis: i64,
    /// `kms:EncryptionContext:<key>` and `kms:EncryptionContextKeys`.
    pub encryption_context: Option<&'a BTreeMap<String, String>>,
    /// `kms:EncryptionAlgorithm`.
    pub encryption_algorithm: Option<&'a str>,
    /// `kms:GrantOperations` (CreateGrant).
    pub grant_operations: Option<&'a [String]>,
    /// `kms:GrantIsForAWSResource`.
    pub grant_is_for_aws_resource: Option<bool>,
    /// `kms:RecipientAttestation:PCR<n>`, compared as lowercase hex.
    pub recipient_pcrs: Option<&'a BTreeMap<u8, Vec<u8>>>,
    /// `kms:RecipientAttestation:ImageSha384`, compared as lowercase hex.
    pub recipient_image_sha384: Option<&'a [u8]>,
}

impl<'a> RequestContext<'a> {
    /// A context with only the required fields; the optional condition keys are absent.
    pub fn new(
        principal_arn: &'a str,
        account: &'a str,
        action: &'a str,
        resource: &'a str,
        now_millis: i64,
    ) -> Self {
        RequestContext {
            principal_arn,
            account,
            action,
            resource,
            now_millis,
            encryption_context: None,
            encryption_algorithm: None,
            grant_operations: None,
            grant_is_for_aws_resource: None,
            recipient_pcrs: None,
            recipient_image_sha384: None,
        }
    }
}

/// The outcome of evaluating one policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A matching Allow statement (in a key policy: one naming the caller directly).
    Allow,
    /// A matching Deny statement.
    ExplicitDeny,
    /// Nothing matched.
    ImplicitDeny,
}

/// The outcome of evaluating a key policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evaluation {
    /// `Allow` only when an Allow statement names the caller directly (its ARN or `*`); an
    /// Allow that matched only through the account root leaves this `ImplicitDeny`.
    pub decision: Decision,
    /// An Allow statement matched through the caller's account root: the key policy delegates
    /// to the caller's identity policy. Meaningless when `decision` is `ExplicitDeny`.
    pub root_delegation: bool,
}

impl Policy {
    /// AWS's default key policy for a key in `account`: the account root may do `kms:*`, which
    /// delegates access to the account's identity policies.
    pub fn default_key_policy(account: &str) -> String {
        // serde_json escapes the ARN, whatever `account` holds.
        let arn = serde_json::Value::String(format!("arn:aws:iam::{account}:root"));
        format!(
            "{{\n  \"Version\" : \"2012-10-17\",\n  \"Id\" : \"key-default-1\",\n  \"Statement\" : [ {{\n    \"Sid\" : \"Enable IAM User Permissions\",\n    \"Effect\" : \"Allow\",\n    \"Principal\" : {{\n      \"AWS\" : {arn}\n    }},\n    \"Action\" : \"kms:*\",\n    \"Resource\" : \"*\"\n  }} ]\n}}"
        )
    }

    /// The account that owns the key.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Evaluates the key policy alone. See [`Evaluation`] for what `Allow` means here.
    pub fn evaluate(&self, ctx: &RequestContext) -> Evaluation {
        evaluate_statements(&self.statements, ctx)
    }
}

impl IdentityPolicy {
    /// Evaluates the identity policy of the caller in `ctx`.
    pub fn evaluate(&self, ctx: &RequestContext) -> Decision {
        evaluate_statements(&self.statements, ctx).decision
    }
}

/// `text` (a key policy) with every `Principal` that names `arn` naming `id` instead, or
/// `None` when it names no such principal (or is not JSON).
pub fn replace_principal(text: &str, arn: &str, id: &str) -> Option<String> {
    use serde_json::Value;
    if !text.contains(arn.rsplit('/').next().unwrap_or(arn)) {
        return None;
    }
    let mut doc: Value = serde_json::from_str(text).ok()?;
    let mut replaced = false;
    let mut swap = |v: &mut Value| {
        if v.as_str() == Some(arn) {
            *v = Value::String(id.to_owned());
            replaced = true;
        }
    };
    let statements = match doc.get_mut("Statement")? {
        Value::Array(list) => list.iter_mut().collect::<Vec<_>>(),
        other => vec![other],
    };
    for statement in statements {
        for field in ["Principal", "NotPrincipal"] {
            let Some(aws) = statement.get_mut(field).and_then(|p| p.get_mut("AWS")) else {
                continue;
            };
            match aws {
                Value::Array(list) => list.iter_mut().for_each(&mut swap),
                one => swap(one),
            }
        }
    }
    if replaced {
        serde_json::to_string_pretty(&doc).ok()
    } else {
        None
    }
}

/// Full KMS authorization: the key policy, and the caller's identity policy where the key
/// policy delegates to it (or the caller is from another account). Explicit deny anywhere
/// wins; then a key-policy Allow naming the caller directly; then root delegation together
/// with an identity-policy Allow; else deny.
pub fn authorize(
    key_policy: &Policy,
    identity_policy: Option<&IdentityPolicy>,
    ctx: &RequestContext,
) -> Decision {
    let key = key_policy.evaluate(ctx);
    let identity = identity_policy.map_or(Decision::ImplicitDeny, |p| p.evaluate(ctx));
    if key.decision == Decision::ExplicitDeny || identity == Decision::ExplicitDeny {
        return Decision::ExplicitDeny;
    }
    let same_account =
        ctx.account == key_policy.account && arn_account(ctx.principal_arn) == Some(ctx.account);
    let allowed = if same_account {
        key.decision == Decision::Allow || (key.root_delegation && identity == Decision::Allow)
    } else {
        // Cross-account (AWS): the key policy must let the caller in, directly or through its
        // account, and the caller's own account must allow it too.
        (key.decision == Decision::Allow || key.root_delegation) && identity == Decision::Allow
    };
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

/// The lockout safety check of CreateKey and PutKeyPolicy (unless
/// `BypassPolicyLockoutSafetyCheck`): the caller must still be allowed `kms:PutKeyPolicy` on
/// `key_arn` under `new_policy`, with its current identity policy and no optional context.
///
/// # Errors
///
/// [`PolicyError::Lockout`] (AWS's message) when it would not be.
pub fn lockout_check(
    new_policy: &Policy,
    identity_policy: Option<&IdentityPolicy>,
    caller_arn: &str,
    key_arn: &str,
    account: &str,
    now_millis: i64,
) -> Result<(), PolicyError> {
    let ctx = RequestContext::new(caller_arn, account, "kms:PutKeyPolicy", key_arn, now_millis);
    match authorize(new_policy, identity_policy, &ctx) {
        Decision::Allow => Ok(()),
        Decision::ExplicitDeny | Decision::ImplicitDeny => Err(PolicyError::Lockout),
    }
}

/// `Allow` or `Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

/// Who a key-policy statement applies to.
#[derive(Debug, Clone)]
enum Principals {
    /// `"*"` or `{"AWS": "*"}`.
    Everyone,
    /// `{"AWS": [..]}`.
    Listed(Vec<PrincipalId>),
}

/// One entry of a Principal `AWS` list.
#[derive(Debug, Clone)]
enum PrincipalId {
    /// `arn:aws:iam::<account>:root` or a bare account id: the account, delegating to IAM.
    AccountRoot(String),
    /// A user (or role) ARN, matched exactly.
    Arn(String),
    /// The unique id of a deleted principal (what a policy that named it names once it is
    /// gone, as in IAM): it matches no caller.
    UniqueId,
}

/// An Action/NotAction or Resource/NotResource element.
#[derive(Debug, Clone)]
struct Matcher {
    /// `NotAction` / `NotResource`.
    negated: bool,
    /// Wildcard patterns (`*`, `?`); actions are stored lowercase.
    patterns: Vec<String>,
}

#[derive(Debug, Clone)]
struct Statement {
    effect: Effect,
    /// `None` in identity policies.
    principal: Option<Principals>,
    action: Matcher,
    resource: Matcher,
    conditions: Vec<Condition>,
}

/// How a statement's Principal matched the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PrincipalMatch {
    No,
    ThroughAccountRoot,
    Direct,
}

/// The account id in `arn:aws:iam::<account>:...`.
fn arn_account(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("arn"), Some(_partition), Some("iam"), Some(""), Some(account))
            if !account.is_empty() =>
        {
            Some(account)
        }
        _ => None,
    }
}

fn principal_match(principals: &Principals, ctx: &RequestContext) -> PrincipalMatch {
    let ids = match principals {
        Principals::Everyone => return PrincipalMatch::Direct,
        Principals::Listed(ids) => ids,
    };
    let caller_account = arn_account(ctx.principal_arn);
    let mut best = PrincipalMatch::No;
    for id in ids {
        let this = match id {
            PrincipalId::Arn(arn) if arn == ctx.principal_arn => PrincipalMatch::Direct,
            PrincipalId::Arn(_) | PrincipalId::UniqueId => PrincipalMatch::No,
            PrincipalId::AccountRoot(account) => {
                if ctx.principal_arn == format!("arn:aws:iam::{account}:root") {
                    // The account root user itself is named.
                    PrincipalMatch::Direct
                } else if caller_account == Some(account.as_str()) && ctx.account == account {
                    PrincipalMatch::ThroughAccountRoot
                } else {
                    PrincipalMatch::No
                }
            }
        };
        best = best.max(this);
    }
    best
}

impl Matcher {
    fn matches_action(&self, action: &str) -> bool {
        let action = action.to_ascii_lowercase();
        let any = self
            .patterns
            .iter()
            .any(|p| pattern::wildcard_match(p, &action));
        any != self.negated
    }

    fn matches_resource(&self, resource: &str) -> bool {
        let any = self
            .patterns
            .iter()
            .any(|p| pattern::wildcard_match(p, resource));
        any != self.negated
    }
}

fn evaluate_statements(statements: &[Statement], ctx: &RequestContext) -> Evaluation {
    let mut allow = false;
    let mut root_delegation = false;
    for statement in statements {
        let matched = match &statement.principal {
            None => PrincipalMatch::Direct,
            Some(principals) => principal_match(principals, ctx),
        };
        if matched == PrincipalMatch::No
            || !statement.action.matches_action(ctx.action)
            || !statement.resource.matches_resource(ctx.resource)
            || !statement.conditions.iter().all(|c| c.holds(ctx))
        {
            continue;
        }
        match (statement.effect, matched) {
            (Effect::Deny, _) => {
                return Evaluation {
                    decision: Decision::ExplicitDeny,
                    root_delegation: false,
                }
            }
            (Effect::Allow, PrincipalMatch::Direct) => allow = true,
            (Effect::Allow, _) => root_delegation = true,
        }
    }
    Evaluation {
        decision: if allow {
            Decision::Allow
        } else {
            Decision::ImplicitDeny
        },
        root_delegation,
    }
}
