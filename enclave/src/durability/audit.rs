//! The tamper-evident audit log: CloudTrail-shaped records, hash-chained, with checkpoints
//! signed by a P-384 key made inside the enclave at boot and bound into an attestation
//! document that the log carries.
//!
//! Every line of `audit.jsonl` is one JSON object with a `type`:
//! - `attestation`: `{"type","publicKey","document"}` — the checkpoint key of this enclave
//!   boot (SubjectPublicKeyInfo DER, base64) and an attestation document whose `public_key` is
//!   exactly that key. Written before the first checkpoint signed with it.
//! - `record`: `{"type","seq","prev","hash","record"}` — `hash` = SHA-256(`"ekms/v1/audit"` ‖
//!   `prev` ‖ seq (u64 big-endian) ‖ canonical JSON of `record`), hex; `prev` is the previous
//!   record's hash (64 zeros before the first).
//! - `checkpoint`: `{"type","seq","hash","time","signature"}` — ECDSA P-384 / SHA-384 (ASN.1
//!   DER, base64) over `"ekms/v1/audit-checkpoint"` ‖ seq ‖ hash bytes.
//!
//! Canonical JSON: object keys sorted by their UTF-8 bytes, no whitespace, serde_json's
//! number and string forms. The chain head (seq, hash) is sealed with the domain key in the
//! same commit as the lines, so it continues across restarts.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P384_SHA384_ASN1_SIGNING};
use serde_json::{json, Map, Value};

use crate::error::KmsError;

pub use ekms_shared::audit_format::checkpoint_message;
use ekms_shared::audit_format::{record_hash_of_canonical, write_canonical_json};

/// One audit record as canonical JSON (keys sorted, compact): the bytes its hash covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record(Vec<u8>);

impl Record {
    /// The record of any JSON value (canonicalized).
    pub fn from_value(value: &Value) -> Self {
        let mut out = Vec::with_capacity(1024);
        write_canonical_json(value, &mut out);
        Record(out)
    }

    /// The canonical bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The chain's position: the last record's sequence number and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Number of records so far (the last one's seq).
    pub seq: u64,
    /// The last record's hash (zeros before the first).
    pub hash: [u8; 32],
}

impl Head {
    /// An empty chain.
    pub const GENESIS: Head = Head {
        seq: 0,
        hash: [0; 32],
    };
}

/// Appends records and signs checkpoints. Owned by the committer: one writer, in commit order.
pub struct AuditChain {
    head: Head,
    key: EcdsaKeyPair,
    public_spki: Vec<u8>,
    attestation: Option<Vec<u8>>,
    document: Vec<u8>,
    rng: SystemRandom,
    /// The member this chain belongs to, in every line, when several enclaves share the store
    /// ([`AuditChain::for_member`]).
    member: Option<String>,
}

impl std::fmt::Debug for AuditChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditChain")
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

/// The SubjectPublicKeyInfo DER of an uncompressed P-384 point.
fn spki_of(point: &[u8]) -> Result<Vec<u8>, KmsError> {
    use p384::pkcs8::EncodePublicKey as _;
    let key =
        p384::PublicKey::from_sec1_bytes(point).map_err(|_| KmsError::Internal("audit key"))?;
    key.to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .map_err(|_| KmsError::Internal("audit key"))
}

impl AuditChain {
    /// A chain continuing from `head`, with a fresh checkpoint key attested by `attester`.
    ///
    /// # Errors
    /// `KMSInternalException` if key generation or attestation fails.
    pub fn start(head: Head, attester: &dyn crate::env::Attester) -> Result<Self, KmsError> {
        // ring generates and signs with its own SecureRandom only (a sealed trait): the OS
        // source, which inside the enclave the NSM seeds. The key never leaves this chain.
        #[allow(clippy::disallowed_methods)]
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, &rng)
            .map_err(|_| KmsError::Internal("audit key generation"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| KmsError::Internal("audit key"))?;
        let public_spki = spki_of(key.public_key().as_ref())?;
        let document = attester
            .attest(Some(b"ekms/v1/audit-key"), None, Some(&public_spki))
            .map_err(|_| KmsError::Internal("audit key attestation"))?;
        Ok(AuditChain {
            head,
            key,
            public_spki,
            attestation: Some(document.clone()),
            document,
            rng,
            member: None,
        })
    }

    /// This chain as the chain of one member of several sharing the store: every line it
    /// writes carries `"member": member` (a verifier splits the log into members' chains by
    /// it; the hash chain, not the field, is what binds a record to its chain).
    #[must_use]
    pub fn for_member(mut self, member: String) -> Self {
        self.member = Some(member);
        self
    }

    /// The member this chain belongs to, if the store is shared.
    pub fn member(&self) -> Option<&str> {
        self.member.as_deref()
    }

    /// The current head.
    pub fn head(&self) -> Head {
        self.head
    }

    /// The checkpoint key (SubjectPublicKeyInfo DER).
    pub fn public_key(&self) -> &[u8] {
        &self.public_spki
    }

    /// Appends one record; returns its line (without the newline).
    ///
    /// The line is itself canonical JSON (`hash`, `prev`, `record`, `seq`, `type`), written
    /// around the record's canonical bytes so the record is serialized once.
    pub fn append(&mut self, record: &Record) -> Vec<u8> {
        const HASH: &[u8] = br#"{"hash":""#;
        const MEMBER: &[u8] = br#"","member":""#;
        const PREV: &[u8] = br#"","prev":""#;
        const RECORD: &[u8] = br#"","record":"#;
        const SEQ: &[u8] = br#","seq":"#;
        const TYPE: &[u8] = br#","type":"record"}"#;
        let seq = self.head.seq + 1;
        let hash = record_hash_of_canonical(&self.head.hash, seq, &record.0);
        let mut line = Vec::with_capacity(record.0.len() + 256);
        line.extend_from_slice(HASH);
        crate::hexfmt::push_hex(&hash, &mut line);
        if let Some(member) = &self.member {
            // A member id is hex (see `for_member`'s caller): no escaping needed.
            line.extend_from_slice(MEMBER);
            line.extend_from_slice(member.as_bytes());
        }
        line.extend_from_slice(PREV);
        crate::hexfmt::push_hex(&self.head.hash, &mut line);
        line.extend_from_slice(RECORD);
        line.extend_from_slice(&record.0);
        line.extend_from_slice(SEQ);
        line.extend_from_slice(seq.to_string().as_bytes());
        line.extend_from_slice(TYPE);
        self.head = Head { seq, hash };
        line
    }

    /// The lines that end a commit: the attestation of this boot's key (once), then a signed
    /// checkpoint of the head.
    ///
    /// # Errors
    /// `KMSInternalException` if signing fails.
    pub fn checkpoint(&mut self, now_millis: i64) -> Result<Vec<Vec<u8>>, KmsError> {
        let mut lines = Vec::with_capacity(2);
        let member = |mut line: Value| {
            if let (Some(member), Some(fields)) = (&self.member, line.as_object_mut()) {
                fields.insert("member".to_owned(), Value::String(member.clone()));
            }
            serde_json::to_vec(&line).unwrap_or_default()
        };
        if let Some(document) = &self.attestation {
            lines.push(member(json!({
                "type": "attestation",
                "publicKey": B64.encode(&self.public_spki),
                "document": B64.encode(document),
            })));
        }
        let signature = self.sign(self.head)?;
        lines.push(member(json!({
            "type": "checkpoint",
            "seq": self.head.seq,
            "hash": hex::encode(self.head.hash),
            "time": iso8601(now_millis),
            "signature": B64.encode(signature),
        })));
        self.attestation = None;
        Ok(lines)
    }

    /// Signs `head` with this boot's checkpoint key.
    ///
    /// # Errors
    /// `KMSInternalException` if signing fails.
    pub fn sign_head(&self, nonce: &[u8], head: Head) -> Result<Vec<u8>, KmsError> {
        self.key
            .sign(
                &self.rng,
                &ekms_shared::audit_format::head_message(nonce, head.seq, &head.hash),
            )
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| KmsError::Internal("audit head signature"))
    }

    /// The attestation document binding this boot's checkpoint key.
    pub fn attestation_document(&self) -> &[u8] {
        &self.document
    }

    /// Signs a checkpoint of `head` with this boot's checkpoint key.
    ///
    /// # Errors
    /// `KMSInternalException` if signing fails.
    pub fn sign(&self, head: Head) -> Result<Vec<u8>, KmsError> {
        self.key
            .sign(&self.rng, &checkpoint_message(head.seq, &head.hash))
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| KmsError::Internal("audit checkpoint signature"))
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as CloudTrail writes `eventTime`.
pub fn iso8601(millis: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(millis.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Request fields that may appear in `requestParameters` (camelCase, as CloudTrail). Anything
/// else — plaintexts, ciphertexts, messages, MACs, signatures, key material, import tokens,
/// grant tokens — is left out.
const LOGGED_FIELDS: &[&str] = &[
    "KeyId",
    "AliasName",
    "TargetKeyId",
    "Description",
    "KeyUsage",
    "KeySpec",
    "CustomerMasterKeySpec",
    "KeyPairSpec",
    "Origin",
    "NumberOfBytes",
    "EncryptionContext",
    "SourceEncryptionContext",
    "DestinationEncryptionContext",
    "EncryptionAlgorithm",
    "SourceEncryptionAlgorithm",
    "DestinationEncryptionAlgorithm",
    "SourceKeyId",
    "DestinationKeyId",
    "SigningAlgorithm",
    "MessageType",
    "MacAlgorithm",
    "KeyAgreementAlgorithm",
    "PendingWindowInDays",
    "RotationPeriodInDays",
    "Limit",
    "Marker",
    "TagKeys",
    "Tags",
    "Policy",
    "PolicyName",
    "BypassPolicyLockoutSafetyCheck",
    "GranteePrincipal",
    "RetiringPrincipal",
    "Operations",
    "Constraints",
    "Name",
    "GrantId",
    "WrappingAlgorithm",
    "WrappingKeySpec",
    "ValidTo",
    "ExpirationModel",
    "DryRun",
    "MultiRegion",
    // Principal administration (Ekms.*): names and key ids, never a SecretAccessKey.
    "UserName",
    "AccessKeyId",
];

fn camel(field: &str) -> String {
    let mut chars = field.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The logged subset of a request body (`null` for a body that is not a JSON object).
///
/// Fields not logged (a 4 KiB plaintext, say) are skipped by the parser, never built.
pub fn request_parameters(body: &[u8]) -> Value {
    match serde_json::from_slice::<Logged>(body) {
        Ok(Logged(map)) => Value::Object(map),
        Err(_) => Value::Null,
    }
}

/// [`request_parameters`] of a body, from its members when it split into them.
pub fn request_parameters_split(body: &[u8], members: Option<&crate::json::Members<'_>>) -> Value {
    let Some(members) = members else {
        return request_parameters(body);
    };
    let mut out = Map::new();
    for (name, raw) in members.iter() {
        if LOGGED_FIELDS.contains(&name) {
            // The raw text is one whole JSON value: it parses.
            let value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
            out.insert(camel(name), value);
        }
    }
    Value::Object(out)
}

/// `parameters` kept to at most `max` bytes of JSON: members in order while they fit, each
/// that does not replaced by a note of its size; anything but an object becomes null.
pub fn capped(parameters: Value, max: usize) -> Value {
    let Value::Object(members) = parameters else {
        return Value::Null;
    };
    let mut out = Map::new();
    let mut used = 2; // {}
    for (name, value) in members {
        let size = serde_json::to_string(&value).map_or(usize::MAX, |s| s.len());
        let kept = if name.len() + size + 4 <= max.saturating_sub(used) {
            value
        } else {
            Value::String(format!("<{size} bytes, not recorded>"))
        };
        let cost = name.len() + 4 + serde_json::to_string(&kept).map_or(0, |s| s.len());
        if used + cost > max {
            break;
        }
        used += cost;
        out.insert(name, kept);
    }
    Value::Object(out)
}

/// A request body's [`LOGGED_FIELDS`], camelCased.
struct Logged(Map<String, Value>);

impl<'de> serde::Deserialize<'de> for Logged {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Logged;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<Logged, A::Error> {
                let mut out = Map::new();
                while let Some(field) = access.next_key::<std::borrow::Cow<'de, str>>()? {
                    if LOGGED_FIELDS.contains(&field.as_ref()) {
                        out.insert(camel(&field), access.next_value::<Value>()?);
                    } else {
                        access.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(Logged(out))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// Who made a request, as far as the enclave knows.
#[derive(Debug, Clone)]
pub enum Identity {
    /// Authenticated.
    User {
        /// `arn:aws:iam::<account>:user/<name>`.
        arn: String,
        /// The access key it signed with.
        access_key_id: String,
    },
    /// Not authenticated (a refused signature): the access key the request claimed, if any.
    Unknown {
        /// The claimed access key id.
        access_key_id: Option<String>,
    },
}

/// One CloudTrail-shaped record.
pub struct Event<'a> {
    /// Request id.
    pub request_id: &'a str,
    /// The record's own id (`eventID`).
    pub event_id: uuid::Uuid,
    /// Operation name (`Encrypt`).
    pub event_name: &'a str,
    /// When.
    pub time_millis: i64,
    /// Who.
    pub identity: &'a Identity,
    /// Account and region.
    pub config: &'a crate::config::Config,
    /// `requestParameters`: the request body's logged fields ([`request_parameters`]).
    pub request_parameters: Value,
    /// `responseElements`, already free of secrets (`Value::Null` for crypto operations).
    pub response: Value,
    /// The error, if the request failed.
    pub error: Option<&'a KmsError>,
    /// Key ARNs the request used.
    pub resources: Vec<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<&'a str>,
}

/// An event's record as serialized: fields in canonical order (sorted by their UTF-8 bytes, at
/// every level), so serde_json writes canonical JSON directly. `requestParameters` and
/// `responseElements` are JSON values whose maps serde_json keeps sorted; the tests check the
/// result against [`canonical_json`].
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct RecordOut<'a> {
    aws_region: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<String>,
    event_category: &'static str,
    #[serde(rename = "eventID")]
    event_id: String,
    event_name: &'a str,
    event_source: &'static str,
    event_time: String,
    event_type: &'static str,
    event_version: &'static str,
    management_event: bool,
    read_only: bool,
    recipient_account_id: &'a str,
    #[serde(rename = "requestID")]
    request_id: &'a str,
    request_parameters: &'a Value,
    resources: Vec<ResourceOut<'a>>,
    response_elements: &'a Value,
    user_agent: Option<&'a str>,
    user_identity: IdentityOut<'a>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceOut<'a> {
    #[serde(rename = "ARN")]
    arn: &'a str,
    account_id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(serde::Serialize)]
#[serde(untagged, rename_all_fields = "camelCase")]
enum IdentityOut<'a> {
    User {
        access_key_id: &'a str,
        account_id: &'a str,
        arn: &'a str,
        principal_id: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
        user_name: &'a str,
    },
    Unknown {
        access_key_id: Option<&'a str>,
        #[serde(rename = "type")]
        kind: &'static str,
    },
}

impl Event<'_> {
    /// The record, as canonical JSON.
    pub fn record(&self) -> Record {
        let user_identity = match self.identity {
            Identity::User { arn, access_key_id } => IdentityOut::User {
                access_key_id,
                account_id: &self.config.account,
                arn,
                principal_id: access_key_id,
                kind: "IAMUser",
                user_name: arn.rsplit('/').next().unwrap_or_default(),
            },
            Identity::Unknown { access_key_id } => IdentityOut::Unknown {
                access_key_id: access_key_id.as_deref(),
                kind: "Unknown",
            },
        };
        // STS GetCallerIdentity (served on the same endpoint) is recorded as CloudTrail
        // records it: from sts.amazonaws.com, with STS's error codes.
        let sts = self.event_name == "GetCallerIdentity";
        let read_only = matches!(
            self.event_name,
            "GetCallerIdentity"
                | "DescribeKey"
                | "ListKeys"
                | "ListAliases"
                | "ListResourceTags"
                | "GetPublicKey"
                | "GetKeyPolicy"
                | "ListKeyPolicies"
                | "GetKeyRotationStatus"
                | "ListKeyRotations"
                | "ListGrants"
                | "ListRetirableGrants"
                | "ListPrincipals"
        );
        let out = RecordOut {
            aws_region: &self.config.region,
            error_code: self
                .error
                .map(|e| if sts { e.sts_code() } else { e.aws_code() }),
            error_message: self
                .error
                .map(|e| if sts { e.sts_message() } else { e.to_string() }),
            event_category: "Management",
            event_id: self.event_id.to_string(),
            event_name: self.event_name,
            event_source: if sts {
                "sts.amazonaws.com"
            } else {
                "kms.amazonaws.com"
            },
            event_time: iso8601(self.time_millis),
            event_type: "AwsApiCall",
            event_version: "1.08",
            management_event: true,
            read_only,
            recipient_account_id: &self.config.account,
            request_id: self.request_id,
            request_parameters: &self.request_parameters,
            resources: self
                .resources
                .iter()
                .map(|arn| ResourceOut {
                    arn,
                    account_id: &self.config.account,
                    kind: "AWS::KMS::Key",
                })
                .collect(),
            response_elements: &self.response,
            user_agent: self.user_agent,
            user_identity,
        };
        // Sized once for a typical record (about 900 bytes for Encrypt) instead of grown from
        // serde_json's 128 bytes by doubling. Serializing strings, numbers and JSON values
        // into a Vec cannot fail.
        let mut bytes = Vec::with_capacity(1536);
        if serde_json::to_writer(&mut bytes, &out).is_err() {
            bytes.clear();
        }
        Record(bytes)
    }
}

/// A chain from genesis whose checkpoint key a fresh mock CA attests, for tests.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::disallowed_methods)]
pub(crate) fn test_chain() -> AuditChain {
    use ekms_shared::attestation::insecure;
    let attester = crate::custody::attest::insecure::MockAttester(
        insecure::MockAttester::new(
            insecure::MockCa::generate(std::time::SystemTime::now()).unwrap(),
            insecure::pcrs_from_binary(b"ekms test enclave"),
        )
        .unwrap(),
    );
    AuditChain::start(Head::GENESIS, &attester).unwrap()
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests make mock CAs at the real time
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ekms_shared::audit_format::{canonical_json, record_hash};

    #[test]
    fn canonical_json_sorts_keys_and_is_compact() {
        let v: Value =
            serde_json::from_str(r#"{"b": [1, {"d": 2, "c": "x"}], "a": null}"#).unwrap();
        assert_eq!(canonical_json(&v), br#"{"a":null,"b":[1,{"c":"x","d":2}]}"#);
    }

    #[test]
    fn secrets_never_reach_request_parameters() {
        let body = br#"{"KeyId":"k","Plaintext":"c2VjcmV0","CiphertextBlob":"AA==","Message":"bQ==","GrantTokens":["t"],"EncryptionContext":{"a":"b"}}"#;
        let p = request_parameters(body);
        assert_eq!(p, json!({"keyId": "k", "encryptionContext": {"a": "b"}}));
    }

    #[test]
    fn request_parameters_of_odd_bodies() {
        assert_eq!(request_parameters(b"not json"), Value::Null);
        assert_eq!(request_parameters(b"[1]"), Value::Null);
        assert_eq!(request_parameters(b"{}"), json!({}));
        // Escaped names are names too; a repeated field keeps its last value, as serde_json.
        assert_eq!(
            request_parameters(br#"{"Key\u0049d":"a","KeyId":"b","Plaintext":{"x":[1]}}"#),
            json!({"keyId": "b"})
        );
        assert_eq!(request_parameters(br#"{"KeyId":"a""#), Value::Null);
    }

    /// A refused request's parameters are kept to the cap: small members whole, in order;
    /// a large one as a note of its size; never more than the cap in all.
    #[test]
    fn capped_parameters_stay_under_the_cap() {
        let big = "x".repeat(60_000);
        let kept = capped(
            json!({"keyId": "k", "description": big, "dryRun": true}),
            1024,
        );
        assert_eq!(
            kept,
            json!({"keyId": "k", "description": "<60002 bytes, not recorded>", "dryRun": true})
        );
        let many: Map<String, Value> = (0..500)
            .map(|i| (format!("m{i}"), json!("0123456789")))
            .collect();
        let kept = capped(Value::Object(many), 1024);
        assert!(serde_json::to_string(&kept).unwrap().len() <= 1024);
        assert!(kept.as_object().unwrap().len() > 10);
        assert_eq!(capped(json!([1, 2]), 1024), Value::Null);
    }

    /// Read from the body's members, the logged fields are what a read of the whole body gives.
    #[test]
    fn request_parameters_from_members_match_the_whole_body() {
        let bodies: [&[u8]; 9] = [
            br#"{"KeyId":"k","Plaintext":"c2VjcmV0","EncryptionContext":{"a":"b","c":["d",1.5]}}"#,
            br#"{"Key\u0049d":"a","KeyId":"b","Plaintext":{"x":[1]},"GrantTokens":["t"]}"#,
            br#"{"NumberOfBytes":32,"KeySpec":null,"DryRun":true,"Tags":[{"TagKey":"a"}]}"#,
            br#"{}"#,
            br#"[1]"#,
            br#"{"KeyId":"a""#,
            br#"{"KeyId":"a"} x"#,
            b"{\"KeyId\":\"a\",\"Plaintext\":\"\xff\"}",
            b"not json",
        ];
        for body in bodies {
            let members = crate::json::Members::parse(body);
            assert_eq!(
                request_parameters_split(body, members.as_ref()),
                request_parameters(body),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// A record line is the canonical JSON of the whole line, and its hash is the record's.
    #[test]
    fn record_lines_are_canonical_and_chained() {
        let mut chain = test_chain();
        let record = json!({"b": "\u{1}é", "a": [1, {"z": null, "y": 2.5}]});
        let first = chain.append(&Record::from_value(&record));
        let second = chain.append(&Record::from_value(&json!({})));
        let first: Value = serde_json::from_slice(&first).unwrap();
        let second_line = second.clone();
        let second: Value = serde_json::from_slice(&second).unwrap();
        assert_eq!(canonical_json(&second), second_line);
        let h1 = record_hash(&[0; 32], 1, &record);
        assert_eq!(first["hash"], hex::encode(h1));
        assert_eq!(first["prev"], hex::encode([0u8; 32]));
        assert_eq!(first["record"], record);
        assert_eq!(first["seq"], 1);
        assert_eq!(first["type"], "record");
        assert_eq!(second["prev"], hex::encode(h1));
        assert_eq!(second["hash"], hex::encode(record_hash(&h1, 2, &json!({}))));
        assert_eq!(chain.head().seq, 2);
    }

    /// An event's record is already canonical JSON, with CloudTrail's fields.
    #[test]
    fn event_records_are_canonical() {
        let config = crate::config::Config::default();
        let user = Identity::User {
            arn: "arn:aws:iam::111122223333:user/dev".to_owned(),
            access_key_id: "AKIAEXAMPLE".to_owned(),
        };
        let error = KmsError::NotFound("no such key \"x\"".to_owned());
        let body = br#"{"KeyId":"k","Plaintext":"AAAA","EncryptionContext":{"z":"1","a":"\u00e9"},"NumberOfBytes":32}"#;
        let response = json!({"KeyMetadata": {"KeyId": "k", "Enabled": true, "Arn": "a"}});
        let resources = vec!["arn:aws:kms:us-east-1:111122223333:key/k".to_owned()];
        let event = Event {
            event_id: uuid::Uuid::new_v4(),
            request_id: "req-1",
            event_name: "Encrypt",
            time_millis: 1_700_000_000_123,
            identity: &user,
            config: &config,
            request_parameters: request_parameters(body),
            response: response.clone(),
            error: Some(&error),
            resources: resources.clone(),
            user_agent: Some("aws-cli/2"),
        };
        let record = event.record();
        let value: Value = serde_json::from_slice(record.as_bytes()).unwrap();
        assert_eq!(canonical_json(&value), record.as_bytes());
        assert_eq!(value["eventName"], "Encrypt");
        assert_eq!(value["eventTime"], "2023-11-14T22:13:20Z");
        assert_eq!(value["errorCode"], "NotFoundException");
        assert_eq!(
            value["requestParameters"],
            json!({"keyId": "k", "encryptionContext": {"z": "1", "a": "é"}, "numberOfBytes": 32})
        );
        assert_eq!(value["responseElements"], response);
        assert_eq!(value["resources"][0]["ARN"], resources[0].as_str());
        assert_eq!(value["userIdentity"]["userName"], "dev");
        assert_eq!(value["userIdentity"]["type"], "IAMUser");
        assert_eq!(value["userAgent"], "aws-cli/2");
        assert!(uuid::Uuid::parse_str(value["eventID"].as_str().unwrap()).is_ok());

        let unknown = Identity::Unknown {
            access_key_id: None,
        };
        let record = Event {
            event_id: uuid::Uuid::new_v4(),
            identity: &unknown,
            error: None,
            user_agent: None,
            request_parameters: request_parameters(b"not json"),
            response: Value::Null,
            ..event
        }
        .record();
        let value: Value = serde_json::from_slice(record.as_bytes()).unwrap();
        assert_eq!(canonical_json(&value), record.as_bytes());
        assert_eq!(
            value["userIdentity"],
            json!({"type": "Unknown", "accessKeyId": null})
        );
        assert!(value.get("errorCode").is_none());
        assert_eq!(value["userAgent"], Value::Null);
        assert_eq!(value["requestParameters"], Value::Null);
    }

    #[test]
    fn chained_hashes_link() {
        let a = record_hash(&[0; 32], 1, &json!({"x": 1}));
        let b = record_hash(&a, 2, &json!({"x": 2}));
        assert_ne!(a, b);
        assert_ne!(record_hash(&[0; 32], 1, &json!({"x": 2})), a);
        assert_ne!(record_hash(&[0; 32], 2, &json!({"x": 1})), a);
    }
}
