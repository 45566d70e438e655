//! INSECURE: a mock Nitro attester for laptops and CI, where there is no Nitro Security
//! Module.
//!
//! [`MockCa`] is a P-384 chain root → intermediate → leaf made with `rcgen`;
//! [`MockAttester`] signs real-shaped documents with the leaf key: untagged COSE_Sign1,
//! ES384 raw r‖s, the Nitro payload fields in the NSM's order, `cabundle` root first. Its
//! PCRs are whatever it is given, typically [`pcrs_from_binary`] of the enclave binary so
//! that PCR pinning can be tested end to end.
//!
//! Nothing here proves anything: whoever holds the mock CA directory can make documents
//! with any PCRs. A mock document verifies only against [`MockCa::insecure_trust_anchor`],
//! never against [`TrustAnchor::aws_nitro_root`].

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use p384::ecdsa::SigningKey;
use p384::elliptic_curve::zeroize::Zeroizing;
use p384::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P384_SHA384,
};
use serde::Serialize;
use sha2::{Digest, Sha384};

use super::anchor::{certificate_der_from_pem, TrustAnchor};
use super::chain::{leaf_key_matches, parse_certificate};
use super::document::{MAX_PCRS, MAX_USER_FIELD_LEN};
use super::error::{AnchorError, ChainFailure, StructureError};
use super::PcrSet;

/// `module_id` of mock documents.
pub const MOCK_MODULE_ID: &str = "i-mock-enclave";
/// File names in a mock CA directory.
pub const ROOT_FILE: &str = "root.pem";
/// The intermediate CA certificate.
pub const INTERMEDIATE_FILE: &str = "intermediate.pem";
/// The leaf certificate that signs documents.
pub const LEAF_FILE: &str = "leaf.pem";
/// The leaf's private key, PKCS#8 PEM, mode 0600.
pub const LEAF_KEY_FILE: &str = "leaf.key.pem";

/// Validity before the generation time, to absorb clock skew.
const BACKDATE: Duration = Duration::from_secs(60 * 60);
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// A failure of the insecure mock attester or its CA.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InsecureMockError {
    /// `rcgen` could not make a key or certificate.
    #[error("cannot generate the mock CA")]
    Generate(#[source] rcgen::Error),
    /// The leaf key is not a P-384 PKCS#8 key.
    #[error("mock leaf key is not a P-384 PKCS#8 key")]
    Key(#[source] p384::pkcs8::Error),
    /// A certificate file does not hold one PEM certificate.
    #[error("{path}: not a PEM certificate")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: AnchorError,
    },
    /// The leaf key does not belong to the leaf certificate.
    #[error("{LEAF_KEY_FILE} does not match {LEAF_FILE}")]
    KeyMismatch(#[source] ChainFailure),
    /// Reading or writing the CA directory failed.
    #[error("{path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `public_key`, `user_data` or `nonce` longer than 1024 bytes.
    #[error("{field} is {len} bytes, at most {MAX_USER_FIELD_LEN} allowed")]
    FieldTooLarge {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// The PCRs lack PCR0 or name an index beyond 31.
    #[error("mock PCRs must include PCR0 and only indices below {MAX_PCRS}")]
    Pcrs,
    /// CBOR encoding failed.
    #[error("cannot encode the mock document")]
    Encode(#[source] StructureError),
}

/// INSECURE: a mock certificate chain, root → intermediate → leaf, all ECDSA P-384 with
/// SHA-384 like the Nitro chain. Only the leaf key is kept (and saved): it is all that is
/// needed to sign documents. Generate a new directory when the leaf expires.
pub struct MockCa {
    root: PemCertificate,
    intermediate: PemCertificate,
    leaf: PemCertificate,
    leaf_key: SigningKey,
}

/// A certificate in both encodings.
struct PemCertificate {
    der: Vec<u8>,
    pem: String,
}

impl PemCertificate {
    fn generated(cert: &rcgen::Certificate) -> Self {
        Self {
            der: cert.der().to_vec(),
            pem: cert.pem(),
        }
    }
}

impl std::fmt::Debug for MockCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MockCa(insecure)")
    }
}

impl MockCa {
    /// Generates a chain valid from an hour before `now`: root for 10 years, intermediate
    /// for 5, leaf for 1.
    ///
    /// # Errors
    /// [`InsecureMockError::Generate`] or [`InsecureMockError::Key`] if key or certificate
    /// generation fails.
    pub fn generate(now: SystemTime) -> Result<Self, InsecureMockError> {
        let start = now.checked_sub(BACKDATE).unwrap_or(UNIX_EPOCH);
        let until = |days: u64| now + DAY * u32::try_from(days).unwrap_or(u32::MAX);

        let root_key =
            KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(InsecureMockError::Generate)?;
        let root_params = params(
            "ekms INSECURE mock root",
            IsCa::Ca(BasicConstraints::Unconstrained),
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign],
            start,
            until(3650),
        );
        let root = root_params
            .self_signed(&root_key)
            .map_err(InsecureMockError::Generate)?;

        let intermediate_key =
            KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(InsecureMockError::Generate)?;
        let intermediate = params(
            "ekms INSECURE mock intermediate",
            IsCa::Ca(BasicConstraints::Constrained(0)),
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign],
            start,
            until(1825),
        )
        .signed_by(&intermediate_key, &root, &root_key)
        .map_err(InsecureMockError::Generate)?;

        let leaf_key =
            KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(InsecureMockError::Generate)?;
        let leaf = params(
            MOCK_MODULE_ID,
            IsCa::ExplicitNoCa,
            vec![KeyUsagePurpose::DigitalSignature],
            start,
            until(365),
        )
        .signed_by(&leaf_key, &intermediate, &intermediate_key)
        .map_err(InsecureMockError::Generate)?;

        let leaf_key = SigningKey::from_pkcs8_der(leaf_key.serialized_der())
            .map_err(InsecureMockError::Key)?;
        Ok(Self {
            root: PemCertificate::generated(&root),
            intermediate: PemCertificate::generated(&intermediate),
            leaf: PemCertificate::generated(&leaf),
            leaf_key,
        })
    }

    /// The trust anchor of this mock CA. Passing it to [`super::verify`] accepts documents
    /// anyone with the CA directory can forge: tests and `--insecure-mock-enclave` only.
    ///
    /// # Errors
    /// [`AnchorError`] if the root does not parse (it always does when made by `generate`).
    pub fn insecure_trust_anchor(&self) -> Result<TrustAnchor, AnchorError> {
        TrustAnchor::from_der(&self.root.der)
    }

    /// The root certificate, PEM.
    #[must_use]
    pub fn root_pem(&self) -> &str {
        &self.root.pem
    }

    /// Writes `root.pem`, `intermediate.pem`, `leaf.pem` and `leaf.key.pem` (mode 0600)
    /// into `dir`, creating it. Existing files are not overwritten.
    ///
    /// # Errors
    /// [`InsecureMockError::Io`] if a file exists or cannot be written,
    /// [`InsecureMockError::Key`] if the key cannot be encoded.
    pub fn save(&self, dir: &Path) -> Result<(), InsecureMockError> {
        fs::create_dir_all(dir).map_err(|source| InsecureMockError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let key_pem = self
            .leaf_key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(InsecureMockError::Key)?;
        write_new(&dir.join(LEAF_KEY_FILE), key_pem.as_bytes(), 0o600)?;
        write_new(&dir.join(ROOT_FILE), self.root.pem.as_bytes(), 0o644)?;
        write_new(
            &dir.join(INTERMEDIATE_FILE),
            self.intermediate.pem.as_bytes(),
            0o644,
        )?;
        write_new(&dir.join(LEAF_FILE), self.leaf.pem.as_bytes(), 0o644)
    }

    /// Reads a directory written by [`MockCa::save`], checking that the key belongs to the
    /// leaf certificate.
    ///
    /// # Errors
    /// [`InsecureMockError::Io`], [`InsecureMockError::Certificate`],
    /// [`InsecureMockError::Key`] or [`InsecureMockError::KeyMismatch`].
    pub fn load(dir: &Path) -> Result<Self, InsecureMockError> {
        let certificate = |name: &str| {
            let path = dir.join(name);
            let pem = read(&path)?;
            let der = certificate_der_from_pem(&pem)
                .map_err(|source| InsecureMockError::Certificate { path, source })?;
            Ok::<_, InsecureMockError>(PemCertificate { der, pem })
        };
        let root = certificate(ROOT_FILE)?;
        let intermediate = certificate(INTERMEDIATE_FILE)?;
        let leaf = certificate(LEAF_FILE)?;
        let key_text = Zeroizing::new(read(&dir.join(LEAF_KEY_FILE))?);
        let leaf_key = SigningKey::from_pkcs8_pem(&key_text).map_err(InsecureMockError::Key)?;
        let parsed = parse_certificate(&leaf.der).map_err(InsecureMockError::KeyMismatch)?;
        leaf_key_matches(&parsed, leaf_key.verifying_key())
            .map_err(InsecureMockError::KeyMismatch)?;
        Ok(Self {
            root,
            intermediate,
            leaf,
            leaf_key,
        })
    }
}

fn params(
    common_name: &str,
    is_ca: IsCa,
    key_usages: Vec<KeyUsagePurpose>,
    not_before: SystemTime,
    not_after: SystemTime,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "ekms INSECURE mock");
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.is_ca = is_ca;
    params.key_usages = key_usages;
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    params
}

fn read(path: &Path) -> Result<String, InsecureMockError> {
    fs::read_to_string(path).map_err(|source| InsecureMockError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), InsecureMockError> {
    let io = |source| InsecureMockError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

/// INSECURE: signs attestation documents with a [`MockCa`] leaf, in the shape the Nitro
/// NSM produces. [`MockAttester::is_secure`] is `false`.
#[derive(Debug)]
pub struct MockAttester {
    ca: MockCa,
    pcrs: BTreeMap<u8, [u8; 48]>,
}

/// The payload, fields in the order the NSM writes them (attestation_process.md §3.2).
#[derive(Serialize)]
struct Payload<'a> {
    module_id: &'a str,
    digest: &'a str,
    timestamp: u64,
    pcrs: BTreeMap<u8, &'a serde_bytes::Bytes>,
    certificate: &'a serde_bytes::Bytes,
    cabundle: Vec<&'a serde_bytes::Bytes>,
    public_key: Option<&'a serde_bytes::Bytes>,
    user_data: Option<&'a serde_bytes::Bytes>,
    nonce: Option<&'a serde_bytes::Bytes>,
}

impl MockAttester {
    /// A mock attester reporting `pcrs`.
    ///
    /// # Errors
    /// [`InsecureMockError::Pcrs`] if PCR0 is missing or an index is 32 or more.
    pub fn new(ca: MockCa, pcrs: BTreeMap<u8, [u8; 48]>) -> Result<Self, InsecureMockError> {
        if !pcrs.contains_key(&0) || pcrs.keys().any(|i| usize::from(*i) >= MAX_PCRS) {
            return Err(InsecureMockError::Pcrs);
        }
        Ok(Self { ca, pcrs })
    }

    /// Always `false`: these documents prove nothing.
    #[must_use]
    pub fn is_secure(&self) -> bool {
        false
    }

    /// The mock CA.
    #[must_use]
    pub fn ca(&self) -> &MockCa {
        &self.ca
    }

    /// The PCRs this attester reports, as a set to pin in a [`super::Policy`].
    #[must_use]
    pub fn pcr_set(&self) -> PcrSet {
        self.pcrs.iter().map(|(i, v)| (*i, v.to_vec())).collect()
    }

    /// A document stamped with the system clock (as the NSM stamps its own).
    ///
    /// # Errors
    /// See [`MockAttester::attest_at`].
    pub fn attest(
        &self,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, InsecureMockError> {
        self.attest_at(SystemTime::now(), user_data, nonce, public_key)
    }

    /// A document stamped `now`.
    ///
    /// # Errors
    /// [`InsecureMockError::FieldTooLarge`] if a field exceeds 1024 bytes,
    /// [`InsecureMockError::Encode`] if encoding fails.
    pub fn attest_at(
        &self,
        now: SystemTime,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, InsecureMockError> {
        for (field, value) in [
            ("user_data", user_data),
            ("nonce", nonce),
            ("public_key", public_key),
        ] {
            let len = value.map_or(0, <[u8]>::len);
            if len > MAX_USER_FIELD_LEN {
                return Err(InsecureMockError::FieldTooLarge { field, len });
            }
        }
        let timestamp = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let payload = Payload {
            module_id: MOCK_MODULE_ID,
            digest: "SHA384",
            timestamp,
            pcrs: self
                .pcrs
                .iter()
                .map(|(i, v)| (*i, serde_bytes::Bytes::new(v)))
                .collect(),
            certificate: serde_bytes::Bytes::new(&self.ca.leaf.der),
            // Root first, as the NSM orders it.
            cabundle: vec![
                serde_bytes::Bytes::new(&self.ca.root.der),
                serde_bytes::Bytes::new(&self.ca.intermediate.der),
            ],
            public_key: public_key.map(serde_bytes::Bytes::new),
            user_data: user_data.map(serde_bytes::Bytes::new),
            nonce: nonce.map(serde_bytes::Bytes::new),
        };
        let payload = serde_cbor::to_vec(&payload)
            .map_err(|e| InsecureMockError::Encode(StructureError::Cbor(e)))?;
        super::cose::sign(payload, &self.ca.leaf_key).map_err(InsecureMockError::Encode)
    }
}

/// INSECURE measurements of an enclave binary, so that PCR pinning can be exercised off
/// Nitro: PCRn = SHA-384("ekms insecure mock PCRn\0" ‖ binary) for n = 0, 1, 2 (distinct
/// prefixes keep the three apart); PCR3..PCR15 are zero, 16 entries as the NSM reports.
/// These are not the values `nitro-cli` would compute for an enclave image.
#[must_use]
pub fn pcrs_from_binary(binary: &[u8]) -> BTreeMap<u8, [u8; 48]> {
    (0u8..16)
        .map(|index| {
            let value = if index < 3 {
                let mut hasher = Sha384::new();
                hasher.update(format!("ekms insecure mock PCR{index}\0").as_bytes());
                hasher.update(binary);
                hasher.finalize().into()
            } else {
                [0u8; 48]
            };
            (index, value)
        })
        .collect()
}

/// The mock PCRs a custodian pins for an enclave binary (PCR0..2 of [`pcrs_from_binary`]), in
/// the `--expect-pcrs` JSON form.
#[must_use]
pub fn expected_pcrs_json(binary: &[u8]) -> serde_json::Value {
    let pcrs: BTreeMap<u8, Vec<u8>> = pcrs_from_binary(binary)
        .into_iter()
        .filter(|(i, _)| *i <= 2)
        .map(|(i, v)| (i, v.to_vec()))
        .collect();
    super::pcr_set_to_json(&pcrs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::attestation::{verify, AttestationError, ChainFailure, Policy};

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn attester() -> MockAttester {
        let ca = MockCa::generate(now()).unwrap();
        MockAttester::new(ca, pcrs_from_binary(b"enclave binary")).unwrap()
    }

    #[test]
    fn mock_documents_verify_only_with_the_mock_root() {
        let attester = attester();
        assert!(!attester.is_secure());
        let doc = attester
            .attest_at(now(), Some(b"user"), Some(b"nonce"), Some(b"key"))
            .unwrap();
        let anchor = attester.ca().insecure_trust_anchor().unwrap();
        let policy = Policy::pinned(attester.pcr_set()).with_nonce(b"nonce".to_vec());
        let verified = verify(&doc, &anchor, now(), &policy).unwrap();
        assert_eq!(verified.module_id(), MOCK_MODULE_ID);
        assert_eq!(verified.user_data(), Some(&b"user"[..]));
        assert_eq!(verified.public_key(), Some(&b"key"[..]));
        assert_eq!(verified.pcrs().len(), 16);
        assert!(!verified.is_debug());

        let aws = verify(&doc, &TrustAnchor::aws_nitro_root(), now(), &policy).unwrap_err();
        assert!(matches!(
            aws,
            AttestationError::Chain(ref e) if matches!(e.reason, ChainFailure::WrongRoot)
        ));
    }

    #[test]
    fn mock_documents_are_nitro_shaped() {
        let doc = attester().attest_at(now(), None, None, None).unwrap();
        // Untagged 4-array, protected header {1: -35}.
        assert_eq!(&doc[..6], &[0x84, 0x44, 0xa1, 0x01, 0x38, 0x22]);
        let envelope = crate::attestation::cose::decode(&doc).unwrap();
        let parsed = crate::attestation::document::parse(&envelope.payload).unwrap();
        assert_eq!(parsed.cabundle.len(), 2);
        assert!(parsed.nonce.is_none());
    }

    #[test]
    fn pcr_pinning_catches_another_binary() {
        let attester = attester();
        let doc = attester.attest_at(now(), None, None, None).unwrap();
        let anchor = attester.ca().insecure_trust_anchor().unwrap();
        let other: PcrSet = pcrs_from_binary(b"another binary")
            .into_iter()
            .map(|(i, v)| (i, v.to_vec()))
            .collect();
        let error = verify(&doc, &anchor, now(), &Policy::pinned(other)).unwrap_err();
        assert!(matches!(error, AttestationError::Pcrs(_)), "{error:?}");
    }

    #[test]
    fn pcrs_are_domain_separated() {
        let pcrs = pcrs_from_binary(b"x");
        assert_ne!(pcrs[&0], pcrs[&1]);
        assert_ne!(pcrs[&1], pcrs[&2]);
        assert_eq!(pcrs[&3], [0; 48]);
        assert_eq!(pcrs[&4], [0; 48]);
        assert_ne!(pcrs_from_binary(b"y")[&0], pcrs[&0]);
    }

    #[test]
    fn saves_and_loads() {
        let dir = std::env::temp_dir().join(format!(
            "ekms-mock-ca-test-{}-{}",
            std::process::id(),
            now().duration_since(UNIX_EPOCH).unwrap().as_nanos()
        ));
        let _ = fs::remove_dir_all(&dir);
        let ca = MockCa::generate(now()).unwrap();
        let root_pem = ca.root_pem();
        ca.save(&dir).unwrap();
        let mode = fs::metadata(dir.join(LEAF_KEY_FILE)).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        // Never overwrites.
        assert!(matches!(ca.save(&dir), Err(InsecureMockError::Io { .. })));

        let loaded = MockCa::load(&dir).unwrap();
        assert_eq!(loaded.root_pem(), root_pem);
        let attester = MockAttester::new(loaded, pcrs_from_binary(b"e")).unwrap();
        let doc = attester.attest_at(now(), None, None, None).unwrap();
        let anchor =
            TrustAnchor::from_pem(&fs::read_to_string(dir.join(ROOT_FILE)).unwrap()).unwrap();
        verify(&doc, &anchor, now(), &Policy::accept_any_pcrs()).unwrap();

        // A key from another CA is refused.
        let other = std::env::temp_dir().join(format!("{}-other", dir.display()));
        let _ = fs::remove_dir_all(&other);
        MockCa::generate(now()).unwrap().save(&other).unwrap();
        fs::remove_file(dir.join(LEAF_KEY_FILE)).unwrap();
        fs::copy(other.join(LEAF_KEY_FILE), dir.join(LEAF_KEY_FILE)).unwrap();
        assert!(matches!(
            MockCa::load(&dir),
            Err(InsecureMockError::KeyMismatch(_))
        ));
        fs::remove_dir_all(&dir).unwrap();
        fs::remove_dir_all(&other).unwrap();
    }

    #[test]
    fn refuses_oversized_fields_and_pcrs_without_pcr0() {
        let attester = attester();
        assert!(matches!(
            attester.attest_at(now(), Some(&[0; 1025]), None, None),
            Err(InsecureMockError::FieldTooLarge {
                field: "user_data",
                ..
            })
        ));
        let ca = MockCa::generate(now()).unwrap();
        assert!(matches!(
            MockAttester::new(ca, BTreeMap::from([(1, [0; 48])])),
            Err(InsecureMockError::Pcrs)
        ));
    }
}
