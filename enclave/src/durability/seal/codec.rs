//! Plaintext forms of sealed records (CBOR), and their size caps.
//!
//! Key material is serialized straight from and into zeroizing buffers; the intermediate CBOR
//! bytes are returned in a `Zeroizing` vector.

use serde::{Deserialize, Serialize};
use serde_bytes::{ByteBuf, Bytes};
use uuid::Uuid;
use zeroize::{Zeroize as _, Zeroizing};

use crate::env::Millis;
use crate::keys::{
    Alias, Key, KeyMaterial, KeySpec, KeyState, KeyUsage, KeyVersion, MaterialId, Origin,
    Rotation, RotationType, Tag,
};

/// Largest plaintext record accepted when loading (keys with many versions and tags fit).
pub const MAX_RECORD_LEN: usize = 256 * 1024;

/// A record's plaintext could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Larger than [`MAX_RECORD_LEN`].
    #[error("record of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// Not the expected CBOR.
    #[error("malformed record: {0}")]
    Cbor(#[from] serde_cbor::Error),
    /// Well-formed CBOR with an impossible value.
    #[error("invalid record: {0}")]
    Invalid(&'static str),
}

/// One version of a key's material. `material` is null once imported material is deleted or
/// expired; `id`, `valid_to` and `description` are absent from records written before keys had
/// several imported materials (the id is then computed from the material on loading, and an
/// imported key's one version takes the key's `valid_to`).
#[derive(Serialize)]
struct VersionOut<'a> {
    material: Option<&'a Bytes>,
    created: Millis,
    rotation: Option<&'static str>,
    id: &'a Bytes,
    valid_to: Option<Millis>,
    description: Option<&'a str>,
}

#[derive(Deserialize)]
struct VersionIn {
    #[serde(default)]
    material: Option<ByteBuf>,
    created: Millis,
    rotation: Option<String>,
    #[serde(default)]
    id: Option<ByteBuf>,
    #[serde(default)]
    valid_to: Option<Millis>,
    #[serde(default)]
    description: Option<String>,
}

impl<'a> VersionOut<'a> {
    fn of(v: &'a KeyVersion) -> Self {
        VersionOut {
            material: v.material.as_ref().map(|m| Bytes::new(m.expose_secret())),
            created: v.created,
            rotation: v.rotation.map(RotationType::as_str),
            id: Bytes::new(&v.id.0),
            valid_to: v.valid_to,
            description: v.description.as_deref(),
        }
    }
}

/// A version as decoded, before its id is checked or computed.
struct Decoded {
    material: Option<KeyMaterial>,
    id: Option<Result<[u8; 32], ()>>,
    created: Millis,
    rotation: Option<Option<RotationType>>,
    valid_to: Option<Millis>,
    description: Option<String>,
}

/// Moves a version's material into a zeroizing buffer (and zeroes the decoded bytes) first,
/// whatever else is wrong with it.
fn take_version(v: &mut VersionIn) -> Decoded {
    let material = v.material.as_mut().map(|bytes| {
        let material = KeyMaterial::new(Zeroizing::new(bytes.to_vec()));
        bytes.zeroize();
        material
    });
    Decoded {
        material,
        id: v
            .id
            .as_ref()
            .map(|id| <[u8; 32]>::try_from(id.as_slice()).map_err(|_| ())),
        created: v.created,
        rotation: match v.rotation.as_deref() {
            None => Some(None),
            Some(r) => RotationType::parse(r).map(Some),
        },
        valid_to: v.valid_to,
        description: v.description.take(),
    }
}

impl Decoded {
    fn into_version(self, key_id: &Uuid) -> Result<KeyVersion, CodecError> {
        let rotation = self.rotation.ok_or(CodecError::Invalid("rotation type"))?;
        let id = match (self.id, &self.material) {
            (Some(Ok(id)), _) => MaterialId(id),
            (Some(Err(())), _) => return Err(CodecError::Invalid("key material id")),
            (None, Some(material)) => MaterialId::of(key_id, material),
            (None, None) => return Err(CodecError::Invalid("a version without material or id")),
        };
        Ok(KeyVersion {
            material: self.material,
            id,
            created: self.created,
            rotation,
            valid_to: self.valid_to,
            description: self.description,
        })
    }
}

#[derive(Serialize)]
struct KeyOut<'a> {
    v: u8,
    id: &'a Bytes,
    created: Millis,
    description: &'a str,
    state: &'static str,
    deletion_date: Option<Millis>,
    tags: &'a [Tag],
    spec: &'static str,
    usage: &'static str,
    origin: &'static str,
    rotation: Option<(u32, Millis)>,
    /// The earliest expiry of the material held ([`Key::next_expiry`]); recomputed on loading.
    valid_to: Option<Millis>,
    policy: Option<&'a str>,
    creator: Option<&'a str>,
    /// Always empty: grants are records of their own ([`encode_grant`]). Records written
    /// before that carry them here.
    grants: &'a [crate::access::policy::Grant],
    versions: Vec<VersionOut<'a>>,
    pending: Option<VersionOut<'a>>,
}

#[derive(Deserialize)]
struct KeyIn {
    v: u8,
    id: ByteBuf,
    created: Millis,
    description: String,
    state: String,
    deletion_date: Option<Millis>,
    tags: Vec<Tag>,
    spec: String,
    usage: String,
    origin: String,
    rotation: Option<(u32, Millis)>,
    valid_to: Option<Millis>,
    /// Absent from records written before imports existed, and from those written since keys
    /// have several materials (each version carries its id): the id of an imported key's
    /// material that was deleted, in records of the one-material format.
    #[serde(default)]
    material_commitment: Option<ByteBuf>,
    policy: Option<String>,
    /// Absent from records written before creators were kept.
    #[serde(default)]
    creator: Option<String>,
    #[serde(default)]
    grants: Vec<crate::access::policy::Grant>,
    versions: Vec<VersionIn>,
    /// Absent from records written before keys had several imported materials.
    #[serde(default)]
    pending: Option<VersionIn>,
}

/// Encodes a key, material included.
///
/// # Errors
/// [`CodecError::Cbor`] if encoding fails.
pub fn encode_key(key: &Key) -> Result<Zeroizing<Vec<u8>>, CodecError> {
    let out = KeyOut {
        v: 1,
        id: Bytes::new(key.id.as_bytes()),
        created: key.created,
        description: &key.description,
        state: key.state.as_str(),
        deletion_date: key.deletion_date,
        tags: &key.tags,
        spec: key.spec.as_str(),
        usage: key.usage.as_str(),
        origin: key.origin.as_str(),
        rotation: key.rotation.map(|r| (r.period_days, r.next)),
        valid_to: key.valid_to,
        policy: key.policy.as_deref(),
        creator: key.creator.as_deref(),
        grants: &[],
        versions: key.versions.iter().map(VersionOut::of).collect(),
        pending: key.pending.as_ref().map(VersionOut::of),
    };
    Ok(Zeroizing::new(serde_cbor::to_vec(&out)?))
}

/// Decodes a key.
///
/// # Errors
/// [`CodecError`] for oversize, malformed or impossible records.
pub fn decode_key(bytes: &[u8]) -> Result<Key, CodecError> {
    if bytes.len() > MAX_RECORD_LEN {
        return Err(CodecError::TooLarge(bytes.len()));
    }
    let mut raw: KeyIn = serde_cbor::from_slice(bytes)?;
    // Move the material into zeroizing buffers first, whatever else is wrong.
    let decoded: Vec<Decoded> = raw.versions.iter_mut().map(take_version).collect();
    let pending = raw.pending.as_mut().map(take_version);
    if raw.v != 1 {
        return Err(CodecError::Invalid("unknown key record version"));
    }
    let id = Uuid::from_slice(&raw.id).map_err(|_| CodecError::Invalid("key id"))?;
    // Records of the one-material format carry no ids.
    let one_material_format = decoded.iter().all(|v| v.id.is_none());
    let mut versions = decoded
        .into_iter()
        .map(|v| v.into_version(&id))
        .collect::<Result<Vec<_>, _>>()?;
    let pending = pending.map(|v| v.into_version(&id)).transpose()?;
    let state = match raw.state.as_str() {
        "Enabled" => KeyState::Enabled,
        "Disabled" => KeyState::Disabled,
        "PendingDeletion" => KeyState::PendingDeletion,
        "PendingImport" => KeyState::PendingImport,
        _ => return Err(CodecError::Invalid("key state")),
    };
    if (state == KeyState::PendingDeletion) != raw.deletion_date.is_some() {
        return Err(CodecError::Invalid(
            "deletion date without pending deletion",
        ));
    }
    let spec = KeySpec::parse(&raw.spec).ok_or(CodecError::Invalid("key spec"))?;
    let usage = KeyUsage::parse(&raw.usage).ok_or(CodecError::Invalid("key usage"))?;
    let origin = Origin::parse(&raw.origin).ok_or(CodecError::Invalid("origin"))?;
    if origin != Origin::External
        && (versions.is_empty() || versions.iter().any(|v| v.material.is_none()))
    {
        return Err(CodecError::Invalid("key without material"));
    }
    if one_material_format && origin == Origin::External {
        // One imported material at most: its expiry was the key's, and once deleted only its
        // commitment (its id) remained.
        match versions.last_mut() {
            Some(version) => version.valid_to = raw.valid_to,
            None => {
                if let Some(c) = raw.material_commitment.as_ref() {
                    let c = <[u8; 32]>::try_from(c.as_slice())
                        .map_err(|_| CodecError::Invalid("material commitment"))?;
                    versions.push(KeyVersion {
                        material: None,
                        id: MaterialId(c),
                        created: raw.created,
                        rotation: None,
                        valid_to: None,
                        description: None,
                    });
                }
            }
        }
    }
    if let Some(p) = &pending {
        if origin != Origin::External
            || spec != KeySpec::SymmetricDefault
            || p.material.is_none()
            || versions.is_empty()
        {
            return Err(CodecError::Invalid("pending key material"));
        }
    }
    if spec == KeySpec::SymmetricDefault
        && versions
            .iter()
            .chain(pending.as_ref())
            .filter_map(|v| v.material.as_ref())
            .any(|m| m.expose_secret().len() != 32)
    {
        return Err(CodecError::Invalid(
            "symmetric key material must be 32 bytes",
        ));
    }
    let mut key = Key {
        id,
        created: raw.created,
        description: raw.description,
        state,
        deletion_date: raw.deletion_date,
        tags: raw.tags,
        spec,
        usage,
        origin,
        rotation: raw
            .rotation
            .map(|(period_days, next)| Rotation { period_days, next }),
        valid_to: None,
        policy: raw.policy,
        creator: raw.creator,
        grants: {
            let mut grants = crate::keys::grants::Grants::default();
            for grant in raw.grants {
                check_grant(&grant, &id)?;
                grants.insert(grant);
            }
            grants
        },
        versions,
        pending,
    };
    key.valid_to = key.next_expiry();
    Ok(key)
}

/// Longest grant id accepted in a record (those issued are 64 hex digits).
const MAX_GRANT_ID_LEN: usize = 128;

fn check_grant(grant: &crate::access::policy::Grant, key: &Uuid) -> Result<(), CodecError> {
    if grant.key_id != key.to_string() {
        return Err(CodecError::Invalid("a grant of another key"));
    }
    if grant.grant_id.is_empty()
        || grant.grant_id.len() > MAX_GRANT_ID_LEN
        || !grant.grant_id.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(CodecError::Invalid("grant id"));
    }
    Ok(())
}

/// The record id of grant `grant_id` of key `key`: the key's 16 bytes, then the grant id.
pub fn grant_record_id(key: &Uuid, grant_id: &str) -> Vec<u8> {
    let mut id = Vec::with_capacity(16 + grant_id.len());
    id.extend_from_slice(key.as_bytes());
    id.extend_from_slice(grant_id.as_bytes());
    id
}

/// The key and grant id of a grant record id ([`grant_record_id`]).
pub fn split_grant_id(id: &[u8]) -> Option<(Uuid, &str)> {
    if id.len() <= 16 {
        return None;
    }
    let (key, grant) = id.split_at(16);
    Some((
        Uuid::from_slice(key).ok()?,
        std::str::from_utf8(grant).ok()?,
    ))
}

#[derive(Serialize)]
struct GrantOut<'a> {
    v: u8,
    grant: &'a crate::access::policy::Grant,
}

#[derive(Deserialize)]
struct GrantIn {
    v: u8,
    grant: crate::access::policy::Grant,
}

/// Encodes a grant (a record of its own).
///
/// # Errors
/// [`CodecError::Cbor`] if encoding fails.
pub fn encode_grant(grant: &crate::access::policy::Grant) -> Result<Zeroizing<Vec<u8>>, CodecError> {
    Ok(Zeroizing::new(serde_cbor::to_vec(&GrantOut {
        v: 1,
        grant,
    })?))
}

/// Decodes the grant sealed under record id `id`: it must be that key's grant with that id.
///
/// # Errors
/// [`CodecError`] for oversize, malformed or misplaced records.
pub fn decode_grant(id: &[u8], bytes: &[u8]) -> Result<(Uuid, crate::access::policy::Grant), CodecError> {
    if bytes.len() > MAX_RECORD_LEN {
        return Err(CodecError::TooLarge(bytes.len()));
    }
    let raw: GrantIn = serde_cbor::from_slice(bytes)?;
    if raw.v != 1 {
        return Err(CodecError::Invalid("unknown grant record version"));
    }
    let (key, grant_id) = split_grant_id(id).ok_or(CodecError::Invalid("grant record id"))?;
    check_grant(&raw.grant, &key)?;
    if raw.grant.grant_id != grant_id {
        return Err(CodecError::Invalid("grant id differs from the record id"));
    }
    Ok((key, raw.grant))
}

#[derive(Serialize, Deserialize)]
struct AliasRecord {
    v: u8,
    target: ByteBuf,
    created: Millis,
    updated: Millis,
    /// The alias name (its record id is the name's keyed digest); absent in records written
    /// when the name itself was the record id.
    #[serde(default)]
    name: Option<String>,
    /// Absent from records written before creators were kept.
    #[serde(default)]
    creator: Option<String>,
}

/// Encodes the alias `name`.
///
/// # Errors
/// [`CodecError::Cbor`] if encoding fails.
pub fn encode_alias(name: &str, alias: &Alias) -> Result<Zeroizing<Vec<u8>>, CodecError> {
    Ok(Zeroizing::new(serde_cbor::to_vec(&AliasRecord {
        v: 1,
        target: ByteBuf::from(alias.target.as_bytes().to_vec()),
        created: alias.created,
        updated: alias.updated,
        name: Some(name.to_owned()),
        creator: alias.creator.clone(),
    })?))
}

/// Decodes an alias: its name (none in a record whose id was its name) and the alias.
///
/// # Errors
/// [`CodecError`] for oversize or malformed records.
pub fn decode_alias(bytes: &[u8]) -> Result<(Option<String>, Alias), CodecError> {
    if bytes.len() > MAX_RECORD_LEN {
        return Err(CodecError::TooLarge(bytes.len()));
    }
    let raw: AliasRecord = serde_cbor::from_slice(bytes)?;
    if raw.v != 1 {
        return Err(CodecError::Invalid("unknown alias record version"));
    }
    Ok((
        raw.name,
        Alias {
            target: Uuid::from_slice(&raw.target)
                .map_err(|_| CodecError::Invalid("alias target"))?,
            created: raw.created,
            updated: raw.updated,
            creator: raw.creator,
        },
    ))
}

/// A principal as sealed: name, its access keys with their secrets, and its identity policy.
///
/// Version 1 records written before principals had several keys carry one pair in
/// `access_key_id` / `secret_access_key` and no `access_keys`; they still decode. New records
/// keep the first key in those fields too (empty when the principal has none) and every key in
/// `access_keys`.
#[derive(Serialize, Deserialize)]
pub struct PrincipalRecord {
    /// Format version (1).
    pub v: u8,
    /// User name.
    pub name: String,
    /// The first access key id (the only one in older records; empty if none).
    #[serde(default)]
    pub access_key_id: String,
    /// Its secret access key.
    #[serde(default)]
    pub secret_access_key: String,
    /// Identity policy document, if any.
    #[serde(default)]
    pub policy: Option<String>,
    /// Every access key (absent in older records).
    #[serde(default)]
    pub access_keys: Vec<SealedAccessKey>,
    /// The principal's unique id, made at creation (absent in older records: derived from the
    /// name, see [`crate::access::principals::derived_id`]).
    #[serde(default)]
    pub id: Option<String>,
}

/// One access key in a [`PrincipalRecord`].
#[derive(Serialize, Deserialize)]
pub struct SealedAccessKey {
    /// Access key id.
    pub id: String,
    /// Secret access key.
    pub secret: String,
}

impl Drop for SealedAccessKey {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl PrincipalRecord {
    /// A record of `name` with `keys` (id, secret) and `policy`.
    pub fn new(name: &str, keys: Vec<(String, String)>, policy: Option<String>) -> Self {
        Self::with_id(name, keys, policy, None)
    }

    /// A record as [`PrincipalRecord::new`], with the principal's unique id.
    pub fn with_id(
        name: &str,
        keys: Vec<(String, String)>,
        policy: Option<String>,
        id: Option<String>,
    ) -> Self {
        let (access_key_id, secret_access_key) = keys.first().cloned().unwrap_or_default();
        PrincipalRecord {
            v: 1,
            name: name.to_owned(),
            access_key_id,
            secret_access_key,
            policy,
            access_keys: keys
                .into_iter()
                .map(|(id, secret)| SealedAccessKey { id, secret })
                .collect(),
            id,
        }
    }

    /// Every access key as (id, secret): `access_keys`, or the single pair of an older record.
    pub fn keys(&self) -> Vec<(String, String)> {
        if self.access_keys.is_empty() {
            if self.access_key_id.is_empty() {
                return Vec::new();
            }
            return vec![(self.access_key_id.clone(), self.secret_access_key.clone())];
        }
        self.access_keys
            .iter()
            .map(|k| (k.id.clone(), k.secret.clone()))
            .collect()
    }
}

impl Drop for PrincipalRecord {
    fn drop(&mut self) {
        self.secret_access_key.zeroize();
    }
}

/// Encodes a principal.
///
/// # Errors
/// [`CodecError::Cbor`] if encoding fails.
pub fn encode_principal(p: &PrincipalRecord) -> Result<Zeroizing<Vec<u8>>, CodecError> {
    Ok(Zeroizing::new(serde_cbor::to_vec(p)?))
}

/// Decodes a principal.
///
/// # Errors
/// [`CodecError`] for oversize or malformed records.
pub fn decode_principal(bytes: &[u8]) -> Result<PrincipalRecord, CodecError> {
    if bytes.len() > MAX_RECORD_LEN {
        return Err(CodecError::TooLarge(bytes.len()));
    }
    let p: PrincipalRecord = serde_cbor::from_slice(bytes)?;
    if p.v != 1 {
        return Err(CodecError::Invalid("unknown principal record version"));
    }
    Ok(p)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trip() {
        let mut key = Key::new(
            Uuid::from_bytes([3; 16]),
            5,
            KeySpec::SymmetricDefault,
            KeyUsage::EncryptDecrypt,
            Origin::AwsKms,
            Some(KeyMaterial::symmetric(&Zeroizing::new([1; 32]))),
        );
        key.description = "d".to_owned();
        key.state = KeyState::PendingDeletion;
        key.deletion_date = Some(9);
        key.tags = vec![Tag {
            tag_key: "k".to_owned(),
            tag_value: "v".to_owned(),
        }];
        key.rotation = Some(Rotation {
            period_days: 365,
            next: 77,
        });
        key.versions.push(KeyVersion::new(
            &key.id,
            KeyMaterial::symmetric(&Zeroizing::new([2; 32])),
            6,
            Some(RotationType::OnDemand),
        ));
        let back = decode_key(&encode_key(&key).unwrap()).unwrap();
        assert_eq!(back.id, key.id);
        assert_eq!(back.deletion_date, Some(9));
        assert_eq!(back.state, KeyState::PendingDeletion);
        assert_eq!(back.tags, key.tags);
        assert_eq!(back.versions.len(), 2);
        assert_eq!(
            back.versions[1].material.as_ref().unwrap().expose_secret(),
            &[2; 32]
        );
        assert_eq!(back.versions[1].id, key.versions[1].id);
        assert_eq!(back.versions[0].id, key.versions[0].id);
        assert_eq!(back.versions[1].rotation, Some(RotationType::OnDemand));
        assert_eq!(back.rotation, key.rotation);
        assert_eq!(back.spec, KeySpec::SymmetricDefault);
    }

    /// An imported key with several materials: one current, one deleted (its id kept, so that
    /// only the same material comes back), one pending rotation; each with its own expiry and
    /// description.
    #[test]
    fn imported_key_materials_round_trip() {
        let id = Uuid::from_bytes([4; 16]);
        let mut key = Key::new(
            id,
            5,
            KeySpec::SymmetricDefault,
            KeyUsage::EncryptDecrypt,
            Origin::External,
            Some(KeyMaterial::symmetric(&Zeroizing::new([1; 32]))),
        );
        key.versions[0].valid_to = Some(1_000);
        key.versions[0].description = Some("first".to_owned());
        let mut second = KeyVersion::new(
            &id,
            KeyMaterial::symmetric(&Zeroizing::new([2; 32])),
            7,
            Some(RotationType::OnDemand),
        );
        second.material = None;
        key.versions.push(second);
        let mut pending =
            KeyVersion::new(&id, KeyMaterial::symmetric(&Zeroizing::new([3; 32])), 8, None);
        pending.valid_to = Some(500);
        key.pending = Some(pending);
        key.state = KeyState::PendingImport;
        let back = decode_key(&encode_key(&key).unwrap()).unwrap();
        assert_eq!(back.versions.len(), 2);
        assert_eq!(back.versions[0].valid_to, Some(1_000));
        assert_eq!(back.versions[0].description.as_deref(), Some("first"));
        assert!(back.versions[1].material.is_none());
        assert_eq!(back.versions[1].id, key.versions[1].id);
        assert_eq!(back.versions[1].rotation, Some(RotationType::OnDemand));
        let p = back.pending.as_ref().unwrap();
        assert_eq!(p.id, MaterialId::of(&id, p.material.as_ref().unwrap()));
        // The expiry index takes the earliest material held, pending included.
        assert_eq!(back.valid_to, Some(500));
        assert_eq!(back.metadata_valid_to(), Some(1_000));
        assert!(back.missing_material());
    }

    /// Stores written when a key had one material at most: versions without ids, the imported
    /// material's expiry on the key, and only a commitment once the material was deleted. They
    /// load with the ids computed (the same ids the material has now) and the expiry on the
    /// version.
    #[test]
    fn key_records_of_the_one_material_format_still_decode() {
        #[derive(Serialize)]
        struct OldVersion<'a> {
            material: &'a Bytes,
            created: Millis,
            rotation: Option<&'static str>,
        }
        #[derive(Serialize)]
        struct OldKey<'a> {
            v: u8,
            id: &'a Bytes,
            created: Millis,
            description: &'a str,
            state: &'static str,
            deletion_date: Option<Millis>,
            tags: &'a [Tag],
            spec: &'static str,
            usage: &'static str,
            origin: &'static str,
            rotation: Option<(u32, Millis)>,
            valid_to: Option<Millis>,
            material_commitment: Option<&'a Bytes>,
            policy: Option<&'a str>,
            creator: Option<&'a str>,
            grants: &'a [crate::access::policy::Grant],
            versions: Vec<OldVersion<'a>>,
        }
        let id = Uuid::from_bytes([5; 16]);
        let material = [9u8; 32];
        let commitment = crate::keys::import::material_commitment(&id, &material);
        let old = |state, versions: Vec<OldVersion<'static>>, valid_to, commitment: &[u8]| {
            serde_cbor::to_vec(&OldKey {
                v: 1,
                id: Bytes::new(id.as_bytes()),
                created: 3,
                description: "",
                state,
                deletion_date: None,
                tags: &[],
                spec: "SYMMETRIC_DEFAULT",
                usage: "ENCRYPT_DECRYPT",
                origin: "EXTERNAL",
                rotation: None,
                valid_to,
                material_commitment: Some(Bytes::new(commitment)),
                policy: None,
                creator: None,
                grants: &[],
                versions,
            })
            .unwrap()
        };
        static MATERIAL: [u8; 32] = [9u8; 32];
        let held = old(
            "Enabled",
            vec![OldVersion {
                material: Bytes::new(&MATERIAL),
                created: 4,
                rotation: None,
            }],
            Some(2_000),
            &commitment,
        );
        let key = decode_key(&held).unwrap();
        assert_eq!(key.versions.len(), 1);
        assert_eq!(key.versions[0].id.0, commitment);
        assert_eq!(key.versions[0].valid_to, Some(2_000));
        assert_eq!(key.valid_to, Some(2_000));
        assert_eq!(key.state, KeyState::Enabled);
        // Deleted: the commitment becomes the id of a version without material.
        let deleted = decode_key(&old("PendingImport", Vec::new(), None, &commitment)).unwrap();
        assert_eq!(deleted.versions.len(), 1);
        assert!(deleted.versions[0].material.is_none());
        assert_eq!(deleted.versions[0].id.0, commitment);
        assert!(deleted.missing_material());
        assert_eq!(deleted.valid_to, None);
        // Re-encoded, it keeps all of that in the current format.
        let again = decode_key(&encode_key(&deleted).unwrap()).unwrap();
        assert_eq!(again.versions[0].id.0, commitment);
        assert!(again.versions[0].material.is_none());
        // An AWS_KMS key of that format computes its ids from its material.
        let mut bytes = serde_cbor::to_vec(&OldKey {
            v: 1,
            id: Bytes::new(id.as_bytes()),
            created: 3,
            description: "",
            state: "Enabled",
            deletion_date: None,
            tags: &[],
            spec: "SYMMETRIC_DEFAULT",
            usage: "ENCRYPT_DECRYPT",
            origin: "AWS_KMS",
            rotation: None,
            valid_to: None,
            material_commitment: None,
            policy: None,
            creator: None,
            grants: &[],
            versions: vec![OldVersion {
                material: Bytes::new(&MATERIAL),
                created: 3,
                rotation: None,
            }],
        })
        .unwrap();
        let key = decode_key(&bytes).unwrap();
        assert_eq!(key.versions[0].id.0, commitment);
        bytes.zeroize();
    }

    /// A version without material in a key whose material is generated here, or pending
    /// material in a key that cannot have any, is refused.
    #[test]
    fn impossible_materials_are_refused() {
        let id = Uuid::from_bytes([6; 16]);
        let mut key = Key::new(
            id,
            5,
            KeySpec::SymmetricDefault,
            KeyUsage::EncryptDecrypt,
            Origin::AwsKms,
            Some(KeyMaterial::symmetric(&Zeroizing::new([1; 32]))),
        );
        key.versions[0].material = None;
        assert!(decode_key(&encode_key(&key).unwrap()).is_err());
        let mut key = Key::new(
            id,
            5,
            KeySpec::Hmac256,
            KeyUsage::GenerateVerifyMac,
            Origin::External,
            Some(KeyMaterial::new(Zeroizing::new(vec![1; 32]))),
        );
        key.pending = Some(KeyVersion::new(
            &id,
            KeyMaterial::new(Zeroizing::new(vec![2; 32])),
            6,
            None,
        ));
        assert!(decode_key(&encode_key(&key).unwrap()).is_err());
    }

    #[test]
    fn principal_records_of_the_one_key_format_still_decode() {
        #[derive(Serialize)]
        struct Old<'a> {
            v: u8,
            name: &'a str,
            access_key_id: &'a str,
            secret_access_key: &'a str,
            policy: Option<&'a str>,
        }
        let old = serde_cbor::to_vec(&Old {
            v: 1,
            name: "admin",
            access_key_id: "AKIAAAAAAAAAAAAAAAAA",
            secret_access_key: "secretsecretsecretsecret",
            policy: Some("{}"),
        })
        .unwrap();
        let p = decode_principal(&old).unwrap();
        assert_eq!(p.name, "admin");
        assert_eq!(p.policy.as_deref(), Some("{}"));
        assert_eq!(
            p.keys(),
            [(
                "AKIAAAAAAAAAAAAAAAAA".to_owned(),
                "secretsecretsecretsecret".to_owned()
            )]
        );
        // An older record without a policy field decodes too.
        #[derive(Serialize)]
        struct Oldest<'a> {
            v: u8,
            name: &'a str,
            access_key_id: &'a str,
            secret_access_key: &'a str,
        }
        let oldest = serde_cbor::to_vec(&Oldest {
            v: 1,
            name: "dev",
            access_key_id: "AKIABBBBBBBBBBBBBBBB",
            secret_access_key: "secretsecretsecretsecret",
        })
        .unwrap();
        let p = decode_principal(&oldest).unwrap();
        assert_eq!(p.policy, None);
        assert_eq!(p.keys().len(), 1);
        // Sealed before principals had unique ids: none (one is derived from the name).
        assert_eq!(p.id, None);
    }

    #[test]
    fn a_principal_record_keeps_its_unique_id() {
        let record = PrincipalRecord::with_id(
            "bob",
            Vec::new(),
            None,
            Some("AIDAABCDEFGHIJKLMNOPQ".to_owned()),
        );
        let back = decode_principal(&encode_principal(&record).unwrap()).unwrap();
        assert_eq!(back.id.as_deref(), Some("AIDAABCDEFGHIJKLMNOPQ"));
    }

    #[test]
    fn principal_records_round_trip_with_every_key() {
        let keys = vec![
            (
                "AKIA1111111111111111".to_owned(),
                "s1s1s1s1s1s1s1s1s1".to_owned(),
            ),
            (
                "AKIA2222222222222222".to_owned(),
                "s2s2s2s2s2s2s2s2s2".to_owned(),
            ),
        ];
        let record = PrincipalRecord::new("bob", keys.clone(), None);
        let back = decode_principal(&encode_principal(&record).unwrap()).unwrap();
        assert_eq!(back.keys(), keys);
        assert_eq!(back.access_key_id, "AKIA1111111111111111");
        let none = PrincipalRecord::new("carol", Vec::new(), Some("{}".to_owned()));
        let back = decode_principal(&encode_principal(&none).unwrap()).unwrap();
        assert!(back.keys().is_empty());
        assert_eq!(back.policy.as_deref(), Some("{}"));
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        let good = encode_key(&Key::new(
            Uuid::from_bytes([3; 16]),
            5,
            KeySpec::SymmetricDefault,
            KeyUsage::EncryptDecrypt,
            Origin::AwsKms,
            Some(KeyMaterial::symmetric(&Zeroizing::new([1; 32]))),
        ))
        .unwrap();
        for len in 0..good.len() {
            assert!(decode_key(&good[..len]).is_err());
        }
        assert!(decode_alias(b"\xff\x00").is_err());
        assert!(decode_principal(&[0u8; 10]).is_err());
        assert!(matches!(
            decode_key(&vec![0u8; MAX_RECORD_LEN + 1]),
            Err(CodecError::TooLarge(_))
        ));
    }
}
