//! `ekms-parent`: the relay between clients and the enclave, and the enclave's store, run on
//! the parent instance.
//!
//! Binds `--listen`, relays every client connection to a new `--enclave` stream, and exits
//! with code 0 on SIGTERM or SIGINT. With `--store-listen` and `--data-dir` it also opens
//! the store in `DATA_DIR` and serves the store channel there. Once every listener is bound it
//! prints `ekms-parent store on <address>` (with a store) and then `ekms-parent listening on
//! <address>` on stdout: other programs wait for the last line. Logs go to stderr, filtered by
//! `EKMS_LOG` (default `info`).

use std::io::Write;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ekms_parent::holds::Holds;
use ekms_parent::relay::{self, RelayConfig};
use ekms_parent::store::{
    serve_store_with, EtcdStore, EtcdUrl, RedbStore, Store, StoreServiceConfig,
};
use ekms_shared::transport::{Address, Listener};
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

/// mimalloc: the request path allocates many short-lived buffers (JSON, base64, audit records);
/// glibc malloc's arenas and consolidation cost more than the work itself.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Relays client connections, byte for byte, to the ekms enclave, and stores its sealed
/// records.
#[derive(Debug, Parser)]
#[command(name = "ekms-parent", version)]
#[command(group = clap::ArgGroup::new("backing").args(["data_dir", "store"]).multiple(false))]
struct Args {
    /// Where clients connect: tcp://HOST:PORT, unix:PATH or vsock://CID:PORT.
    #[arg(long, value_name = "ADDRESS")]
    listen: Address,

    /// Where the enclave listens: vsock://CID:PORT, or tcp:// / unix: in mock mode.
    #[arg(long, value_name = "ADDRESS")]
    enclave: Address,

    /// Connections relayed at once; further clients wait in the listen backlog.
    #[arg(long, value_name = "N", default_value_t = NonZeroUsize::new(relay::DEFAULT_MAX_CONNECTIONS).unwrap_or(NonZeroUsize::MIN))]
    max_connections: NonZeroUsize,

    /// Close a connection after this many seconds without traffic in either direction.
    #[arg(long, value_name = "SECONDS", default_value_t = relay::DEFAULT_IDLE_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout_secs: u64,

    /// Give up on reaching the enclave for a connection after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = relay::DEFAULT_CONNECT_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    connect_timeout_secs: u64,

    /// Where the enclave reaches its store: vsock://CID:PORT, or tcp:// / unix: in mock mode.
    #[arg(long, value_name = "ADDRESS", requires = "backing")]
    store_listen: Option<Address>,

    /// Directory of the embedded store (store.redb, journal.0, journal.1, audit.jsonl); created
    /// if missing.
    #[arg(long, value_name = "DIR", requires = "store_listen")]
    data_dir: Option<PathBuf>,

    /// Keep the store in etcd instead, shared with the deployment's other members:
    /// etcd://HOST:PORT[,HOST:PORT...]/PREFIX.
    #[arg(long, value_name = "URL", requires = "store_listen")]
    store: Option<EtcdUrl>,
}

const LOG_ENV: &str = "EKMS_LOG";

fn init_logging() -> anyhow::Result<()> {
    let filter = match std::env::var(LOG_ENV) {
        Ok(directives) => EnvFilter::try_new(&directives)
            .with_context(|| format!("invalid {LOG_ENV}={directives:?}"))?,
        Err(std::env::VarError::NotPresent) => EnvFilter::new("info"),
        Err(e) => return Err(e).with_context(|| format!("invalid {LOG_ENV}")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: logs written to a file or a journal stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging()?;

    // Install the handlers before announcing readiness, so a signal sent right after the
    // ready line is not lost.
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    // One signal stops both services.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received; shutting down"),
            _ = interrupt.recv() => tracing::info!("SIGINT received; shutting down"),
        }
        let _ = stop.send(true);
    });
    let shutdown = move || {
        let mut stopped = stopped.clone();
        async move {
            // An error means the sender is gone, which also means stop.
            let _ = stopped.wait_for(|&stop| stop).await;
        }
    };

    let store = match &args.store_listen {
        Some(address) => {
            let (store, at): (Arc<dyn Store>, String) = match (&args.data_dir, &args.store) {
                (Some(dir), _) => {
                    let store = RedbStore::open(dir)
                        .with_context(|| format!("cannot open the store in {}", dir.display()))?;
                    (Arc::new(store), dir.display().to_string())
                }
                (None, Some(url)) => {
                    let at = url.to_string();
                    let url = url.clone();
                    // Opening reads etcd through a runtime of the store's own.
                    let store = tokio::task::spawn_blocking(move || EtcdStore::open(&url))
                        .await
                        .context("the etcd store's opening panicked")?
                        .with_context(|| format!("cannot open the store in {at}"))?;
                    (Arc::new(store), at)
                }
                // clap's group makes --store-listen come with exactly one of them.
                (None, None) => anyhow::bail!("--store-listen needs --data-dir or --store"),
            };
            let listener = Listener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address} for the store"))?;
            let bound = listener
                .local_addr()
                .context("cannot read the bound store address")?;
            Some((listener, bound, store, at))
        }
        None => None,
    };

    let listener = Listener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let bound = listener
        .local_addr()
        .context("cannot read the bound address")?;
    {
        let mut stdout = std::io::stdout().lock();
        if let Some((_, store_bound, _, _)) = &store {
            writeln!(stdout, "ekms-parent store on {store_bound}")
                .context("cannot write the store line to stdout")?;
        }
        writeln!(stdout, "ekms-parent listening on {bound}")
            .and_then(|()| stdout.flush())
            .context("cannot write the ready line to stdout")?;
    }
    tracing::info!(listen = %bound, enclave = %args.enclave, "relay started");
    // The enclave's answers wait here for the commits they depend on: released by the store
    // service, delivered by the relay. Without a store in this process, no answer that waits
    // for one is ever delivered.
    let holds = Arc::new(Holds::default());
    let store_config = StoreServiceConfig {
        holds: Some(Arc::clone(&holds)),
        ..StoreServiceConfig::default()
    };
    let store_service = async {
        let Some((listener, store_bound, store, dir)) = store else {
            return Ok(());
        };
        tracing::info!(store = %store_bound, at = %dir, "store started");
        serve_store_with(listener, store, store_config, shutdown())
            .await
            .context("store service failed")?;
        tracing::info!("store stopped");
        Ok::<(), anyhow::Error>(())
    };

    let config = RelayConfig {
        enclave: args.enclave,
        max_connections: args.max_connections.get(),
        idle_timeout: Duration::from_secs(args.idle_timeout_secs),
        connect_timeout: Duration::from_secs(args.connect_timeout_secs),
        holds,
    };
    let relay_service = async {
        relay::serve(listener, config, shutdown())
            .await
            .context("relay failed")?;
        tracing::info!("relay stopped");
        Ok::<(), anyhow::Error>(())
    };
    tokio::try_join!(relay_service, store_service)?;
    Ok(())
}
