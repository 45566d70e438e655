//! CreateGrant: adds a grant to a key, in the key's sealed record. Also the grant id and grant
//! token formats, and the field checks the grant operations share.
//!
//! Grants take effect at once here (no eventual consistency), so a grant token only has to
//! name its grant: `base64url(version 1 ‖ key id (16 bytes) ‖ grant id (32 bytes))`. It is not
//! a credential: whoever presents it is still authorized as themselves.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::keys::{Key, KeyRef, KeySpec, KeyState, KeyUsage};
use crate::access::policy::grants::{self, Grant, GrantConstraints, GrantOperation};
use crate::kms::validate;

/// Longest grant token accepted (AWS: 8192 characters).
pub const MAX_GRANT_TOKEN_CHARS: usize = 8192;
const TOKEN_VERSION: u8 = 1;
const TOKEN_LEN: usize = 1 + 16 + 32;

/// CreateGrant request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
    grantee_principal: Option<String>,
    retiring_principal: Option<String>,
    operations: Option<Vec<String>>,
    constraints: Option<GrantConstraints>,
    grant_tokens: Option<Vec<String>>,
    name: Option<String>,
    dry_run: Option<bool>,
}

/// CreateGrant response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    grant_token: String,
    grant_id: String,
}

/// The grant token of grant `grant_id` on key `key_id`.
///
/// # Errors
/// `KMSInternalException` if `grant_id` is not one this service made.
pub fn grant_token(key_id: &Uuid, grant_id: &str) -> KmsResult<String> {
    let id = hex::decode(grant_id)
        .ok()
        .filter(|b| b.len() == 32)
        .ok_or(KmsError::Internal("grant id"))?;
    let mut bytes = Vec::with_capacity(TOKEN_LEN);
    bytes.push(TOKEN_VERSION);
    bytes.extend_from_slice(key_id.as_bytes());
    bytes.extend_from_slice(&id);
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The key id and grant id a grant token names.
///
/// # Errors
/// `ValidationException` for a length outside 1–8192; `InvalidGrantTokenException` for a
/// token this service did not issue.
pub fn parse_grant_token(field: &str, token: &str) -> KmsResult<(Uuid, String)> {
    validate::str_len(field, token, 1, MAX_GRANT_TOKEN_CHARS)?;
    let invalid = || KmsError::InvalidGrantToken("The grant token is not valid.".to_owned());
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    if bytes.len() != TOKEN_LEN || bytes.first() != Some(&TOKEN_VERSION) {
        return Err(invalid());
    }
    let key = Uuid::from_slice(bytes.get(1..17).ok_or_else(invalid)?).map_err(|_| invalid())?;
    let grant = hex::encode(bytes.get(17..).ok_or_else(invalid)?);
    Ok((key, grant))
}

/// Checks a `GrantId` field: 1–128 characters (`ValidationException`), and the shape this
/// service issues, 64 lowercase hex digits (`InvalidGrantIdException`).
///
/// # Errors
/// As above.
pub fn check_grant_id(field: &str, grant_id: &str) -> KmsResult<()> {
    validate::str_len(field, grant_id, 1, 128)?;
    if grant_id.len() == 64
        && grant_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        // At most 128 characters: shown as given.
        Err(KmsError::InvalidGrantId(format!(
            "Invalid grant id {grant_id}"
        )))
    }
}

/// Checks a principal ARN field (`GranteePrincipal`, `RetiringPrincipal`): 1–256 characters
/// of `[\w+=,.@:/-]`, and an ARN.
///
/// # Errors
/// `ValidationException`.
pub fn check_principal(field: &str, principal: &str) -> KmsResult<()> {
    validate::str_len(field, principal, 1, 256)?;
    if !principal
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@:/-".contains(&b))
    {
        return Err(KmsError::invalid_field(field, "Member must satisfy regular expression pattern: ^[\\w+=,.@:/-]+$"));
    }
    if !principal.starts_with("arn:") {
        return Err(KmsError::Validation(format!(
            "Invalid principal: {field} must be the ARN of a principal"
        )));
    }
    Ok(())
}

/// Refuses an alias where the grant operations need a key id or key ARN (as AWS).
///
/// # Errors
/// `ValidationException` for a bad length; `NotFoundException` for an alias or another shape.
pub fn check_key_ref(ctx: &Ctx<'_>, key_id: &str) -> KmsResult<()> {
    match KeyRef::parse("keyId", key_id, ctx.config)? {
        KeyRef::Key(_) => Ok(()),
        KeyRef::Alias(_) => Err(KmsError::NotFound(format!(
            "Invalid keyId {key_id}: grant operations take a key id or key ARN, not an alias"
        ))),
    }
}

/// Whether `key` supports `op` (AWS refuses a grant for, say, Sign on a symmetric key).
fn supported(op: GrantOperation, key: &Key) -> bool {
    use GrantOperation as G;
    match op {
        G::DescribeKey | G::CreateGrant | G::RetireGrant => true,
        _ => match key.usage {
            KeyUsage::EncryptDecrypt if key.spec == KeySpec::SymmetricDefault => matches!(
                op,
                G::Encrypt
                    | G::Decrypt
                    | G::GenerateDataKey
                    | G::GenerateDataKeyWithoutPlaintext
                    | G::ReEncryptFrom
                    | G::ReEncryptTo
                    | G::GenerateDataKeyPair
                    | G::GenerateDataKeyPairWithoutPlaintext
            ),
            KeyUsage::EncryptDecrypt => matches!(
                op,
                G::Encrypt | G::Decrypt | G::ReEncryptFrom | G::ReEncryptTo | G::GetPublicKey
            ),
            KeyUsage::SignVerify => matches!(op, G::Sign | G::Verify | G::GetPublicKey),
            KeyUsage::GenerateVerifyMac => matches!(op, G::GenerateMac | G::VerifyMac),
            KeyUsage::KeyAgreement => matches!(op, G::DeriveSharedSecret | G::GetPublicKey),
        },
    }
}

/// Checks `Constraints` and drops an empty one (neither map given).
fn constraints(
    operations: &[GrantOperation],
    constraints: Option<GrantConstraints>,
) -> KmsResult<Option<GrantConstraints>> {
    let Some(c) = constraints else {
        return Ok(None);
    };
    if c.encryption_context_equals.is_none() && c.encryption_context_subset.is_none() {
        return Ok(None);
    }
    for (field, map) in [
        (
            "constraints.encryptionContextEquals",
            &c.encryption_context_equals,
        ),
        (
            "constraints.encryptionContextSubset",
            &c.encryption_context_subset,
        ),
    ] {
        if let Some(map) = map {
            // Same key and size rules as a request's encryption context.
            super::encryption_context(field, Some(map.clone()))?;
        }
    }
    grants::validate_constraints(operations, &c)
        .map_err(|e| KmsError::Validation(e.to_string()))?;
    Ok(Some(c))
}

fn same_operations(a: &[GrantOperation], b: &[GrantOperation]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

/// Creates the grant (or, for a retry with the same `Name` and parameters, answers the
/// existing one).
///
/// # Errors
/// `ValidationException`, `NotFoundException`, `KMSInvalidStateException` (pending deletion),
/// `AccessDeniedException` (a grantee creating a broader grant than its own),
/// `LimitExceededException`, `DryRunOperationException`, `InvalidGrantTokenException`.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    let grantee = validate::required("granteePrincipal", req.grantee_principal)?;
    let names = validate::required("operations", req.operations)?;
    check_principal("granteePrincipal", &grantee)?;
    if let Some(retiring) = &req.retiring_principal {
        check_principal("retiringPrincipal", retiring)?;
    }
    if let Some(name) = &req.name {
        validate::str_len("name", name, 1, 256)?;
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":/_-".contains(&b))
        {
            return Err(KmsError::invalid_field("name", "Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$"));
        }
    }
    let operations =
        grants::validate_operations(&names).map_err(|e| KmsError::Validation(e.to_string()))?;
    let constraints = constraints(&operations, req.constraints)?;
    super::grant_tokens(req.grant_tokens.as_deref())?;
    check_key_ref(ctx, &key_id)?;

    let now = ctx.env.now();
    let mut store = ctx.keys_mut();
    store.ensure_room()?;
    // kms:CreateGrant with kms:GrantOperations by the policies, or through a grant of the
    // caller's that is at least as broad as the new one.
    let proof = store.authorize_create_grant(
        "keyId",
        &key_id,
        &names,
        &operations,
        constraints.as_ref(),
    )?;
    let key = store.get_mut(&proof)?;
    if key.state == KeyState::PendingDeletion {
        return Err(KmsError::InvalidState(format!(
            "{} is pending deletion.",
            ctx.config.key_arn(&key.id)
        )));
    }
    let unsupported: Vec<&str> = operations
        .iter()
        .filter(|op| !supported(**op, key))
        .map(|op| op.as_str())
        .collect();
    if !unsupported.is_empty() {
        return Err(KmsError::Validation(format!(
            "Grant operations [{}] are not valid for {} key {}",
            unsupported.join(", "),
            key.spec.as_str(),
            ctx.config.key_arn(&key.id)
        )));
    }
    if constraints.is_some() && key.spec != KeySpec::SymmetricDefault {
        return Err(KmsError::Validation(format!(
            "Grant constraints cannot be used with the asymmetric key {}: its operations take no encryption context",
            ctx.config.key_arn(&key.id)
        )));
    }

    // Name: a retry with the same parameters answers the existing grant; with other
    // parameters a new grant is made, as AWS does.
    let existing = req.name.as_ref().and_then(|name| {
        key.grants.for_grantee(&grantee).find(|g| {
            g.name.as_ref() == Some(name)
                && g.retiring_principal == req.retiring_principal
                && same_operations(&g.operations, &operations)
                && g.constraints == constraints
        })
    });
    if let Some(g) = existing {
        let response = Response {
            grant_token: grant_token(&key.id, &g.grant_id)?,
            grant_id: g.grant_id.clone(),
        };
        super::dry_run(req.dry_run)?;
        return Ok(response);
    }
    let quotas = &ctx.config.quotas;
    if key.grants.len() >= quotas.grants_per_key {
        return Err(KmsError::LimitExceeded(format!(
            "Key {} has {} grants, its quota: retire or revoke some first.",
            ctx.config.key_arn(&key.id),
            quotas.grants_per_key
        )));
    }
    if key.grants.count_for_grantee(&grantee) >= quotas.grants_per_grantee {
        return Err(KmsError::LimitExceeded(format!(
            "Key {} has {} grants for {grantee}, the quota for one grantee: retire or revoke some first.",
            ctx.config.key_arn(&key.id),
            quotas.grants_per_grantee
        )));
    }
    super::dry_run(req.dry_run)?;

    let mut id = [0u8; 32];
    ctx.env.entropy.fill(&mut id)?;
    let grant_id = hex::encode(id);
    let token = grant_token(&key.id, &grant_id)?;
    key.grants.insert(Grant {
        grant_id: grant_id.clone(),
        key_id: key.id.to_string(),
        name: req.name,
        grantee_principal: grantee,
        retiring_principal: req.retiring_principal,
        operations,
        constraints,
        issuing_account: ctx.config.account.clone(),
        creation_date: now,
    });
    // One record, the grant's own, whatever the number of grants on the key.
    let id = key.id;
    store.touch(crate::kms::state::Touched::Grant(id, grant_id.clone()));
    Ok(Response {
        grant_token: token,
        grant_id,
    })
}
