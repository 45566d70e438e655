//! Asymmetric keys end to end, through the AWS SDK for Rust against one shared `ekms dev`.
//!
//! The service computes with aws-lc-rs; every check here uses an independent implementation
//! (RustCrypto `p256`, `p384`, `p521`, `k256`, `rsa`) working only from what the service
//! publishes — GetPublicKey's DER SubjectPublicKeyInfo — as a client of AWS KMS would:
//! - signatures of every key spec and signing algorithm, MessageType RAW and DIGEST, verify;
//! - RSAES-OAEP ciphertexts made locally with the public key decrypt in the service, and
//!   ReEncrypt moves them to symmetric and RSA keys;
//! - GenerateDataKeyPair's private key is PKCS #8 whose public half is the PublicKey answered;
//! - DeriveSharedSecret equals the ECDH x-coordinate computed locally;
//! - a key used for the wrong purpose answers InvalidKeyUsageException.
//!
//! The `rsa` crate is used for public-key operations only (verification, OAEP encryption):
//! RUSTSEC-2023-0071 (Marvin) concerns its private-key decryption, which is not used.

use aws_sdk_kms::error::DisplayErrorContext;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    DataKeyPairSpec, EncryptionAlgorithmSpec, KeyAgreementAlgorithmSpec, KeySpec, KeyUsageType,
    MessageType, SigningAlgorithmSpec,
};
use ekms_tests::{assert_code, create_key, key_arn, Ekms};
use rsa::traits::PublicKeyParts as _;
use sha2::Digest as _;

async fn client() -> aws_sdk_kms::Client {
    Ekms::shared().client().await
}

async fn asym_key(client: &aws_sdk_kms::Client, spec: KeySpec, usage: KeyUsageType) -> String {
    let out = client
        .create_key()
        .key_spec(spec.clone())
        .key_usage(usage.clone())
        .description("ekms-tests asymmetric")
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateKey {spec:?} {usage:?}: {}", DisplayErrorContext(e)));
    let meta = out.key_metadata().expect("KeyMetadata");
    assert_eq!(meta.key_spec(), Some(&spec));
    assert_eq!(meta.key_usage(), Some(&usage));
    meta.key_id().to_owned()
}

async fn public_key(client: &aws_sdk_kms::Client, key: &str) -> Vec<u8> {
    let out = client
        .get_public_key()
        .key_id(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetPublicKey: {}", DisplayErrorContext(e)));
    assert_eq!(out.key_id(), Some(key_arn(key).as_str()));
    out.public_key().expect("PublicKey").as_ref().to_vec()
}

/// The hash a signing algorithm names, of `message`.
fn hash(algorithm: &SigningAlgorithmSpec, message: &[u8]) -> Vec<u8> {
    let name = algorithm.as_str();
    if name.ends_with("256") {
        sha2::Sha256::digest(message).to_vec()
    } else if name.ends_with("384") {
        sha2::Sha384::digest(message).to_vec()
    } else {
        sha2::Sha512::digest(message).to_vec()
    }
}

/// Verifies `signature` over `digest` (the algorithm's hash of the message) with RustCrypto,
/// from the DER SubjectPublicKeyInfo alone.
fn verify_independently(
    spec: &KeySpec,
    algorithm: &SigningAlgorithmSpec,
    spki: &[u8],
    digest: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    use ecdsa_verify::PrehashVerifier as _;
    use p256::pkcs8::DecodePublicKey as _;
    let fail = |e: &dyn std::fmt::Display| e.to_string();
    match spec {
        KeySpec::EccNistP256 => {
            let key = p256::ecdsa::VerifyingKey::from_public_key_der(spki).map_err(|e| fail(&e))?;
            let sig = p256::ecdsa::Signature::from_der(signature).map_err(|e| fail(&e))?;
            key.verify_prehash(digest, &sig).map_err(|e| fail(&e))
        }
        KeySpec::EccNistP384 => {
            let key = p384::ecdsa::VerifyingKey::from_public_key_der(spki).map_err(|e| fail(&e))?;
            let sig = p384::ecdsa::Signature::from_der(signature).map_err(|e| fail(&e))?;
            key.verify_prehash(digest, &sig).map_err(|e| fail(&e))
        }
        KeySpec::EccNistP521 => {
            let point = p521::PublicKey::from_public_key_der(spki).map_err(|e| fail(&e))?;
            let key = p521::ecdsa::VerifyingKey::from_sec1_bytes(&point.to_sec1_bytes())
                .map_err(|e| fail(&e))?;
            let sig = p521::ecdsa::Signature::from_der(signature).map_err(|e| fail(&e))?;
            key.verify_prehash(digest, &sig).map_err(|e| fail(&e))
        }
        KeySpec::EccSecgP256K1 => {
            let key = k256::ecdsa::VerifyingKey::from_public_key_der(spki).map_err(|e| fail(&e))?;
            let sig = k256::ecdsa::Signature::from_der(signature).map_err(|e| fail(&e))?;
            // k256 accepts only low-S signatures (BIP 62); AWS KMS, like any ECDSA signer, may
            // answer either. (r, n − s) is valid exactly when (r, s) is, so normalize first.
            let sig = sig.normalize_s().unwrap_or(sig);
            key.verify_prehash(digest, &sig).map_err(|e| fail(&e))
        }
        _ => {
            let key = rsa::RsaPublicKey::from_public_key_der(spki).map_err(|e| fail(&e))?;
            let name = algorithm.as_str();
            let scheme_result = match (name.contains("PSS"), digest.len()) {
                // PSS with salt length = hash length, as AWS KMS signs.
                (true, 32) => key.verify(
                    rsa::Pss::new_with_salt::<sha2::Sha256>(32),
                    digest,
                    signature,
                ),
                (true, 48) => key.verify(
                    rsa::Pss::new_with_salt::<sha2::Sha384>(48),
                    digest,
                    signature,
                ),
                (true, _) => key.verify(
                    rsa::Pss::new_with_salt::<sha2::Sha512>(64),
                    digest,
                    signature,
                ),
                (false, 32) => {
                    key.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), digest, signature)
                }
                (false, 48) => {
                    key.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha384>(), digest, signature)
                }
                (false, _) => {
                    key.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha512>(), digest, signature)
                }
            };
            scheme_result.map_err(|e| fail(&e))
        }
    }
}

mod ecdsa_verify {
    pub use p256::ecdsa::signature::hazmat::PrehashVerifier;
}

async fn sign(
    client: &aws_sdk_kms::Client,
    key: &str,
    algorithm: &SigningAlgorithmSpec,
    message_type: MessageType,
    message: &[u8],
) -> Vec<u8> {
    let out = client
        .sign()
        .key_id(key)
        .message(Blob::new(message))
        .message_type(message_type)
        .signing_algorithm(algorithm.clone())
        .send()
        .await
        .unwrap_or_else(|e| panic!("Sign {algorithm:?}: {}", DisplayErrorContext(e)));
    assert_eq!(out.key_id(), Some(key_arn(key).as_str()));
    assert_eq!(out.signing_algorithm(), Some(algorithm));
    out.signature().expect("Signature").as_ref().to_vec()
}

#[tokio::test]
async fn every_key_type_signs_and_an_independent_library_verifies_from_the_public_key() {
    use SigningAlgorithmSpec as A;
    let client = client().await;
    let rsa_all = [
        A::RsassaPssSha256,
        A::RsassaPssSha384,
        A::RsassaPssSha512,
        A::RsassaPkcs1V15Sha256,
        A::RsassaPkcs1V15Sha384,
        A::RsassaPkcs1V15Sha512,
    ];
    let cases: Vec<(KeySpec, Vec<A>)> = vec![
        (KeySpec::Rsa2048, rsa_all.to_vec()),
        (KeySpec::Rsa3072, rsa_all.to_vec()),
        (KeySpec::Rsa4096, rsa_all.to_vec()),
        (KeySpec::EccNistP256, vec![A::EcdsaSha256]),
        (KeySpec::EccNistP384, vec![A::EcdsaSha384]),
        (KeySpec::EccNistP521, vec![A::EcdsaSha512]),
        (KeySpec::EccSecgP256K1, vec![A::EcdsaSha256]),
    ];
    let message = b"ekms: a message signed inside the enclave".repeat(20);
    for (spec, algorithms) in cases {
        let key = asym_key(&client, spec.clone(), KeyUsageType::SignVerify).await;
        let spki = public_key(&client, &key).await;
        let described = client
            .describe_key()
            .key_id(&key)
            .send()
            .await
            .expect("DescribeKey");
        let listed = described
            .key_metadata()
            .expect("KeyMetadata")
            .signing_algorithms()
            .to_vec();
        assert_eq!(listed, algorithms, "{spec:?}: SigningAlgorithms");
        for algorithm in &algorithms {
            let digest = hash(algorithm, &message);
            let raw = sign(&client, &key, algorithm, MessageType::Raw, &message).await;
            let pre = sign(&client, &key, algorithm, MessageType::Digest, &digest).await;
            for signature in [&raw, &pre] {
                verify_independently(&spec, algorithm, &spki, &digest, signature)
                    .unwrap_or_else(|e| panic!("{spec:?} {algorithm:?}: {e}"));
                let out = client
                    .verify()
                    .key_id(&key)
                    .message(Blob::new(message.clone()))
                    .signature(Blob::new(signature.clone()))
                    .signing_algorithm(algorithm.clone())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("Verify: {}", DisplayErrorContext(e)));
                assert!(out.signature_valid());
            }
            // The independent verifier refuses another message, and so does the service.
            let other = hash(algorithm, b"another message");
            assert!(verify_independently(&spec, algorithm, &spki, &other, &raw).is_err());
            assert_code!(
                client
                    .verify()
                    .key_id(&key)
                    .message(Blob::new(other))
                    .message_type(MessageType::Digest)
                    .signature(Blob::new(raw))
                    .signing_algorithm(algorithm.clone())
                    .send()
                    .await,
                "KMSInvalidSignatureException"
            );
        }
    }
}

#[tokio::test]
async fn rsa_ciphertexts_made_locally_with_the_public_key_decrypt_in_the_service() {
    use rsa::pkcs8::DecodePublicKey as _;
    let client = client().await;
    for (spec, limits) in [
        (KeySpec::Rsa2048, [214, 190]),
        (KeySpec::Rsa3072, [342, 318]),
        (KeySpec::Rsa4096, [470, 446]),
    ] {
        let key = asym_key(&client, spec.clone(), KeyUsageType::EncryptDecrypt).await;
        let public = rsa::RsaPublicKey::from_public_key_der(&public_key(&client, &key).await)
            .expect("RSA SubjectPublicKeyInfo");
        for (algorithm, max) in [
            (EncryptionAlgorithmSpec::RsaesOaepSha1, limits[0]),
            (EncryptionAlgorithmSpec::RsaesOaepSha256, limits[1]),
        ] {
            let plaintext: Vec<u8> = (0..max).map(|i| (i * 7 % 251) as u8).collect();
            let mut rng = rsa::rand_core::OsRng;
            let ciphertext = match algorithm {
                EncryptionAlgorithmSpec::RsaesOaepSha1 => {
                    public.encrypt(&mut rng, rsa::Oaep::new::<sha1::Sha1>(), &plaintext)
                }
                _ => public.encrypt(&mut rng, rsa::Oaep::new::<sha2::Sha256>(), &plaintext),
            }
            .expect("local RSAES-OAEP encryption");
            let out = client
                .decrypt()
                .key_id(&key)
                .ciphertext_blob(Blob::new(ciphertext))
                .encryption_algorithm(algorithm.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("Decrypt {spec:?}: {}", DisplayErrorContext(e)));
            assert_eq!(out.plaintext().expect("Plaintext").as_ref(), &plaintext[..]);
            assert_eq!(out.encryption_algorithm(), Some(&algorithm));
            assert_eq!(out.key_id(), Some(key_arn(&key).as_str()));
            // The service's own ciphertext round-trips, and one byte over AWS's limit is refused.
            let sealed = client
                .encrypt()
                .key_id(&key)
                .plaintext(Blob::new(plaintext.clone()))
                .encryption_algorithm(algorithm.clone())
                .send()
                .await
                .expect("Encrypt");
            let blob = sealed.ciphertext_blob().expect("CiphertextBlob").clone();
            assert_eq!(blob.as_ref().len(), public.size());
            let back = client
                .decrypt()
                .key_id(&key)
                .ciphertext_blob(blob)
                .encryption_algorithm(algorithm.clone())
                .send()
                .await
                .expect("Decrypt");
            assert_eq!(
                back.plaintext().expect("Plaintext").as_ref(),
                &plaintext[..]
            );
            assert_code!(
                client
                    .encrypt()
                    .key_id(&key)
                    .plaintext(Blob::new(vec![0u8; max + 1]))
                    .encryption_algorithm(algorithm.clone())
                    .send()
                    .await,
                "ValidationException"
            );
        }
    }
}

/// ReEncrypt from an RSA key: the ciphertext does not name its key, so SourceKeyId names it and
/// SourceEncryptionAlgorithm its RSAES-OAEP; the destination is a symmetric key or another RSA
/// key (DestinationEncryptionAlgorithm). A symmetric ciphertext moves to an RSA key too. The
/// service once refused every RSA source as "not compatible with the symmetric KMS key".
#[tokio::test]
async fn re_encrypt_from_and_to_rsa_keys() {
    use aws_sdk_kms::error::ProvideErrorMetadata as _;
    use rsa::pkcs8::DecodePublicKey as _;
    let client = client().await;
    let source = asym_key(&client, KeySpec::Rsa2048, KeyUsageType::EncryptDecrypt).await;
    let rsa_destination = asym_key(&client, KeySpec::Rsa3072, KeyUsageType::EncryptDecrypt).await;
    let symmetric = create_key(&client).await;
    let public = rsa::RsaPublicKey::from_public_key_der(&public_key(&client, &source).await)
        .expect("RSA SubjectPublicKeyInfo");
    let plaintext = b"moved between keys without leaving the service".to_vec();
    let ciphertext = public
        .encrypt(
            &mut rsa::rand_core::OsRng,
            rsa::Oaep::new::<sha2::Sha256>(),
            &plaintext,
        )
        .expect("local RSAES-OAEP encryption");
    let decrypt = |key: String, blob: Blob, algorithm: EncryptionAlgorithmSpec| {
        let client = client.clone();
        async move {
            client
                .decrypt()
                .key_id(key)
                .ciphertext_blob(blob)
                .encryption_algorithm(algorithm)
                .send()
                .await
                .unwrap_or_else(|e| panic!("Decrypt: {}", DisplayErrorContext(e)))
                .plaintext()
                .expect("Plaintext")
                .as_ref()
                .to_vec()
        }
    };

    // RSA to symmetric.
    let out = client
        .re_encrypt()
        .ciphertext_blob(Blob::new(ciphertext.clone()))
        .source_key_id(&source)
        .source_encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
        .destination_key_id(&symmetric)
        .destination_encryption_context("purpose", "re-encrypt")
        .send()
        .await
        .unwrap_or_else(|e| panic!("ReEncrypt RSA to symmetric: {}", DisplayErrorContext(e)));
    assert_eq!(out.source_key_id(), Some(key_arn(&source).as_str()));
    assert_eq!(out.key_id(), Some(key_arn(&symmetric).as_str()));
    assert_eq!(
        out.source_encryption_algorithm(),
        Some(&EncryptionAlgorithmSpec::RsaesOaepSha256)
    );
    assert_eq!(
        out.destination_encryption_algorithm(),
        Some(&EncryptionAlgorithmSpec::SymmetricDefault)
    );
    let back = client
        .decrypt()
        .ciphertext_blob(out.ciphertext_blob().expect("CiphertextBlob").clone())
        .encryption_context("purpose", "re-encrypt")
        .send()
        .await
        .expect("Decrypt of the re-encrypted blob");
    assert_eq!(
        back.plaintext().expect("Plaintext").as_ref(),
        &plaintext[..]
    );

    // RSA to RSA.
    let out = client
        .re_encrypt()
        .ciphertext_blob(Blob::new(ciphertext.clone()))
        .source_key_id(key_arn(&source))
        .source_encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
        .destination_key_id(&rsa_destination)
        .destination_encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha1)
        .send()
        .await
        .unwrap_or_else(|e| panic!("ReEncrypt RSA to RSA: {}", DisplayErrorContext(e)));
    assert_eq!(out.key_id(), Some(key_arn(&rsa_destination).as_str()));
    assert_eq!(
        out.destination_encryption_algorithm(),
        Some(&EncryptionAlgorithmSpec::RsaesOaepSha1)
    );
    let blob = out.ciphertext_blob().expect("CiphertextBlob").clone();
    assert_eq!(blob.as_ref().len(), 384, "an RSA-3072 ciphertext");
    assert_eq!(
        decrypt(
            rsa_destination.clone(),
            blob,
            EncryptionAlgorithmSpec::RsaesOaepSha1
        )
        .await,
        plaintext
    );

    // Symmetric to RSA.
    let sealed = client
        .encrypt()
        .key_id(&symmetric)
        .plaintext(Blob::new(plaintext.clone()))
        .send()
        .await
        .expect("Encrypt");
    let out = client
        .re_encrypt()
        .ciphertext_blob(sealed.ciphertext_blob().expect("CiphertextBlob").clone())
        .destination_key_id(&source)
        .destination_encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
        .send()
        .await
        .unwrap_or_else(|e| panic!("ReEncrypt symmetric to RSA: {}", DisplayErrorContext(e)));
    assert_eq!(out.source_key_id(), Some(key_arn(&symmetric).as_str()));
    assert_eq!(
        decrypt(
            source.clone(),
            out.ciphertext_blob().expect("CiphertextBlob").clone(),
            EncryptionAlgorithmSpec::RsaesOaepSha256
        )
        .await,
        plaintext
    );

    // An RSA source without its algorithm, and an RSA destination with an encryption context,
    // are refused as Decrypt and Encrypt refuse them.
    let refused = client
        .re_encrypt()
        .ciphertext_blob(Blob::new(ciphertext.clone()))
        .source_key_id(&source)
        .destination_key_id(&symmetric)
        .send()
        .await
        .expect_err("ReEncrypt from RSA without SourceEncryptionAlgorithm")
        .into_service_error();
    assert_eq!(refused.code(), Some("InvalidKeyUsageException"));
    let refused = client
        .re_encrypt()
        .ciphertext_blob(Blob::new(ciphertext))
        .source_key_id(&source)
        .source_encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
        .destination_key_id(&rsa_destination)
        .destination_encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
        .destination_encryption_context("purpose", "re-encrypt")
        .send()
        .await
        .expect_err("ReEncrypt to RSA with an encryption context")
        .into_service_error();
    assert_eq!(refused.code(), Some("ValidationException"));
}

#[tokio::test]
async fn generate_data_key_pair_answers_pkcs8_matching_the_public_key() {
    use p256::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
    use rsa::pkcs8::DecodePublicKey as _;
    let client = client().await;
    let kek = create_key(&client).await;
    let out = client
        .generate_data_key_pair()
        .key_id(&kek)
        .key_pair_spec(DataKeyPairSpec::EccNistP256)
        .encryption_context("purpose", "ekms-tests")
        .send()
        .await
        .unwrap_or_else(|e| panic!("GenerateDataKeyPair: {}", DisplayErrorContext(e)));
    assert_eq!(out.key_pair_spec(), Some(&DataKeyPairSpec::EccNistP256));
    assert_eq!(out.key_id(), Some(key_arn(&kek).as_str()));
    let private = out
        .private_key_plaintext()
        .expect("PrivateKeyPlaintext")
        .as_ref()
        .to_vec();
    let secret = p256::SecretKey::from_pkcs8_der(&private).expect("PKCS #8 P-256 private key");
    let spki = secret
        .public_key()
        .to_public_key_der()
        .expect("SPKI encoding");
    assert_eq!(
        spki.as_bytes(),
        out.public_key().expect("PublicKey").as_ref()
    );
    let back = client
        .decrypt()
        .ciphertext_blob(
            out.private_key_ciphertext_blob()
                .expect("PrivateKeyCiphertextBlob")
                .clone(),
        )
        .encryption_context("purpose", "ekms-tests")
        .send()
        .await
        .expect("Decrypt");
    assert_eq!(back.plaintext().expect("Plaintext").as_ref(), &private[..]);

    let rsa_pair = client
        .generate_data_key_pair_without_plaintext()
        .key_id(&kek)
        .key_pair_spec(DataKeyPairSpec::Rsa2048)
        .send()
        .await
        .expect("GenerateDataKeyPairWithoutPlaintext");
    let private = client
        .decrypt()
        .ciphertext_blob(
            rsa_pair
                .private_key_ciphertext_blob()
                .expect("PrivateKeyCiphertextBlob")
                .clone(),
        )
        .send()
        .await
        .expect("Decrypt");
    let private =
        rsa::RsaPrivateKey::from_pkcs8_der(private.plaintext().expect("Plaintext").as_ref())
            .expect("PKCS #8 RSA private key");
    let public =
        rsa::RsaPublicKey::from_public_key_der(rsa_pair.public_key().expect("PublicKey").as_ref())
            .expect("RSA SubjectPublicKeyInfo");
    assert_eq!(private.to_public_key(), public);
}

#[tokio::test]
async fn derive_shared_secret_is_the_ecdh_x_coordinate_computed_locally() {
    use p256::pkcs8::{DecodePublicKey as _, EncodePublicKey as _};
    let client = client().await;
    let key = asym_key(&client, KeySpec::EccNistP256, KeyUsageType::KeyAgreement).await;
    let kms_public = p256::PublicKey::from_public_key_der(&public_key(&client, &key).await)
        .expect("P-256 SubjectPublicKeyInfo");
    let ours = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let local = p256::ecdh::diffie_hellman(ours.to_nonzero_scalar(), kms_public.as_affine());
    let out = client
        .derive_shared_secret()
        .key_id(&key)
        .key_agreement_algorithm(KeyAgreementAlgorithmSpec::Ecdh)
        .public_key(Blob::new(
            ours.public_key()
                .to_public_key_der()
                .expect("SPKI encoding")
                .as_bytes(),
        ))
        .send()
        .await
        .unwrap_or_else(|e| panic!("DeriveSharedSecret: {}", DisplayErrorContext(e)));
    assert_eq!(
        out.shared_secret().expect("SharedSecret").as_ref(),
        local.raw_secret_bytes().as_slice()
    );
    assert_eq!(
        out.key_agreement_algorithm(),
        Some(&KeyAgreementAlgorithmSpec::Ecdh)
    );
}

#[tokio::test]
async fn keys_used_for_the_wrong_purpose_answer_invalid_key_usage() {
    let client = client().await;
    let rsa_encrypt = asym_key(&client, KeySpec::Rsa2048, KeyUsageType::EncryptDecrypt).await;
    let ecc_sign = asym_key(&client, KeySpec::EccNistP256, KeyUsageType::SignVerify).await;
    let ecdh = asym_key(&client, KeySpec::EccNistP384, KeyUsageType::KeyAgreement).await;
    let symmetric = create_key(&client).await;
    for key in [&rsa_encrypt, &ecdh, &symmetric] {
        assert_code!(
            client
                .sign()
                .key_id(key)
                .message(Blob::new("m"))
                .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
                .send()
                .await,
            "InvalidKeyUsageException"
        );
    }
    // An algorithm the key spec does not allow.
    assert_code!(
        client
            .sign()
            .key_id(&ecc_sign)
            .message(Blob::new("m"))
            .signing_algorithm(SigningAlgorithmSpec::RsassaPssSha256)
            .send()
            .await,
        "InvalidKeyUsageException"
    );
    for key in [&ecc_sign, &ecdh] {
        assert_code!(
            client
                .encrypt()
                .key_id(key)
                .plaintext(Blob::new("m"))
                .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
                .send()
                .await,
            "InvalidKeyUsageException"
        );
    }
    let peer = public_key(&client, &ecdh).await;
    assert_code!(
        client
            .derive_shared_secret()
            .key_id(&ecc_sign)
            .key_agreement_algorithm(KeyAgreementAlgorithmSpec::Ecdh)
            .public_key(Blob::new(peer))
            .send()
            .await,
        "InvalidKeyUsageException"
    );
    assert_code!(
        client
            .generate_data_key_pair()
            .key_id(&rsa_encrypt)
            .key_pair_spec(DataKeyPairSpec::EccNistP256)
            .send()
            .await,
        "InvalidKeyUsageException"
    );
    assert_code!(
        client.get_public_key().key_id(&symmetric).send().await,
        "UnsupportedOperationException"
    );
    // Asymmetric keys need a KeyUsage, and not just any.
    assert_code!(
        client.create_key().key_spec(KeySpec::Rsa2048).send().await,
        "ValidationException"
    );
    assert_code!(
        client
            .create_key()
            .key_spec(KeySpec::EccSecgP256K1)
            .key_usage(KeyUsageType::KeyAgreement)
            .send()
            .await,
        "ValidationException"
    );
}
