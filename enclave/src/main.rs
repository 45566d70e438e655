//! `ekms-enclave`: the enclave process.
//!
//! ```text
//! ekms-enclave --listen vsock://ANY:5000 ...                      # in a Nitro enclave
//! ekms-enclave --insecure-mock-enclave --listen tcp://127.0.0.1:0 \
//!              --principals principals.json [--tls --tls-ca-out ca.pem]
//! ```
//! Prints `ekms-enclave listening on <address>` once it accepts connections.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Parser;

use ekms_enclave::config::{Config, DEFAULT_ACCOUNT, DEFAULT_REGION};
use ekms_enclave::env::Env;
use ekms_enclave::ops::State;
use ekms_enclave::principals::Principals;
use ekms_enclave::server::{self, Service};
use ekms_enclave::tls;
use ekms_shared::transport::{Address, Listener};

/// The ekms enclave: AWS KMS API server whose keys never leave it.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Where the API listens: vsock://CID:PORT, tcp://HOST:PORT or unix:PATH.
    #[arg(long)]
    listen: Address,
    /// Run outside a Nitro enclave: mock attestation, principals from a file, plain HTTP
    /// allowed. NOT SECURE: for development and CI only.
    #[arg(long)]
    insecure_mock_enclave: bool,
    /// Principals and their access keys (mock mode only).
    #[arg(long)]
    principals: Option<PathBuf>,
    /// Serve HTTPS with a certificate made at boot (always on outside mock mode).
    #[arg(long)]
    tls: bool,
    /// Write the boot CA certificate (PEM) here, for clients to trust (mock mode only).
    #[arg(long)]
    tls_ca_out: Option<PathBuf>,
    /// Names and addresses the TLS certificate is valid for.
    #[arg(long = "tls-name", default_values_t = ["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()])]
    tls_names: Vec<String>,
    /// Region in ARNs and the SigV4 credential scope.
    #[arg(long, default_value = DEFAULT_REGION)]
    region: String,
    /// 12-digit account id in ARNs.
    #[arg(long, default_value = DEFAULT_ACCOUNT)]
    account: String,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EKMS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.account.len() != 12 || !args.account.bytes().all(|b| b.is_ascii_digit()) {
        bail!("--account must be 12 digits");
    }
    if args.region.is_empty()
        || !args
            .region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        bail!("--region must look like us-east-1");
    }
    let config = Config {
        region: args.region,
        account: args.account,
        ..Config::default()
    };
    if !args.insecure_mock_enclave {
        // Outside mock mode principals arrive sealed, through `ekms init` and the sealed
        // store, which this build does not have yet. Refuse rather than run half-secured.
        bail!(
            "running as a real enclave needs sealed state and the NSM attester, which this build \
             does not provide yet; start with --insecure-mock-enclave for development"
        );
    }
    tracing::warn!(
        "INSECURE MOCK ENCLAVE: no hardware isolation, principals from a file{}. \
         Never use this mode with real keys.",
        if args.tls { "" } else { ", plain HTTP" }
    );
    let principals = match &args.principals {
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("reading principals file {}", path.display()))?;
            Principals::from_json(&bytes, &config)
                .with_context(|| format!("loading principals file {}", path.display()))?
        }
        None => bail!("--principals FILE is required in mock mode"),
    };
    let acceptor = if args.tls {
        let boot = tls::boot(&args.tls_names).context("making the boot TLS certificate")?;
        if let Some(path) = &args.tls_ca_out {
            std::fs::write(path, boot.ca_pem.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Some(tokio_rustls::TlsAcceptor::from(boot.server_config))
    } else {
        if args.tls_ca_out.is_some() {
            bail!("--tls-ca-out needs --tls");
        }
        None
    };

    let service = Arc::new(Service {
        state: State::default(),
        config,
        env: Env::system(),
        principals,
    });
    let listener = Listener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr().context("reading the bound address")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ekms-enclave listening on {local}")?;
        out.flush()?;
    }
    tracing::info!(%local, tls = acceptor.is_some(), "serving the KMS API");

    let sweeper = {
        let service = service.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                let destroyed = service.state.write().sweep(service.env.now());
                if destroyed > 0 {
                    tracing::info!(destroyed, "destroyed keys whose deletion date passed");
                }
            }
        })
    };
    server::serve(listener, service, acceptor, shutdown_signal()).await?;
    sweeper.abort();
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
