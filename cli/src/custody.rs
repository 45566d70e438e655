//! `ekms init`, `ekms unseal`, `ekms status`: the custodians' side of the domain key.
//!
//! Both `init` and `unseal` first fetch an attestation document with a fresh nonce and verify
//! it (pinned root, pinned PCRs, the nonce, at most five minutes old) before they act:
//! `unseal` encrypts its share only to the boot key bound in that verified document.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context as _};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use p384::elliptic_curve::rand_core::OsRng;
use ring::rand::{SecureRandom as _, SystemRandom};
use serde_json::{json, Value};

use ekms_shared::attestation::{self, Policy, TrustAnchor};
use ekms_shared::custody::{self as shares, ShareFile};
use ekms_shared::envelope::{self, Purpose};

use super::bench::client::{self, Connector, Endpoint};
use super::progress;

/// How old an attestation document may be when a custodian acts on it.
const MAX_DOCUMENT_AGE: Duration = Duration::from_secs(300);
/// Time allowed for one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Time allowed for an Unseal, whose last share's answer waits for the whole store to load (a
/// million keys from etcd take about a minute); the relay's idle timeout is as long.
const UNSEAL_TIMEOUT: Duration = Duration::from_secs(300);

/// Time allowed for `Ekms.<op>`, on a plain or an attested connection.
pub(crate) fn request_timeout(op: &str) -> Duration {
    if op == "Unseal" {
        UNSEAL_TIMEOUT
    } else {
        REQUEST_TIMEOUT
    }
}

/// Where the enclave is and how to trust it.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The ekms endpoint, e.g. https://kms.internal:4599.
    #[arg(long)]
    pub endpoint: String,
    /// CA certificate (PEM) to trust for an https endpoint. Without it, `init` and `unseal`
    /// prove the certificate presented by attestation on their own connection (as `ekms
    /// trust` does) and send nothing unless that proof holds.
    #[arg(long)]
    pub ca: Option<PathBuf>,
}

/// Where custody calls go: a connection whose certificate the enclave proved by attestation
/// (https without `--ca`), or connections trusting the CA given (or plain http).
enum Session {
    Attested(Box<super::trust::AttestedConnection>),
    Direct(Target),
}

impl Session {
    /// Opens a session to `target`, proving its certificate against `expect` when no CA is
    /// pinned: nothing is sent to an endpoint that fails the proof.
    async fn open(target: &Target, expect: &Expectation) -> anyhow::Result<Session> {
        let https = Endpoint::parse(&target.endpoint, false)?.https;
        if https && target.ca.is_none() {
            let connection = super::trust::attested_connection(&target.endpoint, expect)
                .await
                .context("proving the endpoint's certificate by attestation")?;
            Ok(Session::Attested(Box::new(connection)))
        } else {
            Ok(Session::Direct(target.clone()))
        }
    }

    async fn call(&mut self, op: &str, body: Value) -> anyhow::Result<Value> {
        match self {
            Session::Attested(connection) => connection.call(op, &body).await,
            Session::Direct(target) => call(target, op, body).await,
        }
    }
}

/// What an attestation must prove.
#[derive(Debug, Clone, clap::Args)]
pub struct Expectation {
    /// The PCRs the enclave image must have (`pcrs.json`, as `nitro-cli build-enclave` prints).
    #[arg(long)]
    pub expect_pcrs: PathBuf,
    /// Root certificate (PEM) to verify against; default: the AWS Nitro Enclaves root.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Accept a debug-mode enclave (PCR0 all zero). Never in production.
    #[arg(long)]
    pub allow_debug: bool,
}

/// What an attestation must prove, when the command proves the endpoint's certificate rather
/// than trusting `--ca` (`ekms status`).
#[derive(Debug, Clone, clap::Args)]
pub struct OptionalExpectation {
    /// The PCRs the enclave image must have: prove the endpoint's certificate by attestation
    /// on this connection instead of trusting `--ca`.
    #[arg(long)]
    pub expect_pcrs: Option<PathBuf>,
    /// Root certificate (PEM) to verify against; default: the AWS Nitro Enclaves root.
    #[arg(long, requires = "expect_pcrs")]
    pub root: Option<PathBuf>,
    /// Accept a debug-mode enclave (PCR0 all zero). Never in production.
    #[arg(long, requires = "expect_pcrs")]
    pub allow_debug: bool,
}

impl OptionalExpectation {
    /// The expectation, when `--expect-pcrs` was given.
    pub fn given(&self) -> Option<Expectation> {
        self.expect_pcrs.clone().map(|expect_pcrs| Expectation {
            expect_pcrs,
            root: self.root.clone(),
            allow_debug: self.allow_debug,
        })
    }
}

/// `ekms status` options.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub expect: OptionalExpectation,
}

/// `ekms init` options.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub expect: Expectation,
    /// A custodian's public key (custodian.pub); one per custodian, in share order.
    #[arg(long = "custodian", required = true)]
    pub custodians: Vec<PathBuf>,
    /// Shares needed to unseal (M of N).
    #[arg(long)]
    pub threshold: u8,
    /// Name of the first admin principal.
    #[arg(long, default_value = "admin")]
    pub admin_name: String,
    /// Where share-N.json and credentials are written.
    #[arg(long)]
    pub out: PathBuf,
}

/// `ekms unseal` options.
#[derive(Debug, clap::Args)]
pub struct UnsealArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub expect: Expectation,
    /// This custodian's share file.
    #[arg(long)]
    pub share: PathBuf,
    /// This custodian's secret key (custodian.key).
    #[arg(long)]
    pub key: PathBuf,
}

/// An unauthenticated custody call: `POST /` with `X-Amz-Target: Ekms.<op>`.
///
/// # Errors
/// When the endpoint cannot be reached, times out, or answers an error or not JSON.
pub async fn call(target: &Target, op: &str, body: Value) -> anyhow::Result<Value> {
    let endpoint = Endpoint::parse(&target.endpoint, false)?;
    let tls = match (&target.ca, endpoint.https) {
        (Some(ca), _) => Some(client::tls_client_config(
            client::root_store_from_pem_file(ca)?,
        )?),
        (None, true) => bail!("an https endpoint needs --ca (or --expect-pcrs, to prove its certificate by attestation)"),
        (None, false) => None,
    };
    let connector = Connector::new(endpoint.clone(), tls)?;
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri("/")
        .header(http::header::HOST, endpoint.authority())
        .header(http::header::CONTENT_TYPE, client::CONTENT_TYPE)
        .header("x-amz-target", format!("Ekms.{op}"))
        .body(Full::new(Bytes::from(serde_json::to_vec(&body)?)))?;
    let timeout = request_timeout(op);
    let (status, body) = tokio::time::timeout(timeout, async {
        let mut connection = connector
            .connect()
            .await
            .with_context(|| format!("connecting to {}", endpoint.url()))?;
        connection.send(request).await.map_err(anyhow::Error::from)
    })
    .await
    .map_err(|_| anyhow!("Ekms.{op} timed out after {timeout:?}"))??;
    let value: Value = serde_json::from_slice(&body).with_context(|| {
        format!("Ekms.{op} answered HTTP {status} with a body that is not JSON")
    })?;
    if !status.is_success() {
        bail!(
            "Ekms.{op} failed: {}: {}",
            value["__type"].as_str().unwrap_or("error"),
            value["message"].as_str().unwrap_or("")
        );
    }
    Ok(value)
}

fn blob(value: &Value, field: &str) -> anyhow::Result<Vec<u8>> {
    let text = value[field]
        .as_str()
        .ok_or_else(|| anyhow!("the answer has no {field}"))?;
    B64.decode(text)
        .with_context(|| format!("{field} is not base64"))
}

/// 32 bytes from the OS random source.
///
/// # Errors
/// When the random source fails.
pub fn fresh_nonce() -> anyhow::Result<[u8; 32]> {
    let mut nonce = [0u8; 32];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| anyhow!("the OS random source failed"))?;
    Ok(nonce)
}

/// Verifies an attestation document against `expect` (pinned root and PCRs), `nonce`, and an
/// age of at most five minutes.
///
/// # Errors
/// When a file cannot be read or the document does not verify.
pub fn verify_document(
    doc: &[u8],
    expect: &Expectation,
    nonce: &[u8],
) -> anyhow::Result<attestation::VerifiedAttestation> {
    let anchor = match &expect.root {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            TrustAnchor::from_pem(&pem)
                .with_context(|| format!("{} is not a root certificate", path.display()))?
        }
        None => TrustAnchor::aws_nitro_root(),
    };
    let pcrs_json = std::fs::read_to_string(&expect.expect_pcrs)
        .with_context(|| format!("reading {}", expect.expect_pcrs.display()))?;
    let pcrs = attestation::pcr_set_from_json(&pcrs_json)
        .with_context(|| format!("{} is not a PCR file", expect.expect_pcrs.display()))?;
    let mut policy = Policy::pinned(pcrs)
        .with_nonce(nonce.to_vec())
        .with_max_age(MAX_DOCUMENT_AGE);
    if expect.allow_debug {
        policy = policy.allowing_debug();
    }
    attestation::verify(doc, &anchor, SystemTime::now(), &policy)
        .context("the enclave's attestation document does not verify")
}

/// Fetches and verifies an attestation with a fresh nonce; returns the enclave's boot key
/// (SubjectPublicKeyInfo DER) bound in it.
///
/// # Errors
/// When the call fails or the document does not verify against `expect`.
pub async fn attested_boot_key(target: &Target, expect: &Expectation) -> anyhow::Result<Vec<u8>> {
    boot_key_on(&mut Session::open(target, expect).await?, expect).await
}

async fn boot_key_on(session: &mut Session, expect: &Expectation) -> anyhow::Result<Vec<u8>> {
    let nonce = fresh_nonce()?;
    let answer = session
        .call("GetAttestation", json!({ "Nonce": B64.encode(nonce) }))
        .await?;
    let doc = blob(&answer, "AttestationDocument")?;
    let verified = verify_document(&doc, expect, &nonce)?;
    let key = verified
        .public_key()
        .ok_or_else(|| anyhow!("the attestation document binds no public key"))?
        .to_vec();
    envelope::public_key_from_spki_der(&key).context("the attested key is not a P-384 key")?;
    Ok(key)
}

fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

/// The first admin's access key, as `ekms init` returns it.
pub struct AdminCredentials {
    /// User name.
    pub user_name: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: zeroize::Zeroizing<String>,
}

/// Runs `ekms init`; returns the share files and the admin credentials it wrote.
///
/// # Errors
/// When attestation, the call, or writing the files fails.
pub async fn init(args: &InitArgs) -> anyhow::Result<(Vec<PathBuf>, AdminCredentials)> {
    let mut session = Session::open(&args.target, &args.expect).await?;
    let boot_key = boot_key_on(&mut session, &args.expect).await?;
    let mut custodian_der = Vec::with_capacity(args.custodians.len());
    for path in &args.custodians {
        let key =
            shares::load_public(path).with_context(|| format!("reading {}", path.display()))?;
        custodian_der.push(envelope::public_key_to_spki_der(&key)?);
    }
    let custodians: Vec<String> = custodian_der.iter().map(|d| B64.encode(d)).collect();
    let client_key = p384::SecretKey::random(&mut OsRng);
    let client_public = envelope::public_key_to_spki_der(&client_key.public_key())?;
    let nonce = fresh_nonce()?;
    let answer = session
        .call(
            "Initialize",
            json!({
                "Nonce": B64.encode(nonce),
                "Custodians": custodians,
                "Threshold": args.threshold,
                "ClientPublicKey": B64.encode(&client_public),
                "AdminName": args.admin_name,
            }),
        )
        .await?;
    let deployment_id = answer["DeploymentId"]
        .as_str()
        .ok_or_else(|| anyhow!("the answer has no DeploymentId"))?;
    let sealed = blob(&answer, "AdminCredentials")?;
    let share_files: Vec<ShareFile> = answer["Shares"]
        .as_array()
        .ok_or_else(|| anyhow!("the answer has no Shares"))?
        .iter()
        .map(|s| serde_json::from_value(s.clone()).context("a share is malformed"))
        .collect::<anyhow::Result<_>>()?;
    // The enclave attests the whole exchange: a parent that swapped a custodian key or a share
    // in transit is caught here, before anyone relies on this deployment.
    let expected = shares::InitTranscript {
        custodians: &custodian_der,
        threshold: args.threshold,
        client_public_key: &client_public,
        admin_name: &args.admin_name,
        deployment_id,
        shares: &share_files,
        admin_credentials: &sealed,
    }
    .digest()?;
    let verified = verify_document(&blob(&answer, "AttestationDocument")?, &args.expect, &nonce)
        .context("the Initialize answer is not attested by the expected enclave")?;
    // Public values.
    if verified.user_data() != Some(&expected[..]) || verified.public_key() != Some(&boot_key[..]) {
        bail!(
            "the Initialize exchange was altered in transit (the enclave attests another request \
             or answer): do NOT use deployment {deployment_id}; wipe its store and init again"
        );
    }
    let plain = envelope::open(
        &client_key,
        &Purpose::AdminCredentials,
        deployment_id.as_bytes(),
        &sealed,
    )
    .map_err(|_| anyhow!("the admin credentials do not open with this client's key"))?;
    let creds: Value = serde_json::from_slice(&plain).context("admin credentials are not JSON")?;
    let admin = AdminCredentials {
        user_name: creds["UserName"].as_str().unwrap_or_default().to_owned(),
        access_key_id: creds["AccessKeyId"].as_str().unwrap_or_default().to_owned(),
        secret_access_key: zeroize::Zeroizing::new(
            creds["SecretAccessKey"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut written = Vec::new();
    for file in &share_files {
        let path = args.out.join(file.file_name());
        write_private(&path, file.to_json()?.as_bytes())?;
        written.push(path);
    }
    write_private(
        &args.out.join("credentials"),
        credentials_file(&admin).as_bytes(),
    )?;
    Ok((written, admin))
}

/// AWS shared-credentials text for profile `ekms`.
pub fn credentials_file(admin: &AdminCredentials) -> zeroize::Zeroizing<String> {
    zeroize::Zeroizing::new(format!(
        "[ekms]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        admin.access_key_id, &*admin.secret_access_key
    ))
}

/// Runs `ekms unseal`; returns the enclave's status afterwards.
///
/// # Errors
/// When attestation fails, the share does not open with the key, or the enclave refuses it.
pub async fn unseal(args: &UnsealArgs) -> anyhow::Result<Value> {
    let share_text =
        std::fs::read(&args.share).with_context(|| format!("reading {}", args.share.display()))?;
    let file = ShareFile::from_json(&share_text)
        .with_context(|| format!("{} is not a share file", args.share.display()))?;
    let secret = shares::load_secret(&args.key)
        .with_context(|| format!("reading {}", args.key.display()))?;
    let plaintext = shares::open_share_file(&file, &secret).with_context(|| {
        format!(
            "{} does not open with {}",
            args.share.display(),
            args.key.display()
        )
    })?;
    let mut session = Session::open(&args.target, &args.expect).await?;
    let boot_key = boot_key_on(&mut session, &args.expect).await?;
    let enclave = envelope::public_key_from_spki_der(&boot_key)?;
    let sealed = envelope::seal_to(
        &enclave,
        &Purpose::Unseal,
        &boot_key,
        &plaintext.to_bytes()?,
    )
    .map_err(|_| anyhow!("sealing the share to the enclave failed"))?;
    // Signed with the custodian key: the enclave counts only shares its custodians submit.
    let message = shares::unseal_signed_message(&boot_key, sealed.as_bytes());
    let signing = p384::ecdsa::SigningKey::from(&secret);
    let signature: p384::ecdsa::Signature =
        p384::ecdsa::signature::Signer::sign(&signing, &message);
    let body = json!({
        "Envelope": B64.encode(sealed.as_bytes()),
        "Signature": B64.encode(signature.to_der().as_bytes()),
    });
    if !progress::shown() {
        return session.call("Unseal", body).await;
    }
    // A session of its own for the Status polls: this one waits for the Unseal's answer. Opened
    // now, since proving a certificate asks the enclave for a document, which it does not give
    // while it loads. Without it the Unseal goes ahead, with no figures.
    let poll = Session::open(&args.target, &args.expect).await.ok();
    unseal_showing_load(&mut session, poll, body).await
}

/// How often `ekms unseal` asks the enclave how far its load has come.
const STATUS_POLL: Duration = Duration::from_millis(500);

/// Sends the Unseal on `session`; until it is answered (the last share's answer waits for the
/// whole store to load), a spinner shows the records loaded so far and their rate, as
/// `Ekms.Status` on `poll` reports them (`RecordsLoaded`, a count only).
async fn unseal_showing_load(
    session: &mut Session,
    poll: Option<Session>,
    body: Value,
) -> anyhow::Result<Value> {
    let bar = progress::spinner(true, "submitting the share");
    let answer = tokio::select! {
        answer = session.call("Unseal", body) => answer,
        never = show_load(poll, &bar) => match never {},
    };
    bar.finish_and_clear();
    answer
}

/// Polls `Ekms.Status` on `poll` and shows `RecordsLoaded` on `bar`, for as long as it is let
/// run. A poll that fails only leaves the figures as they were.
async fn show_load(
    poll: Option<Session>,
    bar: &indicatif::ProgressBar,
) -> std::convert::Infallible {
    let Some(mut poll) = poll else {
        return std::future::pending().await;
    };
    let mut before: Option<(u64, std::time::Instant)> = None;
    loop {
        tokio::time::sleep(STATUS_POLL).await;
        let Ok(status) = poll.call("Status", json!({})).await else {
            continue;
        };
        let Some(records) = status["RecordsLoaded"].as_u64() else {
            continue;
        };
        let now = std::time::Instant::now();
        let rate = before
            .map(|(n, at)| {
                records.saturating_sub(n) as f64 / now.duration_since(at).as_secs_f64().max(1e-3)
            })
            .unwrap_or(0.0);
        before = Some((records, now));
        bar.set_message(format!(
            "the enclave is loading the sealed store: {} records, {} records/s",
            progress::thousands(records),
            progress::thousands(rate.round() as u64),
        ));
    }
}

/// `Ekms.Status` at `target`, trusting its `--ca` (or plain http).
///
/// # Errors
/// When the call fails.
/// `ekms join` options.
#[derive(Debug, clap::Args)]
pub struct JoinArgs {
    /// The sealed enclave that joins.
    #[command(flatten)]
    pub target: Target,
    /// A running member of the same deployment, which releases the domain key to it.
    #[arg(long, required_unless_present = "store")]
    pub peer: Option<String>,
    /// Instead of --peer: the shared store (etcd://HOST:PORT/PREFIX) whose members advertise
    /// their endpoints (ekms-parent --advertise); each is tried until one lets it join.
    #[arg(long, value_name = "URL", conflicts_with = "peer")]
    pub store: Option<String>,
    /// CA certificate (PEM) to trust for an https peer.
    #[arg(long)]
    pub peer_ca: Option<PathBuf>,
    /// Keep watching instead of joining once: every --interval, ask the enclave's status and
    /// join it whenever it is sealed (a member that restarted), printing one JSON line per
    /// join; a failed try is reported on stderr and tried again. For a supervisor on each
    /// member's host (scripts/ekms-join.service): custodians are then needed only when no
    /// member runs.
    #[arg(long)]
    pub watch: bool,
    /// With --watch: how often to ask (seconds, or with s, m, h).
    #[arg(long, value_name = "AGE", default_value = "5s", value_parser = watch_interval)]
    pub interval: std::time::Duration,
}

/// `--interval`: at least a second, at most an hour.
fn watch_interval(text: &str) -> Result<std::time::Duration, String> {
    let every = ekms_parent::store::audit_files::parse_age(text).map_err(|e| e.to_string())?;
    if every < std::time::Duration::from_secs(1) || every > std::time::Duration::from_secs(3600) {
        return Err("the interval must be between 1s and 1h".to_owned());
    }
    Ok(every)
}

/// `ekms join --watch`: joins the enclave whenever its status says `Sealed`, until stopped.
/// Each join's status goes to stdout as one JSON line; failures to stderr. Never returns but
/// on a signal (the caller's runtime ends it).
pub async fn watch_and_join(args: &JoinArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut tick = tokio::time::interval(args.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let state = match status_at(&args.target).await {
            Ok(status) => status["State"].as_str().unwrap_or_default().to_owned(),
            Err(e) => {
                eprintln!("ekms join --watch: {}: status: {e:#}", args.target.endpoint);
                continue;
            }
        };
        if state != "Sealed" {
            continue;
        }
        match join(args).await {
            Ok(status) => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{}", serde_json::to_string(&status)?)?;
                out.flush()?;
            }
            Err(e) => eprintln!("ekms join --watch: {}: {e:#}", args.target.endpoint),
        }
    }
}

/// Carries an attested join ([`ekms_enclave`'s `custody::join`]): the joiner's boot-key
/// document to the peer (`Ekms.Join`), the peer's sealed answer back (`Ekms.CompleteJoin`).
/// This command only carries: each enclave verifies the other's attestation, and the domain
/// key travels sealed to the joiner's attested key. The joiner's status is returned.
///
/// # Errors
/// When a call fails or an enclave refuses.
pub async fn join(args: &JoinArgs) -> anyhow::Result<Value> {
    let peers: Vec<String> = match (&args.peer, &args.store) {
        (Some(peer), _) => vec![peer.clone()],
        (None, Some(url)) => {
            let url: ekms_parent::store::EtcdUrl =
                url.parse().map_err(|why: String| anyhow!(why))?;
            let at = url.to_string();
            let members = tokio::task::spawn_blocking(move || {
                ekms_parent::store::EtcdStore::open(&url)?.members()
            })
            .await?
            .with_context(|| format!("reading the members advertised in {at}"))?;
            members
                .into_iter()
                .filter(|m| *m != args.target.endpoint)
                .collect()
        }
        (None, None) => bail!("give --peer or --store"),
    };
    let mut last = anyhow!("no member is advertised to join from");
    for peer in peers {
        match join_from(args, &peer).await {
            Ok(status) => return Ok(status),
            Err(e) => last = e.context(format!("joining from {peer}")),
        }
    }
    Err(last)
}

async fn join_from(args: &JoinArgs, peer: &str) -> anyhow::Result<Value> {
    let peer = Target {
        endpoint: peer.to_owned(),
        ca: args.peer_ca.clone(),
    };
    let mut nonce = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| anyhow!("the OS random number generator failed"))?;
    let attestation = call(
        &args.target,
        "GetAttestation",
        json!({ "Nonce": B64.encode(nonce) }),
    )
    .await
    .context("asking the joining enclave for its attestation")?;
    let document = attestation["AttestationDocument"]
        .as_str()
        .ok_or_else(|| anyhow!("the joining enclave answered no AttestationDocument"))?;
    let answer = call(&peer, "Join", json!({ "AttestationDocument": document }))
        .await
        .with_context(|| format!("asking {} to let the enclave join", peer.endpoint))?;
    call(
        &args.target,
        "CompleteJoin",
        json!({
            "Envelope": answer["Envelope"],
            "AttestationDocument": answer["AttestationDocument"],
        }),
    )
    .await
    .context("completing the join")
}

pub async fn status_at(target: &Target) -> anyhow::Result<Value> {
    call(target, "Status", json!({})).await
}

/// Runs `ekms status`: over https without `--ca`, on a connection whose certificate it proved
/// by attestation (`--expect-pcrs`).
///
/// # Errors
/// When the proof or the call fails.
pub async fn status(args: &StatusArgs) -> anyhow::Result<Value> {
    match args.expect.given() {
        Some(expect) => {
            Session::open(&args.target, &expect)
                .await?
                .call("Status", json!({}))
                .await
        }
        None => call(&args.target, "Status", json!({})).await,
    }
}
