//! The symmetric ciphertext blob.
//!
//! ```text
//! offset  size  field
//! 0       1     format version (1)
//! 1       16    key id (UUID bytes)
//! 17      4     key version index, big-endian
//! 21      32    random salt
//! 53      12    random nonce
//! 65      n     AES-256-GCM ciphertext
//! 65+n    16    GCM tag
//! ```
//!
//! The per-message key is HKDF-SHA256(salt, key version material, info = "ekms/v1/message-key")
//! (RFC 5869), so each message uses a fresh AES key and the random-nonce bound of plain GCM
//! (NIST SP 800-38D §8.3) applies per message, not per KMS key. The AAD is the whole 65-byte
//! header followed by the canonical encoding of the encryption context: everything that is not
//! secret is authenticated. Every failure to open is the same opaque error.

use std::collections::BTreeMap;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::hkdf;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::env::Entropy;
use crate::error::{KmsError, KmsResult};
use crate::keys::KeyMaterial;

/// The only format version this build writes and reads.
pub const FORMAT_V1: u8 = 1;
/// Header length: version, key id, key version, salt, nonce.
pub const HEADER_LEN: usize = 1 + 16 + 4 + 32 + 12;
/// GCM tag length.
pub const TAG_LEN: usize = 16;
/// Bytes a blob adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

const MESSAGE_KEY_INFO: &[u8] = b"ekms/v1/message-key";

/// An encryption context: string pairs, canonically sorted by key.
pub type EncryptionContext = BTreeMap<String, String>;

/// The header fields of a parsed blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Which key encrypted it.
    pub key_id: Uuid,
    /// Which version of that key's material.
    pub key_version: u32,
}

/// A blob whose header has been parsed but whose ciphertext is not yet opened.
#[derive(Debug)]
pub struct ParsedBlob<'a> {
    /// The header fields.
    pub header: Header,
    raw: &'a [u8],
}

/// Canonical encoding of an encryption context: a u32 count, then for each pair in key order
/// the u32 length and bytes of the key, then of the value (all lengths big-endian).
pub fn canonical_context(context: &EncryptionContext) -> Vec<u8> {
    let size = 4 + context
        .iter()
        .map(|(k, v)| 8 + k.len() + v.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&len_u32(context.len()).to_be_bytes());
    for (k, v) in context {
        out.extend_from_slice(&len_u32(k.len()).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&len_u32(v.len()).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

fn len_u32(n: usize) -> u32 {
    // Contexts are bounded far below 4 GiB by the request size limit.
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn message_key(material: &KeyMaterial, salt: &[u8]) -> KmsResult<LessSafeKey> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(material.expose_secret());
    let okm = prk
        .expand(&[MESSAGE_KEY_INFO], &AES_256_GCM)
        .map_err(|_| KmsError::Internal("hkdf expand"))?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

fn aad(header: &[u8], context: &EncryptionContext) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + 64);
    aad.extend_from_slice(header);
    aad.extend_from_slice(&canonical_context(context));
    aad
}

/// Encrypts `plaintext` under one version of a key.
///
/// # Errors
/// [`KmsError::Internal`] if the random source or the cipher fails.
pub fn seal(
    material: &KeyMaterial,
    header: Header,
    context: &EncryptionContext,
    plaintext: &[u8],
    entropy: &dyn Entropy,
) -> KmsResult<Vec<u8>> {
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(header.key_id.as_bytes());
    out.extend_from_slice(&header.key_version.to_be_bytes());
    let mut salt_nonce = [0u8; 32 + 12];
    entropy.fill(&mut salt_nonce)?;
    out.extend_from_slice(&salt_nonce);
    let (salt, nonce) = salt_nonce.split_at(32);
    let key = message_key(material, salt)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KmsError::Internal("nonce"))?;
    let aad = aad(&out, context);
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(nonce, Aad::from(&aad), &mut out[HEADER_LEN..])
        .map_err(|_| KmsError::Internal("seal"))?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Parses the header of a blob without touching any key.
///
/// # Errors
/// `InvalidCiphertextException` for a short blob or an unknown version.
pub fn parse(blob: &[u8]) -> KmsResult<ParsedBlob<'_>> {
    if blob.len() < OVERHEAD || blob.first() != Some(&FORMAT_V1) {
        return Err(KmsError::InvalidCiphertext);
    }
    let id: [u8; 16] = blob
        .get(1..17)
        .and_then(|b| b.try_into().ok())
        .ok_or(KmsError::InvalidCiphertext)?;
    let version: [u8; 4] = blob
        .get(17..21)
        .and_then(|b| b.try_into().ok())
        .ok_or(KmsError::InvalidCiphertext)?;
    Ok(ParsedBlob {
        header: Header {
            key_id: Uuid::from_bytes(id),
            key_version: u32::from_be_bytes(version),
        },
        raw: blob,
    })
}

impl ParsedBlob<'_> {
    /// Opens the blob with the material of the key version its header names.
    ///
    /// # Errors
    /// `InvalidCiphertextException` for any failure, always the same.
    pub fn open(
        &self,
        material: &KeyMaterial,
        context: &EncryptionContext,
    ) -> KmsResult<Zeroizing<Vec<u8>>> {
        let (header, body) = self.raw.split_at(HEADER_LEN);
        let salt = header.get(21..53).ok_or(KmsError::InvalidCiphertext)?;
        let nonce = header.get(53..65).ok_or(KmsError::InvalidCiphertext)?;
        let key = message_key(material, salt)?;
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| KmsError::InvalidCiphertext)?;
        let mut buf = Zeroizing::new(body.to_vec());
        let plain_len = key
            .open_in_place(nonce, Aad::from(aad(header, context)), &mut buf)
            .map_err(|_| KmsError::InvalidCiphertext)?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::env::OsEntropy;

    fn material(byte: u8) -> KeyMaterial {
        KeyMaterial::symmetric(&Zeroizing::new([byte; 32]))
    }

    fn header() -> Header {
        Header {
            key_id: Uuid::from_bytes([7; 16]),
            key_version: 3,
        }
    }

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn round_trip_and_layout() {
        let m = material(1);
        let c = ctx(&[("b", "2"), ("a", "1")]);
        let blob = seal(&m, header(), &c, b"hello", &OsEntropy::default()).unwrap();
        assert_eq!(blob.len(), OVERHEAD + 5);
        assert_eq!(blob[0], FORMAT_V1);
        assert_eq!(&blob[1..17], &[7; 16]);
        assert_eq!(&blob[17..21], &3u32.to_be_bytes());
        let parsed = parse(&blob).unwrap();
        assert_eq!(parsed.header, header());
        assert_eq!(&parsed.open(&m, &c).unwrap()[..], b"hello");
    }

    #[test]
    fn two_encryptions_differ() {
        let m = material(1);
        let e = OsEntropy::default();
        let a = seal(&m, header(), &ctx(&[]), b"same", &e).unwrap();
        let b = seal(&m, header(), &ctx(&[]), b"same", &e).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn every_flipped_byte_fails() {
        let m = material(9);
        let c = ctx(&[("purpose", "test")]);
        let blob = seal(&m, header(), &c, b"secret data", &OsEntropy::default()).unwrap();
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x01;
            let result = parse(&bad).and_then(|p| p.open(&m, &c));
            assert!(
                matches!(result, Err(KmsError::InvalidCiphertext)),
                "byte {i} flipped still opened"
            );
        }
    }

    #[test]
    fn wrong_context_key_or_truncation_fails() {
        let m = material(9);
        let c = ctx(&[("purpose", "test")]);
        let blob = seal(&m, header(), &c, b"secret data", &OsEntropy::default()).unwrap();
        let p = parse(&blob).unwrap();
        for other in [
            ctx(&[]),
            ctx(&[("purpose", "other")]),
            ctx(&[("purpose", "test"), ("x", "")]),
        ] {
            assert!(matches!(
                p.open(&m, &other),
                Err(KmsError::InvalidCiphertext)
            ));
        }
        assert!(matches!(
            p.open(&material(8), &c),
            Err(KmsError::InvalidCiphertext)
        ));
        assert!(matches!(
            parse(&blob[..OVERHEAD - 1]),
            Err(KmsError::InvalidCiphertext)
        ));
        assert!(matches!(
            parse(&blob[..blob.len() - 1]).and_then(|p| p.open(&m, &c)),
            Err(KmsError::InvalidCiphertext)
        ));
    }

    #[test]
    fn canonical_context_is_unambiguous() {
        // {"ab": "c"} and {"a": "bc"} must not encode the same.
        assert_ne!(
            canonical_context(&ctx(&[("ab", "c")])),
            canonical_context(&ctx(&[("a", "bc")]))
        );
        assert_eq!(
            canonical_context(&ctx(&[("k", "v")])),
            [&[0, 0, 0, 1][..], &[0, 0, 0, 1], b"k", &[0, 0, 0, 1], b"v"].concat()
        );
    }
}
