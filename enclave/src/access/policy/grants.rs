//! Grants: the model, operation names, and whether a grant allows a request (AWS KMS
//! "Grants in AWS KMS", API `CreateGrant` and `GrantConstraints`).
//!
//! Pure. Storing grants, issuing and verifying grant tokens, and the key lookup belong to the
//! caller.
//!
//! Constraint semantics, as AWS:
//! - `EncryptionContextEquals`: the request's encryption context is exactly the constraint's
//!   pairs; `EncryptionContextSubset`: it contains all of them (and maybe more);
//! - in a constraint, keys compare case-insensitively and values case-sensitively;
//! - constraints do not apply to DescribeKey and RetireGrant; for CreateGrant they bind the
//!   child grant instead ([`child_constraints_allowed`]);
//! - constraints cannot be used with operations that take no encryption context (asymmetric
//!   and HMAC operations): [`validate_constraints`] refuses them, and [`grant_allows`] fails
//!   closed on such a grant.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ONE_VALIDATION_ERROR;

/// Most entries accepted in a CreateGrant `Operations` list (before removing duplicates).
pub const MAX_OPERATIONS: usize = 50;
/// Most pairs in one constraint (AWS: 8).
pub const MAX_CONSTRAINT_PAIRS: usize = 8;
/// Longest constraint value, in characters (AWS: 384).
pub const MAX_CONSTRAINT_VALUE_CHARS: usize = 384;

/// An operation a grant can allow: AWS's `GrantOperation` enum, spelled as AWS spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum GrantOperation {
    Decrypt,
    Encrypt,
    GenerateDataKey,
    GenerateDataKeyWithoutPlaintext,
    ReEncryptFrom,
    ReEncryptTo,
    Sign,
    Verify,
    GetPublicKey,
    CreateGrant,
    RetireGrant,
    DescribeKey,
    GenerateDataKeyPair,
    GenerateDataKeyPairWithoutPlaintext,
    GenerateMac,
    VerifyMac,
    DeriveSharedSecret,
}

/// How a grant's constraints apply to an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConstraintUse {
    /// The operation takes an encryption context: the constraints are checked.
    Checked,
    /// DescribeKey, RetireGrant, CreateGrant: the constraints do not apply.
    Exempt,
    /// No encryption context exists for the operation: constraints cannot be used with it.
    Incompatible,
}

impl GrantOperation {
    /// Every operation, in AWS's documentation order.
    pub const ALL: [GrantOperation; 17] = [
        GrantOperation::Decrypt,
        GrantOperation::Encrypt,
        GrantOperation::GenerateDataKey,
        GrantOperation::GenerateDataKeyWithoutPlaintext,
        GrantOperation::ReEncryptFrom,
        GrantOperation::ReEncryptTo,
        GrantOperation::Sign,
        GrantOperation::Verify,
        GrantOperation::GetPublicKey,
        GrantOperation::CreateGrant,
        GrantOperation::RetireGrant,
        GrantOperation::DescribeKey,
        GrantOperation::GenerateDataKeyPair,
        GrantOperation::GenerateDataKeyPairWithoutPlaintext,
        GrantOperation::GenerateMac,
        GrantOperation::VerifyMac,
        GrantOperation::DeriveSharedSecret,
    ];

    /// The name as AWS spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantOperation::Decrypt => "Decrypt",
            GrantOperation::Encrypt => "Encrypt",
            GrantOperation::GenerateDataKey => "GenerateDataKey",
            GrantOperation::GenerateDataKeyWithoutPlaintext => "GenerateDataKeyWithoutPlaintext",
            GrantOperation::ReEncryptFrom => "ReEncryptFrom",
            GrantOperation::ReEncryptTo => "ReEncryptTo",
            GrantOperation::Sign => "Sign",
            GrantOperation::Verify => "Verify",
            GrantOperation::GetPublicKey => "GetPublicKey",
            GrantOperation::CreateGrant => "CreateGrant",
            GrantOperation::RetireGrant => "RetireGrant",
            GrantOperation::DescribeKey => "DescribeKey",
            GrantOperation::GenerateDataKeyPair => "GenerateDataKeyPair",
            GrantOperation::GenerateDataKeyPairWithoutPlaintext => {
                "GenerateDataKeyPairWithoutPlaintext"
            }
            GrantOperation::GenerateMac => "GenerateMac",
            GrantOperation::VerifyMac => "VerifyMac",
            GrantOperation::DeriveSharedSecret => "DeriveSharedSecret",
        }
    }

    /// The operation named exactly `name` (case-sensitive, as AWS).
    pub fn from_name(name: &str) -> Option<GrantOperation> {
        GrantOperation::ALL
            .into_iter()
            .find(|op| op.as_str() == name)
    }

    fn constraint_use(self) -> ConstraintUse {
        match self {
            GrantOperation::Decrypt
            | GrantOperation::Encrypt
            | GrantOperation::GenerateDataKey
            | GrantOperation::GenerateDataKeyWithoutPlaintext
            | GrantOperation::ReEncryptFrom
            | GrantOperation::ReEncryptTo
            | GrantOperation::GenerateDataKeyPair
            | GrantOperation::GenerateDataKeyPairWithoutPlaintext => ConstraintUse::Checked,
            GrantOperation::DescribeKey
            | GrantOperation::RetireGrant
            | GrantOperation::CreateGrant => ConstraintUse::Exempt,
            GrantOperation::Sign
            | GrantOperation::Verify
            | GrantOperation::GetPublicKey
            | GrantOperation::GenerateMac
            | GrantOperation::VerifyMac
            | GrantOperation::DeriveSharedSecret => ConstraintUse::Incompatible,
        }
    }
}

/// A grant's encryption-context constraints (AWS `GrantConstraints`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GrantConstraints {
    /// The request's encryption context must be exactly these pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context_equals: Option<BTreeMap<String, String>>,
    /// The request's encryption context must include these pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context_subset: Option<BTreeMap<String, String>>,
}

/// One grant on one key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Grant {
    /// The grant id.
    pub grant_id: String,
    /// The key id (UUID) the grant is on.
    pub key_id: String,
    /// The client-chosen name (CreateGrant idempotency).
    pub name: Option<String>,
    /// Who the grant allows, an ARN matched exactly.
    pub grantee_principal: String,
    /// Who may retire the grant, besides what [`may_retire`] says.
    pub retiring_principal: Option<String>,
    /// What the grant allows.
    pub operations: Vec<GrantOperation>,
    /// Encryption-context constraints.
    pub constraints: Option<GrantConstraints>,
    /// The account of the principal that created the grant.
    pub issuing_account: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub creation_date: i64,
    // No token: it encodes the key id and grant id (`create_grant::grant_token`), so it is
    // made when answered rather than kept with every grant. Records written with a `token`
    // member still load (the member is ignored).
}

/// A CreateGrant request that does not satisfy the API's constraints.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// `Operations` is empty.
    #[error("{ONE_VALIDATION_ERROR}Value '[]' at 'operations' failed to satisfy constraint: Member must have length greater than or equal to 1")]
    NoOperations,
    /// `Operations` is longer than [`MAX_OPERATIONS`].
    #[error("{ONE_VALIDATION_ERROR}Value at 'operations' failed to satisfy constraint: Member must have length less than or equal to {MAX_OPERATIONS}")]
    TooManyOperations,
    /// A name that is not a `GrantOperation`.
    #[error("{ONE_VALIDATION_ERROR}Value '{0}' at 'operations' failed to satisfy constraint: Member must satisfy enum value set: [Decrypt, Encrypt, GenerateDataKey, GenerateDataKeyWithoutPlaintext, ReEncryptFrom, ReEncryptTo, Sign, Verify, GetPublicKey, CreateGrant, RetireGrant, DescribeKey, GenerateDataKeyPair, GenerateDataKeyPairWithoutPlaintext, GenerateMac, VerifyMac, DeriveSharedSecret]")]
    UnknownOperation(String),
    /// A constraint has more than [`MAX_CONSTRAINT_PAIRS`] pairs.
    #[error("A grant constraint can have at most {MAX_CONSTRAINT_PAIRS} encryption context pairs")]
    TooManyConstraintPairs,
    /// A constraint value is longer than [`MAX_CONSTRAINT_VALUE_CHARS`].
    #[error("A grant constraint value can be at most {MAX_CONSTRAINT_VALUE_CHARS} characters")]
    ConstraintValueTooLong,
    /// Two constraint keys differ only by case (keys compare case-insensitively).
    #[error("A grant constraint has encryption context keys that differ only by case")]
    AmbiguousConstraintKeys,
    /// Constraints were given with an operation that takes no encryption context.
    #[error("Grant constraints cannot be used with the {} operation", .0.as_str())]
    ConstraintsNotSupported(GrantOperation),
}

/// Validates a CreateGrant `Operations` list: every name is a `GrantOperation` (exact
/// spelling); duplicates are removed, first occurrence kept.
///
/// # Errors
///
/// [`GrantError::NoOperations`], [`GrantError::TooManyOperations`] or
/// [`GrantError::UnknownOperation`] (AWS's validation message).
pub fn validate_operations(ops: &[String]) -> Result<Vec<GrantOperation>, GrantError> {
    if ops.is_empty() {
        return Err(GrantError::NoOperations);
    }
    if ops.len() > MAX_OPERATIONS {
        return Err(GrantError::TooManyOperations);
    }
    let mut out: Vec<GrantOperation> = Vec::with_capacity(ops.len());
    for name in ops {
        let op = GrantOperation::from_name(name)
            .ok_or_else(|| GrantError::UnknownOperation(super::node::shown(name)))?;
        if !out.contains(&op) {
            out.push(op);
        }
    }
    Ok(out)
}

/// Validates CreateGrant `Constraints` against its operations.
///
/// # Errors
///
/// A [`GrantError`] when a constraint is too large, has keys that differ only by case, or is
/// combined with an operation that takes no encryption context.
pub fn validate_constraints(
    operations: &[GrantOperation],
    constraints: &GrantConstraints,
) -> Result<(), GrantError> {
    for map in [
        &constraints.encryption_context_equals,
        &constraints.encryption_context_subset,
    ]
    .into_iter()
    .flatten()
    {
        if map.len() > MAX_CONSTRAINT_PAIRS {
            return Err(GrantError::TooManyConstraintPairs);
        }
        if map
            .values()
            .any(|v| v.chars().count() > MAX_CONSTRAINT_VALUE_CHARS)
        {
            return Err(GrantError::ConstraintValueTooLong);
        }
        if fold_keys(map).is_none() {
            return Err(GrantError::AmbiguousConstraintKeys);
        }
    }
    let any = constraints.encryption_context_equals.is_some()
        || constraints.encryption_context_subset.is_some();
    if let Some(op) = operations
        .iter()
        .find(|op| op.constraint_use() == ConstraintUse::Incompatible)
    {
        if any {
            return Err(GrantError::ConstraintsNotSupported(*op));
        }
    }
    Ok(())
}

/// The map with lowercase keys; `None` if two keys differ only by case.
fn fold_keys(map: &BTreeMap<String, String>) -> Option<BTreeMap<String, &str>> {
    let mut folded = BTreeMap::new();
    for (k, v) in map {
        if folded.insert(k.to_lowercase(), v.as_str()).is_some() {
            return None;
        }
    }
    Some(folded)
}

impl GrantConstraints {
    /// Whether a request with `context` (absent = empty) satisfies every constraint given.
    /// A request context with keys that differ only by case satisfies none (fail closed).
    pub fn satisfied_by(&self, context: Option<&BTreeMap<String, String>>) -> bool {
        let empty = BTreeMap::new();
        let Some(request) = fold_keys(context.unwrap_or(&empty)) else {
            return false;
        };
        let equals_ok = match &self.encryption_context_equals {
            None => true,
            Some(want) => fold_keys(want).is_some_and(|want| want == request),
        };
        let subset_ok = match &self.encryption_context_subset {
            None => true,
            Some(want) => fold_keys(want).is_some_and(|want| {
                want.iter()
                    .all(|(k, v)| request.get(k).is_some_and(|got| got == v))
            }),
        };
        equals_ok && subset_ok
    }

    /// Every request context this allows is also allowed by `parent`.
    fn at_least_as_strict_as(&self, parent: &GrantConstraints) -> bool {
        fn folded(m: &Option<BTreeMap<String, String>>) -> Option<Option<BTreeMap<String, &str>>> {
            m.as_ref().map(fold_keys)
        }
        let (child_eq, child_sub) = (
            folded(&self.encryption_context_equals),
            folded(&self.encryption_context_subset),
        );
        // Ambiguous maps are never stricter.
        if matches!(child_eq, Some(None)) || matches!(child_sub, Some(None)) {
            return false;
        }
        let (child_eq, child_sub) = (child_eq.flatten(), child_sub.flatten());
        let equals_ok = match folded(&parent.encryption_context_equals) {
            None => true,
            Some(None) => false,
            Some(Some(parent_eq)) => child_eq.as_ref() == Some(&parent_eq),
        };
        let contains = |big: &BTreeMap<String, &str>, small: &BTreeMap<String, &str>| {
            small.iter().all(|(k, v)| big.get(k) == Some(v))
        };
        let subset_ok = match folded(&parent.encryption_context_subset) {
            None => true,
            Some(None) => false,
            Some(Some(parent_sub)) => {
                child_eq.as_ref().is_some_and(|e| contains(e, &parent_sub))
                    || child_sub.as_ref().is_some_and(|s| contains(s, &parent_sub))
            }
        };
        equals_ok && subset_ok
    }
}

/// Whether `grant` allows `principal_arn` to perform `operation` (`"Encrypt"`, as AWS names
/// grant operations) on key `key_id` with `encryption_context`.
///
/// The caller has already found the grant (by key, or by a verified grant token) and checks
/// the key's state; this checks the key, the grantee, the operation and the constraints.
pub fn grant_allows(
    grant: &Grant,
    key_id: &str,
    principal_arn: &str,
    operation: &str,
    encryption_context: Option<&BTreeMap<String, String>>,
) -> bool {
    if grant.key_id != key_id || grant.grantee_principal != principal_arn {
        return false;
    }
    let Some(op) = GrantOperation::from_name(operation) else {
        return false;
    };
    if !grant.operations.contains(&op) {
        return false;
    }
    match (&grant.constraints, op.constraint_use()) {
        (None, _) | (Some(_), ConstraintUse::Exempt) => true,
        (Some(c), ConstraintUse::Checked) => c.satisfied_by(encryption_context),
        (Some(_), ConstraintUse::Incompatible) => false,
    }
}

/// For CreateGrant through a grant: whether the child grant's constraints are equally strict
/// or stricter than the parent grant's (AWS: "the constraint requires that any grants created
/// with the CreateGrant permission have an equally strict or stricter encryption context
/// constraint").
pub fn child_constraints_allowed(
    parent: Option<&GrantConstraints>,
    child: Option<&GrantConstraints>,
) -> bool {
    match (parent, child) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(parent), Some(child)) => child.at_least_as_strict_as(parent),
    }
}

/// Whether `principal_arn` may retire `grant` by itself: the retiring principal, or the
/// grantee when the grant includes `RetireGrant`. (The issuing account's principals may also
/// retire it when their policies allow `kms:RetireGrant`; that is a policy decision.)
pub fn may_retire(grant: &Grant, principal_arn: &str) -> bool {
    grant.retiring_principal.as_deref() == Some(principal_arn)
        || (grant.grantee_principal == principal_arn
            && grant.operations.contains(&GrantOperation::RetireGrant))
}
