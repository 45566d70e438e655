//! SigV4 verification (`sigv4::verify`) of requests with fuzzed `Authorization`,
//! `X-Amz-Date`, `Date` and other headers, method, path and query.
//!
//! Two modes, chosen by the first byte:
//! - hostile: headers assembled from fuzzed pieces (an `Authorization` built from a fuzzed
//!   algorithm, credential scope, signed-header list and signature, or raw bytes). Checks:
//!   no panic; nothing verifies without the secret (a forged signature never passes).
//! - reference: a request with fuzzed path, query, headers and body, signed at a fuzzed time
//!   by the AWS SDK's own signer (`aws-sigv4`, as every SDK and the CLI sign). Checks: it
//!   verifies, as that access key at that time; and with one byte of the body changed it
//!   does not.

#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use arbitrary::Unstructured;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use ekms_enclave::access::sigv4::{verify, Scope, SecretAccessKey, SecretLookup, SignedRequest};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

const AKID: &str = "AKIAEKMSFUZZKEY00001";
const SECRET: &str = "fuzzSecretKey/0123456789abcdefghijklmnopq";
const SCOPE: Scope<'static> = Scope {
    region: "us-east-1",
    service: "kms",
};
const SKEW: i64 = 15 * 60;
/// 2023-11-14T22:13:20Z.
const NOW: i64 = 1_700_000_000;

struct Secrets(SecretAccessKey);

impl SecretLookup for Secrets {
    fn secret_access_key(&self, access_key_id: &str) -> Option<&SecretAccessKey> {
        (access_key_id == AKID).then_some(&self.0)
    }
}

fn sha256(body: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, body)
        .as_ref()
        .try_into()
        .expect("32 bytes")
}

const NAMES: &[&str] = &[
    "authorization",
    "x-amz-date",
    "date",
    "host",
    "content-type",
    "x-amz-target",
    "x-amz-content-sha256",
    "x-amz-security-token",
    "user-agent",
    "x-a",
];

fn pick<'a>(u: &mut Unstructured<'a>, options: &[&'a str]) -> String {
    if !u.ratio(3, 4).unwrap_or(true) {
        u.arbitrary::<&str>().unwrap_or_default().to_owned()
    } else {
        (*u.choose(options).unwrap_or(&"")).to_owned()
    }
}

/// An `Authorization` value from fuzzed pieces, mostly well-formed.
fn authorization(u: &mut Unstructured<'_>) -> Vec<u8> {
    if !u.ratio(4, 5).unwrap_or(true) {
        return u.arbitrary::<&[u8]>().unwrap_or_default().to_vec();
    }
    let algorithm = pick(u, &["AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512", "AWS4-ECDSA-P256-SHA256"]);
    let akid = pick(u, &[AKID, "AKIAUNKNOWN000000001", ""]);
    let date = pick(u, &["20231114", "20231115", "2023111", "2023111a"]);
    let region = pick(u, &["us-east-1", "eu-west-1", ""]);
    let service = pick(u, &["kms", "s3", ""]);
    let term = pick(u, &["aws4_request", "aws4_requesT"]);
    let mut signed: Vec<String> = Vec::new();
    for _ in 0..u.int_in_range(0..=6u8).unwrap_or(0) {
        signed.push(pick(u, NAMES));
    }
    if u.ratio(3, 4).unwrap_or(true) {
        signed.sort();
    }
    let signature = if u.ratio(3, 4).unwrap_or(true) {
        hex::encode(u.bytes(32).unwrap_or(&[0; 32]))
    } else {
        u.arbitrary::<&str>().unwrap_or_default().to_owned()
    };
    let mut components = vec![
        format!("Credential={akid}/{date}/{region}/{service}/{term}"),
        format!("SignedHeaders={}", signed.join(";")),
        format!("Signature={signature}"),
    ];
    if !u.ratio(3, 4).unwrap_or(true) {
        let i = u.choose_index(components.len()).unwrap_or(0);
        let extra = components[i].clone();
        components.push(extra);
    }
    if !u.ratio(3, 4).unwrap_or(true) {
        components.swap(0, 2);
    }
    let sep = pick(u, &[", ", ",", " ,\t"]);
    format!("{algorithm} {}", components.join(&sep)).into_bytes()
}

fn hostile(u: &mut Unstructured<'_>) {
    let mut headers = HeaderMap::new();
    for _ in 0..u.int_in_range(0..=8u8).unwrap_or(0) {
        let name = pick(u, NAMES);
        let value: Vec<u8> = match name.as_str() {
            "authorization" => authorization(u),
            "x-amz-date" => pick(u, &["20231114T221320Z", "20231114T221320", "99991231T235959Z", "00000101T000000Z"]).into_bytes(),
            "date" => pick(u, &["Tue, 14 Nov 2023 22:13:20 GMT", "Sun, 06 Nov 1994 08:49:37 GMT"]).into_bytes(),
            _ => u.arbitrary::<&[u8]>().unwrap_or_default().to_vec(),
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let method = pick(u, &["POST", "GET"]);
    let path = pick(u, &["/", "//a/./b/../", "/%2F", ""]);
    let query = if !u.ratio(1, 2).unwrap_or(true) {
        Some(pick(u, &["a=b&c", "%zz=%41+", "&&=&"]))
    } else {
        None
    };
    let body: &[u8] = u.arbitrary().unwrap_or_default();
    let now = NOW + i64::from(u.arbitrary::<i16>().unwrap_or(0));
    let req = SignedRequest {
        method: &method,
        path: &path,
        query: query.as_deref(),
        headers: &headers,
        body_sha256: sha256(body),
    };
    let secrets = Secrets(SecretAccessKey::new(SECRET.to_owned()));
    if let Ok(verified) = verify(&req, &SCOPE, now, SKEW, &secrets) {
        panic!("a request verified without its secret: {verified:?}");
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters, as the SDKs encode query parts.
fn sdk_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn reference(u: &mut Unstructured<'_>) {
    let at = NOW + i64::from(u.arbitrary::<i16>().unwrap_or(0));
    // Visible ASCII (a URI and header values as clients send them).
    let visible = |u: &mut Unstructured<'_>, max: usize| -> String {
        let n = u.int_in_range(0..=max).unwrap_or(0);
        (0..n)
            .map(|_| char::from(u.int_in_range(0x20..=0x7e_u8).unwrap_or(b'a')))
            .collect()
    };
    // `?` and `#` would end the path (and `#` the query): the URI would not be what is signed.
    let path = format!("/{}", visible(u, 24).replace(['?', '#'], ""));
    // The query as SDKs write it: names and values percent-encoded. Raw `+` and `%` escapes
    // of bytes that are not UTF-8 are read differently by the signers (aws-sigv4 decodes `+`
    // as a space and such escapes as U+FFFD, botocore leaves the query as is, the verifier
    // takes RFC 3986's view); no SDK sends them and KMS requests have no query: not compared.
    let query = (0..u.int_in_range(0..=3u8).unwrap_or(0))
        .map(|_| {
            let (name, value) = (visible(u, 8), visible(u, 8));
            format!("{}={}", sdk_encode(&name), sdk_encode(&value))
        })
        .collect::<Vec<_>>()
        .join("&");
    let uri = if query.is_empty() {
        format!("https://kms.us-east-1.amazonaws.com{path}")
    } else {
        format!("https://kms.us-east-1.amazonaws.com{path}?{query}")
    };
    let Ok(parsed) = uri.parse::<http::Uri>() else {
        return;
    };
    let mut pairs: Vec<(String, String)> = vec![
        ("host".to_owned(), "kms.us-east-1.amazonaws.com".to_owned()),
        ("content-type".to_owned(), "application/x-amz-json-1.1".to_owned()),
        ("x-amz-target".to_owned(), "TrentService.Encrypt".to_owned()),
    ];
    for _ in 0..u.int_in_range(0..=3u8).unwrap_or(0) {
        let name = pick(u, &["x-a", "x-b", "content-type", "x-amz-meta"]).to_ascii_lowercase();
        let value = visible(u, 16);
        if HeaderName::from_bytes(name.as_bytes()).is_err()
            || HeaderValue::from_str(&value).is_err()
            || ["host", "authorization", "x-amz-date", "date"].contains(&name.as_str())
        {
            continue;
        }
        pairs.push((name, value));
    }
    let body: Vec<u8> = u.arbitrary().unwrap_or_default();

    let identity: Identity = Credentials::new(AKID, SECRET, None, None, "fuzz").into();
    let Ok(params) = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("kms")
        .time(UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap_or(0)))
        .settings(SigningSettings::default())
        .build()
    else {
        return;
    };
    let params = params.into();
    let Ok(signable) = SignableRequest::new(
        "POST",
        uri.as_str(),
        pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        SignableBody::Bytes(&body),
    ) else {
        return;
    };
    let Ok(signed) = sign(signable, &params) else {
        return;
    };
    let (instructions, _) = signed.into_parts();
    let mut builder = http::Request::builder().method("POST").uri(parsed.clone());
    for (name, value) in &pairs {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let Ok(mut request) = builder.body(()) else {
        return;
    };
    instructions.apply_to_request_http1x(&mut request);
    let secrets = Secrets(SecretAccessKey::new(SECRET.to_owned()));
    let req = SignedRequest {
        method: "POST",
        path: parsed.path(),
        query: parsed.query(),
        headers: request.headers(),
        body_sha256: sha256(&body),
    };
    match verify(&req, &SCOPE, at, SKEW, &secrets) {
        Ok(v) => assert_eq!((v.access_key_id.as_str(), v.signing_time), (AKID, at)),
        Err(e) => panic!(
            "an SDK-signed request does not verify: {e}\nuri {uri}\nheaders {:?}",
            request.headers()
        ),
    }
    let mut altered = body.clone();
    altered.push(0);
    let req = SignedRequest {
        body_sha256: sha256(&altered),
        ..req
    };
    assert!(
        verify(&req, &SCOPE, at, SKEW, &secrets).is_err(),
        "a changed body still verifies"
    );
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    if !u.ratio(2, 3).unwrap_or(true) {
        reference(&mut u);
    } else {
        hostile(&mut u);
    }
});
