//! The ekms processes the operator's tool runs as children (`ekms dev`, `ekms bench --op
//! unseal`): finding the sibling binaries, starting one and waiting for its ready line, and
//! stopping it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, Command};

/// How long a child may take to report that it listens.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a child may take to stop after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a child's stdout goes after its ready line.
#[derive(Debug, Clone, Copy)]
pub enum Echo {
    /// To our stdout (`ekms dev`).
    Stdout,
    /// To our stderr, keeping our stdout for a report (`ekms bench`).
    Stderr,
    /// Into our log, as an event naming the child (`ekms dev --log-format json`: every line
    /// it writes is then a JSON object).
    Log,
}

impl Echo {
    fn line(self, name: &str, line: &str) {
        match self {
            Echo::Stdout => println!("{line}"),
            Echo::Stderr => eprintln!("{line}"),
            Echo::Log => tracing::info!(target: "ekms::dev", process = name, "{line}"),
        }
    }
}

/// A sibling binary of the running `ekms`; under `cargo run` (which builds only `ekms`) it is
/// built first, with the same profile.
///
/// # Errors
/// When it is missing and cannot be built.
pub fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the ekms binary")?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("the ekms binary has no directory"))?;
    let path = dir.join(name);
    if path.exists() {
        return Ok(path);
    }
    if let Some(cargo) = std::env::var_os("CARGO") {
        let release = dir.file_name().is_some_and(|d| d == "release");
        tracing::info!("building {name} ...");
        let mut build = std::process::Command::new(cargo);
        build.args(["build", "--bin", "ekms-enclave", "--bin", "ekms-parent"]);
        // `cargo run` gives `ekms` the variables it sets for the crate it runs (CARGO_PKG_*,
        // CARGO_MANIFEST_*, ...). Passed on to this build they reach the build scripts (ring's
        // among them) as a changed environment: they would rerun, and so would the next
        // `cargo run`, rebuilding everything above them. Cargo sets them itself where needed.
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(set_by_cargo_run) {
                build.env_remove(&name);
            }
        }
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

/// Whether `name` is one of the variables `cargo run` sets for the crate it runs (The Cargo
/// Book, "Environment variables Cargo sets for crates"), as opposed to the configuration a
/// user gives cargo (CARGO_HOME, CARGO_TARGET_DIR, CARGO_BUILD_*, CARGO_PROFILE_*, ...).
fn set_by_cargo_run(name: &str) -> bool {
    ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        || matches!(
            name,
            "CARGO_PRIMARY_PACKAGE" | "CARGO_CRATE_NAME" | "CARGO_RUSTC_CURRENT_DIR"
        )
}

/// Writes to `out` the PCRs the mock attester reports for `enclave_bin` (PCR0..2, in the
/// `pcrs.json` form `--expect-pcrs` reads).
///
/// # Errors
/// When the binary cannot be read or the file written.
pub fn write_mock_pcrs(enclave_bin: &Path, out: &Path) -> anyhow::Result<()> {
    let binary =
        std::fs::read(enclave_bin).with_context(|| format!("reading {}", enclave_bin.display()))?;
    let json = ekms_shared::attestation::insecure::expected_pcrs_json(&binary);
    std::fs::write(out, serde_json::to_vec_pretty(&json)?)
        .with_context(|| format!("writing {}", out.display()))
}

/// Starts `command` and waits (bounded) for its `NAME listening on ADDRESS` line; returns the
/// child and the address. What it prints before and after goes to `echo`; its stderr (its
/// log) is inherited.
///
/// # Errors
/// When it cannot start, exits, or is not ready within [`READY_TIMEOUT`] (it is then killed).
pub async fn start(
    name: &'static str,
    command: Command,
    echo: Echo,
) -> anyhow::Result<(Child, String)> {
    start_with_input(name, command, echo, None).await
}

/// [`start`], writing `input` (when given) to the child's stdin and keeping that pipe open in
/// the returned [`Child`]: the child sees EOF once it is dropped, or once this process dies.
///
/// # Errors
/// As [`start`]; also when the input cannot be written.
pub async fn start_with_input(
    name: &'static str,
    mut command: Command,
    echo: Echo,
    input: Option<&[u8]>,
) -> anyhow::Result<(Child, String)> {
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    if let (Some(input), Some(stdin)) = (input, child.stdin.as_mut()) {
        stdin
            .write_all(input)
            .await
            .with_context(|| format!("writing to {name}"))?;
        stdin
            .flush()
            .await
            .with_context(|| format!("writing to {name}"))?;
    }
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
            echo.line(name, &line);
        }
        bail!("{name} exited before it was ready")
    })
    .await
    .map_err(|_| anyhow!("{name} was not ready within {READY_TIMEOUT:?}"))
    .and_then(|r| r);
    let address = match address {
        Ok(a) => a,
        Err(e) => {
            let _ = child.kill().await;
            return Err(e);
        }
    };
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            echo.line(name, &line);
        }
    });
    Ok((child, address))
}

/// SIGTERM, then SIGKILL after [`STOP_TIMEOUT`].
pub async fn stop(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(STOP_TIMEOUT, child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::set_by_cargo_run;

    #[test]
    fn only_the_variables_cargo_run_sets_are_left_out_of_the_sibling_build() {
        for name in [
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_NAME",
        ] {
            assert!(set_by_cargo_run(name), "{name}");
        }
        for name in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_JOBS",
            "CARGO_PROFILE_RELEASE_LTO",
            "CARGO_NET_OFFLINE",
            "PATH",
        ] {
            assert!(!set_by_cargo_run(name), "{name}");
        }
    }
}
