//! The baseline: a bare hyper HTTP/1.1 server that answers every POST with a fixed body of a
//! given size, behind the parent's own relay.
//!
//! It does everything a request to ekms costs except the KMS work: the same client, the same
//! signing, the same relay code and transport, TLS termination when the run uses TLS, and the
//! same processes: `ekms bench` starts the server and the relay as children of their own
//! (`ekms bench-baseline server|relay`), joined by a Unix socket as `ekms dev` joins its enclave
//! and parent, so a request crosses three processes as it does to ekms. Its requests per second
//! are the ceiling ekms is measured against. It is INSECURE on purpose: a self-signed
//! certificate made at start, answers that mean nothing, no authentication.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use ekms_parent::relay::{self, RelayConfig};
use ekms_shared::release::{HoldCell, HoldWriter};
use ekms_shared::transport::{Address, Io, Listener};
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
use tokio::process::{Child, Command};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::client::{self, Endpoint, CONTENT_TYPE};
use crate::children::{self, Echo};

/// The loopback address the relay binds, on a port the OS picks.
const LOOPBACK: &str = "127.0.0.1:0";

/// Most bytes a baseline child reads from its stdin (the TLS identity line).
const MAX_INPUT: u64 = 64 * 1024;

/// A running baseline: two child processes, killed on drop; each also exits when its stdin
/// (held here) closes.
pub struct Baseline {
    /// The relay's client-facing endpoint.
    pub endpoint: Endpoint,
    /// With TLS: a client configuration that trusts the baseline's own certificate.
    pub tls_client: Option<rustls::ClientConfig>,
    server: Child,
    relay: Child,
    socket: PathBuf,
}

impl Drop for Baseline {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Baseline {
    /// Stops the server and the relay and waits for them to end (so their CPU time is
    /// counted with this process's children).
    pub async fn stop(mut self) {
        let _ = self.server.kill().await;
        let _ = self.relay.kill().await;
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

/// The server's TLS identity, as the bench hands it to the server child (one JSON line on
/// its stdin): DER, base64.
#[derive(Serialize, Deserialize)]
struct Identity {
    cert: String,
    key: String,
}

/// Starts the bare server (TLS when `tls`) and the relay in front of it, as children of the
/// `ekms` binary at `ekms` (this very one in `ekms bench`, the built one in tests).
///
/// # Errors
///
/// When a child does not start or is not ready, or the TLS certificate cannot be made.
pub async fn start(response_len: usize, tls: bool, ekms: &Path) -> anyhow::Result<Baseline> {
    let identity = tls.then(self_signed).transpose()?;
    let tls_client = identity
        .as_ref()
        .map(|(cert, _)| client::tls_client_config(client::root_store(vec![cert.clone()])?))
        .transpose()?;
    let scheme = if tls { "https" } else { "http" };
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let socket = std::env::temp_dir().join(format!(
        "ekms-baseline-{}-{}.sock",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&socket);
    let mut line = match &identity {
        Some((cert, key)) => serde_json::to_vec(&Identity {
            cert: STANDARD.encode(cert),
            key: STANDARD.encode(key.secret_pkcs8_der()),
        })?,
        None => b"null".to_vec(),
    };
    line.push(b'\n');
    let mut server_cmd = Command::new(ekms);
    server_cmd
        .args(["bench-baseline", "server", "--size"])
        .arg(response_len.to_string())
        .arg("--listen")
        .arg(Address::Unix(socket.clone()).to_string());
    let (server, server_addr) =
        children::start_with_input("baseline-server", server_cmd, Echo::Stderr, Some(&line))
            .await?;
    let mut relay_cmd = Command::new(ekms);
    relay_cmd
        .args(["bench-baseline", "relay", "--to", &server_addr])
        .arg("--listen")
        .arg(format!("tcp://{LOOPBACK}"));
    let (relay, relay_addr) =
        children::start_with_input("baseline-relay", relay_cmd, Echo::Stderr, Some(b"")).await?;
    let relay_addr: Address = relay_addr
        .parse()
        .with_context(|| format!("the baseline relay's address {relay_addr}"))?;
    Ok(Baseline {
        endpoint: relay_endpoint(scheme, &relay_addr)?,
        tls_client,
        server,
        relay,
        socket,
    })
}

fn relay_endpoint(scheme: &str, relay: &Address) -> anyhow::Result<Endpoint> {
    let Address::Tcp(host_port) = relay else {
        anyhow::bail!("the baseline relay is not on TCP: {relay}");
    };
    Endpoint::parse(&format!("{scheme}://{host_port}"), false)
}

/// A self-signed certificate for 127.0.0.1/localhost and its key.
fn self_signed() -> anyhow::Result<(CertificateDer<'static>, PrivatePkcs8KeyDer<'static>)> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .context("making the baseline's certificate")?;
    Ok((
        certified.cert.der().clone(),
        PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()),
    ))
}

/// The server side of TLS with `cert`, offering HTTP/1.1.
fn acceptor(
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
) -> anyhow::Result<TlsAcceptor> {
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("rustls protocol versions")?
    .with_no_client_auth()
    .with_single_cert(vec![cert], PrivateKeyDer::Pkcs8(key))
    .context("baseline TLS server configuration")?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// `ekms bench-baseline`: one half of the baseline, run by `ekms bench` (hidden).
#[derive(Debug, clap::Args)]
pub struct ChildArgs {
    #[command(subcommand)]
    role: Role,
}

#[derive(Debug, clap::Subcommand)]
enum Role {
    /// The bare server; reads its TLS identity (or `null`) as one JSON line on stdin.
    Server {
        /// Bytes of every answer's body.
        #[arg(long)]
        size: usize,
        #[arg(long)]
        listen: Address,
    },
    /// The relay in front of the server.
    Relay {
        #[arg(long)]
        to: Address,
        #[arg(long)]
        listen: Address,
    },
}

/// Runs one half of the baseline until its stdin closes (`ekms bench` is done or gone).
///
/// # Errors
/// When its input is malformed or its listener cannot be bound.
pub fn run_child(args: ChildArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(child(args))
}

async fn child(args: ChildArgs) -> anyhow::Result<()> {
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin().take(MAX_INPUT));
    match args.role {
        Role::Server { size, listen } => {
            let mut line = String::new();
            stdin
                .read_line(&mut line)
                .await
                .context("reading the TLS identity")?;
            let identity: Option<Identity> =
                serde_json::from_str(&line).context("parsing the TLS identity")?;
            let acceptor = identity
                .map(|id| {
                    let cert = STANDARD.decode(id.cert)?;
                    let key = STANDARD.decode(id.key)?;
                    acceptor(CertificateDer::from(cert), PrivatePkcs8KeyDer::from(key))
                })
                .transpose()?;
            let listener = Listener::bind(&listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let local = listener.local_addr().context("server address")?;
            println!("baseline-server listening on {local}");
            tokio::select! {
                () = serve(listener, acceptor, response_body(size)) => {}
                () = until_eof(stdin) => {}
            }
            // Also when the bench died without removing it.
            if let Address::Unix(path) = &listen {
                let _ = std::fs::remove_file(path);
            }
        }
        Role::Relay { to, listen } => {
            let listener = Listener::bind(&listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let local = listener.local_addr().context("relay address")?;
            println!("baseline-relay listening on {local}");
            relay::serve(listener, RelayConfig::with_defaults(to), until_eof(stdin))
                .await
                .map_err(|e| anyhow!("baseline relay: {e}"))?;
        }
    }
    Ok(())
}

/// Resolves once `input` reaches EOF (or fails).
async fn until_eof<R: tokio::io::AsyncRead + Unpin>(mut input: R) {
    let mut sink = [0u8; 256];
    while matches!(input.read(&mut sink).await, Ok(n) if n > 0) {}
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
        // Framed as the enclave frames its answers, none of them held: the relay does the
        // same work per answer for both.
        let stream = HoldWriter::new(stream, Arc::new(HoldCell::default()));
        connections.spawn(async move {
            let io: Box<dyn Io> = match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(s) => Box::new(s),
                    Err(e) => {
                        tracing::debug!(error = %e, "baseline TLS handshake failed");
                        return;
                    }
                },
                None => Box::new(stream),
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
