//! `ekms bench`: a closed-loop load generator for the KMS API, measured side by side with a
//! baseline in the same run.
//!
//! N workers, each with its own HTTP/1.1 keep-alive connection, send real SigV4-signed
//! requests back to back for a fixed time after a one-second warm-up, and the run reports
//! requests per second, latency percentiles and errors. `--baseline` also loads, in the same
//! process and with the same client, a bare hyper server that answers a body of the same size
//! behind the parent's relay code, so ekms's figures read as a fraction of the ceiling. The two
//! are measured in [`ROUNDS`] alternating slices (ekms, baseline, ekms, ...) that add up to
//! `--duration` each, so a machine whose speed drifts during the run moves both alike.
//!
//! What it trusts: only the CA certificate it is given for https. What it does not do: it
//! never fakes a figure; failed requests (including operations a server does not support) are
//! counted as errors and the first one is shown.

pub mod baseline;
pub(crate) mod client;
pub(crate) mod credentials;
mod live;
mod load;
mod report;
mod unseal;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use bytes::Bytes;
use ring::rand::{SecureRandom as _, SystemRandom};

use client::{Connector, Endpoint, Signer};
use load::{Plan, Workload};
use report::{JsonLine, Summary};

/// Slices of ekms and of the baseline, alternating, with `--baseline`.
const ROUNDS: u32 = 3;
/// Warm-up before each measured window; nothing in it is counted.
const WARMUP: Duration = Duration::from_secs(1);
/// Bound on one request, connecting included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest plaintext KMS Encrypt accepts.
const MAX_PLAINTEXT: usize = 4096;
/// Upper bound on `--connections`.
const MAX_CONNECTIONS: i64 = 1024;
/// Upper bound on `--duration`, in seconds.
const MAX_DURATION_SECS: u64 = 3600;
/// Bytes of data key GenerateDataKey asks for.
const DATA_KEY_BYTES: usize = 32;
/// Upper bound on `--keys` (the enclave holds at most 2,000,000 keys).
const MAX_UNSEAL_KEYS: u64 = 2_000_000;

/// The operation to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchOp {
    /// Encrypt `--size` random bytes (at most 4096) under a key made at setup.
    Encrypt,
    /// Decrypt one ciphertext of `--size` bytes, made at setup, over and over.
    Decrypt,
    /// GenerateDataKey with NumberOfBytes 32.
    GenerateDataKey,
    /// Sign a `--size`-byte message (not supported by the server yet: counted as errors).
    Sign,
    /// CreateKey on every request.
    CreateKey,
    /// CreateGrant on one key on every request: each makes a new grant, so the key's grants
    /// grow through the run (start the server with quotas that allow them, e.g.
    /// `--quota grants-per-key=1000000 --quota grants-per-grantee=1000000`).
    CreateGrant,
    /// Build a sealed store of `--keys` keys offline, start ekms on it, and time unseal and
    /// load (`--lookup`: then Encrypt under one of those keys).
    Unseal,
}

impl BenchOp {
    /// The name used on the command line and in the JSON line.
    pub fn name(self) -> &'static str {
        match self {
            BenchOp::Encrypt => "encrypt",
            BenchOp::Decrypt => "decrypt",
            BenchOp::GenerateDataKey => "generate-data-key",
            BenchOp::Sign => "sign",
            BenchOp::CreateKey => "create-key",
            BenchOp::CreateGrant => "create-grant",
            BenchOp::Unseal => "unseal",
        }
    }
}

/// `ekms bench` options.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The KMS endpoint: http://HOST:PORT or https://HOST:PORT (as printed by `ekms dev`).
    #[arg(long, default_value = "http://127.0.0.1:4599")]
    pub endpoint: String,
    /// The operation to load.
    #[arg(long, value_enum)]
    pub op: BenchOp,
    /// Plaintext or message size in bytes (encrypt, decrypt, sign).
    #[arg(long, default_value_t = 4096)]
    pub size: usize,
    /// Concurrent connections, one closed-loop worker each.
    #[arg(long, default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..=MAX_CONNECTIONS))]
    pub connections: u16,
    /// Measured seconds, after a one-second warm-up (with --baseline: for each of ekms and the
    /// baseline, in alternating slices, each after its own warm-up).
    #[arg(long, default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=MAX_DURATION_SECS))]
    pub duration: u64,
    /// Use TLS (implied by an https:// endpoint).
    #[arg(long)]
    pub tls: bool,
    /// CA certificate (PEM) to trust for TLS; default $AWS_CA_BUNDLE.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Also measure the bare-hyper-behind-the-relay baseline in the same run, alternating with
    /// ekms.
    #[arg(long)]
    pub baseline: bool,
    /// Print exactly one JSON line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// With `--op unseal`: how many keys the sealed store holds.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_UNSEAL_KEYS))]
    pub keys: Option<u64>,
    /// With `--op unseal`: after the load, run the Encrypt load (`--size`, `--connections`,
    /// `--duration`) under one of the loaded keys, signed with the environment's credentials
    /// (sealed into the store as its admin).
    #[arg(long)]
    pub lookup: bool,
    /// With `--op unseal`: build the store in etcd under this URL's (empty) prefix,
    /// etcd://HOST:PORT/PREFIX, instead of the embedded store.
    #[arg(long, value_name = "URL")]
    pub store: Option<ekms_parent::store::EtcdUrl>,
}

/// Runs `ekms bench`.
///
/// # Errors
///
/// Bad arguments, missing credentials or CA, a failed setup (CreateKey, Encrypt for
/// decrypt), or for `--op unseal` a failed build, start or unseal. Failures during the
/// measured run are counted, not returned.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.op == BenchOp::Unseal {
        let keys = args
            .keys
            .ok_or_else(|| anyhow!("--op unseal needs --keys N"))?;
        if args.lookup && !(1..=MAX_PLAINTEXT).contains(&args.size) {
            bail!("--size must be from 1 to {MAX_PLAINTEXT} for --lookup");
        }
        return unseal::run(unseal::Options {
            keys,
            json: args.json,
            store: args.store.clone(),
            lookup: args.lookup.then_some(unseal::Lookup {
                size: args.size,
                connections: usize::from(args.connections),
                duration: Duration::from_secs(args.duration),
            }),
        })
        .await;
    }
    if args.keys.is_some() || args.lookup || args.store.is_some() {
        bail!("--keys, --lookup and --store apply to --op unseal only");
    }
    if matches!(args.op, BenchOp::Encrypt | BenchOp::Decrypt | BenchOp::Sign)
        && !(1..=MAX_PLAINTEXT).contains(&args.size)
    {
        bail!(
            "--size must be from 1 to {MAX_PLAINTEXT} for {}",
            args.op.name()
        );
    }
    let connections = usize::from(args.connections);
    let endpoint = Endpoint::parse(&args.endpoint, args.tls)?;
    let tls = if endpoint.https {
        let ca = args
            .ca
            .clone()
            .or_else(|| std::env::var_os("AWS_CA_BUNDLE").map(PathBuf::from))
            .ok_or_else(|| anyhow!("TLS needs the server's CA: pass --ca FILE"))?;
        Some(client::tls_client_config(
            client::root_store_from_pem_file(&ca)?,
        )?)
    } else {
        None
    };
    let connector = Connector::new(endpoint, tls)?;
    let credentials = credentials::from_environment()?;
    let region = std::env::var("AWS_DEFAULT_REGION")
        .or_else(|_| std::env::var("AWS_REGION"))
        .ok()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "us-east-1".to_owned());
    let signer = Arc::new(Signer::new(&credentials, region));

    let workload = Arc::new(
        tokio::time::timeout(
            4 * REQUEST_TIMEOUT,
            setup(&connector, &signer, args.op, args.size),
        )
        .await
        .map_err(|_| anyhow!("setup did not finish within {:?}", 4 * REQUEST_TIMEOUT))??,
    );
    let plan = Plan {
        connections,
        warmup: WARMUP,
        duration: Duration::from_secs(args.duration),
        request_timeout: REQUEST_TIMEOUT,
    };

    let rounds = if args.baseline { ROUNDS } else { 1 };
    let slice = Plan {
        duration: plan.duration / rounds,
        ..plan
    };
    let mut ekms: Option<load::Outcome> = None;
    let mut base_outcome: Option<load::Outcome> = None;
    // Started after the first ekms slice, which tells the size of ekms's answers.
    let mut base: Option<(baseline::Baseline, Connector)> = None;
    let slices = if args.baseline { 2 * rounds } else { rounds };
    let live = live::Live::start((slice.warmup + slice.duration) * slices);
    for _ in 0..rounds {
        live.loading("ekms");
        let slice_outcome = bounded(
            load::run(&connector, &signer, &workload, slice, live.counts()),
            slice,
        )
        .await?;
        let ekms = load::Outcome::accumulate(&mut ekms, slice_outcome);
        if !args.baseline {
            continue;
        }
        if base.is_none() {
            let len = ekms
                .response_len
                .unwrap_or_else(|| typical_response_len(args.op, args.size));
            let ekms_exe = std::env::current_exe().context("locating the ekms binary")?;
            let server = baseline::start(len, connector.endpoint().https, &ekms_exe).await?;
            let base_connector =
                Connector::new(server.endpoint.clone(), server.tls_client.clone())?;
            base = Some((server, base_connector));
        }
        if let Some((_, base_connector)) = &base {
            live.loading("baseline");
            let slice_outcome = bounded(
                load::run(base_connector, &signer, &workload, slice, live.counts()),
                slice,
            )
            .await?;
            load::Outcome::accumulate(&mut base_outcome, slice_outcome);
        }
    }
    live.finish();
    if let Some((server, _)) = base {
        server.stop().await;
    }
    let ekms = ekms.ok_or_else(|| anyhow!("no measurement"))?;
    if let Some(e) = &ekms.first_error {
        eprintln!("ekms bench: {}: first error: {e}", args.op.name());
    }
    let ekms_summary = Summary::new(&ekms.histogram, ekms.errors, ekms.window);
    let baseline_summary = base_outcome.map(|outcome| {
        if let Some(e) = &outcome.first_error {
            eprintln!("ekms bench: baseline: first error: {e}");
        }
        Summary::new(&outcome.histogram, outcome.errors, outcome.window)
    });

    if args.json {
        let line = JsonLine::new(
            args.op.name(),
            connections,
            &ekms_summary,
            baseline_summary.as_ref(),
        );
        println!("{}", serde_json::to_string(&line)?);
    } else {
        print!(
            "{}",
            report::table(
                args.op.name(),
                connections,
                ekms.window,
                &ekms_summary,
                baseline_summary.as_ref()
            )
        );
    }
    Ok(())
}

/// Runs a load with an outer bound, in case a worker ignores its own.
async fn bounded(
    run: impl std::future::Future<Output = load::Outcome>,
    plan: Plan,
) -> anyhow::Result<load::Outcome> {
    let limit = plan.warmup + plan.duration + plan.request_timeout + Duration::from_secs(5);
    tokio::time::timeout(limit, run)
        .await
        .map_err(|_| anyhow!("the run did not end within {limit:?}"))
}

/// Prepares what the timed loop sends: creates a key where the operation needs one, and for
/// decrypt encrypts the one ciphertext that is decrypted over and over.
async fn setup(
    connector: &Connector,
    signer: &Signer,
    op: BenchOp,
    size: usize,
) -> anyhow::Result<Workload> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut connection = connector
        .connect()
        .await
        .with_context(|| format!("connecting to {}", connector.endpoint().url()))?;
    let workload = |target: &str, body: serde_json::Value| Workload {
        target: format!("TrentService.{target}"),
        body: Bytes::from(body.to_string()),
    };
    let key_id = match op {
        BenchOp::CreateKey | BenchOp::Unseal => None,
        BenchOp::Sign => Some(signing_key(&mut connection, connector, signer).await?),
        _ => {
            let created = call(
                &mut connection,
                connector,
                signer,
                "CreateKey",
                serde_json::json!({ "Description": "ekms bench" }),
            )
            .await?;
            Some(
                created["KeyMetadata"]["KeyId"]
                    .as_str()
                    .ok_or_else(|| anyhow!("setup CreateKey: no KeyMetadata.KeyId in the answer"))?
                    .to_owned(),
            )
        }
    };
    Ok(match op {
        BenchOp::Encrypt => workload(
            "Encrypt",
            serde_json::json!({ "KeyId": key_id, "Plaintext": b64.encode(random_bytes(size)?) }),
        ),
        BenchOp::Decrypt => {
            let encrypted = call(
                &mut connection,
                connector,
                signer,
                "Encrypt",
                serde_json::json!({ "KeyId": key_id, "Plaintext": b64.encode(random_bytes(size)?) }),
            )
            .await?;
            let blob = encrypted["CiphertextBlob"]
                .as_str()
                .ok_or_else(|| anyhow!("setup Encrypt: no CiphertextBlob in the answer"))?;
            workload("Decrypt", serde_json::json!({ "CiphertextBlob": blob }))
        }
        BenchOp::GenerateDataKey => workload(
            "GenerateDataKey",
            serde_json::json!({ "KeyId": key_id, "NumberOfBytes": DATA_KEY_BYTES }),
        ),
        BenchOp::Sign => workload(
            "Sign",
            serde_json::json!({
                "KeyId": key_id,
                "Message": b64.encode(random_bytes(size)?),
                "MessageType": "RAW",
                "SigningAlgorithm": "ECDSA_SHA_256",
            }),
        ),
        BenchOp::CreateKey => workload("CreateKey", serde_json::json!({})),
        BenchOp::CreateGrant => workload(
            "CreateGrant",
            serde_json::json!({
                "KeyId": key_id,
                "GranteePrincipal": "arn:aws:iam::111122223333:user/ekms-bench-grantee",
                "Operations": ["Encrypt", "Decrypt"],
            }),
        ),
        BenchOp::Unseal => bail!("unseal has no request workload"),
    })
}

/// A key for Sign: an ECC_NIST_P256 SIGN_VERIFY key where the server makes one, else a
/// symmetric key, so that a server without asymmetric keys still gets Sign requests and its
/// answers are counted (as errors) rather than the run failing at setup.
async fn signing_key(
    connection: &mut client::Connection,
    connector: &Connector,
    signer: &Signer,
) -> anyhow::Result<String> {
    let asymmetric = serde_json::json!({
        "Description": "ekms bench",
        "KeySpec": "ECC_NIST_P256",
        "KeyUsage": "SIGN_VERIFY",
    });
    let created = match call(connection, connector, signer, "CreateKey", asymmetric).await {
        Ok(created) => created,
        Err(e) => {
            eprintln!("ekms bench: no asymmetric key ({e:#}); signing with a symmetric key");
            call(
                connection,
                connector,
                signer,
                "CreateKey",
                serde_json::json!({ "Description": "ekms bench" }),
            )
            .await?
        }
    };
    Ok(created["KeyMetadata"]["KeyId"]
        .as_str()
        .ok_or_else(|| anyhow!("setup CreateKey: no KeyMetadata.KeyId in the answer"))?
        .to_owned())
}

/// One setup request; its JSON answer, or an error naming the operation.
async fn call(
    connection: &mut client::Connection,
    connector: &Connector,
    signer: &Signer,
    operation: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let request = signer.request(
        connector.endpoint(),
        &format!("TrentService.{operation}"),
        &Bytes::from(body.to_string()),
    )?;
    let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, connection.send(request))
        .await
        .map_err(|_| anyhow!("setup {operation}: no answer within {REQUEST_TIMEOUT:?}"))?
        .with_context(|| format!("setup {operation}"))?;
    if !status.is_success() {
        bail!(
            "setup {operation} failed: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    serde_json::from_slice(&body).with_context(|| format!("setup {operation}: answer is not JSON"))
}

fn random_bytes(len: usize) -> anyhow::Result<Vec<u8>> {
    let mut out = vec![0u8; len];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| anyhow!("the OS random source failed"))?;
    Ok(out)
}

/// Base64 length of `n` bytes (padded).
fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Answer size the baseline uses when the ekms run had no successful answer to copy:
/// the base64 fields of the operation's answer plus about 150 bytes of JSON and key id.
/// A ciphertext blob is the plaintext plus 81 bytes of header, salt, nonce and tag.
fn typical_response_len(op: BenchOp, size: usize) -> usize {
    const FRAME: usize = 150;
    const BLOB_OVERHEAD: usize = 81;
    match op {
        BenchOp::Encrypt => base64_len(size + BLOB_OVERHEAD) + FRAME,
        BenchOp::Decrypt => base64_len(size) + FRAME,
        BenchOp::GenerateDataKey => {
            base64_len(DATA_KEY_BYTES) + base64_len(DATA_KEY_BYTES + BLOB_OVERHEAD) + FRAME
        }
        // An ECDSA P-256 DER signature is at most 72 bytes.
        BenchOp::Sign => base64_len(72) + FRAME,
        // KeyMetadata: ids, ARN, dates, usage, spec, algorithms.
        BenchOp::CreateKey | BenchOp::Unseal => 600,
        BenchOp::CreateGrant => 400,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn typical_sizes_follow_the_base64_of_the_blob() {
        assert_eq!(base64_len(0), 0);
        assert_eq!(base64_len(1), 4);
        assert_eq!(base64_len(3), 4);
        assert_eq!(base64_len(4), 8);
        assert_eq!(
            typical_response_len(BenchOp::Encrypt, 4096),
            base64_len(4177) + 150
        );
        assert!(typical_response_len(BenchOp::Decrypt, 4096) > 5000);
    }

    #[tokio::test]
    async fn unseal_needs_keys_and_keys_need_unseal() {
        let args = |op, keys| BenchArgs {
            endpoint: "http://127.0.0.1:1".into(),
            op,
            size: 4096,
            connections: 1,
            duration: 1,
            tls: false,
            ca: None,
            baseline: false,
            json: true,
            keys,
            lookup: false,
            store: None,
        };
        let err = run(args(BenchOp::Unseal, None))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs --keys"), "{err}");
        let err = run(args(BenchOp::Encrypt, Some(10)))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("--op unseal only"), "{err}");
    }

    /// The generator, the signer and the baseline together: load the baseline (child
    /// processes of the built `ekms`, plain and TLS) for a short window and check that
    /// requests flow without errors.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn generator_drives_the_baseline_without_errors() {
        // target/<profile>/deps/<this test> -> target/<profile>/ekms (scripts/test.sh builds it).
        let ekms = std::env::current_exe()
            .unwrap()
            .parent()
            .and_then(std::path::Path::parent)
            .unwrap()
            .join("ekms");
        for tls in [false, true] {
            let base = baseline::start(1000, tls, &ekms).await.unwrap();
            let connector = Connector::new(base.endpoint.clone(), base.tls_client.clone()).unwrap();
            let creds = credentials::Credentials::for_tests("AKIDEXAMPLE", "secret");
            let signer = Arc::new(Signer::new(&creds, "us-east-1".into()));
            let workload = Arc::new(Workload {
                target: "TrentService.Encrypt".into(),
                body: Bytes::from_static(b"{\"KeyId\":\"k\",\"Plaintext\":\"AAAA\"}"),
            });
            let plan = Plan {
                connections: 4,
                warmup: Duration::from_millis(100),
                duration: Duration::from_millis(400),
                request_timeout: Duration::from_secs(5),
            };
            let counts = Arc::new(load::Counts::default());
            let outcome = load::run(&connector, &signer, &workload, plan, Some(&counts)).await;
            assert_eq!(outcome.errors, 0, "{:?}", outcome.first_error);
            assert!(outcome.histogram.len() > 10, "tls={tls}");
            // The progress counts see every answer, the warm-up's too.
            assert!(counts.ok.load(Ordering::Relaxed) >= outcome.histogram.len());
            assert_eq!(counts.failed.load(Ordering::Relaxed), 0);
            assert_eq!(outcome.response_len, Some(1000));
            let summary = Summary::new(&outcome.histogram, outcome.errors, outcome.window);
            assert!(summary.requests_per_sec > 0.0);
            assert!(summary.p50_ms <= summary.p99_ms);
        }
    }

    #[tokio::test]
    async fn a_dead_endpoint_counts_errors_and_stops_on_time() {
        // Bind then drop, so the port is (very likely) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}"), false).unwrap();
        let connector = Connector::new(endpoint, None).unwrap();
        let creds = credentials::Credentials::for_tests("AKIDEXAMPLE", "secret");
        let signer = Arc::new(Signer::new(&creds, "us-east-1".into()));
        let workload = Arc::new(Workload {
            target: "TrentService.CreateKey".into(),
            body: Bytes::from_static(b"{}"),
        });
        let plan = Plan {
            connections: 2,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(300),
            request_timeout: Duration::from_secs(1),
        };
        let started = std::time::Instant::now();
        let counts = Arc::new(load::Counts::default());
        let outcome = load::run(&connector, &signer, &workload, plan, Some(&counts)).await;
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(outcome.errors > 0);
        assert_eq!(counts.ok.load(Ordering::Relaxed), 0);
        assert!(counts.failed.load(Ordering::Relaxed) >= outcome.errors);
        assert_eq!(outcome.histogram.len(), 0);
        assert!(outcome.first_error.unwrap().contains("connecting"));
    }
}
