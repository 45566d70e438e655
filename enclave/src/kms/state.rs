//! What the core holds and what a request reports: the in-memory state, the authenticated
//! caller, and the records a request touched (what the committer seals).

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use uuid::Uuid;

use crate::access::principals::Principals;
use crate::error::{KmsError, KmsResult};
use crate::keys::KeyStore;

/// The kinds of record whose ids were once names (see [`Touched::Retired`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Named {
    /// An alias record.
    Alias,
    /// A principal record.
    Principal,
}

/// A record a request changed (or removed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Touched {
    /// A key, by id.
    Key(Uuid),
    /// An alias, by name (sealed under its name's keyed digest, [`NameKey`]).
    Alias(String),
    /// A principal, by name (sealed under its name's keyed digest).
    Principal(String),
    /// A record written when names were record ids, to delete once it is sealed again under
    /// its digest: an alias's or a principal's, and its id.
    Retired(Named, Vec<u8>),
    /// The deployment's TLS CA ([`TLS_CA_ID`], a setting), as the state holds it.
    TlsCa,
    /// The operator-issued TLS certificate ([`TLS_OPERATOR_ID`], a setting).
    TlsOperator,
    /// A grant: its key and its grant id.
    Grant(Uuid, String),
    /// The measurements allowed to join ([`crate::custody::measurements`], a setting).
    Measurements,
}

/// Everything the enclave keeps in memory.
#[derive(Debug, Default)]
pub struct State {
    keys: RwLock<KeyStore>,
    principals: RwLock<Principals>,
    /// Outstanding import tokens (memory only: a restart invalidates them).
    imports: crate::keys::import::Imports,
    default_policy: std::sync::OnceLock<std::sync::Arc<crate::access::policy::Policy>>,
    /// The sealed records the last unseal refused, as shown to an authorized operator.
    refused: RwLock<Vec<String>>,
    /// The deployment's TLS CA, sealed with the rest.
    tls_ca: RwLock<Option<std::sync::Arc<crate::keys::tls::DeploymentCa>>>,
    /// An operator-issued TLS certificate (its key waiting for a chain, or installed).
    tls_operator: RwLock<Option<std::sync::Arc<crate::keys::tls::OperatorCert>>>,
    /// The measurements allowed to join, besides this enclave's own.
    measurements: RwLock<crate::access::measurements::Measurements>,
}

impl State {
    /// A state holding these keys and principals.
    pub fn new(keys: KeyStore, principals: Principals) -> Self {
        State {
            keys: RwLock::new(keys),
            principals: RwLock::new(principals),
            imports: crate::keys::import::Imports::default(),
            default_policy: std::sync::OnceLock::new(),
            refused: RwLock::default(),
            tls_ca: RwLock::default(),
            tls_operator: RwLock::default(),
            measurements: RwLock::default(),
        }
    }

    /// The measurements allowed to join, besides this enclave's own.
    pub fn measurements(&self) -> crate::access::measurements::Measurements {
        self.measurements
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the measurements allowed to join.
    pub fn set_measurements(&self, measurements: crate::access::measurements::Measurements) {
        *self
            .measurements
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = measurements;
    }

    /// The default key policy of this account, parsed once.
    ///
    /// # Errors
    /// Only if the built-in default does not parse (a bug caught by tests).
    pub fn default_policy(
        &self,
        account: &str,
    ) -> KmsResult<std::sync::Arc<crate::access::policy::Policy>> {
        if let Some(p) = self.default_policy.get() {
            return Ok(p.clone());
        }
        let parsed =
            crate::access::policy::parse(&crate::access::policy::Policy::default_key_policy(account), account)
                .map_err(|_| KmsError::Internal("default key policy"))?;
        Ok(self
            .default_policy
            .get_or_init(|| std::sync::Arc::new(parsed))
            .clone())
    }
    /// The deployment's TLS CA, once init made it or unseal loaded it.
    pub fn tls_ca(&self) -> Option<std::sync::Arc<crate::keys::tls::DeploymentCa>> {
        self.tls_ca
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sets the deployment's TLS CA.
    pub fn set_tls_ca(&self, ca: crate::keys::tls::DeploymentCa) {
        *self
            .tls_ca
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(std::sync::Arc::new(ca));
    }

    /// The operator-issued TLS certificate, if one was requested.
    pub fn tls_operator(&self) -> Option<std::sync::Arc<crate::keys::tls::OperatorCert>> {
        self.tls_operator
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sets the operator-issued TLS certificate.
    pub fn set_tls_operator(&self, cert: crate::keys::tls::OperatorCert) {
        *self
            .tls_operator
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(std::sync::Arc::new(cert));
    }

    /// Notes the sealed records the last unseal refused.
    pub fn set_refused(&self, refused: Vec<String>) {
        *self
            .refused
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = refused;
    }

    /// The sealed records the last unseal refused.
    pub fn refused(&self) -> Vec<String> {
        self.refused
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Outstanding import tokens and their wrapping keys.
    pub fn imports(&self) -> &crate::keys::import::Imports {
        &self.imports
    }
    /// Shared access to the principals.
    pub fn principals(&self) -> RwLockReadGuard<'_, Principals> {
        self.principals
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    /// Exclusive access to the principals.
    pub fn principals_mut(&self) -> RwLockWriteGuard<'_, Principals> {
        self.principals
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    /// Replaces keys and principals (after an unseal loaded them).
    pub fn replace(&self, keys: KeyStore, principals: Principals) {
        *self.write() = keys;
        *self.principals_mut() = principals;
    }
    /// Whether the key store is locked for writing (tests: changes are queued under the lock).
    #[cfg(test)]
    pub fn keys_write_locked(&self) -> bool {
        matches!(
            self.keys.try_read(),
            Err(std::sync::TryLockError::WouldBlock)
        )
    }

    /// Shared access to the key store.
    pub fn read(&self) -> RwLockReadGuard<'_, KeyStore> {
        // A panic while holding the lock cannot leave the store half-changed: every operation
        // validates before it mutates. So a poisoned lock is still consistent.
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    /// Exclusive access to the key store.
    pub fn write(&self) -> RwLockWriteGuard<'_, KeyStore> {
        self.keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `arn:aws:iam::<account>:user/<name>`.
    pub arn: String,
    /// The access key the request was signed with.
    pub access_key_id: String,
    /// The caller's identity policy, if it has one.
    pub identity_policy: Option<std::sync::Arc<crate::access::policy::IdentityPolicy>>,
}

