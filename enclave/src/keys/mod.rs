//! The in-memory key store: keys, their versions of key material, and aliases.
//!
//! Key material exists only here, inside the enclave, wrapped in [`KeyMaterial`].
//! Lookups by key id are O(1); listing walks an ordered index from a marker.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;
use zeroize::Zeroizing;

pub mod asym;
pub mod ciphertext;
pub mod grants;
pub mod import;
pub mod mac;
pub mod recipient;
pub mod rotation;
pub mod tls;

use crate::config::Config;
use crate::env::Millis;
use crate::error::{KmsError, KmsResult};

/// Secret key material: 32 bytes for symmetric keys, the HMAC key for HMAC keys, the PKCS #8
/// DER private key for asymmetric keys. No `Debug` output, no `Clone`, zeroed on drop.
pub struct KeyMaterial(Zeroizing<Vec<u8>>);

impl KeyMaterial {
    /// Wraps freshly generated (or imported) bytes.
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> Self {
        KeyMaterial(bytes)
    }
    /// Wraps a 256-bit symmetric key.
    pub fn symmetric(bytes: &Zeroizing<[u8; 32]>) -> Self {
        KeyMaterial(Zeroizing::new(bytes.to_vec()))
    }
    /// The raw bytes, for the cipher. Grep for `expose_secret` to find every use.
    pub fn expose_secret(&self) -> &[u8] {
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
    /// Origin EXTERNAL, waiting for (or having lost) its imported key material.
    PendingImport,
}

impl KeyState {
    /// The AWS spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
            KeyState::PendingImport => "PendingImport",
        }
    }
}

macro_rules! aws_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $(#[allow(missing_docs)] $variant,)* }
        impl $name {
            /// Every value, in AWS's order.
            pub const ALL: &'static [&'static str] = &[$($text),*];
            /// The AWS spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }
            /// Parses the AWS spelling.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)* _ => None }
            }
        }
    };
}

aws_enum!(
    /// What kind of key: AWS `KeySpec`.
    KeySpec {
        Rsa2048 = "RSA_2048",
        Rsa3072 = "RSA_3072",
        Rsa4096 = "RSA_4096",
        EccNistP256 = "ECC_NIST_P256",
        EccNistP384 = "ECC_NIST_P384",
        EccNistP521 = "ECC_NIST_P521",
        EccSecgP256k1 = "ECC_SECG_P256K1",
        SymmetricDefault = "SYMMETRIC_DEFAULT",
        Hmac224 = "HMAC_224",
        Hmac256 = "HMAC_256",
        Hmac384 = "HMAC_384",
        Hmac512 = "HMAC_512",
        Sm2 = "SM2",
    }
);

aws_enum!(
    /// What a key is for: AWS `KeyUsage`.
    KeyUsage {
        SignVerify = "SIGN_VERIFY",
        EncryptDecrypt = "ENCRYPT_DECRYPT",
        GenerateVerifyMac = "GENERATE_VERIFY_MAC",
        KeyAgreement = "KEY_AGREEMENT",
    }
);

aws_enum!(
    /// Where the key material came from: AWS `Origin`.
    Origin {
        AwsKms = "AWS_KMS",
        External = "EXTERNAL",
        AwsCloudhsm = "AWS_CLOUDHSM",
        ExternalKeyStore = "EXTERNAL_KEY_STORE",
    }
);

aws_enum!(
    /// How a key version came to be: AWS `RotationType`.
    RotationType {
        Automatic = "AUTOMATIC",
        OnDemand = "ON_DEMAND",
    }
);

impl KeySpec {
    /// HMAC_*.
    pub fn is_hmac(self) -> bool {
        matches!(
            self,
            KeySpec::Hmac224 | KeySpec::Hmac256 | KeySpec::Hmac384 | KeySpec::Hmac512
        )
    }
    /// RSA_*.
    pub fn is_rsa(self) -> bool {
        matches!(self, KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096)
    }
    /// ECC_*.
    pub fn is_ecc(self) -> bool {
        matches!(
            self,
            KeySpec::EccNistP256
                | KeySpec::EccNistP384
                | KeySpec::EccNistP521
                | KeySpec::EccSecgP256k1
        )
    }
}

/// What AWS calls a `KeyMaterialId`: 32 bytes, answered as 64 lowercase hex digits. It is a
/// function of the key id and the material ([`import::material_commitment`]), so importing the
/// same material into the same key gives the same id, and the id of material that was deleted
/// or expired tells whether material imported later is that material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaterialId(pub [u8; 32]);

impl MaterialId {
    /// The id of `material` in the key `key_id`.
    pub fn of(key_id: &Uuid, material: &KeyMaterial) -> Self {
        MaterialId(import::material_commitment(key_id, material.expose_secret()))
    }

    /// The 64 lowercase hex digits AWS shows.
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits (the request's form, already checked against AWS's pattern).
    pub fn parse_hex(text: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(MaterialId(out))
    }
}

/// One version of a key's material (AWS: one key material).
pub struct KeyVersion {
    /// The secret; `None` once imported material was deleted (DeleteImportedKeyMaterial) or
    /// expired, until the same material is imported again.
    pub material: Option<KeyMaterial>,
    /// Its `KeyMaterialId`.
    pub id: MaterialId,
    /// When it was made or imported; for a rotation, when the rotation made it current.
    pub created: Millis,
    /// How it came to be: `None` for the key's first material, else the rotation that made it.
    pub rotation: Option<RotationType>,
    /// When imported material expires (`ExpirationModel` KEY_MATERIAL_EXPIRES).
    pub valid_to: Option<Millis>,
    /// The `KeyMaterialDescription` given when it was (last) imported.
    pub description: Option<String>,
}

impl KeyVersion {
    /// A version holding `material` of key `key_id`, with no expiry and no description.
    pub fn new(
        key_id: &Uuid,
        material: KeyMaterial,
        created: Millis,
        rotation: Option<RotationType>,
    ) -> Self {
        KeyVersion {
            id: MaterialId::of(key_id, &material),
            material: Some(material),
            created,
            rotation,
            valid_to: None,
            description: None,
        }
    }
}

impl std::fmt::Debug for KeyVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVersion")
            .field("id", &self.id)
            .field("held", &self.material.is_some())
            .field("created", &self.created)
            .field("rotation", &self.rotation)
            .field("valid_to", &self.valid_to)
            .finish_non_exhaustive()
    }
}

/// Automatic rotation settings of a symmetric key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// 90–2560 days.
    pub period_days: u32,
    /// When the next automatic rotation is due.
    pub next: Millis,
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
    /// What kind of key.
    pub spec: KeySpec,
    /// What it is for.
    pub usage: KeyUsage,
    /// Where its material came from.
    pub origin: Origin,
    /// Automatic rotation, when enabled (symmetric encryption keys only).
    pub rotation: Option<Rotation>,
    /// The earliest `ValidTo` of the material held (versions and pending), for the expiry
    /// index: change it only through [`KeyStore::refresh_expiry`], which computes it.
    pub valid_to: Option<Millis>,
    /// The key policy document; `None` means the default key policy.
    pub policy: Option<String>,
    /// The ARN of the principal that created it, counted against its quota
    /// ([`crate::config::Quotas`]); `None` in records written before creators were kept.
    pub creator: Option<String>,
    /// Grants on this key (each a sealed record of its own, [`grants`]).
    pub grants: grants::Grants,
    /// Every version of the key material, oldest first; the last one encrypts and signs. A
    /// ciphertext names its version by index, so versions are never removed: deleted imported
    /// material leaves its version without material. Empty while an EXTERNAL key waits for its
    /// first material.
    pub versions: Vec<KeyVersion>,
    /// Material imported (ImportType NEW_KEY_MATERIAL) into a symmetric EXTERNAL key that has
    /// material, waiting for RotateKeyOnDemand to make it current (AWS: PENDING_ROTATION).
    pub pending: Option<KeyVersion>,
}

impl Key {
    /// What this key costs in memory, estimated generously: a fixed overhead for the structure,
    /// its indexes and allocator slack, plus its variable parts (material, policy, description,
    /// tags, grants), each counted with slack for its allocation.
    pub fn footprint(&self) -> usize {
        const BASE: usize = 1024;
        const PER_ALLOCATION: usize = 64;
        let versions: usize = self
            .versions
            .iter()
            .chain(self.pending.as_ref())
            .map(|v| {
                v.material.as_ref().map_or(0, |m| m.expose_secret().len())
                    + v.description.as_ref().map_or(0, String::len)
                    + PER_ALLOCATION * 3
            })
            .sum();
        let tags: usize = self
            .tags
            .iter()
            .map(|t| t.tag_key.len() + t.tag_value.len() + PER_ALLOCATION * 2)
            .sum();
        BASE + self.description.len()
            + self.policy.as_ref().map_or(0, |p| p.len() + PER_ALLOCATION)
            + versions
            + tags
            + self.grants.bytes()
    }

    /// A new enabled key with its first material (none for an EXTERNAL key: it is then
    /// PendingImport).
    pub fn new(
        id: Uuid,
        created: Millis,
        spec: KeySpec,
        usage: KeyUsage,
        origin: Origin,
        material: Option<KeyMaterial>,
    ) -> Self {
        let state = if material.is_some() {
            KeyState::Enabled
        } else {
            KeyState::PendingImport
        };
        Key {
            id,
            created,
            description: String::new(),
            state,
            deletion_date: None,
            tags: Vec::new(),
            spec,
            usage,
            origin,
            rotation: None,
            valid_to: None,
            policy: None,
            creator: None,
            grants: grants::Grants::default(),
            versions: material
                .map(|material| KeyVersion::new(&id, material, created, None))
                .into_iter()
                .collect(),
            pending: None,
        }
    }

    /// Whether the key is gone as of `now` (its deletion date has passed).
    pub fn is_destroyed(&self, now: Millis) -> bool {
        self.state == KeyState::PendingDeletion && self.deletion_date.is_some_and(|d| d <= now)
    }

    /// Whether imported material of one of the key's versions is held past its `ValidTo` as of
    /// `now`. Such a key is unusable at once, before the periodic tick
    /// ([`KeyStore::expire_material`]) deletes the material. Material pending rotation is not
    /// in use, so its expiry does not count.
    pub fn material_expired(&self, now: Millis) -> bool {
        self.valid_to.is_some_and(|t| t <= now)
            && self.versions.iter().any(|v| {
                v.material.is_some() && v.valid_to.is_some_and(|t| t <= now)
            })
    }

    /// [`Key::check_usable`], and imported material that expired counts as deleted.
    ///
    /// # Errors
    /// As [`Key::check_usable`]; `KMSInvalidStateException` for expired material.
    pub fn check_usable_at(&self, config: &Config, now: Millis) -> KmsResult<()> {
        if self.material_expired(now) {
            return Err(KmsError::InvalidState(format!(
                "{} is pending import.",
                config.key_arn(&self.id)
            )));
        }
        self.check_usable(config)
    }

    /// Whether one of the key's materials is missing (never imported, deleted or expired): an
    /// EXTERNAL key is usable only once every material associated with it is imported.
    pub fn missing_material(&self) -> bool {
        self.versions.is_empty() || self.versions.iter().any(|v| v.material.is_none())
    }

    /// The earliest `ValidTo` of the material held, pending material included (for the expiry
    /// index).
    pub fn next_expiry(&self) -> Option<Millis> {
        self.versions
            .iter()
            .chain(self.pending.as_ref())
            .filter(|v| v.material.is_some())
            .filter_map(|v| v.valid_to)
            .min()
    }

    /// The earliest `ValidTo` of the material permanently associated with the key (its
    /// versions, not material pending rotation), as `KeyMetadata` shows it.
    pub fn metadata_valid_to(&self) -> Option<Millis> {
        self.versions
            .iter()
            .filter(|v| v.material.is_some())
            .filter_map(|v| v.valid_to)
            .min()
    }

    /// Moves the state after material was deleted or restored: PendingImport while any
    /// material is missing, Enabled once the last one is back; a key pending deletion stays so.
    pub fn settle_import_state(&mut self) {
        if self.state == KeyState::PendingDeletion {
            return;
        }
        if self.missing_material() {
            self.state = KeyState::PendingImport;
        } else if self.state == KeyState::PendingImport {
            self.state = KeyState::Enabled;
        }
    }

    /// Deletes imported material whose `ValidTo` is at or before `now` (material pending
    /// rotation is dropped altogether); whether anything was deleted. The caller refreshes the
    /// expiry index.
    pub fn expire(&mut self, now: Millis) -> bool {
        let due = |v: &KeyVersion| v.material.is_some() && v.valid_to.is_some_and(|t| t <= now);
        let mut changed = false;
        for version in &mut self.versions {
            if due(version) {
                version.material = None; // key material is zeroed here
                version.valid_to = None;
                changed = true;
            }
        }
        if self.pending.as_ref().is_some_and(due) {
            self.pending = None;
            changed = true;
        }
        if changed {
            self.settle_import_state();
        }
        changed
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
            KeyState::PendingImport => Err(KmsError::InvalidState(format!(
                "{} is pending import.",
                config.key_arn(&self.id)
            ))),
        }
    }

    /// Checks that the key is for `usage`, for the operation `operation` (named in the message,
    /// as AWS names it).
    ///
    /// # Errors
    /// `InvalidKeyUsageException` naming the key's usage and the operation.
    pub fn check_usage(&self, usage: KeyUsage, operation: &str, config: &Config) -> KmsResult<()> {
        if self.usage == usage {
            Ok(())
        } else {
            Err(KmsError::InvalidKeyUsage(format!(
                "{} key usage is {} which is not valid for {operation}.",
                config.key_arn(&self.id),
                self.usage.as_str()
            )))
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
            .and_then(|v| v.material.as_ref())
            .ok_or(KmsError::Internal("key without material"))?;
        let index = u32::try_from(index).map_err(|_| KmsError::Internal("too many versions"))?;
        Ok((index, material))
    }

    /// The material of version `index`, if it exists and is held.
    pub fn version(&self, index: u32) -> Option<&KeyMaterial> {
        self.versions
            .get(usize::try_from(index).ok()?)
            .and_then(|v| v.material.as_ref())
    }

    /// Whether AWS shows this key's material ids: symmetric encryption keys, whose material
    /// rotates (origin AWS_KMS or EXTERNAL).
    pub fn shows_material_ids(&self) -> bool {
        self.spec == KeySpec::SymmetricDefault
            && self.usage == KeyUsage::EncryptDecrypt
            && matches!(self.origin, Origin::AwsKms | Origin::External)
    }

    /// The `KeyMaterialId` of version `index`, as AWS answers it (for keys that show them).
    pub fn material_id_hex(&self, index: u32) -> Option<String> {
        if !self.shows_material_ids() {
            return None;
        }
        self.versions
            .get(usize::try_from(index).ok()?)
            .map(|v| v.id.to_hex())
    }

    /// `CurrentKeyMaterialId`: the current version's id, for keys that show them.
    pub fn current_material_id_hex(&self) -> Option<String> {
        let last = u32::try_from(self.versions.len().checked_sub(1)?).ok()?;
        self.material_id_hex(last)
    }

    /// The grant with this id on this key, if any.
    pub fn grant(&self, grant_id: &str) -> Option<&crate::access::policy::Grant> {
        self.grants.get(grant_id)
    }

    /// Removes the grant with this id (RetireGrant, RevokeGrant); the grant if it existed.
    /// The caller touches the grant so that the change is sealed.
    pub fn remove_grant(&mut self, grant_id: &str) -> Option<crate::access::policy::Grant> {
        self.grants.remove(grant_id)
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
    /// The ARN of the principal that created it (see [`Key::creator`]).
    pub creator: Option<String>,
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
        if value.is_empty() {
            return Err(KmsError::invalid_field(
                field,
                "Member must have length greater than or equal to 1",
            ));
        }
        if value.len() > MAX_KEY_ID_LEN {
            return Err(KmsError::invalid_field(
                field,
                format_args!("Member must have length less than or equal to {MAX_KEY_ID_LEN}"),
            ));
        }
        let local = if let Some(rest) = value.strip_prefix("arn:") {
            let prefix = config.kms_arn_prefix();
            match value.strip_prefix(prefix.as_str()) {
                Some(resource) => resource,
                None => {
                    // A KMS ARN of another region: AWS names the region ("Invalid arn
                    // us-west-2"); anything else, the whole value.
                    let mut parts = rest.splitn(4, ':');
                    let shown = match (parts.next(), parts.next(), parts.next()) {
                        (Some(_), Some("kms"), Some(region)) if region != config.region => region,
                        _ => value,
                    };
                    return Err(KmsError::NotFound(format!("Invalid arn {shown}")));
                }
            }
        } else {
            value
        };
        if let Some(id) = local.strip_prefix("key/") {
            if value.starts_with("arn:") {
                return Uuid::try_parse(id)
                    .map(KeyRef::Key)
                    .map_err(|_| KmsError::NotFound(format!("Invalid keyId '{value}'")));
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
        Err(KmsError::NotFound(format!("Invalid keyId '{value}'")))
    }
}

/// Every key and alias the enclave holds.
#[derive(Debug, Default)]
pub struct KeyStore {
    keys: HashMap<Uuid, Box<Key>>,
    /// Key ids in order, for ListKeys pagination.
    order: BTreeSet<Uuid>,
    /// Alias name → alias, ordered for ListAliases pagination.
    aliases: BTreeMap<String, Alias>,
    /// Keys pending deletion, by deletion date, so the sweep touches only what is due.
    pending: BTreeSet<(Millis, Uuid)>,
    /// Keys with automatic rotation, by next rotation date, so the periodic check touches only
    /// what is due (see `crate::keys::rotation`). Change `Key::rotation` only through
    /// [`KeyStore::set_rotation`], which keeps this index.
    rotations: BTreeSet<(Millis, Uuid)>,
    /// Keys with imported material that expires, by `ValidTo`, so the periodic tick touches
    /// only what is due. Change `Key::valid_to` only through [`KeyStore::refresh_expiry`].
    expiries: BTreeSet<(Millis, Uuid)>,
    /// Each key's [`Key::footprint`] as last counted, and their sum with the aliases'.
    footprints: HashMap<Uuid, usize>,
    bytes: usize,
    /// Keys and aliases by the principal that created them (ARN), for its quotas.
    created_keys: HashMap<String, usize>,
    created_aliases: HashMap<String, usize>,
}

fn count_up(counts: &mut HashMap<String, usize>, who: Option<&String>) {
    if let Some(who) = who {
        *counts.entry(who.clone()).or_default() += 1;
    }
}

fn count_down(counts: &mut HashMap<String, usize>, who: Option<&String>) {
    if let Some(who) = who {
        if let Some(n) = counts.get_mut(who) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(who);
            }
        }
    }
}

/// What [`KeyStore::sweep`] destroyed: keys, alias names, (key, grant id) pairs.
pub type Swept = (Vec<Uuid>, Vec<String>, Vec<(Uuid, String)>);

/// What an alias costs in memory, estimated (its name counted on top).
const ALIAS_FOOTPRINT: usize = 256;

impl KeyStore {
    /// The estimated memory the keys and aliases take ([`Key::footprint`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// How many live (not destroyed) keys the principal `arn` created.
    pub fn keys_created_by(&self, arn: &str) -> usize {
        self.created_keys.get(arn).copied().unwrap_or(0)
    }

    /// How many aliases the principal `arn` created.
    pub fn aliases_created_by(&self, arn: &str) -> usize {
        self.created_aliases.get(arn).copied().unwrap_or(0)
    }

    /// Counts again what key `id` takes, after a change (the guard that changed it calls this
    /// as it is released).
    pub fn recount(&mut self, id: &Uuid) {
        let new = self.keys.get(id).map_or(0, |k| k.footprint());
        let old = if new == 0 {
            self.footprints.remove(id).unwrap_or(0)
        } else {
            self.footprints.insert(*id, new).unwrap_or(0)
        };
        self.bytes = self.bytes.saturating_sub(old).saturating_add(new);
    }

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
        if let Some(rotation) = key.rotation {
            self.rotations.insert((rotation.next, key.id));
        }
        if let Some(valid_to) = key.valid_to {
            self.expiries.insert((valid_to, key.id));
        }
        let id = key.id;
        count_up(&mut self.created_keys, key.creator.as_ref());
        if let Some(old) = self.keys.insert(id, Box::new(key)) {
            count_down(&mut self.created_keys, old.creator.as_ref());
        }
        self.recount(&id);
        Ok(())
    }

    /// Takes `key` (a newer record of it, from a shared store) in place of the key with its
    /// id, keeping that key's grants (records of their own, caught up apart), or adds it.
    ///
    /// # Errors
    /// `LimitExceededException` at the configured bound for a new key.
    pub fn replace(&mut self, mut key: Key, config: &Config) -> KmsResult<()> {
        if let Some(old) = self.remove(&key.id) {
            key.grants = old.grants;
        }
        self.insert(key, config)
    }

    /// Removes key `id`, with its grants, from the store and every index (another member
    /// destroyed it); returns it.
    pub fn remove(&mut self, id: &Uuid) -> Option<Box<Key>> {
        let key = self.keys.remove(id)?;
        self.order.remove(id);
        if let Some(date) = key.deletion_date {
            self.pending.remove(&(date, *id));
        }
        if let Some(rotation) = key.rotation {
            self.rotations.remove(&(rotation.next, *id));
        }
        if let Some(valid_to) = key.valid_to {
            self.expiries.remove(&(valid_to, *id));
        }
        count_down(&mut self.created_keys, key.creator.as_ref());
        self.recount(id);
        Some(key)
    }

    /// Number of aliases held.
    pub fn alias_count(&self) -> usize {
        self.aliases.len()
    }

    /// Every alias name, in order.
    pub fn alias_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.aliases.keys().map(String::as_str)
    }

    /// Adds a grant loaded from its record to its key.
    ///
    /// # Errors
    /// Why it cannot be: its key is not loaded.
    pub fn load_grant(
        &mut self,
        key: &Uuid,
        grant: crate::access::policy::Grant,
    ) -> Result<(), &'static str> {
        let Some(k) = self.keys.get_mut(key) else {
            return Err("a grant of a key that is not loaded");
        };
        k.grants.insert(grant);
        self.recount(key);
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
            .map(|k| &**k)
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
            .map(|k| &mut **k)
            .ok_or_else(|| Self::not_found(&reference, config))
    }

    /// How many keys there are of each spec in each state (metrics: names from fixed sets).
    pub fn census(&self) -> BTreeMap<(&'static str, &'static str), u64> {
        let mut counts = BTreeMap::new();
        for key in self.keys.values() {
            *counts
                .entry((key.spec.as_str(), key.state.as_str()))
                .or_default() += 1;
        }
        counts
    }

    /// Every key, for a change that concerns all of them (a deleted principal's references).
    pub fn all_mut(&mut self) -> impl Iterator<Item = &mut Key> {
        self.keys.values_mut().map(|k| &mut **k)
    }

    /// The key with this id, even if its deletion date has passed (for sealing its record).
    pub fn raw(&self, id: &Uuid) -> Option<&Key> {
        self.keys.get(id).map(|k| &**k)
    }

    /// The live key with this id, if any (used by Decrypt, which learns the id from the blob).
    pub fn by_id(&self, id: &Uuid, now: Millis) -> Option<&Key> {
        self.keys
            .get(id)
            .map(|k| &**k)
            .filter(|k| !k.is_destroyed(now))
    }

    /// As [`KeyStore::by_id`], for changing the key (RetireGrant by grant token).
    pub fn by_id_mut(&mut self, id: &Uuid, now: Millis) -> Option<&mut Key> {
        self.keys
            .get_mut(id)
            .map(|k| &mut **k)
            .filter(|k| !k.is_destroyed(now))
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
        let size = ALIAS_FOOTPRINT + name.len();
        count_up(&mut self.created_aliases, alias.creator.as_ref());
        match self.aliases.insert(name, alias) {
            None => self.bytes = self.bytes.saturating_add(size),
            Some(old) => count_down(&mut self.created_aliases, old.creator.as_ref()),
        }
        Ok(())
    }

    /// Removes an alias; whether it existed.
    pub fn remove_alias(&mut self, name: &str) -> bool {
        let Some(old) = self.aliases.remove(name) else {
            return false;
        };
        count_down(&mut self.created_aliases, old.creator.as_ref());
        self.bytes = self.bytes.saturating_sub(ALIAS_FOOTPRINT + name.len());
        true
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
        // Imported material deleted (or expired) meanwhile: the key waits for an import.
        key.state = if key.origin == Origin::External && key.missing_material() {
            KeyState::PendingImport
        } else {
            KeyState::Disabled
        };
        Ok(())
    }

    /// Sets (or, with `None`, clears) the automatic rotation of a key, keeping the index of due
    /// rotations; returns the key for further changes, or `None` if there is no such key.
    pub fn set_rotation(&mut self, id: &Uuid, rotation: Option<Rotation>) -> Option<&mut Key> {
        // A rotation adds a version: counted again here, where automatic rotation passes.
        self.recount(id);
        let key = self.keys.get_mut(id)?;
        if let Some(old) = key.rotation.take() {
            self.rotations.remove(&(old.next, *id));
        }
        if let Some(new) = rotation {
            self.rotations.insert((new.next, *id));
        }
        key.rotation = rotation;
        Some(key)
    }

    /// The keys whose automatic rotation date is at or before `now`, earliest first, whatever
    /// their state. Index entries that no longer match their key are dropped here.
    pub fn due_rotations(&mut self, now: Millis) -> Vec<Uuid> {
        let mut due = Vec::new();
        let mut stale = Vec::new();
        for &(date, id) in self.rotations.range(..=(now, Uuid::max())) {
            match self.keys.get(&id).and_then(|k| k.rotation) {
                Some(r) if r.next == date => due.push(id),
                _ => stale.push((date, id)),
            }
        }
        for entry in stale {
            self.rotations.remove(&entry);
        }
        due
    }

    /// The key with this id, for changes that do not touch the indexes (deletion date,
    /// rotation): new key versions, for example.
    pub fn raw_mut(&mut self, id: &Uuid) -> Option<&mut Key> {
        self.keys.get_mut(id).map(|k| &mut **k)
    }

    /// Sets the key's place in the expiry index from its material ([`Key::next_expiry`]), after
    /// a change to its material; returns the key, or `None` if there is no such key.
    pub fn refresh_expiry(&mut self, id: &Uuid) -> Option<&mut Key> {
        self.recount(id);
        let key = self.keys.get_mut(id)?;
        if let Some(old) = key.valid_to.take() {
            self.expiries.remove(&(old, *id));
        }
        let next = key.next_expiry();
        if let Some(new) = next {
            self.expiries.insert((new, *id));
        }
        key.valid_to = next;
        Some(key)
    }

    /// Deletes imported material whose `ValidTo` is at or before `now`; returns the keys
    /// changed. Index entries that no longer match their key are dropped.
    pub fn expire_material(&mut self, now: Millis) -> Vec<Uuid> {
        let mut expired = Vec::new();
        while let Some(&(date, id)) = self.expiries.first() {
            if date > now {
                break;
            }
            self.expiries.pop_first();
            if let Some(key) = self.keys.get_mut(&id) {
                if key.valid_to == Some(date) {
                    key.valid_to = None;
                    if key.expire(now) {
                        expired.push(id);
                    }
                    // Material expiring later keeps (or takes) its place in the index.
                    self.refresh_expiry(&id);
                }
            }
            self.recount(&id);
        }
        expired
    }

    /// Destroys every key whose deletion date has passed, with its aliases and grants; returns
    /// the ids of the keys destroyed, the names of the aliases removed and the (key, grant id)
    /// of the grants removed.
    pub fn sweep(&mut self, now: Millis) -> Swept {
        let mut doomed = std::collections::HashSet::new();
        let mut grants = Vec::new();
        while let Some(&(date, id)) = self.pending.first() {
            if date > now {
                break;
            }
            self.pending.pop_first();
            if let Some(key) = self.keys.remove(&id) {
                if let Some(rotation) = key.rotation {
                    self.rotations.remove(&(rotation.next, id));
                }
                grants.extend(key.grants.ids().map(|g| (id, g.to_owned())));
                count_down(&mut self.created_keys, key.creator.as_ref());
                drop(key); // key material is zeroed here
                self.order.remove(&id);
                self.recount(&id);
                doomed.insert(id);
            }
        }
        let mut removed = Vec::new();
        if !doomed.is_empty() {
            let created_aliases = &mut self.created_aliases;
            self.aliases.retain(|name, a| {
                let keep = !doomed.contains(&a.target);
                if !keep {
                    removed.push(name.clone());
                    count_down(created_aliases, a.creator.as_ref());
                }
                keep
            });
            for name in &removed {
                self.bytes = self.bytes.saturating_sub(ALIAS_FOOTPRINT + name.len());
            }
        }
        (doomed.into_iter().collect(), removed, grants)
    }
}
