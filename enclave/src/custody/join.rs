//! Attested join: a running member releases the domain key to a sealed enclave (a new or
//! restarted member), with no custodian, and only by mutual attestation.
//!
//! 1. The joiner's boot-key document (`Ekms.GetAttestation`: user data `ekms/v1/boot-key`, its
//!    boot key bound as `public_key`) goes to a running member (`Ekms.Join`).
//! 2. The member verifies it ([`release`]): it chains to a root this enclave trusts, it is at
//!    most [`MAX_DOCUMENT_AGE`] old, and its PCRs are the member's own (the same image: an
//!    enclave that may join receives every key). It seals the domain key and its last commit to
//!    the joiner's boot key ([`Purpose::Join`], the joiner's key as AAD), and attests the answer:
//!    its own document carries `SHA-256(envelope)` as nonce and [`ANSWER_USER_DATA`].
//! 3. The joiner ([`accept`], `Ekms.CompleteJoin`) verifies the member's document the same way
//!    (its PCRs are the joiner's own), checks that it binds this very envelope, opens it with
//!    its boot key, and checks the domain key against the deployment's commitment. It then loads
//!    the store as an unseal does, and refuses a store whose last commit is not the one the
//!    member named: the member is the joiner's witness of the latest state.
//!
//! Whoever carries the messages (the parents, `ekms join`, `ekms dev`) learns nothing: the key
//! travels sealed to a key that only the attested joiner holds.

use std::time::{Duration, SystemTime};

use ekms_shared::attestation::{self, Policy, TrustAnchor, VerifiedAttestation};
use ekms_shared::envelope::{self, Purpose};
use zeroize::Zeroizing;

use crate::durability::seal::DomainKey;
use crate::error::{KmsError, KmsResult};

/// User data of a boot-key document (`Ekms.GetAttestation`).
pub const BOOT_KEY_USER_DATA: &[u8] = b"ekms/v1/boot-key";

/// User data of a member's document attesting a join answer.
pub const ANSWER_USER_DATA: &[u8] = b"ekms/v1/join-answer";

/// Oldest a document in a join may be.
pub const MAX_DOCUMENT_AGE: Duration = Duration::from_secs(600);

/// What a member releases to a joiner.
#[derive(Debug)]
pub struct Released {
    /// The domain key and the last commit, sealed to the joiner's boot key.
    pub envelope: Vec<u8>,
    /// The member's document binding `SHA-256(envelope)`.
    pub document: Vec<u8>,
    /// The joiner's PCR0, hex (for the member's audit record).
    pub joiner_pcr0: String,
}

/// This enclave's own PCRs, as its attester reports them.
///
/// # Errors
/// `KMSInternalException` when the attester fails or its document does not verify.
pub fn own_pcrs(
    attester: &dyn crate::env::Attester,
    anchors: &[TrustAnchor],
    now: SystemTime,
) -> KmsResult<attestation::PcrSet> {
    let doc = attester.attest(None, None, None).map_err(|e| {
        tracing::warn!(error = %e, "attestation failed");
        KmsError::Internal("attestation failed")
    })?;
    let verified = verify_any(&doc, anchors, now, &Policy::accept_any_pcrs().allowing_debug())
        .map_err(|why| {
            tracing::error!(why, "this enclave's own attestation does not verify");
            KmsError::Internal("this enclave's own attestation does not verify")
        })?;
    Ok(verified.pcrs().clone())
}

/// The first anchor's verification of `doc` that succeeds, or the most telling refusal.
fn verify_any(
    doc: &[u8],
    anchors: &[TrustAnchor],
    now: SystemTime,
    policy: &Policy,
) -> Result<VerifiedAttestation, String> {
    let mut refusal = String::from("no root to verify against");
    for anchor in anchors {
        match attestation::verify(doc, anchor, now, policy) {
            Ok(v) => return Ok(v),
            Err(e) => refusal = e.to_string(),
        }
    }
    Err(refusal)
}

/// The policy a peer's document must meet: one of `allowed` (this enclave's own PCRs first),
/// not debug mode, recent.
fn peer_policy(allowed: Vec<attestation::PcrSet>) -> Policy {
    let mut policy = Policy::accept_any_pcrs().with_max_age(MAX_DOCUMENT_AGE);
    policy.allowed_pcrs = allowed;
    policy
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

/// Member side: verifies the joiner's boot-key document and seals `domain` and `head` (the
/// member's last commit) to it.
///
/// # Errors
/// `ValidationException` when the document does not verify, is not a boot-key document or
/// binds no key; `KMSInternalException` when sealing or attesting fails.
pub fn release(
    domain: &DomainKey,
    head: u64,
    joiner_document: &[u8],
    allowed: &[attestation::PcrSet],
    attester: &dyn crate::env::Attester,
    anchors: &[TrustAnchor],
    now: SystemTime,
) -> KmsResult<Released> {
    let mut sets = vec![own_pcrs(attester, anchors, now)?];
    sets.extend(allowed.iter().cloned());
    let joiner = verify_any(joiner_document, anchors, now, &peer_policy(sets)).map_err(|why| {
        KmsError::Validation(format!(
            "The joining enclave's attestation document is refused: {why}. Only an enclave \
             running this image, or measurements the custodians allowed, may join."
        ))
    })?;
    if joiner.user_data() != Some(BOOT_KEY_USER_DATA) {
        return Err(KmsError::Validation(
            "The attestation document is not a boot-key document (Ekms.GetAttestation)."
                .to_owned(),
        ));
    }
    let spki = joiner
        .public_key()
        .ok_or_else(|| KmsError::Validation("The attestation document binds no key.".to_owned()))?;
    let key = envelope::public_key_from_spki_der(spki).map_err(|_| {
        KmsError::Validation("The attestation document's key is not a P-384 key.".to_owned())
    })?;
    let mut plain = Zeroizing::new(Vec::with_capacity(40));
    plain.extend_from_slice(domain.expose_secret());
    plain.extend_from_slice(&head.to_be_bytes());
    let sealed = envelope::seal_to(&key, &Purpose::Join, spki, &plain)
        .map_err(|_| KmsError::Internal("sealing the domain key for a joiner"))?
        .into_bytes();
    let document = attester
        .attest(Some(ANSWER_USER_DATA), Some(&sha256(&sealed)), None)
        .map_err(|e| {
            tracing::warn!(error = %e, "attestation failed");
            KmsError::Internal("attestation failed")
        })?;
    Ok(Released {
        envelope: sealed,
        document,
        joiner_pcr0: hex::encode(joiner.pcrs().get(&0).cloned().unwrap_or_default()),
    })
}

/// Joiner side: verifies the member's answer and opens the domain key and the member's last
/// commit with this enclave's boot key; checks the key against the deployment's `commitment`.
/// Also returns the member's PCRs: this enclave's own, or (an upgrade) measurements the store
/// allows, which only the store, once opened, can say ([`member_allowed`]).
///
/// # Errors
/// `ValidationException` when the member's document does not verify, does not bind this
/// envelope, the envelope does not open, or the key is not this deployment's.
pub fn accept(
    boot_key: &p384::SecretKey,
    boot_spki: &[u8],
    sealed: &[u8],
    member_document: &[u8],
    commitment: &[u8],
    anchors: &[TrustAnchor],
    now: SystemTime,
) -> KmsResult<(DomainKey, u64, attestation::PcrSet)> {
    // Any PCRs here (not debug mode): which are allowed is checked once the store is open.
    let policy = peer_policy(Vec::new()).with_nonce(sha256(sealed));
    let member = verify_any(member_document, anchors, now, &policy).map_err(|why| {
        KmsError::Validation(format!(
            "The member's attestation document is refused: {why}. Only a member running this \
             image, answering this very request, is trusted."
        ))
    })?;
    if member.user_data() != Some(ANSWER_USER_DATA) {
        return Err(KmsError::Validation(
            "The member's attestation document does not attest a join answer.".to_owned(),
        ));
    }
    let plain = envelope::open(boot_key, &Purpose::Join, boot_spki, sealed).map_err(|_| {
        KmsError::Validation(
            "The domain key does not open with this enclave's boot key (the member sealed it \
             to another enclave)."
                .to_owned(),
        )
    })?;
    let (key, head) = plain.split_at_checked(32).ok_or_else(|| {
        KmsError::Validation("The join answer is malformed.".to_owned())
    })?;
    if key.len() != 32 {
        return Err(KmsError::Validation("The join answer is malformed.".to_owned()));
    }
    // Straight into its zeroizing home: no copy of the key left on the stack.
    let mut domain = Zeroizing::new([0u8; 32]);
    domain.copy_from_slice(key);
    let head: [u8; 8] = head
        .try_into()
        .map_err(|_| KmsError::Validation("The join answer is malformed.".to_owned()))?;
    let expected: [u8; ekms_shared::custody::COMMITMENT_LEN] =
        commitment.try_into().map_err(|_| {
            KmsError::Internal("the deployment record's commitment is malformed")
        })?;
    ekms_shared::custody::verify_commitment(&domain, &expected).map_err(|_| {
        KmsError::Validation(
            "The released domain key is not this deployment's (the member serves another)."
                .to_owned(),
        )
    })?;
    Ok((
        DomainKey::new(domain),
        u64::from_be_bytes(head),
        member.pcrs().clone(),
    ))
}

/// Whether the member that let this enclave join runs this enclave's own image or
/// measurements the store allows (`allowed`, read from the store the member's key opened).
///
/// # Errors
/// `KMSInternalException` when this enclave's own attestation fails.
pub fn member_allowed(
    member: &attestation::PcrSet,
    allowed: &[attestation::PcrSet],
    attester: &dyn crate::env::Attester,
    anchors: &[TrustAnchor],
    now: SystemTime,
) -> KmsResult<bool> {
    let own = own_pcrs(attester, anchors, now)?;
    let matches = |set: &attestation::PcrSet| set.iter().all(|(i, v)| member.get(i) == Some(v));
    Ok(matches(&own) || allowed.iter().any(matches))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ekms_shared::attestation::insecure::{pcrs_from_binary, MockAttester, MockCa};

    use crate::env::Attester as _;

    /// An attester under the CA saved in `dir`, reporting the PCRs of `binary`.
    fn attester_for(dir: &std::path::Path, binary: &[u8]) -> crate::MockAttester {
        let ca = MockCa::load(dir).unwrap();
        crate::MockAttester(MockAttester::new(ca, pcrs_from_binary(binary)).unwrap())
    }

    fn new_ca(now: SystemTime) -> (tempfile::TempDir, TrustAnchor) {
        let dir = tempfile::tempdir().unwrap();
        let ca = MockCa::generate(now).unwrap();
        ca.save(dir.path()).unwrap();
        let anchor = ca.insecure_trust_anchor().unwrap();
        (dir, anchor)
    }

    fn boot() -> (p384::SecretKey, Vec<u8>) {
        let key = p384::SecretKey::random(&mut p384::elliptic_curve::rand_core::OsRng);
        let spki = envelope::public_key_to_spki_der(&key.public_key()).unwrap();
        (key, spki)
    }

    #[test]
    fn a_same_image_joiner_gets_the_key_and_nothing_else_does() {
        #[allow(clippy::disallowed_methods)] // any time will do
        let now = SystemTime::now();
        let (ca, anchor) = new_ca(now);
        let anchors = [anchor];
        let member = attester_for(ca.path(), b"ekms image");
        let joiner = attester_for(ca.path(), b"ekms image");
        let domain = DomainKey::new(Zeroizing::new([7; 32]));
        let commitment = ekms_shared::custody::commitment(domain.expose_secret());
        let (boot_key, boot_spki) = boot();
        let joiner_doc = joiner
            .attest(Some(BOOT_KEY_USER_DATA), Some(b"n"), Some(&boot_spki))
            .unwrap();

        let released = release(&domain, 42, &joiner_doc, &[], &member, &anchors, now).unwrap();
        let (key, head, member_pcrs) = accept(
            &boot_key,
            &boot_spki,
            &released.envelope,
            &released.document,
            &commitment,
            &anchors,
            now,
        )
        .unwrap();
        assert_eq!(key.expose_secret(), domain.expose_secret());
        assert_eq!(head, 42);
        assert!(member_allowed(&member_pcrs, &[], &joiner, &anchors, now).unwrap());

        // Another image may not join.
        let other = attester_for(ca.path(), b"another image");
        let other_doc = other
            .attest(Some(BOOT_KEY_USER_DATA), None, Some(&boot_spki))
            .unwrap();
        let e = release(&domain, 42, &other_doc, &[], &member, &anchors, now).unwrap_err();
        assert!(e.to_string().contains("Only an enclave running this image"), "{e}");
        // Unless the custodians allowed its measurements (an upgrade); and the joiner of the
        // other image accepts this member only once its store allows the member's image.
        let allowed = [other.0.pcr_set()];
        let upgrade = release(&domain, 42, &other_doc, &allowed, &member, &anchors, now).unwrap();
        let (_, _, old_image) = accept(
            &boot_key, &boot_spki, &upgrade.envelope, &upgrade.document, &commitment, &anchors,
            now,
        )
        .unwrap();
        assert!(!member_allowed(&old_image, &[], &other, &anchors, now).unwrap());
        let store_allows = [member.0.pcr_set()];
        assert!(member_allowed(&old_image, &store_allows, &other, &anchors, now).unwrap());
        // Nor a document for another purpose, nor one from another root.
        let wrong = joiner.attest(Some(b"ekms/v1/audit-key"), None, Some(&boot_spki)).unwrap();
        assert!(release(&domain, 42, &wrong, &[], &member, &anchors, now).is_err());
        let (stranger_ca, _) = new_ca(now);
        let stranger = attester_for(stranger_ca.path(), b"ekms image");
        let foreign = stranger
            .attest(Some(BOOT_KEY_USER_DATA), None, Some(&boot_spki))
            .unwrap();
        assert!(release(&domain, 42, &foreign, &[], &member, &anchors, now).is_err());
        // A stale document is refused.
        let later = now + MAX_DOCUMENT_AGE + Duration::from_secs(60);
        assert!(release(&domain, 42, &joiner_doc, &[], &member, &anchors, later).is_err());

        // The joiner refuses an answer its document does not bind (a courier's swap), one
        // sealed to another key, and a key that is not the deployment's.
        let swapped = release(&domain, 43, &joiner_doc, &[], &member, &anchors, now).unwrap();
        let accept_with = |sealed: &[u8], doc: &[u8], commitment: &[u8]| {
            accept(&boot_key, &boot_spki, sealed, doc, commitment, &anchors, now)
        };
        assert!(accept_with(&swapped.envelope, &released.document, &commitment).is_err());
        let (_, other_spki) = boot();
        let to_other = joiner
            .attest(Some(BOOT_KEY_USER_DATA), None, Some(&other_spki))
            .unwrap();
        let misdirected = release(&domain, 42, &to_other, &[], &member, &anchors, now).unwrap();
        let e = accept_with(&misdirected.envelope, &misdirected.document, &commitment)
            .unwrap_err();
        assert!(e.to_string().contains("does not open"), "{e}");
        let other_commitment = ekms_shared::custody::commitment(&[8; 32]);
        let e = accept_with(&released.envelope, &released.document, &other_commitment)
            .unwrap_err();
        assert!(e.to_string().contains("not this deployment's"), "{e}");
        // A member of another image is not trusted either.
        let imposter = attester_for(ca.path(), b"another image");
        let fake = release(&domain, 42, &joiner_doc, &[], &imposter, &anchors, now);
        assert!(fake.is_err(), "the imposter refuses the joiner: other PCRs than its own");
        // And a joiner checks a member of another image against what its store allows.
        let imposter_doc = imposter.attest(Some(BOOT_KEY_USER_DATA), None, Some(&boot_spki)).unwrap();
        let from_imposter =
            release(&domain, 42, &imposter_doc, &[], &imposter, &anchors, now).unwrap();
        let (_, _, imposter_pcrs) = accept(
            &boot_key, &boot_spki, &from_imposter.envelope, &from_imposter.document, &commitment,
            &anchors, now,
        )
        .unwrap();
        assert!(!member_allowed(&imposter_pcrs, &[], &joiner, &anchors, now).unwrap());
    }
}
