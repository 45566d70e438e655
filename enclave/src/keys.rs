//! The in-memory key store: keys, their versions of key material, and aliases.
//!
//! Key material exists only here, inside the enclave, wrapped in [`KeyMaterial`].
//! Lookups by key id are O(1); listing walks an ordered index from a marker.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;
use zeroize::Zeroizing;

use crate::config::Config;
use crate::env::Millis;
use crate::error::{KmsError, KmsResult};

/// 256 bits of symmetric key material. No `Debug` output, no `Clone`, zeroed on drop.
pub struct KeyMaterial(Zeroizing<[u8; 32]>);

impl KeyMaterial {
    /// Wraps freshly generated (or imported) bytes.
    pub fn new(bytes: Zeroizing<[u8; 32]>) -> Self {
        KeyMaterial(bytes)
    }
    /// The raw bytes, for the cipher. Grep for `expose_secret` to find every use.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyMaterial(..)")
    }
}

/// AWS key states this service can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Usable.
    Enabled,
    /// Kept, but refuses cryptographic operations.
    Disabled,
    /// Scheduled for destruction at `Key::deletion_date`.
    PendingDeletion,
}

impl KeyState {
    /// The AWS spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
        }
    }
}

/// A tag on a key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    /// 1–128 characters, not starting with `aws:`.
    pub tag_key: String,
    /// 0–256 characters.
    pub tag_value: String,
}

/// A KMS key.
#[derive(Debug)]
pub struct Key {
    /// The key id.
    pub id: Uuid,
    /// Creation time.
    pub created: Millis,
    /// Free text, 0–8192 characters.
    pub description: String,
    /// Current state.
    pub state: KeyState,
    /// When a key pending deletion is destroyed.
    pub deletion_date: Option<Millis>,
    /// Tags, in insertion order, unique keys.
    pub tags: Vec<Tag>,
    /// Every version of the key material, oldest first; the last one encrypts.
    pub versions: Vec<KeyMaterial>,
}

impl Key {
    /// Whether the key is gone as of `now` (its deletion date has passed).
    pub fn is_destroyed(&self, now: Millis) -> bool {
        self.state == KeyState::PendingDeletion && self.deletion_date.is_some_and(|d| d <= now)
    }

    /// Checks that the key may be used for a cryptographic operation.
    ///
    /// # Errors
    /// `DisabledException` or `KMSInvalidStateException`, as AWS answers.
    pub fn check_usable(&self, config: &Config) -> KmsResult<()> {
        match self.state {
            KeyState::Enabled => Ok(()),
            KeyState::Disabled => Err(KmsError::Disabled(format!(
                "{} is disabled.",
                config.key_arn(&self.id)
            ))),
            KeyState::PendingDeletion => Err(KmsError::InvalidState(format!(
                "{} is pending deletion.",
                config.key_arn(&self.id)
            ))),
        }
    }

    /// The version that encrypts now, with its index.
    pub fn current_version(&self) -> KmsResult<(u32, &KeyMaterial)> {
        let index = self
            .versions
            .len()
            .checked_sub(1)
            .ok_or(KmsError::Internal("key without material"))?;
        let material = self
            .versions
            .get(index)
            .ok_or(KmsError::Internal("key without material"))?;
        let index = u32::try_from(index).map_err(|_| KmsError::Internal("too many versions"))?;
        Ok((index, material))
    }
}

/// An alias: a friendly name for a key.
#[derive(Debug, Clone)]
pub struct Alias {
    /// The key it points to.
    pub target: Uuid,
    /// Creation time.
    pub created: Millis,
    /// Last time it was pointed somewhere.
    pub updated: Millis,
}

/// What a `KeyId` field names once parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// A key id or key ARN.
    Key(Uuid),
    /// An alias name (`alias/...`) or alias ARN, as the alias name.
    Alias(String),
}

/// Largest `KeyId` AWS accepts.
pub const MAX_KEY_ID_LEN: usize = 2048;

impl KeyRef {
    /// Parses a key id, key ARN, alias name or alias ARN.
    ///
    /// # Errors
    /// `ValidationException` for a bad length; `NotFoundException` for a shape that cannot name
    /// a key of this deployment (as AWS answers for an unknown ARN or malformed id).
    pub fn parse(field: &str, value: &str, config: &Config) -> KmsResult<KeyRef> {
        if value.is_empty() || value.len() > MAX_KEY_ID_LEN {
            return Err(KmsError::Validation(format!(
                "1 validation error detected: Value at '{field}' failed to satisfy constraint: Member must have length between 1 and {MAX_KEY_ID_LEN}"
            )));
        }
        let local = if let Some(rest) = value.strip_prefix("arn:") {
            let prefix = config.kms_arn_prefix();
            match value.strip_prefix(prefix.as_str()) {
                Some(resource) => resource,
                None => {
                    let _ = rest;
                    return Err(KmsError::NotFound(format!("Invalid arn {value}")));
                }
            }
        } else {
            value
        };
        if let Some(id) = local.strip_prefix("key/") {
            if value.starts_with("arn:") {
                return Uuid::try_parse(id)
                    .map(KeyRef::Key)
                    .map_err(|_| KmsError::NotFound(format!("Invalid keyId {value}")));
            }
        }
        if local.starts_with("alias/") {
            return Ok(KeyRef::Alias(local.to_owned()));
        }
        if value.starts_with("arn:") {
            return Err(KmsError::NotFound(format!("Invalid arn {value}")));
        }
        // A bare key id must be the hyphenated form of a UUID.
        if local.len() == 36 {
            if let Ok(id) = Uuid::try_parse(local) {
                return Ok(KeyRef::Key(id));
            }
        }
        Err(KmsError::NotFound(format!("Invalid keyId {value}")))
    }
}

/// Every key and alias the enclave holds.
#[derive(Debug, Default)]
pub struct KeyStore {
    keys: HashMap<Uuid, Key>,
    /// Key ids in order, for ListKeys pagination.
    order: BTreeSet<Uuid>,
    /// Alias name → alias, ordered for ListAliases pagination.
    aliases: BTreeMap<String, Alias>,
    /// Keys pending deletion, by deletion date, so the sweep touches only what is due.
    pending: BTreeSet<(Millis, Uuid)>,
}

impl KeyStore {
    /// Number of keys held (any state, including destroyed ones not yet swept).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Adds a new key.
    ///
    /// # Errors
    /// `LimitExceededException` at the configured bound.
    pub fn insert(&mut self, key: Key, config: &Config) -> KmsResult<()> {
        if self.keys.len() >= config.max_keys {
            return Err(KmsError::LimitExceeded(format!(
                "This service holds at most {} keys.",
                config.max_keys
            )));
        }
        self.order.insert(key.id);
        if let (KeyState::PendingDeletion, Some(date)) = (key.state, key.deletion_date) {
            self.pending.insert((date, key.id));
        }
        self.keys.insert(key.id, key);
        Ok(())
    }

    fn not_found(reference: &KeyRef, config: &Config) -> KmsError {
        match reference {
            KeyRef::Key(id) => {
                KmsError::NotFound(format!("Key '{}' does not exist", config.key_arn(id)))
            }
            KeyRef::Alias(name) => {
                KmsError::NotFound(format!("Alias {} is not found.", config.alias_arn(name)))
            }
        }
    }

    fn resolve_id(&self, reference: &KeyRef, config: &Config, now: Millis) -> KmsResult<Uuid> {
        let id = match reference {
            KeyRef::Key(id) => *id,
            KeyRef::Alias(name) => match self.aliases.get(name) {
                Some(alias) => alias.target,
                None => return Err(Self::not_found(reference, config)),
            },
        };
        match self.keys.get(&id) {
            Some(key) if !key.is_destroyed(now) => Ok(id),
            _ => Err(Self::not_found(reference, config)),
        }
    }

    /// Finds the key a `KeyId` field names.
    ///
    /// # Errors
    /// As [`KeyRef::parse`], and `NotFoundException` when no live key matches.
    pub fn resolve(
        &self,
        field: &str,
        key_id: &str,
        config: &Config,
        now: Millis,
    ) -> KmsResult<&Key> {
        let reference = KeyRef::parse(field, key_id, config)?;
        let id = self.resolve_id(&reference, config, now)?;
        self.keys
            .get(&id)
            .ok_or_else(|| Self::not_found(&reference, config))
    }

    /// As [`KeyStore::resolve`], for changing the key.
    ///
    /// # Errors
    /// As [`KeyStore::resolve`].
    pub fn resolve_mut(
        &mut self,
        field: &str,
        key_id: &str,
        config: &Config,
        now: Millis,
    ) -> KmsResult<&mut Key> {
        let reference = KeyRef::parse(field, key_id, config)?;
        let id = self.resolve_id(&reference, config, now)?;
        self.keys
            .get_mut(&id)
            .ok_or_else(|| Self::not_found(&reference, config))
    }

    /// The key with this id, even if its deletion date has passed (for sealing its record).
    pub fn raw(&self, id: &Uuid) -> Option<&Key> {
        self.keys.get(id)
    }

    /// The live key with this id, if any (used by Decrypt, which learns the id from the blob).
    pub fn by_id(&self, id: &Uuid, now: Millis) -> Option<&Key> {
        self.keys.get(id).filter(|k| !k.is_destroyed(now))
    }

    /// Up to `limit` live keys starting at `from` (inclusive), and the id after them if any.
    pub fn list(&self, from: Option<Uuid>, limit: usize, now: Millis) -> (Vec<&Key>, Option<Uuid>) {
        let mut out = Vec::with_capacity(limit.min(1000));
        let range = match from {
            Some(start) => self.order.range(start..),
            None => self.order.range(..),
        };
        for id in range {
            let Some(key) = self.keys.get(id) else {
                continue;
            };
            if key.is_destroyed(now) {
                continue;
            }
            if out.len() == limit {
                return (out, Some(*id));
            }
            out.push(key);
        }
        (out, None)
    }

    /// The alias with this name.
    pub fn alias(&self, name: &str) -> Option<&Alias> {
        self.aliases.get(name)
    }

    /// Creates or repoints an alias.
    ///
    /// # Errors
    /// `LimitExceededException` at the configured bound for a new alias.
    pub fn put_alias(&mut self, name: String, alias: Alias, config: &Config) -> KmsResult<()> {
        if !self.aliases.contains_key(&name) && self.aliases.len() >= config.max_aliases {
            return Err(KmsError::LimitExceeded(format!(
                "This service holds at most {} aliases.",
                config.max_aliases
            )));
        }
        self.aliases.insert(name, alias);
        Ok(())
    }

    /// Removes an alias; whether it existed.
    pub fn remove_alias(&mut self, name: &str) -> bool {
        self.aliases.remove(name).is_some()
    }

    /// Aliases in name order from `from` (inclusive), pointing at live keys, optionally only those
    /// of one key; up to `limit`, and the name after them if any.
    pub fn list_aliases(
        &self,
        from: Option<&str>,
        target: Option<Uuid>,
        limit: usize,
        now: Millis,
    ) -> (Vec<(&str, &Alias)>, Option<String>) {
        let mut out = Vec::with_capacity(limit.min(100));
        let range = match from {
            Some(start) => self
                .aliases
                .range::<str, _>((std::ops::Bound::Included(start), std::ops::Bound::Unbounded)),
            None => self.aliases.range::<str, _>(..),
        };
        for (name, alias) in range {
            if target.is_some_and(|t| t != alias.target) {
                continue;
            }
            if self.by_id(&alias.target, now).is_none() {
                continue;
            }
            if out.len() == limit {
                return (out, Some(name.clone()));
            }
            out.push((name.as_str(), alias));
        }
        (out, None)
    }

    /// Schedules the key for destruction at `date`.
    ///
    /// # Errors
    /// `NotFoundException` if the key is gone.
    pub fn schedule_deletion(&mut self, id: &Uuid, date: Millis, config: &Config) -> KmsResult<()> {
        let key = self
            .keys
            .get_mut(id)
            .ok_or_else(|| Self::not_found(&KeyRef::Key(*id), config))?;
        key.state = KeyState::PendingDeletion;
        key.deletion_date = Some(date);
        self.pending.insert((date, *id));
        Ok(())
    }

    /// Cancels a scheduled deletion; the key becomes Disabled, as in AWS.
    ///
    /// # Errors
    /// `NotFoundException` if the key is gone.
    pub fn cancel_deletion(&mut self, id: &Uuid, config: &Config) -> KmsResult<()> {
        let key = self
            .keys
            .get_mut(id)
            .ok_or_else(|| Self::not_found(&KeyRef::Key(*id), config))?;
        if let Some(date) = key.deletion_date.take() {
            self.pending.remove(&(date, *id));
        }
        key.state = KeyState::Disabled;
        Ok(())
    }

    /// Destroys every key whose deletion date has passed, with its aliases; returns the ids
    /// of the keys destroyed and the names of the aliases removed.
    pub fn sweep(&mut self, now: Millis) -> (Vec<Uuid>, Vec<String>) {
        let mut doomed = std::collections::HashSet::new();
        while let Some(&(date, id)) = self.pending.first() {
            if date > now {
                break;
            }
            self.pending.pop_first();
            if let Some(key) = self.keys.remove(&id) {
                drop(key); // key material is zeroed here
                self.order.remove(&id);
                doomed.insert(id);
            }
        }
        let mut removed = Vec::new();
        if !doomed.is_empty() {
            self.aliases.retain(|name, a| {
                let keep = !doomed.contains(&a.target);
                if !keep {
                    removed.push(name.clone());
                }
                keep
            });
        }
        (doomed.into_iter().collect(), removed)
    }
}
