//! `ekms dev`: the mock enclave and the parent relay on loopback, for development.
//!
//! Starts the sibling binaries `ekms-enclave --insecure-mock-enclave` and `ekms-parent` as
//! direct children, waits until both accept connections, writes AWS shared credentials for the
//! `dev` principal, and prints how to use them. Ctrl-C or SIGTERM stops both; if either child
//! dies, `ekms dev` stops the other and exits with an error naming it.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use ring::rand::{SecureRandom as _, SystemRandom};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// How long a child may take to report that it listens.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a child may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// `ekms dev` options.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Client-facing address of the parent relay.
    #[arg(long, default_value = "127.0.0.1:4599")]
    pub listen: String,
    /// Where credentials (and, with --tls, the CA certificate) are written.
    #[arg(long, default_value = ".ekms")]
    pub data_dir: PathBuf,
    /// Serve HTTPS; the CA certificate clients must trust is written to DATA_DIR/ca.pem.
    #[arg(long)]
    pub tls: bool,
}

/// The dev principal's access key, as written to the principals and credentials files.
#[derive(serde::Serialize, serde::Deserialize)]
struct DevKey {
    name: String,
    access_key_id: String,
    secret_access_key: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct PrincipalsFile {
    principals: Vec<DevKey>,
}

fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| anyhow!("the OS random source failed"))?;
    Ok(out)
}

/// A new access key in AWS's shapes: `AKIA` + 16 base32 characters, a 40-character secret.
fn new_dev_key() -> anyhow::Result<DevKey> {
    const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let id: String = random_bytes::<16>()?
        .iter()
        .map(|b| char::from(BASE32[usize::from(b & 31)]))
        .collect();
    let secret = base64::engine::general_purpose::STANDARD.encode(random_bytes::<30>()?);
    Ok(DevKey {
        name: "dev".to_owned(),
        access_key_id: format!("AKIA{id}"),
        secret_access_key: secret,
    })
}

fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

/// Reuses the dev principal from an earlier run, so exported credentials stay valid.
fn dev_principal(data_dir: &Path) -> anyhow::Result<(PathBuf, DevKey)> {
    let path = data_dir.join("principals.json");
    if let Ok(bytes) = std::fs::read(&path) {
        if let Ok(mut file) = serde_json::from_slice::<PrincipalsFile>(&bytes) {
            if let Some(key) = file.principals.pop() {
                return Ok((path, key));
            }
        }
    }
    let key = new_dev_key()?;
    let file = PrincipalsFile {
        principals: vec![key],
    };
    write_private(&path, &serde_json::to_vec_pretty(&file)?)?;
    let key = file
        .principals
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no principal"))?;
    Ok((path, key))
}

/// Finds a sibling binary; under `cargo run`, builds it first if it is missing.
fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the ekms binary")?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("the ekms binary has no directory"))?;
    let path = dir.join(name);
    if path.exists() {
        return Ok(path);
    }
    // `cargo run --bin ekms` builds only `ekms`; build the siblings the same way.
    if let Some(cargo) = std::env::var_os("CARGO") {
        let release = dir.file_name().is_some_and(|d| d == "release");
        eprintln!("ekms dev: building {name} ...");
        let mut build = std::process::Command::new(cargo);
        build.args(["build", "--bin", "ekms-enclave", "--bin", "ekms-parent"]);
        if release {
            build.arg("--release");
        }
        let status = build.status().context("running cargo build")?;
        if status.success() && path.exists() {
            return Ok(path);
        }
    }
    bail!(
        "{} not found next to {}; build it with `cargo build --release --bins`",
        name,
        exe.display()
    )
}

/// A started child and the address it reported.
struct Started {
    name: &'static str,
    child: Child,
    address: String,
}

async fn start(name: &'static str, mut command: Command) -> anyhow::Result<Started> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("{name} has no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let prefix = format!("{name} listening on ");
    let address = tokio::time::timeout(READY_TIMEOUT, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(address) = line.strip_prefix(&prefix) {
                return Ok::<_, anyhow::Error>(address.trim().to_owned());
            }
            println!("{line}");
        }
        bail!("{name} exited before it was ready")
    })
    .await
    .map_err(|_| anyhow!("{name} was not ready within {READY_TIMEOUT:?}"))??;
    // Keep forwarding whatever else the child prints.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            println!("{line}");
        }
    });
    Ok(Started {
        name,
        child,
        address,
    })
}

async fn stop(started: &mut Started) {
    if let Some(pid) = started.child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(STOP_TIMEOUT, started.child.wait())
        .await
        .is_err()
    {
        let _ = started.child.kill().await;
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

/// Runs `ekms dev` until a signal or a child's death.
///
/// # Errors
/// When a child cannot start, or dies while running (the error names it).
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let data_dir = args
        .data_dir
        .canonicalize()
        .with_context(|| format!("resolving {}", args.data_dir.display()))?;
    let (principals_path, key) = dev_principal(&data_dir)?;
    let host = args
        .listen
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(|c| c == '[' || c == ']').to_owned())
        .ok_or_else(|| anyhow!("--listen must be HOST:PORT"))?;

    let mut enclave_cmd = Command::new(sibling("ekms-enclave")?);
    enclave_cmd
        .arg("--insecure-mock-enclave")
        .args(["--listen", "tcp://127.0.0.1:0"])
        .arg("--principals")
        .arg(&principals_path);
    let ca_path = data_dir.join("ca.pem");
    if args.tls {
        enclave_cmd.arg("--tls").arg("--tls-ca-out").arg(&ca_path);
        for name in ["localhost", "127.0.0.1", "::1", host.as_str()] {
            enclave_cmd.args(["--tls-name", name]);
        }
    }
    let mut enclave = start("ekms-enclave", enclave_cmd).await?;

    let mut parent_cmd = Command::new(sibling("ekms-parent")?);
    parent_cmd
        .args(["--listen", &format!("tcp://{}", args.listen)])
        .args(["--enclave", &enclave.address]);
    let mut parent = match start("ekms-parent", parent_cmd).await {
        Ok(p) => p,
        Err(e) => {
            stop(&mut enclave).await;
            return Err(e);
        }
    };

    let credentials = data_dir.join("credentials");
    write_private(
        &credentials,
        format!(
            "[ekms]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            key.access_key_id, key.secret_access_key
        )
        .as_bytes(),
    )?;
    let scheme = if args.tls { "https" } else { "http" };
    let endpoint = format!("{scheme}://{}", args.listen);
    let ca_export = if args.tls {
        format!(" AWS_CA_BUNDLE={}", ca_path.display())
    } else {
        String::new()
    };
    println!(
        "\nekms dev is ready: mock enclave {} behind parent relay {}.\n\
         INSECURE development mode: no enclave isolation; keys live only in the mock enclave's \
         memory and are gone when it stops.\n\n\
         endpoint:    {endpoint}\n\
         credentials: {} (profile ekms, principal {})\n\n\
         Try:\n  \
         export AWS_SHARED_CREDENTIALS_FILE={} AWS_PROFILE=ekms AWS_DEFAULT_REGION=us-east-1{ca_export}\n  \
         aws kms create-key --endpoint-url {endpoint}\n\n\
         Ctrl-C stops both processes.",
        enclave.address,
        parent.address,
        credentials.display(),
        key.name,
        credentials.display(),
    );
    let _ = std::io::stdout().flush();

    let outcome = tokio::select! {
        signal = shutdown_signal() => {
            println!("ekms dev: {signal}, stopping");
            Ok(())
        }
        status = enclave.child.wait() => Err(anyhow!("ekms-enclave exited unexpectedly ({})", describe(status))),
        status = parent.child.wait() => Err(anyhow!("ekms-parent exited unexpectedly ({})", describe(status))),
    };
    stop(&mut parent).await;
    stop(&mut enclave).await;
    let _ = (parent.name, enclave.name);
    outcome
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => e.to_string(),
    }
}
