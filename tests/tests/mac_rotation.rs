//! HMAC keys (GenerateMac, VerifyMac) and key rotation (EnableKeyRotation,
//! GetKeyRotationStatus, RotateKeyOnDemand, ListKeyRotations, DisableKeyRotation) through the
//! AWS SDK for Rust against one shared `ekms dev`. Each test creates its own keys.
//!
//! Automatic rotation needs the enclave clock to pass a 90-day period, so it is tested in the
//! core (`enclave/src/kms/tests/mac_rotation.rs`, on a fixed clock); here the same versioning
//! is driven by RotateKeyOnDemand.

use aws_sdk_kms::error::DisplayErrorContext;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, MacAlgorithmSpec, RotationType};
use ekms_tests::{assert_code, create_key, key_arn, Ekms};

async fn client() -> aws_sdk_kms::Client {
    Ekms::shared().client().await
}

async fn hmac_key(client: &aws_sdk_kms::Client, spec: KeySpec) -> String {
    let out = client
        .create_key()
        .key_spec(spec.clone())
        .key_usage(KeyUsageType::GenerateVerifyMac)
        .description("ekms-tests hmac")
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateKey {spec:?}: {}", DisplayErrorContext(e)));
    let meta = out.key_metadata().expect("KeyMetadata");
    assert_eq!(meta.key_spec(), Some(&spec));
    assert_eq!(meta.key_usage(), Some(&KeyUsageType::GenerateVerifyMac));
    meta.key_id().to_owned()
}

async fn generate_mac(
    client: &aws_sdk_kms::Client,
    key: &str,
    algorithm: MacAlgorithmSpec,
    message: &[u8],
) -> Vec<u8> {
    client
        .generate_mac()
        .key_id(key)
        .mac_algorithm(algorithm)
        .message(Blob::new(message))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GenerateMac: {}", DisplayErrorContext(e)))
        .mac()
        .expect("GenerateMac returns Mac")
        .as_ref()
        .to_vec()
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
        .expect("CiphertextBlob")
        .as_ref()
        .to_vec()
}

async fn decrypt(client: &aws_sdk_kms::Client, blob: &[u8]) -> Vec<u8> {
    client
        .decrypt()
        .ciphertext_blob(Blob::new(blob))
        .send()
        .await
        .unwrap_or_else(|e| panic!("Decrypt: {}", DisplayErrorContext(e)))
        .plaintext()
        .expect("Plaintext")
        .as_ref()
        .to_vec()
}

/// The key version index in an ekms ciphertext header (bytes 17..21, big-endian; see
/// `enclave/src/ciphertext.rs`).
fn key_version(blob: &[u8]) -> u32 {
    let bytes: [u8; 4] = blob[17..21].try_into().expect("a header");
    u32::from_be_bytes(bytes)
}

#[tokio::test]
async fn macs_generate_and_verify_for_every_hmac_spec() {
    let client = client().await;
    for (spec, algorithm, len) in [
        (KeySpec::Hmac224, MacAlgorithmSpec::HmacSha224, 28),
        (KeySpec::Hmac256, MacAlgorithmSpec::HmacSha256, 32),
        (KeySpec::Hmac384, MacAlgorithmSpec::HmacSha384, 48),
        (KeySpec::Hmac512, MacAlgorithmSpec::HmacSha512, 64),
    ] {
        let key = hmac_key(&client, spec.clone()).await;
        let described = client
            .describe_key()
            .key_id(&key)
            .send()
            .await
            .expect("DescribeKey");
        assert_eq!(
            described
                .key_metadata()
                .expect("KeyMetadata")
                .mac_algorithms(),
            std::slice::from_ref(&algorithm)
        );

        let message = b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJla21zIn0";
        let mac = generate_mac(&client, &key, algorithm.clone(), message).await;
        assert_eq!(mac.len(), len, "{spec:?}");
        // HMAC is deterministic: the same message gives the same tag.
        assert_eq!(
            generate_mac(&client, &key, algorithm.clone(), message).await,
            mac
        );

        let out = client
            .verify_mac()
            .key_id(&key)
            .mac_algorithm(algorithm.clone())
            .message(Blob::new(&message[..]))
            .mac(Blob::new(mac.clone()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("VerifyMac: {}", DisplayErrorContext(e)));
        assert!(out.mac_valid());
        assert_eq!(out.key_id(), Some(key_arn(&key).as_str()));
        assert_eq!(out.mac_algorithm(), Some(&algorithm));

        let mut bad = mac.clone();
        bad[0] ^= 0x80;
        assert_code!(
            client
                .verify_mac()
                .key_id(&key)
                .mac_algorithm(algorithm.clone())
                .message(Blob::new(&message[..]))
                .mac(Blob::new(bad))
                .send()
                .await,
            "KMSInvalidMacException"
        );
        assert_code!(
            client
                .verify_mac()
                .key_id(&key)
                .mac_algorithm(algorithm.clone())
                .message(Blob::new(b"another message".to_vec()))
                .mac(Blob::new(mac))
                .send()
                .await,
            "KMSInvalidMacException"
        );
    }
}

#[tokio::test]
async fn hmac_keys_are_only_for_macs() {
    let client = client().await;
    let hmac = hmac_key(&client, KeySpec::Hmac256).await;
    let symmetric = create_key(&client).await;
    assert_code!(
        client
            .encrypt()
            .key_id(&hmac)
            .plaintext(Blob::new(b"x".to_vec()))
            .send()
            .await,
        "InvalidKeyUsageException"
    );
    assert_code!(
        client
            .generate_mac()
            .key_id(&symmetric)
            .mac_algorithm(MacAlgorithmSpec::HmacSha256)
            .message(Blob::new(b"x".to_vec()))
            .send()
            .await,
        "InvalidKeyUsageException"
    );
    assert_code!(
        client
            .generate_mac()
            .key_id(&hmac)
            .mac_algorithm(MacAlgorithmSpec::HmacSha512)
            .message(Blob::new(b"x".to_vec()))
            .send()
            .await,
        "InvalidKeyUsageException"
    );
    assert_code!(
        client.enable_key_rotation().key_id(&hmac).send().await,
        "UnsupportedOperationException"
    );
    assert_code!(
        client.create_key().key_spec(KeySpec::Hmac256).send().await,
        "ValidationException"
    );
}

#[tokio::test]
async fn rotation_status_round_trip() {
    let client = client().await;
    let key = create_key(&client).await;
    let status = client
        .get_key_rotation_status()
        .key_id(&key)
        .send()
        .await
        .expect("GetKeyRotationStatus");
    assert!(!status.key_rotation_enabled());
    assert_eq!(status.rotation_period_in_days(), None);

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64();
    client
        .enable_key_rotation()
        .key_id(&key)
        .rotation_period_in_days(120)
        .send()
        .await
        .expect("EnableKeyRotation");
    let status = client
        .get_key_rotation_status()
        .key_id(&key)
        .send()
        .await
        .expect("GetKeyRotationStatus");
    assert!(status.key_rotation_enabled());
    assert_eq!(status.rotation_period_in_days(), Some(120));
    let next = status.next_rotation_date().expect("NextRotationDate");
    let next = next.as_secs_f64();
    let expected = before + 120.0 * 86_400.0;
    assert!(
        (next - expected).abs() < 120.0,
        "next rotation {next} is not 120 days after {before}"
    );

    assert_code!(
        client
            .enable_key_rotation()
            .key_id(&key)
            .rotation_period_in_days(89)
            .send()
            .await,
        "ValidationException"
    );
    client
        .disable_key_rotation()
        .key_id(&key)
        .send()
        .await
        .expect("DisableKeyRotation");
    let status = client
        .get_key_rotation_status()
        .key_id(&key)
        .send()
        .await
        .expect("GetKeyRotationStatus");
    assert!(!status.key_rotation_enabled());
}

#[tokio::test]
async fn old_ciphertexts_decrypt_after_on_demand_rotations() {
    let client = client().await;
    let key = create_key(&client).await;
    let c0 = encrypt(&client, &key, b"version zero").await;
    assert_eq!(key_version(&c0), 0);

    let out = client
        .rotate_key_on_demand()
        .key_id(&key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("RotateKeyOnDemand: {}", DisplayErrorContext(e)));
    // AWS answers the key's ARN.
    assert_eq!(out.key_id(), Some(key_arn(&key).as_str()));
    let c1 = encrypt(&client, &key, b"version one").await;
    assert_eq!(
        key_version(&c1),
        1,
        "new encryptions use the newest version"
    );

    client
        .rotate_key_on_demand()
        .key_id(&key)
        .send()
        .await
        .expect("RotateKeyOnDemand");
    let c2 = encrypt(&client, &key, b"version two").await;
    assert_eq!(key_version(&c2), 2);

    assert_eq!(decrypt(&client, &c0).await, b"version zero");
    assert_eq!(decrypt(&client, &c1).await, b"version one");
    assert_eq!(decrypt(&client, &c2).await, b"version two");

    let list = client
        .list_key_rotations()
        .key_id(&key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("ListKeyRotations: {}", DisplayErrorContext(e)));
    assert!(!list.truncated());
    let rotations = list.rotations();
    assert_eq!(rotations.len(), 2);
    for entry in rotations {
        assert_eq!(entry.key_id(), Some(key.as_str()));
        assert_eq!(entry.rotation_type(), Some(&RotationType::OnDemand));
        assert!(entry.rotation_date().is_some());
    }
    assert!(rotations[0].rotation_date() <= rotations[1].rotation_date());

    // Paging: one at a time.
    let page = client
        .list_key_rotations()
        .key_id(&key)
        .limit(1)
        .send()
        .await
        .expect("ListKeyRotations");
    assert!(page.truncated());
    let rest = client
        .list_key_rotations()
        .key_id(&key)
        .limit(1)
        .marker(page.next_marker().expect("NextMarker"))
        .send()
        .await
        .expect("ListKeyRotations");
    assert!(!rest.truncated());
    assert_eq!(rest.rotations().len(), 1);

    // A disabled key does not rotate and keeps its ciphertexts.
    client
        .disable_key()
        .key_id(&key)
        .send()
        .await
        .expect("DisableKey");
    assert_code!(
        client.rotate_key_on_demand().key_id(&key).send().await,
        "DisabledException"
    );
    client
        .enable_key()
        .key_id(&key)
        .send()
        .await
        .expect("EnableKey");
    assert_eq!(decrypt(&client, &c0).await, b"version zero");
}
