//! What binds a TLS identity to an attestation document: the user data the enclave attests
//! for the certificate it serves, and the leaf's public key as the document must name it.
//!
//! Encoding (version 1): `"ekms/v1/tls" || SHA-256(leaf SubjectPublicKeyInfo DER) ||
//! SHA-256(CA certificate DER)`, 75 bytes. The enclave attests it in two places: in every
//! leaf, in the X.509 extension [`ATTESTATION_OID`] (an OCTET STRING holding the COSE_Sign1
//! document, no nonce), and in `Ekms.GetTlsAttestation`'s answer for a client nonce.

use sha2::{Digest as _, Sha256};

/// The prefix of the user data.
pub const BINDING_LABEL: &[u8] = b"ekms/v1/tls";

/// The OID of the leaf extension that carries an attestation document (RA-TLS style), in a
/// private-use arc: 1.3.6.1.4.1.57264.1.1.
pub const ATTESTATION_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 57264, 1, 1];

/// The user data that binds the leaf key `leaf_spki` and the CA certificate `ca_der`.
pub fn binding(leaf_spki: &[u8], ca_der: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(BINDING_LABEL.len() + 64);
    out.extend_from_slice(BINDING_LABEL);
    out.extend_from_slice(&Sha256::digest(leaf_spki));
    out.extend_from_slice(&Sha256::digest(ca_der));
    out
}

/// The SubjectPublicKeyInfo (DER) of a certificate (DER), as [`binding`] takes it.
///
/// # Errors
/// When the certificate does not parse.
pub fn leaf_spki(
    cert_der: &[u8],
) -> Result<Vec<u8>, x509_parser::nom::Err<x509_parser::error::X509Error>> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)?;
    Ok(cert.tbs_certificate.subject_pki.raw.to_vec())
}

/// A certificate (DER) as PEM, 64 base64 characters a line.
pub fn certificate_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}
