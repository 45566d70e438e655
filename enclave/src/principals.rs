//! Principals and their access keys, held in the enclave.
//!
//! In mock mode they come from a JSON file given at start:
//! `{"principals": [{"name": "dev", "access_key_id": "AKIA...", "secret_access_key": "..."}]}`.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::config::Config;
use crate::policy::IdentityPolicy;
use crate::sigv4::{SecretAccessKey, SecretLookup};

/// One principal (an IAM-style user) with one access key.
pub struct Principal {
    /// The user name.
    pub name: String,
    /// `arn:aws:iam::<account>:user/<name>`.
    pub arn: String,
    access_key_id: String,
    secret: SecretAccessKey,
    /// Whether it lives in the sealed store (rather than a mock-mode principals file).
    sealed: bool,
    /// Identity policy document and its parsed form.
    policy: Option<(String, Arc<IdentityPolicy>)>,
}

impl Principal {
    /// The parsed identity policy, if any.
    pub fn identity_policy(&self) -> Option<Arc<IdentityPolicy>> {
        self.policy.as_ref().map(|(_, p)| p.clone())
    }
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal")
            .field("arn", &self.arn)
            .finish_non_exhaustive()
    }
}

/// Principals by access key id.
#[derive(Debug, Default)]
pub struct Principals {
    by_access_key: HashMap<String, Principal>,
    by_name: HashMap<String, String>,
}

/// A principals file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PrincipalsError {
    /// Not the expected JSON.
    #[error("principals file is not valid JSON of the expected shape: {0}")]
    Format(#[source] serde_json::Error),
    /// A name or access key id breaks the rules.
    #[error("invalid principal entry {index}: {reason}")]
    Invalid {
        /// Position in the file.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

#[derive(Deserialize)]
struct File {
    principals: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    name: String,
    access_key_id: String,
    secret_access_key: String,
    /// Identity policy (JSON); absent means allow everything (development principals).
    policy: Option<serde_json::Value>,
}

impl Principals {
    /// Parses a principals file.
    ///
    /// # Errors
    /// [`PrincipalsError`] for malformed JSON, bad names (IAM's `[\w+=,.@-]{1,64}`), access key
    /// ids outside 16–128 alphanumerics, secrets shorter than 16 characters, or duplicates.
    pub fn from_json(bytes: &[u8], config: &Config) -> Result<Self, PrincipalsError> {
        let file: File = serde_json::from_slice(bytes).map_err(PrincipalsError::Format)?;
        let mut principals = Principals::default();
        for (index, e) in file.principals.into_iter().enumerate() {
            let policy = match e.policy {
                Some(p) => p.to_string(),
                None => crate::policy::ALLOW_ALL_IDENTITY_POLICY.to_owned(),
            };
            principals
                .insert(
                    e.name,
                    e.access_key_id,
                    e.secret_access_key,
                    false,
                    Some(policy),
                    config,
                )
                .map_err(|reason| PrincipalsError::Invalid { index, reason })?;
        }
        Ok(principals)
    }

    /// Adds a principal with one access key.
    ///
    /// # Errors
    /// Why the entry is invalid: a name outside IAM's `[\w+=,.@-]{1,64}`, an access key id
    /// outside 16–128 alphanumerics, a secret shorter than 16 characters, or a duplicate.
    pub fn insert(
        &mut self,
        name: String,
        access_key_id: String,
        secret: String,
        sealed: bool,
        policy: Option<String>,
        config: &Config,
    ) -> Result<(), &'static str> {
        let policy = match policy {
            Some(text) => {
                let parsed = crate::policy::parse_identity(&text)
                    .map_err(|_| "identity policy is malformed")?;
                Some((text, Arc::new(parsed)))
            }
            None => None,
        };
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
        {
            return Err("name must match [A-Za-z0-9+=,.@_-]{1,64}");
        }
        if !(16..=128).contains(&access_key_id.len())
            || !access_key_id.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err("access_key_id must be 16-128 alphanumerics");
        }
        if secret.len() < 16 {
            return Err("secret_access_key must be at least 16 characters");
        }
        if self.by_access_key.contains_key(&access_key_id) || self.by_name.contains_key(&name) {
            return Err("duplicate principal name or access_key_id");
        }
        self.by_name.insert(name.clone(), access_key_id.clone());
        self.by_access_key.insert(
            access_key_id.clone(),
            Principal {
                arn: config.user_arn(&name),
                name,
                access_key_id,
                secret: SecretAccessKey::new(secret),
                sealed,
                policy,
            },
        );
        Ok(())
    }

    /// Access key id, secret and identity policy of a sealed principal.
    pub fn sealed(&self, name: &str) -> Option<(&str, &str, Option<&str>)> {
        let p = self.by_access_key.get(self.by_name.get(name)?)?;
        p.sealed.then(|| {
            (
                p.access_key_id.as_str(),
                p.secret.expose_secret(),
                p.policy.as_ref().map(|(t, _)| t.as_str()),
            )
        })
    }

    /// Number of principals.
    pub fn len(&self) -> usize {
        self.by_access_key.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_access_key.is_empty()
    }

    /// The principal owning an access key.
    pub fn by_access_key(&self, access_key_id: &str) -> Option<&Principal> {
        self.by_access_key.get(access_key_id)
    }
}

impl SecretLookup for Principals {
    fn secret_access_key(&self, access_key_id: &str) -> Option<&SecretAccessKey> {
        self.by_access_key.get(access_key_id).map(|p| &p.secret)
    }
}
