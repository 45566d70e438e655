//! `ekms attestation verify|mock|mock-ca`.
//!
//! `verify` checks a Nitro attestation document against a pinned root (the embedded AWS
//! Nitro Enclaves root unless `--root` names another) and a PCR/nonce policy, and prints the
//! verified fields as JSON. `mock` and `mock-ca` are INSECURE: they make documents that prove
//! nothing, for development and tests off Nitro.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use ekms_shared::attestation::insecure::{pcrs_from_binary, MockAttester, MockCa};
use ekms_shared::attestation::{
    pcr_from_arg, pcr_set_from_json, pcr_set_to_json, unverified_timestamp, verify, PcrSet, Policy,
    TrustAnchor, VerifiedAttestation,
};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `ekms attestation` subcommands.
#[derive(Debug, Subcommand)]
pub enum AttestationCommand {
    /// Verify an attestation document; print its fields as JSON, or fail with the reason.
    Verify(VerifyArgs),
    /// INSECURE: make a mock attestation document signed by a mock CA.
    Mock(MockArgs),
    /// INSECURE: create a mock CA directory (root.pem, intermediate.pem, leaf.pem,
    /// leaf.key.pem).
    MockCa(MockCaArgs),
}

/// `ekms attestation verify` options.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The document: raw COSE_Sign1 bytes as the NSM returns them.
    #[arg(long, value_name = "FILE")]
    pub doc: PathBuf,
    /// Root certificate (PEM) to pin instead of the embedded AWS Nitro Enclaves root. Naming
    /// a mock CA's root.pem accepts INSECURE mock documents.
    #[arg(long, value_name = "PEM")]
    pub root: Option<PathBuf>,
    /// Verification time: RFC 3339 (2024-09-07T14:40:00Z), or `doc` for the document's own
    /// (unverified) timestamp, to check old documents. Default: now.
    #[arg(long, value_name = "RFC3339|doc")]
    pub at: Option<String>,
    /// Expected PCR, `N=HEX`; repeatable. Combined with --expect-pcrs into one set.
    #[arg(long = "pcr", value_name = "N=HEX")]
    pub pcrs: Vec<String>,
    /// Expected PCRs, a JSON file `{"PCR0": "hex", ...}` (as `nitro-cli build-enclave`
    /// prints under "Measurements").
    #[arg(long, value_name = "FILE")]
    pub expect_pcrs: Option<PathBuf>,
    /// Expected nonce, hex.
    #[arg(long, value_name = "HEX")]
    pub nonce: Option<String>,
    /// Accept debug-mode documents (PCR0 all zero), whose enclave memory the parent can read.
    #[arg(long)]
    pub allow_debug: bool,
    /// Refuse documents older than this many seconds at the verification time.
    #[arg(long, value_name = "SECONDS")]
    pub max_age: Option<u64>,
}

/// `ekms attestation mock` options.
#[derive(Debug, Args)]
pub struct MockArgs {
    /// Mock CA directory made by `ekms attestation mock-ca`.
    #[arg(long, value_name = "DIR")]
    pub ca: PathBuf,
    /// Public key to bind into the document (opaque bytes, usually DER SubjectPublicKeyInfo).
    #[arg(long, value_name = "DER")]
    pub public_key: PathBuf,
    /// Derive PCR0..2 from this enclave binary (mock measurements; PCR3.. zero).
    #[arg(long, value_name = "FILE")]
    pub enclave_binary: Option<PathBuf>,
    /// Set a PCR, `N=HEX` with 48 bytes of hex; repeatable, applied after --enclave-binary.
    #[arg(long = "pcr", value_name = "N=HEX")]
    pub pcrs: Vec<String>,
    /// Nonce to bind, hex.
    #[arg(long, value_name = "HEX")]
    pub nonce: Option<String>,
    /// User data to bind, read from a file.
    #[arg(long, value_name = "FILE")]
    pub user_data: Option<PathBuf>,
    /// Where to write the document.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `ekms attestation mock-ca` options.
#[derive(Debug, Args)]
pub struct MockCaArgs {
    /// Directory to create; existing files are not overwritten.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Runs one `ekms attestation` subcommand.
///
/// # Errors
/// The reason a document was refused, or an unreadable or invalid input file.
pub fn run(command: AttestationCommand) -> anyhow::Result<()> {
    match command {
        AttestationCommand::Verify(args) => {
            let report = verify_command(&args)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        AttestationCommand::Mock(args) => mock_command(&args),
        AttestationCommand::MockCa(args) => mock_ca_command(&args),
    }
}

/// Verifies as `ekms attestation verify` does and returns the JSON it prints.
///
/// # Errors
/// See [`run`].
pub fn verify_command(args: &VerifyArgs) -> anyhow::Result<serde_json::Value> {
    let doc = read(&args.doc)?;
    let anchor = match &args.root {
        None => TrustAnchor::aws_nitro_root(),
        Some(path) => TrustAnchor::from_pem(&read_text(path)?)
            .with_context(|| format!("{}: not a PEM root certificate", path.display()))?,
    };
    let now = match args.at.as_deref() {
        None => SystemTime::now(),
        Some("doc") => unverified_timestamp(&doc)
            .with_context(|| format!("{}: cannot read its timestamp", args.doc.display()))?,
        Some(text) => OffsetDateTime::parse(text, &Rfc3339)
            .with_context(|| format!("--at {text}: not RFC 3339 or `doc`"))?
            .into(),
    };

    let mut expected = PcrSet::new();
    if let Some(path) = &args.expect_pcrs {
        expected = pcr_set_from_json(&read_text(path)?)
            .with_context(|| format!("{}: not a PCR file", path.display()))?;
    }
    for arg in &args.pcrs {
        let (index, value) = pcr_from_arg(arg).with_context(|| format!("--pcr {arg}"))?;
        if let Some(previous) = expected.insert(index, value.clone()) {
            // public value
            if previous != value {
                bail!("PCR{index} given twice with different values");
            }
        }
    }
    let policy = Policy {
        allowed_pcrs: if expected.is_empty() {
            Vec::new()
        } else {
            vec![expected]
        },
        allow_debug: args.allow_debug,
        expected_nonce: args
            .nonce
            .as_deref()
            .map(hex::decode)
            .transpose()
            .context("--nonce: not hex")?,
        max_age: args.max_age.map(Duration::from_secs),
    };

    let verified = verify(&doc, &anchor, now, &policy)
        .with_context(|| format!("{}: attestation refused", args.doc.display()))?;
    report(&verified, &anchor, now)
}

fn report(
    verified: &VerifiedAttestation,
    anchor: &TrustAnchor,
    now: SystemTime,
) -> anyhow::Result<serde_json::Value> {
    let rfc3339 = |t: SystemTime| OffsetDateTime::from(t).format(&Rfc3339);
    let hex_or_null = |bytes: Option<&[u8]>| bytes.map(hex::encode);
    let root_sha256 = hex::encode(anchor.fingerprint_sha256());
    Ok(serde_json::json!({
        "module_id": verified.module_id(),
        "timestamp": verified.timestamp_ms(),
        "timestamp_rfc3339": rfc3339(verified.timestamp())?,
        "digest": verified.digest(),
        "debug_mode": verified.is_debug(),
        "pcrs": pcr_set_to_json(verified.pcrs()),
        "public_key": hex_or_null(verified.public_key()),
        "user_data": hex_or_null(verified.user_data()),
        "nonce": hex_or_null(verified.nonce()),
        "verified_at": rfc3339(now)?,
        "root_sha256": root_sha256,
        "root_is_aws_nitro": root_sha256 == hex::encode(TrustAnchor::aws_nitro_root().fingerprint_sha256()),
    }))
}

fn mock_command(args: &MockArgs) -> anyhow::Result<()> {
    let ca = MockCa::load(&args.ca)
        .with_context(|| format!("{}: not a mock CA directory", args.ca.display()))?;
    let mut pcrs: BTreeMap<u8, [u8; 48]> = match &args.enclave_binary {
        Some(path) => pcrs_from_binary(&read(path)?),
        None => (0u8..16).map(|i| (i, [0u8; 48])).collect(),
    };
    for arg in &args.pcrs {
        let (index, value) = pcr_from_arg(arg).with_context(|| format!("--pcr {arg}"))?;
        let value: [u8; 48] = value
            .try_into()
            .map_err(|v: Vec<u8>| anyhow::anyhow!("--pcr {arg}: {} bytes, need 48", v.len()))?;
        pcrs.insert(index, value);
    }
    if pcrs
        .get(&0)
        .is_some_and(|pcr0| pcr0.iter().all(|b| *b == 0))
    {
        eprintln!("warning: PCR0 is zero: the document looks like a debug-mode enclave's");
    }
    let public_key = read(&args.public_key)?;
    let user_data = args.user_data.as_deref().map(read).transpose()?;
    let nonce = args
        .nonce
        .as_deref()
        .map(hex::decode)
        .transpose()
        .context("--nonce: not hex")?;
    let attester = MockAttester::new(ca, pcrs)?;
    let doc = attester.attest(user_data.as_deref(), nonce.as_deref(), Some(&public_key))?;
    std::fs::write(&args.out, &doc).with_context(|| format!("{}", args.out.display()))?;
    eprintln!(
        "wrote {} ({} bytes): an INSECURE mock document, verifiable only with --root {}",
        args.out.display(),
        doc.len(),
        args.ca.join("root.pem").display()
    );
    Ok(())
}

fn mock_ca_command(args: &MockCaArgs) -> anyhow::Result<()> {
    let ca = MockCa::generate(SystemTime::now())?;
    ca.save(&args.out)?;
    eprintln!(
        "wrote an INSECURE mock CA to {}; its root.pem must never be trusted in production",
        args.out.display()
    );
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/tests/fixtures/nitro")
            .join(name)
    }

    fn verify_args(doc: PathBuf) -> VerifyArgs {
        VerifyArgs {
            doc,
            root: None,
            at: None,
            pcrs: Vec::new(),
            expect_pcrs: None,
            nonce: None,
            allow_debug: false,
            max_age: None,
        }
    }

    const PCR0: &str = "8bb159f202bb95d6d4d98e0e103918246cea734f1d57cd263e4fd56075ed53f6fa8c68854817a32749a241e11874c26b";

    #[test]
    fn verifies_a_real_document_at_its_own_time() {
        let mut args = verify_args(fixture(
            "nitro-attest-2025-01-06-eu-central-1-nondebug.cbor",
        ));
        args.at = Some("doc".to_owned());
        args.pcrs = vec![format!("0={PCR0}")];
        let report = verify_command(&args).unwrap();
        assert_eq!(
            report["module_id"],
            "i-0bee92034f3d60691-enc01943c5eaab3ad6a"
        );
        assert_eq!(report["timestamp"], 1_736_179_625_472_u64);
        assert_eq!(report["pcrs"]["PCR0"], PCR0);
        assert_eq!(report["nonce"], serde_json::Value::Null);
        assert_eq!(report["root_is_aws_nitro"], true);

        args.at = Some("2025-01-06T16:10:00Z".to_owned());
        verify_command(&args).unwrap();
    }

    #[test]
    fn refuses_with_the_reason() {
        let mut args = verify_args(fixture(
            "nitro-attest-2025-01-06-eu-central-1-nondebug.cbor",
        ));
        let expired = format!("{:#}", verify_command(&args).unwrap_err());
        assert!(expired.contains("expired"), "{expired}");

        args.at = Some("doc".to_owned());
        args.pcrs = vec![format!("0={}", "00".repeat(48))];
        let pcrs = format!("{:#}", verify_command(&args).unwrap_err());
        assert!(pcrs.contains("PCR0"), "{pcrs}");

        let mut debug = verify_args(fixture("eternis-2024-09-09-us-east-1-debug.cbor"));
        debug.at = Some("doc".to_owned());
        let refused = format!("{:#}", verify_command(&debug).unwrap_err());
        assert!(refused.contains("debug mode"), "{refused}");
        debug.allow_debug = true;
        verify_command(&debug).unwrap();
    }

    #[test]
    fn mock_round_trip() {
        let dir = std::env::temp_dir().join(format!("ekms-cli-attestation-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ca_dir = dir.join("ca");
        run(AttestationCommand::MockCa(MockCaArgs {
            out: ca_dir.clone(),
        }))
        .unwrap();
        std::fs::write(dir.join("key.der"), b"public key").unwrap();
        std::fs::write(dir.join("enclave.eif"), b"enclave").unwrap();
        let out = dir.join("doc.cbor");
        run(AttestationCommand::Mock(MockArgs {
            ca: ca_dir.clone(),
            public_key: dir.join("key.der"),
            enclave_binary: Some(dir.join("enclave.eif")),
            pcrs: Vec::new(),
            nonce: Some("0102".to_owned()),
            user_data: None,
            out: out.clone(),
        }))
        .unwrap();

        let expected = pcrs_from_binary(b"enclave");
        let pcrs_json = serde_json::json!({
            "PCR0": hex::encode(expected[&0]),
            "PCR1": hex::encode(expected[&1]),
            "PCR2": hex::encode(expected[&2]),
        });
        std::fs::write(dir.join("pcrs.json"), pcrs_json.to_string()).unwrap();
        let mut args = verify_args(out.clone());
        args.root = Some(ca_dir.join("root.pem"));
        args.expect_pcrs = Some(dir.join("pcrs.json"));
        args.nonce = Some("0102".to_owned());
        let report = verify_command(&args).unwrap();
        assert_eq!(report["public_key"], hex::encode(b"public key"));
        assert_eq!(report["root_is_aws_nitro"], false);

        // Never with the AWS root.
        args.root = None;
        assert!(verify_command(&args).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
