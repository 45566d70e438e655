//! Import of key material (BYOK): wrapping key pairs and import tokens.
//!
//! GetParametersForImport makes an RSA wrapping key pair inside the enclave and hands out its
//! public half with an import token; ImportKeyMaterial redeems the token and unwraps the
//! material with the private half. Tokens and wrapping keys live in memory only: a restart
//! invalidates every outstanding token (the importer asks again), and a private wrapping key
//! never leaves this module.
//!
//! - A token is single use: redeeming it removes it, whether the import then succeeds or not,
//!   so an attacker never gets a second query against the same RSA key (no padding oracle).
//! - A token is valid 24 hours on the enclave clock, as in AWS KMS.
//! - At most [`MAX_OUTSTANDING`] tokens exist at once; expired ones are dropped first.
//!
//! RSA is aws-lc-rs (constant-time private-key operations; the `rsa` crate carries
//! RUSTSEC-2023-0071). The key wrap of RSA_AES_KEY_WRAP_* is AES key wrap with padding
//! (RFC 5649), also aws-lc-rs. Key generation and OAEP padding draw on aws-lc's own random
//! source, which the API does not let us replace with [`crate::env::Entropy`].

use std::collections::HashMap;
use std::sync::Mutex;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::key_wrap::{AesKek, KeyWrapPadded as _, AES_128, AES_256};
use aws_lc_rs::rsa::{
    KeySize, OaepAlgorithm, OaepPrivateDecryptingKey, PrivateDecryptingKey, OAEP_SHA1_MGF1SHA1,
    OAEP_SHA256_MGF1SHA256,
};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::env::Millis;
use crate::keys::{KeyMaterial, KeySpec};

/// How long import parameters are valid: 24 hours, as in AWS KMS.
pub const TOKEN_VALIDITY_MS: Millis = 24 * 60 * 60 * 1000;
/// Most import tokens outstanding at once (each holds an RSA private key, up to 4096 bits).
pub const MAX_OUTSTANDING: usize = 256;
/// Length of an import token, random bytes from the enclave's random source.
pub const TOKEN_LEN: usize = 32;

/// What went wrong with an import. Unwrapping failures are deliberately opaque.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The token is not one this enclave issued (or it was used, or the enclave restarted),
    /// or it was issued for another key.
    #[error("import token not recognized")]
    InvalidToken,
    /// The token's 24 hours have passed.
    #[error("import token expired")]
    ExpiredToken,
    /// [`MAX_OUTSTANDING`] tokens are outstanding.
    #[error("too many outstanding import tokens")]
    TooMany,
    /// The encrypted key material did not unwrap. Says nothing about which step failed.
    #[error("the encrypted key material does not unwrap")]
    Unwrap,
    /// aws-lc could not generate the wrapping key.
    #[error("wrapping key generation failed")]
    KeyGeneration,
}

/// Unwrapped key material that is not material of the key's spec.
#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    /// The wrong length, algorithm, curve or modulus size: AWS's IncorrectKeyMaterialException.
    #[error("The key material of a {spec} key must be {expected}.")]
    NotForSpec {
        /// AWS name of the key's spec.
        spec: &'static str,
        /// What material of that spec is.
        expected: String,
    },
    /// AWS-LC parsed the key but could not encode it again.
    #[error("the imported private key could not be re-encoded")]
    Encoding,
}

/// Checks unwrapped material against the spec of the key it is imported into, and answers it
/// in the form the service keeps keys of that spec in: 256 bits for SYMMETRIC_DEFAULT; for
/// HMAC keys, bytes within [`crate::keys::mac::import_len`]; for RSA and ECC keys, a private
/// key of that modulus size or curve in PKCS #8 DER (RFC 5208), re-encoded as
/// [`crate::keys::asym::import_private_key`] does.
///
/// # Errors
/// [`MaterialError::NotForSpec`] for material that is not of `spec` (or a spec nothing is
/// imported into); [`MaterialError::Encoding`] if AWS-LC fails.
pub fn material_for(spec: KeySpec, bytes: Zeroizing<Vec<u8>>) -> Result<KeyMaterial, MaterialError> {
    let not_for_spec = |expected: String| MaterialError::NotForSpec {
        spec: spec.as_str(),
        expected,
    };
    if spec == KeySpec::SymmetricDefault {
        // Lengths are public; the bytes are not.
        return if bytes.len() == 32 {
            Ok(KeyMaterial::new(bytes))
        } else {
            Err(not_for_spec("256 bits (32 bytes)".to_owned()))
        };
    }
    if let Some(lengths) = crate::keys::mac::import_len(spec) {
        return if lengths.contains(&bytes.len()) {
            Ok(KeyMaterial::new(bytes))
        } else {
            Err(not_for_spec(format!(
                "{} to {} bytes",
                lengths.start(),
                lengths.end()
            )))
        };
    }
    if spec.is_rsa() || spec.is_ecc() {
        return match crate::keys::asym::import_private_key(spec, &bytes) {
            Ok(Some(material)) => Ok(material),
            Ok(None) => Err(not_for_spec(format!(
                "a {} private key in PKCS #8 DER",
                spec.as_str()
            ))),
            Err(_) => Err(MaterialError::Encoding),
        };
    }
    Err(not_for_spec("of a kind this service imports".to_owned()))
}

/// AWS `WrappingAlgorithm`s this service accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrappingAlgorithm {
    /// RSAES-OAEP with SHA-1 (and MGF1 with SHA-1).
    RsaesOaepSha1,
    /// RSAES-OAEP with SHA-256 (and MGF1 with SHA-256).
    RsaesOaepSha256,
    /// RSAES-OAEP SHA-1 of an ephemeral AES key, then the material under RFC 5649 key wrap.
    RsaAesKeyWrapSha1,
    /// RSAES-OAEP SHA-256 of an ephemeral AES key, then the material under RFC 5649 key wrap.
    RsaAesKeyWrapSha256,
}

impl WrappingAlgorithm {
    /// Every `WrappingAlgorithm` AWS names (RSAES_PKCS1_V1_5 and SM2PKE are refused).
    pub const AWS_NAMES: &'static [&'static str] = &[
        "RSAES_PKCS1_V1_5",
        "RSAES_OAEP_SHA_1",
        "RSAES_OAEP_SHA_256",
        "RSA_AES_KEY_WRAP_SHA_1",
        "RSA_AES_KEY_WRAP_SHA_256",
        "SM2PKE",
    ];

    /// Parses the AWS spelling of an algorithm this service supports.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "RSAES_OAEP_SHA_1" => Some(Self::RsaesOaepSha1),
            "RSAES_OAEP_SHA_256" => Some(Self::RsaesOaepSha256),
            "RSA_AES_KEY_WRAP_SHA_1" => Some(Self::RsaAesKeyWrapSha1),
            "RSA_AES_KEY_WRAP_SHA_256" => Some(Self::RsaAesKeyWrapSha256),
            _ => None,
        }
    }

    fn oaep(self) -> &'static OaepAlgorithm {
        match self {
            Self::RsaesOaepSha1 | Self::RsaAesKeyWrapSha1 => &OAEP_SHA1_MGF1SHA1,
            Self::RsaesOaepSha256 | Self::RsaAesKeyWrapSha256 => &OAEP_SHA256_MGF1SHA256,
        }
    }

    fn is_key_wrap(self) -> bool {
        matches!(self, Self::RsaAesKeyWrapSha1 | Self::RsaAesKeyWrapSha256)
    }
}

/// AWS `WrappingKeySpec`s this service accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrappingKeySpec {
    /// RSA 2048-bit.
    Rsa2048,
    /// RSA 3072-bit.
    Rsa3072,
    /// RSA 4096-bit.
    Rsa4096,
}

impl WrappingKeySpec {
    /// Every `WrappingKeySpec` AWS names (SM2 is refused).
    pub const AWS_NAMES: &'static [&'static str] = &["RSA_2048", "RSA_3072", "RSA_4096", "SM2"];

    /// Parses the AWS spelling of a spec this service supports.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "RSA_2048" => Some(Self::Rsa2048),
            "RSA_3072" => Some(Self::Rsa3072),
            "RSA_4096" => Some(Self::Rsa4096),
            _ => None,
        }
    }

    fn size(self) -> KeySize {
        match self {
            Self::Rsa2048 => KeySize::Rsa2048,
            Self::Rsa3072 => KeySize::Rsa3072,
            Self::Rsa4096 => KeySize::Rsa4096,
        }
    }
}

/// An RSA wrapping key pair made inside the enclave. No `Debug` of the private half.
pub struct WrappingKey {
    private: OaepPrivateDecryptingKey,
    spki_der: Vec<u8>,
}

impl std::fmt::Debug for WrappingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WrappingKey(..)")
    }
}

impl WrappingKey {
    /// Generates a key pair of `spec`.
    ///
    /// # Errors
    /// [`ImportError::KeyGeneration`] if aws-lc fails.
    pub fn generate(spec: WrappingKeySpec) -> Result<Self, ImportError> {
        let private = PrivateDecryptingKey::generate(spec.size())
            .map_err(|_unspecified| ImportError::KeyGeneration)?;
        let spki_der = private
            .public_key()
            .as_der()
            .map_err(|_unspecified| ImportError::KeyGeneration)?
            .as_ref()
            .to_vec();
        let private = OaepPrivateDecryptingKey::new(private)
            .map_err(|_unspecified| ImportError::KeyGeneration)?;
        Ok(WrappingKey { private, spki_der })
    }

    /// The public half, DER SubjectPublicKeyInfo (RFC 5280 §4.1.2.7), as AWS returns it.
    pub fn public_key_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// Unwraps `encrypted` as `algorithm` says:
    /// - RSAES_OAEP_SHA_*: RSAES-OAEP (RFC 8017 §7.1) of the material itself;
    /// - RSA_AES_KEY_WRAP_SHA_*: RSAES-OAEP of an ephemeral AES key (the first modulus-length
    ///   bytes), followed by the material under AES key wrap with padding (RFC 5649).
    ///
    /// # Errors
    /// [`ImportError::Unwrap`], whichever step failed.
    pub fn unwrap(
        &self,
        algorithm: WrappingAlgorithm,
        encrypted: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, ImportError> {
        let modulus_len = self.private.key_size_bytes();
        let (rsa_part, wrapped) = if algorithm.is_key_wrap() {
            if encrypted.len() <= modulus_len {
                return Err(ImportError::Unwrap);
            }
            encrypted.split_at(modulus_len)
        } else {
            (encrypted, &[][..])
        };
        let mut buffer = Zeroizing::new(vec![0u8; self.private.min_output_size()]);
        let decrypted = self
            .private
            .decrypt(algorithm.oaep(), rsa_part, &mut buffer, None)
            .map_err(|_unspecified| ImportError::Unwrap)?;
        let decrypted = Zeroizing::new(decrypted.to_vec());
        if !algorithm.is_key_wrap() {
            return Ok(decrypted);
        }
        aes_key_unwrap_with_padding(&decrypted, wrapped)
    }
}

/// AES key unwrap with padding (RFC 5649 §4.2) under a 128- or 256-bit key.
///
/// # Errors
/// [`ImportError::Unwrap`] for another key length or an integrity check failure.
pub fn aes_key_unwrap_with_padding(
    kek: &[u8],
    wrapped: &[u8],
) -> Result<Zeroizing<Vec<u8>>, ImportError> {
    let cipher = match kek.len() {
        16 => &AES_128,
        32 => &AES_256,
        _ => return Err(ImportError::Unwrap),
    };
    let kek = AesKek::new(cipher, kek).map_err(|_unspecified| ImportError::Unwrap)?;
    let mut out = Zeroizing::new(vec![0u8; wrapped.len()]);
    let len = kek
        .unwrap_with_padding(wrapped, &mut out)
        .map_err(|_unspecified| ImportError::Unwrap)?
        .len();
    out.truncate(len);
    Ok(out)
}

/// A commitment to key material, its `KeyMaterialId` ([`crate::keys::MaterialId`]), kept after
/// imported material is deleted so that only the same material can be imported again:
/// HMAC-SHA256 keyed by the material over a label and the key id (RFC 2104). It is public (AWS
/// answers material ids) and reveals nothing usable about the material. The label says
/// "imported" for every key's material: stores written before ids were answered keep their
/// commitments as the ids.
pub fn material_commitment(key_id: &Uuid, material: &[u8]) -> [u8; 32] {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, material);
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(b"ekms imported key material commitment v1\0");
    context.update(key_id.as_bytes());
    let tag = context.sign();
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Import parameters that were handed out and not yet redeemed.
struct Pending {
    key_id: Uuid,
    algorithm: WrappingAlgorithm,
    wrapping: WrappingKey,
    valid_to: Millis,
}

/// Every outstanding import token, in memory only.
pub struct Imports {
    pending: Mutex<HashMap<[u8; TOKEN_LEN], Pending>>,
    max: usize,
}

impl Default for Imports {
    fn default() -> Self {
        Imports::with_bound(MAX_OUTSTANDING)
    }
}

impl std::fmt::Debug for Imports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imports").finish_non_exhaustive()
    }
}

impl Imports {
    /// An empty table holding at most `max` tokens.
    pub fn with_bound(max: usize) -> Self {
        Imports {
            pending: Mutex::new(HashMap::new()),
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; TOKEN_LEN], Pending>> {
        // Every change below is a single insert or remove: a poisoned map is still consistent.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records `token` for `key_id`; returns when it stops being valid.
    ///
    /// # Errors
    /// [`ImportError::TooMany`] when the bound ([`MAX_OUTSTANDING`]) of unexpired tokens is
    /// reached.
    pub fn issue(
        &self,
        token: [u8; TOKEN_LEN],
        key_id: Uuid,
        algorithm: WrappingAlgorithm,
        wrapping: WrappingKey,
        now: Millis,
    ) -> Result<Millis, ImportError> {
        let mut pending = self.lock();
        if pending.len() >= self.max {
            pending.retain(|_, p| p.valid_to > now);
        }
        if pending.len() >= self.max {
            return Err(ImportError::TooMany);
        }
        let valid_to = now.saturating_add(TOKEN_VALIDITY_MS);
        pending.insert(
            token,
            Pending {
                key_id,
                algorithm,
                wrapping,
                valid_to,
            },
        );
        Ok(valid_to)
    }

    /// Redeems `token` for `key_id`: removes it (single use, even if the import then fails)
    /// and returns its algorithm and wrapping key.
    ///
    /// # Errors
    /// [`ImportError::InvalidToken`] for an unknown or used token or another key's token,
    /// [`ImportError::ExpiredToken`] once its 24 hours have passed.
    pub fn redeem(
        &self,
        token: &[u8],
        key_id: &Uuid,
        now: Millis,
    ) -> Result<(WrappingAlgorithm, WrappingKey), ImportError> {
        let token: [u8; TOKEN_LEN] = token.try_into().map_err(|_| ImportError::InvalidToken)?;
        // The map is keyed by a random SipHash: lookup time says nothing about other tokens.
        let pending = self
            .lock()
            .remove(&token)
            .ok_or(ImportError::InvalidToken)?;
        if pending.valid_to <= now {
            return Err(ImportError::ExpiredToken);
        }
        // public value
        if pending.key_id != *key_id {
            return Err(ImportError::InvalidToken);
        }
        Ok((pending.algorithm, pending.wrapping))
    }

    /// Number of outstanding tokens (expired ones included until they are dropped).
    pub fn outstanding(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::env::{Clock as _, FixedClock};
    use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey};

    fn wrap_oaep(spki: &[u8], algorithm: &'static OaepAlgorithm, plaintext: &[u8]) -> Vec<u8> {
        let public =
            OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(spki).unwrap()).unwrap();
        let mut out = vec![0u8; public.ciphertext_size()];
        public
            .encrypt(algorithm, plaintext, &mut out, None)
            .unwrap()
            .to_vec()
    }

    /// NIST CAVP key wrap with padding, KWP_AE_256.txt, 248-bit plaintext (as in aws-lc-rs's
    /// own tests). RFC 5649 §6's two examples use a 192-bit KEK, which AWS's
    /// RSA_AES_KEY_WRAP_* never uses (its ephemeral key is 256-bit).
    #[test]
    fn rfc5649_known_answer() {
        let kek = hex::decode("e9bb7f44c7baafbf392ab912589a2f8db53268106eafb74689bb1833136e6113")
            .unwrap();
        let plaintext =
            hex::decode("ffe952604834bff899e63658f34246815c91597eb40a21729e0a8a959b61f2").unwrap();
        let wrapped = hex::decode(
            "15b9f06fbc765e5e3d55d6b824616f21921d2a6918ee7bf1406b524274e170b4a78333ca5ee92af5",
        )
        .unwrap();
        assert_eq!(
            &aes_key_unwrap_with_padding(&kek, &wrapped).unwrap()[..],
            &plaintext[..]
        );
        let mut tampered = wrapped.clone();
        tampered[5] ^= 1;
        assert!(matches!(
            aes_key_unwrap_with_padding(&kek, &tampered),
            Err(ImportError::Unwrap)
        ));
        assert!(matches!(
            aes_key_unwrap_with_padding(&kek[..24], &wrapped),
            Err(ImportError::Unwrap)
        ));
    }

    #[test]
    fn unwraps_every_algorithm() {
        let key = WrappingKey::generate(WrappingKeySpec::Rsa2048).unwrap();
        let material = [7u8; 32];
        for algorithm in [
            WrappingAlgorithm::RsaesOaepSha1,
            WrappingAlgorithm::RsaesOaepSha256,
        ] {
            let wrapped = wrap_oaep(key.public_key_der(), algorithm.oaep(), &material);
            assert_eq!(&key.unwrap(algorithm, &wrapped).unwrap()[..], &material);
        }
        // RSA_AES_KEY_WRAP: OAEP(ephemeral AES-256 key) || KWP(material).
        let ephemeral = [9u8; 32];
        let kek = AesKek::new(&AES_256, &ephemeral).unwrap();
        let mut kwp = vec![0u8; material.len() + 16];
        let kwp = kek.wrap_with_padding(&material, &mut kwp).unwrap().to_vec();
        for algorithm in [
            WrappingAlgorithm::RsaAesKeyWrapSha1,
            WrappingAlgorithm::RsaAesKeyWrapSha256,
        ] {
            let mut wrapped = wrap_oaep(key.public_key_der(), algorithm.oaep(), &ephemeral);
            wrapped.extend_from_slice(&kwp);
            assert_eq!(&key.unwrap(algorithm, &wrapped).unwrap()[..], &material);
        }
        // The wrong OAEP hash does not unwrap.
        let wrapped = wrap_oaep(key.public_key_der(), &OAEP_SHA1_MGF1SHA1, &material);
        assert!(matches!(
            key.unwrap(WrappingAlgorithm::RsaesOaepSha256, &wrapped),
            Err(ImportError::Unwrap)
        ));
    }

    #[test]
    fn tokens_are_single_use_and_expire_after_24_hours() {
        let clock = FixedClock::new(1_700_000_000_000);
        let imports = Imports::default();
        let key = Uuid::from_u128(1);
        let issue = |token: [u8; TOKEN_LEN]| {
            let wrapping = WrappingKey::generate(WrappingKeySpec::Rsa2048).unwrap();
            imports
                .issue(
                    token,
                    key,
                    WrappingAlgorithm::RsaesOaepSha256,
                    wrapping,
                    clock.now_millis(),
                )
                .unwrap()
        };
        let valid_to = issue([1; TOKEN_LEN]);
        assert_eq!(valid_to, clock.now_millis() + TOKEN_VALIDITY_MS);
        imports
            .redeem(&[1; TOKEN_LEN], &key, clock.now_millis())
            .unwrap();
        // Used: gone.
        assert!(matches!(
            imports.redeem(&[1; TOKEN_LEN], &key, clock.now_millis()),
            Err(ImportError::InvalidToken)
        ));
        // Another key's token is refused, and is used up by the attempt.
        issue([2; TOKEN_LEN]);
        assert!(matches!(
            imports.redeem(&[2; TOKEN_LEN], &Uuid::from_u128(2), clock.now_millis()),
            Err(ImportError::InvalidToken)
        ));
        assert!(matches!(
            imports.redeem(&[2; TOKEN_LEN], &key, clock.now_millis()),
            Err(ImportError::InvalidToken)
        ));
        // Valid until the last millisecond before 24 hours, expired at 24 hours.
        issue([3; TOKEN_LEN]);
        issue([4; TOKEN_LEN]);
        clock.advance(TOKEN_VALIDITY_MS - 1);
        imports
            .redeem(&[3; TOKEN_LEN], &key, clock.now_millis())
            .unwrap();
        clock.advance(1);
        assert!(matches!(
            imports.redeem(&[4; TOKEN_LEN], &key, clock.now_millis()),
            Err(ImportError::ExpiredToken)
        ));
        // Malformed tokens are simply unknown.
        assert!(matches!(
            imports.redeem(b"short", &key, clock.now_millis()),
            Err(ImportError::InvalidToken)
        ));
        assert_eq!(imports.outstanding(), 0);
    }

    #[test]
    fn outstanding_tokens_are_bounded_and_expired_ones_make_room() {
        let clock = FixedClock::new(0);
        let imports = Imports::with_bound(2);
        let key = Uuid::from_u128(1);
        let issue = |token: u8| {
            let wrapping = WrappingKey::generate(WrappingKeySpec::Rsa2048).unwrap();
            imports.issue(
                [token; TOKEN_LEN],
                key,
                WrappingAlgorithm::RsaesOaepSha1,
                wrapping,
                clock.now_millis(),
            )
        };
        issue(1).unwrap();
        clock.advance(1000);
        issue(2).unwrap();
        assert!(matches!(issue(3), Err(ImportError::TooMany)));
        // Once the first has expired it makes room; the second is still outstanding.
        clock.advance(TOKEN_VALIDITY_MS - 1000);
        issue(3).unwrap();
        assert_eq!(imports.outstanding(), 2);
        assert!(matches!(issue(4), Err(ImportError::TooMany)));
        assert!(Imports::default().max == MAX_OUTSTANDING);
    }

    #[test]
    fn commitments_tell_same_material_only() {
        let id = Uuid::from_u128(7);
        let commitment = material_commitment(&id, &[1; 32]);
        assert_eq!(material_commitment(&id, &[1; 32]), commitment);
        assert_ne!(material_commitment(&id, &[2; 32]), commitment);
        assert_ne!(material_commitment(&Uuid::from_u128(8), &[1; 32]), commitment);
    }

    /// Material is checked against the key's spec: the symmetric length, HMAC lengths from the
    /// spec's bits to its hash's block size, and PKCS #8 private keys of the spec's modulus size
    /// or curve, kept in the form the service generates them in (so a key imported twice has
    /// the same bytes, and the re-import check compares like with like).
    #[test]
    fn material_must_be_of_the_keys_spec() {
        let bytes = |n: usize| Zeroizing::new(vec![7u8; n]);
        assert!(material_for(KeySpec::SymmetricDefault, bytes(32)).is_ok());
        let refused = material_for(KeySpec::SymmetricDefault, bytes(16)).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "The key material of a SYMMETRIC_DEFAULT key must be 256 bits (32 bytes)."
        );
        for (spec, min, max) in [
            (KeySpec::Hmac224, 28, 64),
            (KeySpec::Hmac256, 32, 64),
            (KeySpec::Hmac384, 48, 128),
            (KeySpec::Hmac512, 64, 128),
        ] {
            assert!(material_for(spec, bytes(min)).is_ok(), "{spec:?} {min}");
            assert!(material_for(spec, bytes(max)).is_ok(), "{spec:?} {max}");
            assert!(material_for(spec, bytes(min - 1)).is_err(), "{spec:?} short");
            assert!(material_for(spec, bytes(max + 1)).is_err(), "{spec:?} long");
        }
        assert_eq!(
            material_for(KeySpec::Hmac256, bytes(16))
                .unwrap_err()
                .to_string(),
            "The key material of a HMAC_256 key must be 32 to 64 bytes."
        );
        let asymmetric = [
            KeySpec::Rsa2048,
            KeySpec::Rsa3072,
            KeySpec::EccNistP256,
            KeySpec::EccNistP384,
            KeySpec::EccNistP521,
            KeySpec::EccSecgP256k1,
        ];
        for spec in asymmetric {
            let generated = crate::keys::asym::generate(spec).unwrap();
            let pkcs8 = Zeroizing::new(generated.expose_secret().to_vec());
            let imported = material_for(spec, pkcs8.clone()).unwrap();
            assert_eq!(imported.expose_secret(), generated.expose_secret(), "{spec:?}");
            for other in asymmetric.into_iter().filter(|o| *o != spec) {
                let refused = material_for(other, pkcs8.clone()).unwrap_err();
                assert_eq!(
                    refused.to_string(),
                    format!(
                        "The key material of a {} key must be a {} private key in PKCS #8 DER.",
                        other.as_str(),
                        other.as_str()
                    )
                );
            }
            assert!(material_for(KeySpec::SymmetricDefault, pkcs8.clone()).is_err());
            // Not DER at all, or cut short.
            assert!(material_for(spec, bytes(pkcs8.len())).is_err());
            assert!(material_for(spec, Zeroizing::new(pkcs8[..pkcs8.len() - 1].to_vec())).is_err());
        }
    }
}
