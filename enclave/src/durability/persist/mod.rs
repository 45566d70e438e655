//! Durability: the enclave's half of the store channel.
//!
//! Requests that change state name what they touched; the committer snapshots those records
//! under the state lock, seals them with the domain key, updates the manifest, and sends one
//! `Commit` frame for everything queued (group commit). A request learns, when it queues, the
//! sequence number of the commit that will carry it ([`Hold`]), and is answered at once in
//! frames held by that commit: the parent releases the answer to the client only once the
//! commit is durable ([`ekms_shared::release`]). Callers that must themselves wait for
//! durability use [`Persister::persist`].
//!
//! Failure is fail-stop: if the store channel breaks or the parent refuses a commit, the
//! answers held for it are never released (the parent closes their connections), callers
//! waiting in [`Persister::persist`] fail, every later change fails, and [`Persister::fatal`]
//! fires. The service then either stops, to restart from what is durable, or (a member; or a
//! store that refused a commit for a reason it expects to clear, or a channel that closed:
//! [`Persister::recoverable`]) takes the store's state again in a new session, in place; it
//! never serves a state the disk does not have.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch, Notify};

use ekms_shared::release::Hold;
use ekms_shared::transport::Stream;
use ekms_shared::wire::v1::{self, Request, Response};

use crate::durability::audit::{AuditChain, Head};
use crate::env::{Clock as _, Entropy};
use crate::error::KmsError;
use crate::kms::state::State;
use crate::durability::seal::manifest::Manifest;
use crate::durability::seal::{DomainKey, NameKey};

pub use crate::kms::state::Touched;
pub use commit::CHECKPOINT_INTERVAL;
use commit::{build_commit, checkpoint_commit, Now, Sealing};
pub use deployment::{store_state, write_deployment, Deployment, StoreState};
#[cfg(any(feature = "bench", fuzzing))]
pub use deployment::DEPLOYMENT_KIND;
pub use follow::{follow, Freshness};
pub use load::{load, load_counting};
#[cfg(test)]
use load::{Loaded, Loading};

/// The id of the setting that holds the operator-issued TLS certificate.
pub const TLS_OPERATOR_ID: &[u8] = b"tls-operator";

/// The id of the setting that holds the deployment's TLS CA.
pub const TLS_CA_ID: &[u8] = b"tls-ca";

/// The id of the setting that holds the measurements allowed to join.
pub const MEASUREMENTS_ID: &[u8] = b"measurements";

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

/// The durable audit head, signed for one caller's nonce (`Ekms.AuditHead`).
#[derive(Debug)]
pub struct SignedHead {
    /// Seq and hash of the last durable record.
    pub head: Head,
    /// ECDSA P-384 / SHA-384 over `audit_format::head_message`.
    pub signature: Vec<u8>,
    /// This boot's checkpoint key (SubjectPublicKeyInfo DER).
    pub public_key: Vec<u8>,
    /// The attestation document binding that key.
    pub attestation_document: Vec<u8>,
    /// The member whose chain this is, when several enclaves share the store.
    pub member: Option<String>,
}

/// Most requests folded into one commit; more wait to be queued.
const MAX_BATCH: usize = 512;
/// Commits in flight (sent, not yet acknowledged): one. Whatever arrives while the store makes
/// a commit durable waits, and goes into the next commit whole (the committer gathers a batch
/// only once there is room to send it), so groups grow with the load instead of each carrying a
/// few requests and the full per-commit cost. BENCHMARKS.md ("Commits in flight") has the
/// measurements against two, four and nine.
const MAX_IN_FLIGHT: usize = 1;

/// A commit sent and not yet acknowledged: its sequence number, the chain head it makes
/// durable, and its room in flight.
type InFlight = (u64, Head, tokio::sync::OwnedSemaphorePermit);

struct Job {
    touched: Vec<Touched>,
    audit: Option<crate::durability::audit::Record>,
    /// A change queued under its write lock ([`Persister::enqueue_change`]): its request's
    /// full audit record is attached later, under this ticket, to replace `audit`.
    ticket: Option<u64>,
}

/// Longest a commit waits for the audit records of the changes it carries
/// ([`Persister::attach`]); one that does not arrive (its request ended first) leaves the
/// placeholder queued with the change.
pub const ATTACH_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// What waits for the committer.
struct Queue {
    pending: Mutex<Pending>,
    /// Wakes the committer when a job is queued.
    work: Notify,
    /// Wakes requests waiting for space in a full queue.
    space: Notify,
    /// Audit records attached to queued changes, by ticket.
    attached: Mutex<std::collections::HashMap<u64, crate::durability::audit::Record>>,
    /// Wakes the committer when a record is attached.
    attach: Notify,
    /// The next ticket, and the last one committed (attachments at or below it are late).
    tickets: Mutex<(u64, u64)>,
}

struct Pending {
    /// The sequence number of the commit that will carry `jobs`.
    next: u64,
    /// The commit carrying the last job queued (`next` while `jobs` is not empty).
    last: u64,
    jobs: Vec<Job>,
    /// Audit records of refused requests: they ride along with the next commit rather than
    /// make one of their own (until [`MAX_RIDERS`] wait, or [`RIDER_INTERVAL`] passed).
    riders: Vec<crate::durability::audit::Record>,
}

/// Most refused requests' audit records that wait for a commit before they force one.
pub const MAX_RIDERS: usize = 4096;

/// Longest a refused request's audit record waits for a commit to ride with.
pub const RIDER_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How far commits are durable, as acknowledged by the parent, or that the store failed.
#[derive(Debug, Clone, Copy)]
struct Durable {
    /// The last acknowledged commit.
    seq: u64,
    /// The audit chain head it made durable.
    head: Head,
    /// The store failed: nothing more becomes durable.
    failed: bool,
    /// How, once it failed.
    ended: Ended,
    /// Whether `seq` and `head` are a commit the store acknowledged in this session (rather
    /// than where the session started).
    acked: bool,
}

/// How a store session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The parent refused a commit, answered out of protocol, or sealing failed: the enclave
    /// stops (fail-stop) unless it is a member.
    Refused,
    /// The store refused a commit before applying any of it, for a reason it expects to clear
    /// ([`Response::Unavailable`]: its audit disk is full).
    ForNow,
    /// The store channel closed or broke (the parent stopped or restarted).
    Lost,
}

/// Hands changes to the committer and waits until they are durable.
#[derive(Clone)]
pub struct Persister {
    queue: Arc<Queue>,
    /// This store channel's session, as announced to the parent.
    session: u64,
    fatal: Arc<Notify>,
    chain: Arc<Mutex<AuditChain>>,
    durable: watch::Receiver<Durable>,
    /// Room for commits in flight: held, nothing is in flight and the committer waits.
    room: Arc<tokio::sync::Semaphore>,
    /// What a member follows the store with ([`Persister::quiet_base`], [`Persister::adopt`]).
    follow: Arc<Follow>,
}

/// What a member shares between its committer and the task that follows the store.
struct Follow {
    state: Arc<State>,
    /// The last commit that changed records, made (sent) or adopted: the next one's base.
    base: std::sync::atomic::AtomicU64,
    /// The committer's manifest. The follower reads and changes it only while it holds the
    /// room for commits in flight: nothing is in flight, and the committer waits.
    manifest: Arc<Mutex<Manifest>>,
}

impl Follow {
    fn manifest(&self) -> std::sync::MutexGuard<'_, Manifest> {
        self.manifest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Why [`Persister::adopt`] left the state as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAdopted {
    /// This member committed a change since the newer state was read.
    Moved,
    /// Changes made here wait for a commit: built on the old state, it is refused, and the
    /// member stops (fail-stop) rather than let them pass over the newer state.
    LocalChanges,
    /// The store failed.
    Unavailable,
}

/// A newer state of the store, loaded and verified, for [`Persister::adopt`].
pub struct Newer {
    /// Its keys, aliases and grants.
    pub keys: crate::keys::KeyStore,
    /// Its sealed principals.
    pub principals: Vec<crate::durability::seal::codec::PrincipalRecord>,
    /// Its operator TLS certificate, if any.
    pub tls_operator: Option<crate::keys::tls::OperatorCert>,
    /// Its measurements allowed to join.
    pub measurements: crate::access::measurements::Measurements,
    /// Its manifest.
    pub manifest: Manifest,
}

impl std::fmt::Debug for Persister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persister").finish_non_exhaustive()
    }
}

impl Persister {
    /// Queues `touched` (as it is in the state when the commit is built) and `audit` for the
    /// next commit, and returns what an answer that depends on them must be held for. Waits
    /// only while the queue is full.
    ///
    /// # Errors
    /// [`PersistError::Unavailable`] once the store failed; the process is then stopping.
    pub async fn submit(
        &self,
        touched: Vec<Touched>,
        audit: Option<crate::durability::audit::Record>,
    ) -> Result<Hold, PersistError> {
        if touched.is_empty() && audit.is_none() {
            return Ok(self.release_point());
        }
        let mut job = Some((touched, audit));
        loop {
            let space = self.queue.space.notified();
            tokio::pin!(space);
            // Registered before the check, so a commit taking the queue in between wakes it.
            space.as_mut().enable();
            if self.durable.borrow().failed {
                return Err(PersistError::Unavailable);
            }
            {
                let mut pending = self.queue.lock();
                if pending.jobs.len() < MAX_BATCH {
                    if let Some((touched, audit)) = job.take() {
                        pending.jobs.push(Job {
                            touched,
                            audit,
                            ticket: None,
                        });
                    }
                    let seq = pending.next;
                    pending.last = seq;
                    drop(pending);
                    self.queue.work.notify_one();
                    return Ok(Hold {
                        session: self.session,
                        seq,
                    });
                }
            }
            space.await;
        }
    }

    /// Queues `touched`, changed under a write lock the caller still holds, so that no request
    /// that sees the change can be answered before it is durable: every answer given once the
    /// lock is released is held for this commit or a later one ([`Persister::release_point`]).
    /// `placeholder` is the request's audit record until [`Persister::attach`] replaces it; it
    /// rides in the same commit as the change, so no change is ever durable without a record.
    /// Never waits (the queue may pass [`MAX_BATCH`] by the writers holding locks).
    ///
    /// # Errors
    /// [`PersistError::Unavailable`] once the store failed.
    pub fn enqueue_change(
        &self,
        touched: Vec<Touched>,
        placeholder: Option<crate::durability::audit::Record>,
    ) -> Result<(Hold, Option<u64>), PersistError> {
        if self.durable.borrow().failed {
            return Err(PersistError::Unavailable);
        }
        let ticket = placeholder.is_some().then(|| {
            let mut tickets = self
                .queue
                .tickets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            tickets.0 += 1;
            tickets.0
        });
        let seq = {
            let mut pending = self.queue.lock();
            pending.jobs.push(Job {
                touched,
                audit: placeholder,
                ticket,
            });
            let seq = pending.next;
            pending.last = seq;
            seq
        };
        self.queue.work.notify_one();
        Ok((
            Hold {
                session: self.session,
                seq,
            },
            ticket,
        ))
    }

    /// Replaces the placeholder of the change queued under `ticket` with the request's full
    /// audit record (in the same commit, unless that commit went without it: see
    /// [`ATTACH_WAIT`]).
    pub fn attach(&self, ticket: u64, record: crate::durability::audit::Record) {
        {
            // Checked and inserted under the tickets lock, which the committer takes to mark
            // tickets committed before it drains the attachments: nothing is left behind.
            let tickets = self
                .queue
                .tickets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if ticket <= tickets.1 {
                tracing::warn!(
                    ticket,
                    "an audit record arrived after its change was committed"
                );
                return;
            }
            self.queue
                .attached
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(ticket, record);
        }
        self.queue.attach.notify_waiters();
    }

    /// Queues the audit record of a refused request (unauthenticated or malformed) to ride
    /// with the next commit: it forces no commit of its own, and no answer waits for it. At
    /// [`MAX_RIDERS`] waiting records a commit is made for them; otherwise they are written
    /// within a checkpoint interval.
    ///
    /// # Errors
    /// [`PersistError::Unavailable`] once the store failed.
    pub fn note_refused(&self, audit: crate::durability::audit::Record) -> Result<(), PersistError> {
        if self.durable.borrow().failed {
            return Err(PersistError::Unavailable);
        }
        let wake = {
            let mut pending = self.queue.lock();
            pending.riders.push(audit);
            pending.riders.len() == 1 || pending.riders.len() >= MAX_RIDERS
        };
        // The first rider starts the committer's wait of [`RIDER_INTERVAL`]; later ones do not
        // restart it, so a trickle of refusals is written at least once that interval.
        if wake {
            self.queue.work.notify_one();
        }
        Ok(())
    }

    /// Queues `touched` and `audit` as [`Persister::submit`] does, then waits until they are
    /// durable.
    ///
    /// # Errors
    /// [`PersistError`] if the store cannot make them durable; the process is then stopping.
    pub async fn persist(
        &self,
        touched: Vec<Touched>,
        audit: Option<crate::durability::audit::Record>,
    ) -> Result<(), PersistError> {
        let hold = self.submit(touched, audit).await?;
        self.durable_through(hold.seq).await
    }

    /// What any answer given now must be held for: the commit of the last change queued, which
    /// whatever the answer read may depend on.
    pub fn release_point(&self) -> Hold {
        Hold {
            session: self.session,
            seq: self.queue.lock().last,
        }
    }

    /// Waits until commit `seq` (and all before it) is durable.
    ///
    /// # Errors
    /// [`PersistError::Unavailable`] if the store failed first.
    pub async fn durable_through(&self, seq: u64) -> Result<(), PersistError> {
        let mut durable = self.durable.clone();
        let reached = durable
            .wait_for(|d| d.failed || d.seq >= seq)
            .await
            .map_err(|_| PersistError::Unavailable)?;
        if reached.failed {
            return Err(PersistError::Unavailable);
        }
        Ok(())
    }

    /// The audit chain head as durably stored, signed with this boot's checkpoint key; with
    /// that key (SubjectPublicKeyInfo DER).
    ///
    /// # Errors
    /// `KMSInternalException` if signing fails.
    pub fn signed_audit_head(&self, nonce: &[u8]) -> Result<SignedHead, KmsError> {
        let head = self.durable.borrow().head;
        let chain = self
            .chain
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(SignedHead {
            head,
            signature: chain.sign_head(nonce, head)?,
            public_key: chain.public_key().to_vec(),
            attestation_document: chain.attestation_document().to_vec(),
            member: chain.member().map(str::to_owned),
        })
    }

    /// Runs `ask` while nothing is in flight and the committer waits, with the last commit
    /// that changed records (acknowledged, since nothing is in flight): a store head asked for
    /// meanwhile is comparable with it.
    ///
    /// # Errors
    /// [`PersistError::Unavailable`] once the store failed.
    pub async fn quiet_base<T, F: std::future::Future<Output = T>>(
        &self,
        ask: impl FnOnce(u64) -> F,
    ) -> Result<T, PersistError> {
        let (_permit, base) = self.quiet().await?;
        Ok(ask(base).await)
    }

    /// Holds the room for commits in flight (so nothing is in flight and the committer waits)
    /// and reads the last commit that changed records, made or adopted: what the follower's
    /// operations run under.
    ///
    /// # Errors
    /// [`PersistError::Unavailable`] once the store failed.
    async fn quiet(&self) -> Result<(tokio::sync::SemaphorePermit<'_>, u64), PersistError> {
        let permit = self
            .room
            .acquire()
            .await
            .map_err(|_| PersistError::Unavailable)?;
        if self.durable.borrow().failed {
            return Err(PersistError::Unavailable);
        }
        Ok((
            permit,
            self.follow.base.load(std::sync::atomic::Ordering::SeqCst),
        ))
    }

    /// Runs `take` on the state under its keys and principals write locks, with the room for
    /// commits in flight held (so nothing is in flight, and the committer waits), if this member
    /// made no change since its commit `base` and none waits to be committed: so that no change
    /// is ever built on one state and committed on another. The one path by which another
    /// member's state comes in ([`Persister::adopt`], [`Persister::take_caught`]).
    async fn take_newer<T>(
        &self,
        base: u64,
        take: impl FnOnce(&State, &mut crate::keys::KeyStore, &mut crate::access::principals::Principals) -> T,
    ) -> Result<T, NotAdopted> {
        let (_permit, now) = self.quiet().await.map_err(|_| NotAdopted::Unavailable)?;
        if now != base {
            return Err(NotAdopted::Moved);
        }
        let state = &self.follow.state;
        // The order every operation that takes both follows: keys, then principals.
        let mut keys = state.write();
        let mut principals = state.principals_mut();
        if self.queue.lock().jobs.iter().any(|job| !job.touched.is_empty()) {
            return Err(NotAdopted::LocalChanges);
        }
        Ok(take(state, &mut keys, &mut principals))
    }

    /// Takes `newer` (another member's commits, loaded and verified) in place of the state,
    /// as [`Persister::take_newer`] allows. Changes made after it build on `newer`'s last
    /// commit.
    ///
    /// # Errors
    /// [`NotAdopted`]: why the state stays as it was.
    pub async fn adopt(
        &self,
        base: u64,
        newer: Newer,
        config: &crate::config::Config,
    ) -> Result<(), NotAdopted> {
        self.take_newer(base, |state, keys, principals| {
            *keys = newer.keys;
            principals.replace_sealed(&newer.principals, config);
            if let Some(operator) = newer.tls_operator {
                state.set_tls_operator(operator);
            }
            state.set_measurements(newer.measurements);
            self.follow
                .base
                .store(newer.manifest.seq(), std::sync::atomic::Ordering::SeqCst);
            // The committer goes on from the newer manifest, with this session's own numbering
            // (answers are held by it) and the adopted commit as the base.
            let mut manifest = self.follow.manifest();
            let counter = manifest.seq();
            *manifest = newer.manifest.rebased(counter);
        })
        .await
    }

    /// Runs `read` on the committer's manifest while nothing is in flight and the committer
    /// waits, if this member's state is still that of commit `base`; `None` if it moved.
    ///
    /// # Errors
    /// [`PersistError::Unavailable`] once the store failed.
    pub async fn with_manifest<T>(
        &self,
        base: u64,
        read: impl FnOnce(&Manifest) -> T,
    ) -> Result<Option<T>, PersistError> {
        let (_permit, now) = self.quiet().await?;
        Ok((now == base).then(|| read(&self.follow.manifest())))
    }

    /// Takes another member's changes, read by difference from this member's state at commit
    /// `base` and verified ([`catch_up::catch_up`]), as [`Persister::take_newer`] allows. The
    /// committer then continues from the caught-up manifest.
    ///
    /// # Errors
    /// [`NotAdopted`] as [`Persister::adopt`]; `Ok(Err(Fallback))` when the changes cannot be
    /// taken (the state is then as it was, and the member loads the store whole).
    pub async fn take_caught(
        &self,
        base: u64,
        caught: catch_up::Caught,
        changes: crate::durability::seal::manifest::ManifestChanges,
        names: &NameKey,
        config: &crate::config::Config,
    ) -> Result<Result<(), catch_up::Fallback>, NotAdopted> {
        self.take_newer(base, |state, keys, principals| {
            let settings = caught.apply(keys, principals, names, config)?;
            if let Some(operator) = settings.tls_operator {
                state.set_tls_operator(operator);
            }
            if let Some(measurements) = settings.measurements {
                state.set_measurements(measurements);
            }
            self.follow
                .base
                .store(changes.seq(), std::sync::atomic::Ordering::SeqCst);
            self.follow.manifest().catch_up(changes);
            Ok(())
        })
        .await
    }

    /// The last commit that changed records, made or adopted: what this member knows the
    /// store's state to be.
    pub fn base(&self) -> u64 {
        self.follow.base.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The last commit the store acknowledged in this session (metrics).
    pub fn durable_seq(&self) -> u64 {
        self.durable.borrow().seq
    }

    /// Whether this session's store failed (nothing more becomes durable through it).
    pub fn failed(&self) -> bool {
        self.durable.borrow().failed
    }

    /// How the session ended; `None` while it runs.
    pub fn ended(&self) -> Option<Ended> {
        let durable = self.durable.borrow();
        durable.failed.then_some(durable.ended)
    }

    /// Whether the session ended in a way any enclave may recover from in place, taking the
    /// store's state again in a new session: the store refused a commit for now (its audit
    /// disk is full), or the channel closed (the parent restarted).
    pub fn recoverable(&self) -> bool {
        matches!(self.ended(), Some(Ended::ForNow | Ended::Lost))
    }

    /// The last commit the store acknowledged in this session and the audit head it made
    /// durable; `None` before the first.
    pub fn acknowledged(&self) -> Option<(u64, Head)> {
        let durable = self.durable.borrow();
        durable.acked.then_some((durable.seq, durable.head))
    }

    /// Resolves once the store failed for good: the process should exit.
    pub async fn fatal(&self) {
        self.fatal.notified().await;
    }

    /// Starts the committer on an open store channel on which `session` was announced
    /// ([`announce`]).
    pub fn start(
        stream: Stream,
        state: Arc<State>,
        domain: Arc<DomainKey>,
        manifest: Manifest,
        entropy: Arc<dyn Entropy>,
        chain: AuditChain,
        session: u64,
    ) -> Persister {
        let member = chain.member().is_some();
        let (base, seq) = (manifest.base(), manifest.seq());
        let manifest = Arc::new(Mutex::new(manifest));
        let follow = Arc::new(Follow {
            state: state.clone(),
            base: std::sync::atomic::AtomicU64::new(base),
            manifest: manifest.clone(),
        });
        let (durable_tx, durable) = watch::channel(Durable {
            seq,
            head: chain.head(),
            failed: false,
            ended: Ended::Refused,
            acked: false,
        });
        let durable_tx = Arc::new(durable_tx);
        let chain = Arc::new(Mutex::new(chain));
        let queue = Arc::new(Queue {
            pending: Mutex::new(Pending {
                next: seq + 1,
                // Nothing queued yet in this session: answers wait for nothing. (What earlier
                // sessions committed is durable, and this session's parent knows none of it.)
                last: 0,
                jobs: Vec::new(),
                riders: Vec::new(),
            }),
            work: Notify::new(),
            space: Notify::new(),
            attached: Mutex::default(),
            attach: Notify::new(),
            tickets: Mutex::new((0, 0)),
        });
        let fatal = Arc::new(Notify::new());
        let (reader, writer) = tokio::io::split(stream);
        let (in_flight_tx, in_flight_rx) = mpsc::channel(MAX_IN_FLIGHT);
        let room = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
        let fail = {
            let fatal = fatal.clone();
            let durable_tx = durable_tx.clone();
            let queue = queue.clone();
            move |why: &str, ended: Ended| {
                let first = durable_tx.send_if_modified(|d| {
                    let first = !std::mem::replace(&mut d.failed, true);
                    if first {
                        d.ended = ended;
                    }
                    first
                });
                if first {
                    tracing::error!(why, ?ended, "durable store failed: this session is over");
                }
                queue.space.notify_waiters();
                fatal.notify_one();
            }
        };
        let fail2 = fail.clone();
        let committer_chain = chain.clone();
        let committer_queue = queue.clone();
        let committer_follow = follow.clone();
        let committer_room = room.clone();
        // Both end once the session failed (whichever noticed first), so that a member that
        // recovers leaves neither, nor the channel they hold, behind.
        let mut committer_stop = durable.clone();
        let mut acknowledger_stop = durable.clone();
        // The committer and the acknowledger are the shell's tasks.
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(async move {
            let committing = committer(
                committer_queue,
                writer,
                in_flight_tx,
                committer_room,
                &committer_follow,
                Sealing {
                    names: NameKey::of(&domain),
                    state,
                    domain,
                    manifest,
                    entropy,
                    chain: committer_chain,
                    last_checkpoint: None,
                    uncovered: false,
                    member,
                },
            );
            tokio::select! {
                (why, ended) = committing => fail(&why, ended),
                _ = committer_stop.wait_for(|d| d.failed) => {}
            }
        });
        let acked = durable_tx.clone();
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(async move {
            tokio::select! {
                (why, ended) = acknowledger(reader, in_flight_rx, &acked) => fail2(&why, ended),
                _ = acknowledger_stop.wait_for(|d| d.failed) => {}
            }
        });
        Persister {
            queue,
            session,
            fatal,
            chain,
            durable,
            room,
            follow,
        }
    }
}

/// Announces `session` on a store channel (`Request::Hold`): the parent then holds the
/// answers framed with it until their commits on this channel are durable.
///
/// # Errors
/// [`PersistError`] if the channel fails or the parent refuses.
pub async fn announce<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    session: u64,
) -> Result<(), PersistError> {
    v1::write_frame(stream, &Request::Hold { session }).await?;
    match v1::read_frame::<_, Response>(stream).await? {
        Some(Response::Holding) => Ok(()),
        Some(Response::Error { message }) => Err(PersistError::Refused(message)),
        _ => Err(PersistError::Refused(
            "unexpected answer to Hold".to_owned(),
        )),
    }
}

/// The batch with each change's full audit record in place of its placeholder: waits up to
/// [`ATTACH_WAIT`] for records not attached yet (they come microseconds after the change, once
/// its request has its answer). Tickets are then marked committed: later attachments are late.
async fn with_attached_records(queue: &Queue, mut batch: Vec<Job>) -> Vec<Job> {
    let tickets: Vec<u64> = batch.iter().filter_map(|j| j.ticket).collect();
    let Some(&last) = tickets.last() else {
        return batch;
    };
    #[allow(clippy::disallowed_methods)] // the committer's wait, in the shell
    let deadline = tokio::time::Instant::now() + ATTACH_WAIT;
    loop {
        let attached = queue.attach.notified();
        tokio::pin!(attached);
        attached.as_mut().enable();
        let all = {
            let map = queue
                .attached
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            tickets.iter().all(|t| map.contains_key(t))
        };
        if all || tokio::time::timeout_at(deadline, attached).await.is_err() {
            break;
        }
    }
    {
        // Marked before taking, so an attachment that races this is refused as late rather
        // than left in the map.
        let mut t = queue
            .tickets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        t.1 = t.1.max(last);
    }
    let mut map = queue
        .attached
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for job in &mut batch {
        if let Some(record) = job.ticket.and_then(|t| map.remove(&t)) {
            job.audit = Some(record);
        }
    }
    batch
}

/// Builds and sends commits until the channel breaks.
async fn committer<W: AsyncWrite + Unpin>(
    queue: Arc<Queue>,
    mut writer: W,
    in_flight: mpsc::Sender<InFlight>,
    room: Arc<tokio::sync::Semaphore>,
    follow: &Follow,
    mut sealing: Sealing,
) -> (String, Ended) {
    loop {
        let (queued, riding) = {
            let pending = queue.lock();
            (
                !pending.jobs.is_empty() || pending.riders.len() >= MAX_RIDERS,
                !pending.riders.is_empty(),
            )
        };
        if !queued {
            if !sealing.uncovered && !riding {
                queue.work.notified().await;
                continue;
            }
            let interval = if sealing.uncovered {
                CHECKPOINT_INTERVAL
            } else {
                RIDER_INTERVAL
            };
            if tokio::time::timeout(interval, queue.work.notified())
                .await
                .is_ok()
            {
                continue;
            }
            // Nothing arrived: cover the records written since the last checkpoint, and write
            // the refused requests' records that waited.
        }
        // Wait for room in flight before gathering the batch: whatever arrives while the
        // store is busy joins this commit instead of queueing as commits of its own.
        let Ok(permit) = room.clone().acquire_owned().await else {
            return ("acknowledger stopped".to_owned(), Ended::Refused);
        };
        // Everything queued goes, since all of it was promised this commit's number.
        let (seq, batch, riders) = {
            let mut pending = queue.lock();
            let seq = pending.next;
            pending.next += 1;
            (
                seq,
                std::mem::take(&mut pending.jobs),
                std::mem::take(&mut pending.riders),
            )
        };
        queue.space.notify_waiters();
        let batch = with_attached_records(&queue, batch).await;
        // A member's commit that changes no record is unconditional: it builds on nothing, so
        // members' reads never conflict; the next commit that changes records still builds on
        // the last one that did.
        let audit_only = sealing.member && batch.iter().all(|job| job.touched.is_empty());
        let (base, next) = if audit_only {
            let mut manifest = follow.manifest();
            manifest.skip(1);
            (None, manifest.seq())
        } else {
            let (base, next) = follow.manifest().next_commit();
            follow
                .base
                .store(next, std::sync::atomic::Ordering::SeqCst);
            (Some(base), next)
        };
        if next != seq {
            return (
                format!("commit {seq} is out of step with the manifest"),
                Ended::Refused,
            );
        }
        // The committer is the shell: it reads the clock, and commit building gets the time.
        #[allow(clippy::disallowed_methods)]
        let now = Now {
            at: std::time::Instant::now(),
            millis: crate::env::SystemClock.now_millis(),
        };
        let built = if batch.is_empty() && riders.is_empty() {
            checkpoint_commit(base, seq, now, &mut sealing)
        } else {
            let mut touched = BTreeSet::new();
            let mut audit = Vec::new();
            for job in batch {
                touched.extend(job.touched);
                audit.extend(job.audit);
            }
            audit.extend(riders);
            build_commit(base, seq, &touched, audit, now, &mut sealing)
        };
        let (commit, head) = match built {
            Ok(c) => c,
            Err(e) => return (e.to_string(), Ended::Refused),
        };
        // In flight before it is written, so that the acknowledger expects its answer before
        // the parent can send it. The channel holds as many commits as there are permits:
        // this never waits.
        if in_flight.send((seq, head, permit)).await.is_err() {
            return ("acknowledger stopped".to_owned(), Ended::Refused);
        }
        if let Err(e) = v1::write_frame(&mut writer, &commit).await {
            let ended = match e {
                v1::WireError::Io(_) => Ended::Lost,
                _ => Ended::Refused,
            };
            return (format!("writing commit {seq}: {e}"), ended);
        }
    }
}

/// Reads acknowledgements in order and publishes how far commits are durable, until one
/// fails: then why, and how the session ended. With nothing in flight it watches the channel,
/// so that a parent that stopped is noticed before the next commit.
async fn acknowledger<R: AsyncRead + Unpin>(
    mut reader: R,
    mut in_flight: mpsc::Receiver<InFlight>,
    durable: &watch::Sender<Durable>,
) -> (String, Ended) {
    use tokio::io::AsyncReadExt as _;
    loop {
        // A commit is in flight before it is written, so whatever the parent sends while none
        // is was not asked for. (`read` is cancel-safe: a byte is taken only if it completes.)
        let mut idle = [0u8; 1];
        let next = tokio::select! {
            biased;
            next = in_flight.recv() => next,
            read = reader.read(&mut idle) => return match read {
                Ok(0) => ("the store channel closed".to_owned(), Ended::Lost),
                Ok(_) => (
                    "the parent sent a frame nothing asked for".to_owned(),
                    Ended::Refused,
                ),
                Err(e) => (format!("the store channel broke: {e}"), Ended::Lost),
            },
        };
        // Each commit's permit is dropped once its answer is read, making room for the next.
        let Some((seq, head, _permit)) = next else {
            return ("committer stopped".to_owned(), Ended::Refused);
        };
        match v1::read_frame::<_, Response>(&mut reader).await {
            Ok(Some(Response::Committed { seq: acked })) if acked == seq => {
                durable.send_modify(|d| {
                    d.seq = seq;
                    d.head = head;
                    d.acked = true;
                });
            }
            Ok(Some(Response::Unavailable { message })) => {
                return (
                    format!("the store cannot take commit {seq} for now: {message}"),
                    Ended::ForNow,
                );
            }
            Ok(Some(Response::Error { message })) => {
                return (
                    format!("the parent refused commit {seq}: {message}"),
                    Ended::Refused,
                );
            }
            Ok(None) => {
                return (
                    format!("the store channel closed before commit {seq} was acknowledged"),
                    Ended::Lost,
                );
            }
            Ok(other) => {
                return (
                    format!("unexpected answer to commit {seq}: {other:?}"),
                    Ended::Refused,
                );
            }
            Err(e @ (v1::WireError::Io(_) | v1::WireError::Truncated { .. })) => {
                return (
                    format!("the store channel broke before commit {seq} was acknowledged: {e}"),
                    Ended::Lost,
                );
            }
            Err(e) => {
                return (
                    format!("reading the acknowledgement of commit {seq}: {e}"),
                    Ended::Refused,
                );
            }
        }
    }
}

pub mod catch_up;
mod commit;
mod deployment;
mod follow;
mod load;
#[cfg(test)]
mod tests;
