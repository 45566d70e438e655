//! Encrypt, Decrypt, ReEncrypt, GenerateDataKey(WithoutPlaintext) and GenerateRandom through
//! the AWS SDK against one shared `ekms dev`. Each test creates its own keys.

use aws_sdk_kms::error::DisplayErrorContext;
use aws_sdk_kms::operation::decrypt::DecryptError;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, EncryptionAlgorithmSpec};
use ekms_tests::{alias_arn, assert_code, create_key, key_arn, unique, Ekms};

async fn client() -> aws_sdk_kms::Client {
    Ekms::shared().client().await
}

async fn encrypt(client: &aws_sdk_kms::Client, key: &str, plaintext: &[u8]) -> Vec<u8> {
    client
        .encrypt()
        .key_id(key)
        .plaintext(Blob::new(plaintext))
        .send()
        .await
        .unwrap_or_else(|e| panic!("Encrypt: {}", DisplayErrorContext(e)))
        .ciphertext_blob()
        .expect("Encrypt returns CiphertextBlob")
        .as_ref()
        .to_vec()
}

#[tokio::test]
async fn encrypt_decrypt_round_trip_with_encryption_context() {
    let client = client().await;
    let key = create_key(&client).await;
    let plaintext = b"attack at dawn".to_vec();
    let out = client
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(plaintext.clone()))
        .encryption_context("purpose", "test")
        .encryption_context("tenant", "42")
        .send()
        .await
        .expect("Encrypt");
    assert_eq!(out.key_id(), Some(key_arn(&key).as_str()));
    assert_eq!(
        out.encryption_algorithm(),
        Some(&EncryptionAlgorithmSpec::SymmetricDefault)
    );
    let blob = out.ciphertext_blob().expect("CiphertextBlob").clone();
    assert!(
        !blob
            .as_ref()
            .windows(plaintext.len())
            .any(|w| w == plaintext.as_slice()),
        "the plaintext appears in the ciphertext blob"
    );

    // Context order does not matter; KeyId is optional for symmetric ciphertexts.
    let out = client
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("tenant", "42")
        .encryption_context("purpose", "test")
        .send()
        .await
        .expect("Decrypt without KeyId");
    assert_eq!(
        out.plaintext().map(Blob::as_ref),
        Some(plaintext.as_slice())
    );
    assert_eq!(out.key_id(), Some(key_arn(&key).as_str()));
    assert_eq!(
        out.encryption_algorithm(),
        Some(&EncryptionAlgorithmSpec::SymmetricDefault)
    );

    let out = client
        .decrypt()
        .key_id(&key)
        .ciphertext_blob(blob)
        .encryption_context("tenant", "42")
        .encryption_context("purpose", "test")
        .send()
        .await
        .expect("Decrypt with the right KeyId");
    assert_eq!(
        out.plaintext().map(Blob::as_ref),
        Some(plaintext.as_slice())
    );
}

#[tokio::test]
async fn decrypt_with_a_different_encryption_context_is_invalid_ciphertext() {
    let client = client().await;
    let key = create_key(&client).await;
    let blob = client
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new("secret"))
        .encryption_context("purpose", "test")
        .send()
        .await
        .expect("Encrypt")
        .ciphertext_blob
        .expect("CiphertextBlob");

    let wrong_value = client
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("purpose", "other")
        .send()
        .await;
    assert!(
        matches!(
            wrong_value.as_ref().map_err(|e| e.as_service_error()),
            Err(Some(DecryptError::InvalidCiphertextException(_)))
        ),
        "wrong context value: {wrong_value:?}"
    );
    assert_code!(
        client.decrypt().ciphertext_blob(blob.clone()).send().await,
        "InvalidCiphertextException"
    );
    assert_code!(
        client
            .decrypt()
            .ciphertext_blob(blob.clone())
            .encryption_context("purpose", "test")
            .encryption_context("extra", "x")
            .send()
            .await,
        "InvalidCiphertextException"
    );
    assert_code!(
        client
            .decrypt()
            .ciphertext_blob(blob)
            .encryption_context("Purpose", "test")
            .send()
            .await,
        "InvalidCiphertextException"
    );
}

/// Flips one bit in every byte of a ciphertext blob in turn (version, key id, key version,
/// salt, nonce, ciphertext, tag): each must be refused with the same opaque
/// `InvalidCiphertextException`, never a hint about which check failed.
#[tokio::test]
async fn every_tampered_byte_is_invalid_ciphertext() {
    let client = client().await;
    let key = create_key(&client).await;
    let blob = encrypt(&client, &key, b"sixteen byte msg").await;
    let mut wrong = Vec::new();
    for i in 0..blob.len() {
        let mut tampered = blob.clone();
        tampered[i] ^= 0x01;
        match client
            .decrypt()
            .ciphertext_blob(Blob::new(tampered))
            .send()
            .await
        {
            Ok(_) => wrong.push(format!("byte {i}: decrypted")),
            Err(e) => {
                let code = ekms_tests::error_code(e);
                if code != "InvalidCiphertextException" {
                    wrong.push(format!("byte {i}: {code}"));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "blob of {} bytes; not InvalidCiphertextException: {wrong:?}",
        blob.len()
    );

    let mut truncated = blob.clone();
    truncated.pop();
    assert_code!(
        client
            .decrypt()
            .ciphertext_blob(Blob::new(truncated))
            .send()
            .await,
        "InvalidCiphertextException"
    );
    let mut extended = blob.clone();
    extended.push(0);
    assert_code!(
        client
            .decrypt()
            .ciphertext_blob(Blob::new(extended))
            .send()
            .await,
        "InvalidCiphertextException"
    );
    assert_code!(
        client
            .decrypt()
            .ciphertext_blob(Blob::new(vec![0x42; 64]))
            .send()
            .await,
        "InvalidCiphertextException"
    );
    // The untampered blob still opens.
    let out = client
        .decrypt()
        .ciphertext_blob(Blob::new(blob))
        .send()
        .await
        .expect("Decrypt");
    assert_eq!(
        out.plaintext().map(Blob::as_ref),
        Some(&b"sixteen byte msg"[..])
    );
}

#[tokio::test]
async fn encrypting_twice_gives_different_ciphertexts() {
    let client = client().await;
    let key = create_key(&client).await;
    let a = encrypt(&client, &key, b"same").await;
    let b = encrypt(&client, &key, b"same").await;
    assert_ne!(a, b);
}

#[tokio::test]
async fn decrypt_naming_another_key_is_incorrect_key() {
    let client = client().await;
    let key = create_key(&client).await;
    let other = create_key(&client).await;
    let blob = encrypt(&client, &key, b"x").await;
    let result = client
        .decrypt()
        .key_id(&other)
        .ciphertext_blob(Blob::new(blob))
        .send()
        .await;
    assert!(
        matches!(
            result.as_ref().map_err(|e| e.as_service_error()),
            Err(Some(DecryptError::IncorrectKeyException(_)))
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn key_id_accepts_id_arn_alias_name_and_alias_arn() {
    let client = client().await;
    let key = create_key(&client).await;
    let alias = format!("alias/{}", unique("forms"));
    client
        .create_alias()
        .alias_name(&alias)
        .target_key_id(&key)
        .send()
        .await
        .expect("CreateAlias");
    for form in [key.clone(), key_arn(&key), alias.clone(), alias_arn(&alias)] {
        let out = client
            .encrypt()
            .key_id(&form)
            .plaintext(Blob::new("hello"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("Encrypt with KeyId {form}: {}", DisplayErrorContext(e)));
        assert_eq!(out.key_id(), Some(key_arn(&key).as_str()), "KeyId {form}");
        let decrypted = client
            .decrypt()
            .key_id(&form)
            .ciphertext_blob(out.ciphertext_blob.expect("CiphertextBlob"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("Decrypt with KeyId {form}: {}", DisplayErrorContext(e)));
        assert_eq!(decrypted.plaintext().map(Blob::as_ref), Some(&b"hello"[..]));
        assert_eq!(decrypted.key_id(), Some(key_arn(&key).as_str()));
    }
}

#[tokio::test]
async fn unknown_keys_are_not_found() {
    let client = client().await;
    let missing = "0b1e7e1e-0000-4000-8000-000000000000";
    for form in [
        missing.to_owned(),
        key_arn(missing),
        format!("alias/{}", unique("missing")),
    ] {
        assert_code!(
            client
                .encrypt()
                .key_id(&form)
                .plaintext(Blob::new("x"))
                .send()
                .await,
            "NotFoundException"
        );
        assert_code!(
            client
                .generate_data_key()
                .key_id(&form)
                .key_spec(DataKeySpec::Aes256)
                .send()
                .await,
            "NotFoundException"
        );
    }
}

#[tokio::test]
async fn plaintext_must_be_1_to_4096_bytes() {
    let client = client().await;
    let key = create_key(&client).await;
    let max = vec![0xA5; 4096];
    let blob = encrypt(&client, &key, &max).await;
    let out = client
        .decrypt()
        .ciphertext_blob(Blob::new(blob))
        .send()
        .await
        .expect("Decrypt 4096 bytes");
    assert_eq!(out.plaintext().map(Blob::as_ref), Some(max.as_slice()));
    let one = encrypt(&client, &key, &[7]).await;
    assert!(!one.is_empty());

    assert_code!(
        client
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(vec![0; 4097]))
            .send()
            .await,
        "ValidationException"
    );
    assert_code!(
        client
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(Vec::new()))
            .send()
            .await,
        "ValidationException"
    );
}

#[tokio::test]
async fn encrypt_dry_run_is_dry_run_operation() {
    let client = client().await;
    let key = create_key(&client).await;
    assert_code!(
        client
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new("x"))
            .dry_run(true)
            .send()
            .await,
        "DryRunOperationException"
    );
}

#[tokio::test]
async fn re_encrypt_moves_a_ciphertext_to_another_key_and_context() {
    let client = client().await;
    let source = create_key(&client).await;
    let destination = create_key(&client).await;
    let blob = client
        .encrypt()
        .key_id(&source)
        .plaintext(Blob::new("moving"))
        .encryption_context("stage", "one")
        .send()
        .await
        .expect("Encrypt")
        .ciphertext_blob
        .expect("CiphertextBlob");

    let out = client
        .re_encrypt()
        .ciphertext_blob(blob.clone())
        .source_encryption_context("stage", "one")
        .destination_key_id(&destination)
        .destination_encryption_context("stage", "two")
        .send()
        .await
        .unwrap_or_else(|e| panic!("ReEncrypt: {}", DisplayErrorContext(e)));
    assert_eq!(out.source_key_id(), Some(key_arn(&source).as_str()));
    assert_eq!(out.key_id(), Some(key_arn(&destination).as_str()));
    let moved = out.ciphertext_blob.expect("CiphertextBlob");
    assert_ne!(moved.as_ref(), blob.as_ref());

    let decrypted = client
        .decrypt()
        .ciphertext_blob(moved.clone())
        .encryption_context("stage", "two")
        .send()
        .await
        .expect("Decrypt the re-encrypted blob");
    assert_eq!(decrypted.key_id(), Some(key_arn(&destination).as_str()));
    assert_eq!(
        decrypted.plaintext().map(Blob::as_ref),
        Some(&b"moving"[..])
    );
    assert_code!(
        client
            .decrypt()
            .ciphertext_blob(moved.clone())
            .encryption_context("stage", "one")
            .send()
            .await,
        "InvalidCiphertextException"
    );
    assert_code!(
        client
            .decrypt()
            .key_id(&source)
            .ciphertext_blob(moved)
            .encryption_context("stage", "two")
            .send()
            .await,
        "IncorrectKeyException"
    );

    // The source context is checked too.
    assert_code!(
        client
            .re_encrypt()
            .ciphertext_blob(blob)
            .source_encryption_context("stage", "wrong")
            .destination_key_id(&destination)
            .send()
            .await,
        "InvalidCiphertextException"
    );
}

#[tokio::test]
async fn re_encrypt_to_a_disabled_key_is_disabled() {
    let client = client().await;
    let source = create_key(&client).await;
    let destination = create_key(&client).await;
    let blob = encrypt(&client, &source, b"x").await;
    client
        .disable_key()
        .key_id(&destination)
        .send()
        .await
        .expect("DisableKey");
    assert_code!(
        client
            .re_encrypt()
            .ciphertext_blob(Blob::new(blob))
            .destination_key_id(&destination)
            .send()
            .await,
        "DisabledException"
    );
}

#[tokio::test]
async fn generate_data_key_with_key_spec_and_number_of_bytes() {
    let client = client().await;
    let key = create_key(&client).await;
    for (spec, len) in [(DataKeySpec::Aes256, 32), (DataKeySpec::Aes128, 16)] {
        let out = client
            .generate_data_key()
            .key_id(&key)
            .key_spec(spec.clone())
            .encryption_context("k", "v")
            .send()
            .await
            .unwrap_or_else(|e| panic!("GenerateDataKey {spec:?}: {}", DisplayErrorContext(e)));
        assert_eq!(out.key_id(), Some(key_arn(&key).as_str()));
        let plaintext = out.plaintext().expect("Plaintext").as_ref().to_vec();
        assert_eq!(plaintext.len(), len, "{spec:?}");
        let decrypted = client
            .decrypt()
            .ciphertext_blob(out.ciphertext_blob.expect("CiphertextBlob"))
            .encryption_context("k", "v")
            .send()
            .await
            .expect("Decrypt the data key");
        assert_eq!(
            decrypted.plaintext().map(Blob::as_ref),
            Some(plaintext.as_slice())
        );
    }
    for n in [1, 64, 1024] {
        let out = client
            .generate_data_key()
            .key_id(&key)
            .number_of_bytes(n)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "GenerateDataKey NumberOfBytes {n}: {}",
                    DisplayErrorContext(e)
                )
            });
        assert_eq!(
            out.plaintext().map(|p| p.as_ref().len()),
            Some(usize::try_from(n).expect("small"))
        );
    }
}

#[tokio::test]
async fn generate_data_key_needs_exactly_one_of_key_spec_and_number_of_bytes() {
    let client = client().await;
    let key = create_key(&client).await;
    assert_code!(
        client
            .generate_data_key()
            .key_id(&key)
            .key_spec(DataKeySpec::Aes256)
            .number_of_bytes(32)
            .send()
            .await,
        "ValidationException"
    );
    assert_code!(
        client.generate_data_key().key_id(&key).send().await,
        "ValidationException"
    );
    for n in [0, 1025] {
        assert_code!(
            client
                .generate_data_key()
                .key_id(&key)
                .number_of_bytes(n)
                .send()
                .await,
            "ValidationException"
        );
    }
}

#[tokio::test]
async fn generate_data_key_without_plaintext() {
    let client = client().await;
    let key = create_key(&client).await;
    let out = client
        .generate_data_key_without_plaintext()
        .key_id(&key)
        .key_spec(DataKeySpec::Aes256)
        .encryption_context("k", "v")
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "GenerateDataKeyWithoutPlaintext: {}",
                DisplayErrorContext(e)
            )
        });
    assert_eq!(out.key_id(), Some(key_arn(&key).as_str()));
    let decrypted = client
        .decrypt()
        .ciphertext_blob(out.ciphertext_blob.expect("CiphertextBlob"))
        .encryption_context("k", "v")
        .send()
        .await
        .expect("Decrypt");
    assert_eq!(decrypted.plaintext().map(|p| p.as_ref().len()), Some(32));

    let out = client
        .generate_data_key_without_plaintext()
        .key_id(&key)
        .number_of_bytes(7)
        .send()
        .await
        .expect("GenerateDataKeyWithoutPlaintext NumberOfBytes");
    let decrypted = client
        .decrypt()
        .ciphertext_blob(out.ciphertext_blob.expect("CiphertextBlob"))
        .send()
        .await
        .expect("Decrypt");
    assert_eq!(decrypted.plaintext().map(|p| p.as_ref().len()), Some(7));
    assert_code!(
        client
            .generate_data_key_without_plaintext()
            .key_id(&key)
            .send()
            .await,
        "ValidationException"
    );
}

#[tokio::test]
async fn disabled_key_refuses_crypto_until_enabled() {
    let client = client().await;
    let key = create_key(&client).await;
    let blob = encrypt(&client, &key, b"before").await;
    client
        .disable_key()
        .key_id(&key)
        .send()
        .await
        .expect("DisableKey");
    assert_code!(
        client
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new("x"))
            .send()
            .await,
        "DisabledException"
    );
    assert_code!(
        client
            .decrypt()
            .ciphertext_blob(Blob::new(blob.clone()))
            .send()
            .await,
        "DisabledException"
    );
    assert_code!(
        client
            .generate_data_key()
            .key_id(&key)
            .key_spec(DataKeySpec::Aes256)
            .send()
            .await,
        "DisabledException"
    );
    client
        .enable_key()
        .key_id(&key)
        .send()
        .await
        .expect("EnableKey");
    encrypt(&client, &key, b"after").await;
    let out = client
        .decrypt()
        .ciphertext_blob(Blob::new(blob))
        .send()
        .await
        .expect("Decrypt after EnableKey");
    assert_eq!(out.plaintext().map(Blob::as_ref), Some(&b"before"[..]));
}

#[tokio::test]
async fn generate_random_lengths() {
    let client = client().await;
    for n in [1, 32, 1024] {
        let out = client
            .generate_random()
            .number_of_bytes(n)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GenerateRandom {n}: {}", DisplayErrorContext(e)));
        assert_eq!(
            out.plaintext().map(|p| p.as_ref().len()),
            Some(usize::try_from(n).expect("small"))
        );
    }
    let a = client
        .generate_random()
        .number_of_bytes(32)
        .send()
        .await
        .expect("GenerateRandom");
    let b = client
        .generate_random()
        .number_of_bytes(32)
        .send()
        .await
        .expect("GenerateRandom");
    assert_ne!(a.plaintext(), b.plaintext());
    for n in [0, 1025] {
        assert_code!(
            client.generate_random().number_of_bytes(n).send().await,
            "ValidationException"
        );
    }
}

#[tokio::test]
async fn re_encrypt_from_a_disabled_source_key_is_disabled() {
    let client = client().await;
    let source = create_key(&client).await;
    let destination = create_key(&client).await;
    let blob = encrypt(&client, &source, b"x").await;
    client
        .disable_key()
        .key_id(&source)
        .send()
        .await
        .expect("DisableKey");
    assert_code!(
        client
            .re_encrypt()
            .ciphertext_blob(Blob::new(blob))
            .destination_key_id(&destination)
            .send()
            .await,
        "DisabledException"
    );
}

/// Many requests in flight at once, over several connections, all get their own answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_round_trips_all_succeed() {
    let client = client().await;
    let key = create_key(&client).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..48u32 {
        let client = client.clone();
        let key = key.clone();
        tasks.spawn(async move {
            let plaintext = format!("message {i}");
            let blob = client
                .encrypt()
                .key_id(&key)
                .plaintext(Blob::new(plaintext.clone()))
                .encryption_context("i", i.to_string())
                .send()
                .await
                .map_err(|e| format!("Encrypt {i}: {}", DisplayErrorContext(e)))?
                .ciphertext_blob
                .ok_or_else(|| format!("Encrypt {i}: no CiphertextBlob"))?;
            let out = client
                .decrypt()
                .ciphertext_blob(blob)
                .encryption_context("i", i.to_string())
                .send()
                .await
                .map_err(|e| format!("Decrypt {i}: {}", DisplayErrorContext(e)))?;
            if out.plaintext().map(Blob::as_ref) == Some(plaintext.as_bytes()) {
                Ok(())
            } else {
                Err(format!("round trip {i}: got {:?}", out.plaintext()))
            }
        });
    }
    let results = tokio::time::timeout(std::time::Duration::from_secs(60), tasks.join_all())
        .await
        .expect("48 concurrent round trips within 60 s");
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(failures.is_empty(), "{failures:?}");
}
