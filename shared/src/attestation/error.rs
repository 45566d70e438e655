//! Why a document was refused: one variant per verification step.

use std::fmt;

/// A refused attestation document. Each variant names the step of [`super::verify`] that
/// failed; the steps run in the order the variants are listed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestationError {
    /// The input is larger than [`super::MAX_DOCUMENT_LEN`]; nothing was decoded.
    #[error("attestation document is {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// Length of the input.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The bytes are not a well-formed COSE_Sign1 carrying a well-formed Nitro document.
    #[error("malformed attestation document")]
    Structure(#[source] StructureError),
    /// The certificate chain from the leaf to the pinned root does not verify.
    #[error("attestation certificate chain refused")]
    Chain(#[source] ChainError),
    /// The COSE_Sign1 signature does not verify with the leaf certificate's key.
    #[error("COSE_Sign1 signature does not verify with the leaf certificate key")]
    Signature,
    /// PCR0 is all zero (the enclave runs in debug mode) and the policy does not allow it.
    #[error("enclave runs in debug mode (PCR0 is all zero) and the policy does not allow it")]
    DebugMode,
    /// The PCRs match none of the allowed sets.
    #[error("PCRs refused by the policy")]
    Pcrs(#[source] PcrError),
    /// The document carries no nonce, or another nonce than the expected one.
    #[error("nonce missing or different from the expected one")]
    Nonce,
    /// The document is older than the policy allows, or from the future.
    #[error("attestation document is not fresh")]
    Freshness(#[source] FreshnessError),
}

/// What is wrong with the COSE_Sign1 envelope or the Nitro payload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StructureError {
    /// Not decodable CBOR (or trailing bytes after the item).
    #[error("invalid CBOR")]
    Cbor(#[source] serde_cbor::Error),
    /// A CBOR tag other than 18 (COSE_Sign1) wraps the document.
    #[error("unexpected CBOR tag {0}, expected none or 18 (COSE_Sign1)")]
    UnexpectedTag(u8),
    /// The document is not a 4-element array.
    #[error("not a COSE_Sign1 array of 4 elements")]
    NotCoseSign1,
    /// The protected header is not a bstr holding a map.
    #[error("protected header is not a serialized map")]
    ProtectedHeader,
    /// The unprotected header is not a map.
    #[error("unprotected header is not a map")]
    UnprotectedHeader,
    /// The protected header names another algorithm than ES384 (-35), or none.
    #[error("algorithm {0:?} in the protected header, expected ES384 (-35)")]
    Algorithm(Option<i128>),
    /// The payload is not a bstr (detached payloads are refused).
    #[error("payload is not a byte string")]
    Payload,
    /// The signature is not a 96-byte raw r‖s bstr.
    #[error("signature is {0} bytes, expected 96 (raw r||s)")]
    SignatureLength(usize),
    /// The payload is not a map.
    #[error("payload is not a map")]
    NotAMap,
    /// A required payload field is absent.
    #[error("field `{0}` missing")]
    MissingField(&'static str),
    /// A payload field has the wrong CBOR type.
    #[error("field `{0}` has the wrong type")]
    WrongType(&'static str),
    /// A payload field is empty or longer than allowed.
    #[error("field `{field}` is {len} bytes or entries, allowed {min}..={max}")]
    FieldSize {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The lower bound.
        min: usize,
        /// The upper bound.
        max: usize,
    },
    /// `digest` is not "SHA384".
    #[error("digest `{0}`, expected SHA384")]
    Digest(String),
    /// A PCR index is outside 0..32.
    #[error("PCR index {0} out of range 0..32")]
    PcrIndex(i128),
    /// A PCR value is not 32, 48 or 64 bytes.
    #[error("PCR{index} is {len} bytes, expected 32, 48 or 64")]
    PcrLength {
        /// PCR index.
        index: u8,
        /// Its length.
        len: usize,
    },
    /// PCR0, needed to tell debug mode, is absent.
    #[error("PCR0 missing")]
    Pcr0Missing,
}

/// Where in the chain a certificate sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertPosition {
    /// The pinned root of the trust anchor.
    Root,
    /// `cabundle[i]` of the document (0 is the root's copy).
    CaBundle(usize),
    /// The document's `certificate` field.
    Leaf,
}

impl fmt::Display for CertPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertPosition::Root => f.write_str("pinned root"),
            CertPosition::CaBundle(i) => write!(f, "cabundle[{i}]"),
            CertPosition::Leaf => f.write_str("leaf certificate"),
        }
    }
}

/// A refused certificate chain: which certificate, and why.
#[derive(Debug, thiserror::Error)]
#[error("{position} ({subject})")]
pub struct ChainError {
    /// Which certificate.
    pub position: CertPosition,
    /// Its subject, for people reading the error ("?" when it did not parse).
    pub subject: String,
    /// Why.
    #[source]
    pub reason: ChainFailure,
}

/// Why a certificate was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainFailure {
    /// Not DER X.509.
    #[error("malformed certificate")]
    Malformed(#[source] x509_parser::error::X509Error),
    /// Bytes follow the certificate's DER.
    #[error("trailing bytes after the certificate")]
    TrailingBytes,
    /// `cabundle` is empty or longer than allowed.
    #[error("cabundle has {0} certificates, allowed 1..={max}", max = super::chain::MAX_CABUNDLE_LEN)]
    BundleLength(usize),
    /// `cabundle[0]` is not the pinned root.
    #[error("not the pinned root")]
    WrongRoot,
    /// `now` is after notAfter.
    #[error("expired: verification time {} is after notAfter {}", UnixTime(*.now), UnixTime(*.not_after))]
    Expired {
        /// notAfter, unix seconds.
        not_after: i64,
        /// The verification time, unix seconds.
        now: i64,
    },
    /// `now` is before notBefore.
    #[error("not yet valid: verification time {} is before notBefore {}", UnixTime(*.now), UnixTime(*.not_before))]
    NotYetValid {
        /// notBefore, unix seconds.
        not_before: i64,
        /// The verification time, unix seconds.
        now: i64,
    },
    /// The issuer name is not the subject name of the certificate above it.
    #[error("issuer name differs from the subject of the certificate above it")]
    IssuerMismatch,
    /// The signature algorithm is not ecdsa-with-SHA384 or ecdsa-with-SHA256, or the
    /// outer and TBS algorithm identifiers differ.
    #[error("unsupported signature algorithm {0}")]
    SignatureAlgorithm(String),
    /// The issuer's (or, for the leaf, the certificate's own) key is not a P-384 EC key.
    #[error("public key is not an EC P-384 key")]
    KeyType,
    /// The signature does not verify with the issuer's key.
    #[error("signature does not verify with the issuer's key")]
    BadSignature,
    /// A CA certificate lacks basicConstraints CA=true.
    #[error("not a CA (basicConstraints CA=true missing)")]
    NotACa,
    /// A CA certificate lacks the keyCertSign key usage.
    #[error("keyUsage lacks keyCertSign")]
    NoKeyCertSign,
    /// More CA certificates follow this one than its pathLenConstraint allows.
    #[error("pathLenConstraint {allowed} exceeded: {below} CA certificates below")]
    PathLength {
        /// The constraint.
        allowed: u32,
        /// How many CA certificates follow in the chain.
        below: usize,
    },
    /// The leaf is a CA or lacks the digitalSignature key usage.
    #[error("leaf is a CA or its keyUsage lacks digitalSignature")]
    LeafUsage,
    /// A critical extension this verifier does not process.
    #[error("unhandled critical extension {0}")]
    CriticalExtension(String),
}

/// Unix seconds, displayed as RFC 3339 (or as the number if out of range).
struct UnixTime(i64);

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let formatted = time::OffsetDateTime::from_unix_timestamp(self.0)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            });
        match formatted {
            Some(text) => f.write_str(&text),
            None => write!(f, "{} (unix seconds)", self.0),
        }
    }
}

/// Why the PCRs were refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PcrError {
    /// No allowed set matches; the first differing PCR of each set is listed.
    #[error("no allowed PCR set matches (first mismatch per set: {})", list(.mismatches))]
    NoMatch {
        /// For each allowed set, in order, the first PCR index that differs or is absent.
        mismatches: Vec<u8>,
    },
}

fn list(indices: &[u8]) -> String {
    indices
        .iter()
        .map(|i| format!("PCR{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why the document is not fresh.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FreshnessError {
    /// Older than `max_age`.
    #[error("document is {age_ms} ms old, allowed {max_ms} ms")]
    Stale {
        /// Age at the verification time.
        age_ms: u128,
        /// The policy's maximum.
        max_ms: u128,
    },
    /// The document's timestamp is later than the verification time (beyond the allowed
    /// clock skew).
    #[error("document timestamp is {ahead_ms} ms in the future")]
    FromTheFuture {
        /// How far ahead.
        ahead_ms: u128,
    },
}

/// A trust anchor that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnchorError {
    /// Not PEM.
    #[error("not PEM")]
    Pem(#[source] x509_parser::error::PEMError),
    /// A PEM block other than `CERTIFICATE`.
    #[error("PEM label `{0}`, expected CERTIFICATE")]
    Label(String),
    /// Text other than whitespace follows the PEM block (for example a second certificate).
    #[error("text after the PEM certificate")]
    TrailingData,
    /// Not a DER X.509 certificate (or bytes follow it).
    #[error("not an X.509 certificate")]
    Certificate(#[source] ChainFailure),
}

/// A PCR set (`pcrs.json` or `--pcr N=HEX`) that cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PcrSetError {
    /// Not JSON.
    #[error("invalid JSON")]
    Json(#[source] serde_json::Error),
    /// Not an object of `PCRn` keys (optionally under "Measurements").
    #[error("expected an object {{\"PCR0\": \"hex\", ...}}")]
    NotAnObject,
    /// A key or argument that is not `PCRn` / `N=HEX` with n < 32, or a non-string value.
    #[error("`{0}` is not a PCR index 0..32 (or its value is not a hex string)")]
    Key(String),
    /// A value that is not hex.
    #[error("PCR{index} is not hex")]
    Hex {
        /// PCR index.
        index: u8,
        /// Decoder error.
        #[source]
        source: hex::FromHexError,
    },
    /// A value of another length than 32, 48 or 64 bytes.
    #[error("PCR{index} is {len} bytes, expected 32, 48 or 64")]
    Length {
        /// PCR index.
        index: u8,
        /// Its length.
        len: usize,
    },
    /// No PCR named.
    #[error("no PCR given")]
    Empty,
}
