//! `ekms-enclave`: the enclave process.
//!
//! ```text
//! ekms-enclave --listen vsock://ANY:5000 ...                      # in a Nitro enclave
//! ekms-enclave --insecure-mock-enclave --listen tcp://127.0.0.1:0 \
//!              --principals principals.json [--tls --tls-ca-out ca.pem]
//! ```
//! Prints `ekms-enclave listening on <address>` once it accepts connections. Logs go to stderr
//! (`--log-format text|json`, filtered by `EKMS_LOG`); in a Nitro enclave that is its console,
//! which only a debug-mode enclave shows (to the parent). Options also come from `EKMS_<NAME>`
//! and, in mock mode, a config file ([`ekms_enclave::Args`]).
//!
//! The process is the shell: it may read the system clock (the mock CA, waits) and start
//! tasks, which the library's core may not (enclave/clippy.toml).

#![allow(clippy::disallowed_methods)]

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};

use ekms_enclave::{
    serve, store_state, Args, Attester, Config, Env, KeyStore, MockAttester, NsmAttester, Phase,
    Principals, Service, State, StoreState, TlsIdentity,
};
use ekms_shared::transport::{Address, Listener};

/// mimalloc: the request path allocates many short-lived buffers (JSON, base64, audit records);
/// glibc malloc's arenas and consolidation cost more than the work itself.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args: Args = ekms_shared::config_file::parse()?;
    ekms_shared::logging::init(args.log_format)?;
    if args.config.is_some() && !args.insecure_mock_enclave {
        bail!("--config exists only with --insecure-mock-enclave: a real enclave's settings are in its measured image");
    }
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
    if args.enclave_memory_mib.is_some() && !args.insecure_mock_enclave {
        bail!("--enclave-memory-mib exists only with --insecure-mock-enclave (an enclave reads its MemTotal)");
    }
    let memory = match args.enclave_memory_mib {
        Some(mib) => mib.saturating_mul(1024 * 1024),
        None => mem_total().context("reading MemTotal from /proc/meminfo")?,
    };
    let mut config = Config {
        region: args.region,
        account: args.account,
        tls_names: args.tls_names.clone(),
        memory_budget: usize::try_from(memory / 2).unwrap_or(usize::MAX),
        member: args.member,
        ..Config::default()
    };
    for setting in &args.quotas {
        config.quotas.set(setting).map_err(anyhow::Error::msg)?;
    }
    tracing::info!(
        memory_mib = memory / (1024 * 1024),
        budget_mib = config.memory_budget / (1024 * 1024),
        "memory budget for keys and aliases"
    );
    let attester: Arc<dyn Attester> = if args.insecure_mock_enclave {
        tracing::warn!(
            "INSECURE MOCK ENCLAVE: no hardware isolation, mock attestation{}{}. \
             Never use this mode with real keys.",
            if args.tls { "" } else { ", plain HTTP" },
            if args.principals.is_some() {
                ", principals from a file"
            } else {
                ""
            },
        );
        let mock = mock_attester(args.mock_ca.as_deref())?;
        // INSECURE, mock mode only: Recipient documents signed by the mock CA verify too.
        config.recipient_anchors.push(
            mock.0
                .ca()
                .insecure_trust_anchor()
                .context("the mock CA's root")?,
        );
        Arc::new(mock)
    } else {
        if args.principals.is_some() || args.mock_ca.is_some() {
            bail!("--principals and --mock-ca exist only with --insecure-mock-enclave");
        }
        if args.store.is_none() {
            bail!("a real enclave needs --store: keys must survive restarts");
        }
        Arc::new(NsmAttester::open().context("opening the NSM (/dev/nsm)")?)
    };
    let tls = args.tls || !args.insecure_mock_enclave;
    let mut principals = Principals::default();
    if let Some(path) = &args.principals {
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading principals file {}", path.display()))?;
        principals = Principals::from_json(&bytes, &config)
            .with_context(|| format!("loading principals file {}", path.display()))?;
    }
    let identity = if tls {
        let identity = Arc::new(
            TlsIdentity::boot(&args.tls_names, attester.as_ref())
                .context("making the boot TLS certificate")?,
        );
        if let Some(path) = &args.tls_ca_out {
            if !args.insecure_mock_enclave {
                bail!("--tls-ca-out exists only with --insecure-mock-enclave");
            }
            std::fs::write(path, identity.current().ca_pem().as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Some(identity)
    } else {
        if args.tls_ca_out.is_some() {
            bail!("--tls-ca-out needs --tls");
        }
        None
    };
    let acceptor = match &identity {
        Some(identity) => Some(tokio_rustls::TlsAcceptor::from(
            identity.server_config().context("configuring TLS")?,
        )),
        None => None,
    };

    let (phase, deployment, store) = match &args.store {
        None => (Phase::MemoryOnly, None, None),
        Some(address) => {
            let mut stream = connect_store(address).await?;
            let (phase, deployment) = match store_state(&mut stream)
                .await
                .context("asking the store whether it holds records")?
            {
                StoreState::Empty => (Phase::Uninitialized, None),
                StoreState::Initialized(deployment) => (Phase::Sealed, deployment),
            };
            tracing::info!(store = %address, state = phase.as_str(), "store channel open");
            (phase, deployment, Some(stream))
        }
    };
    // A member follows the store on a second channel of its own (polls answer in order, and
    // the first channel carries the commits).
    let follow_channel = match (&args.store, args.member) {
        (Some(address), true) => Some((connect_store(address).await?, address.clone())),
        (None, true) => bail!("--member needs --store: members share a store"),
        _ => None,
    };
    let state = Arc::new(State::new(KeyStore::default(), principals));
    let service = Service::new(
        state,
        config,
        Env::system(attester),
        phase,
        deployment,
        store,
    )
    .map_err(|e| anyhow::anyhow!("starting the service: {e}"))?
    .with_tls(identity, args.tls_ca_out.clone());
    let service = match &args.store {
        Some(address) => service.with_store_address(address.clone()),
        None => service,
    };
    let service = Arc::new(match follow_channel {
        Some((channel, address)) => service.with_follow_channel(channel, address),
        None => service,
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
                service.sweep().await;
                service.rotate_due().await;
                service.refresh_tls();
            }
        })
    };
    // A store session that failed in a way the service may recover from (a member's, or one
    // whose store refused a commit for now) is recovered in place; one that cannot stops.
    let supervisor = {
        let service = service.clone();
        tokio::spawn(async move {
            loop {
                service.lost.notified().await;
                if !service.store_failed() {
                    continue; // an earlier session's, already replaced
                }
                if let Err(e) = service.recover().await {
                    tracing::error!(error = %e, "could not recover from the store: stopping");
                    service.fatal.notify_one();
                    return;
                }
            }
        })
    };
    // The aggregates for the parent's /metrics and /readyz, on a store connection of their own.
    let reporter = args
        .store
        .clone()
        .map(|address| tokio::spawn(ekms_enclave::report_metrics(service.clone(), address)));
    let fatal = service.fatal.clone();
    let failed = tokio::select! {
        served = serve(listener, service, acceptor, shutdown_signal()) => { served?; false }
        () = fatal.notified() => true,
    };
    sweeper.abort();
    supervisor.abort();
    if let Some(reporter) = reporter {
        reporter.abort();
    }
    if failed {
        bail!("the durable store failed: stopping so that a restart reloads what is durable");
    }
    tracing::info!("stopped");
    Ok(())
}

/// The mock attester: a CA kept in `dir` (created on first use), PCRs from this binary.
fn mock_attester(dir: Option<&std::path::Path>) -> anyhow::Result<MockAttester> {
    use ekms_shared::attestation::insecure::{pcrs_from_binary, MockAttester, MockCa};
    let ca = match dir {
        Some(dir) if dir.join("root.pem").exists() => MockCa::load(dir)
            .with_context(|| format!("loading the mock CA in {}", dir.display()))?,
        Some(dir) => {
            let ca = MockCa::generate(std::time::SystemTime::now()).context("making a mock CA")?;
            ca.save(dir)
                .with_context(|| format!("saving the mock CA in {}", dir.display()))?;
            ca
        }
        None => MockCa::generate(std::time::SystemTime::now()).context("making a mock CA")?,
    };
    let exe = std::env::current_exe().context("locating this binary")?;
    let binary = std::fs::read(&exe).with_context(|| format!("reading {}", exe.display()))?;
    Ok(MockAttester(
        MockAttester::new(ca, pcrs_from_binary(&binary)).context("starting the mock attester")?,
    ))
}

/// Connects to the parent's store channel, waiting up to 30 s for it to come up.
async fn connect_store(address: &Address) -> anyhow::Result<ekms_shared::transport::Stream> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match ekms_shared::transport::connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "store channel not up yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("connecting to the store at {address}"))
            }
        }
    }
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

/// The machine's (in an enclave: the enclave's) memory, from `/proc/meminfo`, in bytes.
fn mem_total() -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    let kib = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no MemTotal line"))?;
    Ok(kib.saturating_mul(1024))
}
