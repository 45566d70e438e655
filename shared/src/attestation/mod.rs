//! Nitro attestation documents: verification, and the insecure mock attester.
//!
//! [`verify`] turns bytes into a [`VerifiedAttestation`] or says which step refused them.
//! It trusts only the [`TrustAnchor`] and the [`Policy`] it is given, and the time it is
//! told: it reads no clock and no environment. Every decoder runs on input capped at
//! [`MAX_DOCUMENT_LEN`].
//!
//! Specifications: COSE_Sign1 and ES384 per RFC 9052 / RFC 9053; the document format and
//! its validation per the AWS Nitro Enclaves attestation process
//! (`aws/aws-nitro-enclaves-nsm-api`, `docs/attestation_process.md`); X.509 per RFC 5280.
//!
//! [`insecure`] holds a mock attester for machines without a Nitro Security Module. Its
//! documents verify only against the mock's own root, which a caller must pass explicitly.

mod anchor;
mod chain;
mod cose;
mod document;
mod error;
pub mod insecure;
mod policy;
mod verified;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use anchor::TrustAnchor;
pub use document::{MAX_PCRS, MAX_USER_FIELD_LEN};
pub use error::{
    AnchorError, AttestationError, CertPosition, ChainError, ChainFailure, FreshnessError,
    PcrError, PcrSetError, StructureError,
};
pub use policy::{
    pcr_from_arg, pcr_set_from_json, pcr_set_to_json, PcrSet, Policy, MAX_CLOCK_SKEW,
};
pub use verified::VerifiedAttestation;

/// Largest document accepted, checked before any decoding. Real documents are 4.4–7.6 KiB
/// (7.5 KiB with 1024-byte `public_key`, `user_data` and `nonce`).
pub const MAX_DOCUMENT_LEN: usize = 16 * 1024;

/// Verifies a Nitro attestation document at time `now`.
///
/// Steps, in order, each with its own error variant:
/// 1. size cap ([`AttestationError::TooLarge`]);
/// 2. COSE_Sign1 envelope with an ES384 protected header, then the Nitro payload's fields
///    ([`AttestationError::Structure`]);
/// 3. certificate chain leaf → `cabundle` (reversed) → `anchor`, each certificate valid at
///    `now` ([`AttestationError::Chain`]);
/// 4. COSE signature with the leaf's key ([`AttestationError::Signature`]);
/// 5. debug mode ([`AttestationError::DebugMode`]), PCR allow-list
///    ([`AttestationError::Pcrs`]), nonce ([`AttestationError::Nonce`]) and age
///    ([`AttestationError::Freshness`]) per `policy`.
///
/// The chain is checked before the signature so that a tampered certificate is reported as
/// a chain failure, and the signature is only ever checked with a key the chain vouched for.
///
/// # Errors
/// The [`AttestationError`] of the first step that fails.
pub fn verify(
    doc: &[u8],
    anchor: &TrustAnchor,
    now: SystemTime,
    policy: &Policy,
) -> Result<VerifiedAttestation, AttestationError> {
    let (envelope, document) = decode(doc)?;

    // attestation_process.md §3.2.3: the chain, at the injected time.
    let leaf_key = chain::verify_chain(
        &document.certificate,
        &document.cabundle,
        anchor,
        unix_seconds(now),
    )
    .map_err(AttestationError::Chain)?;

    // RFC 9052 §4.4: the signature over the Sig_structure, with the leaf's key.
    envelope
        .verify(&leaf_key)
        .map_err(|_| AttestationError::Signature)?;

    policy.check_debug(&document.pcrs)?;
    policy
        .check_pcrs(&document.pcrs)
        .map_err(AttestationError::Pcrs)?;
    policy.check_nonce(document.nonce.as_deref())?;
    policy
        .check_freshness(document.timestamp_ms, now)
        .map_err(AttestationError::Freshness)?;

    Ok(VerifiedAttestation::from_verified(document))
}

/// The `timestamp` a document claims, read without verifying anything but its structure.
/// Meant for choosing the time to verify an old document at (`ekms attestation verify --at
/// doc`): the result is attacker-controlled until [`verify`] succeeds.
///
/// # Errors
/// [`AttestationError::TooLarge`] or [`AttestationError::Structure`].
pub fn unverified_timestamp(doc: &[u8]) -> Result<SystemTime, AttestationError> {
    let (_, document) = decode(doc)?;
    Ok(UNIX_EPOCH + Duration::from_millis(document.timestamp_ms))
}

/// Steps 1 and 2: cap, then decode the envelope and the payload.
fn decode(doc: &[u8]) -> Result<(cose::CoseSign1, document::NitroDocument), AttestationError> {
    if doc.len() > MAX_DOCUMENT_LEN {
        return Err(AttestationError::TooLarge {
            len: doc.len(),
            max: MAX_DOCUMENT_LEN,
        });
    }
    let envelope = cose::decode(doc).map_err(AttestationError::Structure)?;
    let document = document::parse(&envelope.payload).map_err(AttestationError::Structure)?;
    Ok((envelope, document))
}

/// `now` as whole Unix seconds (negative before 1970), the resolution of X.509 times.
fn unix_seconds(now: SystemTime) -> i64 {
    match now.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            // Round towards the past, so a time just before notBefore is still before it.
            let secs = before.duration().as_secs();
            let secs = if before.duration().subsec_nanos() > 0 {
                secs.saturating_add(1)
            } else {
                secs
            };
            i64::try_from(secs).map_or(i64::MIN, |s| -s)
        }
    }
}
