//! The baseline: a bare hyper HTTP/1.1 server that answers every POST with a fixed body of a
//! given size, behind the parent's own relay, both in this process on loopback.
//!
//! It does everything a request to ekms costs except the KMS work: the same client, the same
//! signing, the same relay code and transport, TLS termination when the run uses TLS. Its
//! requests per second are the ceiling ekms is measured against. It is INSECURE on purpose:
//! a self-signed certificate made at start, answers that mean nothing, no authentication.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use ekms_shared::transport::{Address, Io, Listener};
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::client::{self, Endpoint, CONTENT_TYPE};
use crate::relay::{self, RelayConfig};

/// The loopback address both listeners bind, on a port the OS picks.
const LOOPBACK: &str = "127.0.0.1:0";

/// A running baseline; dropping it stops the server and the relay.
pub struct Baseline {
    /// The relay's client-facing endpoint.
    pub endpoint: Endpoint,
    /// With TLS: a client configuration that trusts the baseline's own certificate.
    pub tls_client: Option<rustls::ClientConfig>,
    server: JoinHandle<()>,
    relay: JoinHandle<()>,
    stop_relay: Option<oneshot::Sender<()>>,
}

impl Drop for Baseline {
    fn drop(&mut self) {
        if let Some(stop) = self.stop_relay.take() {
            let _ = stop.send(());
        }
        self.relay.abort();
        self.server.abort();
    }
}

/// A JSON object of exactly `len` bytes (at least `{}`), as the answer body.
pub fn response_body(len: usize) -> Bytes {
    const PREFIX: &str = "{\"Padding\":\"";
    const SUFFIX: &str = "\"}";
    let fixed = PREFIX.len() + SUFFIX.len();
    if len < fixed {
        return Bytes::from_static(b"{}");
    }
    let mut body = String::with_capacity(len);
    body.push_str(PREFIX);
    body.extend(std::iter::repeat_n('A', len - fixed));
    body.push_str(SUFFIX);
    Bytes::from(body)
}

/// Starts the bare server (TLS when `tls`) and the relay in front of it.
///
/// # Errors
///
/// When a loopback port cannot be bound, or the TLS certificate cannot be made.
pub async fn start(response_len: usize, tls: bool) -> anyhow::Result<Baseline> {
    let (acceptor, tls_client) = if tls {
        let (acceptor, client) = self_signed_tls()?;
        (Some(acceptor), Some(client))
    } else {
        (None, None)
    };

    let server_listener = Listener::bind(&Address::Tcp(LOOPBACK.to_owned()))
        .await
        .context("binding the baseline server")?;
    let server_addr = server_listener
        .local_addr()
        .context("baseline server address")?;
    let body = response_body(response_len);
    let server = tokio::spawn(serve(server_listener, acceptor, body));

    let relay_listener = Listener::bind(&Address::Tcp(LOOPBACK.to_owned()))
        .await
        .context("binding the baseline relay")?;
    let relay_addr = relay_listener
        .local_addr()
        .context("baseline relay address")?;
    let Address::Tcp(relay_host_port) = relay_addr else {
        anyhow::bail!("the baseline relay is not on TCP: {relay_addr}");
    };
    let config = RelayConfig {
        enclave: server_addr,
        max_connections: 4096,
        idle_timeout: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(5),
    };
    let (stop_relay, stopped) = oneshot::channel::<()>();
    let relay = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = relay::serve(relay_listener, config, shutdown).await {
            tracing::warn!(error = %e, "baseline relay failed");
        }
    });

    let scheme = if tls { "https" } else { "http" };
    let endpoint = Endpoint::parse(&format!("{scheme}://{relay_host_port}"), false)?;
    Ok(Baseline {
        endpoint,
        tls_client,
        server,
        relay,
        stop_relay: Some(stop_relay),
    })
}

/// A self-signed certificate for 127.0.0.1/localhost, with the acceptor that presents it
/// and a client configuration that trusts exactly it.
fn self_signed_tls() -> anyhow::Result<(TlsAcceptor, rustls::ClientConfig)> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .context("making the baseline's certificate")?;
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("rustls protocol versions")?
    .with_no_client_auth()
    .with_single_cert(vec![cert.clone()], key)
    .context("baseline TLS server configuration")?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client = client::tls_client_config(client::root_store(vec![cert])?)?;
    Ok((TlsAcceptor::from(Arc::new(server)), client))
}

/// Accepts until aborted; the connection tasks live in a `JoinSet`, so aborting this task
/// also ends them.
async fn serve(listener: Listener, tls: Option<TlsAcceptor>, body: Bytes) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!(error = %e, "baseline accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let tls = tls.clone();
        let body = body.clone();
        connections.spawn(async move {
            let io: Box<dyn Io> = match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(s) => Box::new(s),
                    Err(e) => {
                        tracing::debug!(error = %e, "baseline TLS handshake failed");
                        return;
                    }
                },
                None => stream,
            };
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let body = body.clone();
                async move {
                    // Read the whole request, as a real server must before answering.
                    request.into_body().collect().await?;
                    let mut response = hyper::Response::new(Full::new(body));
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static(CONTENT_TYPE),
                    );
                    Ok::<_, hyper::Error>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(io), service)
                .await;
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn response_bodies_are_json_of_the_exact_size() {
        for len in [14, 15, 100, 5654] {
            let body = response_body(len);
            assert_eq!(body.len(), len);
            let _: serde_json::Value = serde_json::from_slice(&body).unwrap();
        }
        assert_eq!(&response_body(3)[..], b"{}");
    }
}
