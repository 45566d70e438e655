//! `ekms-parent`: the relay between clients and the enclave, and the enclave's store, run on
//! the parent instance.
//!
//! Binds `--listen`, relays every client connection to a new `--enclave` stream, and exits
//! with code 0 on SIGTERM or SIGINT. With `--store-listen` and `--data-dir` it also opens
//! the store in `DATA_DIR` and serves the store channel there. Once every listener is bound it
//! prints `ekms-parent store on <address>` (with a store) and then `ekms-parent listening on
//! <address>` on stdout: other programs wait for the last line. With `--metrics-listen` it
//! serves `/metrics`, `/healthz` and `/readyz` there, and first prints `ekms-parent metrics on
//! <address>`. Logs go to stderr, as text or
//! JSON (`--log-format`), filtered by `EKMS_LOG` (default `info`). Every option can also come
//! from `EKMS_<NAME>` or a config file (`--config FILE`; [`ekms_parent::args`]).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ekms_parent::args::{Args, Backing};
use ekms_parent::holds::Holds;
use ekms_parent::metrics::{serve_metrics, Metrics};
use ekms_parent::relay::{self, RelayConfig, RelayStats};
use ekms_parent::store::{serve_store_with, EtcdStore, RedbStore, Store, StoreServiceConfig};
use ekms_shared::transport::Listener;
use tokio::signal::unix::{signal, SignalKind};

/// mimalloc: the request path allocates many short-lived buffers (JSON, base64, audit records);
/// glibc malloc's arenas and consolidation cost more than the work itself.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = ekms_shared::config_file::parse()?;
    ekms_shared::logging::init(args.log_format)?;
    let store_options = args.store()?;
    let audit_settings = args.audit_settings();

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

    let store = match store_options {
        Some((address, backing)) => {
            let (store, at): (Arc<dyn Store>, String) = match backing {
                Backing::Dir(dir) => {
                    let store = RedbStore::open_with(&dir, audit_settings)
                        .with_context(|| format!("cannot open the store in {}", dir.display()))?;
                    (Arc::new(store), dir.display().to_string())
                }
                Backing::Etcd(url) => {
                    let at = url.to_string();
                    let advertise = args.advertise.clone();
                    // Opening reads etcd through a runtime of the store's own.
                    let store = tokio::task::spawn_blocking(move || {
                        let store = EtcdStore::open(&url)?;
                        if let Some(endpoint) = &advertise {
                            store.advertise(endpoint)?;
                        }
                        Ok::<_, ekms_parent::store::StoreError>(store)
                    })
                    .await
                    .context("the etcd store's opening panicked")?
                    .with_context(|| format!("cannot open the store in {at}"))?;
                    (Arc::new(store), at)
                }
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
    let metrics_listener = match &args.metrics_listen {
        Some(address) => {
            let listener = Listener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address} for metrics"))?;
            let bound = listener
                .local_addr()
                .context("cannot read the bound metrics address")?;
            Some((listener, bound))
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
        if let Some((_, metrics_bound)) = &metrics_listener {
            writeln!(stdout, "ekms-parent metrics on {metrics_bound}")
                .context("cannot write the metrics line to stdout")?;
        }
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
    let relay_stats = RelayStats::default();
    let metrics = Arc::new(Metrics::new(
        relay_stats.clone(),
        Arc::clone(&holds),
        store.as_ref().map(|(_, _, store, _)| Arc::clone(store)),
    ));
    let store_config = StoreServiceConfig {
        holds: Some(Arc::clone(&holds)),
        metrics: Some(Arc::clone(&metrics)),
        ..StoreServiceConfig::default()
    };
    if let Some((_, _, store, _)) = &store {
        tokio::spawn(Arc::clone(&metrics).probe_store(Arc::clone(store)));
    }
    let metrics_service = async {
        let Some((listener, bound)) = metrics_listener else {
            return Ok(());
        };
        tracing::info!(metrics = %bound, "metrics started");
        serve_metrics(listener, metrics, shutdown())
            .await
            .context("metrics service failed")?;
        Ok::<(), anyhow::Error>(())
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
        relay::serve_with_stats(listener, config, relay_stats, shutdown())
            .await
            .context("relay failed")?;
        tracing::info!("relay stopped");
        Ok::<(), anyhow::Error>(())
    };
    tokio::try_join!(relay_service, store_service, metrics_service)?;
    Ok(())
}
