//! Principal administration: `X-Amz-Target: Ekms.<Operation>` for CreatePrincipal,
//! ListPrincipals, DeletePrincipal, CreateAccessKey, DeleteAccessKey and PutPrincipalPolicy;
//! and ListRefusedRecords, the operator's view of what the last unseal refused.
//!
//! Unlike the custody operations (GetAttestation, Status, Initialize, Unseal, AuditHead), these
//! are SigV4-authenticated like KMS requests, audited like them, and authorized by the caller's
//! identity policy alone: action `ekms:<Operation>` on the target principal,
//! `arn:aws:iam::<account>:user/<name>` (ListPrincipals, ListRefusedRecords: on `*`), so a
//! policy can scope them
//! (`"Resource": "arn:aws:iam::*:user/app-*"`). A policy granting only `kms:*` does not grant
//! them; `"Action": "*"` does.
//!
//! Every change is noted as [`Touched::Principal`], which the server seals durably (with the
//! audit record) before it answers. Secret access keys are made here from the enclave's random
//! source, returned once in the response, and never logged: the audit's `responseElements`
//! come from [`response_elements`], which keeps only public fields.
//!
//! Request and response shapes (JSON 1.1):
//! - CreatePrincipal `{UserName, Policy?}` → `{Arn, AccessKeyId, SecretAccessKey}`
//! - ListPrincipals `{Limit?, Marker?}` → `{Principals: [{UserName, Arn, AccessKeyIds}],
//!   Truncated, NextMarker?}`
//! - DeletePrincipal `{UserName}` → `{}`
//! - CreateAccessKey `{UserName}` → `{UserName, AccessKeyId, SecretAccessKey}`
//! - DeleteAccessKey `{UserName, AccessKeyId}` → `{}`
//! - PutPrincipalPolicy `{UserName, Policy}` → `{}`
//! - ListRefusedRecords `{}` → `{RefusedRecords: [..]}` (what the last unseal refused)

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::kms::authz::Refused;
use crate::error::{KmsError, KmsResult};
use crate::kms::ops::Ctx;
use crate::kms::state::Touched;
use crate::access::principals::{self, ChangeError};

/// The principal administration operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A new principal with one access key.
    CreatePrincipal,
    /// Principals, a page at a time (never secrets).
    ListPrincipals,
    /// Removes a principal and its access keys.
    DeletePrincipal,
    /// A new access key for a principal (at most two).
    CreateAccessKey,
    /// Removes one access key.
    DeleteAccessKey,
    /// Replaces a principal's identity policy.
    PutPrincipalPolicy,
    /// The sealed records the last unseal refused, with why (the unauthenticated status shows
    /// only their count).
    ListRefusedRecords,
    /// A new deployment TLS CA, presented cross-signed by the old one during an overlap.
    RotateTlsCa,
    /// A certificate signing request for a key made in the enclave, attested.
    CreateTlsCsr,
    /// Installs the chain the operator's CA issued for that request.
    InstallTlsChain,
}

impl Operation {
    /// The operation named by the part of `X-Amz-Target` after `Ekms.`, if it is one of these.
    pub fn from_name(name: &str) -> Option<Operation> {
        Some(match name {
            "CreatePrincipal" => Operation::CreatePrincipal,
            "ListPrincipals" => Operation::ListPrincipals,
            "DeletePrincipal" => Operation::DeletePrincipal,
            "CreateAccessKey" => Operation::CreateAccessKey,
            "DeleteAccessKey" => Operation::DeleteAccessKey,
            "PutPrincipalPolicy" => Operation::PutPrincipalPolicy,
            "ListRefusedRecords" => Operation::ListRefusedRecords,
            "RotateTlsCa" => Operation::RotateTlsCa,
            "CreateTlsCsr" => Operation::CreateTlsCsr,
            "InstallTlsChain" => Operation::InstallTlsChain,
            _ => return None,
        })
    }

    /// Its name (the audit record's `eventName`).
    pub fn name(self) -> &'static str {
        self.actions()[0]
    }

    /// The one IAM action (`ekms:<action>`) it is authorized for.
    pub fn actions(self) -> &'static [&'static str] {
        match self {
            Operation::CreatePrincipal => &["CreatePrincipal"],
            Operation::ListPrincipals => &["ListPrincipals"],
            Operation::DeletePrincipal => &["DeletePrincipal"],
            Operation::CreateAccessKey => &["CreateAccessKey"],
            Operation::DeleteAccessKey => &["DeleteAccessKey"],
            Operation::PutPrincipalPolicy => &["PutPrincipalPolicy"],
            Operation::ListRefusedRecords => &["ListRefusedRecords"],
            Operation::RotateTlsCa => &["RotateTlsCa"],
            Operation::CreateTlsCsr => &["CreateTlsCsr"],
            Operation::InstallTlsChain => &["InstallTlsChain"],
        }
    }

    /// Whether the audit record keeps the answer's public fields ([`response_elements`]).
    pub fn audits_response(self) -> bool {
        matches!(
            self,
            Operation::CreatePrincipal | Operation::CreateAccessKey | Operation::RotateTlsCa
        )
    }
}

/// Largest ListPrincipals page.
pub const MAX_LIMIT: usize = 1000;
/// ListPrincipals page size when no Limit is given.
pub const DEFAULT_LIMIT: usize = 100;

const KEY_ID_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `n` characters of `alphabet` (32 or 64 long: no modulo bias) from the enclave's entropy.
fn random_chars(ctx: &Ctx<'_>, alphabet: &[u8], n: usize) -> KmsResult<Zeroizing<String>> {
    let mut bytes = Zeroizing::new(vec![0u8; n]);
    ctx.env.entropy.fill(&mut bytes)?;
    Ok(Zeroizing::new(
        bytes
            .iter()
            .map(|b| char::from(alphabet[usize::from(*b) % alphabet.len()]))
            .collect(),
    ))
}

/// A fresh access key: `AKIA` + 16 base32 characters, and a 40-character secret.
fn new_access_key(ctx: &Ctx<'_>) -> KmsResult<(String, Zeroizing<String>)> {
    let id = format!("AKIA{}", *random_chars(ctx, KEY_ID_ALPHABET, 16)?);
    Ok((id, random_chars(ctx, SECRET_ALPHABET, 40)?))
}

fn parse<T: DeserializeOwned + Default>(body: &[u8]) -> KmsResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| KmsError::Serialization(format!("Could not parse the request: {e}")))
}

fn to_json(value: &Value) -> KmsResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|_| KmsError::Internal("response encoding"))
}

fn validation(field: &str, constraint: &str) -> KmsError {
    KmsError::invalid_field(field, constraint)
}

/// `UserName`: required, IAM's `[\w+=,.@-]{1,64}`.
fn user_name(name: Option<String>) -> KmsResult<String> {
    let name = name.ok_or_else(|| validation("userName", "Member must not be null"))?;
    if !principals::valid_name(&name) {
        return Err(validation(
            "userName",
            "Member must satisfy regular expression pattern: [\\w+=,.@-]{1,64}",
        ));
    }
    Ok(name)
}

/// An identity policy document: 1–32768 bytes, parsed (the error names the problem).
fn identity_policy(policy: String) -> KmsResult<String> {
    if policy.is_empty() || policy.len() > crate::access::policy::MAX_POLICY_BYTES {
        return Err(validation(
            "policy",
            "Member must have length between 1 and 32768",
        ));
    }
    crate::access::policy::parse_identity(&policy).map_err(|e| KmsError::MalformedPolicy(e.to_string()))?;
    Ok(policy)
}

fn change_error(e: ChangeError) -> KmsError {
    match e {
        ChangeError::NoSuchEntity(m) => KmsError::NotFound(m),
        ChangeError::EntityAlreadyExists(m) => KmsError::AlreadyExists(m),
        ChangeError::LimitExceeded(m) => KmsError::LimitExceeded(m),
        e @ ChangeError::FromFile(_) => KmsError::Validation(e.to_string()),
        ChangeError::Invalid(why) => KmsError::Validation(why.to_owned()),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreatePrincipal {
    user_name: Option<String>,
    policy: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ListPrincipals {
    limit: Option<i64>,
    marker: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Empty {}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct InstallTlsChain {
    chain: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RotateTlsCa {
    overlap_days: Option<i64>,
}

/// Most days a rotation's overlap may last.
pub const MAX_OVERLAP_DAYS: i64 = 365;
/// A rotation's overlap when none is given.
pub const DEFAULT_OVERLAP_DAYS: i64 = 30;

fn rotate_tls_ca(ctx: &Ctx<'_>, action: &'static str, req: RotateTlsCa) -> KmsResult<Vec<u8>> {
    let days = req.overlap_days.unwrap_or(DEFAULT_OVERLAP_DAYS);
    if !(0..=MAX_OVERLAP_DAYS).contains(&days) {
        return Err(validation(
            "overlapDays",
            "Member must have value between 0 and 365",
        ));
    }
    let ca = ctx.rotate_tls_ca(action, |current| {
        current.rotate(20, days * 86_400).map_err(|e| {
            tracing::error!(error = %e, "rotating the TLS CA failed");
            KmsError::Internal("rotating the TLS CA failed")
        })
    })?;
    let now = ctx.env.now().div_euclid(1000);
    to_json(&json!({
        "CaCertificate": ca.cert_pem(),
        "CaSha256": hex::encode(ring::digest::digest(&ring::digest::SHA256, ca.cert_der())),
        "PresentedCaSha256": hex::encode(ring::digest::digest(&ring::digest::SHA256, ca.presented_der(now))),
        "OverlapDays": days,
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct UserOnly {
    user_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DeleteAccessKey {
    user_name: Option<String>,
    access_key_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PutPrincipalPolicy {
    user_name: Option<String>,
    policy: Option<String>,
}

/// Runs one authenticated principal-administration request; returns the JSON response body.
///
/// # Errors
/// `AccessDeniedException` unless the caller's identity policy allows `ekms:<op>`;
/// `ValidationException`, `SerializationException`, `NotFoundException`,
/// `AlreadyExistsException`, `LimitExceededException`, `MalformedPolicyDocumentException`,
/// `InvalidMarkerException` as each operation says.
pub fn handle(ctx: &Ctx<'_>, op: Operation, body: &[u8]) -> KmsResult<Vec<u8>> {
    let action = op.name();
    let answer = match op {
        Operation::CreatePrincipal => {
            let req = parse(body)?;
            ctx.begin(op.actions());
            create_principal(ctx, action, req)
        }
        Operation::ListPrincipals => {
            let req = parse(body)?;
            ctx.begin(op.actions());
            list_principals(ctx, action, req)
        }
        Operation::DeletePrincipal => {
            let req = parse(body)?;
            ctx.begin(op.actions());
            delete_principal(ctx, action, req)
        }
        Operation::CreateAccessKey => {
            let req = parse(body)?;
            ctx.begin(op.actions());
            create_access_key(ctx, action, req)
        }
        Operation::DeleteAccessKey => {
            let req = parse(body)?;
            ctx.begin(op.actions());
            delete_access_key(ctx, action, req)
        }
        Operation::PutPrincipalPolicy => {
            let req = parse(body)?;
            ctx.begin(op.actions());
            put_principal_policy(ctx, action, req)
        }
        Operation::ListRefusedRecords => {
            let Empty {} = parse(body)?;
            ctx.begin(op.actions());
            let refused = ctx.principals().refused_records(action)?;
            to_json(&json!({ "RefusedRecords": refused }))
        }
        Operation::RotateTlsCa => {
            let req: RotateTlsCa = parse(body)?;
            ctx.begin(op.actions());
            rotate_tls_ca(ctx, action, req)
        }
        Operation::CreateTlsCsr => {
            let Empty {} = parse(body)?;
            ctx.begin(op.actions());
            let (csr, spki) = ctx.tls_request(action)?;
            let mut user_data = crate::keys::tls::CSR_BINDING_LABEL.to_vec();
            user_data
                .extend_from_slice(ring::digest::digest(&ring::digest::SHA256, &spki).as_ref());
            let document = ctx
                .env
                .attester
                .attest(Some(&user_data), None, Some(&spki))
                .map_err(|e| {
                    tracing::warn!(error = %e, "attestation failed");
                    KmsError::Internal("attestation failed")
                })?;
            to_json(&json!({
                "Csr": csr,
                "AttestationDocument": crate::json::b64(&document),
            }))
        }
        Operation::InstallTlsChain => {
            let req: InstallTlsChain = parse(body)?;
            ctx.begin(op.actions());
            let chain = req
                .chain
                .ok_or_else(|| validation("chain", "Member must not be null"))?;
            if chain.len() > crate::keys::tls::MAX_CHAIN_CERTS * crate::keys::tls::MAX_CERT_BYTES * 2 {
                return Err(validation("chain", "Member is too long"));
            }
            ctx.tls_install(action, &chain)?;
            to_json(&json!({}))
        }
    }?;
    if ctx.allowed() == 0 {
        tracing::error!(op = action, "an operation succeeded without authorization");
        return Err(KmsError::Internal("operation ran without authorization"));
    }
    Ok(answer)
}

fn refused(e: Refused) -> KmsError {
    match e {
        Refused::Change(e) => change_error(e),
        Refused::Internal(e) => e,
    }
}

fn create_principal(
    ctx: &Ctx<'_>,
    action: &'static str,
    req: CreatePrincipal,
) -> KmsResult<Vec<u8>> {
    let name = user_name(req.user_name)?;
    let policy = req.policy.map(identity_policy).transpose()?;
    let (access_key_id, secret) = new_access_key(ctx)?;
    let user_id = format!("AIDA{}", *random_chars(ctx, KEY_ID_ALPHABET, 17)?);
    let arn = {
        let mut principals = ctx.principals_mut();
        let proof = principals.authorize(&name, action)?;
        let arn = principals
            .create(
                &proof,
                user_id.clone(),
                access_key_id.clone(),
                secret.to_string(),
                policy,
            )
            .map_err(refused)?
            .arn
            .clone();
        principals.touch(Touched::Principal(name));
        arn
    };
    to_json(&json!({
        "Arn": arn,
        "UserId": user_id,
        "AccessKeyId": access_key_id,
        "SecretAccessKey": secret.as_str(),
    }))
}

fn list_principals(ctx: &Ctx<'_>, action: &'static str, req: ListPrincipals) -> KmsResult<Vec<u8>> {
    let limit = match req.limit {
        None => DEFAULT_LIMIT,
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| validation("limit", "Member must have value between 1 and 1000"))?,
    };
    if let Some(marker) = &req.marker {
        if !principals::valid_name(marker) {
            return Err(KmsError::InvalidMarker(
                "The marker is not one ListPrincipals returned.".to_owned(),
            ));
        }
    }
    let guard = ctx.principals();
    let principals = guard.listing(action)?;
    let (page, truncated) = principals.list(req.marker.as_deref(), limit);
    let items: Vec<Value> = page
        .iter()
        .map(|p| {
            json!({
                "UserName": p.name,
                "UserId": p.id,
                "Arn": p.arn,
                "AccessKeyIds": p.access_key_ids().collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut out = json!({ "Principals": items, "Truncated": truncated });
    if truncated {
        if let Some(last) = page.last() {
            out["NextMarker"] = Value::String(last.name.clone());
        }
    }
    to_json(&out)
}

fn delete_principal(ctx: &Ctx<'_>, action: &'static str, req: UserOnly) -> KmsResult<Vec<u8>> {
    let name = user_name(req.user_name)?;
    {
        // Keys before principals, the order every holder of both takes them in.
        let mut keys = ctx.keys_mut();
        let mut principals = ctx.principals_mut();
        let proof = principals.authorize(&name, action)?;
        let Some((arn, id)) = principals
            .get(&proof)?
            .map(|p| (p.arn.clone(), p.id.clone()))
        else {
            return Err(change_error(ChangeError::NoSuchEntity(format!(
                "The user with name {name} cannot be found."
            ))));
        };
        if arn == ctx.caller.arn {
            return Err(KmsError::Validation(
                "You cannot delete the principal you are signed in as.".to_owned(),
            ));
        }
        principals.delete(&proof).map_err(refused)?;
        // What named it names its unique id from now on: a principal created again under
        // the name starts with nothing.
        for changed in keys.forget_principal(&proof, &arn, &id)? {
            keys.touch(changed);
        }
        principals.touch(Touched::Principal(name));
    }
    to_json(&json!({}))
}

fn create_access_key(ctx: &Ctx<'_>, action: &'static str, req: UserOnly) -> KmsResult<Vec<u8>> {
    let name = user_name(req.user_name)?;
    let (access_key_id, secret) = new_access_key(ctx)?;
    {
        let mut principals = ctx.principals_mut();
        let proof = principals.authorize(&name, action)?;
        principals
            .add_access_key(&proof, access_key_id.clone(), secret.to_string())
            .map_err(refused)?;
        principals.touch(Touched::Principal(name.clone()));
    }
    to_json(&json!({
        "UserName": name,
        "AccessKeyId": access_key_id,
        "SecretAccessKey": secret.as_str(),
    }))
}

fn delete_access_key(
    ctx: &Ctx<'_>,
    action: &'static str,
    req: DeleteAccessKey,
) -> KmsResult<Vec<u8>> {
    let name = user_name(req.user_name)?;
    let access_key_id = req
        .access_key_id
        .ok_or_else(|| validation("accessKeyId", "Member must not be null"))?;
    if !principals::valid_access_key_id(&access_key_id) {
        return Err(validation(
            "accessKeyId",
            "Member must satisfy regular expression pattern: [\\w]{16,128}",
        ));
    }
    {
        let mut principals = ctx.principals_mut();
        let proof = principals.authorize(&name, action)?;
        principals
            .delete_access_key(&proof, &access_key_id)
            .map_err(refused)?;
        principals.touch(Touched::Principal(name));
    }
    to_json(&json!({}))
}

fn put_principal_policy(
    ctx: &Ctx<'_>,
    action: &'static str,
    req: PutPrincipalPolicy,
) -> KmsResult<Vec<u8>> {
    let name = user_name(req.user_name)?;
    let policy = identity_policy(
        req.policy
            .ok_or_else(|| validation("policy", "Member must not be null"))?,
    )?;
    {
        let mut principals = ctx.principals_mut();
        let proof = principals.authorize(&name, action)?;
        principals.put_policy(&proof, policy).map_err(refused)?;
        principals.touch(Touched::Principal(name));
    }
    to_json(&json!({}))
}

/// The audit record's `responseElements` for `op`'s response: public fields only (never
/// `SecretAccessKey`).
pub fn response_elements(response: Option<&Value>) -> Value {
    let Some(Value::Object(map)) = response else {
        return Value::Null;
    };
    let kept: serde_json::Map<String, Value> = map
        .iter()
        .filter(|(k, _)| {
            matches!(
                k.as_str(),
                "Arn" | "UserName" | "UserId" | "AccessKeyId" | "CaSha256" | "OverlapDays"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if kept.is_empty() {
        Value::Null
    } else {
        Value::Object(kept)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests make mock CAs at the real time
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Config;
    use crate::env::{Env, FixedClock, OsEntropy};
    use crate::kms::state::{Caller, State};
    use crate::access::policy::{Decision, RequestContext};

    struct Core {
        state: State,
        config: Config,
        env: Env,
    }

    impl Core {
        fn new() -> Self {
            let env = Env {
                clock: Arc::new(FixedClock::new(1_700_000_000_000)),
                entropy: Arc::new(OsEntropy::default()),
                attester: Arc::new(crate::custody::attest::insecure::MockAttester(
                    ekms_shared::attestation::insecure::MockAttester::new(
                        ekms_shared::attestation::insecure::MockCa::generate(
                            std::time::SystemTime::now(),
                        )
                        .unwrap(),
                        ekms_shared::attestation::insecure::pcrs_from_binary(b"ekms test"),
                    )
                    .unwrap(),
                )),
            };
            let core = Core {
                state: State::default(),
                config: Config::default(),
                env,
            };
            core.state
                .principals_mut()
                .insert(
                    "admin".into(),
                    "AKIAADMIN00000000000".into(),
                    "adminsecretadminsecret".into(),
                    true,
                    Some(crate::access::policy::ALLOW_ALL_IDENTITY_POLICY.into()),
                    &core.config,
                )
                .unwrap();
            core
        }

        fn caller(&self, name: &str) -> Caller {
            let principals = self.state.principals();
            let p = principals.by_name(name).unwrap();
            let caller = Caller {
                arn: p.arn.clone(),
                access_key_id: p.access_key_ids().next().unwrap_or_default().to_owned(),
                identity_policy: p.identity_policy(),
            };
            caller
        }

        /// Calls `op` as `who`; returns the answer and the records touched.
        fn call_as(
            &self,
            who: &str,
            op: &str,
            body: Value,
        ) -> (Result<Value, KmsError>, Vec<Touched>) {
            let caller = self.caller(who);
            let kept = crate::kms::authz::Kept::default();
            let ctx = Ctx::new(&self.state, &self.config, &self.env, &caller, &kept);
            let result = handle(
                &ctx,
                Operation::from_name(op).unwrap(),
                body.to_string().as_bytes(),
            )
            .map(|b| serde_json::from_slice(&b).unwrap());
            (result, kept.take_touched())
        }

        fn call(&self, op: &str, body: Value) -> Result<Value, KmsError> {
            self.call_as("admin", op, body).0
        }
    }

    fn code(r: Result<Value, KmsError>) -> &'static str {
        r.unwrap_err().aws_code()
    }

    /// The ids of refused records once showed in the unauthenticated status; they go only to
    /// a caller allowed `ekms:ListRefusedRecords`.
    #[test]
    fn refused_records_go_only_to_an_authorized_operator() {
        let core = Core::new();
        core.state
            .set_refused(vec!["alias 1f2e: unopenable".to_owned()]);
        let out = core.call("ListRefusedRecords", json!({})).unwrap();
        assert_eq!(out, json!({"RefusedRecords": ["alias 1f2e: unopenable"]}));
        core.call("CreatePrincipal", json!({"UserName": "bob"}))
            .unwrap();
        assert_eq!(
            code(core.call_as("bob", "ListRefusedRecords", json!({})).0),
            "AccessDeniedException"
        );
    }

    /// A principal deleted and created again under its name once inherited what named the
    /// old one. Now the grants and key policy statements that named it name its unique id
    /// (as IAM shows them), so the new one starts with nothing.
    #[test]
    fn a_principal_created_again_inherits_no_grant_or_policy_statement() {
        let core = Core::new();
        let kms = |who: &str, op: &str, body: Value| {
            let caller = core.caller(who);
            crate::kms::ops::test_support::run(&core.state, &core.config, &core.env, &caller, op, &body)
        };
        let first = core
            .call("CreatePrincipal", json!({"UserName": "bob"}))
            .unwrap();
        let bob = first["Arn"].as_str().unwrap().to_owned();
        let old_id = first["UserId"].as_str().unwrap().to_owned();
        assert!(crate::access::policy::is_unique_id(&old_id), "{old_id}");
        let key = kms("admin", "CreateKey", json!({})).0.unwrap()["KeyMetadata"]["KeyId"]
            .as_str()
            .unwrap()
            .to_owned();
        let policy = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
             "Action": "kms:*", "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": [bob.clone()]},
             "Action": "kms:Encrypt", "Resource": "*"}]});
        kms(
            "admin",
            "PutKeyPolicy",
            json!({"KeyId": key, "PolicyName": "default", "Policy": policy.to_string()}),
        )
        .0
        .unwrap();
        kms(
            "admin",
            "CreateGrant",
            json!({"KeyId": key, "GranteePrincipal": bob,
            "RetiringPrincipal": bob, "Operations": ["Decrypt"]}),
        )
        .0
        .unwrap();
        let encrypt = json!({"KeyId": key, "Plaintext": "aGk="});
        let blob = kms("bob", "Encrypt", encrypt.clone()).0.unwrap()["CiphertextBlob"].clone();
        kms("bob", "Decrypt", json!({"CiphertextBlob": blob}))
            .0
            .unwrap();

        let (out, touched) = core.call_as("admin", "DeletePrincipal", json!({"UserName": "bob"}));
        out.unwrap();
        assert!(touched
            .iter()
            .any(|t| matches!(t, Touched::Key(k) if k.to_string() == key)));
        let shown = kms("admin", "GetKeyPolicy", json!({"KeyId": key}))
            .0
            .unwrap();
        let shown = shown["Policy"].as_str().unwrap();
        assert!(shown.contains(&old_id) && !shown.contains(&bob), "{shown}");
        let grants = kms("admin", "ListGrants", json!({"KeyId": key})).0.unwrap();
        assert_eq!(grants["Grants"][0]["GranteePrincipal"], old_id.as_str());
        assert_eq!(grants["Grants"][0]["RetiringPrincipal"], old_id.as_str());

        let again = core
            .call("CreatePrincipal", json!({"UserName": "bob"}))
            .unwrap();
        assert_eq!(again["Arn"], bob.as_str());
        assert_ne!(again["UserId"], old_id.as_str());
        assert_eq!(
            code(kms("bob", "Encrypt", encrypt).0),
            "AccessDeniedException"
        );
        assert_eq!(
            code(kms("bob", "Decrypt", json!({"CiphertextBlob": blob})).0),
            "AccessDeniedException"
        );
    }

    #[test]
    fn create_principal_makes_an_aws_shaped_key_and_touches_the_record() {
        let core = Core::new();
        let (out, touched) = core.call_as("admin", "CreatePrincipal", json!({"UserName": "bob"}));
        let out = out.unwrap();
        assert_eq!(out["Arn"], "arn:aws:iam::111122223333:user/bob");
        let id = out["AccessKeyId"].as_str().unwrap();
        assert_eq!(id.len(), 20);
        assert!(id.starts_with("AKIA"));
        assert!(id[4..].bytes().all(|b| KEY_ID_ALPHABET.contains(&b)));
        let secret = out["SecretAccessKey"].as_str().unwrap();
        assert_eq!(secret.len(), 40);
        assert_eq!(touched, [Touched::Principal("bob".into())]);
        let principals = core.state.principals();
        let bob = principals.by_access_key(id).unwrap();
        assert_eq!(bob.name, "bob");
        assert!(bob.identity_policy().is_none());
        assert!(principals.sealed_record("bob").is_some());
        drop(principals);
        // The audit's response elements keep the key id, never the secret.
        let elements = response_elements(Some(&out));
        assert_eq!(elements["AccessKeyId"], id);
        assert!(!elements.to_string().contains(secret));
        assert_eq!(
            code(core.call("CreatePrincipal", json!({"UserName": "bob"}))),
            "AlreadyExistsException"
        );
    }

    #[test]
    fn names_and_policies_are_validated() {
        let core = Core::new();
        for bad in [
            json!({}),
            json!({"UserName": ""}),
            json!({"UserName": "a/b"}),
        ] {
            assert_eq!(
                code(core.call("CreatePrincipal", bad.clone())),
                "ValidationException",
                "{bad}"
            );
        }
        assert_eq!(
            code(core.call("CreatePrincipal", json!({"UserName": "x".repeat(65)}))),
            "ValidationException"
        );
        let err = core
            .call(
                "CreatePrincipal",
                json!({"UserName": "carol", "Policy": r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*","Condition":{"StringEqualz":{"a":"b"}}}]}"#}),
            )
            .unwrap_err();
        assert_eq!(err.aws_code(), "MalformedPolicyDocumentException");
        assert!(err.to_string().contains("StringEqualz"), "{err}");
        assert!(core.state.principals().by_name("carol").is_none());
        assert_eq!(
            code(core.call("CreatePrincipal", json!({"UserName": 5}))),
            "SerializationException"
        );
        assert_eq!(
            code(core.call("PutPrincipalPolicy", json!({"UserName": "admin"}))),
            "ValidationException"
        );
    }

    #[test]
    fn access_keys_are_limited_to_two() {
        let core = Core::new();
        core.call("CreatePrincipal", json!({"UserName": "bob"}))
            .unwrap();
        let second = core
            .call("CreateAccessKey", json!({"UserName": "bob"}))
            .unwrap();
        assert_eq!(second["SecretAccessKey"].as_str().unwrap().len(), 40);
        assert_eq!(
            code(core.call("CreateAccessKey", json!({"UserName": "bob"}))),
            "LimitExceededException"
        );
        assert_eq!(
            code(core.call("CreateAccessKey", json!({"UserName": "nobody"}))),
            "NotFoundException"
        );
        let id = second["AccessKeyId"].as_str().unwrap();
        let (out, touched) = core.call_as(
            "admin",
            "DeleteAccessKey",
            json!({"UserName": "bob", "AccessKeyId": id}),
        );
        out.unwrap();
        assert_eq!(touched, [Touched::Principal("bob".into())]);
        assert!(core.state.principals().by_access_key(id).is_none());
        assert_eq!(
            code(core.call(
                "DeleteAccessKey",
                json!({"UserName": "bob", "AccessKeyId": id})
            )),
            "NotFoundException"
        );
        assert_eq!(
            code(core.call(
                "DeleteAccessKey",
                json!({"UserName": "bob", "AccessKeyId": "short"})
            )),
            "ValidationException"
        );
        core.call("CreateAccessKey", json!({"UserName": "bob"}))
            .unwrap();
    }

    #[test]
    fn only_identity_policies_granting_ekms_actions_allow_administration() {
        let core = Core::new();
        core.call(
            "CreatePrincipal",
            json!({"UserName": "bob", "Policy": r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#}),
        )
        .unwrap();
        core.call("CreatePrincipal", json!({"UserName": "nopolicy"}))
            .unwrap();
        for who in ["bob", "nopolicy"] {
            let (out, touched) = core.call_as(who, "CreatePrincipal", json!({"UserName": "eve"}));
            let err = out.unwrap_err();
            assert_eq!(err.aws_code(), "AccessDeniedException");
            assert!(err.to_string().contains("ekms:CreatePrincipal"), "{err}");
            assert!(touched.is_empty());
            assert_eq!(
                code(core.call_as(who, "ListPrincipals", json!({})).0),
                "AccessDeniedException"
            );
        }
        core.call(
            "PutPrincipalPolicy",
            json!({"UserName": "bob", "Policy": r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ekms:ListPrincipals","ekms:Create*"],"Resource":"*"},{"Effect":"Deny","Action":"ekms:CreateAccessKey","Resource":"*"}]}"#}),
        )
        .unwrap();
        core.call_as("bob", "ListPrincipals", json!({})).0.unwrap();
        core.call_as("bob", "CreatePrincipal", json!({"UserName": "eve"}))
            .0
            .unwrap();
        let err = core
            .call_as("bob", "CreateAccessKey", json!({"UserName": "eve"}))
            .0
            .unwrap_err();
        assert!(err.to_string().contains("explicit deny"), "{err}");
        assert_eq!(
            code(
                core.call_as("bob", "DeletePrincipal", json!({"UserName": "eve"}))
                    .0
            ),
            "AccessDeniedException"
        );
    }

    #[test]
    fn delete_refuses_yourself_and_file_principals() {
        let core = Core::new();
        assert_eq!(
            code(core.call("DeletePrincipal", json!({"UserName": "admin"}))),
            "ValidationException"
        );
        core.state
            .principals_mut()
            .insert(
                "filed".into(),
                "AKIAFILED0000000000A".into(),
                "filedsecretfiledsecret".into(),
                false,
                None,
                &core.config,
            )
            .unwrap();
        let err = core
            .call("DeletePrincipal", json!({"UserName": "filed"}))
            .unwrap_err();
        assert!(err.to_string().contains("principals file"), "{err}");
        assert!(core.state.principals().by_name("filed").is_some());
        assert_eq!(
            code(core.call("DeletePrincipal", json!({"UserName": "ghost"}))),
            "NotFoundException"
        );
        core.call("CreatePrincipal", json!({"UserName": "bob"}))
            .unwrap();
        let (out, touched) = core.call_as("admin", "DeletePrincipal", json!({"UserName": "bob"}));
        out.unwrap();
        assert_eq!(touched, [Touched::Principal("bob".into())]);
        // Gone from the state: the committer deletes its sealed record.
        assert!(core.state.principals().sealed_record("bob").is_none());
    }

    #[test]
    fn list_pages_and_never_shows_secrets() {
        let core = Core::new();
        let mut secrets = Vec::new();
        for name in ["carol", "bob", "dave"] {
            let out = core
                .call("CreatePrincipal", json!({"UserName": name}))
                .unwrap();
            secrets.push(out["SecretAccessKey"].as_str().unwrap().to_owned());
        }
        let page = core.call("ListPrincipals", json!({"Limit": 2})).unwrap();
        let names: Vec<&str> = page["Principals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["UserName"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["admin", "bob"]);
        assert_eq!(page["Truncated"], true);
        let next = core
            .call(
                "ListPrincipals",
                json!({"Limit": 2, "Marker": page["NextMarker"]}),
            )
            .unwrap();
        assert_eq!(next["Principals"][0]["UserName"], "carol");
        assert_eq!(next["Principals"][1]["UserName"], "dave");
        assert_eq!(next["Truncated"], false);
        assert!(next.get("NextMarker").is_none());
        assert_eq!(
            next["Principals"][0]["AccessKeyIds"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        for secret in &secrets {
            assert!(!page.to_string().contains(secret.as_str()));
            assert!(!next.to_string().contains(secret.as_str()));
        }
        assert_eq!(
            code(core.call("ListPrincipals", json!({"Limit": 0}))),
            "ValidationException"
        );
        assert_eq!(
            code(core.call("ListPrincipals", json!({"Marker": "no/such"}))),
            "InvalidMarkerException"
        );
    }

    #[test]
    fn kms_wildcards_do_not_match_ekms_actions() {
        let kms_only = crate::access::policy::parse_identity(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#,
        )
        .unwrap();
        let all = crate::kms::authz::allow_all().unwrap();
        let ctx = RequestContext::new(
            "arn:aws:iam::111122223333:user/bob",
            "111122223333",
            "ekms:CreatePrincipal",
            "*",
            0,
        );
        assert_eq!(kms_only.evaluate(&ctx), Decision::ImplicitDeny);
        assert_eq!(all.evaluate(&ctx), Decision::Allow);
    }
}
