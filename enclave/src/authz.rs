//! Authorization: every KMS request is checked against the key policy, the caller's identity
//! policy and the key's grants, inside the enclave, before the operation runs.
//!
//! The rules are AWS KMS's: an explicit deny (key or identity policy) wins; otherwise the
//! request is allowed when the key policy allows the caller directly, or when the key policy
//! delegates to the account (a statement naming `arn:aws:iam::<account>:root`) and the caller's
//! identity policy allows it, or when a grant on the key allows the operation for the caller
//! under its constraints. Operations without a key (CreateKey, ListKeys, GenerateRandom, ...)
//! need the identity policy alone.
//!
//! The checker reads only the fields it needs from the request (key ids, the ciphertext header,
//! encryption contexts); malformed requests pass through so that the operation answers them
//! with the precise validation error.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::ciphertext;
use crate::error::{KmsError, KmsResult};
use crate::keys::{Key, KeyStore};
use crate::ops::Ctx;
use crate::policy::{self, Decision, IdentityPolicy, Policy, RequestContext};

/// The fields of a request that authorization looks at.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Fields<'a> {
    key_id: Option<String>,
    target_key_id: Option<String>,
    destination_key_id: Option<String>,
    source_key_id: Option<String>,
    alias_name: Option<String>,
    /// Borrowed from the body: only its header is read here.
    #[serde(borrow)]
    ciphertext_blob: Option<std::borrow::Cow<'a, str>>,
    encryption_context: Option<BTreeMap<String, String>>,
    source_encryption_context: Option<BTreeMap<String, String>>,
    destination_encryption_context: Option<BTreeMap<String, String>>,
    encryption_algorithm: Option<String>,
    operations: Option<Vec<String>>,
    recipient: Option<crate::recipient::RecipientInfoRequest>,
}

/// The condition keys a request offers to the policies (all optional).
#[derive(Debug, Default, Clone, Copy)]
pub struct Conditions<'a> {
    /// `kms:EncryptionContext:<key>`, `kms:EncryptionContextKeys`.
    pub encryption_context: Option<&'a BTreeMap<String, String>>,
    /// `kms:EncryptionAlgorithm`.
    pub encryption_algorithm: Option<&'a str>,
    /// `kms:GrantOperations`.
    pub grant_operations: Option<&'a [String]>,
    /// `kms:RecipientAttestation:PCR<n>`, from a verified Recipient document.
    pub recipient_pcrs: Option<&'a BTreeMap<u8, Vec<u8>>>,
    /// `kms:RecipientAttestation:ImageSha384`, from a verified Recipient document.
    pub recipient_image_sha384: Option<&'a [u8]>,
}

/// How an operation is authorized.
enum Scope {
    /// `kms:<op>` on the key named by a field.
    Key,
    /// `kms:<op>` on "*", by the identity policy alone.
    Account,
    /// Decided by the operation itself (RetireGrant: the retiring principal may).
    Operation,
}

fn scope_of(op: &str) -> Scope {
    match op {
        "CreateKey" | "ListKeys" | "ListAliases" | "GenerateRandom" | "ListRetirableGrants" => {
            Scope::Account
        }
        "RetireGrant" => Scope::Operation,
        _ => Scope::Key,
    }
}

/// The key policy of `key`, parsed (the default policy when it has none).
fn key_policy(ctx: &Ctx<'_>, key: &Key) -> KmsResult<Arc<Policy>> {
    match &key.policy {
        Some(text) => policy::parse(text, &ctx.config.account)
            .map(Arc::new)
            .map_err(|e| {
                tracing::error!(key = %key.id, error = %e, "stored key policy does not parse");
                KmsError::Internal("stored key policy does not parse")
            }),
        None => ctx.state.default_policy(&ctx.config.account),
    }
}

fn denied(ctx: &Ctx<'_>, action: &str, resource: &str, why: &str) -> KmsError {
    KmsError::AccessDenied(format!(
        "User: {} is not authorized to perform: {action} on resource: {resource} {why}",
        ctx.caller.arn
    ))
}

/// Whether the key policy and the caller's identity policy (no grants) allow the caller to
/// perform `op` on `key`: `Ok(true)` allowed, `Ok(false)` not allowed (implicit deny).
/// Operations that decide with grants themselves (CreateGrant through a parent grant,
/// RetireGrant) use this.
///
/// # Errors
/// `AccessDeniedException` on an explicit deny.
pub fn policies_allow(
    ctx: &Ctx<'_>,
    op: &str,
    key: &Key,
    conditions: &Conditions<'_>,
) -> KmsResult<bool> {
    let action = format!("kms:{op}");
    let resource = ctx.config.key_arn(&key.id);
    let mut request = RequestContext::new(
        &ctx.caller.arn,
        &ctx.config.account,
        &action,
        &resource,
        ctx.env.now(),
    );
    request.encryption_context = conditions.encryption_context;
    request.encryption_algorithm = conditions.encryption_algorithm;
    request.grant_operations = conditions.grant_operations;
    request.recipient_pcrs = conditions.recipient_pcrs;
    request.recipient_image_sha384 = conditions.recipient_image_sha384;
    let key_policy = key_policy(ctx, key)?;
    match policy::authorize(&key_policy, ctx.caller.identity_policy.as_deref(), &request) {
        Decision::Allow => Ok(true),
        Decision::ExplicitDeny => Err(denied(
            ctx,
            &action,
            &resource,
            "with an explicit deny in a policy",
        )),
        Decision::ImplicitDeny => Ok(false),
    }
}

/// The `AccessDeniedException` for `op` on `key` when nothing allows it.
pub fn not_allowed(ctx: &Ctx<'_>, op: &str, key: &Key) -> KmsError {
    denied(
        ctx,
        &format!("kms:{op}"),
        &ctx.config.key_arn(&key.id),
        "because no resource-based policy allows the action",
    )
}

/// Whether the caller may perform `op` on `key`.
///
/// # Errors
/// `AccessDeniedException` with a message like AWS's.
pub fn check_key(ctx: &Ctx<'_>, op: &str, key: &Key, conditions: &Conditions<'_>) -> KmsResult<()> {
    if policies_allow(ctx, op, key, conditions)? {
        return Ok(());
    }
    let encryption_context = conditions.encryption_context;
    let key_id = key.id.to_string();
    if key
        .grants
        .iter()
        .any(|g| policy::grants::grant_allows(g, &key_id, &ctx.caller.arn, op, encryption_context))
    {
        return Ok(());
    }
    Err(not_allowed(ctx, op, key))
}

/// Whether the caller's identity policy allows `op` on "*".
///
/// # Errors
/// `AccessDeniedException`.
pub fn check_account(ctx: &Ctx<'_>, op: &str) -> KmsResult<()> {
    let action = format!("kms:{op}");
    let request = RequestContext::new(
        &ctx.caller.arn,
        &ctx.config.account,
        &action,
        "*",
        ctx.env.now(),
    );
    match ctx
        .caller
        .identity_policy
        .as_deref()
        .map(|p| p.evaluate(&request))
    {
        Some(Decision::Allow) => Ok(()),
        Some(Decision::ExplicitDeny) => Err(denied(
            ctx,
            &action,
            "*",
            "with an explicit deny in an identity-based policy",
        )),
        _ => Err(denied(
            ctx,
            &action,
            "*",
            "because no identity-based policy allows the action",
        )),
    }
}

fn resolve<'s>(store: &'s KeyStore, ctx: &Ctx<'_>, key_id: Option<&str>) -> Option<&'s Key> {
    store
        .resolve("keyId", key_id?, ctx.config, ctx.env.now())
        .ok()
}

fn blob_key<'s>(store: &'s KeyStore, ctx: &Ctx<'_>, blob: Option<&str>) -> Option<&'s Key> {
    let key_id = ciphertext::key_id_of_base64(blob?)?;
    store.by_id(&key_id, ctx.env.now())
}

/// The names of [`Fields`], as they appear in a request.
const FIELD_NAMES: &[&str] = &[
    "KeyId",
    "TargetKeyId",
    "DestinationKeyId",
    "SourceKeyId",
    "AliasName",
    "CiphertextBlob",
    "EncryptionContext",
    "SourceEncryptionContext",
    "DestinationEncryptionContext",
    "EncryptionAlgorithm",
    "Operations",
    "Recipient",
];

/// Authorizes one request before its operation runs. `members` is `body` split into its
/// members, when it could be: the fields are then read from those alone.
///
/// # Errors
/// `AccessDeniedException` when the policies and grants do not allow it.
pub fn authorize(
    ctx: &Ctx<'_>,
    op: &str,
    body: &[u8],
    members: Option<&crate::json::Members<'_>>,
) -> KmsResult<()> {
    match scope_of(op) {
        Scope::Operation => return Ok(()),
        Scope::Account => return check_account(ctx, op),
        Scope::Key => {}
    }
    // A body that did not split (not an object, or a string that is not UTF-8) is read whole,
    // as the operation will read it.
    let fields = match members {
        Some(members) => Fields::deserialize(members.select(FIELD_NAMES)),
        None => serde_json::from_slice::<Fields>(body),
    };
    let Ok(f) = fields else {
        return Ok(()); // the operation answers SerializationException
    };
    let store = ctx.state.read();
    let algorithm = f.encryption_algorithm.as_deref();
    match op {
        "ReEncrypt" => {
            let source = resolve(&store, ctx, f.source_key_id.as_deref())
                .or_else(|| blob_key(&store, ctx, f.ciphertext_blob.as_deref()));
            if let Some(key) = source {
                let conditions = Conditions {
                    encryption_context: f.source_encryption_context.as_ref(),
                    ..Conditions::default()
                };
                check_key(ctx, "ReEncryptFrom", key, &conditions)?;
            }
            if let Some(key) = resolve(&store, ctx, f.destination_key_id.as_deref()) {
                let conditions = Conditions {
                    encryption_context: f.destination_encryption_context.as_ref(),
                    ..Conditions::default()
                };
                check_key(ctx, "ReEncryptTo", key, &conditions)?;
            }
            Ok(())
        }
        _ => {
            let key = resolve(&store, ctx, f.key_id.as_deref())
                .or_else(|| resolve(&store, ctx, f.target_key_id.as_deref()))
                .or_else(|| resolve(&store, ctx, f.alias_name.as_deref()))
                .or_else(|| {
                    (op == "Decrypt")
                        .then(|| blob_key(&store, ctx, f.ciphertext_blob.as_deref()))
                        .flatten()
                });
            // A Recipient's verified measurements feed the kms:RecipientAttestation:* keys; a
            // document that does not verify is left for the operation to refuse.
            let recipient = f
                .recipient
                .and_then(|r| crate::ops::recipient(ctx, Some(r)).ok().flatten());
            let conditions = Conditions {
                encryption_context: f.encryption_context.as_ref(),
                encryption_algorithm: algorithm,
                grant_operations: f.operations.as_deref(),
                recipient_pcrs: recipient.as_ref().map(crate::recipient::Recipient::pcrs),
                recipient_image_sha384: recipient
                    .as_ref()
                    .and_then(crate::recipient::Recipient::image_sha384),
            };
            match key {
                Some(key) => check_key(ctx, op, key, &conditions),
                // No such key: the operation answers NotFoundException (or what fits).
                None => Ok(()),
            }
        }
    }
}

/// The identity policy that allows everything: for the `dev` principal and the first admin.
///
/// # Errors
/// Only if the built-in text does not parse (a bug caught by tests).
pub fn allow_all() -> KmsResult<Arc<IdentityPolicy>> {
    policy::parse_identity(policy::ALLOW_ALL_IDENTITY_POLICY)
        .map(Arc::new)
        .map_err(|_| KmsError::Internal("built-in identity policy"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out the field names a derived `Deserialize` asks for, and nothing else.
    struct FieldNames(std::cell::RefCell<Vec<&'static str>>);

    impl<'de> serde::Deserializer<'de> for &FieldNames {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom(
                "only a struct's field names are read",
            ))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.borrow_mut().extend_from_slice(fields);
            self.deserialize_any(visitor)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    /// Authorization reads the members it selects by name: the names must be exactly the
    /// fields it declares, or a field would silently go unread.
    #[test]
    fn field_names_are_the_fields() {
        let names = FieldNames(std::cell::RefCell::new(Vec::new()));
        assert!(Fields::deserialize(&names).is_err());
        let mut declared = names.0.into_inner();
        let mut listed = FIELD_NAMES.to_vec();
        declared.sort_unstable();
        listed.sort_unstable();
        assert_eq!(declared, listed);
    }
}
