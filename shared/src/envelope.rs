//! Envelopes: a payload encrypted to one P-384 public key, bound to its purpose.
//!
//! ECIES-style hybrid encryption (the shape of SEC 1 v2 §5.1, with HKDF and an AEAD), built
//! only from RustCrypto primitives:
//!
//! 1. an ephemeral P-384 key pair from the OS RNG;
//! 2. ECDH with the recipient's static key; the shared secret is the x-coordinate
//!    (SEC 1 v2 §3.3.1);
//! 3. HKDF-SHA384 (RFC 5869): salt = ephemeral public key ‖ recipient public key (both SEC 1
//!    uncompressed), info = `"ekms/v1/envelope/"` ‖ [`Purpose::label`] → a 32-byte key;
//! 4. AES-256-GCM (NIST SP 800-38D), random 12-byte nonce, AAD = version ‖ ephemeral public
//!    key ‖ the caller's AAD.
//!
//! Wire format ([`Envelope`]): `version (1) ‖ ephemeral public key (97) ‖ nonce (12) ‖
//! ciphertext ‖ tag (16)`.
//!
//! A key is fresh per envelope (new ephemeral key), so a random nonce never repeats under one
//! key. The purpose is in the key derivation and the caller's context in the AAD: an envelope
//! made for one use (a custodian's share at rest) does not open as another (an unseal
//! submission), nor for another deployment or share index. Every failure to open is the same
//! opaque [`EnvelopeError::Open`], whichever check failed (STYLE rule 6).
//!
//! This module also holds the PEM/DER codecs for P-384 keys that custodians, the enclave and the
//! operator's tool exchange: SubjectPublicKeyInfo (RFC 5280) for public keys, PKCS #8 (RFC 5208)
//! for secret keys.

use aes_gcm::aead::{AeadInPlace, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use p384::ecdh::EphemeralSecret;
use p384::elliptic_curve::rand_core::CryptoRngCore;
use p384::elliptic_curve::sec1::ToEncodedPoint;
use p384::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use p384::{PublicKey, SecretKey};
use sha2::Sha384;
use zeroize::Zeroizing;

/// The only envelope format version. Anything else is refused before a key is touched.
pub const VERSION: u8 = 1;
/// A SEC 1 uncompressed P-384 point: `0x04 ‖ x (48) ‖ y (48)`.
pub const EPHEMERAL_PUBLIC_KEY_LEN: usize = 97;
/// AES-GCM nonce length (NIST SP 800-38D §8.2.2: 96-bit random IV).
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Version, ephemeral key, nonce and tag: the size of an envelope of an empty plaintext.
pub const OVERHEAD: usize = 1 + EPHEMERAL_PUBLIC_KEY_LEN + NONCE_LEN + TAG_LEN;

const HEADER_LEN: usize = 1 + EPHEMERAL_PUBLIC_KEY_LEN;
const INFO_PREFIX: &[u8] = b"ekms/v1/envelope/";

/// What an envelope is for. Each purpose derives a different key, so an envelope made for one
/// purpose does not open as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// A custodian's Shamir share at rest, sealed to the custodian's key (`share-N.json`).
    Share,
    /// A share re-encrypted by its custodian to the enclave's attested ephemeral key.
    Unseal,
    /// The first admin principal's secret, sealed to the init client's ephemeral key.
    AdminCredentials,
    /// The domain key, released by a running enclave to an attested peer that joins.
    Join,
}

impl Purpose {
    /// The fixed label that goes into the HKDF info after `"ekms/v1/envelope/"`. Never change a
    /// label: envelopes already written would no longer open.
    pub const fn label(self) -> &'static [u8] {
        match self {
            Purpose::Share => b"custodian-share",
            Purpose::Unseal => b"unseal-share",
            Purpose::AdminCredentials => b"admin-credentials",
            Purpose::Join => b"join-domain-key",
        }
    }
}

/// A sealed envelope: `version ‖ ephemeral public key ‖ nonce ‖ ciphertext ‖ tag`. Public data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope(Vec<u8>);

impl Envelope {
    /// The serialized envelope.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The serialized envelope, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl AsRef<[u8]> for Envelope {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Envelope failures.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The envelope did not open: wrong recipient, purpose or AAD, unknown version, malformed,
    /// truncated or altered. Deliberately says no more (no oracle on which check failed).
    #[error("the envelope could not be opened")]
    Open,
    /// Encryption refused the plaintext (longer than AES-GCM allows).
    #[error("the envelope could not be sealed")]
    Seal(#[source] aes_gcm::Error),
    /// The operating system's random number generator failed.
    #[error("the OS random number generator failed")]
    Rng(#[source] p384::elliptic_curve::rand_core::Error),
}

/// Encrypt `plaintext` to `recipient` for `purpose`, authenticating `aad` (which the opener
/// must pass again; it is not carried in the envelope). Randomness comes from the OS.
///
/// # Errors
///
/// [`EnvelopeError::Rng`] if the OS RNG fails; [`EnvelopeError::Seal`] if the plaintext is
/// longer than AES-GCM allows (about 64 GiB).
pub fn seal_to(
    recipient: &PublicKey,
    purpose: &Purpose,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Envelope, EnvelopeError> {
    seal_to_with_rng(&mut OsRng, recipient, purpose, aad, plaintext)
}

/// [`seal_to`] with the random source given: for an `Env` that injects it, and for tests.
/// `rng` must be a cryptographically secure generator.
///
/// # Errors
///
/// As [`seal_to`].
pub fn seal_to_with_rng(
    rng: &mut impl CryptoRngCore,
    recipient: &PublicKey,
    purpose: &Purpose,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Envelope, EnvelopeError> {
    let ephemeral = EphemeralSecret::random(rng);
    let ephemeral_public = ephemeral.public_key().to_encoded_point(false);
    let mut nonce = [0u8; NONCE_LEN];
    rng.try_fill_bytes(&mut nonce).map_err(EnvelopeError::Rng)?;

    let shared = ephemeral.diffie_hellman(recipient);
    let cipher = derive_cipher(
        shared.raw_secret_bytes(),
        ephemeral_public.as_bytes(),
        recipient,
        *purpose,
    );

    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.push(VERSION);
    out.extend_from_slice(ephemeral_public.as_bytes());
    debug_assert_eq!(out.len(), HEADER_LEN);
    let full_aad = [&out[..], aad].concat();
    out.extend_from_slice(&nonce);

    let mut buffer = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
    buffer.extend_from_slice(plaintext);
    cipher
        .encrypt_in_place(Nonce::from_slice(&nonce), &full_aad, &mut *buffer)
        .map_err(EnvelopeError::Seal)?;
    out.extend_from_slice(&buffer);
    Ok(Envelope(out))
}

/// Open an envelope made by [`seal_to`] for `recipient`'s public key, with the same `purpose`
/// and `aad`.
///
/// # Errors
///
/// [`EnvelopeError::Open`], and nothing more specific, on any failure: unknown version,
/// truncated or malformed input, an invalid ephemeral point, another recipient, purpose or AAD,
/// or any altered byte.
pub fn open(
    recipient: &SecretKey,
    purpose: &Purpose,
    aad: &[u8],
    envelope: &[u8],
) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    if envelope.len() < OVERHEAD {
        return Err(EnvelopeError::Open);
    }
    let (header, rest) = envelope.split_at(HEADER_LEN);
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    // An unknown version is refused before any key is touched (STYLE rule 10).
    if header[0] != VERSION {
        return Err(EnvelopeError::Open);
    }
    let ephemeral_bytes = &header[1..];
    // Only the uncompressed encoding is accepted, so one point has one envelope encoding.
    // `from_sec1_bytes` refuses the identity and points off the curve.
    if ephemeral_bytes[0] != 0x04 {
        return Err(EnvelopeError::Open);
    }
    let ephemeral =
        PublicKey::from_sec1_bytes(ephemeral_bytes).map_err(|_: p384::elliptic_curve::Error| {
            // Opaque on purpose: every open failure is the same error.
            EnvelopeError::Open
        })?;

    let shared = p384::ecdh::diffie_hellman(recipient.to_nonzero_scalar(), ephemeral.as_affine());
    let cipher = derive_cipher(
        shared.raw_secret_bytes(),
        ephemeral_bytes,
        &recipient.public_key(),
        *purpose,
    );

    let full_aad = [header, aad].concat();
    let mut buffer = Zeroizing::new(ciphertext.to_vec());
    cipher
        .decrypt_in_place(Nonce::from_slice(nonce), &full_aad, &mut *buffer)
        // Opaque on purpose: `aead::Error` carries nothing, and neither does `Open`.
        .map_err(|_: aes_gcm::Error| EnvelopeError::Open)?;
    Ok(buffer)
}

/// HKDF-SHA384 (RFC 5869) from the ECDH x-coordinate to the AES-256-GCM key.
fn derive_cipher(
    shared_x: &[u8],
    ephemeral_sec1: &[u8],
    recipient: &PublicKey,
    purpose: Purpose,
) -> Aes256Gcm {
    let recipient_sec1 = recipient.to_encoded_point(false);
    let salt = [ephemeral_sec1, recipient_sec1.as_bytes()].concat();
    let info = [INFO_PREFIX, purpose.label()].concat();
    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha384>::new(Some(&salt), shared_x)
        .expand(&info, &mut key[..])
        .expect("invariant: 32 bytes is far below HKDF-SHA384's 255 * 48 byte output limit");
    Aes256Gcm::new(aes_gcm::Key::<Aes256Gcm>::from_slice(&key[..]))
}

/// Errors decoding or encoding P-384 keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyFormatError {
    /// Not a P-384 SubjectPublicKeyInfo (DER or PEM), or a point not on the curve.
    #[error("not a P-384 public key (SubjectPublicKeyInfo)")]
    PublicKey(#[source] p384::pkcs8::spki::Error),
    /// Not a P-384 PKCS #8 private key (DER or PEM), or a scalar out of range.
    #[error("not a P-384 private key (PKCS #8)")]
    SecretKey(#[source] p384::pkcs8::Error),
}

/// Decode a DER SubjectPublicKeyInfo (RFC 5280 §4.1.2.7; id-ecPublicKey, secp384r1).
///
/// # Errors
///
/// [`KeyFormatError::PublicKey`] if it is not a valid P-384 public key.
pub fn public_key_from_spki_der(der: &[u8]) -> Result<PublicKey, KeyFormatError> {
    PublicKey::from_public_key_der(der).map_err(KeyFormatError::PublicKey)
}

/// Encode a public key as DER SubjectPublicKeyInfo (uncompressed point).
///
/// # Errors
///
/// [`KeyFormatError::PublicKey`] if encoding fails (not expected for a valid key).
pub fn public_key_to_spki_der(key: &PublicKey) -> Result<Vec<u8>, KeyFormatError> {
    Ok(key
        .to_public_key_der()
        .map_err(KeyFormatError::PublicKey)?
        .into_vec())
}

/// Decode a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
///
/// # Errors
///
/// [`KeyFormatError::PublicKey`] if it is not a PEM P-384 public key.
pub fn public_key_from_pem(pem: &str) -> Result<PublicKey, KeyFormatError> {
    PublicKey::from_public_key_pem(pem).map_err(KeyFormatError::PublicKey)
}

/// Encode a public key as PEM `PUBLIC KEY` (SubjectPublicKeyInfo), LF line endings.
///
/// # Errors
///
/// [`KeyFormatError::PublicKey`] if encoding fails (not expected for a valid key).
pub fn public_key_to_pem(key: &PublicKey) -> Result<String, KeyFormatError> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(KeyFormatError::PublicKey)
}

/// Decode a PEM `PRIVATE KEY` (PKCS #8, RFC 5208) holding a P-384 key.
///
/// # Errors
///
/// [`KeyFormatError::SecretKey`] if it is not a PEM PKCS #8 P-384 private key.
pub fn secret_key_from_pkcs8_pem(pem: &str) -> Result<SecretKey, KeyFormatError> {
    SecretKey::from_pkcs8_pem(pem).map_err(KeyFormatError::SecretKey)
}

/// Encode a secret key as PEM `PRIVATE KEY` (PKCS #8), LF line endings. The result is
/// wiped on drop.
///
/// # Errors
///
/// [`KeyFormatError::SecretKey`] if encoding fails (not expected for a valid key).
pub fn secret_key_to_pkcs8_pem(key: &SecretKey) -> Result<Zeroizing<String>, KeyFormatError> {
    key.to_pkcs8_pem(LineEnding::LF)
        .map_err(KeyFormatError::SecretKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_pair() -> (SecretKey, PublicKey) {
        let secret = SecretKey::random(&mut OsRng);
        let public = secret.public_key();
        (secret, public)
    }

    const AAD: &[u8] = b"deployment-1\x00\x03";
    const MESSAGE: &[u8] = b"thirty-two bytes of share value!";

    #[test]
    fn round_trip() {
        let (secret, public) = key_pair();
        let envelope = seal_to(&public, &Purpose::Share, AAD, MESSAGE).expect("seal");
        assert_eq!(envelope.as_bytes().len(), OVERHEAD + MESSAGE.len());
        assert_eq!(envelope.as_bytes()[0], VERSION);
        let opened = open(&secret, &Purpose::Share, AAD, envelope.as_bytes()).expect("open");
        assert_eq!(&opened[..], MESSAGE);
    }

    #[test]
    fn empty_plaintext_and_empty_aad_round_trip() {
        let (secret, public) = key_pair();
        let envelope = seal_to(&public, &Purpose::Join, b"", b"").expect("seal");
        assert_eq!(envelope.as_bytes().len(), OVERHEAD);
        let opened = open(&secret, &Purpose::Join, b"", envelope.as_bytes()).expect("open");
        assert!(opened.is_empty());
    }

    #[test]
    fn two_seals_of_the_same_message_differ() {
        let (_, public) = key_pair();
        let a = seal_to(&public, &Purpose::Share, AAD, MESSAGE).expect("seal");
        let b = seal_to(&public, &Purpose::Share, AAD, MESSAGE).expect("seal");
        assert_ne!(a, b);
    }

    #[test]
    fn every_flipped_bit_fails() {
        let (secret, public) = key_pair();
        let envelope = seal_to(&public, &Purpose::Unseal, AAD, MESSAGE).expect("seal");
        let bytes = envelope.into_bytes();
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut tampered = bytes.clone();
                tampered[i] ^= bit;
                assert!(
                    matches!(
                        open(&secret, &Purpose::Unseal, AAD, &tampered),
                        Err(EnvelopeError::Open)
                    ),
                    "byte {i} bit {bit:#x} flipped still opened"
                );
            }
        }
    }

    #[test]
    fn wrong_purpose_fails() {
        let (secret, public) = key_pair();
        let all = [
            Purpose::Share,
            Purpose::Unseal,
            Purpose::AdminCredentials,
            Purpose::Join,
        ];
        for sealed_for in all {
            let envelope = seal_to(&public, &sealed_for, AAD, MESSAGE).expect("seal");
            for opened_as in all {
                let result = open(&secret, &opened_as, AAD, envelope.as_bytes());
                if sealed_for == opened_as {
                    assert!(result.is_ok());
                } else {
                    assert!(matches!(result, Err(EnvelopeError::Open)));
                }
            }
        }
    }

    #[test]
    fn purpose_labels_are_distinct() {
        let labels = [
            Purpose::Share.label(),
            Purpose::Unseal.label(),
            Purpose::AdminCredentials.label(),
            Purpose::Join.label(),
        ];
        for (i, a) in labels.iter().enumerate() {
            for b in &labels[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn wrong_aad_fails() {
        let (secret, public) = key_pair();
        let envelope = seal_to(&public, &Purpose::Share, AAD, MESSAGE).expect("seal");
        for aad in [
            &b""[..],
            b"deployment-1\x00\x04",
            b"deployment-2\x00\x03",
            b"deployment-1\x00\x03\x00",
        ] {
            assert!(matches!(
                open(&secret, &Purpose::Share, aad, envelope.as_bytes()),
                Err(EnvelopeError::Open)
            ));
        }
    }

    #[test]
    fn wrong_recipient_fails() {
        let (_, public) = key_pair();
        let (other_secret, _) = key_pair();
        let envelope = seal_to(&public, &Purpose::Share, AAD, MESSAGE).expect("seal");
        assert!(matches!(
            open(&other_secret, &Purpose::Share, AAD, envelope.as_bytes()),
            Err(EnvelopeError::Open)
        ));
    }

    #[test]
    fn truncated_and_extended_inputs_fail_without_panic() {
        let (secret, public) = key_pair();
        let envelope = seal_to(&public, &Purpose::Share, AAD, MESSAGE).expect("seal");
        let bytes = envelope.as_bytes();
        for len in 0..bytes.len() {
            assert!(matches!(
                open(&secret, &Purpose::Share, AAD, &bytes[..len]),
                Err(EnvelopeError::Open)
            ));
        }
        let mut extended = bytes.to_vec();
        extended.push(0);
        assert!(matches!(
            open(&secret, &Purpose::Share, AAD, &extended),
            Err(EnvelopeError::Open)
        ));
    }

    #[test]
    fn malformed_ephemeral_keys_fail() {
        let (secret, public) = key_pair();
        let envelope = seal_to(&public, &Purpose::Share, AAD, MESSAGE).expect("seal");
        let bytes = envelope.into_bytes();

        // The compressed form of the same point: refused (one encoding per point).
        let ephemeral = PublicKey::from_sec1_bytes(&bytes[1..HEADER_LEN]).expect("valid point");
        let compressed = ephemeral.to_encoded_point(true);
        let mut with_compressed = vec![VERSION];
        with_compressed.extend_from_slice(compressed.as_bytes());
        with_compressed.resize(HEADER_LEN, 0);
        with_compressed.extend_from_slice(&bytes[HEADER_LEN..]);
        assert!(open(&secret, &Purpose::Share, AAD, &with_compressed).is_err());

        // All zeros, all ones, and a point not on the curve.
        for fill in [0x00u8, 0xff] {
            let mut tampered = bytes.clone();
            tampered[2..HEADER_LEN].fill(fill);
            assert!(open(&secret, &Purpose::Share, AAD, &tampered).is_err());
        }
    }

    #[test]
    fn unknown_versions_fail() {
        let (secret, public) = key_pair();
        let mut bytes = seal_to(&public, &Purpose::Share, AAD, MESSAGE)
            .expect("seal")
            .into_bytes();
        for version in [0u8, 2, 0xff] {
            bytes[0] = version;
            assert!(matches!(
                open(&secret, &Purpose::Share, AAD, &bytes),
                Err(EnvelopeError::Open)
            ));
        }
    }

    #[test]
    fn spki_der_and_pem_round_trip() {
        let (secret, public) = key_pair();
        let der = public_key_to_spki_der(&public).expect("der");
        assert_eq!(public_key_from_spki_der(&der).expect("parse"), public);
        let pem = public_key_to_pem(&public).expect("pem");
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert_eq!(public_key_from_pem(&pem).expect("parse"), public);

        let secret_pem = secret_key_to_pkcs8_pem(&secret).expect("pem");
        assert!(secret_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let parsed = secret_key_from_pkcs8_pem(&secret_pem).expect("parse");
        assert_eq!(parsed.public_key(), public);
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(public_key_from_spki_der(b"").is_err());
        assert!(public_key_from_spki_der(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_err());
        assert!(public_key_from_pem(
            "-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n"
        )
        .is_err());
        assert!(secret_key_from_pkcs8_pem("not pem").is_err());
        // A P-256 key is not a P-384 key.
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("p256");
        assert!(public_key_from_spki_der(&p256.public_key_der()).is_err());
        assert!(secret_key_from_pkcs8_pem(&p256.serialize_pem()).is_err());
    }
}
