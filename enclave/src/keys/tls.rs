//! TLS that ends inside the enclave, under an identity clients can pin and check.
//!
//! - **Boot certificate.** At start the enclave makes an ephemeral CA and a leaf for itself, so
//!   custodians can reach it before init or unseal.
//! - **Deployment CA.** At init the enclave makes the deployment's CA (P-256) and seals it in the
//!   store like any record ([`DeploymentCa`]); after every unseal it loads the same CA and issues
//!   itself a fresh leaf. Clients pin that one CA for the life of the deployment.
//! - **Attestation binds the connection.** Every leaf carries, in an X.509 extension
//!   ([`ATTESTATION_OID`]), an attestation document whose user data is [`binding`] of the leaf's
//!   public key and the CA certificate; and `Ekms.GetTlsAttestation` answers a fresh document for
//!   a client nonce with the same user data. A client that checks either against the chain it
//!   was shown knows the key it talks to is the attested enclave's.
//!
//! Private keys live in memory only (the deployment CA's also sealed in the store).

use std::sync::{Arc, RwLock};

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use zeroize::Zeroizing;

pub use ekms_shared::tls_binding::{binding, ATTESTATION_OID};

/// TLS setup failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration failed: {0}")]
    Config(#[from] rustls::Error),
    /// The attester failed.
    #[error("attesting the TLS key failed: {0}")]
    Attest(String),
    /// A sealed CA record does not decode.
    #[error("malformed deployment CA record: {0}")]
    Record(String),
}

/// A CA: its key (PKCS #8) and certificate, and what rebuilds its issuer (name, validity).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct DeploymentCa {
    /// Format version (1).
    v: u8,
    /// The CA's common name.
    name: String,
    /// Validity, Unix seconds.
    not_before: i64,
    not_after: i64,
    #[serde(with = "serde_bytes")]
    key_pkcs8: Vec<u8>,
    #[serde(with = "serde_bytes")]
    cert_der: Vec<u8>,
    /// After a rotation: this CA's certificate issued by the CA before it, presented until
    /// `until` (Unix seconds) so clients that pin the old CA keep verifying.
    #[serde(default)]
    cross: Option<CrossSigned>,
}

/// A CA certificate issued by the previous CA, for the overlap of a rotation.
#[derive(serde::Serialize, serde::Deserialize)]
struct CrossSigned {
    #[serde(with = "serde_bytes")]
    cert_der: Vec<u8>,
    until: i64,
}

impl Drop for DeploymentCa {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key_pkcs8);
    }
}

impl std::fmt::Debug for DeploymentCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentCa")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn ca_params(name: &str, not_before: i64, not_after: i64) -> Result<CertificateParams, TlsError> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = time::OffsetDateTime::from_unix_timestamp(not_before)
        .map_err(|e| TlsError::Record(e.to_string()))?;
    ca.not_after = time::OffsetDateTime::from_unix_timestamp(not_after)
        .map_err(|e| TlsError::Record(e.to_string()))?;
    Ok(ca)
}

impl DeploymentCa {
    /// A new CA named `name`, valid from a day ago for `years`.
    ///
    /// # Errors
    /// [`TlsError`] if generation fails.
    pub fn generate(name: &str, years: i64) -> Result<Self, TlsError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let not_before = now - 86_400;
        let not_after = now + years * 365 * 86_400;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = ca_params(name, not_before, not_after)?.self_signed(&key)?;
        Ok(DeploymentCa {
            v: 1,
            name: name.to_owned(),
            not_before,
            not_after,
            key_pkcs8: key.serialize_der(),
            cert_der: cert.der().to_vec(),
            cross: None,
        })
    }

    /// A new CA to replace this one; for `overlap_secs` its certificate issued by this CA is
    /// presented, so clients that pin this CA keep verifying until they pin the new one.
    ///
    /// # Errors
    /// [`TlsError`] if generation or signing fails.
    pub fn rotate(&self, years: i64, overlap_secs: i64) -> Result<Self, TlsError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let serial = now.to_string();
        let mut next = DeploymentCa::generate(&format!("ekms deployment CA {serial}"), years)?;
        if overlap_secs > 0 {
            let (issuer, issuer_key) = self.issuer()?;
            let key = KeyPair::try_from(next.key_pkcs8.as_slice())?;
            let cross = ca_params(&next.name, next.not_before, next.not_after)?.signed_by(
                &key,
                &issuer,
                &issuer_key,
            )?;
            next.cross = Some(CrossSigned {
                cert_der: cross.der().to_vec(),
                until: now.saturating_add(overlap_secs),
            });
        }
        Ok(next)
    }

    /// The CA certificate to present at `now` (Unix seconds): the one issued by the previous CA
    /// during a rotation's overlap, else this CA's own.
    pub fn presented_der(&self, now: i64) -> &[u8] {
        match &self.cross {
            Some(cross) if now < cross.until => &cross.cert_der,
            _ => &self.cert_der,
        }
    }

    /// The CA certificate (DER).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA certificate (PEM), for clients to trust.
    pub fn cert_pem(&self) -> String {
        ekms_shared::tls_binding::certificate_pem(&self.cert_der)
    }

    /// The sealed form (CBOR).
    ///
    /// # Errors
    /// [`TlsError::Record`] if encoding fails.
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, TlsError> {
        serde_cbor::to_vec(self)
            .map(Zeroizing::new)
            .map_err(|e| TlsError::Record(e.to_string()))
    }

    /// Decodes a sealed CA (at most 16 KiB).
    ///
    /// # Errors
    /// [`TlsError::Record`] for an oversize, malformed or unknown-version record, or a key
    /// that does not parse.
    pub fn decode(bytes: &[u8]) -> Result<Self, TlsError> {
        if bytes.len() > 16 * 1024 {
            return Err(TlsError::Record("too large".to_owned()));
        }
        let ca: DeploymentCa =
            serde_cbor::from_slice(bytes).map_err(|e| TlsError::Record(e.to_string()))?;
        if ca.v != 1 {
            return Err(TlsError::Record("unknown version".to_owned()));
        }
        KeyPair::try_from(ca.key_pkcs8.as_slice())?;
        Ok(ca)
    }

    /// The issuer that signs leaves: the same name and key as the sealed certificate, so what
    /// it signs chains to that certificate.
    fn issuer(&self) -> Result<(rcgen::Certificate, KeyPair), TlsError> {
        let key = KeyPair::try_from(self.key_pkcs8.as_slice())?;
        let cert = ca_params(&self.name, self.not_before, self.not_after)?.self_signed(&key)?;
        Ok((cert, key))
    }
}

/// The prefix of the attestation user data that binds a CSR's key: `"ekms/v1/tls-csr" ||
/// SHA-256(SubjectPublicKeyInfo DER)`.
pub const CSR_BINDING_LABEL: &[u8] = b"ekms/v1/tls-csr";

/// Most certificates, and bytes per certificate, of an installed chain.
pub const MAX_CHAIN_CERTS: usize = 8;
/// Largest certificate of an installed chain.
pub const MAX_CERT_BYTES: usize = 16 * 1024;

/// A certificate issued by the operator's own CA (a company PKI, ACM Private CA) for a key the
/// enclave made: the key waiting for its chain (after `ekms tls csr`), and the key and chain
/// served (after `ekms tls install`). Sealed like any record.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct OperatorCert {
    v: u8,
    #[serde(default, with = "serde_bytes")]
    pending_key: Option<Vec<u8>>,
    #[serde(default, with = "serde_bytes")]
    active_key: Option<Vec<u8>>,
    #[serde(default)]
    active_chain: Vec<serde_bytes::ByteBuf>,
}

impl Drop for OperatorCert {
    fn drop(&mut self) {
        if let Some(k) = &mut self.pending_key {
            zeroize::Zeroize::zeroize(k);
        }
        if let Some(k) = &mut self.active_key {
            zeroize::Zeroize::zeroize(k);
        }
    }
}

impl std::fmt::Debug for OperatorCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorCert")
            .field("installed", &!self.active_chain.is_empty())
            .finish_non_exhaustive()
    }
}

/// PEM `CERTIFICATE` blocks, decoded (at most [`MAX_CHAIN_CERTS`]).
fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, TlsError> {
    use base64::Engine as _;
    let mut out = Vec::new();
    for block in text.split("-----BEGIN CERTIFICATE-----").skip(1) {
        let body = block
            .split("-----END CERTIFICATE-----")
            .next()
            .unwrap_or_default();
        let b64: String = body.split_whitespace().collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| TlsError::Record("a certificate is not base64".to_owned()))?;
        if der.len() > MAX_CERT_BYTES {
            return Err(TlsError::Record("a certificate is too large".to_owned()));
        }
        out.push(der);
        if out.len() > MAX_CHAIN_CERTS {
            return Err(TlsError::Record(format!(
                "a chain has at most {MAX_CHAIN_CERTS} certificates"
            )));
        }
    }
    Ok(out)
}

impl OperatorCert {
    /// A fresh key for a certificate signing request (replacing one still waiting), keeping
    /// what is installed; the CSR (PEM) for `names` and the key (SubjectPublicKeyInfo DER).
    ///
    /// # Errors
    /// [`TlsError`] if generation fails.
    pub fn new_request(
        current: Option<&OperatorCert>,
        names: &[String],
    ) -> Result<(OperatorCert, String, Vec<u8>), TlsError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name.push(DnType::CommonName, "ekms");
        let csr = params.serialize_request(&key)?.pem()?;
        let spki = key.public_key_der();
        let next = OperatorCert {
            v: 1,
            pending_key: Some(key.serialize_der()),
            active_key: current.and_then(|c| c.active_key.clone()),
            active_chain: current.map(|c| c.active_chain.clone()).unwrap_or_default(),
        };
        Ok((next, csr, spki))
    }

    /// Installs `chain_pem` (leaf first, ending in the issuing CA) for the key waiting for it:
    /// the leaf must be for that key, and the chain must verify to its last certificate for
    /// `name`.
    ///
    /// # Errors
    /// [`TlsError::Record`] for no waiting key, a malformed or too long chain, a leaf for
    /// another key, or a chain that does not verify.
    pub fn install(&self, chain_pem: &str, name: &str) -> Result<OperatorCert, TlsError> {
        use rustls::client::danger::ServerCertVerifier as _;
        let pending = self.pending_key.as_ref().ok_or_else(|| {
            TlsError::Record(
                "no certificate request is waiting: run `ekms tls csr` first".to_owned(),
            )
        })?;
        let chain = pem_certificates(chain_pem)?;
        if chain.len() < 2 {
            return Err(TlsError::Record(
                "the chain must hold the leaf and the CA that issued it (PEM, leaf first)"
                    .to_owned(),
            ));
        }
        let key = KeyPair::try_from(pending.as_slice())?;
        let leaf_spki = ekms_shared::tls_binding::leaf_spki(&chain[0])
            .map_err(|e| TlsError::Record(format!("the leaf does not parse: {e}")))?;
        if leaf_spki != key.public_key_der() {
            return Err(TlsError::Record(
                "the leaf certificate is not for the key of the waiting request".to_owned(),
            ));
        }
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(chain[chain.len() - 1].clone()))
            .map_err(|e| TlsError::Record(format!("the chain's CA: {e}")))?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| TlsError::Record(e.to_string()))?;
        let intermediates: Vec<CertificateDer<'_>> = chain[1..chain.len() - 1]
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let server_name = rustls::pki_types::ServerName::try_from(name.to_owned())
            .map_err(|e| TlsError::Record(e.to_string()))?;
        verifier
            .verify_server_cert(
                &CertificateDer::from(chain[0].as_slice()),
                &intermediates,
                &server_name,
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .map_err(|e| TlsError::Record(format!("the chain does not verify for {name}: {e}")))?;
        Ok(OperatorCert {
            v: 1,
            pending_key: None,
            active_key: Some(pending.clone()),
            active_chain: chain.into_iter().map(serde_bytes::ByteBuf::from).collect(),
        })
    }

    /// Whether a chain is installed.
    pub fn is_installed(&self) -> bool {
        self.active_key.is_some() && !self.active_chain.is_empty()
    }

    /// The sealed form (CBOR).
    ///
    /// # Errors
    /// [`TlsError::Record`] if encoding fails.
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, TlsError> {
        serde_cbor::to_vec(self)
            .map(Zeroizing::new)
            .map_err(|e| TlsError::Record(e.to_string()))
    }

    /// Decodes a sealed operator certificate (at most 160 KiB).
    ///
    /// # Errors
    /// [`TlsError::Record`] for an oversize, malformed or unknown-version record.
    pub fn decode(bytes: &[u8]) -> Result<Self, TlsError> {
        if bytes.len() > 160 * 1024 {
            return Err(TlsError::Record("too large".to_owned()));
        }
        let cert: OperatorCert =
            serde_cbor::from_slice(bytes).map_err(|e| TlsError::Record(e.to_string()))?;
        if cert.v != 1 || cert.active_chain.len() > MAX_CHAIN_CERTS {
            return Err(TlsError::Record(
                "unknown version or too long a chain".to_owned(),
            ));
        }
        Ok(cert)
    }
}

/// What is served now: the certified key, and what binds it.
pub struct Served {
    certified: Arc<CertifiedKey>,
    leaf_spki: Vec<u8>,
    ca_der: Vec<u8>,
}

impl Served {
    /// [`binding`] of this leaf and CA.
    pub fn binding(&self) -> Vec<u8> {
        binding(&self.leaf_spki, &self.ca_der)
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> String {
        ekms_shared::tls_binding::certificate_pem(&self.ca_der)
    }
}

/// The enclave's TLS identity: the certificate served, swapped from the boot certificate to one
/// under the deployment CA once init or unseal loaded it.
pub struct TlsIdentity {
    names: Vec<String>,
    current: RwLock<Arc<Served>>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for TlsIdentity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().certified.clone())
    }
}

impl TlsIdentity {
    /// An identity for `names` (DNS names or IP addresses) under a boot CA of its own, its leaf
    /// attested through `attester`.
    ///
    /// # Errors
    /// [`TlsError`] if generation, attestation or configuration fails.
    pub fn boot(
        names: &[String],
        attester: &dyn crate::env::Attester,
    ) -> Result<Self, TlsError> {
        let ca = DeploymentCa::generate("ekms enclave boot CA", 1)?;
        let served = issue(names, &ca, &ca.cert_der, attester)?;
        Ok(TlsIdentity {
            names: names.to_vec(),
            current: RwLock::new(Arc::new(served)),
        })
    }

    /// Serves from now on a fresh leaf issued by `ca`.
    ///
    /// # Errors
    /// [`TlsError`] if issuing or attestation fails (the current certificate stays).
    pub fn serve_under(
        &self,
        ca: &DeploymentCa,
        attester: &dyn crate::env::Attester,
    ) -> Result<(), TlsError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let served = issue(&self.names, ca, ca.presented_der(now), attester)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(served);
        Ok(())
    }

    /// Serves from now on the operator-issued chain installed in `operator`.
    ///
    /// # Errors
    /// [`TlsError`] if nothing is installed or the key does not load.
    pub fn serve_operator(&self, operator: &OperatorCert) -> Result<(), TlsError> {
        let (Some(key), false) = (&operator.active_key, operator.active_chain.is_empty()) else {
            return Err(TlsError::Record(
                "no operator certificate is installed".to_owned(),
            ));
        };
        let chain: Vec<CertificateDer<'static>> = operator
            .active_chain
            .iter()
            .map(|c| CertificateDer::from(c.to_vec()))
            .collect();
        let leaf_spki = ekms_shared::tls_binding::leaf_spki(&chain[0])
            .map_err(|e| TlsError::Record(format!("the leaf does not parse: {e}")))?;
        let ca_der = chain[chain.len() - 1].to_vec();
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone()));
        let signing = rustls::crypto::ring::sign::any_supported_type(&private)?;
        let served = Served {
            certified: Arc::new(CertifiedKey::new(chain, signing)),
            leaf_spki,
            ca_der,
        };
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(served);
        Ok(())
    }

    /// The names the certificates are for.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether the leaf must be issued again under `ca`: its presented CA certificate changed
    /// (a rotation's overlap ended).
    pub fn stale_under(&self, ca: &DeploymentCa) -> bool {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.current().ca_der != ca.presented_der(now)
    }

    /// What is served now.
    pub fn current(&self) -> Arc<Served> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// A server configuration that serves this identity.
    ///
    /// # Errors
    /// [`TlsError::Config`] if rustls refuses it.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// A leaf for `names` under `ca`, valid for a year, carrying an attestation document that binds
/// its key and the CA.
fn issue(
    names: &[String],
    ca: &DeploymentCa,
    presented_ca: &[u8],
    attester: &dyn crate::env::Attester,
) -> Result<Served, TlsError> {
    let (issuer, issuer_key) = ca.issuer()?;
    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let leaf_spki = leaf_key.public_key_der();
    let document = attester
        .attest(Some(&binding(&leaf_spki, presented_ca)), None, None)
        .map_err(|e| TlsError::Attest(e.to_string()))?;
    let now = time::OffsetDateTime::now_utc();
    let mut leaf = CertificateParams::new(names.to_vec())?;
    leaf.distinguished_name.push(DnType::CommonName, "ekms");
    leaf.is_ca = IsCa::NoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = now - time::Duration::days(1);
    leaf.not_after = now + time::Duration::days(365);
    leaf.custom_extensions = vec![CustomExtension::from_oid_content(
        ATTESTATION_OID,
        der_octet_string(&document),
    )];
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer, &issuer_key)?;
    let chain = vec![
        leaf_cert.der().clone(),
        CertificateDer::from(presented_ca.to_vec()),
    ];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)?;
    Ok(Served {
        certified: Arc::new(CertifiedKey::new(chain, signing)),
        leaf_spki,
        ca_der: presented_ca.to_vec(),
    })
}

/// `bytes` as a DER OCTET STRING.
fn der_octet_string(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0x04];
    let len = bytes.len();
    if len < 0x80 {
        out.push(u8::try_from(len).unwrap_or(0));
    } else {
        let be = len.to_be_bytes();
        let skip = be.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | u8::try_from(be.len() - skip).unwrap_or(0));
        out.extend_from_slice(&be[skip..]);
    }
    out.extend_from_slice(bytes);
    out
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests make mock CAs at the real time
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn attester() -> crate::custody::attest::insecure::MockAttester {
        crate::custody::attest::insecure::MockAttester(
            ekms_shared::attestation::insecure::MockAttester::new(
                ekms_shared::attestation::insecure::MockCa::generate(std::time::SystemTime::now())
                    .unwrap(),
                ekms_shared::attestation::insecure::pcrs_from_binary(b"ekms tls test"),
            )
            .unwrap(),
        )
    }

    /// A sealed CA decodes to one that issues leaves chaining to the same certificate, across
    /// any number of issues (as after each restart).
    #[test]
    fn a_sealed_ca_issues_leaves_that_chain_to_it() {
        let ca = DeploymentCa::generate("ekms deployment CA test", 10).unwrap();
        let sealed = ca.encode().unwrap();
        let again = DeploymentCa::decode(&sealed).unwrap();
        assert_eq!(again.cert_der(), ca.cert_der());
        let attester = attester();
        let identity = Arc::new(TlsIdentity::boot(&["localhost".to_owned()], &attester).unwrap());
        let boot_ca = identity.current().ca_der.clone();
        identity.serve_under(&again, &attester).unwrap();
        let served = identity.current();
        assert_eq!(served.ca_der, ca.cert_der());
        assert_ne!(served.ca_der, boot_ca);
        let leaf = &served.certified.cert[0];
        // A client that trusts only the sealed CA certificate accepts the leaf.
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca.cert_der().to_vec()))
            .unwrap();
        use rustls::client::danger::ServerCertVerifier as _;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        verifier
            .verify_server_cert(
                leaf,
                &[],
                &rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf).unwrap();
        // The extension holds a document binding this leaf's key and this CA.
        let ext = parsed
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.4.1.57264.1.1")
            .unwrap();
        assert_eq!(ext.value[0], 0x04);
        assert_eq!(
            served.binding().len(),
            ekms_shared::tls_binding::BINDING_LABEL.len() + 64
        );
        assert!(DeploymentCa::decode(b"\xa0").is_err());
    }
}
