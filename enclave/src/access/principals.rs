//! Principals (IAM-style users) and their access keys, held in the enclave.
//!
//! In mock mode some come from a JSON file given at start:
//! `{"principals": [{"name": "dev", "access_key_id": "AKIA...", "secret_access_key": "..."}]}`.
//! Those are fixed for the life of the process. The others are sealed in the store and changed
//! by the `Ekms.*Principal*` / `Ekms.*AccessKey` operations ([`crate::kms::principal_ops`]).
//!
//! Each principal has up to [`MAX_ACCESS_KEYS`] access keys (IAM's limit) and an optional
//! identity policy.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Deserialize;

use crate::config::Config;
use crate::access::policy::IdentityPolicy;
use crate::access::sigv4::{SecretAccessKey, SecretLookup};

/// Most access keys one principal may have (IAM's limit).
pub const MAX_ACCESS_KEYS: usize = 2;

/// One access key of a principal.
struct AccessKey {
    id: String,
    secret: SecretAccessKey,
}

/// One principal (an IAM-style user) with its access keys.
pub struct Principal {
    /// The user name.
    pub name: String,
    /// `arn:aws:iam::<account>:user/<name>`.
    pub arn: String,
    /// Its unique id (`AIDA...`), made at creation: a principal deleted and created again
    /// under the same name has another one. What named the old one (grants, key policies)
    /// names its unique id once it is deleted, and so never the new one.
    pub id: String,
    keys: Vec<AccessKey>,
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

    /// The identity policy document, if any.
    pub fn policy_text(&self) -> Option<&str> {
        self.policy.as_ref().map(|(t, _)| t.as_str())
    }

    /// The access key ids, oldest first.
    pub fn access_key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    /// Access key ids with their secrets, oldest first (for sealing only).
    pub fn expose_access_keys(&self) -> impl Iterator<Item = (&str, &str)> {
        self.keys
            .iter()
            .map(|k| (k.id.as_str(), k.secret.expose_secret()))
    }

    /// Whether it lives in the sealed store (false: from the mock-mode principals file).
    pub fn is_sealed(&self) -> bool {
        self.sealed
    }
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal")
            .field("arn", &self.arn)
            .finish_non_exhaustive()
    }
}

/// Principals by name, and the index from access key id to name.
#[derive(Debug, Default)]
pub struct Principals {
    by_name: BTreeMap<String, Principal>,
    by_access_key: HashMap<String, String>,
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

/// Why a change to the principals was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChangeError {
    /// No principal by that name (or no such access key).
    #[error("{0}")]
    NoSuchEntity(String),
    /// The name or access key id is taken.
    #[error("{0}")]
    EntityAlreadyExists(String),
    /// The principal has [`MAX_ACCESS_KEYS`] access keys already.
    #[error("{0}")]
    LimitExceeded(String),
    /// A principal from the mock-mode principals file: fixed for the life of the process.
    #[error("The user with name {0} comes from the principals file and cannot be changed.")]
    FromFile(String),
    /// A name, access key id, secret or policy breaks the rules.
    #[error("{0}")]
    Invalid(&'static str),
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

/// Whether `name` is a valid IAM user name: `[\w+=,.@-]{1,64}`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// Whether `id` is a valid access key id: 16–128 ASCII alphanumerics.
pub fn valid_access_key_id(id: &str) -> bool {
    (16..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn check_key(id: &str, secret: &str) -> Result<(), &'static str> {
    if !valid_access_key_id(id) {
        return Err("access_key_id must be 16-128 alphanumerics");
    }
    if secret.len() < 16 {
        return Err("secret_access_key must be at least 16 characters");
    }
    Ok(())
}

fn parse_policy(
    policy: Option<String>,
) -> Result<Option<(String, Arc<IdentityPolicy>)>, &'static str> {
    match policy {
        Some(text) => {
            let parsed =
                crate::access::policy::parse_identity(&text).map_err(|_| "identity policy is malformed")?;
            Ok(Some((text, Arc::new(parsed))))
        }
        None => Ok(None),
    }
}

/// The unique id of a principal that has none of its own (from the principals file, or sealed
/// before principals had them): derived from the account and the name, so it is stable.
pub fn derived_id(config: &Config, name: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("ekms principal\0{}\0{name}", config.account).as_bytes(),
    );
    let letters: String = digest.as_ref()[..16]
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % 32]))
        .collect();
    format!("AIDA{letters}")
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
                None => crate::access::policy::ALLOW_ALL_IDENTITY_POLICY.to_owned(),
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
        self.insert_with_keys(
            name,
            vec![(access_key_id, secret)],
            sealed,
            policy,
            None,
            config,
        )
    }

    /// Adds a principal with its access keys (at most [`MAX_ACCESS_KEYS`]; none is allowed: a
    /// principal whose keys were all deleted).
    ///
    /// # Errors
    /// As [`Principals::insert`], and too many keys.
    pub fn insert_with_keys(
        &mut self,
        name: String,
        keys: Vec<(String, String)>,
        sealed: bool,
        policy: Option<String>,
        id: Option<String>,
        config: &Config,
    ) -> Result<(), &'static str> {
        let id = match id {
            Some(id) if crate::access::policy::is_unique_id(&id) => id,
            Some(_) => return Err("a unique id is AIDA followed by 16-32 of A-Z and 2-7"),
            None => derived_id(config, &name),
        };
        let policy = parse_policy(policy)?;
        if !valid_name(&name) {
            return Err("name must match [A-Za-z0-9+=,.@_-]{1,64}");
        }
        if keys.len() > MAX_ACCESS_KEYS {
            return Err("a principal has at most 2 access keys");
        }
        for (i, (id, secret)) in keys.iter().enumerate() {
            check_key(id, secret)?;
            if self.by_access_key.contains_key(id) || keys[..i].iter().any(|(o, _)| o == id) {
                return Err("duplicate principal name or access_key_id");
            }
        }
        if self.by_name.contains_key(&name) {
            return Err("duplicate principal name or access_key_id");
        }
        let keys: Vec<AccessKey> = keys
            .into_iter()
            .map(|(id, secret)| AccessKey {
                id,
                secret: SecretAccessKey::new(secret),
            })
            .collect();
        for k in &keys {
            self.by_access_key.insert(k.id.clone(), name.clone());
        }
        self.by_name.insert(
            name.clone(),
            Principal {
                arn: config.user_arn(&name),
                id,
                name,
                keys,
                sealed,
                policy,
            },
        );
        Ok(())
    }

    /// Removes every principal from the sealed store (those from a principals file stay):
    /// before the sealed ones are taken again from a newer state of the store.
    pub fn remove_sealed(&mut self) {
        let sealed: Vec<String> = self
            .by_name
            .iter()
            .filter(|(_, p)| p.sealed)
            .map(|(name, _)| name.clone())
            .collect();
        for name in sealed {
            self.by_name.remove(&name);
        }
        let by_name = &self.by_name;
        self.by_access_key.retain(|_, name| by_name.contains_key(name));
    }

    /// The names of the sealed principals (not those from the principals file).
    pub fn sealed_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.by_name
            .iter()
            .filter(|(_, p)| p.sealed)
            .map(|(name, _)| name.as_str())
    }

    /// A sealed principal (not one from the principals file).
    pub fn sealed(&self, name: &str) -> Option<&Principal> {
        self.by_name.get(name).filter(|p| p.sealed)
    }

    /// A principal by name.
    pub fn by_name(&self, name: &str) -> Option<&Principal> {
        self.by_name.get(name)
    }

    /// Number of principals.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The principal owning an access key.
    pub fn by_access_key(&self, access_key_id: &str) -> Option<&Principal> {
        self.by_name.get(self.by_access_key.get(access_key_id)?)
    }

    /// Up to `limit` principals in name order, starting after `after`; and whether more follow.
    pub fn list(&self, after: Option<&str>, limit: usize) -> (Vec<&Principal>, bool) {
        use std::ops::Bound;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut iter = self
            .by_name
            .range::<str, _>((start, Bound::Unbounded))
            .map(|(_, p)| p);
        let page: Vec<&Principal> = iter.by_ref().take(limit).collect();
        (page, iter.next().is_some())
    }

    fn sealed_mut(&mut self, name: &str) -> Result<&mut Principal, ChangeError> {
        match self.by_name.get_mut(name) {
            None => Err(no_such_user(name)),
            Some(p) if !p.sealed => Err(ChangeError::FromFile(name.to_owned())),
            Some(p) => Ok(p),
        }
    }

    /// Creates a sealed principal with one access key.
    ///
    /// # Errors
    /// [`ChangeError::EntityAlreadyExists`] for a taken name or access key id;
    /// [`ChangeError::Invalid`] for a bad name, key, secret or policy.
    pub fn create(
        &mut self,
        name: &str,
        id: String,
        access_key_id: String,
        secret: String,
        policy: Option<String>,
        config: &Config,
    ) -> Result<&Principal, ChangeError> {
        if !valid_name(name) {
            return Err(ChangeError::Invalid(
                "name must match [A-Za-z0-9+=,.@_-]{1,64}",
            ));
        }
        if self.by_name.contains_key(name) {
            return Err(ChangeError::EntityAlreadyExists(format!(
                "User with name {name} already exists."
            )));
        }
        if self.by_access_key.contains_key(&access_key_id) {
            return Err(ChangeError::EntityAlreadyExists(
                "The access key id is already in use.".to_owned(),
            ));
        }
        self.insert_with_keys(
            name.to_owned(),
            vec![(access_key_id, secret)],
            true,
            policy,
            Some(id),
            config,
        )
        .map_err(ChangeError::Invalid)?;
        self.by_name
            .get(name)
            .ok_or(ChangeError::Invalid("principal vanished"))
    }

    /// Removes a sealed principal and all its access keys.
    ///
    /// # Errors
    /// [`ChangeError::NoSuchEntity`], or [`ChangeError::FromFile`].
    pub fn delete(&mut self, name: &str) -> Result<(), ChangeError> {
        self.sealed_mut(name)?;
        if let Some(p) = self.by_name.remove(name) {
            for k in &p.keys {
                self.by_access_key.remove(&k.id);
            }
        }
        Ok(())
    }

    /// Adds an access key to a sealed principal.
    ///
    /// # Errors
    /// [`ChangeError::NoSuchEntity`], [`ChangeError::FromFile`], [`ChangeError::LimitExceeded`]
    /// beyond [`MAX_ACCESS_KEYS`], [`ChangeError::EntityAlreadyExists`] for a taken id,
    /// [`ChangeError::Invalid`] for a bad id or secret.
    pub fn add_access_key(
        &mut self,
        name: &str,
        access_key_id: String,
        secret: String,
    ) -> Result<(), ChangeError> {
        check_key(&access_key_id, &secret).map_err(ChangeError::Invalid)?;
        if self.by_access_key.contains_key(&access_key_id) {
            return Err(ChangeError::EntityAlreadyExists(
                "The access key id is already in use.".to_owned(),
            ));
        }
        let p = self.sealed_mut(name)?;
        if p.keys.len() >= MAX_ACCESS_KEYS {
            return Err(ChangeError::LimitExceeded(format!(
                "Cannot exceed quota for AccessKeysPerUser: {MAX_ACCESS_KEYS}"
            )));
        }
        p.keys.push(AccessKey {
            id: access_key_id.clone(),
            secret: SecretAccessKey::new(secret),
        });
        self.by_access_key.insert(access_key_id, name.to_owned());
        Ok(())
    }

    /// Deletes one access key of a sealed principal.
    ///
    /// # Errors
    /// [`ChangeError::NoSuchEntity`] for an unknown user or a key that is not the user's;
    /// [`ChangeError::FromFile`].
    pub fn delete_access_key(
        &mut self,
        name: &str,
        access_key_id: &str,
    ) -> Result<(), ChangeError> {
        let p = self.sealed_mut(name)?;
        let before = p.keys.len();
        p.keys.retain(|k| k.id != access_key_id);
        if p.keys.len() == before {
            return Err(ChangeError::NoSuchEntity(format!(
                "The Access Key with id {access_key_id} cannot be found."
            )));
        }
        self.by_access_key.remove(access_key_id);
        Ok(())
    }

    /// Replaces the identity policy of a sealed principal.
    ///
    /// # Errors
    /// [`ChangeError::NoSuchEntity`], [`ChangeError::FromFile`], [`ChangeError::Invalid`] if it
    /// does not parse (callers check it first, to name the problem).
    pub fn put_policy(&mut self, name: &str, policy: String) -> Result<(), ChangeError> {
        let parsed = parse_policy(Some(policy)).map_err(ChangeError::Invalid)?;
        self.sealed_mut(name)?.policy = parsed;
        Ok(())
    }
}

fn no_such_user(name: &str) -> ChangeError {
    ChangeError::NoSuchEntity(format!("The user with name {name} cannot be found."))
}

impl SecretLookup for Principals {
    fn secret_access_key(&self, access_key_id: &str) -> Option<&SecretAccessKey> {
        self.by_access_key(access_key_id)?
            .keys
            .iter()
            .find(|k| k.id == access_key_id)
            .map(|k| &k.secret)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A unique id for a test principal.
    fn uid(name: &str) -> String {
        derived_id(&Config::default(), name)
    }

    fn config() -> Config {
        Config::default()
    }

    fn akid(n: u8) -> String {
        format!("AKIATEST{:012}", n)
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn names_follow_iam() {
        for good in ["bob", "a+b=c,d.e@f_g-h", &"x".repeat(64)] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "a b", "a/b", "é", &"x".repeat(65), "a:b"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn create_list_delete() {
        let c = config();
        let mut p = Principals::default();
        p.create("bob", uid("bob"), akid(1), SECRET.into(), None, &c)
            .unwrap();
        p.create("alice", uid("alice"), akid(2), SECRET.into(), None, &c)
            .unwrap();
        assert!(matches!(
            p.create("bob", uid("bob"), akid(3), SECRET.into(), None, &c),
            Err(ChangeError::EntityAlreadyExists(_))
        ));
        assert!(matches!(
            p.create("carol", uid("carol"), akid(1), SECRET.into(), None, &c),
            Err(ChangeError::EntityAlreadyExists(_))
        ));
        assert!(matches!(
            p.create(
                "no/slash",
                uid("no/slash"),
                akid(4),
                SECRET.into(),
                None,
                &c
            ),
            Err(ChangeError::Invalid(_))
        ));
        let (page, more) = p.list(None, 1);
        assert_eq!(page[0].name, "alice");
        assert!(more);
        let (page, more) = p.list(Some("alice"), 10);
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].name, "bob");
        assert!(!more);
        assert_eq!(p.by_access_key(&akid(1)).unwrap().name, "bob");
        p.delete("bob").unwrap();
        assert!(p.by_access_key(&akid(1)).is_none());
        assert!(p.secret_access_key(&akid(1)).is_none());
        assert!(matches!(p.delete("bob"), Err(ChangeError::NoSuchEntity(_))));
    }

    #[test]
    fn at_most_two_access_keys() {
        let c = config();
        let mut p = Principals::default();
        p.create("bob", uid("bob"), akid(1), SECRET.into(), None, &c)
            .unwrap();
        p.add_access_key("bob", akid(2), SECRET.into()).unwrap();
        assert!(matches!(
            p.add_access_key("bob", akid(3), SECRET.into()),
            Err(ChangeError::LimitExceeded(_))
        ));
        assert_eq!(
            p.by_name("bob")
                .unwrap()
                .access_key_ids()
                .collect::<Vec<_>>(),
            [akid(1), akid(2)]
        );
        assert!(p.secret_access_key(&akid(2)).is_some());
        assert!(matches!(
            p.delete_access_key("bob", &akid(9)),
            Err(ChangeError::NoSuchEntity(_))
        ));
        p.delete_access_key("bob", &akid(1)).unwrap();
        assert!(p.secret_access_key(&akid(1)).is_none());
        assert_eq!(p.by_access_key(&akid(2)).unwrap().name, "bob");
        p.add_access_key("bob", akid(3), SECRET.into()).unwrap();
        assert!(matches!(
            p.add_access_key("nobody", akid(4), SECRET.into()),
            Err(ChangeError::NoSuchEntity(_))
        ));
    }

    #[test]
    fn file_principals_cannot_change() {
        let c = config();
        let file = format!(
            r#"{{"principals":[{{"name":"dev","access_key_id":"{}","secret_access_key":"{SECRET}"}}]}}"#,
            akid(1)
        );
        let mut p = Principals::from_json(file.as_bytes(), &c).unwrap();
        assert!(p.sealed("dev").is_none());
        assert!(p.by_name("dev").unwrap().identity_policy().is_some());
        for result in [
            p.delete("dev"),
            p.add_access_key("dev", akid(2), SECRET.into()),
            p.delete_access_key("dev", &akid(1)),
            p.put_policy("dev", crate::access::policy::ALLOW_ALL_IDENTITY_POLICY.into()),
        ] {
            assert_eq!(result, Err(ChangeError::FromFile("dev".into())));
        }
        assert!(p.by_access_key(&akid(1)).is_some());
    }
}
