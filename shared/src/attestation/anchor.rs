//! The pinned root certificate a chain must end at.

use sha2::{Digest, Sha256};
use x509_parser::pem::parse_x509_pem;

use super::chain::parse_certificate;
use super::error::AnchorError;

/// The AWS Nitro Enclaves Root-G1 certificate, as AWS publishes it in
/// `AWS_NitroEnclaves_Root-G1.zip` (see the AWS Nitro Enclaves attestation process,
/// `docs/attestation_process.md` §2.1 of `aws/aws-nitro-enclaves-nsm-api`).
/// SHA-256 of its DER: 641A0321A3E244EFE456463195D606317ED7CDCC3C1756E09893F3C68F79BB5B.
const AWS_NITRO_ROOT_PEM: &str = include_str!("aws_nitro_root.pem");

/// A pinned root certificate. A document verifies only if its `cabundle[0]` is this
/// certificate (byte for byte, or the same subject and public key) and the chain ends at it.
///
/// The verifier has no "skip" switch: documents from the insecure mock attester verify only
/// against a `TrustAnchor` made from the mock root, which a caller must pass explicitly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustAnchor {
    root_der: Vec<u8>,
}

impl TrustAnchor {
    /// The production anchor: the AWS Nitro Enclaves root, embedded in this crate.
    #[must_use]
    pub fn aws_nitro_root() -> Self {
        // The PEM is a compile-time constant; `aws_root_is_the_published_one` checks that it
        // parses and has the published fingerprint.
        Self::from_pem(AWS_NITRO_ROOT_PEM)
            .expect("the embedded AWS Nitro root PEM is a valid certificate (tested)")
    }

    /// An anchor from one PEM `CERTIFICATE` block (surrounding whitespace allowed).
    ///
    /// # Errors
    /// [`AnchorError`] if the text is not exactly one PEM certificate, or the certificate
    /// does not parse as DER X.509.
    pub fn from_pem(pem: &str) -> Result<Self, AnchorError> {
        Ok(Self {
            root_der: certificate_der_from_pem(pem)?,
        })
    }

    /// An anchor from a DER certificate.
    ///
    /// # Errors
    /// [`AnchorError::Certificate`] if the bytes are not exactly one DER X.509 certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, AnchorError> {
        parse_certificate(der).map_err(AnchorError::Certificate)?;
        Ok(Self {
            root_der: der.to_vec(),
        })
    }

    /// The root certificate, DER.
    #[must_use]
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// SHA-256 of the root's DER, the fingerprint AWS publishes.
    #[must_use]
    pub fn fingerprint_sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.root_der).into()
    }
}

/// The DER of exactly one PEM `CERTIFICATE` block (surrounding whitespace allowed).
pub(crate) fn certificate_der_from_pem(pem: &str) -> Result<Vec<u8>, AnchorError> {
    let (rest, block) = parse_x509_pem(pem.as_bytes()).map_err(|e| match e {
        x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => AnchorError::Pem(e),
        x509_parser::nom::Err::Incomplete(_) => {
            AnchorError::Pem(x509_parser::error::PEMError::IncompletePEM)
        }
    })?;
    if block.label != "CERTIFICATE" {
        return Err(AnchorError::Label(block.label));
    }
    if !rest.iter().all(u8::is_ascii_whitespace) {
        return Err(AnchorError::TrailingData);
    }
    parse_certificate(&block.contents).map_err(AnchorError::Certificate)?;
    Ok(block.contents)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn aws_root_is_the_published_one() {
        let anchor = TrustAnchor::aws_nitro_root();
        assert_eq!(
            hex::encode_upper(anchor.fingerprint_sha256()),
            "641A0321A3E244EFE456463195D606317ED7CDCC3C1756E09893F3C68F79BB5B"
        );
    }

    #[test]
    fn refuses_non_certificates() {
        assert!(matches!(
            TrustAnchor::from_pem("not pem"),
            Err(AnchorError::Pem(_))
        ));
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            TrustAnchor::from_pem(key),
            Err(AnchorError::Label(_))
        ));
        let twice = format!("{AWS_NITRO_ROOT_PEM}{AWS_NITRO_ROOT_PEM}");
        assert!(matches!(
            TrustAnchor::from_pem(&twice),
            Err(AnchorError::TrailingData)
        ));
        assert!(matches!(
            TrustAnchor::from_der(b"\x30\x03\x02\x01\x00"),
            Err(AnchorError::Certificate(_))
        ));
    }
}
