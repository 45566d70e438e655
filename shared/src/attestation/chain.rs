//! X.509 path validation from the leaf `certificate` through `cabundle` to the pinned root.
//!
//! Follows the AWS Nitro Enclaves attestation process (`aws/aws-nitro-enclaves-nsm-api`,
//! `docs/attestation_process.md` §3.2.3): `cabundle` is root first, `cabundle[0]` is the
//! root; the path is leaf → `cabundle[n-1]` → … → `cabundle[1]` → pinned root. The checks
//! are the subset of RFC 5280 §6.1 that Nitro chains exercise: signatures, validity at an
//! injected time, exact name chaining, basicConstraints and pathLenConstraint, keyUsage, and
//! refusal of unknown critical extensions. CRLs are not used (AWS publishes none for Nitro).

use p384::ecdsa::signature::hazmat::PrehashVerifier;
use p384::ecdsa::signature::Verifier;
use p384::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{
    OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_SIG_ECDSA_WITH_SHA256,
    OID_SIG_ECDSA_WITH_SHA384, OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_KEY_USAGE,
};
use x509_parser::prelude::FromDer;

use super::anchor::TrustAnchor;
use super::error::{CertPosition, ChainError, ChainFailure};

/// Most certificates `cabundle` may hold. Nitro documents carry 4 (root, regional, zonal,
/// instance).
pub(crate) const MAX_CABUNDLE_LEN: usize = 8;

/// Parses exactly one DER certificate.
pub(crate) fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, ChainFailure> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| match e {
        x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => {
            ChainFailure::Malformed(e)
        }
        x509_parser::nom::Err::Incomplete(_) => {
            ChainFailure::Malformed(x509_parser::error::X509Error::InvalidCertificate)
        }
    })?;
    if !rest.is_empty() {
        return Err(ChainFailure::TrailingBytes);
    }
    Ok(cert)
}

fn parse_at(position: CertPosition, der: &[u8]) -> Result<X509Certificate<'_>, ChainError> {
    parse_certificate(der).map_err(|reason| ChainError {
        position,
        subject: "?".to_owned(),
        reason,
    })
}

fn subject_of(cert: &X509Certificate<'_>) -> String {
    cert.subject().to_string()
}

/// Verifies leaf → reversed `cabundle` → pinned root at `now` (unix seconds) and returns
/// the leaf's P-384 key, the only key a COSE signature may be checked with.
pub(crate) fn verify_chain(
    leaf_der: &[u8],
    cabundle: &[Vec<u8>],
    anchor: &TrustAnchor,
    now: i64,
) -> Result<VerifyingKey, ChainError> {
    let fail = |position, subject: String, reason| ChainError {
        position,
        subject,
        reason,
    };

    let Some((bundle_root, intermediates)) = cabundle.split_first() else {
        return Err(fail(
            CertPosition::CaBundle(0),
            "-".to_owned(),
            ChainFailure::BundleLength(0),
        ));
    };
    if cabundle.len() > MAX_CABUNDLE_LEN {
        return Err(fail(
            CertPosition::CaBundle(MAX_CABUNDLE_LEN),
            "-".to_owned(),
            ChainFailure::BundleLength(cabundle.len()),
        ));
    }

    let root = parse_at(CertPosition::Root, anchor.root_der())?;
    // attestation_process.md §3.2.3.1: cabundle[0] must be the pinned root. Byte equality,
    // or the same subject and key (a re-encoded copy of the same root).
    if bundle_root.as_slice() != anchor.root_der() {
        let copy = parse_at(CertPosition::CaBundle(0), bundle_root)?;
        if copy.subject().as_raw() != root.subject().as_raw()
            || copy.public_key().raw != root.public_key().raw
        {
            return Err(fail(
                CertPosition::CaBundle(0),
                subject_of(&copy),
                ChainFailure::WrongRoot,
            ));
        }
    }

    // The path, root first: the pinned root (not the document's copy), then cabundle[1..],
    // then the leaf.
    let mut path = Vec::with_capacity(cabundle.len().saturating_add(1));
    path.push((CertPosition::Root, root));
    for (i, der) in intermediates.iter().enumerate() {
        let position = CertPosition::CaBundle(i.saturating_add(1));
        path.push((position, parse_at(position, der)?));
    }
    path.push((CertPosition::Leaf, parse_at(CertPosition::Leaf, leaf_der)?));

    let last = path.len().saturating_sub(1);
    let mut issuer: Option<&X509Certificate<'_>> = None;
    for (index, (position, cert)) in path.iter().enumerate() {
        let check = |result: Result<(), ChainFailure>| {
            result.map_err(|reason| fail(*position, subject_of(cert), reason))
        };
        if let Some(issuer) = issuer {
            check(verify_issued_by(cert, issuer))?;
        }
        check(check_validity(cert, now))?;
        check(check_critical_extensions(cert))?;
        if index < last {
            // CA certificates below this one, the leaf excluded (RFC 5280 §4.2.1.9).
            check(check_ca(cert, last.saturating_sub(index).saturating_sub(1)))?;
        } else {
            check(check_leaf(cert))?;
        }
        issuer = Some(cert);
    }

    let (_, leaf) = path.last().ok_or_else(|| {
        fail(
            CertPosition::Leaf,
            "-".to_owned(),
            ChainFailure::TrailingBytes,
        )
    })?;
    p384_key(leaf).map_err(|reason| fail(CertPosition::Leaf, subject_of(leaf), reason))
}

/// The certificate's own EC P-384 public key (RFC 5480 §2.1.1: id-ecPublicKey with the
/// secp384r1 named curve).
fn p384_key(cert: &X509Certificate<'_>) -> Result<VerifyingKey, ChainFailure> {
    let spki = cert.public_key();
    if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY {
        return Err(ChainFailure::KeyType);
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .ok_or(ChainFailure::KeyType)?;
    if curve != OID_NIST_EC_P384 {
        return Err(ChainFailure::KeyType);
    }
    VerifyingKey::from_sec1_bytes(&spki.subject_public_key.data).map_err(|_| ChainFailure::KeyType)
}

/// RFC 5280 §6.1.3 (a)(1), (a)(4): the signature verifies with the issuer's key and the
/// issuer name is the issuer's subject, compared exactly (Nitro zonal CAs use an unusual RDN
/// order that must not be normalised).
fn verify_issued_by(
    cert: &X509Certificate<'_>,
    issuer: &X509Certificate<'_>,
) -> Result<(), ChainFailure> {
    if cert.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(ChainFailure::IssuerMismatch);
    }
    // RFC 5280 §4.1.1.2: the outer signatureAlgorithm must equal the TBS `signature` field.
    let algorithm = &cert.signature_algorithm;
    if algorithm != &cert.tbs_certificate.signature {
        return Err(ChainFailure::SignatureAlgorithm(
            "outer and TBS algorithms differ".to_owned(),
        ));
    }
    // RFC 5758 §3.2: ecdsa-with-SHA* have absent parameters.
    if algorithm.parameters.is_some() {
        return Err(ChainFailure::SignatureAlgorithm(
            algorithm.algorithm.to_id_string(),
        ));
    }
    let key = p384_key(issuer)?;
    // RFC 5480 §2.2 / RFC 3279 §2.2.3: the signature is a DER Ecdsa-Sig-Value.
    let signature =
        Signature::from_der(&cert.signature_value.data).map_err(|_| ChainFailure::BadSignature)?;
    let tbs = cert.tbs_certificate.as_ref();
    let verified = if algorithm.algorithm == OID_SIG_ECDSA_WITH_SHA384 {
        key.verify(tbs, &signature)
    } else if algorithm.algorithm == OID_SIG_ECDSA_WITH_SHA256 {
        key.verify_prehash(&Sha256::digest(tbs), &signature)
    } else {
        return Err(ChainFailure::SignatureAlgorithm(
            algorithm.algorithm.to_id_string(),
        ));
    };
    verified.map_err(|_| ChainFailure::BadSignature)
}

/// RFC 5280 §6.1.3 (a)(2): `now` within [notBefore, notAfter], both edges included.
fn check_validity(cert: &X509Certificate<'_>, now: i64) -> Result<(), ChainFailure> {
    let validity = cert.validity();
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    if now < not_before {
        return Err(ChainFailure::NotYetValid { not_before, now });
    }
    if now > not_after {
        return Err(ChainFailure::Expired { not_after, now });
    }
    Ok(())
}

/// RFC 5280 §4.2: a certificate with a critical extension the verifier does not process
/// must be refused.
fn check_critical_extensions(cert: &X509Certificate<'_>) -> Result<(), ChainFailure> {
    for extension in cert.extensions() {
        if extension.critical
            && extension.oid != OID_X509_EXT_BASIC_CONSTRAINTS
            && extension.oid != OID_X509_EXT_KEY_USAGE
        {
            return Err(ChainFailure::CriticalExtension(
                extension.oid.to_id_string(),
            ));
        }
    }
    Ok(())
}

/// RFC 5280 §6.1.4 (k), (l), (m), (n): an issuing certificate is a CA, its path length
/// constraint admits the CA certificates below it, and it may sign certificates.
fn check_ca(cert: &X509Certificate<'_>, cas_below: usize) -> Result<(), ChainFailure> {
    let constraints = cert
        .basic_constraints()
        .map_err(ChainFailure::Malformed)?
        .ok_or(ChainFailure::NotACa)?;
    if !constraints.value.ca {
        return Err(ChainFailure::NotACa);
    }
    if let Some(allowed) = constraints.value.path_len_constraint {
        if usize::try_from(allowed).is_ok_and(|allowed| cas_below > allowed) {
            return Err(ChainFailure::PathLength {
                allowed,
                below: cas_below,
            });
        }
    }
    let usage = cert
        .key_usage()
        .map_err(ChainFailure::Malformed)?
        .ok_or(ChainFailure::NoKeyCertSign)?;
    if !usage.value.key_cert_sign() {
        return Err(ChainFailure::NoKeyCertSign);
    }
    Ok(())
}

/// The leaf signs the COSE document: it must carry digitalSignature and must not be a CA.
fn check_leaf(cert: &X509Certificate<'_>) -> Result<(), ChainFailure> {
    let is_ca = cert
        .basic_constraints()
        .map_err(ChainFailure::Malformed)?
        .is_some_and(|bc| bc.value.ca);
    let signs = cert
        .key_usage()
        .map_err(ChainFailure::Malformed)?
        .is_some_and(|ku| ku.value.digital_signature());
    if is_ca || !signs {
        return Err(ChainFailure::LeafUsage);
    }
    Ok(())
}

/// Whether `key` is the certificate's own P-384 public key (used to check a loaded mock CA).
pub(crate) fn leaf_key_matches(
    cert: &X509Certificate<'_>,
    key: &VerifyingKey,
) -> Result<(), ChainFailure> {
    if &p384_key(cert)? == key {
        Ok(())
    } else {
        Err(ChainFailure::KeyType)
    }
}
