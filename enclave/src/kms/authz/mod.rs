//! Authorization: every use of a key, an alias, a principal or the account is checked against
//! the key policy, the caller's identity policy and the key's grants, inside the enclave, on
//! exactly the resource the operation then uses, under the same lock.
//!
//! The rules are AWS KMS's: an explicit deny (key or identity policy) wins; otherwise a request
//! on a key is allowed when the key policy allows the caller directly, or when the key policy
//! delegates to the account (a statement naming `arn:aws:iam::<account>:root`) and the caller's
//! identity policy allows it, or when a grant on the key allows the operation for the caller
//! under its constraints. Aliases, principals and the account itself (`*`) have no resource
//! policy: the identity policy alone decides.
//!
//! Fail closed by construction, not by convention:
//! - An operation is given a [`Ctx`], which does not expose the state. The only way to a key is
//!   [`Ctx::keys`] / [`Ctx::keys_mut`], a lock guard ([`Keys`]) whose accessors resolve *and*
//!   authorize in one step, returning an [`Authorized`] proof (or the key itself) that only
//!   this module constructs; the store's changes take that proof. A proof is bound to the lock
//!   guard it was made under, so it cannot be carried across a lock release.
//! - The operation table ([`crate::kms::dispatch`]) declares each operation's IAM actions; a guard
//!   refuses to authorize any other (a bug, answered as an internal error), and an operation
//!   that returns success without having authorized anything is turned into an internal error.

mod keys;
mod principals;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::Arc;

pub use keys::Keys;
pub use principals::{AuthorizedPrincipal, PrincipalAccess, Refused};

use crate::config::Config;
use crate::env::Env;
use crate::error::{KmsError, KmsResult};
use crate::keys::Key;
use crate::kms::state::{Caller, State};
use crate::access::policy::{self, Decision, Policy, RequestContext};

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

impl<'a> Conditions<'a> {
    /// Only an encryption context.
    pub fn context(encryption_context: &'a BTreeMap<String, String>) -> Self {
        Conditions {
            encryption_context: Some(encryption_context),
            ..Conditions::default()
        }
    }

    /// These conditions with a verified Recipient's measurements added.
    #[must_use]
    pub fn with_recipient(mut self, recipient: Option<&'a crate::keys::recipient::Recipient>) -> Self {
        if let Some(r) = recipient {
            self.recipient_pcrs = Some(r.pcrs());
            self.recipient_image_sha384 = r.image_sha384();
        }
        self
    }
}

/// Where an operation's effects go, given by the shell: the records each write guard changed,
/// before its lock is released (the durable store's queue, so that no request that sees a change
/// is answered before the change is durable), and the key the answer names (for the audit
/// record). The core writes its effects here and nowhere else.
pub trait Effects {
    /// Queues `touched`, changed under a write lock the caller still holds.
    ///
    /// # Errors
    /// `KMSInternalException` once the store failed.
    fn changed(&self, touched: Vec<crate::kms::state::Touched>) -> KmsResult<()>;

    /// Notes the key ARN a successful answer names as its `KeyId` (operations whose answers
    /// are large: ciphertexts, plaintexts, signatures), so that the audit record need not parse
    /// the answer back to find it.
    fn answer_key(&self, arn: &str);
}

/// Effects kept for the caller to read once the operation is done (memory-only mode, tests).
#[derive(Debug, Default)]
pub struct Kept {
    touched: RefCell<Vec<crate::kms::state::Touched>>,
    answer_key: RefCell<Option<String>>,
}

impl Kept {
    /// The records changed, taken.
    pub fn take_touched(&self) -> Vec<crate::kms::state::Touched> {
        self.touched.take()
    }

    /// The key the answer named, taken.
    pub fn take_answer_key(&self) -> Option<String> {
        self.answer_key.take()
    }
}

impl Effects for Kept {
    fn changed(&self, touched: Vec<crate::kms::state::Touched>) -> KmsResult<()> {
        self.touched.borrow_mut().extend(touched);
        Ok(())
    }

    fn answer_key(&self, arn: &str) {
        *self.answer_key.borrow_mut() = Some(arn.to_owned());
    }
}

/// What every operation is given: who asks, the environment, and guarded access to the state.
pub struct Ctx<'a> {
    /// Takes the changes of every write guard as it is released, and the answer's key.
    effects: &'a dyn Effects,
    /// A change could not be queued: the request fails.
    effects_failed: Cell<bool>,
    /// Never reached by an operation directly: only through the guards below.
    state: &'a State,
    /// Region, account and bounds.
    pub config: &'a Config,
    /// Clock and randomness.
    pub env: &'a Env,
    /// Who is asking.
    pub caller: &'a Caller,
    /// The IAM actions the running operation's table row declares (none until dispatch sets
    /// them: nothing is authorized outside an operation).
    actions: Cell<&'static [&'static str]>,
    /// The running KMS operation's name (`Encrypt`), for the messages that name it.
    operation: Cell<&'static str>,
    /// How many authorization decisions allowed something for this request.
    allowed: Cell<u32>,
    /// Whether the account-level action of the operation (`*`) was allowed.
    account_allowed: Cell<bool>,
}

impl<'a> Ctx<'a> {
    /// A context for one request of `caller`, its effects going to `effects`.
    pub fn new(
        state: &'a State,
        config: &'a Config,
        env: &'a Env,
        caller: &'a Caller,
        effects: &'a dyn Effects,
    ) -> Self {
        Ctx {
            effects,
            effects_failed: Cell::new(false),
            state,
            config,
            env,
            caller,
            actions: Cell::new(&[]),
            operation: Cell::new(""),
            allowed: Cell::new(0),
            account_allowed: Cell::new(false),
        }
    }

    /// Names the running KMS operation (set by dispatch with [`Ctx::begin`]).
    pub(crate) fn set_operation(&self, name: &'static str) {
        self.operation.set(name);
    }

    /// The running KMS operation's name, as AWS names it in messages (`key usage is
    /// SIGN_VERIFY which is not valid for Encrypt.`).
    pub fn operation(&self) -> &'static str {
        self.operation.get()
    }

    /// Starts an operation whose table row declares `actions`.
    pub(crate) fn begin(&self, actions: &'static [&'static str]) {
        self.actions.set(actions);
        self.allowed.set(0);
        self.account_allowed.set(false);
    }

    /// How many authorization decisions allowed something since [`Ctx::begin`].
    pub(crate) fn allowed(&self) -> u32 {
        self.allowed.get()
    }

    /// Whether a change could not be queued (the answer must then be an error).
    pub fn effects_failed(&self) -> bool {
        self.effects_failed.get()
    }

    /// Takes the changes of a write guard being released (its lock still held).
    fn flush(&self, touched: Vec<crate::kms::state::Touched>) {
        if touched.is_empty() {
            return;
        }
        if let Err(e) = self.effects.changed(touched) {
            tracing::error!(error = %e, "a change could not be queued");
            self.effects_failed.set(true);
        }
    }

    /// Notes `arn` as the answer's `KeyId` and returns it, for the answer.
    pub fn answer_key(&self, arn: String) -> String {
        self.effects.answer_key(&arn);
        arn
    }

    /// Shared, guarded access to the keys and aliases.
    pub fn keys(&self) -> Keys<'_, std::sync::RwLockReadGuard<'_, crate::keys::KeyStore>> {
        Keys::new(self, self.state.read())
    }

    /// Exclusive, guarded access to the keys and aliases.
    pub fn keys_mut(&self) -> Keys<'_, std::sync::RwLockWriteGuard<'_, crate::keys::KeyStore>> {
        Keys::new(self, self.state.write())
    }

    /// Shared, guarded access to the principals.
    pub fn principals(
        &self,
    ) -> PrincipalAccess<'_, std::sync::RwLockReadGuard<'_, crate::access::principals::Principals>> {
        PrincipalAccess::new(self, self.state.principals())
    }

    /// Exclusive, guarded access to the principals.
    pub fn principals_mut(
        &self,
    ) -> PrincipalAccess<'_, std::sync::RwLockWriteGuard<'_, crate::access::principals::Principals>> {
        PrincipalAccess::new(self, self.state.principals_mut())
    }

    /// Outstanding import tokens (each bound to a key: ImportKeyMaterial authorizes that key).
    pub fn imports(&self) -> &crate::keys::import::Imports {
        self.state.imports()
    }

    /// Refuses an action the operation's table row does not declare (a bug: fail closed).
    fn declared(&self, action: &str) -> KmsResult<()> {
        if self.actions.get().contains(&action) {
            Ok(())
        } else {
            tracing::error!(
                action,
                "an operation asked for an action its row does not declare"
            );
            Err(KmsError::Internal("undeclared action"))
        }
    }

    fn note_allowed(&self) {
        self.allowed.set(self.allowed.get().saturating_add(1));
    }

    /// Authorizes `action` (an operation's own, on `*`) by the identity policy alone; the
    /// guards' whole-store views ([`Keys::listing`], [`Keys::insert`]) need it first.
    ///
    /// # Errors
    /// `AccessDeniedException`.
    pub fn authorize_account(&self, action: &'static str) -> KmsResult<()> {
        self.declared(action)?;
        self.check_identity(&format!("kms:{action}"), "*")?;
        self.account_allowed.set(true);
        self.note_allowed();
        Ok(())
    }

    /// Authorizes `ekms:<action>` on `*`, then replaces the deployment's TLS CA with what
    /// `rotate` makes of the current one, under the principals' lock (one rotation at a time),
    /// and queues the sealed CA like any change.
    ///
    /// # Errors
    /// `AccessDeniedException`; `KMSInvalidStateException` with no CA (memory-only mode);
    /// what `rotate` answers.
    pub fn rotate_tls_ca(
        &self,
        action: &'static str,
        rotate: impl FnOnce(&crate::keys::tls::DeploymentCa) -> KmsResult<crate::keys::tls::DeploymentCa>,
    ) -> KmsResult<Arc<crate::keys::tls::DeploymentCa>> {
        self.declared(action)?;
        self.check_identity(&format!("ekms:{action}"), "*")?;
        self.note_allowed();
        let mut guard = self.principals_mut();
        let current = self.state.tls_ca().ok_or_else(|| {
            KmsError::InvalidState("ekms has no deployment TLS CA (memory-only mode).".to_owned())
        })?;
        let next = rotate(&current)?;
        self.state.set_tls_ca(next);
        guard.touch(crate::kms::state::Touched::TlsCa);
        self.state
            .tls_ca()
            .ok_or(KmsError::Internal("the TLS CA vanished under the lock"))
    }

    /// Authorizes `ekms:<action>` on `*`, then makes a fresh key for an operator-issued TLS
    /// certificate (keeping what is installed); the CSR (PEM) and the key's
    /// SubjectPublicKeyInfo.
    ///
    /// # Errors
    /// `AccessDeniedException`; `KMSInternalException` if generation fails.
    pub fn tls_request(&self, action: &'static str) -> KmsResult<(String, Vec<u8>)> {
        self.declared(action)?;
        self.check_identity(&format!("ekms:{action}"), "*")?;
        self.note_allowed();
        let mut guard = self.principals_mut();
        let current = self.state.tls_operator();
        let (next, csr, spki) =
            crate::keys::tls::OperatorCert::new_request(current.as_deref(), &self.config.tls_names)
                .map_err(|e| {
                    tracing::error!(error = %e, "making a TLS certificate request failed");
                    KmsError::Internal("making the certificate request failed")
                })?;
        self.state.set_tls_operator(next);
        guard.touch(crate::kms::state::Touched::TlsOperator);
        Ok((csr, spki))
    }

    /// Authorizes `ekms:<action>` on `*`, then installs `chain_pem` for the waiting request.
    ///
    /// # Errors
    /// `AccessDeniedException`; `ValidationException` for a chain that is not for the waiting
    /// key or does not verify.
    pub fn tls_install(&self, action: &'static str, chain_pem: &str) -> KmsResult<()> {
        self.declared(action)?;
        self.check_identity(&format!("ekms:{action}"), "*")?;
        self.note_allowed();
        let mut guard = self.principals_mut();
        let current = self.state.tls_operator().ok_or_else(|| {
            KmsError::Validation(
                "No certificate request is waiting: run `ekms tls csr` first.".to_owned(),
            )
        })?;
        let name = self
            .config
            .tls_names
            .first()
            .map_or("localhost", String::as_str);
        let next = current
            .install(chain_pem, name)
            .map_err(|e| KmsError::Validation(e.to_string()))?;
        self.state.set_tls_operator(next);
        guard.touch(crate::kms::state::Touched::TlsOperator);
        Ok(())
    }

    fn account_allowed(&self) -> KmsResult<()> {
        if self.account_allowed.get() {
            Ok(())
        } else {
            Err(KmsError::Internal("account view without authorization"))
        }
    }

    fn denied(&self, action: &str, resource: &str, why: &str) -> KmsError {
        KmsError::AccessDenied(format!(
            "User: {} is not authorized to perform: {action} on resource: {resource} {why}",
            self.caller.arn
        ))
    }

    /// Whether the caller's identity policy allows `action` (`kms:..`, `ekms:..`) on
    /// `resource`; resources without a policy of their own (`*`, aliases, principals).
    fn check_identity(&self, action: &str, resource: &str) -> KmsResult<()> {
        let request = RequestContext::new(
            &self.caller.arn,
            &self.config.account,
            action,
            resource,
            self.env.now(),
        );
        match self
            .caller
            .identity_policy
            .as_deref()
            .map(|p| p.evaluate(&request))
        {
            Some(Decision::Allow) => Ok(()),
            Some(Decision::ExplicitDeny) => Err(self.denied(
                action,
                resource,
                "with an explicit deny in an identity-based policy",
            )),
            _ => Err(self.denied(
                action,
                resource,
                "because no identity-based policy allows the action",
            )),
        }
    }

    /// The key policy of `key`, parsed (the default policy when it has none).
    fn key_policy(&self, key: &Key) -> KmsResult<Arc<Policy>> {
        match &key.policy {
            Some(text) => policy::parse(text, &self.config.account)
                .map(Arc::new)
                .map_err(|e| {
                    tracing::error!(key = %key.id, error = %e, "stored key policy does not parse");
                    KmsError::Internal("stored key policy does not parse")
                }),
            None => self.state.default_policy(&self.config.account),
        }
    }

    /// Whether the key policy and the caller's identity policy (no grants) allow `kms:<op>` on
    /// `key`: `Ok(true)` allowed, `Ok(false)` not allowed (implicit deny).
    fn policies_allow(&self, op: &str, key: &Key, conditions: &Conditions<'_>) -> KmsResult<bool> {
        let action = format!("kms:{op}");
        let resource = self.config.key_arn(&key.id);
        let mut request = RequestContext::new(
            &self.caller.arn,
            &self.config.account,
            &action,
            &resource,
            self.env.now(),
        );
        request.encryption_context = conditions.encryption_context;
        request.encryption_algorithm = conditions.encryption_algorithm;
        request.grant_operations = conditions.grant_operations;
        request.recipient_pcrs = conditions.recipient_pcrs;
        request.recipient_image_sha384 = conditions.recipient_image_sha384;
        let key_policy = self.key_policy(key)?;
        match policy::authorize(
            &key_policy,
            self.caller.identity_policy.as_deref(),
            &request,
        ) {
            Decision::Allow => Ok(true),
            Decision::ExplicitDeny => {
                Err(self.denied(&action, &resource, "with an explicit deny in a policy"))
            }
            Decision::ImplicitDeny => Ok(false),
        }
    }

    /// The `AccessDeniedException` for `kms:<op>` on `key` when nothing allows it.
    fn not_allowed(&self, op: &str, key: &Key) -> KmsError {
        self.denied(
            &format!("kms:{op}"),
            &self.config.key_arn(&key.id),
            "because no resource-based policy allows the action",
        )
    }

    /// Whether the caller may perform `kms:<op>` on `key`: policies, then grants.
    fn check_key(&self, op: &str, key: &Key, conditions: &Conditions<'_>) -> KmsResult<()> {
        if self.policies_allow(op, key, conditions)? {
            return Ok(());
        }
        let key_id = key.id.to_string();
        if key.grants.for_grantee(&self.caller.arn).any(|g| {
            policy::grants::grant_allows(
                g,
                &key_id,
                &self.caller.arn,
                op,
                conditions.encryption_context,
            )
        }) {
            return Ok(());
        }
        Err(self.not_allowed(op, key))
    }
}

/// The identity policy that allows everything: for the `dev` principal and the first admin.
///
/// # Errors
/// Only if the built-in text does not parse (a bug caught by tests).
#[cfg(any(test, fuzzing))]
pub fn allow_all() -> KmsResult<Arc<policy::IdentityPolicy>> {
    policy::parse_identity(policy::ALLOW_ALL_IDENTITY_POLICY)
        .map(Arc::new)
        .map_err(|_| KmsError::Internal("built-in identity policy"))
}
