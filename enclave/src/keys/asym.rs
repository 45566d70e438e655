//! Asymmetric cryptography of KMS keys: key generation, public keys (DER SubjectPublicKeyInfo),
//! signatures (RAW and DIGEST), RSAES-OAEP with AWS's plaintext limits, and ECDH.
//!
//! Every private key is stored as an unencrypted PKCS #8 (RFC 5208) DER document inside a
//! [`KeyMaterial`]; it is parsed again for each operation and never leaves this module except as
//! that document (GenerateDataKeyPair answers it, by design, to its caller).
//!
//! # Why aws-lc-rs
//! RSA private-key operations must be constant-time. The RustCrypto `rsa` crate carries
//! RUSTSEC-2023-0071 (the Marvin attack: a timing side channel in PKCS #1 v1.5 and OAEP
//! decryption that leaks enough to decrypt or sign), with no fixed release. aws-lc-rs wraps
//! AWS-LC, whose RSA is constant-time and formally verified in parts, and which covers every
//! AWS KMS key spec here: RSA 2048/3072/4096 (PKCS #1 v1.5 and PSS signatures, OAEP SHA-1 and
//! SHA-256), ECDSA on P-256, P-384, P-521 and secp256k1, and ECDH on the NIST curves.
//!
//! # Randomness
//! AWS-LC draws key generation and signature randomness from its own DRBG, seeded from the
//! operating system (`getrandom`); it offers no way to inject [`crate::env::Entropy`]. Inside a
//! Nitro enclave the kernel pool is fed by the NSM's hardware RNG, so both sources end in the
//! NSM. ECDSA nonces are additionally hedged by AWS-LC (RFC 6979-style mixing with the key).
//!
//! Trusts: AWS-LC. Does not trust: message, digest, signature, ciphertext or peer public key
//! bytes, which all arrive from the caller.

use aws_lc_rs::agreement;
use aws_lc_rs::digest;
use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::error::{KeyRejected, Unspecified};
use aws_lc_rs::rsa::{
    KeySize, OaepAlgorithm, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256,
};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair, UnparsedPublicKey};
use zeroize::Zeroizing;

use crate::error::KmsError;
use crate::keys::{KeyMaterial, KeySpec, KeyUsage};

/// A failed asymmetric operation.
#[derive(Debug, thiserror::Error)]
pub enum AsymError {
    /// The key spec has no asymmetric implementation here (symmetric, HMAC, SM2).
    #[error("key spec {0} is not an asymmetric key spec this service implements")]
    UnsupportedSpec(&'static str),
    /// The algorithm is not one the key's spec allows.
    #[error("{algorithm} is not valid for a {spec} key")]
    AlgorithmNotForKey {
        /// AWS name of the algorithm.
        algorithm: &'static str,
        /// AWS name of the key spec.
        spec: &'static str,
    },
    /// A DIGEST message whose length is not the output length of the algorithm's hash.
    #[error("Digest is invalid length for algorithm {algorithm}.")]
    DigestLength {
        /// AWS name of the signing algorithm.
        algorithm: &'static str,
        /// Output length of its hash.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// The plaintext exceeds what OAEP can carry for this modulus and hash.
    #[error("Algorithm {algorithm} and key spec {spec} cannot encrypt data larger than {max} bytes.")]
    PlaintextTooLong {
        /// AWS name of the encryption algorithm.
        algorithm: &'static str,
        /// AWS name of the key spec.
        spec: &'static str,
        /// AWS's limit.
        max: usize,
        /// Length given.
        got: usize,
    },
    /// The signature does not verify. Says nothing about why.
    #[error("the signature is invalid")]
    InvalidSignature,
    /// The ciphertext does not decrypt. Says nothing about why.
    #[error("the ciphertext is invalid")]
    InvalidCiphertext,
    /// The peer public key of a key agreement is not a DER SubjectPublicKeyInfo on the key's curve.
    #[error("the public key is not a DER SubjectPublicKeyInfo on the curve of the KMS key")]
    InvalidPeerKey,
    /// The stored private key does not parse (corrupted or wrong spec): our fault, not the caller's.
    #[error("stored private key rejected: {0}")]
    StoredKey(#[source] KeyRejected),
    /// AWS-LC failed (random source, internal error).
    #[error("asymmetric primitive failed")]
    Primitive(#[source] Unspecified),
}

impl From<Unspecified> for AsymError {
    fn from(e: Unspecified) -> Self {
        AsymError::Primitive(e)
    }
}

impl From<KeyRejected> for AsymError {
    fn from(e: KeyRejected) -> Self {
        AsymError::StoredKey(e)
    }
}

impl From<AsymError> for KmsError {
    fn from(e: AsymError) -> Self {
        match e {
            AsymError::UnsupportedSpec(_) => KmsError::UnsupportedOperation(e.to_string()),
            AsymError::AlgorithmNotForKey { .. } => KmsError::InvalidKeyUsage(e.to_string()),
            AsymError::DigestLength { .. }
            | AsymError::PlaintextTooLong { .. }
            | AsymError::InvalidPeerKey => KmsError::Validation(e.to_string()),
            AsymError::InvalidSignature => KmsError::InvalidSignature,
            AsymError::InvalidCiphertext => KmsError::InvalidCiphertext,
            AsymError::StoredKey(_) => KmsError::Internal("stored private key rejected"),
            AsymError::Primitive(_) => KmsError::Internal("asymmetric primitive failed"),
        }
    }
}

/// Shorthand.
pub type AsymResult<T> = Result<T, AsymError>;

macro_rules! algorithm_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $(#[allow(missing_docs)] $variant,)* }
        impl $name {
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

algorithm_enum!(
    /// AWS `SigningAlgorithmSpec` values this service implements.
    SigningAlgorithm {
        RsassaPssSha256 = "RSASSA_PSS_SHA_256",
        RsassaPssSha384 = "RSASSA_PSS_SHA_384",
        RsassaPssSha512 = "RSASSA_PSS_SHA_512",
        RsassaPkcs1V15Sha256 = "RSASSA_PKCS1_V1_5_SHA_256",
        RsassaPkcs1V15Sha384 = "RSASSA_PKCS1_V1_5_SHA_384",
        RsassaPkcs1V15Sha512 = "RSASSA_PKCS1_V1_5_SHA_512",
        EcdsaSha256 = "ECDSA_SHA_256",
        EcdsaSha384 = "ECDSA_SHA_384",
        EcdsaSha512 = "ECDSA_SHA_512",
    }
);

algorithm_enum!(
    /// AWS `EncryptionAlgorithmSpec` values of RSA keys.
    OaepAlgorithmSpec {
        RsaesOaepSha1 = "RSAES_OAEP_SHA_1",
        RsaesOaepSha256 = "RSAES_OAEP_SHA_256",
    }
);

/// Every `SigningAlgorithmSpec` AWS KMS names (for the enum check of the field).
pub const SIGNING_ALGORITHMS: &[&str] = &[
    "RSASSA_PSS_SHA_256",
    "RSASSA_PSS_SHA_384",
    "RSASSA_PSS_SHA_512",
    "RSASSA_PKCS1_V1_5_SHA_256",
    "RSASSA_PKCS1_V1_5_SHA_384",
    "RSASSA_PKCS1_V1_5_SHA_512",
    "ECDSA_SHA_256",
    "ECDSA_SHA_384",
    "ECDSA_SHA_512",
    "SM2DSA",
    "ML_DSA_SHAKE_256",
];

/// What `Message` holds: AWS `MessageType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// The message itself; hashed here with the algorithm's hash.
    Raw,
    /// A digest the caller computed with the algorithm's hash.
    Digest,
}

impl SigningAlgorithm {
    /// The hash the algorithm signs with.
    pub fn hash(self) -> &'static digest::Algorithm {
        use SigningAlgorithm as S;
        match self {
            S::RsassaPssSha256 | S::RsassaPkcs1V15Sha256 | S::EcdsaSha256 => &digest::SHA256,
            S::RsassaPssSha384 | S::RsassaPkcs1V15Sha384 | S::EcdsaSha384 => &digest::SHA384,
            S::RsassaPssSha512 | S::RsassaPkcs1V15Sha512 | S::EcdsaSha512 => &digest::SHA512,
        }
    }

    /// Whether AWS allows the algorithm for keys of `spec` (as `metadata::algorithms` lists).
    pub fn fits(self, spec: KeySpec) -> bool {
        use SigningAlgorithm as S;
        match self {
            S::RsassaPssSha256
            | S::RsassaPssSha384
            | S::RsassaPssSha512
            | S::RsassaPkcs1V15Sha256
            | S::RsassaPkcs1V15Sha384
            | S::RsassaPkcs1V15Sha512 => spec.is_rsa(),
            S::EcdsaSha256 => matches!(spec, KeySpec::EccNistP256 | KeySpec::EccSecgP256k1),
            S::EcdsaSha384 => spec == KeySpec::EccNistP384,
            S::EcdsaSha512 => spec == KeySpec::EccNistP521,
        }
    }

    /// RSA padding for signing; `None` for ECDSA. PSS salt length = hash length, as AWS KMS.
    fn rsa_encoding(self) -> Option<&'static signature::RsaSignatureEncoding> {
        use SigningAlgorithm as S;
        match self {
            S::RsassaPssSha256 => Some(&signature::RSA_PSS_SHA256),
            S::RsassaPssSha384 => Some(&signature::RSA_PSS_SHA384),
            S::RsassaPssSha512 => Some(&signature::RSA_PSS_SHA512),
            S::RsassaPkcs1V15Sha256 => Some(&signature::RSA_PKCS1_SHA256),
            S::RsassaPkcs1V15Sha384 => Some(&signature::RSA_PKCS1_SHA384),
            S::RsassaPkcs1V15Sha512 => Some(&signature::RSA_PKCS1_SHA512),
            S::EcdsaSha256 | S::EcdsaSha384 | S::EcdsaSha512 => None,
        }
    }

    /// The verification algorithm for a key of `spec` (which [`SigningAlgorithm::fits`]).
    fn verification(self, spec: KeySpec) -> &'static dyn signature::VerificationAlgorithm {
        use SigningAlgorithm as S;
        match (self, spec) {
            (S::RsassaPssSha256, _) => &signature::RSA_PSS_2048_8192_SHA256,
            (S::RsassaPssSha384, _) => &signature::RSA_PSS_2048_8192_SHA384,
            (S::RsassaPssSha512, _) => &signature::RSA_PSS_2048_8192_SHA512,
            (S::RsassaPkcs1V15Sha256, _) => &signature::RSA_PKCS1_2048_8192_SHA256,
            (S::RsassaPkcs1V15Sha384, _) => &signature::RSA_PKCS1_2048_8192_SHA384,
            (S::RsassaPkcs1V15Sha512, _) => &signature::RSA_PKCS1_2048_8192_SHA512,
            (S::EcdsaSha256, KeySpec::EccSecgP256k1) => &signature::ECDSA_P256K1_SHA256_ASN1,
            (S::EcdsaSha256, _) => &signature::ECDSA_P256_SHA256_ASN1,
            (S::EcdsaSha384, _) => &signature::ECDSA_P384_SHA384_ASN1,
            (S::EcdsaSha512, _) => &signature::ECDSA_P521_SHA512_ASN1,
        }
    }
}

impl OaepAlgorithmSpec {
    fn algorithm(self) -> &'static OaepAlgorithm {
        match self {
            OaepAlgorithmSpec::RsaesOaepSha1 => &OAEP_SHA1_MGF1SHA1,
            OaepAlgorithmSpec::RsaesOaepSha256 => &OAEP_SHA256_MGF1SHA256,
        }
    }
}

/// Whether AWS KMS allows a key of `spec` for `usage` (asymmetric specs only): RSA_* signs or
/// encrypts, ECC_NIST_* signs or agrees keys, ECC_SECG_P256K1 only signs.
pub fn usage_fits(spec: KeySpec, usage: KeyUsage) -> bool {
    match usage {
        KeyUsage::SignVerify => spec.is_rsa() || spec.is_ecc(),
        KeyUsage::EncryptDecrypt => spec.is_rsa(),
        KeyUsage::KeyAgreement => spec.is_ecc() && spec != KeySpec::EccSecgP256k1,
        KeyUsage::GenerateVerifyMac => false,
    }
}

/// The ECDSA signing algorithm (DER signatures, as AWS KMS answers) of an ECC key spec.
fn ecdsa_signing(spec: KeySpec) -> AsymResult<&'static signature::EcdsaSigningAlgorithm> {
    match spec {
        KeySpec::EccNistP256 => Ok(&signature::ECDSA_P256_SHA256_ASN1_SIGNING),
        KeySpec::EccNistP384 => Ok(&signature::ECDSA_P384_SHA384_ASN1_SIGNING),
        KeySpec::EccNistP521 => Ok(&signature::ECDSA_P521_SHA512_ASN1_SIGNING),
        KeySpec::EccSecgP256k1 => Ok(&signature::ECDSA_P256K1_SHA256_ASN1_SIGNING),
        other => Err(AsymError::UnsupportedSpec(other.as_str())),
    }
}

/// The ECDH algorithm of a NIST curve key spec (AWS offers no key agreement on secp256k1).
fn ecdh(spec: KeySpec) -> AsymResult<&'static agreement::Algorithm> {
    match spec {
        KeySpec::EccNistP256 => Ok(&agreement::ECDH_P256),
        KeySpec::EccNistP384 => Ok(&agreement::ECDH_P384),
        KeySpec::EccNistP521 => Ok(&agreement::ECDH_P521),
        other => Err(AsymError::UnsupportedSpec(other.as_str())),
    }
}

fn rsa_size(spec: KeySpec) -> AsymResult<KeySize> {
    match spec {
        KeySpec::Rsa2048 => Ok(KeySize::Rsa2048),
        KeySpec::Rsa3072 => Ok(KeySize::Rsa3072),
        KeySpec::Rsa4096 => Ok(KeySize::Rsa4096),
        other => Err(AsymError::UnsupportedSpec(other.as_str())),
    }
}

/// Generates a private key of `spec` and answers it as PKCS #8 DER.
///
/// # Errors
/// [`AsymError::UnsupportedSpec`] for a spec that is not RSA_* or ECC_*;
/// [`AsymError::Primitive`] if AWS-LC fails.
pub fn generate(spec: KeySpec) -> AsymResult<KeyMaterial> {
    let der = if spec.is_rsa() {
        let pair = RsaKeyPair::generate(rsa_size(spec)?)?;
        let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair)?;
        Zeroizing::new(pkcs8.as_ref().to_vec())
    } else {
        let pair = EcdsaKeyPair::generate(ecdsa_signing(spec)?)?;
        let pkcs8 = pair.to_pkcs8v1()?;
        Zeroizing::new(pkcs8.as_ref().to_vec())
    };
    Ok(KeyMaterial::new(der))
}

/// An imported private key (PKCS #8 DER, RFC 5208, as AWS KMS takes it) of `spec`, answered
/// in the form [`generate`] makes: PKCS #8 v1 re-encoded by AWS-LC, so that the same key always
/// has the same bytes whatever encoder made the import. `None` when the bytes are not a private
/// key of `spec` (another algorithm, curve or modulus size, or a key AWS-LC's checks refuse).
///
/// # Errors
/// [`AsymError::UnsupportedSpec`] for a spec that is not RSA_* or ECC_*;
/// [`AsymError::Primitive`] if AWS-LC cannot encode a key it parsed.
pub fn import_private_key(spec: KeySpec, pkcs8: &[u8]) -> AsymResult<Option<KeyMaterial>> {
    let der = if spec.is_rsa() {
        let bits = match rsa_size(spec)? {
            KeySize::Rsa2048 => 2048,
            KeySize::Rsa3072 => 3072,
            _ => 4096,
        };
        let Ok(pair) = RsaKeyPair::from_pkcs8(pkcs8) else {
            return Ok(None);
        };
        if pair.public_modulus_len() * 8 != bits {
            return Ok(None);
        }
        let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair)?;
        Zeroizing::new(pkcs8.as_ref().to_vec())
    } else {
        // Checks the curve, and that the point is the private scalar's (EC_KEY_check_key).
        let Ok(pair) = EcdsaKeyPair::from_pkcs8(ecdsa_signing(spec)?, pkcs8) else {
            return Ok(None);
        };
        let pkcs8 = pair.to_pkcs8v1()?;
        Zeroizing::new(pkcs8.as_ref().to_vec())
    };
    Ok(Some(KeyMaterial::new(der)))
}

/// The public key of a stored private key, as DER SubjectPublicKeyInfo (RFC 5280).
///
/// # Errors
/// [`AsymError::StoredKey`] if the material does not parse as a key of `spec`.
pub fn public_key(spec: KeySpec, material: &KeyMaterial) -> AsymResult<Vec<u8>> {
    let der: PublicKeyX509Der<'static> = if spec.is_rsa() {
        RsaKeyPair::from_pkcs8(material.expose_secret())?
            .public_key()
            .as_der()?
    } else {
        EcdsaKeyPair::from_pkcs8(ecdsa_signing(spec)?, material.expose_secret())?
            .public_key()
            .as_der()?
    };
    Ok(der.as_ref().to_vec())
}

/// Checks the algorithm against the key spec and turns `message` into the digest to sign.
fn prepare(
    spec: KeySpec,
    algorithm: SigningAlgorithm,
    message: &[u8],
    message_type: MessageType,
) -> AsymResult<digest::Digest> {
    if !algorithm.fits(spec) {
        return Err(AsymError::AlgorithmNotForKey {
            algorithm: algorithm.as_str(),
            spec: spec.as_str(),
        });
    }
    let hash = algorithm.hash();
    match message_type {
        MessageType::Raw => Ok(digest::digest(hash, message)),
        MessageType::Digest => {
            if message.len() != hash.output_len() {
                return Err(AsymError::DigestLength {
                    algorithm: algorithm.as_str(),
                    expected: hash.output_len(),
                    got: message.len(),
                });
            }
            Ok(digest::Digest::import_less_safe(message, hash)?)
        }
    }
}

/// Signs `message` (RAW: hashed here; DIGEST: already hashed) with the stored private key.
/// ECDSA signatures are DER `Ecdsa-Sig-Value` (RFC 3279), as AWS KMS answers.
///
/// # Errors
/// [`AsymError::AlgorithmNotForKey`], [`AsymError::DigestLength`], [`AsymError::StoredKey`],
/// [`AsymError::Primitive`].
pub fn sign(
    spec: KeySpec,
    material: &KeyMaterial,
    algorithm: SigningAlgorithm,
    message: &[u8],
    message_type: MessageType,
) -> AsymResult<Vec<u8>> {
    let digest = prepare(spec, algorithm, message, message_type)?;
    match algorithm.rsa_encoding() {
        Some(encoding) => {
            let pair = RsaKeyPair::from_pkcs8(material.expose_secret())?;
            let mut out = vec![0u8; pair.public_modulus_len()];
            pair.sign_digest(encoding, &digest, &mut out)?;
            Ok(out)
        }
        None => {
            let pair = EcdsaKeyPair::from_pkcs8(ecdsa_signing(spec)?, material.expose_secret())?;
            Ok(pair.sign_digest(&digest)?.as_ref().to_vec())
        }
    }
}

/// Verifies `signature` over `message` with the public half of the stored key.
///
/// # Errors
/// [`AsymError::InvalidSignature`] when it does not verify; else as [`sign`].
pub fn verify(
    spec: KeySpec,
    material: &KeyMaterial,
    algorithm: SigningAlgorithm,
    message: &[u8],
    message_type: MessageType,
    signature: &[u8],
) -> AsymResult<()> {
    let digest = prepare(spec, algorithm, message, message_type)?;
    let spki = public_key(spec, material)?;
    UnparsedPublicKey::new(algorithm.verification(spec), &spki)
        .verify_digest(&digest, signature)
        .map_err(|Unspecified| AsymError::InvalidSignature)
}

/// The largest plaintext AWS KMS encrypts with `algorithm` under an RSA key of `spec`:
/// k − 2·hLen − 2 bytes (RFC 8017 §7.1.1), e.g. 190 for RSA_2048 with SHA-256.
///
/// # Errors
/// [`AsymError::UnsupportedSpec`] for a spec that is not RSA_*.
pub fn oaep_max_plaintext(spec: KeySpec, algorithm: OaepAlgorithmSpec) -> AsymResult<usize> {
    let modulus = match spec {
        KeySpec::Rsa2048 => 256,
        KeySpec::Rsa3072 => 384,
        KeySpec::Rsa4096 => 512,
        other => return Err(AsymError::UnsupportedSpec(other.as_str())),
    };
    let hash_len = match algorithm {
        OaepAlgorithmSpec::RsaesOaepSha1 => 20,
        OaepAlgorithmSpec::RsaesOaepSha256 => 32,
    };
    Ok(modulus - 2 * hash_len - 2)
}

/// Encrypts with RSAES-OAEP (MGF1 with the same hash, empty label, as AWS KMS).
///
/// # Errors
/// [`AsymError::PlaintextTooLong`] past [`oaep_max_plaintext`]; [`AsymError::StoredKey`],
/// [`AsymError::Primitive`].
pub fn oaep_encrypt(
    spec: KeySpec,
    material: &KeyMaterial,
    algorithm: OaepAlgorithmSpec,
    plaintext: &[u8],
) -> AsymResult<Vec<u8>> {
    let max = oaep_max_plaintext(spec, algorithm)?;
    if plaintext.len() > max {
        return Err(AsymError::PlaintextTooLong {
            algorithm: algorithm.as_str(),
            spec: spec.as_str(),
            max,
            got: plaintext.len(),
        });
    }
    let private = PrivateDecryptingKey::from_pkcs8(material.expose_secret())?;
    let public = OaepPublicEncryptingKey::new(private.public_key())?;
    let mut out = vec![0u8; public.ciphertext_size()];
    let len = public
        .encrypt(algorithm.algorithm(), plaintext, &mut out, None)?
        .len();
    out.truncate(len);
    Ok(out)
}

/// Decrypts an RSAES-OAEP ciphertext; constant-time in AWS-LC.
///
/// # Errors
/// [`AsymError::InvalidCiphertext`] for any failure to decrypt (no oracle about which check
/// failed); [`AsymError::StoredKey`].
pub fn oaep_decrypt(
    spec: KeySpec,
    material: &KeyMaterial,
    algorithm: OaepAlgorithmSpec,
    ciphertext: &[u8],
) -> AsymResult<Zeroizing<Vec<u8>>> {
    rsa_size(spec)?;
    let private =
        OaepPrivateDecryptingKey::new(PrivateDecryptingKey::from_pkcs8(material.expose_secret())?)?;
    if ciphertext.len() != private.key_size_bytes() {
        return Err(AsymError::InvalidCiphertext);
    }
    let mut out = Zeroizing::new(vec![0u8; private.key_size_bytes()]);
    let len = private
        .decrypt(algorithm.algorithm(), ciphertext, &mut out, None)
        .map_err(|Unspecified| AsymError::InvalidCiphertext)?
        .len();
    out.truncate(len);
    Ok(out)
}

/// ECDH (NIST SP 800-56A Rev. 3, §5.7.1.2) between the stored private key and the peer's public
/// key, given as DER SubjectPublicKeyInfo as AWS KMS takes it. The answer is the raw shared secret
/// Z, the x-coordinate of the shared point, as AWS KMS answers: no KDF is applied.
///
/// # Errors
/// [`AsymError::InvalidPeerKey`] for a peer key that is not SPKI DER of a valid point on the key's
/// curve; [`AsymError::UnsupportedSpec`] for a spec without ECDH; [`AsymError::StoredKey`].
pub fn derive_shared_secret(
    spec: KeySpec,
    material: &KeyMaterial,
    peer_spki: &[u8],
) -> AsymResult<Zeroizing<Vec<u8>>> {
    let algorithm = ecdh(spec)?;
    // SubjectPublicKeyInfo is a DER SEQUENCE; a bare SEC 1 point (0x02/0x03/0x04), which AWS-LC
    // would also parse, is refused as AWS KMS refuses it.
    if peer_spki.first() != Some(&0x30) {
        return Err(AsymError::InvalidPeerKey);
    }
    let private = agreement::PrivateKey::from_private_key_der(algorithm, material.expose_secret())?;
    let peer = agreement::UnparsedPublicKey::new(algorithm, peer_spki);
    agreement::agree(&private, peer, AsymError::InvalidPeerKey, |z| {
        Ok(Zeroizing::new(z.to_vec()))
    })
}

/// A fresh data key pair for GenerateDataKeyPair: the private key (PKCS #8 DER) and the public
/// key (DER SubjectPublicKeyInfo).
///
/// # Errors
/// As [`generate`] and [`public_key`].
pub fn generate_pair(spec: KeySpec) -> AsymResult<(KeyMaterial, Vec<u8>)> {
    let private = generate(spec)?;
    let public = public_key(spec, &private)?;
    Ok((private, public))
}

#[cfg(test)]
mod tests;
