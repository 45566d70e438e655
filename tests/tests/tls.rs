//! `ekms dev --tls`: TLS ends inside the (mock) enclave. A client that trusts exactly
//! `ca.pem` round-trips Encrypt/Decrypt; a client with only the platform's roots refuses
//! the connection. One shared `ekms dev --tls`.

use aws_sdk_kms::error::{DisplayErrorContext, SdkError};
use aws_sdk_kms::primitives::Blob;
use ekms_tests::{create_key, key_arn, Ekms};

#[tokio::test]
async fn ca_pem_is_a_pem_certificate() {
    let ekms = Ekms::shared_tls();
    assert!(ekms.endpoint.starts_with("https://"), "{}", ekms.endpoint);
    let pem = String::from_utf8(ekms.ca_pem.clone().expect("ca.pem")).expect("PEM is text");
    assert!(
        pem.contains("-----BEGIN CERTIFICATE-----") && pem.contains("-----END CERTIFICATE-----"),
        "{pem}"
    );
    assert!(
        !pem.contains("PRIVATE KEY"),
        "ca.pem contains a private key"
    );
}

#[tokio::test]
async fn sdk_trusting_the_ca_round_trips_encrypt_decrypt() {
    let ekms = Ekms::shared_tls();
    let client = ekms.client().await;
    let key = create_key(&client).await;
    let out = client
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new("over tls"))
        .encryption_context("via", "https")
        .send()
        .await
        .unwrap_or_else(|e| panic!("Encrypt over TLS: {}", DisplayErrorContext(e)));
    assert_eq!(out.key_id(), Some(key_arn(&key).as_str()));
    let decrypted = client
        .decrypt()
        .ciphertext_blob(out.ciphertext_blob.expect("CiphertextBlob"))
        .encryption_context("via", "https")
        .send()
        .await
        .unwrap_or_else(|e| panic!("Decrypt over TLS: {}", DisplayErrorContext(e)));
    assert_eq!(
        decrypted.plaintext().map(Blob::as_ref),
        Some(&b"over tls"[..])
    );
}

/// Requests of many sizes, one after another on one kept-alive connection, each read through
/// the enclave's buffer below TLS: small ones, ones larger than the buffer, and one too large
/// to serve, answered with the API's error and not a broken connection.
#[tokio::test]
async fn requests_of_every_size_round_trip_over_one_tls_connection() {
    let ekms = Ekms::shared_tls();
    let client = ekms.client().await;
    let key = create_key(&client).await;
    for size in [1usize, 100, 1000, 4095, 4096, 1, 4096] {
        let plaintext: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let out = client
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(plaintext.clone()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("Encrypt {size} bytes: {}", DisplayErrorContext(e)));
        let back = client
            .decrypt()
            .ciphertext_blob(out.ciphertext_blob.expect("CiphertextBlob"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("Decrypt {size} bytes: {}", DisplayErrorContext(e)));
        assert_eq!(
            back.plaintext().map(Blob::as_ref),
            Some(&plaintext[..]),
            "{size} bytes"
        );
    }
    // 30 KB of plaintext: a 40 KB body, several buffers' worth, still read whole and refused.
    let err = client
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(vec![7u8; 30_000]))
        .send()
        .await
        .expect_err("30 KB of plaintext was accepted");
    assert_eq!(
        err.as_service_error().and_then(|e| e.meta().code()),
        Some("ValidationException"),
        "{}",
        DisplayErrorContext(&err)
    );
    // The connection still serves.
    let random = client
        .generate_random()
        .number_of_bytes(32)
        .send()
        .await
        .unwrap_or_else(|e| panic!("after the refusal: {}", DisplayErrorContext(e)));
    assert_eq!(random.plaintext().map(|p| p.as_ref().len()), Some(32));
}

#[tokio::test]
async fn the_certificate_is_valid_for_localhost() {
    let ekms = Ekms::shared_tls();
    let localhost = ekms.endpoint.replace("127.0.0.1", "localhost");
    let client = {
        let conf = ekms
            .client()
            .await
            .config()
            .to_builder()
            .endpoint_url(localhost)
            .build();
        aws_sdk_kms::Client::from_conf(conf)
    };
    let out = client
        .generate_random()
        .number_of_bytes(16)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GenerateRandom via localhost: {}", DisplayErrorContext(e)));
    assert_eq!(out.plaintext().map(|p| p.as_ref().len()), Some(16));
}

#[tokio::test]
async fn sdk_without_the_ca_refuses_to_connect() {
    let ekms = Ekms::shared_tls();
    // The platform's roots only: the dev CA is not among them.
    let client = ekms.client_with(&ekms.access_key_id, &ekms.secret, None);
    let result = client.generate_random().number_of_bytes(16).send().await;
    match result {
        Ok(out) => panic!("connected without trusting ca.pem: {out:?}"),
        Err(SdkError::DispatchFailure(failure)) => {
            let text = format!("{:?}", failure).to_ascii_lowercase();
            assert!(
                text.contains("certificate")
                    || text.contains("unknownissuer")
                    || text.contains("tls"),
                "not a certificate failure: {failure:?}"
            );
        }
        Err(other) => panic!(
            "expected a connection (TLS) failure, got {}",
            DisplayErrorContext(other)
        ),
    }
}

#[tokio::test]
async fn plain_http_to_the_tls_endpoint_is_not_served() {
    let ekms = Ekms::shared_tls();
    let request = ekms.raw_request(
        Some("TrentService.GenerateRandom"),
        br#"{"NumberOfBytes": 16}"#,
        &ekms_tests::SignWith::Dev,
    );
    match ekms_tests::send_raw(ekms.addr, &request).await {
        Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::TimedOut, "hung: {e}"),
        Ok(response) => assert_ne!(response.status, 200, "served over plain HTTP"),
    }
}
