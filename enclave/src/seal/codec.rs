//! Plaintext forms of sealed records (CBOR), and their size caps.
//!
//! Key material is serialized straight from and into zeroizing buffers; the intermediate CBOR
//! bytes are returned in a `Zeroizing` vector.

use serde::{Deserialize, Serialize};
use serde_bytes::{ByteBuf, Bytes};
use uuid::Uuid;
use zeroize::{Zeroize as _, Zeroizing};

use crate::env::Millis;
use crate::keys::{Alias, Key, KeyMaterial, KeyState, Tag};

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

#[derive(Serialize)]
struct KeyOut<'a> {
    v: u8,
    id: &'a Bytes,
    created: Millis,
    description: &'a str,
    state: u8,
    deletion_date: Option<Millis>,
    tags: &'a [Tag],
    versions: Vec<&'a Bytes>,
}

#[derive(Deserialize)]
struct KeyIn {
    v: u8,
    id: ByteBuf,
    created: Millis,
    description: String,
    state: u8,
    deletion_date: Option<Millis>,
    tags: Vec<Tag>,
    versions: Vec<ByteBuf>,
}

fn state_byte(state: KeyState) -> u8 {
    match state {
        KeyState::Enabled => 0,
        KeyState::Disabled => 1,
        KeyState::PendingDeletion => 2,
    }
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
        state: state_byte(key.state),
        deletion_date: key.deletion_date,
        tags: &key.tags,
        versions: key
            .versions
            .iter()
            .map(|m| Bytes::new(&m.expose_secret()[..]))
            .collect(),
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
    let mut versions = Vec::with_capacity(raw.versions.len());
    let mut bad_length = false;
    for v in &mut raw.versions {
        match <[u8; 32]>::try_from(&v[..]) {
            Ok(bytes) => versions.push(KeyMaterial::new(Zeroizing::new(bytes))),
            Err(_) => bad_length = true,
        }
        v.zeroize();
    }
    if bad_length || versions.is_empty() {
        return Err(CodecError::Invalid("key material must be 32-byte versions"));
    }
    if raw.v != 1 {
        return Err(CodecError::Invalid("unknown key record version"));
    }
    let id = Uuid::from_slice(&raw.id).map_err(|_| CodecError::Invalid("key id"))?;
    let state = match raw.state {
        0 => KeyState::Enabled,
        1 => KeyState::Disabled,
        2 => KeyState::PendingDeletion,
        _ => return Err(CodecError::Invalid("key state")),
    };
    if (state == KeyState::PendingDeletion) != raw.deletion_date.is_some() {
        return Err(CodecError::Invalid(
            "deletion date without pending deletion",
        ));
    }
    Ok(Key {
        id,
        created: raw.created,
        description: raw.description,
        state,
        deletion_date: raw.deletion_date,
        tags: raw.tags,
        versions,
    })
}

#[derive(Serialize, Deserialize)]
struct AliasRecord {
    v: u8,
    target: ByteBuf,
    created: Millis,
    updated: Millis,
}

/// Encodes an alias (its name is the record id).
///
/// # Errors
/// [`CodecError::Cbor`] if encoding fails.
pub fn encode_alias(alias: &Alias) -> Result<Zeroizing<Vec<u8>>, CodecError> {
    Ok(Zeroizing::new(serde_cbor::to_vec(&AliasRecord {
        v: 1,
        target: ByteBuf::from(alias.target.as_bytes().to_vec()),
        created: alias.created,
        updated: alias.updated,
    })?))
}

/// Decodes an alias.
///
/// # Errors
/// [`CodecError`] for oversize or malformed records.
pub fn decode_alias(bytes: &[u8]) -> Result<Alias, CodecError> {
    if bytes.len() > MAX_RECORD_LEN {
        return Err(CodecError::TooLarge(bytes.len()));
    }
    let raw: AliasRecord = serde_cbor::from_slice(bytes)?;
    if raw.v != 1 {
        return Err(CodecError::Invalid("unknown alias record version"));
    }
    Ok(Alias {
        target: Uuid::from_slice(&raw.target).map_err(|_| CodecError::Invalid("alias target"))?,
        created: raw.created,
        updated: raw.updated,
    })
}

/// A principal as sealed: name, one access key and its secret.
#[derive(Serialize, Deserialize)]
pub struct PrincipalRecord {
    /// Format version (1).
    pub v: u8,
    /// User name.
    pub name: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
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
        let key = Key {
            id: Uuid::from_bytes([3; 16]),
            created: 5,
            description: "d".to_owned(),
            state: KeyState::PendingDeletion,
            deletion_date: Some(9),
            tags: vec![Tag {
                tag_key: "k".to_owned(),
                tag_value: "v".to_owned(),
            }],
            versions: vec![
                KeyMaterial::new(Zeroizing::new([1; 32])),
                KeyMaterial::new(Zeroizing::new([2; 32])),
            ],
        };
        let back = decode_key(&encode_key(&key).unwrap()).unwrap();
        assert_eq!(back.id, key.id);
        assert_eq!(back.deletion_date, Some(9));
        assert_eq!(back.state, KeyState::PendingDeletion);
        assert_eq!(back.tags, key.tags);
        assert_eq!(back.versions.len(), 2);
        assert_eq!(back.versions[1].expose_secret(), &[2; 32]);
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        let good = encode_key(&Key {
            id: Uuid::from_bytes([3; 16]),
            created: 5,
            description: String::new(),
            state: KeyState::Enabled,
            deletion_date: None,
            tags: vec![],
            versions: vec![KeyMaterial::new(Zeroizing::new([1; 32]))],
        })
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
