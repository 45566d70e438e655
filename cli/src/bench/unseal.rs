//! `ekms bench --op unseal --keys N`: how long a restart takes to unseal and load a store of N
//! keys, and how much memory the enclave then holds.
//!
//! 1. In a fresh temporary directory, a deployment is made offline, through the library and
//!    not the API: a dev custodian key, a random domain key split 1-of-1 into a share file
//!    sealed to that custodian, the deployment record, the admin principal and N symmetric keys
//!    sealed as records with the manifest ([`ekms_enclave::bench`]), written with
//!    [`RedbStore::commit`] in batches of [`BATCH`] records. These are the records the enclave's
//!    Initialize and persister write.
//! 2. `ekms-parent` (store on a unix socket, relay on a free loopback port) and
//!    `ekms-enclave --insecure-mock-enclave` (the release binaries next to this one) start as
//!    `ekms dev` starts them; the enclave comes up Sealed.
//! 3. `ekms unseal` ([`custody::unseal`]) is timed from submission until the enclave answers
//!    Unsealed with no refused record: `load_seconds`. Then the enclave's resident memory is
//!    read from `/proc/PID/status` (`VmRSS`, and `VmHWM` as the peak).
//! 4. With `--lookup`, the Encrypt load (`--size`, `--connections`, `--duration`) runs against
//!    one of the N loaded keys, so that lookups can be compared across store sizes.
//!
//! Both children are stopped and the directory removed at the end, whatever happens.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use bytes::Bytes;
use ring::rand::{SecureRandom as _, SystemRandom};
use serde::Serialize;
use tokio::process::{Child, Command};
use zeroize::Zeroizing;

use ekms_enclave::bench::Deployment;
use ekms_enclave::bench::{self as bench_support, OfflineSealer};
use ekms_parent::store::{CommitBatch, EtcdStore, EtcdUrl, RedbStore, Store};
use ekms_shared::custody::{self as shares, SharePlaintext};
use ekms_shared::envelope;
use ekms_shared::shamir;
use ekms_shared::wire::v1::{Record, RecordKey};

use super::client::{Connector, Endpoint, Signer};
use super::credentials::{self, Credentials};
use super::load::{self, Plan, Workload};
use super::report::{self, JsonLine, Summary};
use crate::children::{sibling, start, stop, write_mock_pcrs, Echo};
use crate::custody::{self, Expectation, Target, UnsealArgs};

/// Records per `RedbStore::commit` while building the store.
pub const BATCH: usize = 50_000;
/// The admin principal sealed into the store.
const ADMIN_NAME: &str = "admin";

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Keys in the sealed store.
    pub keys: u64,
    /// One JSON line instead of text.
    pub json: bool,
    /// The Encrypt load to run against a loaded key afterwards, if any.
    pub lookup: Option<Lookup>,
    /// Build the store in etcd, under this URL's prefix (which must be empty), instead of
    /// the embedded store.
    pub store: Option<EtcdUrl>,
}

/// The Encrypt load of `--lookup`.
#[derive(Debug, Clone, Copy)]
pub struct Lookup {
    /// Plaintext bytes.
    pub size: usize,
    /// Connections.
    pub connections: usize,
    /// Measured window (after the usual warm-up).
    pub duration: Duration,
}

/// The JSON line; field order is the contract (`keys`, `load_seconds`, `enclave_rss_bytes`
/// first, as issue 6 names them).
#[derive(Debug, Serialize)]
struct UnsealLine<'a> {
    keys: u64,
    load_seconds: f64,
    enclave_rss_bytes: u64,
    enclave_peak_rss_bytes: u64,
    build_seconds: f64,
    store_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    lookup: Option<JsonLine<'a>>,
}

/// Runs the unseal bench.
///
/// # Errors
/// When the store cannot be built, a child cannot start, unseal fails or refuses records, or
/// (with `--lookup`) there are no credentials in the environment. Nothing is reported then.
pub async fn run(options: Options) -> anyhow::Result<()> {
    let keys = usize::try_from(options.keys).context("--keys")?;
    // The admin's access key: the environment's, so that `--lookup` can sign with it like every
    // other `ekms bench` run; a random one when there is none and no load is asked for.
    let env_credentials = credentials::from_environment().ok();
    let admin = match (&env_credentials, options.lookup) {
        (Some(c), _) => (
            c.access_key_id.clone(),
            Zeroizing::new(c.expose_secret_access_key().to_owned()),
        ),
        (None, None) => random_access_key()?,
        (None, Some(_)) => bail!(
            "--lookup signs its Encrypt requests as the store's admin principal, whose access key \
             the bench takes from the environment: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
             (any 16-128 alphanumerics and a secret of 16+ characters)"
        ),
    };
    let work = WorkDir::create()?;
    let dir = work.0.clone();

    let started = Instant::now();
    let etcd = options.store.clone();
    let built = tokio::task::spawn_blocking(move || {
        build_store(&dir, keys, &admin.0, &admin.1, etcd.as_ref())
    })
    .await
    .context("the store builder panicked")??;
    let build_seconds = started.elapsed().as_secs_f64();
    // In etcd the size is etcd's to tell (`etcdctl endpoint status`): 0 here.
    let store_bytes = std::fs::metadata(work.0.join("store").join("store.redb"))
        .map(|m| m.len())
        .unwrap_or(0);
    match &options.store {
        Some(url) => eprintln!(
            "ekms bench: sealed {keys} keys (and the admin, the manifest, the deployment \
             record) into {url} in {build_seconds:.1} s"
        ),
        None => eprintln!(
            "ekms bench: sealed {keys} keys (and the admin, the manifest, the deployment \
             record) into a {:.1} MiB store in {build_seconds:.1} s",
            store_bytes as f64 / (1024.0 * 1024.0)
        ),
    }

    let mut servers = Servers::start(&work.0, options.store.as_ref()).await?;
    let outcome = measure(
        &work.0,
        &mut servers,
        &options,
        env_credentials.as_ref(),
        &built,
    )
    .await;
    servers.stop().await;
    let measured = outcome?;

    let lookup_line = measured.lookup.as_ref().map(|(summary, _)| {
        JsonLine::new(
            "encrypt",
            options.lookup.map_or(0, |l| l.connections),
            summary,
            None,
        )
    });
    if options.json {
        let line = UnsealLine {
            keys: options.keys,
            load_seconds: round3(measured.load_seconds),
            enclave_rss_bytes: measured.rss.current,
            enclave_peak_rss_bytes: measured.rss.peak,
            build_seconds: round3(build_seconds),
            store_bytes,
            lookup: lookup_line,
        };
        println!("{}", serde_json::to_string(&line)?);
    } else {
        println!(
            "unseal: {} keys loaded in {:.3} s (from the Unseal submission to the Unsealed answer, \
             0 refused records)\nenclave resident memory: {:.1} MiB now (VmRSS), {:.1} MiB peak \
             (VmHWM)",
            options.keys,
            measured.load_seconds,
            mib(measured.rss.current),
            mib(measured.rss.peak)
        );
        if let (Some((summary, window)), Some(l)) = (&measured.lookup, options.lookup) {
            print!(
                "{}",
                report::table("encrypt", l.connections, *window, summary, None)
            );
        }
    }
    Ok(())
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A temporary directory (mode 0700), removed on drop.
struct WorkDir(PathBuf);

impl WorkDir {
    fn create() -> anyhow::Result<Self> {
        let mut suffix = [0u8; 6];
        SystemRandom::new()
            .fill(&mut suffix)
            .map_err(|_| anyhow!("the OS random source failed"))?;
        let path = std::env::temp_dir().join(format!(
            "ekms-bench-unseal-{}-{}",
            std::process::id(),
            hex::encode(suffix)
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(WorkDir(path))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn random_access_key() -> anyhow::Result<(String, Zeroizing<String>)> {
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = Zeroizing::new([0u8; 56]);
    SystemRandom::new()
        .fill(&mut bytes[..])
        .map_err(|_| anyhow!("the OS random source failed"))?;
    let pick = |alphabet: &[u8], b: &u8| char::from(alphabet[usize::from(*b) % alphabet.len()]);
    let id: String = bytes[..16].iter().map(|b| pick(UPPER, b)).collect();
    let secret: String = bytes[16..].iter().map(|b| pick(SECRET, b)).collect();
    Ok((format!("AKIA{id}"), Zeroizing::new(secret)))
}

/// What the offline build produced.
struct Built {
    /// One of the sealed keys, for the Encrypt load.
    lookup_key: String,
}

/// Builds the deployment in `dir`: `custodian/`, `share-1.json`, `store/`.
fn build_store(
    dir: &Path,
    keys: usize,
    access_key_id: &str,
    secret_access_key: &str,
    etcd: Option<&EtcdUrl>,
) -> anyhow::Result<Built> {
    let custodian = shares::keygen(&dir.join("custodian")).context("making the custodian key")?;
    let mut domain_key = Zeroizing::new([0u8; 32]);
    let mut id = [0u8; 16];
    let random = SystemRandom::new();
    random
        .fill(&mut domain_key[..])
        .and_then(|()| random.fill(&mut id))
        .map_err(|_| anyhow!("the OS random source failed"))?;
    // As Initialize: a random (v4) deployment id, the commitment, a 1-of-1 split.
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    let hex_id = hex::encode(id);
    let deployment_id = format!(
        "{}-{}-{}-{}-{}",
        &hex_id[..8],
        &hex_id[8..12],
        &hex_id[12..16],
        &hex_id[16..20],
        &hex_id[20..]
    );
    let commitment = shares::commitment(&domain_key);
    let parts = shamir::split(&domain_key, 1, 1).context("splitting the domain key")?;
    let part = parts
        .first()
        .ok_or_else(|| anyhow!("the split made no share"))?;
    let plaintext = SharePlaintext::new(&deployment_id, part, 1, 1, commitment)?;
    let share_file = shares::seal_share_file(&plaintext, &custodian.public_key)?;
    std::fs::write(dir.join(share_file.file_name()), share_file.to_json()?)
        .context("writing the share file")?;
    let deployment = Deployment {
        v: 1,
        deployment_id,
        threshold: 1,
        total: 1,
        commitment: commitment.to_vec(),
        custodians: vec![serde_bytes::ByteBuf::from(
            envelope::public_key_to_spki_der(&custodian.public_key)?,
        )],
    };

    let store: Box<dyn Store> = match etcd {
        Some(url) => {
            let store = EtcdStore::open(url).with_context(|| format!("opening {url}"))?;
            if !store.load(None, 1)?.0.is_empty() {
                bail!("{url} already holds records: give --store an empty prefix");
            }
            Box::new(store)
        }
        None => {
            let store_dir = dir.join("store");
            Box::new(
                RedbStore::open(&store_dir)
                    .with_context(|| format!("opening a store in {}", store_dir.display()))?,
            )
        }
    };
    // Initialize: the deployment record first, durably, as its own commit (seq 0).
    store.commit(&[CommitBatch {
        seq: 0,
        puts: vec![Record {
            key: RecordKey {
                kind: bench_support::DEPLOYMENT_KIND,
                id: bench_support::DEPLOYMENT_ID.to_vec(),
            },
            sealed: bench_support::deployment_record(&deployment)?,
        }],
        ..CommitBatch::default()
    }])?;
    // Then one commit (seq 1) of the admin, the keys and the manifest, written in batches.
    let mut sealer = OfflineSealer::new(domain_key);
    let seq = sealer.generation();
    let to_record = |(kind, id, sealed): ekms_enclave::bench::SealedRecord| Record {
        key: RecordKey {
            kind: kind as u8,
            id,
        },
        sealed,
    };
    let mut puts = vec![to_record(
        sealer
            .seal_admin(ADMIN_NAME, access_key_id, secret_access_key)
            .map_err(|e| anyhow!("sealing the admin principal: {e}"))?,
    )];
    let created = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(0);
    let mut lookup_key = None;
    let mut left = keys;
    // The first batch is built on the empty store (commit 0, the deployment record's); the
    // others continue commit `seq` (a store shared by several enclaves checks the chain).
    let mut base = 0;
    while left > 0 {
        let n = left.min(BATCH);
        let sealed = sealer
            .seal_symmetric_keys(n, created)
            .map_err(|e| anyhow!("sealing keys: {e}"))?;
        if lookup_key.is_none() {
            lookup_key = sealed.get(sealed.len() / 2).map(|(id, _)| id.to_string());
        }
        puts.extend(sealed.into_iter().map(|(_, r)| to_record(r)));
        store.commit(&[CommitBatch {
            seq,
            base: Some(base),
            puts: std::mem::take(&mut puts),
            ..CommitBatch::default()
        }])?;
        base = seq;
        left -= n;
    }
    let manifest = sealer
        .finish()
        .map_err(|e| anyhow!("sealing the manifest: {e}"))?;
    puts.extend(manifest.into_iter().map(to_record));
    store.commit(&[CommitBatch {
        seq,
        base: Some(base),
        puts,
        ..CommitBatch::default()
    }])?;
    Ok(Built {
        lookup_key: lookup_key.ok_or_else(|| anyhow!("no keys were sealed"))?,
    })
}

/// Resident memory of a process, bytes.
#[derive(Debug, Clone, Copy)]
struct Rss {
    current: u64,
    peak: u64,
}

fn rss_of(pid: u32) -> anyhow::Result<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or_else(|| anyhow!("/proc/{pid}/status has no {name}"))?;
        let kb: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("parsing {line:?}"))?;
        Ok(kb * 1024)
    };
    Ok(Rss {
        current: field("VmRSS:")?,
        peak: field("VmHWM:")?,
    })
}

/// What the measured part produced.
struct Measured {
    load_seconds: f64,
    rss: Rss,
    lookup: Option<(Summary, Duration)>,
}

async fn measure(
    dir: &Path,
    servers: &mut Servers,
    options: &Options,
    credentials: Option<&Credentials>,
    built: &Built,
) -> anyhow::Result<Measured> {
    let target = Target {
        endpoint: servers.endpoint.clone(),
        ca: None,
    };
    let expect = Expectation {
        expect_pcrs: dir.join("pcrs.json"),
        root: Some(dir.join("mock-ca").join("root.pem")),
        allow_debug: false,
    };
    let status = custody::status_at(&target).await?;
    if status["State"].as_str() != Some("Sealed") {
        bail!("the enclave should start Sealed on the built store; it says {status}");
    }
    let args = UnsealArgs {
        target: target.clone(),
        expect,
        share: dir.join("share-1.json"),
        key: dir.join("custodian").join(shares::SECRET_KEY_FILE),
    };
    let submitted = Instant::now();
    let status = custody::unseal(&args)
        .await
        .context("unsealing the built store")?;
    let load_seconds = submitted.elapsed().as_secs_f64();
    let refused = status["RefusedRecordCount"].as_u64().unwrap_or(0);
    if status["State"].as_str() != Some("Unsealed") || refused > 0 {
        bail!(
            "the enclave answered state {} with {refused} refused record(s) (`ekms \
             refused-records` names them): the built store is not what the enclave writes",
            status["State"],
        );
    }
    let rss = rss_of(servers.enclave_pid)?;
    let lookup = match (options.lookup, credentials) {
        (Some(lookup), Some(credentials)) => {
            Some(encrypt_load(&servers.endpoint, credentials, &built.lookup_key, lookup).await?)
        }
        _ => None,
    };
    Ok(Measured {
        load_seconds,
        rss,
        lookup,
    })
}

/// The Encrypt load of the main bench, against `key_id`.
async fn encrypt_load(
    endpoint: &str,
    credentials: &Credentials,
    key_id: &str,
    lookup: Lookup,
) -> anyhow::Result<(Summary, Duration)> {
    let endpoint = Endpoint::parse(endpoint, false)?;
    let connector = Connector::new(endpoint, None)?;
    let region = std::env::var("AWS_DEFAULT_REGION")
        .or_else(|_| std::env::var("AWS_REGION"))
        .ok()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "us-east-1".to_owned());
    let signer = Arc::new(Signer::new(credentials, region));
    let body = serde_json::json!({
        "KeyId": key_id,
        "Plaintext": base64::engine::general_purpose::STANDARD.encode(super::random_bytes(lookup.size)?),
    });
    // One request first, so that a refusal is reported as such rather than as a run of errors.
    let mut connection = connector.connect().await.context("connecting to ekms")?;
    super::call(
        &mut connection,
        &connector,
        &signer,
        "Encrypt",
        body.clone(),
    )
    .await
    .context("Encrypt under a loaded key")?;
    drop(connection);
    let workload = Arc::new(Workload {
        target: "TrentService.Encrypt".to_owned(),
        body: Bytes::from(body.to_string()),
    });
    let plan = Plan {
        connections: lookup.connections,
        warmup: super::WARMUP,
        duration: lookup.duration,
        request_timeout: super::REQUEST_TIMEOUT,
    };
    let live = super::live::Live::start(plan.warmup + plan.duration);
    live.loading("encrypt after unseal");
    let outcome = super::bounded(
        load::run(&connector, &signer, &workload, plan, live.counts()),
        plan,
    )
    .await;
    live.finish();
    let outcome = outcome?;
    if let Some(e) = &outcome.first_error {
        eprintln!("ekms bench: encrypt after unseal: first error: {e}");
    }
    Ok((
        Summary::new(&outcome.histogram, outcome.errors, outcome.window),
        outcome.window,
    ))
}

/// The two children.
struct Servers {
    parent: Child,
    enclave: Child,
    enclave_pid: u32,
    /// `http://127.0.0.1:PORT`, the relay.
    endpoint: String,
}

impl Servers {
    /// Starts `ekms-parent` on the built store and `ekms-enclave` in mock mode, as `ekms dev`
    /// does, and writes `pcrs.json` for the enclave binary.
    async fn start(dir: &Path, etcd: Option<&EtcdUrl>) -> anyhow::Result<Self> {
        let enclave_bin = sibling("ekms-enclave")?;
        let parent_bin = sibling("ekms-parent")?;
        write_mock_pcrs(&enclave_bin, &dir.join("pcrs.json"))?;
        let enclave_socket = dir.join("enclave.sock");
        let store_socket = dir.join("store.sock");
        let mut parent_cmd = Command::new(parent_bin);
        parent_cmd
            .args(["--listen", "tcp://127.0.0.1:0"])
            .arg("--enclave")
            .arg(format!("unix:{}", enclave_socket.display()))
            .arg("--store-listen")
            .arg(format!("unix:{}", store_socket.display()));
        match etcd {
            Some(url) => parent_cmd.arg("--store").arg(url.to_string()),
            None => parent_cmd.arg("--data-dir").arg(dir.join("store")),
        };
        let (mut parent, relay) = start("ekms-parent", quiet(parent_cmd), Echo::Stderr).await?;
        let endpoint = match relay.strip_prefix("tcp://") {
            Some(host_port) => format!("http://{host_port}"),
            None => {
                let _ = parent.kill().await;
                bail!("ekms-parent reported an unexpected relay address {relay}")
            }
        };
        let mut enclave_cmd = Command::new(enclave_bin);
        enclave_cmd
            .arg("--insecure-mock-enclave")
            .arg("--listen")
            .arg(format!("unix:{}", enclave_socket.display()))
            .arg("--store")
            .arg(format!("unix:{}", store_socket.display()))
            .arg("--mock-ca")
            .arg(dir.join("mock-ca"));
        let enclave = match start("ekms-enclave", quiet(enclave_cmd), Echo::Stderr).await {
            Ok((child, _)) => child,
            Err(e) => {
                stop(&mut parent).await;
                return Err(e);
            }
        };
        let enclave_pid = enclave
            .id()
            .ok_or_else(|| anyhow!("ekms-enclave has no pid"))?;
        eprintln!("ekms bench: ekms-enclave pid {enclave_pid}, relay {endpoint}");
        Ok(Servers {
            parent,
            enclave,
            enclave_pid,
            endpoint,
        })
    }

    async fn stop(&mut self) {
        stop(&mut self.parent).await;
        stop(&mut self.enclave).await;
    }
}

/// The children log at `warn` unless `EKMS_LOG` says otherwise (stdout carries the report).
fn quiet(mut command: Command) -> Command {
    if std::env::var_os("EKMS_LOG").is_none() {
        command.env("EKMS_LOG", "warn");
    }
    command
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The offline build makes a store whose first record is the deployment record and whose
    /// share opens with the custodian key it wrote.
    #[test]
    fn the_built_store_starts_with_the_deployment_record() {
        let dir = tempfile::tempdir().unwrap();
        let built = build_store(
            dir.path(),
            120,
            "AKIAAAAAAAAAAAAAAAAA",
            "secretsecretsecret",
            None,
        )
        .unwrap();
        assert_eq!(built.lookup_key.len(), 36);
        let store = RedbStore::open(&dir.path().join("store")).unwrap();
        let (records, _) = store.load(None, 1).unwrap();
        assert_eq!(records[0].key.kind, bench_support::DEPLOYMENT_KIND);
        // Deployment, root, buckets, 120 keys, the admin.
        let (all, done) = store.load(None, 100_000).unwrap();
        assert!(done);
        let keys = all.iter().filter(|r| r.key.kind == 3).count();
        let principals = all.iter().filter(|r| r.key.kind == 5).count();
        assert_eq!((keys, principals), (120, 1));
        let file =
            shares::ShareFile::from_json(&std::fs::read(dir.path().join("share-1.json")).unwrap())
                .unwrap();
        let secret =
            shares::load_secret(&dir.path().join("custodian").join(shares::SECRET_KEY_FILE))
                .unwrap();
        shares::open_share_file(&file, &secret).unwrap();
    }

    #[test]
    fn random_access_keys_are_valid_for_the_enclave() {
        let (id, secret) = random_access_key().unwrap();
        assert_eq!(id.len(), 20);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(secret.len() >= 16);
    }
}
