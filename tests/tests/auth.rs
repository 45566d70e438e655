//! SigV4 authentication edges, through raw requests signed by `aws-sigv4` with a chosen
//! secret, access key and clock (and through the SDK with bad credentials). One shared
//! `ekms dev`.

use std::time::{Duration, SystemTime};

use ekms_tests::{assert_code, Ekms, RawResponse, SignWith};

const TARGET: &str = "TrentService.GenerateRandom";
const BODY: &[u8] = br#"{"NumberOfBytes": 16}"#;

fn assert_error(response: &RawResponse, code: &str) {
    assert_eq!(
        (response.status, response.error_code().as_deref()),
        (400, Some(code)),
        "body {:?}",
        String::from_utf8_lossy(&response.body)
    );
    assert!(
        response.header("x-amzn-requestid").is_some(),
        "{:?}",
        response.headers
    );
}

fn signed_at(ekms: &Ekms, time: SystemTime) -> SignWith {
    SignWith::Custom {
        access_key_id: ekms.access_key_id.clone(),
        secret: ekms.secret.clone(),
        time,
    }
}

#[tokio::test]
async fn a_correct_signature_is_accepted() {
    let ekms = Ekms::shared();
    let response = ekms.raw(Some(TARGET), BODY, SignWith::Dev).await;
    assert_eq!(
        response.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&response.body)
    );
    // Five minutes of clock skew is within the 15-minute window, both ways.
    for skew in [Duration::from_secs(300)] {
        let past = ekms
            .raw(
                Some(TARGET),
                BODY,
                signed_at(ekms, SystemTime::now() - skew),
            )
            .await;
        assert_eq!(
            past.status,
            200,
            "{:?}",
            String::from_utf8_lossy(&past.body)
        );
        let future = ekms
            .raw(
                Some(TARGET),
                BODY,
                signed_at(ekms, SystemTime::now() + skew),
            )
            .await;
        assert_eq!(
            future.status,
            200,
            "{:?}",
            String::from_utf8_lossy(&future.body)
        );
    }
}

#[tokio::test]
async fn wrong_secret_is_invalid_signature() {
    let ekms = Ekms::shared();
    let mut wrong = ekms.secret.clone();
    let last = wrong.pop().expect("a non-empty secret");
    wrong.push(if last == 'A' { 'B' } else { 'A' });
    let response = ekms
        .raw(
            Some(TARGET),
            BODY,
            SignWith::Custom {
                access_key_id: ekms.access_key_id.clone(),
                secret: wrong,
                time: SystemTime::now(),
            },
        )
        .await;
    assert_error(&response, "InvalidSignatureException");
}

#[tokio::test]
async fn a_body_changed_after_signing_is_invalid_signature() {
    let ekms = Ekms::shared();
    let mut request = ekms.raw_request(Some(TARGET), BODY, &SignWith::Dev);
    let at = request.len() - 3;
    assert_eq!(request[at], b'1', "the body ends with 16}}");
    request[at] = b'2';
    let response = ekms_tests::send_raw(ekms.addr, &request)
        .await
        .expect("a response");
    assert_error(&response, "InvalidSignatureException");
}

#[tokio::test]
async fn a_target_changed_after_signing_is_invalid_signature() {
    let ekms = Ekms::shared();
    let request = ekms.raw_request(Some(TARGET), BODY, &SignWith::Dev);
    let text = String::from_utf8(request).expect("ASCII request");
    let changed = text.replace(TARGET, "TrentService.ListKeys");
    assert_ne!(text, changed);
    let response = ekms_tests::send_raw(ekms.addr, changed.as_bytes())
        .await
        .expect("a response");
    assert_error(&response, "InvalidSignatureException");
}

/// AWS answers a signature outside the 15-minute window with InvalidSignatureException
/// ("Signature expired: ..." / "Signature not yet current: ...").
#[tokio::test]
async fn a_date_20_minutes_off_is_invalid_signature() {
    let ekms = Ekms::shared();
    let twenty = Duration::from_secs(20 * 60);
    let response = ekms
        .raw(
            Some(TARGET),
            BODY,
            signed_at(ekms, SystemTime::now() - twenty),
        )
        .await;
    assert_error(&response, "InvalidSignatureException");
    assert!(
        String::from_utf8_lossy(&response.body).contains("Signature expired: "),
        "{:?}",
        String::from_utf8_lossy(&response.body)
    );
    let response = ekms
        .raw(
            Some(TARGET),
            BODY,
            signed_at(ekms, SystemTime::now() + twenty),
        )
        .await;
    assert_error(&response, "InvalidSignatureException");
    assert!(
        String::from_utf8_lossy(&response.body).contains("Signature not yet current: "),
        "{:?}",
        String::from_utf8_lossy(&response.body)
    );
}

/// A signature that does not cover X-Amz-Target would let a captured request be replayed
/// as another operation: an X-Amz-Target added to a request signed without one is refused.
#[tokio::test]
async fn an_unsigned_target_is_incomplete_signature() {
    let ekms = Ekms::shared();
    let request = ekms.raw_request(None, BODY, &SignWith::Dev);
    let text = String::from_utf8(request).expect("ASCII request");
    assert!(!text.contains("x-amz-target"), "{text}");
    let line_end = text.find("\r\n").expect("a request line") + 2;
    let with_target = format!(
        "{}x-amz-target: {TARGET}\r\n{}",
        &text[..line_end],
        &text[line_end..]
    );
    let response = ekms_tests::send_raw(ekms.addr, with_target.as_bytes())
        .await
        .expect("a response");
    assert_error(&response, "IncompleteSignature");
    assert!(
        String::from_utf8_lossy(&response.body).contains("'x-amz-target' must be a signed header"),
        "{:?}",
        String::from_utf8_lossy(&response.body)
    );
}

#[tokio::test]
async fn unknown_access_key_is_unrecognized_client() {
    let ekms = Ekms::shared();
    let response = ekms
        .raw(
            Some(TARGET),
            BODY,
            SignWith::Custom {
                access_key_id: "AKIAUNKNOWNUNKNOWN00".to_owned(),
                secret: ekms.secret.clone(),
                time: SystemTime::now(),
            },
        )
        .await;
    assert_error(&response, "UnrecognizedClientException");
}

#[tokio::test]
async fn no_authorization_is_missing_authentication_token() {
    let ekms = Ekms::shared();
    let response = ekms.raw(Some(TARGET), BODY, SignWith::Unsigned).await;
    assert_error(&response, "MissingAuthenticationToken");
}

#[tokio::test]
async fn an_authorization_header_without_signature_is_incomplete_signature() {
    let ekms = Ekms::shared();
    let request = ekms.raw_request(Some(TARGET), BODY, &SignWith::Dev);
    let text = String::from_utf8(request).expect("ASCII request");
    let start = text.find("authorization: ").expect("signed request");
    let end = start + text[start..].find("\r\n").expect("header line ends");
    let line = &text[start..end];
    let cut = line.find(", Signature=").expect("a Signature component");
    let incomplete = format!("{}{}", &text[..start + cut], &text[end..]);
    let response = ekms_tests::send_raw(ekms.addr, incomplete.as_bytes())
        .await
        .expect("a response");
    assert_error(&response, "IncompleteSignature");
}

#[tokio::test]
async fn the_sdk_sees_auth_errors_as_typed_codes() {
    let ekms = Ekms::shared();
    let wrong_secret = ekms.client_with(&ekms.access_key_id, "not-the-secret", None);
    assert_code!(
        wrong_secret
            .generate_random()
            .number_of_bytes(8)
            .send()
            .await,
        "InvalidSignatureException"
    );
    let unknown = ekms.client_with("AKIAUNKNOWNUNKNOWN00", &ekms.secret, None);
    assert_code!(
        unknown.list_keys().send().await,
        "UnrecognizedClientException"
    );
}
