//! The sealed-record envelope.
//!
//! ```text
//! offset  size  field
//! 0       1     format version (1)
//! 1       8     generation, big-endian (the commit sequence number that wrote it)
//! 9       32    random salt
//! 41      12    random nonce
//! 53      n+16  AES-256-GCM ciphertext and tag
//! ```
//!
//! The record key is HKDF-SHA256(salt, domain key, "ekms/v1/record") (RFC 5869), fresh per
//! record. The AAD is `"ekms/v1/record" ‖ kind ‖ u32 id length ‖ id ‖ header`: a record moved
//! to another id or kind, given another generation, or altered in any byte fails to open.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::hkdf;
use zeroize::Zeroizing;

use super::{DomainKey, RecordKind};
use crate::env::Entropy;
use crate::error::KmsError;

const FORMAT_V1: u8 = 1;
const HEADER_LEN: usize = 1 + 8 + 32 + 12;
const TAG_LEN: usize = 16;
const LABEL: &[u8] = b"ekms/v1/record";

/// A sealed record could not be opened.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    /// Too short, or an unknown format version.
    #[error("not a sealed record of a known format")]
    Format,
    /// Authentication failed: altered, moved to another id, or sealed under another domain key.
    #[error("authentication failed (altered, moved, or another domain key)")]
    Authentication,
}

fn record_key(domain: &DomainKey, salt: &[u8]) -> Result<LessSafeKey, KmsError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(domain.expose_secret());
    let okm = prk
        .expand(&[LABEL], &AES_256_GCM)
        .map_err(|_| KmsError::Internal("hkdf expand"))?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

fn aad(kind: RecordKind, id: &[u8], header: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(LABEL.len() + 1 + 4 + id.len() + header.len());
    aad.extend_from_slice(LABEL);
    aad.push(kind as u8);
    aad.extend_from_slice(&u32::try_from(id.len()).unwrap_or(u32::MAX).to_be_bytes());
    aad.extend_from_slice(id);
    aad.extend_from_slice(header);
    aad
}

/// Seals `plaintext` as record (`kind`, `id`) at `generation`.
///
/// # Errors
/// [`KmsError::Internal`] if the random source or the cipher fails.
pub fn seal(
    domain: &DomainKey,
    kind: RecordKind,
    id: &[u8],
    generation: u64,
    plaintext: &[u8],
    entropy: &dyn Entropy,
) -> Result<Vec<u8>, KmsError> {
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    out.push(FORMAT_V1);
    out.extend_from_slice(&generation.to_be_bytes());
    let mut salt_nonce = [0u8; 44];
    entropy.fill(&mut salt_nonce)?;
    out.extend_from_slice(&salt_nonce);
    let key = record_key(domain, &salt_nonce[..32])?;
    let nonce = Nonce::try_assume_unique_for_key(&salt_nonce[32..])
        .map_err(|_| KmsError::Internal("nonce"))?;
    let aad = aad(kind, id, &out);
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(nonce, Aad::from(aad), &mut out[HEADER_LEN..])
        .map_err(|_| KmsError::Internal("seal"))?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// The generation a sealed record claims (authenticated only once [`open`] succeeds).
///
/// # Errors
/// [`OpenError::Format`] for a short record or unknown version.
pub fn claimed_generation(sealed: &[u8]) -> Result<u64, OpenError> {
    if sealed.len() < HEADER_LEN + TAG_LEN || sealed.first() != Some(&FORMAT_V1) {
        return Err(OpenError::Format);
    }
    let generation: [u8; 8] = sealed
        .get(1..9)
        .and_then(|b| b.try_into().ok())
        .ok_or(OpenError::Format)?;
    Ok(u64::from_be_bytes(generation))
}

/// Opens record (`kind`, `id`); returns its authenticated generation and plaintext.
///
/// # Errors
/// [`OpenError`] for any failure.
pub fn open(
    domain: &DomainKey,
    kind: RecordKind,
    id: &[u8],
    sealed: &[u8],
) -> Result<(u64, Zeroizing<Vec<u8>>), OpenError> {
    let generation = claimed_generation(sealed)?;
    let (header, body) = sealed.split_at(HEADER_LEN);
    let key = record_key(domain, &header[9..41]).map_err(|_| OpenError::Authentication)?;
    let nonce = Nonce::try_assume_unique_for_key(&header[41..53]).map_err(|_| OpenError::Format)?;
    let mut buf = Zeroizing::new(body.to_vec());
    let len = key
        .open_in_place(nonce, Aad::from(aad(kind, id, header)), &mut buf)
        .map_err(|_| OpenError::Authentication)?
        .len();
    buf.truncate(len);
    Ok((generation, buf))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::env::OsEntropy;

    fn dk(b: u8) -> DomainKey {
        DomainKey::new(Zeroizing::new([b; 32]))
    }

    #[test]
    fn round_trip_and_bindings() {
        let e = OsEntropy::default();
        let sealed = seal(&dk(1), RecordKind::Key, b"id-1", 42, b"payload", &e).unwrap();
        let (generation, plain) = open(&dk(1), RecordKind::Key, b"id-1", &sealed).unwrap();
        assert_eq!((generation, &plain[..]), (42, &b"payload"[..]));
        // Another id, kind or domain key: refused.
        assert_eq!(
            open(&dk(1), RecordKind::Key, b"id-2", &sealed),
            Err(OpenError::Authentication)
        );
        assert_eq!(
            open(&dk(1), RecordKind::Alias, b"id-1", &sealed),
            Err(OpenError::Authentication)
        );
        assert_eq!(
            open(&dk(2), RecordKind::Key, b"id-1", &sealed),
            Err(OpenError::Authentication)
        );
        // A rewritten generation is refused too.
        let mut older = sealed.clone();
        older[8] ^= 1;
        assert_eq!(
            open(&dk(1), RecordKind::Key, b"id-1", &older),
            Err(OpenError::Authentication)
        );
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x80;
            assert!(
                open(&dk(1), RecordKind::Key, b"id-1", &bad).is_err(),
                "byte {i}"
            );
        }
        assert_eq!(
            open(&dk(1), RecordKind::Key, b"id-1", &sealed[..10]),
            Err(OpenError::Format)
        );
    }
}
