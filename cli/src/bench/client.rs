//! One load-generator connection: HTTP/1.1 keep-alive over TCP (or rustls over TCP), each
//! request signed with SigV4 as the AWS SDKs sign it.
//!
//! The client trusts only the CA certificates it is given; it never skips verification.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{anyhow, bail, Context as _};
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use ekms_shared::transport::Io;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::credentials::Credentials;

/// The KMS JSON 1.1 content type.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Where the load goes: `http://HOST[:PORT]` or `https://HOST[:PORT]`, path `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// TLS or not.
    pub https: bool,
    /// Host name or IP literal (without brackets), for TCP connect and TLS SNI.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Endpoint {
    /// Parses an endpoint URL; `force_https` turns `http://` into `https://` (`--tls`).
    ///
    /// # Errors
    ///
    /// When the URL does not parse, has another scheme, or carries a path other than `/`.
    pub fn parse(url: &str, force_https: bool) -> anyhow::Result<Self> {
        let uri: http::Uri = url
            .parse()
            .with_context(|| format!("--endpoint {url:?} is not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => force_https,
            _ => bail!("--endpoint {url:?} must start with http:// or https://"),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow!("--endpoint {url:?} has no host"))?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            bail!("--endpoint {url:?} must not have a path: KMS requests go to /");
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(Endpoint { https, host, port })
    }

    /// The `Host` header value (and the URL the signature covers).
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default_port = if self.https { 443 } else { 80 };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The endpoint as a URL.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}/", self.authority())
    }
}

/// Reads PEM certificates from `path` into a root store.
///
/// # Errors
///
/// When the file cannot be read or holds no certificate.
pub fn root_store_from_pem_file(path: &Path) -> anyhow::Result<rustls::RootCertStore> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    root_store(certs).with_context(|| format!("trusting the CA in {}", path.display()))
}

/// A root store holding exactly `certs`.
///
/// # Errors
///
/// When `certs` is empty or one is not a usable trust anchor.
pub fn root_store(certs: Vec<CertificateDer<'static>>) -> anyhow::Result<rustls::RootCertStore> {
    if certs.is_empty() {
        bail!("no CA certificate given");
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).context("adding a CA certificate")?;
    }
    Ok(roots)
}

/// A rustls client configuration (ring, safe defaults, ALPN `http/1.1`) trusting `roots`.
///
/// # Errors
///
/// Only if rustls refuses its own default protocol versions.
pub fn tls_client_config(roots: rustls::RootCertStore) -> anyhow::Result<rustls::ClientConfig> {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("rustls protocol versions")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Opens connections to one endpoint.
#[derive(Clone)]
pub struct Connector {
    endpoint: Endpoint,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Connector {
    /// A connector for `endpoint`; `tls` must be given exactly when the endpoint is https.
    ///
    /// # Errors
    ///
    /// When TLS and the endpoint disagree, or the host is no valid TLS server name.
    pub fn new(endpoint: Endpoint, tls: Option<rustls::ClientConfig>) -> anyhow::Result<Self> {
        let tls = match (endpoint.https, tls) {
            (true, Some(config)) => {
                let name = ServerName::try_from(endpoint.host.clone())
                    .with_context(|| format!("{:?} is not a TLS server name", endpoint.host))?;
                Some((TlsConnector::from(Arc::new(config)), name))
            }
            (false, None) => None,
            (true, None) => bail!("an https endpoint needs a CA (--ca or AWS_CA_BUNDLE)"),
            (false, Some(_)) => bail!("TLS settings given for a plain http endpoint"),
        };
        Ok(Connector { endpoint, tls })
    }

    /// The endpoint connections go to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Opens a new keep-alive HTTP/1.1 connection (TCP_NODELAY, TLS when configured).
    ///
    /// # Errors
    ///
    /// Connect, TLS handshake or HTTP handshake failures.
    pub async fn connect(&self) -> io::Result<Connection> {
        let tcp = TcpStream::connect((self.endpoint.host.as_str(), self.endpoint.port)).await?;
        tcp.set_nodelay(true)?;
        let io: Box<dyn Io> = match &self.tls {
            Some((connector, name)) => Box::new(connector.connect(name.clone(), tcp).await?),
            None => Box::new(tcp),
        };
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(io::Error::other)?;
        // The connection task ends when `sender` is dropped or the peer closes.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection { sender })
    }
}

/// One open keep-alive connection.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    /// Sends `request` and reads the whole answer.
    ///
    /// # Errors
    ///
    /// Transport or HTTP protocol errors; an HTTP error status is not an error here.
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
}

/// Builds and signs KMS JSON 1.1 requests (SigV4, service `kms`).
pub struct Signer {
    identity: Identity,
    region: String,
}

impl Signer {
    /// A signer for `credentials` in `region`.
    pub fn new(credentials: &Credentials, region: String) -> Self {
        let identity = aws_credential_types::Credentials::new(
            credentials.access_key_id.clone(),
            credentials.expose_secret_access_key().to_owned(),
            credentials.session_token.clone(),
            None,
            "ekms-bench",
        )
        .into();
        Signer { identity, region }
    }

    /// `POST /` to `endpoint` with `X-Amz-Target: TrentService.<operation>` and `body`,
    /// signed now (AWS Signature Version 4, "Signing AWS API requests").
    ///
    /// # Errors
    ///
    /// Only if the signer rejects its own inputs (e.g. a header value that is not visible
    /// ASCII).
    pub fn request(
        &self,
        endpoint: &Endpoint,
        target: &str,
        body: &Bytes,
    ) -> anyhow::Result<http::Request<Full<Bytes>>> {
        let authority = endpoint.authority();
        let mut request = http::Request::builder()
            .method(http::Method::POST)
            .uri("/")
            .header(http::header::HOST, authority.as_str())
            .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
            .header("x-amz-target", target)
            .body(Full::new(body.clone()))
            .context("building the request")?;
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("kms")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .context("SigV4 parameters")?
            .into();
        let url = endpoint.url();
        let headers = [
            ("host", authority.as_str()),
            ("content-type", CONTENT_TYPE),
            ("x-amz-target", target),
        ];
        let signable = SignableRequest::new(
            "POST",
            url.as_str(),
            headers.into_iter(),
            SignableBody::Bytes(body),
        )
        .context("SigV4 signable request")?;
        let (instructions, _signature) = sign(signable, &params)
            .context("SigV4 signing")?
            .into_parts();
        instructions.apply_to_request_http1x(&mut request);
        Ok(request)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_default_ports() {
        let e = Endpoint::parse("http://127.0.0.1:4599", false).unwrap();
        assert_eq!(
            e,
            Endpoint {
                https: false,
                host: "127.0.0.1".into(),
                port: 4599
            }
        );
        assert_eq!(e.authority(), "127.0.0.1:4599");
        assert_eq!(e.url(), "http://127.0.0.1:4599/");
        let e = Endpoint::parse("https://localhost/", false).unwrap();
        assert_eq!(
            (e.https, e.port, e.authority()),
            (true, 443, "localhost".into())
        );
        let e = Endpoint::parse("http://[::1]:80", true).unwrap();
        assert_eq!((e.https, e.host.as_str(), e.port), (true, "::1", 80));
        assert_eq!(e.authority(), "[::1]:80");
    }

    #[test]
    fn bad_endpoints_are_refused() {
        assert!(Endpoint::parse("127.0.0.1:4599", false).is_err());
        assert!(Endpoint::parse("ftp://host:1", false).is_err());
        assert!(Endpoint::parse("http://host:1/kms", false).is_err());
    }

    #[test]
    fn signed_requests_carry_sigv4_headers_for_kms() {
        let creds =
            Credentials::for_tests("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let signer = Signer::new(&creds, "eu-west-1".into());
        let endpoint = Endpoint::parse("http://127.0.0.1:4599", false).unwrap();
        let req = signer
            .request(
                &endpoint,
                "TrentService.Encrypt",
                &Bytes::from_static(b"{}"),
            )
            .unwrap();
        let auth = req.headers()["authorization"].to_str().unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"));
        assert!(auth.contains("/eu-west-1/kms/aws4_request"), "{auth}");
        assert!(
            auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-target"),
            "{auth}"
        );
        assert!(req.headers().contains_key("x-amz-date"));
        assert_eq!(req.headers()["host"], "127.0.0.1:4599");
        assert_eq!(req.uri(), "/");
    }
}
