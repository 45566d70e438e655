//! Principals and their access keys, held in the enclave.
//!
//! In mock mode they come from a JSON file given at start:
//! `{"principals": [{"name": "dev", "access_key_id": "AKIA...", "secret_access_key": "..."}]}`.

use std::collections::HashMap;

use serde::Deserialize;

use crate::config::Config;
use crate::sigv4::{SecretAccessKey, SecretLookup};

/// One principal (an IAM-style user) with one access key.
pub struct Principal {
    /// The user name.
    pub name: String,
    /// `arn:aws:iam::<account>:user/<name>`.
    pub arn: String,
    secret: SecretAccessKey,
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
}

impl Principals {
    /// Parses a principals file.
    ///
    /// # Errors
    /// [`PrincipalsError`] for malformed JSON, bad names (IAM's `[\w+=,.@-]{1,64}`), access key
    /// ids outside 16–128 alphanumerics, secrets shorter than 16 characters, or duplicates.
    pub fn from_json(bytes: &[u8], config: &Config) -> Result<Self, PrincipalsError> {
        let file: File = serde_json::from_slice(bytes).map_err(PrincipalsError::Format)?;
        let mut by_access_key = HashMap::new();
        for (index, e) in file.principals.into_iter().enumerate() {
            let invalid = |reason| PrincipalsError::Invalid { index, reason };
            if e.name.is_empty()
                || e.name.len() > 64
                || !e
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
            {
                return Err(invalid("name must match [A-Za-z0-9+=,.@_-]{1,64}"));
            }
            if !(16..=128).contains(&e.access_key_id.len())
                || !e.access_key_id.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err(invalid("access_key_id must be 16-128 alphanumerics"));
            }
            if e.secret_access_key.len() < 16 {
                return Err(invalid("secret_access_key must be at least 16 characters"));
            }
            let principal = Principal {
                arn: config.user_arn(&e.name),
                name: e.name,
                secret: SecretAccessKey::new(e.secret_access_key),
            };
            if by_access_key.insert(e.access_key_id, principal).is_some() {
                return Err(invalid("duplicate access_key_id"));
            }
        }
        Ok(Principals { by_access_key })
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
