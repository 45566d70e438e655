//! `ekms trust`: learn the deployment's TLS CA from the enclave itself, proven by attestation.
//!
//! Connects, takes the certificate chain actually presented on that connection, asks on the
//! same connection for an attestation document for a fresh nonce (`Ekms.GetTlsAttestation`),
//! verifies it (pinned root and PCRs, the nonce, its age) and that its user data binds the
//! presented leaf's key and the presented CA ([`ekms_shared::tls_binding`]), and only then
//! writes the CA. A man in the middle (a hostile parent terminating TLS with a CA of its own)
//! cannot present the enclave's leaf, whose key never leaves the enclave, so the check fails.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context as _};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use tokio::net::TcpStream;

use super::bench::client::{Endpoint, CONTENT_TYPE};
use super::custody::{fresh_nonce, verify_document, Expectation};

/// `ekms trust` options.
#[derive(Debug, clap::Args)]
pub struct TrustArgs {
    /// The ekms endpoint, https://HOST:PORT.
    #[arg(long)]
    pub endpoint: String,
    #[command(flatten)]
    pub expect: Expectation,
    /// Where the CA certificate (PEM) is written once it is proven.
    #[arg(long)]
    pub out: PathBuf,
}

/// Certificate checks deferred to the attestation: this verifier accepts whatever chain is
/// presented and keeps it, while still verifying the handshake signature with the presented
/// leaf key (so the peer holds that key). Only [`attested_connection`] uses it, and it trusts the
/// chain only once an attestation document for a fresh nonce binds it.
mod danger {
    use std::sync::{Arc, Mutex};

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    #[derive(Debug)]
    pub struct CaptureChain {
        pub chain: Arc<Mutex<Vec<CertificateDer<'static>>>>,
        pub provider: Arc<CryptoProvider>,
    }

    impl ServerCertVerifier for CaptureChain {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            let mut chain = self
                .chain
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            chain.clear();
            chain.push(end_entity.clone().into_owned());
            chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
}

/// A connection whose certificate chain the enclave proved is its own: requests sent on it
/// reach the attested enclave.
pub struct AttestedConnection {
    /// The chain proven.
    pub chain: AttestedChain,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    endpoint: Endpoint,
}

impl AttestedConnection {
    /// Sends `Ekms.<op>` (unsigned) with `body` on this connection; the answer's JSON.
    ///
    /// # Errors
    /// Transport errors, a timeout, an answer that is not JSON, or an error answer (named).
    pub async fn call(&mut self, op: &str, body: &Value) -> anyhow::Result<Value> {
        call_on(&mut self.sender, &self.endpoint, op, body).await
    }

    /// Sends a request built elsewhere (a SigV4-signed one) on this connection.
    ///
    /// # Errors
    /// Transport or HTTP protocol errors.
    pub async fn send(
        &mut self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<(http::StatusCode, Bytes), hyper::Error> {
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// The endpoint it is connected to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

async fn call_on(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    endpoint: &Endpoint,
    op: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri("/")
        .header(http::header::HOST, endpoint.authority())
        .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
        .header("x-amz-target", format!("Ekms.{op}"))
        .body(Full::new(Bytes::from(serde_json::to_vec(body)?)))?;
    let timeout = crate::custody::request_timeout(op);
    let (status, body) = tokio::time::timeout(timeout, async {
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, body))
    })
    .await
    .map_err(|_| anyhow!("Ekms.{op} timed out after {timeout:?}"))??;
    let answer: Value = serde_json::from_slice(&body)
        .with_context(|| format!("Ekms.{op} answered HTTP {status}, not JSON"))?;
    if !status.is_success() {
        bail!(
            "Ekms.{op} failed: {}: {}",
            answer["__type"].as_str().unwrap_or("error"),
            answer["message"].as_str().unwrap_or("")
        );
    }
    Ok(answer)
}

/// A chain the enclave proved is its own: the leaf and the CA that issued it.
pub struct AttestedChain {
    /// The leaf certificate (DER).
    pub leaf: CertificateDer<'static>,
    /// The CA certificate (DER): the last of the chain presented.
    pub ca: CertificateDer<'static>,
}

/// Connects to `endpoint`, and proves the chain it presents with an attestation document asked
/// for on the same connection (see the module comment).
///
/// # Errors
/// When the endpoint is not https, cannot be reached, or the proof fails (named).
pub async fn attested_connection(
    endpoint: &str,
    expect: &Expectation,
) -> anyhow::Result<AttestedConnection> {
    let endpoint = Endpoint::parse(endpoint, false)?;
    if !endpoint.https {
        bail!("ekms trust needs an https endpoint (plain http has no certificate to prove)");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let presented = Arc::new(Mutex::new(Vec::new()));
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("rustls protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(danger::CaptureChain {
            chain: presented.clone(),
            provider,
        }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(endpoint.host.clone())
        .with_context(|| format!("{:?} is not a TLS server name", endpoint.host))?;
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .with_context(|| format!("connecting to {}", endpoint.url()))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS handshake with {}", endpoint.url()))?;
    let chain: Vec<CertificateDer<'static>> = presented
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let (Some(leaf), Some(ca)) = (chain.first().cloned(), chain.last().cloned()) else {
        bail!("the endpoint presented no certificate");
    };
    if chain.len() < 2 {
        bail!("the endpoint presented a lone certificate, not a leaf and its CA");
    }

    // The same connection: what answers is what presented the chain.
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .context("HTTP over the TLS connection")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let nonce = fresh_nonce()?;
    let answer = call_on(
        &mut sender,
        &endpoint,
        "GetTlsAttestation",
        &json!({ "Nonce": B64.encode(nonce) }),
    )
    .await?;
    let document = B64
        .decode(answer["AttestationDocument"].as_str().unwrap_or_default())
        .context("AttestationDocument is not base64")?;
    let verified = verify_document(&document, expect, &nonce)?;
    let spki = ekms_shared::tls_binding::leaf_spki(&leaf)
        .map_err(|e| anyhow!("the presented leaf certificate does not parse: {e}"))?;
    let expected = ekms_shared::tls_binding::binding(&spki, &ca);
    // Public values.
    if verified.user_data() != Some(&expected[..]) {
        bail!(
            "the certificate chain presented on this connection is not the one the attested \
             enclave serves: someone between you and the enclave terminates TLS (a man in the \
             middle, such as a hostile parent). Nothing was trusted."
        );
    }
    Ok(AttestedConnection {
        chain: AttestedChain { leaf, ca },
        sender,
        endpoint,
    })
}

/// Runs `ekms trust`; returns what it prints.
///
/// # Errors
/// As [`attested_connection`], or when the CA cannot be written.
pub async fn run(args: &TrustArgs) -> anyhow::Result<Value> {
    let chain = attested_connection(&args.endpoint, &args.expect)
        .await?
        .chain;
    let pem = ekms_shared::tls_binding::certificate_pem(&chain.ca);
    std::fs::write(&args.out, pem.as_bytes())
        .with_context(|| format!("writing {}", args.out.display()))?;
    let fingerprint = hex::encode(ring::digest::digest(&ring::digest::SHA256, &chain.ca));
    Ok(json!({
        "Endpoint": args.endpoint,
        "CaCertificate": args.out.display().to_string(),
        "CaSha256": fingerprint,
        "LeafSha256": hex::encode(ring::digest::digest(&ring::digest::SHA256, &chain.leaf)),
    }))
}
