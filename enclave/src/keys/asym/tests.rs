//! Round trips of every asymmetric key spec and algorithm, AWS's plaintext limits, ECDH.
//!
//! Independent verification (RustCrypto from the DER public key) lives in the end-to-end tests,
//! `tests/tests/asymmetric.rs`; here AWS-LC checks itself, and the edges are pinned.

#![allow(clippy::unwrap_used)]

use super::*;

const RSA: [KeySpec; 3] = [KeySpec::Rsa2048, KeySpec::Rsa3072, KeySpec::Rsa4096];
const ECC: [KeySpec; 4] = [
    KeySpec::EccNistP256,
    KeySpec::EccNistP384,
    KeySpec::EccNistP521,
    KeySpec::EccSecgP256k1,
];
const ALL_SIGNING: [SigningAlgorithm; 9] = [
    SigningAlgorithm::RsassaPssSha256,
    SigningAlgorithm::RsassaPssSha384,
    SigningAlgorithm::RsassaPssSha512,
    SigningAlgorithm::RsassaPkcs1V15Sha256,
    SigningAlgorithm::RsassaPkcs1V15Sha384,
    SigningAlgorithm::RsassaPkcs1V15Sha512,
    SigningAlgorithm::EcdsaSha256,
    SigningAlgorithm::EcdsaSha384,
    SigningAlgorithm::EcdsaSha512,
];
const OAEP: [OaepAlgorithmSpec; 2] = [
    OaepAlgorithmSpec::RsaesOaepSha1,
    OaepAlgorithmSpec::RsaesOaepSha256,
];

fn modulus_bytes(spec: KeySpec) -> usize {
    match spec {
        KeySpec::Rsa2048 => 256,
        KeySpec::Rsa3072 => 384,
        _ => 512,
    }
}

#[test]
fn every_spec_signs_and_verifies_with_every_algorithm_it_allows_raw_and_digest() {
    let message = b"ekms asymmetric round trip";
    for spec in RSA.into_iter().chain(ECC) {
        let key = generate(spec).unwrap();
        let listed = crate::kms::ops::metadata::algorithms(spec, crate::keys::KeyUsage::SignVerify);
        let mut fitting = 0;
        for algorithm in ALL_SIGNING {
            assert_eq!(
                algorithm.fits(spec),
                listed.signing.contains(&algorithm.as_str()),
                "{spec:?} {algorithm:?}: fits() and metadata::algorithms disagree"
            );
            if !algorithm.fits(spec) {
                assert!(matches!(
                    sign(spec, &key, algorithm, message, MessageType::Raw),
                    Err(AsymError::AlgorithmNotForKey { .. })
                ));
                continue;
            }
            fitting += 1;
            let digest = digest::digest(algorithm.hash(), message);
            let raw = sign(spec, &key, algorithm, message, MessageType::Raw).unwrap();
            let pre = sign(spec, &key, algorithm, digest.as_ref(), MessageType::Digest).unwrap();
            if spec.is_rsa() {
                assert_eq!(raw.len(), modulus_bytes(spec));
            } else {
                assert_eq!(raw[0], 0x30, "ECDSA signatures are DER SEQUENCEs");
            }
            // A RAW signature verifies as a DIGEST of the message's hash, and the other way round.
            for signature in [&raw, &pre] {
                verify(spec, &key, algorithm, message, MessageType::Raw, signature).unwrap();
                verify(
                    spec,
                    &key,
                    algorithm,
                    digest.as_ref(),
                    MessageType::Digest,
                    signature,
                )
                .unwrap();
            }
            // Another message, a flipped bit, another key: invalid.
            assert!(matches!(
                verify(spec, &key, algorithm, b"other", MessageType::Raw, &raw),
                Err(AsymError::InvalidSignature)
            ));
            let mut flipped = raw.clone();
            let last = flipped.len() - 1;
            flipped[last] ^= 1;
            assert!(matches!(
                verify(spec, &key, algorithm, message, MessageType::Raw, &flipped),
                Err(AsymError::InvalidSignature)
            ));
            assert!(matches!(
                verify(spec, &key, algorithm, message, MessageType::Raw, b""),
                Err(AsymError::InvalidSignature)
            ));
        }
        assert_eq!(fitting, listed.signing.len());
        let other = generate(spec).unwrap();
        let algorithm = ALL_SIGNING.into_iter().find(|a| a.fits(spec)).unwrap();
        let signature = sign(spec, &key, algorithm, message, MessageType::Raw).unwrap();
        assert!(matches!(
            verify(
                spec,
                &other,
                algorithm,
                message,
                MessageType::Raw,
                &signature
            ),
            Err(AsymError::InvalidSignature)
        ));
    }
}

#[test]
fn a_digest_must_have_the_length_of_the_algorithms_hash() {
    let key = generate(KeySpec::EccNistP384).unwrap();
    for len in [0, 32, 47, 49, 64] {
        let err = sign(
            KeySpec::EccNistP384,
            &key,
            SigningAlgorithm::EcdsaSha384,
            &vec![7u8; len],
            MessageType::Digest,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            AsymError::DigestLength {
                expected: 48,
                got,
                ..
            } if got == len
        ));
        assert_eq!(KmsError::from(err).aws_code(), "ValidationException");
    }
    sign(
        KeySpec::EccNistP384,
        &key,
        SigningAlgorithm::EcdsaSha384,
        &[7u8; 48],
        MessageType::Digest,
    )
    .unwrap();
}

#[test]
fn rsa_pss_salt_is_the_hash_length() {
    // With salt length = hLen, a PSS signature verifies under the verifier pinned to that salt
    // length (aws-lc-rs's RSA_PSS_2048_8192_* use RsaPssSaltLength::Digest), and AWS KMS does the
    // same: checked against an independent verifier in tests/tests/asymmetric.rs.
    let key = generate(KeySpec::Rsa2048).unwrap();
    let spki = public_key(KeySpec::Rsa2048, &key).unwrap();
    for (algorithm, verifier) in [
        (
            SigningAlgorithm::RsassaPssSha256,
            &signature::RSA_PSS_2048_8192_SHA256,
        ),
        (
            SigningAlgorithm::RsassaPssSha512,
            &signature::RSA_PSS_2048_8192_SHA512,
        ),
    ] {
        let sig = sign(KeySpec::Rsa2048, &key, algorithm, b"m", MessageType::Raw).unwrap();
        UnparsedPublicKey::new(verifier, &spki)
            .verify(b"m", &sig)
            .unwrap();
    }
}

#[test]
fn public_keys_are_der_subject_public_key_info() {
    for spec in RSA.into_iter().chain(ECC) {
        let key = generate(spec).unwrap();
        let spki = public_key(spec, &key).unwrap();
        assert_eq!(spki[0], 0x30);
        // The same key answers the same public key.
        assert_eq!(spki, public_key(spec, &key).unwrap());
        // A key of one spec does not load as another.
        let wrong = if spec.is_rsa() {
            KeySpec::EccNistP256
        } else if spec == KeySpec::EccNistP256 {
            KeySpec::EccNistP384
        } else {
            KeySpec::EccNistP256
        };
        assert!(matches!(
            public_key(wrong, &key),
            Err(AsymError::StoredKey(_))
        ));
    }
    // Uncompressed points: 1 + 2·32, 1 + 2·48, 1 + 2·66 bytes, plus the SPKI header.
    let p256 = public_key(
        KeySpec::EccNistP256,
        &generate(KeySpec::EccNistP256).unwrap(),
    )
    .unwrap();
    assert_eq!(p256.len(), 91);
}

#[test]
fn oaep_round_trips_at_awss_plaintext_limits_and_refuses_one_more_byte() {
    // AWS KMS: RSA_2048 214 / 190, RSA_3072 342 / 318, RSA_4096 470 / 446 bytes (SHA-1 / SHA-256).
    let limits = [
        (KeySpec::Rsa2048, [214, 190]),
        (KeySpec::Rsa3072, [342, 318]),
        (KeySpec::Rsa4096, [470, 446]),
    ];
    for (spec, maxes) in limits {
        let key = generate(spec).unwrap();
        for (algorithm, max) in OAEP.into_iter().zip(maxes) {
            assert_eq!(oaep_max_plaintext(spec, algorithm).unwrap(), max);
            for len in [1, max] {
                let plaintext = vec![0xa5u8; len];
                let ciphertext = oaep_encrypt(spec, &key, algorithm, &plaintext).unwrap();
                assert_eq!(ciphertext.len(), modulus_bytes(spec));
                let back = oaep_decrypt(spec, &key, algorithm, &ciphertext).unwrap();
                assert_eq!(&back[..], &plaintext[..]);
            }
            let err = oaep_encrypt(spec, &key, algorithm, &vec![0u8; max + 1]).unwrap_err();
            assert!(matches!(err, AsymError::PlaintextTooLong { got, .. } if got == max + 1));
            assert_eq!(KmsError::from(err).aws_code(), "ValidationException");
        }
    }
}

#[test]
fn oaep_failures_are_one_opaque_invalid_ciphertext() {
    let spec = KeySpec::Rsa2048;
    let key = generate(spec).unwrap();
    let other = generate(spec).unwrap();
    let sha256 = OaepAlgorithmSpec::RsaesOaepSha256;
    let ciphertext = oaep_encrypt(spec, &key, sha256, b"secret").unwrap();
    let mut flipped = ciphertext.clone();
    flipped[100] ^= 0x80;
    for (key, algorithm, blob) in [
        (&key, OaepAlgorithmSpec::RsaesOaepSha1, &ciphertext[..]),
        (&other, sha256, &ciphertext[..]),
        (&key, sha256, &flipped[..]),
        (&key, sha256, &ciphertext[1..]),
        (&key, sha256, b""),
        (&key, sha256, &[0xffu8; 256][..]),
    ] {
        let err = oaep_decrypt(spec, key, algorithm, blob).unwrap_err();
        assert!(matches!(err, AsymError::InvalidCiphertext));
        assert_eq!(KmsError::from(err).aws_code(), "InvalidCiphertextException");
    }
}

#[test]
fn ecdh_agrees_both_ways_on_the_x_coordinate() {
    for (spec, len) in [
        (KeySpec::EccNistP256, 32),
        (KeySpec::EccNistP384, 48),
        (KeySpec::EccNistP521, 66),
    ] {
        let alice = generate(spec).unwrap();
        let bob = generate(spec).unwrap();
        let alice_pub = public_key(spec, &alice).unwrap();
        let bob_pub = public_key(spec, &bob).unwrap();
        let ab = derive_shared_secret(spec, &alice, &bob_pub).unwrap();
        let ba = derive_shared_secret(spec, &bob, &alice_pub).unwrap();
        assert_eq!(&ab[..], &ba[..]);
        assert_eq!(ab.len(), len);
        // Z is the x-coordinate of d_A·Q_B: with an ephemeral AWS-LC key on the peer side,
        // the peer computes the same bytes.
        let eph = agreement::PrivateKey::generate(ecdh(spec).unwrap()).unwrap();
        let eph_pub = eph.compute_public_key().unwrap();
        let eph_spki = AsDer::<PublicKeyX509Der>::as_der(&eph_pub).unwrap();
        let ours = derive_shared_secret(spec, &alice, eph_spki.as_ref()).unwrap();
        let theirs = agreement::agree(
            &eph,
            agreement::UnparsedPublicKey::new(ecdh(spec).unwrap(), &alice_pub),
            (),
            |z| Ok(z.to_vec()),
        )
        .unwrap();
        assert_eq!(&ours[..], &theirs[..]);
        // A raw SEC 1 point is not SPKI, and AWS KMS refuses it.
        assert!(matches!(
            derive_shared_secret(spec, &alice, eph_pub.as_ref()),
            Err(AsymError::InvalidPeerKey)
        ));
    }
}

#[test]
fn ecdh_refuses_a_peer_on_another_curve_garbage_and_non_nist_keys() {
    let p256 = generate(KeySpec::EccNistP256).unwrap();
    let p384 = generate(KeySpec::EccNistP384).unwrap();
    let p384_pub = public_key(KeySpec::EccNistP384, &p384).unwrap();
    let rsa = generate(KeySpec::Rsa2048).unwrap();
    let rsa_pub = public_key(KeySpec::Rsa2048, &rsa).unwrap();
    for peer in [&p384_pub[..], &rsa_pub[..], b"\x30\x03\x02\x01\x00", b""] {
        let err = derive_shared_secret(KeySpec::EccNistP256, &p256, peer).unwrap_err();
        assert!(matches!(err, AsymError::InvalidPeerKey), "{err:?}");
        assert_eq!(KmsError::from(err).aws_code(), "ValidationException");
    }
    let k1 = generate(KeySpec::EccSecgP256k1).unwrap();
    assert!(matches!(
        derive_shared_secret(KeySpec::EccSecgP256k1, &k1, &p384_pub),
        Err(AsymError::UnsupportedSpec("ECC_SECG_P256K1"))
    ));
}

#[test]
fn symmetric_hmac_and_sm2_specs_are_not_asymmetric_here() {
    for spec in [KeySpec::SymmetricDefault, KeySpec::Hmac256, KeySpec::Sm2] {
        assert!(matches!(generate(spec), Err(AsymError::UnsupportedSpec(_))));
    }
}

#[test]
fn private_keys_are_pkcs8_and_never_printed() {
    let key = generate(KeySpec::EccNistP256).unwrap();
    assert_eq!(format!("{key:?}"), "KeyMaterial(..)");
    // PKCS #8 v1: SEQUENCE { INTEGER 0, AlgorithmIdentifier { id-ecPublicKey, ... }, ... }.
    assert_eq!(&key.expose_secret()[..1], &[0x30]);
    agreement::PrivateKey::from_private_key_der(&agreement::ECDH_P256, key.expose_secret())
        .unwrap();
}
