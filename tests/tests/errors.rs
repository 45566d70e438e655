//! The protocol's error edges, through raw HTTP/1.1 requests (and the SDK where it can say
//! it): malformed bodies, unknown and unimplemented operations, oversized bodies, and clients
//! that stall or vanish mid-request. One shared `ekms dev`.

use std::io::Write as _;
use std::time::Duration;

use aws_sdk_kms::error::DisplayErrorContext;

use ekms_tests::{assert_code, create_key, send_raw, Ekms, RawResponse, SignWith};

/// Asserts an AWS JSON 1.1 error: 400, `__type`, and the `x-amzn-*` headers.
fn assert_error(response: &RawResponse, code: &str) {
    assert_eq!(
        response.status,
        400,
        "status; body {:?}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(
        response.error_code().as_deref(),
        Some(code),
        "__type; body {:?}",
        String::from_utf8_lossy(&response.body)
    );
    assert!(
        response
            .json()
            .get("message")
            .is_some_and(serde_json::Value::is_string),
        "no message in {:?}",
        response.json()
    );
    assert_eq!(
        response
            .header("x-amzn-errortype")
            .map(|v| v.split(':').next().unwrap_or(v)),
        Some(code),
        "x-amzn-ErrorType"
    );
    assert!(
        response
            .header("x-amzn-requestid")
            .is_some_and(|v| !v.is_empty()),
        "x-amzn-RequestId missing: {:?}",
        response.headers
    );
}

#[tokio::test]
async fn raw_signed_request_succeeds() {
    let ekms = Ekms::shared();
    let response = ekms
        .raw(
            Some("TrentService.GenerateRandom"),
            br#"{"NumberOfBytes": 24}"#,
            SignWith::Dev,
        )
        .await;
    assert_eq!(
        response.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&response.body)
    );
    assert!(
        response
            .header("content-type")
            .is_some_and(|v| v.starts_with("application/x-amz-json-1.1")),
        "content-type {:?}",
        response.header("content-type")
    );
    assert!(response.header("x-amzn-requestid").is_some());
    let plaintext = response.json()["Plaintext"]
        .as_str()
        .expect("Plaintext is a base64 string")
        .to_owned();
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(plaintext)
        .expect("base64");
    assert_eq!(bytes.len(), 24);
}

#[tokio::test]
async fn malformed_json_is_serialization_exception() {
    let ekms = Ekms::shared();
    for body in [
        &br#"{"NumberOfBytes": "#[..],
        b"not json at all",
        b"[1, 2, 3]",
    ] {
        let response = ekms
            .raw(Some("TrentService.GenerateRandom"), body, SignWith::Dev)
            .await;
        assert_error(&response, "SerializationException");
    }
}

#[tokio::test]
async fn unknown_target_is_unknown_operation() {
    let ekms = Ekms::shared();
    for target in ["TrentService.Nope", "NotTrentService.Encrypt"] {
        let response = ekms.raw(Some(target), b"{}", SignWith::Dev).await;
        assert_error(&response, "UnknownOperationException");
    }
}

/// A ciphertext that does not open is answered as AWS answers it: the code, and no message
/// member at all (AWS sends none; ekms once sent its own sentence).
#[tokio::test]
async fn an_unopenable_ciphertext_has_a_code_and_no_message() {
    let ekms = Ekms::shared();
    let response = ekms
        .raw(
            Some("TrentService.Decrypt"),
            br#"{"CiphertextBlob": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#,
            SignWith::Dev,
        )
        .await;
    assert_eq!(response.status, 400);
    assert_eq!(
        response.json(),
        serde_json::json!({"__type": "InvalidCiphertextException"})
    );
    assert_eq!(
        response.header("x-amzn-errortype"),
        Some("InvalidCiphertextException")
    );
}

/// Operations AWS KMS has but ekms does not offer (custom key stores, multi-Region keys), and
/// those options (and SM2) of the operations it does offer, answer
/// UnsupportedOperationException (as AWS in a region without them), never 404 or an empty
/// body.
#[tokio::test]
async fn known_but_unimplemented_operations_are_unsupported() {
    let ekms = Ekms::shared();
    for (target, body) in [
        (
            "TrentService.ReplicateKey",
            r#"{"KeyId": "alias/x", "ReplicaRegion": "eu-west-1"}"#,
        ),
        ("TrentService.DescribeCustomKeyStores", "{}"),
        (
            "TrentService.UpdatePrimaryRegion",
            r#"{"KeyId": "alias/x", "PrimaryRegion": "eu-west-1"}"#,
        ),
    ] {
        let response = ekms.raw(Some(target), body.as_bytes(), SignWith::Dev).await;
        assert_error(&response, "UnsupportedOperationException");
    }

    // The same through the SDK.
    let client = ekms.client().await;
    let key = create_key(&client).await;
    assert_code!(
        client
            .replicate_key()
            .key_id(&key)
            .replica_region("eu-west-1")
            .send()
            .await,
        "UnsupportedOperationException"
    );
    assert_code!(
        client.describe_custom_key_stores().send().await,
        "UnsupportedOperationException"
    );
    assert_code!(
        client
            .create_custom_key_store()
            .custom_key_store_name("store")
            .send()
            .await,
        "UnsupportedOperationException"
    );
    // The same options of operations ekms does offer: a multi-Region key, a key in a custom
    // key store, an SM2 key, random bytes from a custom key store.
    assert_code!(
        client.create_key().multi_region(true).send().await,
        "UnsupportedOperationException"
    );
    assert_code!(
        client
            .create_key()
            .custom_key_store_id("cks-1234567890abcdef0")
            .send()
            .await,
        "UnsupportedOperationException"
    );
    assert_code!(
        client
            .create_key()
            .key_spec(aws_sdk_kms::types::KeySpec::Sm2)
            .key_usage(aws_sdk_kms::types::KeyUsageType::EncryptDecrypt)
            .send()
            .await,
        "UnsupportedOperationException"
    );
    assert_code!(
        client
            .generate_random()
            .number_of_bytes(8)
            .custom_key_store_id("cks-1234567890abcdef0")
            .send()
            .await,
        "UnsupportedOperationException"
    );
}

/// A body over the 64 KiB limit is answered with 400 ValidationException and the
/// connection is closed, well within the raw timeout: the server neither buffers it all nor
/// waits. The answer reaches a client still sending (4 MiB overflows every socket buffer on
/// the way) rather than being lost to a reset.
#[tokio::test]
async fn body_over_64_kib_is_validation_exception() {
    let ekms = Ekms::shared();
    for size in [70 * 1024, 4 * 1024 * 1024] {
        let padding = "A".repeat(size);
        let body = format!(r#"{{"KeyId": "alias/x", "Plaintext": "{padding}"}}"#);
        for _ in 0..5 {
            let response = ekms
                .raw(Some("TrentService.Encrypt"), body.as_bytes(), SignWith::Dev)
                .await;
            assert_error(&response, "ValidationException");
            assert_eq!(
                response
                    .header("connection")
                    .map(str::to_ascii_lowercase)
                    .as_deref(),
                Some("close"),
                "{:?}",
                response.headers
            );
        }
    }
}

/// A request that only announces a huge body is refused from its Content-Length, without the
/// server waiting for bytes that never come.
#[tokio::test]
async fn declared_body_over_64_kib_is_refused_without_waiting() {
    let ekms = Ekms::shared();
    let head = format!(
        "POST / HTTP/1.1\r\nhost: {}\r\ncontent-type: application/x-amz-json-1.1\r\n\
         x-amz-target: TrentService.Encrypt\r\ncontent-length: {}\r\n\r\n{{",
        ekms.addr,
        1024 * 1024 * 1024
    );
    let response = send_raw(ekms.addr, head.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("no response to a 1 GiB Content-Length: {e}"));
    assert_error(&response, "ValidationException");
}

/// Clients that send half a request and then vanish, or stall, must not stop the service
/// from answering others.
#[tokio::test]
async fn half_requests_do_not_block_other_clients() {
    let ekms = Ekms::shared();
    let partial = format!(
        "POST / HTTP/1.1\r\nhost: {}\r\ncontent-type: application/x-amz-json-1.1\r\n\
         x-amz-target: TrentService.GenerateRandom\r\ncontent-length: 100\r\n\r\n{{\"Num",
        ekms.addr
    );
    // Vanish after half a request (also after half a header block).
    for bytes in [partial.as_bytes(), &partial.as_bytes()[..20]] {
        let stream = ekms_tests::stall(ekms.addr, bytes);
        drop(stream);
    }
    // Stall with half a request while others are served.
    let mut stalled: Vec<_> = (0..8)
        .map(|_| ekms_tests::stall(ekms.addr, partial.as_bytes()))
        .collect();

    let client = ekms.client().await;
    for _ in 0..3 {
        let result = tokio::time::timeout(
            Duration::from_secs(10),
            client.generate_random().number_of_bytes(8).send(),
        )
        .await
        .expect("GenerateRandom answered while other clients stall");
        let out = result.unwrap_or_else(|e| {
            panic!(
                "GenerateRandom while others stall: {}",
                DisplayErrorContext(e)
            )
        });
        assert_eq!(out.plaintext().map(|p| p.as_ref().len()), Some(8));
    }
    let response = ekms
        .raw(
            Some("TrentService.GenerateRandom"),
            br#"{"NumberOfBytes": 8}"#,
            SignWith::Dev,
        )
        .await;
    assert_eq!(response.status, 200);

    // The stalled clients then vanish mid-body; the service still answers.
    for stream in &mut stalled {
        let _ = stream.write_all(b"berOfBytes");
    }
    drop(stalled);
    let out = client
        .generate_random()
        .number_of_bytes(8)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "GenerateRandom after clients vanished: {}",
                DisplayErrorContext(e)
            )
        });
    assert_eq!(out.plaintext().map(|p| p.as_ref().len()), Some(8));
}

#[tokio::test]
async fn validation_errors_through_raw_requests() {
    let ekms = Ekms::shared();
    // Missing required member.
    let response = ekms
        .raw(
            Some("TrentService.Encrypt"),
            br#"{"Plaintext": "aGk="}"#,
            SignWith::Dev,
        )
        .await;
    assert_error(&response, "ValidationException");
    let response = ekms
        .raw(
            Some("TrentService.GenerateRandom"),
            br#"{"NumberOfBytes": 0}"#,
            SignWith::Dev,
        )
        .await;
    assert_error(&response, "ValidationException");
}
