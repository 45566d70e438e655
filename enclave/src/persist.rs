//! Durability: the enclave's half of the store channel.
//!
//! Requests that change state name what they touched; the committer snapshots those records
//! under the state lock, seals them with the domain key, updates the manifest, and sends one
//! `Commit` frame for everything queued (group commit). A request is answered only after the
//! parent acknowledged its commit as durable. Commits are pipelined: a bounded number are in
//! flight while the parent fsyncs.
//!
//! Failure is fail-stop: if the store channel breaks or the parent refuses a commit, waiting
//! requests fail, every later change fails, and [`Persister::fatal`] fires so that the process
//! exits and restarts from what is durable, rather than serving a state the disk does not have.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, Notify};
use uuid::Uuid;

use ekms_shared::transport::Stream;
use ekms_shared::wire::v1::{self, Record, RecordKey, Request, Response};

use crate::env::Entropy;
use crate::error::KmsError;
use crate::keys::KeyStore;
use crate::ops::State;
use crate::principals::Principals;
use crate::seal::codec::{self, PrincipalRecord};
use crate::seal::manifest::{Loader, Manifest, Refusal};
use crate::seal::{record, DomainKey, RecordKind};

/// A record a request changed (or removed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Touched {
    /// A key, by id.
    Key(Uuid),
    /// An alias, by name.
    Alias(String),
    /// A principal, by name.
    Principal(String),
}

/// The store could not make a change durable.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The store channel failed earlier; nothing more is accepted until restart.
    #[error("the durable store is unavailable")]
    Unavailable,
    /// The parent refused the commit.
    #[error("the parent refused the commit: {0}")]
    Refused(String),
    /// The store channel broke.
    #[error("store channel: {0}")]
    Wire(#[from] v1::WireError),
    /// Sealing failed.
    #[error("sealing failed: {0}")]
    Seal(&'static str),
}

impl From<PersistError> for KmsError {
    fn from(_: PersistError) -> Self {
        KmsError::Internal("the durable store is unavailable")
    }
}

/// Most requests folded into one commit.
const MAX_BATCH: usize = 512;
/// Most commits in flight (sent, not yet acknowledged).
const MAX_IN_FLIGHT: usize = 8;
/// Records per Load page.
const LOAD_PAGE: u32 = 4096;

struct Job {
    touched: Vec<Touched>,
    done: oneshot::Sender<Result<(), PersistError>>,
}

/// Hands changes to the committer and waits until they are durable.
#[derive(Clone)]
pub struct Persister {
    jobs: mpsc::Sender<Job>,
    failed: Arc<AtomicBool>,
    fatal: Arc<Notify>,
}

impl std::fmt::Debug for Persister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persister").finish_non_exhaustive()
    }
}

impl Persister {
    /// Waits until `touched` (as it is in the state now, or later) is durable.
    ///
    /// # Errors
    /// [`PersistError`] if the store cannot make it durable; the process is then stopping.
    pub async fn persist(&self, touched: Vec<Touched>) -> Result<(), PersistError> {
        if touched.is_empty() {
            return Ok(());
        }
        if self.failed.load(Ordering::SeqCst) {
            return Err(PersistError::Unavailable);
        }
        let (done, wait) = oneshot::channel();
        self.jobs
            .send(Job { touched, done })
            .await
            .map_err(|_| PersistError::Unavailable)?;
        wait.await.map_err(|_| PersistError::Unavailable)?
    }

    /// Resolves once the store failed for good: the process should exit.
    pub async fn fatal(&self) {
        self.fatal.notified().await;
    }

    /// Starts the committer on an open store channel.
    pub fn start(
        stream: Stream,
        state: Arc<State>,
        domain: Arc<DomainKey>,
        manifest: Manifest,
        entropy: Arc<dyn Entropy>,
    ) -> Persister {
        let (jobs, rx) = mpsc::channel(4 * MAX_BATCH);
        let failed = Arc::new(AtomicBool::new(false));
        let fatal = Arc::new(Notify::new());
        let (reader, writer) = tokio::io::split(stream);
        let (in_flight_tx, in_flight_rx) = mpsc::channel(MAX_IN_FLIGHT);
        let fail = {
            let failed = failed.clone();
            let fatal = fatal.clone();
            move |why: &str| {
                if !failed.swap(true, Ordering::SeqCst) {
                    tracing::error!(why, "durable store failed: stopping (fail-stop)");
                }
                fatal.notify_one();
            }
        };
        let fail2 = fail.clone();
        tokio::spawn(async move {
            let why = committer(rx, writer, in_flight_tx, state, domain, manifest, entropy).await;
            fail(&why);
        });
        tokio::spawn(async move {
            let why = acknowledger(reader, in_flight_rx).await;
            fail2(&why);
        });
        Persister {
            jobs,
            failed,
            fatal,
        }
    }
}

type Waiters = Vec<oneshot::Sender<Result<(), PersistError>>>;

fn fail_all(waiters: Waiters, why: &str) {
    for w in waiters {
        let _ = w.send(Err(PersistError::Refused(why.to_owned())));
    }
}

/// Builds and sends commits until the job channel closes or the channel breaks.
async fn committer<W: AsyncWrite + Unpin>(
    mut jobs: mpsc::Receiver<Job>,
    mut writer: W,
    in_flight: mpsc::Sender<(u64, Waiters)>,
    state: Arc<State>,
    domain: Arc<DomainKey>,
    mut manifest: Manifest,
    entropy: Arc<dyn Entropy>,
) -> String {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut touched = BTreeSet::new();
        let mut waiters = Vec::with_capacity(batch.len());
        for job in batch {
            touched.extend(job.touched);
            waiters.push(job.done);
        }
        let seq = manifest.next_seq();
        let commit = match build_commit(
            seq,
            &touched,
            &state,
            &domain,
            &mut manifest,
            entropy.as_ref(),
        ) {
            Ok(c) => c,
            Err(e) => {
                fail_all(waiters, &e.to_string());
                return e.to_string();
            }
        };
        if let Err(e) = v1::write_frame(&mut writer, &commit).await {
            fail_all(waiters, "store channel broke");
            return format!("writing a commit: {e}");
        }
        if in_flight.send((seq, waiters)).await.is_err() {
            return "acknowledger stopped".to_owned();
        }
    }
    "job channel closed".to_owned()
}

fn build_commit(
    seq: u64,
    touched: &BTreeSet<Touched>,
    state: &State,
    domain: &DomainKey,
    manifest: &mut Manifest,
    entropy: &dyn Entropy,
) -> Result<Request, PersistError> {
    // Snapshot under the locks; seal after releasing them.
    let mut plain = Vec::with_capacity(touched.len());
    {
        let keys = state.read();
        let principals = state.principals();
        for t in touched {
            let (kind, id, bytes) = match t {
                Touched::Key(id) => (
                    RecordKind::Key,
                    id.as_bytes().to_vec(),
                    keys.raw(id)
                        .map(codec::encode_key)
                        .transpose()
                        .map_err(|_| PersistError::Seal("key encoding"))?,
                ),
                Touched::Alias(name) => (
                    RecordKind::Alias,
                    name.as_bytes().to_vec(),
                    keys.alias(name)
                        .map(codec::encode_alias)
                        .transpose()
                        .map_err(|_| PersistError::Seal("alias encoding"))?,
                ),
                Touched::Principal(name) => (
                    RecordKind::Principal,
                    name.as_bytes().to_vec(),
                    principals
                        .sealed_record(name)
                        .map(|p| codec::encode_principal(&p))
                        .transpose()
                        .map_err(|_| PersistError::Seal("principal encoding"))?,
                ),
            };
            plain.push((kind, id, bytes));
        }
    }
    let mut puts = Vec::with_capacity(plain.len() + 2);
    let mut deletes = Vec::new();
    for (kind, id, bytes) in plain {
        match bytes {
            Some(bytes) => {
                let sealed = record::seal(domain, kind, &id, seq, &bytes, entropy)
                    .map_err(|_| PersistError::Seal("record sealing"))?;
                manifest.set(kind, &id, Some(seq));
                puts.push(Record {
                    key: RecordKey {
                        kind: kind as u8,
                        id,
                    },
                    sealed,
                });
            }
            None => {
                manifest.set(kind, &id, None);
                deletes.push(RecordKey {
                    kind: kind as u8,
                    id,
                });
            }
        }
    }
    for (kind, id, sealed) in manifest
        .seal_changes(domain, entropy)
        .map_err(|_| PersistError::Seal("manifest sealing"))?
    {
        puts.push(Record {
            key: RecordKey {
                kind: kind as u8,
                id,
            },
            sealed,
        });
    }
    Ok(Request::Commit {
        seq,
        puts,
        deletes,
        audit: Vec::new(),
    })
}

/// Reads acknowledgements in order and releases the requests waiting on them.
async fn acknowledger<R: AsyncRead + Unpin>(
    mut reader: R,
    mut in_flight: mpsc::Receiver<(u64, Waiters)>,
) -> String {
    while let Some((seq, waiters)) = in_flight.recv().await {
        match v1::read_frame::<_, Response>(&mut reader).await {
            Ok(Some(Response::Committed { seq: acked })) if acked == seq => {
                for w in waiters {
                    let _ = w.send(Ok(()));
                }
            }
            Ok(Some(Response::Error { message })) => {
                fail_all(waiters, &message);
                return format!("the parent refused commit {seq}: {message}");
            }
            Ok(other) => {
                fail_all(waiters, "unexpected answer");
                return format!("unexpected answer to commit {seq}: {other:?}");
            }
            Err(e) => {
                fail_all(waiters, "store channel broke");
                return format!("reading the acknowledgement of commit {seq}: {e}");
            }
        }
    }
    "committer stopped".to_owned()
}

/// What a load produced.
pub struct Loaded {
    /// Keys and aliases.
    pub keys: KeyStore,
    /// Principals sealed in the store.
    pub principals: Vec<PrincipalRecord>,
    /// The manifest to continue committing from.
    pub manifest: Manifest,
    /// Every record refused, with the reason.
    pub refused: Vec<Refusal>,
}

/// Whether the store holds any record at all (an empty store is uninitialized).
///
/// # Errors
/// [`PersistError`] if the channel fails.
pub async fn store_is_empty<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
) -> Result<bool, PersistError> {
    v1::write_frame(
        stream,
        &Request::Load {
            after: None,
            limit: 1,
        },
    )
    .await?;
    match v1::read_frame::<_, Response>(stream).await? {
        Some(Response::Records { records, .. }) => Ok(records.is_empty()),
        Some(Response::Error { message }) => Err(PersistError::Refused(message)),
        other => Err(PersistError::Refused(format!(
            "unexpected answer to Load: {other:?}"
        ))),
    }
}

/// Loads and verifies every record of the store.
///
/// # Errors
/// [`PersistError`] if the channel fails. Records that fail verification are not errors:
/// they are reported in [`Loaded::refused`] and left out.
pub async fn load<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    domain: &DomainKey,
    config: &crate::config::Config,
) -> Result<Loaded, PersistError> {
    let mut loader = Loader::new(domain);
    let mut keys = KeyStore::default();
    let mut aliases = Vec::new();
    let mut principals = Vec::new();
    let mut after = None;
    loop {
        v1::write_frame(
            stream,
            &Request::Load {
                after: after.clone(),
                limit: LOAD_PAGE,
            },
        )
        .await?;
        let (records, done) = match v1::read_frame::<_, Response>(stream).await? {
            Some(Response::Records { records, done }) => (records, done),
            Some(Response::Error { message }) => return Err(PersistError::Refused(message)),
            other => {
                return Err(PersistError::Refused(format!(
                    "unexpected answer to Load: {other:?}"
                )))
            }
        };
        if let Some(last) = records.last() {
            after = Some(last.key.clone());
        }
        for r in &records {
            let Some((kind, plain)) = loader.feed(r.key.kind, &r.key.id, &r.sealed) else {
                continue;
            };
            let id = crate::seal::manifest::show_id(kind, &r.key.id);
            let malformed = |why: String| Refusal::Malformed {
                kind,
                id: id.clone(),
                why,
            };
            match kind {
                RecordKind::Key => match codec::decode_key(&plain) {
                    Ok(key) if key.id.as_bytes() == &r.key.id[..] => {
                        if let Err(e) = keys.insert(key, config) {
                            loader.refused.push(malformed(e.to_string()));
                        }
                    }
                    Ok(_) => loader
                        .refused
                        .push(malformed("id differs from the record id".to_owned())),
                    Err(e) => loader.refused.push(malformed(e.to_string())),
                },
                RecordKind::Alias => match codec::decode_alias(&plain) {
                    Ok(alias) => aliases.push((id.clone(), alias)),
                    Err(e) => loader.refused.push(malformed(e.to_string())),
                },
                RecordKind::Principal => match codec::decode_principal(&plain) {
                    Ok(p) if p.name.as_bytes() == &r.key.id[..] => principals.push(p),
                    Ok(_) => loader
                        .refused
                        .push(malformed("name differs from the record id".to_owned())),
                    Err(e) => loader.refused.push(malformed(e.to_string())),
                },
                RecordKind::Root | RecordKind::Bucket => {}
            }
        }
        if done || records.is_empty() {
            break;
        }
    }
    for (name, alias) in aliases {
        if let Err(e) = keys.put_alias(name.clone(), alias, config) {
            loader.refused.push(Refusal::Malformed {
                kind: RecordKind::Alias,
                id: name,
                why: e.to_string(),
            });
        }
    }
    let has_root = loader.has_root();
    let (manifest, mut refused) = loader.finish();
    if !has_root && refused.is_empty() {
        refused.push(Refusal::Root("missing".to_owned()));
    }
    Ok(Loaded {
        keys,
        principals,
        manifest,
        refused,
    })
}

/// Principals as sealed records.
impl Principals {
    /// The sealed form of the principal `name`, if it is one that is sealed (not from a file).
    pub fn sealed_record(&self, name: &str) -> Option<PrincipalRecord> {
        self.sealed(name).map(|(akid, secret)| PrincipalRecord {
            v: 1,
            name: name.to_owned(),
            access_key_id: akid.to_owned(),
            secret_access_key: secret.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests;
