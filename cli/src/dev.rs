//! `ekms dev`: the mock enclave and the parent relay on loopback, for development.
//!
//! Starts the sibling binaries `ekms-enclave --insecure-mock-enclave` and `ekms-parent` as
//! direct children, waits until both accept connections, writes AWS shared credentials for the
//! `dev` principal, and prints how to use them. Ctrl-C or SIGTERM stops both; if either child
//! dies, `ekms dev` stops the other and exits with an error naming it.
//!
//! With `--members N` (and an etcd `--store`) it starts N such pairs on consecutive ports, the
//! enclaves as members of one deployment (`--member`): the first initializes or unseals it, the
//! others join from a running member by attestation (`ekms join`, no custodian). It supervises
//! them: an enclave that dies is restarted and rejoins the same way (the dev custodian's share
//! only when no member lets it join); a parent that dies ends `ekms dev`.
//!
//! Its options also come from `EKMS_<NAME>` and a config file (`--config FILE`,
//! `ekms_shared::config_file`); the children get every setting on their command line, and
//! none of the `EKMS_*` variables but `EKMS_LOG`. With `--log-format json` the children log
//! JSON too, and what `ekms dev` and its children print becomes log events: every line on
//! its stdout and stderr is then one JSON object.

use std::io::Write as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use ekms_shared::logging::{LogFormat, LOG_ENV};
use tokio::process::Command;

use super::children::{sibling, start, stop, write_mock_pcrs, Echo};
use super::custody::{self, Expectation, Target};

/// `ekms dev` options.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// A TOML file of settings (`listen = "127.0.0.1:4599"`, the long options' names, and
    /// `log-format`); the environment (`EKMS_LISTEN`) and the command line take precedence
    /// over it. Also EKMS_CONFIG.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Client-facing address of the parent relay.
    #[arg(long, default_value = "127.0.0.1:4599")]
    pub listen: String,
    /// Where credentials (and, with --tls, the CA certificate) are written.
    #[arg(long, default_value = ".ekms")]
    pub data_dir: PathBuf,
    /// Serve HTTPS; the CA certificate clients must trust is written to DATA_DIR/ca.pem.
    #[arg(long)]
    pub tls: bool,
    /// Leave init and unseal to `ekms init` / `ekms unseal` (the enclave starts sealed).
    #[arg(long)]
    pub manual_unseal: bool,
    /// Memory the mock enclave has, in MiB (default: this machine's): keys and aliases may
    /// take half of it before growing operations refuse with LimitExceededException.
    #[arg(long)]
    pub enclave_memory_mib: Option<u64>,
    /// A quota other than AWS's default, as NAME=N (repeatable): keys-per-principal,
    /// aliases-per-principal, grants-per-key, grants-per-grantee.
    #[arg(long = "quota", value_name = "NAME=N")]
    pub quotas: Vec<String>,
    /// Region in ARNs and the SigV4 credential scope.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Keep the sealed records and the audit log in etcd instead of DATA_DIR/store:
    /// etcd://HOST:PORT[,HOST:PORT...]/PREFIX (the custodian and credentials stay in DATA_DIR).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Members sharing the --store (etcd), each a parent and an enclave, on consecutive ports
    /// from --listen: the first initializes (or unseals) the deployment, the others join from
    /// it by attestation; an enclave that dies is restarted and rejoins.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=9))]
    pub members: u16,
    /// Serve each parent's `/metrics` (Prometheus), `/healthz` and `/readyz` on HOST:PORT;
    /// with --members, member i on PORT+i.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,
    /// Rotate the audit log once it holds this much (bytes, or with K, M, G), into gzip files
    /// (`ekms audit verify DATA_DIR/store` reads the whole set). The embedded store only.
    #[arg(long, value_name = "SIZE", value_parser = size)]
    pub audit_max_bytes: Option<String>,
    /// Rotate the audit log once its current file is this old (seconds, or with s, m, h, d).
    /// The embedded store only.
    #[arg(long, value_name = "AGE", value_parser = age)]
    pub audit_max_age: Option<String>,
    /// Refuse commits while the data directory's file system has less than this free (the
    /// enclave answers DependencyTimeoutException, and serves again by itself once space is
    /// freed); 0 turns the check off. The embedded store only. [default: 64M]
    #[arg(long, value_name = "SIZE", value_parser = size)]
    pub audit_min_free_bytes: Option<String>,
}

/// A size as `ekms-parent` takes it (checked here, passed on as written).
fn size(text: &str) -> Result<String, String> {
    ekms_parent::store::audit_files::parse_bytes(text)
        .map(|_| text.to_owned())
        .map_err(|e| e.to_string())
}

/// An age as `ekms-parent` takes it (checked here, passed on as written).
fn age(text: &str) -> Result<String, String> {
    ekms_parent::store::audit_files::parse_age(text)
        .map(|_| text.to_owned())
        .map_err(|e| e.to_string())
}

/// `HOST:PORT` with the port moved on by `index` (member `index`'s).
fn member_address(address: &str, index: u16) -> anyhow::Result<String> {
    let (host, port) = address
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
        .ok_or_else(|| anyhow!("--metrics-listen must be HOST:PORT, not {address:?}"))?;
    let port = port
        .checked_add(index)
        .ok_or_else(|| anyhow!("--metrics-listen's port leaves no room for member {index}"))?;
    Ok(format!("{host}:{port}"))
}

/// One member's pair of children and where it is reached.
struct Member {
    index: u16,
    parent: tokio::process::Child,
    enclave: tokio::process::Child,
    enclave_address: String,
    parent_address: String,
    target: Target,
    /// Restarts of its enclave or parent, with when they happened.
    restarts: Vec<std::time::Instant>,
}

/// Most restarts of one member's enclave or parent in [`RESTART_WINDOW`] before `ekms dev`
/// gives up.
const MAX_RESTARTS: usize = 5;
/// The window [`MAX_RESTARTS`] counts in.
const RESTART_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// What every member's children are started from.
struct Launch<'a> {
    args: &'a DevArgs,
    data_dir: &'a Path,
    log_format: LogFormat,
    host: String,
    port: u16,
    enclave_bin: PathBuf,
    parent_bin: PathBuf,
    ca_path: PathBuf,
    say: Say,
}

impl Launch<'_> {
    /// Member `index`'s own dir (its sockets): the data dir itself when there is one member.
    fn member_dir(&self, index: u16) -> anyhow::Result<PathBuf> {
        if self.args.members == 1 {
            return Ok(self.data_dir.to_path_buf());
        }
        let dir = self.data_dir.join(format!("member-{index}"));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    fn listen(&self, index: u16) -> anyhow::Result<String> {
        let port = self.port.checked_add(index).ok_or_else(|| {
            anyhow!(
                "--listen's port leaves no room for {} members",
                self.args.members
            )
        })?;
        Ok(if self.host.contains(':') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        })
    }

    async fn start_parent(&self, index: u16) -> anyhow::Result<(tokio::process::Child, String)> {
        let dir = self.member_dir(index)?;
        let mut parent_cmd = Command::new(&self.parent_bin);
        without_settings(&mut parent_cmd);
        parent_cmd
            .args(["--log-format", self.log_format.as_str()])
            .args(["--listen", &format!("tcp://{}", self.listen(index)?)])
            .arg("--enclave")
            .arg(format!("unix:{}", dir.join("enclave.sock").display()))
            .arg("--store-listen")
            .arg(format!("unix:{}", dir.join("store.sock").display()));
        if let Some(metrics) = &self.args.metrics_listen {
            parent_cmd
                .arg("--metrics-listen")
                .arg(member_address(metrics, index)?);
        }
        for (flag, value) in [
            ("--audit-max-bytes", &self.args.audit_max_bytes),
            ("--audit-max-age", &self.args.audit_max_age),
            ("--audit-min-free-bytes", &self.args.audit_min_free_bytes),
        ] {
            if let Some(value) = value {
                parent_cmd.args([flag, value.as_str()]);
            }
        }
        match &self.args.store {
            Some(url) => {
                parent_cmd.args(["--store", url]);
                if self.args.members > 1 {
                    // Members find each other in etcd (`ekms join --store`).
                    let scheme = if self.args.tls { "https" } else { "http" };
                    parent_cmd.args([
                        "--advertise",
                        &format!("{scheme}://{}", self.listen(index)?),
                    ]);
                }
            }
            None => {
                parent_cmd
                    .arg("--data-dir")
                    .arg(self.data_dir.join("store"));
            }
        }
        start("ekms-parent", parent_cmd, self.say.echo()).await
    }

    async fn start_enclave(&self, index: u16) -> anyhow::Result<(tokio::process::Child, String)> {
        let dir = self.member_dir(index)?;
        let args = self.args;
        let mut enclave_cmd = Command::new(&self.enclave_bin);
        without_settings(&mut enclave_cmd);
        enclave_cmd
            .args(["--log-format", self.log_format.as_str()])
            .arg("--insecure-mock-enclave")
            .arg("--listen")
            .arg(format!("unix:{}", dir.join("enclave.sock").display()))
            .arg("--store")
            .arg(format!("unix:{}", dir.join("store.sock").display()))
            .arg("--mock-ca")
            .arg(self.data_dir.join("mock-ca"));
        if args.members > 1 {
            enclave_cmd.arg("--member");
        }
        if let Some(mib) = args.enclave_memory_mib {
            enclave_cmd.args(["--enclave-memory-mib", &mib.to_string()]);
        }
        for quota in &args.quotas {
            enclave_cmd.args(["--quota", quota]);
        }
        enclave_cmd.args(["--region", &args.region]);
        if args.tls {
            enclave_cmd
                .arg("--tls")
                .arg("--tls-ca-out")
                .arg(&self.ca_path);
            for name in ["localhost", "127.0.0.1", "::1", self.host.as_str()] {
                enclave_cmd.args(["--tls-name", name]);
            }
        }
        start("ekms-enclave", enclave_cmd, self.say.echo()).await
    }

    /// Starts member `index` (parent, then enclave).
    async fn start_member(&self, index: u16) -> anyhow::Result<Member> {
        let (mut parent, parent_address) = self.start_parent(index).await?;
        let (enclave, enclave_address) = match self.start_enclave(index).await {
            Ok(e) => e,
            Err(e) => {
                stop(&mut parent).await;
                return Err(e);
            }
        };
        let scheme = if self.args.tls { "https" } else { "http" };
        Ok(Member {
            index,
            parent,
            enclave,
            enclave_address,
            parent_address,
            target: Target {
                endpoint: format!("{scheme}://{}", self.listen(index)?),
                ca: self.args.tls.then(|| self.ca_path.clone()),
            },
            restarts: Vec::new(),
        })
    }
}

async fn stop_all(members: &mut [Member]) {
    for m in members {
        stop(&mut m.parent).await;
        stop(&mut m.enclave).await;
    }
}

async fn shutdown_signal() -> &'static str {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "Ctrl-C";
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "Ctrl-C",
        _ = term.recv() => "SIGTERM",
    }
}

/// Inits the deployment on first run (one dev custodian, 1-of-1, admin principal `dev`), or
/// unseals it with the dev custodian's share on later runs.
async fn init_or_unseal(
    data_dir: &Path,
    target: &Target,
    expect: &Expectation,
    say: Say,
) -> anyhow::Result<()> {
    let status = custody::status_at(target).await?;
    let custodian_dir = data_dir.join("custodian");
    let share = data_dir.join("share-1.json");
    match status["State"].as_str() {
        Some("Uninitialized") => {
            if !custodian_dir.join("custodian.key").exists() {
                ekms_shared::custody::keygen(&custodian_dir)
                    .context("making the dev custodian key")?;
            }
            for stale in [&share, &data_dir.join("credentials")] {
                if stale.exists() {
                    std::fs::remove_file(stale)?;
                }
            }
            let args = custody::InitArgs {
                target: target.clone(),
                expect: expect.clone(),
                custodians: vec![custodian_dir.join("custodian.pub")],
                threshold: 1,
                admin_name: "dev".to_owned(),
                out: data_dir.to_path_buf(),
            };
            custody::init(&args)
                .await
                .context("initializing the deployment")?;
            say.line(&format!(
                "ekms dev: initialized a new deployment (1-of-1 dev custodian in {})",
                custodian_dir.display()
            ));
        }
        Some("Sealed") => {
            let args = custody::UnsealArgs {
                target: target.clone(),
                expect: expect.clone(),
                share: share.clone(),
                key: custodian_dir.join("custodian.key"),
            };
            let status = custody::unseal(&args)
                .await
                .context("unsealing with the dev custodian's share")?;
            say.line(&format!(
                "ekms dev: unsealed; refused records: {}",
                status["RefusedRecordCount"].as_u64().unwrap_or(0)
            ));
        }
        other => bail!("unexpected enclave state {other:?}"),
    }
    Ok(())
}

/// Brings a member's sealed enclave into the deployment: by attested join from the first of
/// `peers` that lets it (no custodian), else with the dev custodian's share.
async fn join_or_unseal(
    data_dir: &Path,
    target: &Target,
    peers: &[Target],
    expect: &Expectation,
    say: Say,
) -> anyhow::Result<()> {
    for peer in peers {
        let args = custody::JoinArgs {
            target: target.clone(),
            peer: Some(peer.endpoint.clone()),
            store: None,
            peer_ca: peer.ca.clone(),
            watch: false,
            interval: std::time::Duration::from_secs(5),
        };
        match custody::join(&args).await {
            Ok(_) => {
                say.line(&format!(
                    "ekms dev: {} joined from {} (attested, no custodian)",
                    target.endpoint, peer.endpoint
                ));
                return Ok(());
            }
            Err(e) => say.line(&format!(
                "ekms dev: {} could not join from {}: {e:#}",
                target.endpoint, peer.endpoint
            )),
        }
    }
    init_or_unseal(data_dir, target, expect, say).await
}

/// Where `ekms dev`'s own messages go: stdout as they are, or (`--log-format json`) into its
/// log as events, so that every line it writes is JSON.
#[derive(Debug, Clone, Copy)]
struct Say(LogFormat);

impl Say {
    fn line(self, text: &str) {
        match self.0 {
            LogFormat::Text => println!("{text}"),
            LogFormat::Json => tracing::info!(target: "ekms::dev", "{text}"),
        }
    }

    fn echo(self) -> Echo {
        match self.0 {
            LogFormat::Text => Echo::Stdout,
            LogFormat::Json => Echo::Log,
        }
    }
}

/// `command` with none of the `EKMS_*` variables but `EKMS_LOG`: a child gets its settings on
/// its command line only, never an `ekms dev` setting meant for `ekms dev` itself
/// (`EKMS_STORE` is an etcd URL here, the store channel's address there).
fn without_settings(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(|n| n.starts_with("EKMS_") && n != LOG_ENV)
        {
            command.env_remove(&name);
        }
    }
}

/// The lock file that says an `ekms dev` is running on a data dir.
pub const LOCK_FILE: &str = "dev.lock";

/// Takes the data dir for this `ekms dev`, before anything in it is touched: a second `ekms
/// dev` on the same data dir would otherwise rewrite its PCRs and sockets and then fail on the
/// store's lock with redb's "Database already open".
///
/// # Errors
/// When another `ekms dev` holds the data dir (saying how to pick another), or the lock file
/// cannot be opened.
fn hold_data_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another ekms dev is running on the data dir {} (it holds {}): stop it, or give \
             this one a data dir and an address of its own, for example \
             `ekms dev --data-dir .ekms-2 --listen 127.0.0.1:4600`",
            data_dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// Runs `ekms dev` until a signal or a child's death; the children log as `log_format` says.
///
/// # Errors
/// When a child cannot start, or dies while running (the error names it).
pub async fn run(args: DevArgs, log_format: LogFormat) -> anyhow::Result<()> {
    let say = Say(log_format);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let data_dir = args
        .data_dir
        .canonicalize()
        .with_context(|| format!("resolving {}", args.data_dir.display()))?;
    // Held until `ekms dev` exits (the OS releases it however it ends).
    let _held = hold_data_dir(&data_dir)?;
    let host = args
        .listen
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(|c| c == '[' || c == ']').to_owned())
        .ok_or_else(|| anyhow!("--listen must be HOST:PORT"))?;
    let port: u16 = args
        .listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .ok_or_else(|| anyhow!("--listen must be HOST:PORT"))?;
    if args.members > 1
        && !args
            .store
            .as_deref()
            .is_some_and(|s| s.starts_with("etcd://"))
    {
        bail!("--members needs a shared store: --store etcd://HOST:PORT/PREFIX");
    }
    let launch = Launch {
        args: &args,
        data_dir: &data_dir,
        log_format,
        host: host.clone(),
        port,
        enclave_bin: sibling("ekms-enclave")?,
        parent_bin: sibling("ekms-parent")?,
        ca_path: data_dir.join("ca.pem"),
        say,
    };

    // The PCRs the mock attester will report for this enclave binary, in --expect-pcrs form.
    let pcrs_path = data_dir.join("pcrs.json");
    write_mock_pcrs(&launch.enclave_bin, &pcrs_path)?;
    let store_at = match &args.store {
        Some(url) => url.clone(),
        None => data_dir.join("store").display().to_string(),
    };
    let expect = Expectation {
        expect_pcrs: pcrs_path.clone(),
        root: Some(data_dir.join("mock-ca").join("root.pem")),
        allow_debug: false,
    };
    // One after the other: the first makes the mock CA the others load, and initializes (or
    // unseals) the deployment the others then unseal.
    let mut members: Vec<Member> = Vec::with_capacity(usize::from(args.members));
    for index in 0..args.members {
        let started = async {
            let member = launch.start_member(index).await?;
            if !args.manual_unseal {
                // The first member initializes or unseals; the others join from it.
                let peers: Vec<Target> = members.iter().map(|m| m.target.clone()).collect();
                join_or_unseal(&data_dir, &member.target, &peers, &expect, say)
                    .await
                    .with_context(|| format!("member {index}"))?;
            }
            Ok::<_, anyhow::Error>(member)
        };
        match started.await {
            Ok(member) => members.push(member),
            Err(e) => {
                stop_all(&mut members).await;
                return Err(e);
            }
        }
    }

    let credentials = data_dir.join("credentials");
    let ca_export = if args.tls {
        format!(" AWS_CA_BUNDLE={}", launch.ca_path.display())
    } else {
        String::new()
    };
    let endpoint = members[0].target.endpoint.clone();
    let others: Vec<String> = members[1..]
        .iter()
        .map(|m| format!("member {}: {}", m.index, m.target.endpoint))
        .collect();
    say.line(&format!(
        "\nekms dev is ready: mock enclave {} behind parent relay {}.\n\
         INSECURE development mode: no enclave isolation, mock attestation. Keys are sealed \
         into {} and survive restarts.\n\n\
         endpoint:    {endpoint}{}\n\
         credentials: {} (profile ekms, principal dev)\n\
         custody:     {}\n\n\
         Try:\n  \
         export AWS_SHARED_CREDENTIALS_FILE={} AWS_PROFILE=ekms AWS_DEFAULT_REGION={region}{ca_export}\n  \
         aws kms create-key --endpoint-url {endpoint}\n\n\
         Ctrl-C stops {}.",
        members[0].enclave_address,
        members[0].parent_address,
        store_at,
        if others.is_empty() {
            String::new()
        } else {
            format!(" (member 0; {})", others.join(", "))
        },
        credentials.display(),
        if args.manual_unseal {
            "manual (ekms init / ekms unseal)".to_owned()
        } else {
            format!("1-of-1 dev custodian in {}", data_dir.join("custodian").display())
        },
        credentials.display(),
        if members.len() == 1 { "both processes".to_owned() } else { format!("all {} members", members.len()) },
        region = args.region,
    ));
    let _ = std::io::stdout().flush();

    let outcome = supervise(&launch, &mut members, &data_dir, &expect).await;
    stop_all(&mut members).await;
    outcome
}

/// Waits for a signal or a child's death. One member: either child's death ends `ekms dev`.
/// Several: an enclave that dies is restarted and unsealed (at most [`MAX_RESTARTS`] times in
/// [`RESTART_WINDOW`]); a parent's death ends it.
async fn supervise(
    launch: &Launch<'_>,
    members: &mut [Member],
    data_dir: &Path,
    expect: &Expectation,
) -> anyhow::Result<()> {
    let say = launch.say;
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    loop {
        tokio::select! {
            signal = &mut signal => {
                say.line(&format!("ekms dev: {signal}, stopping"));
                return Ok(());
            }
            _ = tick.tick() => {}
        }
        for i in 0..members.len() {
            let peers: Vec<Target> = members
                .iter()
                .filter(|p| p.index != members[i].index)
                .map(|p| p.target.clone())
                .collect();
            let m = &mut members[i];
            let index = m.index;
            let name = |what: &str| {
                if launch.args.members == 1 {
                    what.to_owned()
                } else {
                    format!("member {index}'s {what}")
                }
            };
            let budget = |m: &mut Member, what: &str, status: std::process::ExitStatus| {
                let now = std::time::Instant::now();
                m.restarts
                    .retain(|t| now.duration_since(*t) < RESTART_WINDOW);
                if m.restarts.len() >= MAX_RESTARTS {
                    bail!(
                        "{what} exited ({status}): {} restarts within {RESTART_WINDOW:?}, giving up",
                        MAX_RESTARTS
                    );
                }
                m.restarts.push(now);
                Ok(())
            };
            if let Some(status) = m.parent.try_wait()? {
                // Its enclave waits for the store channel, and takes the store's state again by
                // itself once the parent is back: no unseal, no join.
                budget(m, &name("ekms-parent"), status)?;
                say.line(&format!(
                    "ekms dev: {} exited ({status}); restarting it",
                    name("ekms-parent")
                ));
                let (parent, parent_address) = launch.start_parent(m.index).await?;
                m.parent = parent;
                m.parent_address = parent_address;
                continue;
            }
            let Some(status) = m.enclave.try_wait()? else {
                continue;
            };
            if launch.args.members == 1 {
                bail!("{} exited unexpectedly ({status})", name("ekms-enclave"));
            }
            budget(m, &name("ekms-enclave"), status)?;
            say.line(&format!(
                "ekms dev: {} exited ({status}); restarting it",
                name("ekms-enclave")
            ));
            let (enclave, address) = launch.start_enclave(m.index).await?;
            m.enclave = enclave;
            m.enclave_address = address;
            if !launch.args.manual_unseal {
                // It rejoins from a running member, with no custodian.
                join_or_unseal(data_dir, &m.target, &peers, expect, say)
                    .await
                    .with_context(|| format!("member {} after its restart", m.index))?;
                say.line(&format!("ekms dev: member {} serves again", m.index));
            }
        }
    }
}
