//! `ekms measurements`: the PCR sets allowed to join a deployment besides the running members'
//! own image (a rolling upgrade adds the new image's), changed only with M of N custodians'
//! signatures.
//!
//! Custodians sign apart (`sign`, each with their own key, on their own machine) or together
//! (`add --key K1 --key K2`); the enclave counts each custodian once and only for the version
//! the change was signed for.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use p384::ecdsa::signature::Signer as _;
use serde_json::{json, Value};

use crate::custody::{call, Target};

/// `ekms measurements` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum MeasurementsCommand {
    /// The measurements allowed to join, their version, and the running member's own.
    List(ListArgs),
    /// Sign a change as one custodian; prints the signature (base64) for `add`/`remove`.
    Sign(SignArgs),
    /// Allow a PCR set to join (a new image), with M custodians' signatures.
    Add(ChangeArgs),
    /// Stop allowing a PCR set, with M custodians' signatures.
    Remove(ChangeArgs),
}

/// `ekms measurements list` options.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub target: Target,
}

/// `ekms measurements sign` options.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// The deployment (`ekms status` shows its DeploymentId).
    #[arg(long)]
    pub deployment: String,
    /// The version the change applies to (`ekms measurements list`).
    #[arg(long)]
    pub version: u64,
    /// `add` or `remove`.
    #[arg(long)]
    pub operation: String,
    /// The PCR set (`pcrs.json`, or `nitro-cli build-enclave`'s output).
    #[arg(long)]
    pub pcrs: PathBuf,
    /// This custodian's secret key (custodian.key).
    #[arg(long)]
    pub key: PathBuf,
}

/// `ekms measurements add|remove` options.
#[derive(Debug, clap::Args)]
pub struct ChangeArgs {
    #[command(flatten)]
    pub target: Target,
    /// The PCR set (`pcrs.json`, or `nitro-cli build-enclave`'s output).
    #[arg(long)]
    pub pcrs: PathBuf,
    /// A custodian's secret key to sign with here (repeatable).
    #[arg(long = "key")]
    pub keys: Vec<PathBuf>,
    /// A file holding a signature a custodian made with `sign` (repeatable).
    #[arg(long = "signature")]
    pub signatures: Vec<PathBuf>,
}

/// Runs an `ekms measurements` subcommand; what to print.
///
/// # Errors
/// When a file cannot be read, a call fails, or the enclave refuses.
pub async fn run(command: MeasurementsCommand) -> anyhow::Result<String> {
    match command {
        MeasurementsCommand::List(args) => Ok(pretty(
            &call(&args.target, "ListMeasurements", json!({})).await?,
        )),
        MeasurementsCommand::Sign(args) => {
            let pcrs = read_pcrs(&args.pcrs)?;
            sign(
                &args.key,
                &args.deployment,
                args.version,
                &args.operation,
                &pcrs,
            )
        }
        MeasurementsCommand::Add(args) => change(&args, "add").await,
        MeasurementsCommand::Remove(args) => change(&args, "remove").await,
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// The canonical JSON of the PCR set in `path`.
fn read_pcrs(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let set = ekms_shared::attestation::pcr_set_from_json(&text)
        .with_context(|| format!("{} is not a PCR file", path.display()))?;
    Ok(ekms_shared::attestation::pcr_set_to_json(&set).to_string())
}

/// One custodian's signature of the change (base64 of DER).
fn sign(
    key: &Path,
    deployment: &str,
    version: u64,
    operation: &str,
    pcrs_json: &str,
) -> anyhow::Result<String> {
    if operation != "add" && operation != "remove" {
        return Err(anyhow!("--operation must be add or remove"));
    }
    let secret = ekms_shared::custody::load_secret(key)
        .with_context(|| format!("reading {}", key.display()))?;
    let message = ekms_shared::custody::measurements_signed_message(
        deployment, version, operation, pcrs_json,
    );
    let signature: p384::ecdsa::Signature = p384::ecdsa::SigningKey::from(&secret).sign(&message);
    Ok(B64.encode(signature.to_der().as_bytes()))
}

async fn change(args: &ChangeArgs, operation: &str) -> anyhow::Result<String> {
    let pcrs_json = read_pcrs(&args.pcrs)?;
    let status = call(&args.target, "Status", json!({})).await?;
    let deployment = status["DeploymentId"]
        .as_str()
        .ok_or_else(|| anyhow!("the enclave names no deployment (is it initialized?)"))?
        .to_owned();
    let current = call(&args.target, "ListMeasurements", json!({})).await?;
    let version = current["Version"]
        .as_u64()
        .ok_or_else(|| anyhow!("ListMeasurements answered no Version"))?;
    let mut signatures = Vec::new();
    for key in &args.keys {
        signatures.push(sign(key, &deployment, version, operation, &pcrs_json)?);
    }
    for path in &args.signatures {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        signatures.push(text.trim().to_owned());
    }
    let pcrs: Value = serde_json::from_str(&pcrs_json)?;
    let answer = call(
        &args.target,
        "ChangeMeasurements",
        json!({
            "Operation": operation,
            "Pcrs": pcrs,
            "Version": version,
            "Signatures": signatures,
        }),
    )
    .await?;
    Ok(pretty(&answer))
}
