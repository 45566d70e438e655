//! AWS Signature Version 4 verification for requests that reach the enclave.
//!
//! Implements the verifying side of the AWS SigV4 specification
//! ("Create a signed AWS API request",
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html>,
//! referred to below as "the spec", and its "Elements of an AWS API request signature",
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-signing-elements.html>) for the `Authorization` header form
//! (`AWS4-HMAC-SHA256`). [`verify`] is a pure function: no I/O, the time is passed in,
//! and the secret of an access key is looked up through [`SecretLookup`].
//!
//! What it trusts: the caller's `now_unix`, the SHA-256 of the body it actually received,
//! and the `HeaderMap` it parsed (for HTTP/2 the caller must put the `:authority` into a
//! `host` header first). What it does not do: query-string (presigned URL) authentication,
//! session tokens (`X-Amz-Security-Token`), SigV4a, S3's single-encoding rules, chunked
//! payload signing, or replay detection within the allowed clock skew.
//!
//! Error messages help a client find its mistake; none contains a secret key or the
//! signature the server expected.

use std::fmt;
use std::sync::Mutex;

use http::HeaderMap;
use ring::{digest, hmac};
use subtle::ConstantTimeEq;
use time::{macros::format_description, OffsetDateTime, PrimitiveDateTime};
use zeroize::Zeroizing;

/// The only algorithm accepted (spec, step 3: the algorithm of SigV4 with HMAC-SHA256).
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The credential scope terminator (spec, step 3: `date/region/service/aws4_request`).
const SCOPE_TERMINATOR: &str = "aws4_request";
/// Longest `Authorization` header value parsed; longer ones are refused before any work.
pub const MAX_AUTHORIZATION_LEN: usize = 4096;
/// Most names accepted in `SignedHeaders`.
pub const MAX_SIGNED_HEADERS: usize = 64;
/// Headers that must be in `SignedHeaders` whenever the request carries them (besides
/// `host` and the request time header, which are always required): `x-amz-target` names
/// the operation and `content-type` how the body is read. The AWS SDKs, the AWS CLI and
/// boto3 sign both.
const SIGNED_WHEN_SENT: [&str; 2] = ["content-type", "x-amz-target"];

/// The parts of a received HTTP request that SigV4 covers.
pub struct SignedRequest<'a> {
    /// The HTTP method as received, e.g. `"POST"`.
    pub method: &'a str,
    /// The raw path as received (still percent-encoded), e.g. `"/"`.
    pub path: &'a str,
    /// The raw query string as received, without the `?`.
    pub query: Option<&'a str>,
    /// All request headers, repeated ones in the order received.
    pub headers: &'a HeaderMap,
    /// SHA-256 of the body as received.
    pub body_sha256: [u8; 32],
}

/// The credential scope this endpoint serves.
pub struct Scope<'a> {
    /// e.g. `"us-east-1"`.
    pub region: &'a str,
    /// e.g. `"kms"`.
    pub service: &'a str,
}

/// Looks up the secret for an access key id (principals live in the enclave).
pub trait SecretLookup {
    /// The secret of `access_key_id`, or `None` if no such key exists.
    fn secret_access_key(&self, access_key_id: &str) -> Option<&SecretAccessKey>;
}

/// An AWS secret access key. Zeroized on drop; `Debug` prints the type name only;
/// reading it is the explicit [`SecretAccessKey::expose_secret`].
///
/// It keeps the signing key it last derived, for one credential scope (a day, a region and a
/// service): a client signs every request of a day with the same scope, and deriving the key
/// costs four HMACs. The cached key is zeroized when replaced or dropped, and goes with the
/// secret.
pub struct SecretAccessKey {
    secret: Zeroizing<String>,
    derived: Mutex<Option<Derived>>,
}

/// A derived signing key and the scope it was derived for.
struct Derived {
    date: String,
    region: String,
    service: String,
    key: Zeroizing<[u8; 32]>,
}

impl SecretAccessKey {
    /// Wraps a secret access key.
    pub fn new(secret: String) -> Self {
        Self {
            secret: Zeroizing::new(secret),
            derived: Mutex::new(None),
        }
    }

    /// The secret itself.
    pub fn expose_secret(&self) -> &str {
        &self.secret
    }
}

impl fmt::Debug for SecretAccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretAccessKey")
    }
}

/// A request whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key id that signed the request.
    pub access_key_id: String,
    /// The signing time, unix seconds.
    pub signing_time: i64,
}

pub use crate::error::SigV4Error;

fn incomplete(msg: impl Into<String>) -> SigV4Error {
    SigV4Error::IncompleteSignature(msg.into())
}

fn invalid(msg: impl Into<String>) -> SigV4Error {
    SigV4Error::InvalidSignature(msg.into())
}

fn expired(msg: impl Into<String>) -> SigV4Error {
    SigV4Error::RequestExpired(msg.into())
}

/// Verifies the SigV4 `Authorization` header of `req` for `scope` at time `now_unix`,
/// allowing `max_skew_secs` (negative counts as zero) between the request time and now.
///
/// # Errors
///
/// - [`SigV4Error::MissingAuthenticationToken`]: no `Authorization` header.
/// - [`SigV4Error::IncompleteSignature`]: the header is malformed, too long, lacks
///   `Credential`/`SignedHeaders`/`Signature`, repeats one, has a malformed credential
///   scope, or `SignedHeaders` is unsorted, not lowercase, too long, or lacks `host`, the
///   header carrying the request time, or `x-amz-target` or `content-type` while the
///   request carries that header.
/// - [`SigV4Error::RequestExpired`]: `X-Amz-Date` (or `Date`) is missing or unparseable.
/// - [`SigV4Error::InvalidSignature`]: the request time is more than `max_skew_secs` away
///   from `now_unix`, unsupported algorithm, scope date, region or service not the expected
///   ones, a signed header absent, or the signature differs.
/// - [`SigV4Error::UnrecognizedClient`]: `lookup` does not know the access key id.
pub fn verify(
    req: &SignedRequest<'_>,
    scope: &Scope<'_>,
    now_unix: i64,
    max_skew_secs: i64,
    lookup: &dyn SecretLookup,
) -> Result<Verified, SigV4Error> {
    let auth = parse_authorization(req.headers)?;

    // Spec, "Elements of an AWS API request signature": the host header must be signed.
    if !auth.signed_headers.contains(&"host") {
        return Err(incomplete(
            "'host' must be a signed header in the SignedHeaders of the Authorization header",
        ));
    }
    // The headers that carry the meaning of a JSON 1.1 request must be signed whenever they
    // are sent: otherwise a captured signature stays valid for another operation or body
    // interpretation (a DescribeKey replayed as DisableKey within the skew window).
    for name in SIGNED_WHEN_SENT {
        if req.headers.contains_key(name) && !auth.signed_headers.contains(&name) {
            return Err(incomplete(format!(
                "'{name}' must be a signed header in the SignedHeaders of the Authorization header"
            )));
        }
    }

    let request_time = request_time(req.headers)?;
    // The header that carries the time must itself be authenticated.
    if !auth.signed_headers.contains(&request_time.header) {
        return Err(incomplete(format!(
            "'{}' must be a signed header in the SignedHeaders of the Authorization header",
            request_time.header
        )));
    }
    check_skew(request_time.unix, now_unix, max_skew_secs)?;

    let amz_date =
        format_basic(request_time.unix).ok_or_else(|| expired("request date is out of range"))?;
    // Spec, step 3 "Create a string to sign": the scope date is the day of the request date.
    let request_day = amz_date.get(..8).unwrap_or_default();
    if auth.credential.date != request_day {
        return Err(invalid(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
             from HTTP: '{}' != '{}', from '{}'.",
            auth.credential.date, request_day, request_time.header
        )));
    }
    if auth.credential.region != scope.region {
        return Err(invalid(format!(
            "Credential should be scoped to a valid region, not '{}'; expecting '{}'.",
            auth.credential.region, scope.region
        )));
    }
    if auth.credential.service != scope.service {
        return Err(invalid(format!(
            "Credential should be scoped to correct service: '{}'.",
            scope.service
        )));
    }

    let secret = lookup
        .secret_access_key(auth.credential.access_key_id)
        .ok_or(SigV4Error::UnrecognizedClient)?;

    let canonical = canonical_request(req, &auth.signed_headers)?;
    let string_to_sign = string_to_sign(&amz_date, &auth.credential, &canonical);
    let signing_key = signing_key(secret, &auth.credential);
    // Spec, step 4 "Calculate the signature": HMAC-SHA256(signing key, string to sign).
    let expected = hmac::sign(&signing_key, string_to_sign.as_bytes());

    // Compared in constant time: the expected signature is a MAC over attacker-chosen input.
    if !bool::from(expected.as_ref().ct_eq(&auth.signature[..])) {
        return Err(invalid(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method.",
        ));
    }

    Ok(Verified {
        access_key_id: auth.credential.access_key_id.to_owned(),
        signing_time: request_time.unix,
    })
}

/// `Credential=AKID/YYYYMMDD/region/service/aws4_request`, split.
struct Credential<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
}

struct Authorization<'a> {
    credential: Credential<'a>,
    signed_headers: Vec<&'a str>,
    signature: [u8; 32],
}

/// Parses the `Authorization` header.
///
/// Spec, step 5 "Add the signature to the request": `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
/// Signature=...`. Whitespace after the commas may vary and the components may come in any
/// order; each must appear exactly once and nothing else may appear.
fn parse_authorization(headers: &HeaderMap) -> Result<Authorization<'_>, SigV4Error> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let value = values
        .next()
        .ok_or(SigV4Error::MissingAuthenticationToken)?;
    if values.next().is_some() {
        return Err(incomplete("more than one Authorization header"));
    }
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(incomplete(format!(
            "Authorization header is longer than {MAX_AUTHORIZATION_LEN} bytes"
        )));
    }
    let Ok(value) = value.to_str() else {
        return Err(incomplete("Authorization header is not visible ASCII"));
    };
    let value = value.trim_matches(|c| c == ' ' || c == '\t');

    let (algorithm, components) = value.split_once([' ', '\t']).ok_or_else(|| {
        incomplete(format!(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' \
                 parameters after the algorithm. Authorization={value}"
        ))
    })?;
    if algorithm != ALGORITHM {
        return Err(invalid(format!(
            "Unsupported signing algorithm '{algorithm}'; only {ALGORITHM} is accepted."
        )));
    }

    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for component in components.split(',') {
        let component = component.trim_matches(|c| c == ' ' || c == '\t');
        let (key, val) = component.split_once('=').ok_or_else(|| {
            incomplete(format!(
                "Authorization header component '{component}' is not a key=value pair."
            ))
        })?;
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            other => {
                return Err(incomplete(format!(
                    "Authorization header has an unknown component '{other}'."
                )))
            }
        };
        if slot.replace(val).is_some() {
            return Err(incomplete(format!(
                "Authorization header has '{key}' more than once."
            )));
        }
    }
    let missing = |name: &str| {
        incomplete(format!(
            "Authorization header requires '{name}' parameter. Authorization={value}"
        ))
    };
    let credential = parse_credential(credential.ok_or_else(|| missing("Credential"))?)?;
    let signed_headers =
        parse_signed_headers(signed_headers.ok_or_else(|| missing("SignedHeaders"))?)?;
    let signature = parse_signature(signature.ok_or_else(|| missing("Signature"))?)?;
    Ok(Authorization {
        credential,
        signed_headers,
        signature,
    })
}

/// Spec, step 3 "Create a string to sign": the credential scope is
/// `date/region/service/aws4_request`, preceded here by the access key id.
fn parse_credential(value: &str) -> Result<Credential<'_>, SigV4Error> {
    let bad = || {
        incomplete(format!(
            "Credential should be of the form AKID/YYYYMMDD/region/service/aws4_request, \
             got '{value}'."
        ))
    };
    let mut parts = value.split('/');
    let (Some(access_key_id), Some(date), Some(region), Some(service), Some(terminator), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad());
    };
    if access_key_id.is_empty()
        || region.is_empty()
        || service.is_empty()
        || terminator != SCOPE_TERMINATOR
        || date.len() != 8
        || !date.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    Ok(Credential {
        access_key_id,
        date,
        region,
        service,
    })
}

/// Spec, step 1 "Create a canonical request": SignedHeaders is the lowercase header names, sorted,
/// separated by `;`. Names must be sent that way; at most [`MAX_SIGNED_HEADERS`].
fn parse_signed_headers(value: &str) -> Result<Vec<&str>, SigV4Error> {
    let names: Vec<&str> = value.split(';').take(MAX_SIGNED_HEADERS + 1).collect();
    if names.len() > MAX_SIGNED_HEADERS {
        return Err(incomplete(format!(
            "SignedHeaders lists more than {MAX_SIGNED_HEADERS} headers."
        )));
    }
    for name in &names {
        let is_token =
            !name.is_empty() && name.bytes().all(|b| is_tchar(b) && !b.is_ascii_uppercase());
        if !is_token {
            return Err(incomplete(format!(
                "SignedHeaders must be lowercase header names separated by ';', got '{value}'."
            )));
        }
    }
    if !names.windows(2).all(|w| matches!(w, [a, b] if a < b)) {
        return Err(incomplete(format!(
            "SignedHeaders must be sorted and without duplicates, got '{value}'."
        )));
    }
    Ok(names)
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Spec, step 4 "Calculate the signature": the signature is 64 hex digits (32 bytes).
fn parse_signature(value: &str) -> Result<[u8; 32], SigV4Error> {
    let mut out = [0u8; 32];
    if value.len() != 64 || hex::decode_to_slice(value, &mut out).is_err() {
        return Err(incomplete(
            "Signature should be 64 hexadecimal digits (HMAC-SHA256).",
        ));
    }
    Ok(out)
}

struct RequestTime {
    unix: i64,
    /// The (lowercase) header the time came from: `x-amz-date` or `date`.
    header: &'static str,
}

/// Spec, "Elements of an AWS API request signature": the time is `X-Amz-Date` in ISO 8601
/// basic format (`YYYYMMDD'T'HHMMSS'Z'`), or else the HTTP `Date` header.
fn request_time(headers: &HeaderMap) -> Result<RequestTime, SigV4Error> {
    if let Some(value) = single_header(headers, "x-amz-date")? {
        let unix = parse_basic(value).ok_or_else(|| {
            expired(format!(
                "X-Amz-Date must be in the format YYYYMMDD'T'HHMMSS'Z', got '{}'.",
                String::from_utf8_lossy(value)
            ))
        })?;
        return Ok(RequestTime {
            unix,
            header: "x-amz-date",
        });
    }
    if let Some(value) = single_header(headers, "date")? {
        let unix = parse_http_date(value).ok_or_else(|| {
            expired(format!(
                "Date must be an RFC 7231 IMF-fixdate, got '{}'.",
                String::from_utf8_lossy(value)
            ))
        })?;
        return Ok(RequestTime {
            unix,
            header: "date",
        });
    }
    Err(expired(
        "Request is missing an X-Amz-Date or Date header with the signing time.",
    ))
}

/// The single value of a header; more than one is refused as ambiguous.
fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a [u8]>, SigV4Error> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(expired(format!("More than one '{name}' header.")));
    }
    Ok(first.map(http::HeaderValue::as_bytes))
}

/// Parses `YYYYMMDDTHHMMSSZ` (exactly; no sign, no extra digits).
fn parse_basic(value: &[u8]) -> Option<i64> {
    let shape_ok = value.len() == 16
        && value.iter().enumerate().all(|(i, b)| match i {
            8 => *b == b'T',
            15 => *b == b'Z',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?;
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    let parsed = PrimitiveDateTime::parse(text, format).ok()?;
    Some(parsed.assume_utc().unix_timestamp())
}

/// Parses an RFC 7231 section 7.1.1.1 IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
/// The obsolete RFC 850 and asctime forms are not accepted.
fn parse_http_date(value: &[u8]) -> Option<i64> {
    if value.len() != 29 {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?;
    let format = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let parsed = PrimitiveDateTime::parse(text, format).ok()?;
    Some(parsed.assume_utc().unix_timestamp())
}

/// Formats unix seconds as ISO 8601 basic, `YYYYMMDDTHHMMSSZ`.
fn format_basic(unix: i64) -> Option<String> {
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()?
        .format(format)
        .ok()
}

fn format_for_message(unix: i64) -> String {
    format_basic(unix).unwrap_or_else(|| unix.to_string())
}

/// Refuses a request time more than `max_skew_secs` before or after `now_unix`, with the
/// code (`InvalidSignatureException`) and messages AWS uses.
fn check_skew(request_unix: i64, now_unix: i64, max_skew_secs: i64) -> Result<(), SigV4Error> {
    let skew = max_skew_secs.max(0);
    let skew_text = if skew % 60 == 0 {
        format!("{} min.", skew / 60)
    } else {
        format!("{skew} sec.")
    };
    let earliest = now_unix.saturating_sub(skew);
    let latest = now_unix.saturating_add(skew);
    if request_unix < earliest {
        return Err(invalid(format!(
            "Signature expired: {} is now earlier than {} ({} - {skew_text})",
            format_for_message(request_unix),
            format_for_message(earliest),
            format_for_message(now_unix),
        )));
    }
    if request_unix > latest {
        return Err(invalid(format!(
            "Signature not yet current: {} is still later than {} ({} + {skew_text})",
            format_for_message(request_unix),
            format_for_message(latest),
            format_for_message(now_unix),
        )));
    }
    Ok(())
}

/// Spec, step 1 "Create a canonical request":
///
/// ```text
/// HTTPMethod\nCanonicalURI\nCanonicalQueryString\nCanonicalHeaders\nSignedHeaders\nHashedPayload
/// ```
///
/// Built as bytes: header values may hold non-UTF-8 octets, which are signed as sent.
fn canonical_request(
    req: &SignedRequest<'_>,
    signed_headers: &[&str],
) -> Result<Vec<u8>, SigV4Error> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(req.method.as_bytes());
    out.push(b'\n');
    canonical_uri(req.path, &mut out);
    out.push(b'\n');
    canonical_query(req.query.unwrap_or_default(), &mut out);
    out.push(b'\n');
    canonical_headers(req.headers, signed_headers, &mut out)?;
    out.push(b'\n');
    out.extend_from_slice(signed_headers.join(";").as_bytes());
    out.push(b'\n');
    // Spec, step 1: HashedPayload is the lowercase hex SHA-256 of the payload, here of the
    // body received; a client's x-amz-content-sha256 only takes part as a signed header.
    crate::hexfmt::push_hex(&req.body_sha256, &mut out);
    Ok(out)
}

/// Spec, step 1 "Create a canonical request", CanonicalURI: the absolute path, normalized
/// as RFC 3986 says (redundant and relative segments removed), with each segment
/// URI-encoded twice for every service but S3. The path arrives encoded once (as on the
/// wire), so encoding it here is the second encoding: `%3A` becomes `%253A`.
fn canonical_uri(raw_path: &str, out: &mut Vec<u8>) {
    let normalized = normalize_path(raw_path);
    uri_encode(normalized.as_bytes(), true, out);
}

/// RFC 3986 section 5.2.4 dot-segment removal, plus collapsing of empty segments (`//`),
/// as the AWS SDKs do it: the result starts with `/` and keeps a trailing `/` (also the one
/// implied by a final `.` or `..`).
fn normalize_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    // RFC 3986 5.2.4 (2.B, 2.C): a final "/", "/." or "/.." leaves a trailing "/".
    let trailing_slash = path.ends_with('/')
        || path.ends_with("/.")
        || path.ends_with("/..")
        || path == "."
        || path == "..";
    let mut result = String::with_capacity(path.len().saturating_add(1));
    for segment in &segments {
        result.push('/');
        result.push_str(segment);
    }
    if result.is_empty() || trailing_slash {
        result.push('/');
    }
    result
}

/// Spec, step 1 "Create a canonical request", UriEncode: every byte except the unreserved
/// characters `A-Z a-z 0-9 - _ . ~` becomes `%XY` with uppercase hex; `/` is kept only in
/// paths.
fn uri_encode(input: &[u8], keep_slash: bool, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in input {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        if unreserved || (keep_slash && b == b'/') {
            out.push(b);
        } else {
            out.push(b'%');
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0x0f)]);
        }
    }
}

/// Decodes `%XY` escapes; a `%` not followed by two hex digits stays literal. `+` is data
/// (RFC 3986), not a space.
fn percent_decode(input: &str) -> Vec<u8> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            if let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|c| hex_value(*c)),
                bytes.get(i + 2).and_then(|c| hex_value(*c)),
            ) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Spec, step 1 "Create a canonical request", CanonicalQueryString: each parameter name
/// and value URI-encoded, sorted by encoded name (then by value for equal names), a
/// parameter without a value written with `=` and an empty value, joined with `&`. The
/// received query is decoded first so that each name and value ends up encoded exactly once.
fn canonical_query(raw_query: &str, out: &mut Vec<u8>) {
    let mut params: Vec<(Vec<u8>, Vec<u8>)> = raw_query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let mut enc_name = Vec::with_capacity(name.len());
            uri_encode(&percent_decode(name), false, &mut enc_name);
            let mut enc_value = Vec::with_capacity(value.len());
            uri_encode(&percent_decode(value), false, &mut enc_value);
            (enc_name, enc_value)
        })
        .collect();
    params.sort();
    for (i, (name, value)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        out.extend_from_slice(name);
        out.push(b'=');
        out.extend_from_slice(value);
    }
}

/// Spec, step 1 "Create a canonical request", CanonicalHeaders: `name:value\n` for each
/// signed header in SignedHeaders order, the name lowercase, the value with leading and
/// trailing spaces removed and sequential spaces collapsed to one, and the values of a
/// repeated header joined with `,` in the order received.
fn canonical_headers(
    headers: &HeaderMap,
    signed_headers: &[&str],
    out: &mut Vec<u8>,
) -> Result<(), SigV4Error> {
    for name in signed_headers {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        let mut values = headers.get_all(*name).iter().peekable();
        if values.peek().is_none() {
            return Err(invalid(format!(
                "Header '{name}' is listed in SignedHeaders but is not in the request."
            )));
        }
        for (i, value) in values.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            trim_collapse_spaces(value.as_bytes(), out);
        }
        out.push(b'\n');
    }
    Ok(())
}

/// Drops leading and trailing spaces and turns each run of spaces into one (spaces only,
/// as the AWS SDKs do).
fn trim_collapse_spaces(value: &[u8], out: &mut Vec<u8>) {
    let mut pending_space = false;
    let mut wrote_any = false;
    for &b in value {
        if b == b' ' {
            pending_space = wrote_any;
        } else {
            if pending_space {
                out.push(b' ');
                pending_space = false;
            }
            out.push(b);
            wrote_any = true;
        }
    }
}

/// Spec, step 3 "Create a string to sign":
///
/// ```text
/// Algorithm\nRequestDateTime\nCredentialScope\nHex(SHA256Hash(CanonicalRequest))
/// ```
fn string_to_sign(amz_date: &str, credential: &Credential<'_>, canonical: &[u8]) -> String {
    let hash = digest::digest(&digest::SHA256, canonical);
    let mut out = String::with_capacity(160);
    for part in [
        ALGORITHM,
        "\n",
        amz_date,
        "\n",
        credential.date,
        "/",
        credential.region,
        "/",
        credential.service,
        "/",
        SCOPE_TERMINATOR,
        "\n",
    ] {
        out.push_str(part);
    }
    crate::hexfmt::push_hex_str(hash.as_ref(), &mut out);
    out
}

/// Spec, step 4 "Calculate the signature", deriving the signing key:
///
/// ```text
/// kDate = HMAC("AWS4" + kSecret, Date); kRegion = HMAC(kDate, Region);
/// kService = HMAC(kRegion, Service); kSigning = HMAC(kService, "aws4_request")
/// ```
///
/// The result for the last scope seen is kept with the secret (see [`SecretAccessKey`]). The
/// intermediate keys live in `ring::hmac::Key`, which does not zeroize; the secret and the
/// derived key are copied only into `Zeroizing` buffers.
fn signing_key(secret: &SecretAccessKey, credential: &Credential<'_>) -> hmac::Key {
    let mut cached = secret
        .derived
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(derived) = cached.as_ref().filter(|d| d.is_for(credential)) {
        return hmac::Key::new(hmac::HMAC_SHA256, derived.key.as_ref());
    }
    let derived = derive(secret, credential);
    let key = hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref());
    *cached = Some(Derived {
        date: credential.date.to_owned(),
        region: credential.region.to_owned(),
        service: credential.service.to_owned(),
        key: derived,
    });
    key
}

impl Derived {
    fn is_for(&self, credential: &Credential<'_>) -> bool {
        self.date == credential.date
            && self.region == credential.region
            && self.service == credential.service
    }
}

/// The four HMACs of [`signing_key`].
fn derive(secret: &SecretAccessKey, credential: &Credential<'_>) -> Zeroizing<[u8; 32]> {
    let mut k_secret = Zeroizing::new(Vec::with_capacity(4 + secret.expose_secret().len()));
    k_secret.extend_from_slice(b"AWS4");
    k_secret.extend_from_slice(secret.expose_secret().as_bytes());
    let mut key = Zeroizing::new([0u8; 32]);
    let mut hmac_key = hmac::Key::new(hmac::HMAC_SHA256, &k_secret);
    for part in [
        credential.date,
        credential.region,
        credential.service,
        SCOPE_TERMINATOR,
    ] {
        let tag = hmac::sign(&hmac_key, part.as_bytes());
        key.copy_from_slice(tag.as_ref());
        hmac_key = hmac::Key::new(hmac::HMAC_SHA256, key.as_ref());
    }
    key
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;
    use aws_smithy_runtime_api::client::identity::Identity;
    use http::{HeaderName, HeaderValue};
    use std::time::{Duration, UNIX_EPOCH};

    struct Principals(Vec<(&'static str, SecretAccessKey)>);

    impl SecretLookup for Principals {
        fn secret_access_key(&self, access_key_id: &str) -> Option<&SecretAccessKey> {
            self.0
                .iter()
                .find(|(id, _)| *id == access_key_id)
                .map(|(_, secret)| secret)
        }
    }

    fn sha256(body: &[u8]) -> [u8; 32] {
        digest::digest(&digest::SHA256, body)
            .as_ref()
            .try_into()
            .unwrap()
    }

    fn set_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).unwrap(),
        );
    }

    fn authorization(headers: &HeaderMap) -> String {
        headers
            .get(http::header::AUTHORIZATION)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    }

    /// Changes the first hex digit of the `Signature=` in an Authorization value.
    fn flip_signature_digit(auth: &str) -> String {
        let at = auth.find("Signature=").unwrap() + "Signature=".len();
        let digit = &auth[at..=at];
        let replacement = if digit == "0" { "1" } else { "0" };
        format!("{}{replacement}{}", &auth[..at], &auth[at + 1..])
    }

    // ---- 1. Requests signed by the AWS SDK's own signer (aws-sigv4) ----

    const KMS_AKID: &str = "AKIAEKMSTESTKEY00001";
    const KMS_SECRET: &str = "kmsTestSecretKey/0123456789abcdefghijklmn";
    const KMS_SCOPE: Scope<'static> = Scope {
        region: "us-east-1",
        service: "kms",
    };
    /// 2023-11-14T22:13:20Z.
    const SIGNED_AT: i64 = 1_700_000_000;
    const SKEW: i64 = 15 * 60;
    const KMS_BODY: &[u8] = br#"{"KeyId":"alias/ekms-test","Plaintext":"aGVsbG8gZW5jbGF2ZQ=="}"#;
    const KMS_HEADERS: [(&str, &str); 3] = [
        ("host", "kms.us-east-1.amazonaws.com"),
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", "TrentService.Encrypt"),
    ];

    fn principals() -> Principals {
        Principals(vec![(
            KMS_AKID,
            SecretAccessKey::new(KMS_SECRET.to_owned()),
        )])
    }

    /// The headers of a KMS Encrypt request after aws-sigv4 signed it.
    fn kms_signed(access_key_id: &str, secret: &str, region: &str, at: i64) -> HeaderMap {
        let identity: Identity = Credentials::new(access_key_id, secret, None, None, "test").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("kms")
            .time(UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap()))
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let signable = SignableRequest::new(
            "POST",
            "https://kms.us-east-1.amazonaws.com/",
            KMS_HEADERS.iter().copied(),
            SignableBody::Bytes(KMS_BODY),
        )
        .unwrap();
        let (instructions, _signature) = sign(signable, &params).unwrap().into_parts();
        let mut builder = http::Request::builder()
            .method("POST")
            .uri("https://kms.us-east-1.amazonaws.com/");
        for (name, value) in KMS_HEADERS {
            builder = builder.header(name, value);
        }
        let mut request = builder.body(()).unwrap();
        instructions.apply_to_request_http1x(&mut request);
        request.headers().clone()
    }

    fn verify_kms(headers: &HeaderMap, body: &[u8], now: i64) -> Result<Verified, SigV4Error> {
        let req = SignedRequest {
            method: "POST",
            path: "/",
            query: None,
            headers,
            body_sha256: sha256(body),
        };
        verify(&req, &KMS_SCOPE, now, SKEW, &principals())
    }

    fn good_kms() -> HeaderMap {
        kms_signed(KMS_AKID, KMS_SECRET, "us-east-1", SIGNED_AT)
    }

    #[test]
    fn sdk_signed_kms_request_verifies() {
        let verified = verify_kms(&good_kms(), KMS_BODY, SIGNED_AT).unwrap();
        assert_eq!(
            verified,
            Verified {
                access_key_id: KMS_AKID.to_owned(),
                signing_time: SIGNED_AT,
            }
        );
    }

    #[test]
    fn sdk_signed_changed_body_byte_is_refused() {
        let mut body = KMS_BODY.to_vec();
        body[10] ^= 1;
        let err = verify_kms(&good_kms(), &body, SIGNED_AT).unwrap_err();
        assert!(matches!(err, SigV4Error::InvalidSignature(_)), "{err:?}");
    }

    #[test]
    fn sdk_signed_changed_header_is_refused() {
        let mut headers = good_kms();
        set_header(&mut headers, "x-amz-target", "TrentService.Decrypt");
        let err = verify_kms(&headers, KMS_BODY, SIGNED_AT).unwrap_err();
        assert!(matches!(err, SigV4Error::InvalidSignature(_)), "{err:?}");
    }

    #[test]
    fn sdk_signed_wrong_secret_is_refused() {
        let headers = kms_signed(KMS_AKID, "not-the-secret", "us-east-1", SIGNED_AT);
        let err = verify_kms(&headers, KMS_BODY, SIGNED_AT).unwrap_err();
        assert!(matches!(err, SigV4Error::InvalidSignature(_)), "{err:?}");
    }

    #[test]
    fn sdk_signed_unknown_key_id_is_unrecognized() {
        let headers = kms_signed("AKIAUNKNOWN", KMS_SECRET, "us-east-1", SIGNED_AT);
        let err = verify_kms(&headers, KMS_BODY, SIGNED_AT).unwrap_err();
        assert!(matches!(err, SigV4Error::UnrecognizedClient), "{err:?}");
    }

    #[test]
    fn sdk_signed_for_another_region_is_refused() {
        let headers = kms_signed(KMS_AKID, KMS_SECRET, "eu-west-1", SIGNED_AT);
        let err = verify_kms(&headers, KMS_BODY, SIGNED_AT).unwrap_err();
        let SigV4Error::InvalidSignature(msg) = err else {
            panic!("{err:?}")
        };
        assert!(
            msg.contains("eu-west-1") && msg.contains("us-east-1"),
            "{msg}"
        );
    }

    #[test]
    fn sdk_signed_for_another_service_is_refused() {
        let headers = good_kms();
        let req = SignedRequest {
            method: "POST",
            path: "/",
            query: None,
            headers: &headers,
            body_sha256: sha256(KMS_BODY),
        };
        let scope = Scope {
            region: "us-east-1",
            service: "sts",
        };
        let err = verify(&req, &scope, SIGNED_AT, SKEW, &principals()).unwrap_err();
        assert!(matches!(err, SigV4Error::InvalidSignature(_)), "{err:?}");
    }

    #[test]
    fn sdk_signed_16_minutes_old_is_expired() {
        let err = verify_kms(&good_kms(), KMS_BODY, SIGNED_AT + 16 * 60).unwrap_err();
        let SigV4Error::InvalidSignature(msg) = err else {
            panic!("{err:?}")
        };
        assert_eq!(
            msg,
            "Signature expired: 20231114T221320Z is now earlier than 20231114T221420Z \
             (20231114T222920Z - 15 min.)"
        );
    }

    #[test]
    fn sdk_signed_16_minutes_ahead_is_not_yet_current() {
        let err = verify_kms(&good_kms(), KMS_BODY, SIGNED_AT - 16 * 60).unwrap_err();
        let SigV4Error::InvalidSignature(msg) = err else {
            panic!("{err:?}")
        };
        assert_eq!(
            msg,
            "Signature not yet current: 20231114T221320Z is still later than 20231114T221220Z \
             (20231114T215720Z + 15 min.)"
        );
    }

    /// The messages of the issue, and the AWS code they go out with: a signature outside the
    /// skew is an `InvalidSignatureException`, not a `RequestExpired`.
    #[test]
    fn signature_outside_the_skew_is_invalid_signature_with_aws_messages() {
        let at = |basic: &str| parse_basic(basic.as_bytes()).unwrap();
        for (signed, now, message) in [
            (
                "20241201T000000Z",
                "20241201T002500Z",
                "Signature expired: 20241201T000000Z is now earlier than 20241201T001000Z \
                 (20241201T002500Z - 15 min.)",
            ),
            (
                "20241201T010000Z",
                "20241201T003000Z",
                "Signature not yet current: 20241201T010000Z is still later than \
                 20241201T004500Z (20241201T003000Z + 15 min.)",
            ),
        ] {
            let headers = kms_signed(KMS_AKID, KMS_SECRET, "us-east-1", at(signed));
            verify_kms(&headers, KMS_BODY, at(signed)).unwrap();
            let err = verify_kms(&headers, KMS_BODY, at(now)).unwrap_err();
            let SigV4Error::InvalidSignature(msg) = &err else {
                panic!("{err:?}")
            };
            assert_eq!(msg, message);
            let err = crate::error::KmsError::from(err);
            assert_eq!(err.aws_code(), "InvalidSignatureException");
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn sdk_signed_14_minutes_either_way_verifies() {
        verify_kms(&good_kms(), KMS_BODY, SIGNED_AT + 14 * 60).unwrap();
        verify_kms(&good_kms(), KMS_BODY, SIGNED_AT - 14 * 60).unwrap();
    }

    #[test]
    fn missing_authorization_is_missing_authentication_token() {
        let mut headers = good_kms();
        headers.remove(http::header::AUTHORIZATION);
        let err = verify_kms(&headers, KMS_BODY, SIGNED_AT).unwrap_err();
        assert!(
            matches!(err, SigV4Error::MissingAuthenticationToken),
            "{err:?}"
        );
    }

    #[test]
    fn truncated_authorization_is_incomplete() {
        let full = authorization(&good_kms());
        let cut_in_signature = full.len() - 10;
        let before_signature = full.find(", Signature=").unwrap();
        let just_algorithm = ALGORITHM.len();
        for cut in [cut_in_signature, before_signature, just_algorithm] {
            let mut headers = good_kms();
            set_header(&mut headers, "authorization", &full[..cut]);
            let err = verify_kms(&headers, KMS_BODY, SIGNED_AT).unwrap_err();
            assert!(
                matches!(err, SigV4Error::IncompleteSignature(_)),
                "cut at {cut}: {err:?}"
            );
        }
    }

    #[test]
    fn messages_never_contain_the_secret_or_expected_signature() {
        let good = good_kms();
        let good_auth = authorization(&good);
        let expected_signature = &good_auth[good_auth.find("Signature=").unwrap() + 10..];
        let mut tampered = good.clone();
        set_header(
            &mut tampered,
            "authorization",
            &flip_signature_digit(&good_auth),
        );
        let mut changed = good.clone();
        set_header(&mut changed, "x-amz-target", "TrentService.Decrypt");
        for (headers, now) in [
            (&tampered, SIGNED_AT),
            (&changed, SIGNED_AT),
            (&good, SIGNED_AT + 3600),
        ] {
            let msg = verify_kms(headers, KMS_BODY, now).unwrap_err().to_string();
            assert!(!msg.contains(KMS_SECRET), "{msg}");
            assert!(!msg.contains(expected_signature), "{msg}");
        }
        assert_eq!(
            format!("{:?}", SecretAccessKey::new(KMS_SECRET.to_owned())),
            "SecretAccessKey"
        );
    }

    // ---- 2. The AWS SigV4 test suite ----
    //
    // Source: the AWS Signature Version 4 test suite in its current form, the CRT suite
    // (awslabs/aws-c-auth v0.9.0, tests/aws-signing-test-suite/v4/<case>/
    // header-signed-request.txt), as vendored in the aws-sigv4 1.6.4 crate under
    // aws-signing-test-suite/v4/. Service `service`, region `us-east-1`, access key
    // AKIDEXAMPLE, time 20150830T123600Z. Each text below is that case's
    // header-signed-request.txt.
    //
    // The normalize-path group uses the `-normalized` cases (what non-S3 services do). For
    // get-space the `-unnormalized` case is used: its request line carries a literal space
    // (as the original suite's get-space.req did), while get-space-normalized sends
    // `%20` and expects it encoded once, which contradicts the double encoding of non-S3
    // services; aws-sigv4 skips that case for the same reason. Its path has nothing to
    // normalize, so both variants have the same signature.

    const SUITE_AKID: &str = "AKIDEXAMPLE";
    const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const SUITE_SCOPE: Scope<'static> = Scope {
        region: "us-east-1",
        service: "service",
    };
    /// 20150830T123600Z.
    const SUITE_TIME: i64 = 1_440_938_160;

    const SUITE: &[(&str, &str)] = &[
        (
            "get-vanilla",
            "GET / HTTP/1.1\n\
             Host:example.amazonaws.com\n\
             X-Amz-Date:20150830T123600Z\n\
             Authorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31\n\
             \n",
        ),
        (
            "get-vanilla-query-order-key-case",
            "GET /?Param2=value2&Param1=value1 HTTP/1.1\n\
             Host:example.amazonaws.com\n\
             X-Amz-Date:20150830T123600Z\n\
             Authorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500\n\
             \n",
        ),
        (
            "get-vanilla-empty-query-key",
            "GET /?Param1=value1 HTTP/1.1\n\
             Host:example.amazonaws.com\n\
             X-Amz-Date:20150830T123600Z\n\
             Authorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb\n\
             \n",
        ),
        (
            "get-utf8",
            "GET /\u{1234} HTTP/1.1\n\
             Host:example.amazonaws.com\n\
             X-Amz-Date:20150830T123600Z\n\
             Authorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85\n\
             \n",
        ),
        (
            "get-relative-relative-normalized",
            "GET /example1/example2/../.. HTTP/1.1\n\
             Host:example.amazonaws.com\n\
             X-Amz-Date:20150830T123600Z\n\
             Authorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31\n\
             \n",
        ),
        (
            "get-slash-dot-slash-normalized",
            "GET /./ HTTP/1.1\n\
             Host:example.amazonaws.com\n\
             X-Amz-Date:20150830T123600Z\n\
             Authorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31\n\
             \n",
        ),
        (
            "get-slashes-normalized",
            "GET //example// HTTP/1.1\n\
             Host:example.amazonaws.com\n\
             X-Amz-Date:20150830T123600Z\n\
             Authorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84\n\
             \n",
        ),
        (
            "get-space-unnormalized",
            "GET /example space/ HTTP/1.1\n\
             Host:example.amazonaws.com\n\
             X-Amz-Date:20150830T123600Z\n\
             Authorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741\n\
             \n",
        ),
        (
            "post-vanilla",
            "POST / HTTP/1.1\n\
             Host:example.amazonaws.com\n\
             X-Amz-Date:20150830T123600Z\n\
             Authorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b\n\
             \n",
        ),
        (
            "post-x-www-form-urlencoded",
            "POST / HTTP/1.1\n\
             Content-Type:application/x-www-form-urlencoded\n\
             Host:example.amazonaws.com\n\
             Content-Length:13\n\
             X-Amz-Date:20150830T123600Z\n\
             x-amz-content-sha256:9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e\n\
             Authorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-length;content-type;host;x-amz-content-sha256;x-amz-date, Signature=d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b\n\
             \n\
             Param1=value1",
        ),
        (
            "get-header-key-duplicate",
            "GET / HTTP/1.1\n\
             Host:example.amazonaws.com\n\
             My-Header1:value2\n\
             My-Header1:value2\n\
             My-Header1:value1\n\
             X-Amz-Date:20150830T123600Z\n\
             Authorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;x-amz-date, Signature=c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea\n\
             \n",
        ),
        (
            "get-header-value-trim",
            "GET / HTTP/1.1\n\
             Host:example.amazonaws.com\n\
             My-Header1: value1\n\
             My-Header2: \"a   b   c\"\n\
             X-Amz-Date:20150830T123600Z\n\
             Authorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;my-header2;x-amz-date, Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736\n\
             \n",
        ),
        (
            "post-header-key-case",
            "POST / HTTP/1.1\n\
             Host:example.amazonaws.com\n\
             X-Amz-Date:20150830T123600Z\n\
             Authorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b\n\
             \n",
        ),
        (
            "post-header-value-case",
            "POST / HTTP/1.1\n\
             Host:example.amazonaws.com\n\
             My-Header1:VALUE1\n\
             X-Amz-Date:20150830T123600Z\n\
             Authorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;x-amz-date, Signature=cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d\n\
             \n",
        ),
    ];

    struct ParsedRequest {
        method: String,
        path: String,
        query: Option<String>,
        headers: HeaderMap,
        body: Vec<u8>,
    }

    /// Parses a test-suite request: request line, `Name:value` lines, blank line, body.
    fn parse_suite_request(text: &str) -> ParsedRequest {
        let (head, body) = text.split_once("\n\n").unwrap();
        let mut lines = head.lines();
        let request_line = lines.next().unwrap();
        let (method, rest) = request_line.split_once(' ').unwrap();
        let (target, _version) = rest.rsplit_once(' ').unwrap();
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query.to_owned())),
            None => (target, None),
        };
        let mut headers = HeaderMap::new();
        for line in lines {
            let (name, value) = line.split_once(':').unwrap();
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                // Leading/trailing whitespace is not part of a field value (RFC 9110 5.5).
                HeaderValue::from_str(value.trim_matches([' ', '\t'])).unwrap(),
            );
        }
        ParsedRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            query,
            headers,
            body: body.as_bytes().to_vec(),
        }
    }

    fn verify_suite(parsed: &ParsedRequest) -> Result<Verified, SigV4Error> {
        let principals = Principals(vec![(
            SUITE_AKID,
            SecretAccessKey::new(SUITE_SECRET.to_owned()),
        )]);
        let req = SignedRequest {
            method: &parsed.method,
            path: &parsed.path,
            query: parsed.query.as_deref(),
            headers: &parsed.headers,
            body_sha256: sha256(&parsed.body),
        };
        verify(&req, &SUITE_SCOPE, SUITE_TIME, SKEW, &principals)
    }

    #[test]
    fn aws_test_suite_signatures_verify() {
        for (name, text) in SUITE {
            let parsed = parse_suite_request(text);
            match verify_suite(&parsed) {
                Ok(verified) => {
                    assert_eq!(verified.access_key_id, SUITE_AKID, "{name}");
                    assert_eq!(verified.signing_time, SUITE_TIME, "{name}");
                }
                Err(err) => panic!("{name}: {err:?}"),
            }
        }
    }

    #[test]
    fn aws_test_suite_signatures_with_one_digit_changed_are_refused() {
        for (name, text) in SUITE {
            let mut parsed = parse_suite_request(text);
            let tampered = flip_signature_digit(&authorization(&parsed.headers));
            set_header(&mut parsed.headers, "authorization", &tampered);
            let err = verify_suite(&parsed).unwrap_err();
            assert!(
                matches!(err, SigV4Error::InvalidSignature(_)),
                "{name}: {err:?}"
            );
        }
    }

    /// Canonical URIs from the same suite's double-url-encode and double-encode-path cases
    /// (header-canonical-request.txt): non-S3 services encode the received path again.
    #[test]
    fn path_already_encoded_is_encoded_again() {
        for (raw, canonical) in [
            (
                "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-west-2%3A892717189312%3Afunction%3Amy-rusty-fun/invocations",
                "/2015-03-31/functions/arn%253Aaws%253Alambda%253Aus-west-2%253A892717189312%253Afunction%253Amy-rusty-fun/invocations",
            ),
            (
                "/test/@connections/JBDvjfGEIAMCERw%3D",
                "/test/%40connections/JBDvjfGEIAMCERw%253D",
            ),
        ] {
            let mut out = Vec::new();
            canonical_uri(raw, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), canonical);
        }
    }

    #[test]
    fn path_normalization() {
        for (raw, normalized) in [
            ("", "/"),
            ("/", "/"),
            ("/./", "/"),
            ("/.", "/"),
            ("/..", "/"),
            ("/../..", "/"),
            ("/a/b/../..", "/"),
            ("/a/./b/", "/a/b/"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("//example//", "/example/"),
            ("/a..b/.c", "/a..b/.c"),
            ("relative", "/relative"),
        ] {
            assert_eq!(normalize_path(raw), normalized, "{raw:?}");
        }
    }

    #[test]
    fn query_canonicalization() {
        for (raw, canonical) in [
            ("", ""),
            ("Param2=value2&Param1=value1", "Param1=value1&Param2=value2"),
            ("b=2&a=2&a=1", "a=1&a=2&b=2"),
            ("flag&k=", "flag=&k="),
            ("&&a=1&", "a=1"),
            ("k=a%20b&k2=a+b", "k=a%20b&k2=a%2Bb"),
            ("k=%7e%2d", "k=~-"),
            ("k=%zz%4", "k=%25zz%254"),
            ("%E1%88%B4=\u{1234}", "%E1%88%B4=%E1%88%B4"),
            ("a=b=c", "a=b%3Dc"),
        ] {
            let mut out = Vec::new();
            canonical_query(raw, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), canonical, "{raw:?}");
        }
    }

    #[test]
    fn header_values_are_trimmed_and_spaces_collapsed() {
        for (raw, canonical) in [
            ("  a   b  c  ", "a b c"),
            ("abc", "abc"),
            ("", ""),
            ("   ", ""),
            ("\"a   b\"", "\"a b\""),
        ] {
            let mut out = Vec::new();
            trim_collapse_spaces(raw.as_bytes(), &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), canonical, "{raw:?}");
        }
    }

    // ---- Authorization header parsing ----

    /// Re-signs a KMS request with our own primitives so the Authorization header can be
    /// written freely: `components` is everything after the algorithm, with `{sig}` where
    /// the signature goes.
    fn kms_with_authorization(components: &str) -> HeaderMap {
        let mut headers = good_kms();
        let good = authorization(&headers);
        let signature = &good[good.find("Signature=").unwrap() + 10..];
        let value = format!("{ALGORITHM} {}", components.replace("{sig}", signature));
        set_header(&mut headers, "authorization", &value);
        headers
    }

    const CREDENTIAL: &str = "Credential=AKIAEKMSTESTKEY00001/20231114/us-east-1/kms/aws4_request";
    const SIGNED_HEADERS: &str = "SignedHeaders=content-type;host;x-amz-date;x-amz-target";

    #[test]
    fn authorization_components_in_any_order_and_spacing_verify() {
        for components in [
            format!("{CREDENTIAL}, {SIGNED_HEADERS}, Signature={{sig}}"),
            format!("{CREDENTIAL},{SIGNED_HEADERS},Signature={{sig}}"),
            format!("Signature={{sig}},   {CREDENTIAL},\t{SIGNED_HEADERS}"),
            format!("{SIGNED_HEADERS}, Signature={{sig}}, {CREDENTIAL}"),
        ] {
            let headers = kms_with_authorization(&components);
            verify_kms(&headers, KMS_BODY, SIGNED_AT)
                .unwrap_or_else(|err| panic!("{components}: {err:?}"));
        }
    }

    #[test]
    fn malformed_authorization_is_incomplete() {
        let too_many = (0..=MAX_SIGNED_HEADERS)
            .map(|i| format!("h{i:03}"))
            .collect::<Vec<_>>()
            .join(";");
        let cases = [
            format!("{CREDENTIAL}, {SIGNED_HEADERS}, Signature={{sig}}, {CREDENTIAL}"),
            format!("{CREDENTIAL}, {SIGNED_HEADERS}, Signature={{sig}}, Signature={{sig}}"),
            format!("{CREDENTIAL}, {SIGNED_HEADERS}"),
            format!("{CREDENTIAL}, Signature={{sig}}"),
            format!("{SIGNED_HEADERS}, Signature={{sig}}"),
            format!("{CREDENTIAL}, {SIGNED_HEADERS}, Signature={{sig}}, Extra=1"),
            format!("{CREDENTIAL}, {SIGNED_HEADERS}, Signature={{sig}},"),
            format!("{CREDENTIAL} {SIGNED_HEADERS} Signature={{sig}}"),
            format!("{CREDENTIAL}, {SIGNED_HEADERS}, Signature=abc"),
            format!("{CREDENTIAL}, {SIGNED_HEADERS}, Signature={{sig}}0"),
            format!(
                "{CREDENTIAL}, {SIGNED_HEADERS}, Signature=zz{}",
                "0".repeat(62)
            ),
            format!("Credential=AKIAEKMSTESTKEY00001/20231114/us-east-1/kms, {SIGNED_HEADERS}, Signature={{sig}}"),
            format!("Credential=AKIAEKMSTESTKEY00001/20231114/us-east-1/kms/aws4_request/x, {SIGNED_HEADERS}, Signature={{sig}}"),
            format!("Credential=AKIAEKMSTESTKEY00001/20231114/us-east-1/kms/aws5_request, {SIGNED_HEADERS}, Signature={{sig}}"),
            format!("Credential=AKIAEKMSTESTKEY00001/2023111/us-east-1/kms/aws4_request, {SIGNED_HEADERS}, Signature={{sig}}"),
            format!("Credential=/20231114/us-east-1/kms/aws4_request, {SIGNED_HEADERS}, Signature={{sig}}"),
            format!("{CREDENTIAL}, SignedHeaders=host;content-type;x-amz-date;x-amz-target, Signature={{sig}}"),
            format!("{CREDENTIAL}, SignedHeaders=content-type;Host;x-amz-date;x-amz-target, Signature={{sig}}"),
            format!("{CREDENTIAL}, SignedHeaders=content-type;host;host;x-amz-date, Signature={{sig}}"),
            format!("{CREDENTIAL}, SignedHeaders=content-type;;host;x-amz-date, Signature={{sig}}"),
            format!("{CREDENTIAL}, SignedHeaders=content-type;x-amz-date;x-amz-target, Signature={{sig}}"),
            format!("{CREDENTIAL}, SignedHeaders=content-type;host;x-amz-target, Signature={{sig}}"),
            format!("{CREDENTIAL}, SignedHeaders={too_many}, Signature={{sig}}"),
        ];
        for components in cases {
            let headers = kms_with_authorization(&components);
            let err = verify_kms(&headers, KMS_BODY, SIGNED_AT).unwrap_err();
            assert!(
                matches!(err, SigV4Error::IncompleteSignature(_)),
                "{components}: {err:?}"
            );
        }
    }

    #[test]
    fn oversized_or_repeated_authorization_is_incomplete() {
        let mut headers = good_kms();
        let padded = format!(
            "{}, {}",
            authorization(&headers),
            " ".repeat(MAX_AUTHORIZATION_LEN)
        );
        set_header(&mut headers, "authorization", &padded);
        let err = verify_kms(&headers, KMS_BODY, SIGNED_AT).unwrap_err();
        assert!(matches!(err, SigV4Error::IncompleteSignature(_)), "{err:?}");

        let mut headers = good_kms();
        let again = headers.get(http::header::AUTHORIZATION).unwrap().clone();
        headers.append(http::header::AUTHORIZATION, again);
        let err = verify_kms(&headers, KMS_BODY, SIGNED_AT).unwrap_err();
        assert!(matches!(err, SigV4Error::IncompleteSignature(_)), "{err:?}");
    }

    #[test]
    fn other_algorithm_is_invalid() {
        let mut headers = good_kms();
        let auth = authorization(&headers).replacen(ALGORITHM, "AWS4-HMAC-SHA512", 1);
        set_header(&mut headers, "authorization", &auth);
        let err = verify_kms(&headers, KMS_BODY, SIGNED_AT).unwrap_err();
        assert!(matches!(err, SigV4Error::InvalidSignature(_)), "{err:?}");
    }

    #[test]
    fn scope_date_other_than_request_date_is_invalid() {
        let headers = kms_with_authorization(&format!(
            "Credential=AKIAEKMSTESTKEY00001/20231115/us-east-1/kms/aws4_request, \
             {SIGNED_HEADERS}, Signature={{sig}}"
        ));
        let err = verify_kms(&headers, KMS_BODY, SIGNED_AT).unwrap_err();
        assert!(matches!(err, SigV4Error::InvalidSignature(_)), "{err:?}");
    }

    /// A KMS request with X-Amz-Date `20231114T221320Z` (= [`SIGNED_AT`]), self-signed over
    /// `signed` (sorted): the signature is right for whatever `signed` covers.
    fn kms_signed_over(signed: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in KMS_HEADERS {
            headers.insert(name, HeaderValue::from_static(value));
        }
        set_header(&mut headers, "x-amz-date", "20231114T221320Z");
        self_signed(&mut headers, signed, "20231114T221320Z");
        headers
    }

    #[test]
    fn self_signed_over_all_kms_headers_verifies() {
        let headers = kms_signed_over(&["content-type", "host", "x-amz-date", "x-amz-target"]);
        verify_kms(&headers, KMS_BODY, SIGNED_AT).unwrap();
    }

    /// The issue: with `x-amz-target` outside SignedHeaders, a captured signature would hold
    /// for any operation. Refused although the signature is right for what it covers.
    #[test]
    fn x_amz_target_not_signed_is_refused() {
        let headers = kms_signed_over(&["content-type", "host", "x-amz-date"]);
        let err = verify_kms(&headers, KMS_BODY, SIGNED_AT).unwrap_err();
        let SigV4Error::IncompleteSignature(msg) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(
            msg,
            "'x-amz-target' must be a signed header in the SignedHeaders of the \
             Authorization header"
        );
        assert_eq!(
            crate::error::KmsError::from(err).aws_code(),
            "IncompleteSignature"
        );

        // The replay: a DescribeKey signed that way, sent again as DisableKey.
        let mut describe = HeaderMap::new();
        for (name, value) in KMS_HEADERS {
            describe.insert(name, HeaderValue::from_static(value));
        }
        set_header(&mut describe, "x-amz-date", "20231114T221320Z");
        set_header(&mut describe, "x-amz-target", "TrentService.DescribeKey");
        self_signed(
            &mut describe,
            &["content-type", "host", "x-amz-date"],
            "20231114T221320Z",
        );
        let mut disable = describe.clone();
        set_header(&mut disable, "x-amz-target", "TrentService.DisableKey");
        for headers in [&describe, &disable] {
            let err = verify_kms(headers, KMS_BODY, SIGNED_AT + 60).unwrap_err();
            assert!(matches!(err, SigV4Error::IncompleteSignature(_)), "{err:?}");
        }
    }

    #[test]
    fn content_type_sent_but_not_signed_is_refused() {
        let headers = kms_signed_over(&["host", "x-amz-date", "x-amz-target"]);
        let err = verify_kms(&headers, KMS_BODY, SIGNED_AT).unwrap_err();
        let SigV4Error::IncompleteSignature(msg) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(
            msg,
            "'content-type' must be a signed header in the SignedHeaders of the \
             Authorization header"
        );
    }

    /// `content-type` and `x-amz-target` are required only when sent (the AWS test suite
    /// requests carry neither).
    #[test]
    fn headers_not_sent_need_not_be_signed() {
        let mut headers = kms_signed_over(&["host", "x-amz-date", "x-amz-target"]);
        headers.remove("content-type");
        self_signed(
            &mut headers,
            &["host", "x-amz-date", "x-amz-target"],
            "20231114T221320Z",
        );
        verify_kms(&headers, KMS_BODY, SIGNED_AT).unwrap();

        let mut headers = kms_signed_over(&["content-type", "host", "x-amz-date"]);
        headers.remove("x-amz-target");
        self_signed(
            &mut headers,
            &["content-type", "host", "x-amz-date"],
            "20231114T221320Z",
        );
        verify_kms(&headers, KMS_BODY, SIGNED_AT).unwrap();
    }

    #[test]
    fn signed_header_absent_from_request_is_invalid() {
        let mut headers = good_kms();
        headers.remove("x-amz-target");
        let err = verify_kms(&headers, KMS_BODY, SIGNED_AT).unwrap_err();
        let SigV4Error::InvalidSignature(msg) = err else {
            panic!("{err:?}")
        };
        assert!(msg.contains("x-amz-target"), "{msg}");
    }

    // ---- Request time ----

    #[test]
    fn missing_or_malformed_amz_date_is_expired() {
        let mut headers = good_kms();
        headers.remove("x-amz-date");
        let err = verify_kms(&headers, KMS_BODY, SIGNED_AT).unwrap_err();
        assert!(matches!(err, SigV4Error::RequestExpired(_)), "{err:?}");

        for bad in [
            "20231114T221320",
            "2023-11-14T22:13:20Z",
            "+2023114T221320Z",
            "20231314T221320Z",
            "20231114T251320Z",
            "20231114t221320Z",
        ] {
            let mut headers = good_kms();
            set_header(&mut headers, "x-amz-date", bad);
            let err = verify_kms(&headers, KMS_BODY, SIGNED_AT).unwrap_err();
            assert!(
                matches!(err, SigV4Error::RequestExpired(_)),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn aws_skew_message_example() {
        let request = parse_basic(b"20130524T000000Z").unwrap();
        let now = parse_basic(b"20130524T003000Z").unwrap();
        let err = check_skew(request, now, 15 * 60).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Signature expired: 20130524T000000Z is now earlier than 20130524T001500Z \
             (20130524T003000Z - 15 min.)"
        );
        check_skew(request, now, 30 * 60).unwrap();
        check_skew(i64::MIN, i64::MAX, i64::MAX).unwrap_err();
        check_skew(0, 0, -5).unwrap();
    }

    /// Signs `headers` for KMS with this module's own primitives (used where aws-sigv4
    /// cannot produce the request, e.g. with a `Date` header instead of `X-Amz-Date`).
    fn self_signed(headers: &mut HeaderMap, signed: &[&str], amz_date: &str) {
        let credential = Credential {
            access_key_id: KMS_AKID,
            date: &amz_date[..8],
            region: "us-east-1",
            service: "kms",
        };
        let req = SignedRequest {
            method: "POST",
            path: "/",
            query: None,
            headers,
            body_sha256: sha256(KMS_BODY),
        };
        let canonical = canonical_request(&req, signed).unwrap();
        let sts = string_to_sign(amz_date, &credential, &canonical);
        let secret = SecretAccessKey::new(KMS_SECRET.to_owned());
        let tag = hmac::sign(&signing_key(&secret, &credential), sts.as_bytes());
        let auth = format!(
            "{ALGORITHM} Credential={KMS_AKID}/{}/us-east-1/kms/aws4_request, \
             SignedHeaders={}, Signature={}",
            &amz_date[..8],
            signed.join(";"),
            hex::encode(tag.as_ref())
        );
        set_header(headers, "authorization", &auth);
    }

    /// The signing key kept with a secret is the one its scope derives, whichever scope came
    /// before: a request of another day, region or service never signs with a stale key.
    #[test]
    fn cached_signing_key_follows_the_scope() {
        let secret = SecretAccessKey::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned());
        let scope = |date, region, service| Credential {
            access_key_id: "AKIDEXAMPLE",
            date,
            region,
            service,
        };
        let tag = |key: &hmac::Key| hmac::sign(key, b"string to sign").as_ref().to_vec();
        let fresh = |c: &Credential<'_>| {
            tag(&hmac::Key::new(
                hmac::HMAC_SHA256,
                derive(&SecretAccessKey::new(secret.expose_secret().to_owned()), c).as_ref(),
            ))
        };
        let scopes = [
            scope("20231114", "us-east-1", "kms"),
            scope("20231114", "us-east-1", "kms"),
            scope("20231115", "us-east-1", "kms"),
            scope("20231115", "eu-west-1", "kms"),
            scope("20231115", "eu-west-1", "iam"),
            scope("20231114", "us-east-1", "kms"),
        ];
        let mut tags = Vec::new();
        for c in &scopes {
            let cached = tag(&signing_key(&secret, c));
            assert_eq!(cached, fresh(c), "{}/{}/{}", c.date, c.region, c.service);
            tags.push(cached);
        }
        assert_eq!(tags[0], tags[1]);
        assert_eq!(tags[0], tags[5]);
        for (i, a) in tags[1..5].iter().enumerate() {
            assert!(
                tags[i + 2..5].iter().all(|b| a != b),
                "scopes {i} and later"
            );
        }
        // The AWS example of the spec's "Calculate the signature" step.
        let example = scope("20150830", "us-east-1", "iam");
        assert_eq!(
            hex::encode(derive(&secret, &example).as_ref()),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
    }

    #[test]
    fn date_header_is_used_when_amz_date_is_absent() {
        let mut headers = HeaderMap::new();
        for (name, value) in KMS_HEADERS {
            headers.insert(name, HeaderValue::from_static(value));
        }
        set_header(&mut headers, "date", "Tue, 14 Nov 2023 22:13:20 GMT");
        let signed = ["content-type", "date", "host", "x-amz-target"];
        self_signed(&mut headers, &signed, "20231114T221320Z");
        let verified = verify_kms(&headers, KMS_BODY, SIGNED_AT).unwrap();
        assert_eq!(verified.signing_time, SIGNED_AT);

        // The Date header must then be signed itself.
        let mut unsigned_date = headers.clone();
        self_signed(
            &mut unsigned_date,
            &["content-type", "host", "x-amz-target"],
            "20231114T221320Z",
        );
        let err = verify_kms(&unsigned_date, KMS_BODY, SIGNED_AT).unwrap_err();
        assert!(matches!(err, SigV4Error::IncompleteSignature(_)), "{err:?}");

        // A malformed Date is a RequestExpired, like a malformed X-Amz-Date.
        let mut bad_date = headers.clone();
        set_header(&mut bad_date, "date", "Tuesday, 14-Nov-23 22:13:20 GMT");
        let err = verify_kms(&bad_date, KMS_BODY, SIGNED_AT).unwrap_err();
        assert!(matches!(err, SigV4Error::RequestExpired(_)), "{err:?}");
    }

    #[test]
    fn http_date_parsing() {
        assert_eq!(
            parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 UTC"), None);
        assert_eq!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_http_date(b"Sun Nov  6 08:49:37 1994"), None);
    }
}
