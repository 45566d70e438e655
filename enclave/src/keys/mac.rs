//! HMAC (RFC 2104) with SHA-224/256/384/512 (FIPS 180-4), for HMAC KMS keys.
//!
//! One implementation for all four algorithms: RustCrypto `hmac` over `sha2`. `ring` has no
//! HMAC-SHA-224, and splitting the four between two libraries would give two code paths to
//! review and test; `hmac` 0.12 and `sha2` 0.10 are already in the build (HKDF of the envelopes,
//! p384), pure Rust, and the known-answer tests below (RFC 4231) cover every algorithm.
//!
//! Verification recomputes the tag and compares with `subtle::ConstantTimeEq`: the time taken
//! does not depend on how many leading bytes of a forged tag were right.

use hmac::{Hmac, Mac};
use sha2::{Sha224, Sha256, Sha384, Sha512};
use subtle::ConstantTimeEq;

use crate::env::Entropy;
use crate::error::{KmsError, KmsResult};
use crate::keys::{KeyMaterial, KeySpec};

/// An AWS `MacAlgorithmSpec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacAlgorithm {
    /// HMAC with SHA-224.
    HmacSha224,
    /// HMAC with SHA-256.
    HmacSha256,
    /// HMAC with SHA-384.
    HmacSha384,
    /// HMAC with SHA-512.
    HmacSha512,
}

impl MacAlgorithm {
    /// Every value, in AWS's order.
    pub const ALL: &'static [&'static str] = &[
        "HMAC_SHA_224",
        "HMAC_SHA_256",
        "HMAC_SHA_384",
        "HMAC_SHA_512",
    ];

    /// The AWS spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MacAlgorithm::HmacSha224 => "HMAC_SHA_224",
            MacAlgorithm::HmacSha256 => "HMAC_SHA_256",
            MacAlgorithm::HmacSha384 => "HMAC_SHA_384",
            MacAlgorithm::HmacSha512 => "HMAC_SHA_512",
        }
    }

    /// Parses the AWS spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "HMAC_SHA_224" => Some(MacAlgorithm::HmacSha224),
            "HMAC_SHA_256" => Some(MacAlgorithm::HmacSha256),
            "HMAC_SHA_384" => Some(MacAlgorithm::HmacSha384),
            "HMAC_SHA_512" => Some(MacAlgorithm::HmacSha512),
            _ => None,
        }
    }

    /// The one algorithm a key of `spec` computes (AWS pairs each HMAC key spec with one
    /// algorithm), or `None` for a key that is not an HMAC key.
    pub fn of_spec(spec: KeySpec) -> Option<Self> {
        match spec {
            KeySpec::Hmac224 => Some(MacAlgorithm::HmacSha224),
            KeySpec::Hmac256 => Some(MacAlgorithm::HmacSha256),
            KeySpec::Hmac384 => Some(MacAlgorithm::HmacSha384),
            KeySpec::Hmac512 => Some(MacAlgorithm::HmacSha512),
            _ => None,
        }
    }

    /// Length of a tag in bytes (the digest length).
    pub fn tag_len(self) -> usize {
        match self {
            MacAlgorithm::HmacSha224 => 28,
            MacAlgorithm::HmacSha256 => 32,
            MacAlgorithm::HmacSha384 => 48,
            MacAlgorithm::HmacSha512 => 64,
        }
    }
}

/// Length in bytes of the key material AWS generates for an HMAC key spec: the number in the
/// spec's name, in bits (HMAC_224 is a 224-bit key; AWS: "the length of the key determines the
/// MAC algorithm"). `None` for a spec that is not HMAC.
pub fn key_len(spec: KeySpec) -> Option<usize> {
    MacAlgorithm::of_spec(spec).map(MacAlgorithm::tag_len)
}

/// The lengths in bytes of key material AWS KMS imports into an HMAC key of `spec`: at least
/// the length it generates (the spec's bits), at most the block size of the spec's hash (64
/// bytes for SHA-224 and SHA-256, 128 for SHA-384 and SHA-512; HMAC hashes a longer key down,
/// RFC 2104 section 3). `None` for a spec that is not HMAC.
pub fn import_len(spec: KeySpec) -> Option<std::ops::RangeInclusive<usize>> {
    let algorithm = MacAlgorithm::of_spec(spec)?;
    let block = match algorithm {
        MacAlgorithm::HmacSha224 | MacAlgorithm::HmacSha256 => 64,
        MacAlgorithm::HmacSha384 | MacAlgorithm::HmacSha512 => 128,
    };
    Some(algorithm.tag_len()..=block)
}

/// Fresh random key material for an HMAC key of `spec`.
///
/// # Errors
/// `KMSInternalException` if `spec` is not HMAC or the random source fails.
pub fn generate_key(spec: KeySpec, entropy: &dyn Entropy) -> KmsResult<KeyMaterial> {
    let len = key_len(spec).ok_or(KmsError::Internal("HMAC key of a non-HMAC spec"))?;
    let mut bytes = zeroize::Zeroizing::new(vec![0u8; len]);
    entropy.fill(&mut bytes)?;
    Ok(KeyMaterial::new(bytes))
}

fn tag<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length (RFC 2104 §2), so `new_from_slice` cannot fail here.
    let mut mac = match <M as hmac::digest::KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// HMAC of `message` under `key` with `algorithm` (RFC 2104).
///
/// # Errors
/// `KMSInternalException` in the impossible case that the HMAC rejects the key.
pub fn compute(algorithm: MacAlgorithm, key: &KeyMaterial, message: &[u8]) -> KmsResult<Vec<u8>> {
    compute_raw(algorithm, key.expose_secret(), message)
}

fn compute_raw(algorithm: MacAlgorithm, key: &[u8], message: &[u8]) -> KmsResult<Vec<u8>> {
    let out = match algorithm {
        MacAlgorithm::HmacSha224 => tag::<Hmac<Sha224>>(key, message),
        MacAlgorithm::HmacSha256 => tag::<Hmac<Sha256>>(key, message),
        MacAlgorithm::HmacSha384 => tag::<Hmac<Sha384>>(key, message),
        MacAlgorithm::HmacSha512 => tag::<Hmac<Sha512>>(key, message),
    };
    if out.len() == algorithm.tag_len() {
        Ok(out)
    } else {
        Err(KmsError::Internal("HMAC rejected its key"))
    }
}

/// Whether `claimed` is the HMAC of `message` under `key`, compared in constant time.
///
/// A tag of the wrong length is simply not valid (its length is public).
///
/// # Errors
/// As [`compute`].
pub fn verify(
    algorithm: MacAlgorithm,
    key: &KeyMaterial,
    message: &[u8],
    claimed: &[u8],
) -> KmsResult<bool> {
    let expected = compute(algorithm, key, message)?;
    Ok(bool::from(expected.as_slice().ct_eq(claimed)))
}

#[cfg(test)]
mod tests {
    //! Known answers from RFC 4231 ("Identifiers and Test Vectors for HMAC-SHA-224,
    //! HMAC-SHA-256, HMAC-SHA-384, and HMAC-SHA-512"), §4.2–4.8: every algorithm, keys shorter
    //! and longer than the block size, and test case 5 (a tag truncated to 128 bits).
    #![allow(clippy::unwrap_used)]

    use super::*;

    struct Case {
        key: Vec<u8>,
        data: Vec<u8>,
        sha224: &'static str,
        sha256: &'static str,
        sha384: &'static str,
        sha512: &'static str,
    }

    fn cases() -> Vec<Case> {
        vec![
            // Test Case 1 (§4.2)
            Case {
                key: vec![0x0b; 20],
                data: b"Hi There".to_vec(),
                sha224: "896fb1128abbdf196832107cd49df33f47b4b1169912ba4f53684b22",
                sha256: "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
                sha384: "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c\
                         faea9ea9076ede7f4af152e8b2fa9cb6",
                sha512: "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde\
                         daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
            },
            // Test Case 2 (§4.3): a key shorter than the output.
            Case {
                key: b"Jefe".to_vec(),
                data: b"what do ya want for nothing?".to_vec(),
                sha224: "a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44",
                sha256: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                sha384: "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e\
                         8e2240ca5e69e2c78b3239ecfab21649",
                sha512: "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
                         9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
            },
            // Test Case 3 (§4.4): combined length of key and data larger than 64 bytes.
            Case {
                key: vec![0xaa; 20],
                data: vec![0xdd; 50],
                sha224: "7fb3cb3588c6c1f6ffa9694d7d6ad2649365b0c1f65d69d1ec8333ea",
                sha256: "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
                sha384: "88062608d3e6ad8a0aa2ace014c8a86f0aa635d947ac9febe83ef4e55966144b\
                         2a5ab39dc13814b94e3ab6e101a34f27",
                sha512: "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39\
                         bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb",
            },
            // Test Case 6 (§4.7): a key larger than the block size.
            Case {
                key: vec![0xaa; 131],
                data: b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                sha224: "95e9a0db962095adaebe9b2d6f0dbce2d499f112f2d2b7273fa6870e",
                sha256: "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
                sha384: "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c6\
                         0c2ef6ab4030fe8296248df163f44952",
                sha512: "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352\
                         6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
            },
        ]
    }

    #[test]
    fn rfc4231_known_answers_for_every_algorithm() {
        for (i, case) in cases().iter().enumerate() {
            for (algorithm, expected) in [
                (MacAlgorithm::HmacSha224, case.sha224),
                (MacAlgorithm::HmacSha256, case.sha256),
                (MacAlgorithm::HmacSha384, case.sha384),
                (MacAlgorithm::HmacSha512, case.sha512),
            ] {
                let expected: String = expected.split_whitespace().collect();
                let key = KeyMaterial::new(zeroize::Zeroizing::new(case.key.clone()));
                let got = compute(algorithm, &key, &case.data).unwrap();
                assert_eq!(hex::encode(&got), expected, "case {i} {algorithm:?}");
                let expected = hex::decode(&expected).unwrap();
                assert!(verify(algorithm, &key, &case.data, &expected).unwrap());
            }
        }
    }

    #[test]
    fn rfc4231_case_5_truncated_tag_is_the_prefix_but_does_not_verify() {
        // Test Case 5 (§4.6) publishes only the first 128 bits. KMS compares whole tags, so
        // the truncated tag matches the prefix of ours and is still refused.
        let key = KeyMaterial::new(zeroize::Zeroizing::new(vec![0x0c; 20]));
        let data = b"Test With Truncation";
        for (algorithm, prefix) in [
            (MacAlgorithm::HmacSha224, "0e2aea68a90c8d37c988bcdb9fca6fa8"),
            (MacAlgorithm::HmacSha256, "a3b6167473100ee06e0c796c2955552b"),
            (MacAlgorithm::HmacSha384, "3abf34c3503b2a23a46efc619baef897"),
            (MacAlgorithm::HmacSha512, "415fad6271580a531d4179bc891d87a6"),
        ] {
            let full = compute(algorithm, &key, data).unwrap();
            assert_eq!(hex::encode(&full[..16]), prefix, "{algorithm:?}");
            assert!(!verify(algorithm, &key, data, &full[..16]).unwrap());
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_fails_verification() {
        let key = KeyMaterial::new(zeroize::Zeroizing::new(vec![7u8; 32]));
        let good = compute(MacAlgorithm::HmacSha256, &key, b"m").unwrap();
        for i in 0..good.len() * 8 {
            let mut bad = good.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(!verify(MacAlgorithm::HmacSha256, &key, b"m", &bad).unwrap());
        }
    }

    #[test]
    fn generated_keys_have_the_aws_lengths() {
        let entropy = crate::env::OsEntropy::default();
        for (spec, len) in [
            (KeySpec::Hmac224, 28),
            (KeySpec::Hmac256, 32),
            (KeySpec::Hmac384, 48),
            (KeySpec::Hmac512, 64),
        ] {
            let key = generate_key(spec, &entropy).unwrap();
            assert_eq!(key.expose_secret().len(), len, "{spec:?}");
        }
        assert!(generate_key(KeySpec::SymmetricDefault, &entropy).is_err());
    }
}
