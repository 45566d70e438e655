//! A hostile parent on the store channel: a proxy between `ekms-enclave` and the real
//! parent's store, driven by a seeded scheduler.
//!
//! The enclave is started with `--store` naming the proxy; the proxy connects to the parent's
//! store channel for every connection the enclave opens, decodes each frame with
//! [`ekms_shared::wire::v1`] and, as its [`Plan`] and its random source say, forwards it
//! honestly or not:
//!
//! - commits ([`CommitPlan`]): delays them, forwards them twice, answers `Error` without
//!   forwarding (fail), answers `Committed` without forwarding (a fake acknowledgement),
//!   forwards them with a sealed record or an audit line altered, without their deletes, after
//!   the next one (reordered), followed by the replay of any earlier commit (of any boot),
//!   answers twice, drops the frame and closes the channel, answers with a truncated or a
//!   garbled frame;
//! - loads ([`LoadPlan`]): answers the unseal's `Load` from any mix of what it has seen over
//!   the whole test, across restarts: every `Records` page the parent sent and every record
//!   every commit carried. The snapshot-mixing attack of issue 17 ([`LoadPlan::IssueMix`]),
//!   a whole old snapshot ([`LoadPlan::Rollback`]), random mixes of old and current roots,
//!   pages, buckets and records in any order ([`LoadPlan::RandomMix`]), records altered,
//!   dropped or replaced by older versions, one commit's records laid over the store
//!   ([`LoadPlan::Overlay`]), and truncated or garbled frames. Records of commits the parent
//!   never stored join the mixes only when asked ([`Plan::mix_unstored`]).
//!
//! It also keeps what a checker needs to tell a tampered load from an exact one: every state
//! the enclave sealed (the records after each commit it sent, in the order it sent them,
//! [`HostileProxy::mark`]), every commit and whether the parent stored it
//! ([`HostileProxy::commits`]) and, for each connection, what it did ([`SessionReport`]).
//!
//! It runs on a runtime of its own (a thread), so a test's blocking calls never stall it.
//! Every random choice comes from one [`Rng`] seeded by the test: a failing seed replays the
//! same choices for the same sequence of frames (timing may still differ between runs).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ekms_shared::transport::{self, Address, Listener, Stream};
use ekms_shared::wire::v1::{self, Record, RecordKey, Request, Response};
use tokio::io::AsyncWriteExt as _;

/// The store kind of the unsealed deployment record (the enclave's `persist::DEPLOYMENT_KIND`):
/// read before unseal, skipped by the sealed load.
pub const DEPLOYMENT_KIND: u8 = 0;
/// The store kind of the manifest's root and pages (`seal::RecordKind::Root`).
pub const ROOT_KIND: u8 = 1;
/// The store kind of manifest buckets (`seal::RecordKind::Bucket`).
pub const BUCKET_KIND: u8 = 2;

/// xorshift64* seeded through splitmix64: small, deterministic, good enough to schedule.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(z | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        usize::try_from(self.next_u64() % n as u64).unwrap_or(0)
    }

    /// True with probability `per_mille` / 1000.
    pub fn chance(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.below(1000) < per_mille as usize
    }

    /// One of `items` (`None` when empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            items.get(self.below(items.len()))
        }
    }
}

/// How the proxy treats each `Commit`: the chance, per mille, of each misbehaviour. At most
/// one of the exclusive ones (fail ... reorder) applies to a commit, tried in that order; the
/// alterations of a forwarded commit (corrupt_record ... replay) combine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitPlan {
    /// Answer `Error` without forwarding (the enclave must stop).
    pub fail: u32,
    /// Answer `Unavailable` without forwarding, as a store whose audit disk is full does (the
    /// enclave takes the store's state again in a new session).
    pub unavailable: u32,
    /// Answer `Committed` without forwarding.
    pub fake_ack: u32,
    /// Drop the frame and close the channel (the enclave must stop).
    pub drop_close: u32,
    /// Answer with the first bytes of the frame, then close (the enclave must stop).
    pub truncate: u32,
    /// Answer with a frame whose magic is altered (the enclave must stop).
    pub garble: u32,
    /// Forward, and answer the enclave twice.
    pub duplicate_answer: u32,
    /// Acknowledge now and forward it after the next commit (or never, if none comes).
    pub reorder: u32,
    /// Flip a byte of one sealed record before forwarding.
    pub corrupt_record: u32,
    /// Flip a byte of one audit line before forwarding.
    pub corrupt_audit: u32,
    /// Forward without the commit's deletes.
    pub drop_deletes: u32,
    /// Forward twice.
    pub duplicate: u32,
    /// After forwarding, replay the records of an earlier commit the parent stored (its audit
    /// lines left out).
    pub replay: u32,
    /// After forwarding, store the records of an earlier commit the parent never stored
    /// (answered Error, dropped, or acknowledged without forwarding): sealed at a generation
    /// the enclave used again after it restarted.
    pub replay_unstored: u32,
    /// Wait before forwarding.
    pub delay: u32,
    /// The longest wait, in milliseconds.
    pub max_delay_ms: u64,
}

impl CommitPlan {
    /// Forward everything as it is.
    pub fn honest() -> CommitPlan {
        CommitPlan::default()
    }

    /// Only what leaves the enclave running and the store diverging from what it sealed:
    /// fake acknowledgements, reordering, altered or replayed records, dropped deletes,
    /// duplicates and delays; scaled by `scale` (1 to 10).
    pub fn diverging(scale: u32) -> CommitPlan {
        CommitPlan {
            fake_ack: 15 * scale,
            duplicate_answer: 0,
            reorder: 10 * scale,
            corrupt_record: 10 * scale,
            drop_deletes: 15 * scale,
            duplicate: 20 * scale,
            replay: 8 * scale,
            delay: 60 * scale,
            max_delay_ms: 40,
            ..CommitPlan::default()
        }
    }

    /// Everything, the fatal ones included, scaled by `scale` (1 to 10).
    pub fn everything(scale: u32) -> CommitPlan {
        CommitPlan {
            fail: 3 * scale,
            drop_close: 2 * scale,
            truncate: 2 * scale,
            garble: 2 * scale,
            duplicate_answer: 2 * scale,
            corrupt_audit: 2 * scale,
            ..CommitPlan::diverging(scale)
        }
    }
}

/// How the proxy answers the unseal's `Load` (the first full `Load` of a connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadPlan {
    /// The parent's records as they are.
    Honest,
    /// Issue 17: snapshot `old`'s root, pages and buckets, then the current store, then the
    /// data records only snapshot `old` has.
    IssueMix {
        /// A [`HostileProxy::mark`].
        old: usize,
    },
    /// Snapshot `to` exactly: a consistent old state (a whole-store rollback).
    Rollback {
        /// A [`HostileProxy::mark`].
        to: usize,
    },
    /// Each record from the current store or any earlier version, some left out, some
    /// repeated, old records brought back, the order sometimes broken; never the current store
    /// itself.
    RandomMix,
    /// The current store with `count` sealed records altered (one byte flipped).
    CorruptRecords {
        /// How many.
        count: usize,
    },
    /// The current store with `count` records replaced by an earlier version of themselves.
    OldVersions {
        /// How many.
        count: usize,
    },
    /// The current store without `count` of its sealed records.
    DropRecords {
        /// How many.
        count: usize,
    },
    /// The current store twice over, the second copy after the first.
    Repeat,
    /// The current store with the records commit `commit` (an index into
    /// [`HostileProxy::commits`]) wrote, its root aside, in place of the store's (and added
    /// where the store has none), in order.
    Overlay {
        /// Which commit.
        commit: usize,
    },
    /// The first bytes of the answer, then the channel closes.
    Truncate,
    /// The answer with its magic altered.
    Garble,
}

/// What the proxy does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// For each `Commit`.
    pub commits: CommitPlan,
    /// For the unseal's `Load`.
    pub load: LoadPlan,
    /// Mixed loads may also draw on the records of commits the parent never stored (refused,
    /// dropped, acknowledged without forwarding), sealed at generations the enclave may have
    /// used again after a restart.
    pub mix_unstored: bool,
}

impl Plan {
    /// Forward everything as it is.
    pub fn honest() -> Plan {
        Plan {
            commits: CommitPlan::honest(),
            load: LoadPlan::Honest,
            mix_unstored: false,
        }
    }
}

/// A commit the enclave sent, as the proxy keeps it.
#[derive(Debug, Clone)]
pub struct SentCommit {
    /// The connection it came on.
    pub session: usize,
    /// Its sequence number (the generation of every record it seals).
    pub seq: u64,
    /// What it writes.
    pub puts: Vec<Record>,
    /// What it removes.
    pub deletes: Vec<RecordKey>,
    /// The parent made it durable (forwarded as it was, answered `Committed`).
    pub stored: bool,
}

/// Records by key, as the parent would hold them.
pub type Snapshot = BTreeMap<RecordKey, Arc<[u8]>>;

/// What the proxy served for an unseal.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// The plan it followed.
    pub plan: LoadPlan,
    /// Records served (the deployment record included).
    pub served: usize,
    /// What was served is exactly the parent's store.
    pub honest: bool,
    /// What was served is exactly a state the enclave sealed (index into the snapshots), the
    /// deployment record aside, strictly increasing and each record once. `None`: a mix that
    /// no enclave ever sealed, which must not load silently.
    pub sealed_state: Option<usize>,
    /// The last state the enclave sealed before this load (`None`: none yet).
    pub latest_sealed: Option<usize>,
    /// What was done, for messages.
    pub description: String,
}

impl LoadReport {
    /// What was served is no state the enclave sealed: the enclave must refuse the load or
    /// records of it.
    pub fn tampered(&self) -> bool {
        self.sealed_state.is_none()
    }

    /// What was served is a state the enclave sealed, but not the last one: a consistent
    /// rollback, which one enclave alone cannot see (the audit chain shows it).
    pub fn rolled_back(&self) -> bool {
        matches!((self.sealed_state, self.latest_sealed), (Some(s), Some(l)) if s != l)
    }
}

/// What the proxy did on one connection of the enclave.
#[derive(Debug, Clone, Default)]
pub struct SessionReport {
    /// Its number (0 for the first connection).
    pub id: usize,
    /// The unseal's load, if there was one.
    pub load: Option<LoadReport>,
    /// Misbehaviours after which the enclave must stop (fail-stop).
    pub fatal: Vec<String>,
    /// Commits acknowledged and never forwarded, by seq.
    pub faked: Vec<u64>,
    /// Commits the enclave sent.
    pub commits: usize,
    /// Commits not forwarded as they were, when they were (delays aside).
    pub altered: usize,
    /// Everything done other than forwarding as is.
    pub events: Vec<String>,
    /// The connection ended.
    pub closed: bool,
}

#[derive(Debug)]
struct Shared {
    rng: Rng,
    plan: Plan,
    /// Every state the enclave sealed: the records after each commit it sent (deployment
    /// record aside), in the order sent, across connections.
    sealed: Vec<Arc<Snapshot>>,
    /// Every version of every record the parent held (from its pages and the commits it
    /// stored); with [`Plan::mix_unstored`], the records of commits it never stored too.
    versions: BTreeMap<RecordKey, Vec<Arc<[u8]>>>,
    /// Every `Records` page the parent sent, over the whole test.
    pages: Vec<Vec<Record>>,
    /// Every commit the enclave sent, over the whole test.
    commits: Vec<SentCommit>,
    sessions: Vec<SessionReport>,
}

impl Shared {
    fn note_version(&mut self, key: &RecordKey, sealed: &[u8]) {
        let versions = self.versions.entry(key.clone()).or_default();
        if !versions.iter().any(|v| &v[..] == sealed) {
            versions.push(Arc::from(sealed));
        }
    }

    fn session(&mut self, id: usize) -> &mut SessionReport {
        &mut self.sessions[id]
    }

    /// Which sealed state `records` is exactly, if any (the deployment record aside).
    fn sealed_state_of(&self, records: &[Record]) -> Option<usize> {
        let data: Vec<&Record> = records
            .iter()
            .filter(|r| r.key.kind != DEPLOYMENT_KIND)
            .collect();
        if !data.windows(2).all(|w| w[0].key < w[1].key) {
            return None;
        }
        (0..self.sealed.len()).rev().find(|&i| {
            let state = &self.sealed[i];
            state.len() == data.len()
                && data
                    .iter()
                    .zip(state.iter())
                    .all(|(r, (k, v))| r.key == *k && r.sealed[..] == v[..])
        })
    }
}

/// The proxy: listens where the enclave's `--store` points, connects to the parent's store for
/// each connection. Dropping it stops it (and closes its connections).
#[derive(Debug)]
pub struct HostileProxy {
    shared: Arc<Mutex<Shared>>,
    address: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl HostileProxy {
    /// Listens on the Unix socket `listen` and relays to the parent's store at `upstream`
    /// (`unix:PATH` or `tcp://HOST:PORT`), honestly until told otherwise
    /// ([`HostileProxy::set_plan`]); every random choice comes from `seed`.
    ///
    /// # Panics
    /// When `upstream` is not an address or the socket cannot be bound.
    pub fn start(listen: &std::path::Path, upstream: &str, seed: u64) -> HostileProxy {
        let upstream: Address = upstream.parse().expect("a store address");
        let listen_address = Address::Unix(listen.to_path_buf());
        let shared = Arc::new(Mutex::new(Shared {
            rng: Rng::new(seed),
            plan: Plan::honest(),
            sealed: Vec::new(),
            versions: BTreeMap::new(),
            pages: Vec::new(),
            commits: Vec::new(),
            sessions: Vec::new(),
        }));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("hostile-proxy".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("a runtime for the proxy");
                runtime.block_on(async move {
                    let listener = match Listener::bind(&listen_address).await {
                        Ok(l) => {
                            let _ = ready_tx.send(Ok(()));
                            l
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let accept = async {
                        loop {
                            let Ok((mut down, _peer)) = listener.accept().await else {
                                continue;
                            };
                            let shared = thread_shared.clone();
                            let upstream = upstream.clone();
                            tokio::spawn(async move {
                                // The enclave's metrics connection is passed through and is no
                                // session: the sessions are the channels that load and commit.
                                let first = match v1::read_frame::<_, Request>(&mut down).await {
                                    Ok(Some(request)) => request,
                                    Ok(None) | Err(_) => return,
                                };
                                if matches!(first, Request::Metrics(_)) {
                                    pass_metrics(down, first, &upstream).await;
                                    return;
                                }
                                let id = {
                                    let mut s = lock(&shared);
                                    let id = s.sessions.len();
                                    s.sessions.push(SessionReport {
                                        id,
                                        ..SessionReport::default()
                                    });
                                    id
                                };
                                let mut session = Session {
                                    id,
                                    shared: shared.clone(),
                                    intended: Snapshot::new(),
                                    held: None,
                                    crafted: None,
                                };
                                let why = session.run(down, &upstream, Some(first)).await;
                                let mut s = lock(&shared);
                                let report = s.session(id);
                                if let Some((_, Request::Commit { seq, .. })) = session.held {
                                    report.faked.push(seq);
                                    report
                                        .events
                                        .push(format!("commit {seq} held back, never forwarded"));
                                }
                                report.closed = true;
                                report.events.push(format!("connection ended: {why}"));
                            });
                        }
                    };
                    tokio::select! {
                        () = accept => {}
                        _ = stop_rx => {}
                    }
                });
                runtime.shutdown_timeout(Duration::from_secs(2));
            })
            .expect("spawning the proxy thread");
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("the proxy cannot listen on {}: {e}", listen.display()),
            Err(_) => panic!("the proxy did not start"),
        }
        HostileProxy {
            shared,
            address: format!("unix:{}", listen.display()),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Where the enclave's `--store` must point.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// What to do from now on.
    pub fn set_plan(&self, plan: Plan) {
        lock(&self.shared).plan = plan;
    }

    /// What to do with commits from now on (the load plan stays).
    pub fn set_commit_plan(&self, commits: CommitPlan) {
        lock(&self.shared).plan.commits = commits;
    }

    /// Whether mixed loads may draw on the records of commits the parent never stored.
    pub fn set_mix_unstored(&self, on: bool) {
        lock(&self.shared).plan.mix_unstored = on;
    }

    /// What to do with the next loads (the commit plan stays).
    pub fn set_load_plan(&self, load: LoadPlan) {
        lock(&self.shared).plan.load = load;
    }

    /// The index of the last state the enclave sealed so far (for [`LoadPlan::IssueMix`] and
    /// [`LoadPlan::Rollback`]).
    ///
    /// # Panics
    /// Before the enclave sealed anything.
    pub fn mark(&self) -> usize {
        lock(&self.shared)
            .sealed
            .len()
            .checked_sub(1)
            .expect("the enclave sealed nothing yet")
    }

    /// The report of the latest connection.
    ///
    /// # Panics
    /// Before the enclave connected.
    pub fn last_session(&self) -> SessionReport {
        lock(&self.shared)
            .sessions
            .last()
            .cloned()
            .expect("the enclave connected")
    }

    /// Every connection's report.
    pub fn sessions(&self) -> Vec<SessionReport> {
        lock(&self.shared).sessions.clone()
    }

    /// Every commit the enclave sent so far, in order, across connections.
    pub fn commits(&self) -> Vec<SentCommit> {
        lock(&self.shared).commits.clone()
    }

    /// How many `Records` pages of the parent and record versions the proxy has seen.
    pub fn seen(&self) -> (usize, usize) {
        let s = lock(&self.shared);
        (s.pages.len(), s.versions.values().map(Vec::len).sum())
    }
}

impl Drop for HostileProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What a commit gets.
#[derive(Debug)]
enum CommitAction {
    Fail,
    Unavailable,
    FakeAck,
    DropClose,
    Truncate,
    Garble,
    DuplicateAnswer,
    Reorder,
    Forward(Alterations),
}

#[derive(Debug, Default)]
struct Alterations {
    corrupt_record: bool,
    corrupt_audit: bool,
    drop_deletes: bool,
    duplicate: bool,
    replay: Option<usize>,
    delay_ms: u64,
}

impl Alterations {
    /// Forwarded as it is, when it is (a delay aside).
    fn is_plain(&self) -> bool {
        !(self.corrupt_record
            || self.corrupt_audit
            || self.drop_deletes
            || self.duplicate
            || self.replay.is_some())
    }
}

fn choose_commit(s: &mut Shared) -> CommitAction {
    let p = s.plan.commits.clone();
    let exclusive = [
        (p.fail, CommitAction::Fail),
        (p.unavailable, CommitAction::Unavailable),
        (p.fake_ack, CommitAction::FakeAck),
        (p.drop_close, CommitAction::DropClose),
        (p.truncate, CommitAction::Truncate),
        (p.garble, CommitAction::Garble),
        (p.duplicate_answer, CommitAction::DuplicateAnswer),
        (p.reorder, CommitAction::Reorder),
    ];
    for (per_mille, action) in exclusive {
        if s.rng.chance(per_mille) {
            return action;
        }
    }
    let mut a = Alterations {
        corrupt_record: s.rng.chance(p.corrupt_record),
        corrupt_audit: s.rng.chance(p.corrupt_audit),
        drop_deletes: s.rng.chance(p.drop_deletes),
        duplicate: s.rng.chance(p.duplicate),
        ..Alterations::default()
    };
    if s.rng.chance(p.replay) {
        let stored: Vec<usize> = (0..s.commits.len())
            .filter(|&i| s.commits[i].stored)
            .collect();
        a.replay = s.rng.pick(&stored).copied();
    }
    if s.rng.chance(p.replay_unstored) {
        let unstored: Vec<usize> = (0..s.commits.len())
            .filter(|&i| !s.commits[i].stored)
            .collect();
        if let Some(&i) = s.rng.pick(&unstored) {
            a.replay = Some(i);
        }
    }
    if s.rng.chance(p.delay) {
        a.delay_ms = 1 + s.rng.next_u64() % p.max_delay_ms.max(1);
    }
    CommitAction::Forward(a)
}

/// Flips one byte of `bytes` (at a random place) to another value.
fn flip(rng: &mut Rng, bytes: &mut [u8]) {
    if bytes.is_empty() {
        return;
    }
    let at = rng.below(bytes.len());
    bytes[at] ^= 1 + u8::try_from(rng.below(255)).unwrap_or(0);
}

/// One connection of the enclave, relayed to one connection to the parent.
struct Session {
    id: usize,
    shared: Arc<Mutex<Shared>>,
    /// The records as the enclave sealed them on this connection: what the parent held at
    /// the load, then each commit it sent.
    intended: Snapshot,
    /// A commit acknowledged and held back, to be forwarded after the next
    /// ([`CommitAction::Reorder`]), with its index among the commits sent.
    held: Option<(usize, Request)>,
    /// The answer to this connection's unseal load, once made.
    crafted: Option<Vec<Record>>,
}

/// Why a connection ended (for the report).
type Ended = String;

async fn forward(up: &mut Stream, request: &Request) -> Result<Response, String> {
    v1::write_frame(up, request)
        .await
        .map_err(|e| format!("writing to the parent: {e}"))?;
    match v1::read_frame::<_, Response>(up).await {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err("the parent closed the store channel".to_owned()),
        Err(e) => Err(format!("reading from the parent: {e}")),
    }
}

async fn answer(down: &mut Stream, response: &Response) -> Result<(), String> {
    v1::write_frame(down, response)
        .await
        .map_err(|e| format!("writing to the enclave: {e}"))
}

/// Passes the enclave's metrics connection (its first request `first`) through to the parent
/// unchanged, until either side closes.
async fn pass_metrics(mut down: Stream, first: Request, upstream: &Address) {
    let Ok(mut up) = transport::connect(upstream).await else {
        return;
    };
    let mut next = Some(first);
    loop {
        let request = match next.take() {
            Some(request) => request,
            None => match v1::read_frame::<_, Request>(&mut down).await {
                Ok(Some(request)) => request,
                Ok(None) | Err(_) => return,
            },
        };
        let Ok(response) = forward(&mut up, &request).await else {
            return;
        };
        if answer(&mut down, &response).await.is_err() {
            return;
        }
    }
}

impl Session {
    fn shared(&self) -> MutexGuard<'_, Shared> {
        lock(&self.shared)
    }

    fn event(&self, text: String) {
        self.shared().session(self.id).events.push(text);
    }

    async fn run(&mut self, mut down: Stream, upstream: &Address, first: Option<Request>) -> Ended {
        let mut up = match transport::connect(upstream).await {
            Ok(up) => up,
            Err(e) => return format!("connecting to the parent: {e}"),
        };
        let mut first = first;
        loop {
            let read = match first.take() {
                Some(request) => Ok(Some(request)),
                None => v1::read_frame::<_, Request>(&mut down).await,
            };
            let request = match read {
                Ok(Some(r)) => r,
                Ok(None) => return "the enclave closed the store channel".to_owned(),
                Err(e) => return format!("reading from the enclave: {e}"),
            };
            let step = match request {
                Request::Commit { .. } => self.commit(request, &mut down, &mut up).await,
                Request::Load { after, limit } => self.load(after, limit, &mut down, &mut up).await,
                other => match forward(&mut up, &other).await {
                    Ok(r) => answer(&mut down, &r).await.map(|()| true),
                    Err(e) => Err(e),
                },
            };
            match step {
                Ok(true) => {}
                Ok(false) => {
                    let _ = down.shutdown().await;
                    return "closed by the proxy".to_owned();
                }
                Err(e) => return e,
            }
        }
    }

    /// Notes a commit the enclave sent: the state it seals. Its records count among the
    /// versions a load may mix in once the parent stored it ([`Session::stored`]).
    fn note_commit(&mut self, seq: u64, puts: &[Record], deletes: &[RecordKey]) -> usize {
        for r in puts {
            if r.key.kind != DEPLOYMENT_KIND {
                self.intended
                    .insert(r.key.clone(), Arc::from(&r.sealed[..]));
            }
        }
        for k in deletes {
            self.intended.remove(k);
        }
        let state = Arc::new(self.intended.clone());
        let mut s = self.shared();
        s.sealed.push(state);
        s.commits.push(SentCommit {
            session: self.id,
            seq,
            puts: puts.to_vec(),
            deletes: deletes.to_vec(),
            stored: false,
        });
        s.session(self.id).commits += 1;
        s.commits.len() - 1
    }

    /// Notes that the parent made commit #`index` durable: its records are versions the
    /// parent holds.
    fn stored(&self, index: usize, response: &Response) {
        if matches!(response, Response::Committed { .. }) {
            let mut s = self.shared();
            s.commits[index].stored = true;
            let puts = s.commits[index].puts.clone();
            for r in &puts {
                s.note_version(&r.key, &r.sealed);
            }
        }
    }

    /// Handles one `Commit`; `Ok(false)` closes the connection.
    async fn commit(
        &mut self,
        request: Request,
        down: &mut Stream,
        up: &mut Stream,
    ) -> Result<bool, String> {
        let Request::Commit {
            seq,
            base,
            mut puts,
            mut deletes,
            mut audit,
        } = request
        else {
            return Err("not a commit".to_owned());
        };
        let index = self.note_commit(seq, &puts, &deletes);
        // The deployment record is written before anything is sealed: left alone, so that
        // every scenario starts from an initialized store.
        let action = if seq == 0 {
            CommitAction::Forward(Alterations::default())
        } else {
            choose_commit(&mut self.shared())
        };
        // A commit held back goes now, after this one.
        if let Some((held_index, held)) = self.held.take() {
            self.shared().session(self.id).altered += 1;
            let response = forward(
                up,
                &Request::Commit {
                    seq,
                    base,
                    puts,
                    deletes,
                    audit,
                },
            )
            .await?;
            self.stored(index, &response);
            let held_seq = match &held {
                Request::Commit { seq, .. } => *seq,
                _ => 0,
            };
            let late = forward(up, &held).await?;
            self.stored(held_index, &late);
            self.event(format!(
                "commit {held_seq} forwarded after commit {seq} (parent: {late:?})"
            ));
            answer(down, &response).await?;
            return Ok(true);
        }
        if !matches!(&action, CommitAction::Forward(a) if a.is_plain()) {
            self.shared().session(self.id).altered += 1;
        }
        let mut fatal = None;
        let keep_open = match action {
            CommitAction::Fail => {
                fatal = Some(format!("commit {seq} answered Error, not forwarded"));
                answer(
                    down,
                    &Response::Error {
                        message: "hostile parent: commit refused".to_owned(),
                    },
                )
                .await?;
                true
            }
            CommitAction::Unavailable => {
                self.event(format!("commit {seq} answered Unavailable, not forwarded"));
                answer(
                    down,
                    &Response::Unavailable {
                        message: "hostile parent: the audit disk is full".to_owned(),
                    },
                )
                .await?;
                true
            }
            CommitAction::FakeAck => {
                self.shared().session(self.id).faked.push(seq);
                self.event(format!("commit {seq} acknowledged, never forwarded"));
                answer(down, &Response::Committed { seq }).await?;
                true
            }
            CommitAction::DropClose => {
                fatal = Some(format!("commit {seq} dropped, channel closed"));
                false
            }
            CommitAction::Truncate => {
                let frame = v1::encode_frame(&Response::Committed { seq })
                    .map_err(|e| format!("encoding: {e}"))?;
                let cut = 1 + self.shared().rng.below(frame.len() - 1);
                down.write_all(&frame[..cut])
                    .await
                    .map_err(|e| format!("writing to the enclave: {e}"))?;
                let _ = down.flush().await;
                fatal = Some(format!(
                    "commit {seq} answered with {cut} of {} bytes, channel closed",
                    frame.len()
                ));
                false
            }
            CommitAction::Garble => {
                let response = forward(
                    up,
                    &Request::Commit {
                        seq,
                        base,
                        puts,
                        deletes,
                        audit,
                    },
                )
                .await?;
                self.stored(index, &response);
                let mut frame =
                    v1::encode_frame(&response).map_err(|e| format!("encoding: {e}"))?;
                // Magic or version: never a frame that decodes.
                let at = self.shared().rng.below(5);
                frame[at] ^= 0x20;
                down.write_all(&frame)
                    .await
                    .map_err(|e| format!("writing to the enclave: {e}"))?;
                let _ = down.flush().await;
                fatal = Some(format!(
                    "commit {seq} forwarded, answered with byte {at} of the frame altered"
                ));
                true
            }
            CommitAction::DuplicateAnswer => {
                let response = forward(
                    up,
                    &Request::Commit {
                        seq,
                        base,
                        puts,
                        deletes,
                        audit,
                    },
                )
                .await?;
                self.stored(index, &response);
                self.event(format!("commit {seq} answered twice"));
                answer(down, &response).await?;
                answer(down, &response).await?;
                true
            }
            CommitAction::Reorder => {
                self.event(format!(
                    "commit {seq} acknowledged, held back until after the next"
                ));
                self.held = Some((
                    index,
                    Request::Commit {
                        seq,
                        base,
                        puts,
                        deletes,
                        audit,
                    },
                ));
                answer(down, &Response::Committed { seq }).await?;
                true
            }
            CommitAction::Forward(a) => {
                if a.delay_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(a.delay_ms)).await;
                }
                let mut events = Vec::new();
                {
                    let mut s = self.shared();
                    if a.corrupt_record && !puts.is_empty() {
                        let i = s.rng.below(puts.len());
                        flip(&mut s.rng, &mut puts[i].sealed);
                        events.push(format!(
                            "commit {seq}: record ({}, {}) altered",
                            puts[i].key.kind,
                            hex(&puts[i].key.id)
                        ));
                    }
                    if a.corrupt_audit && !audit.is_empty() {
                        let i = s.rng.below(audit.len());
                        let line: &mut Vec<u8> = &mut audit[i];
                        if !line.is_empty() {
                            let at = s.rng.below(line.len());
                            // A printable byte: the line stays one line.
                            line[at] = if line[at] == b'0' { b'1' } else { b'0' };
                            events.push(format!("commit {seq}: audit line {i} altered"));
                        }
                    }
                    if a.drop_deletes && !deletes.is_empty() {
                        events.push(format!("commit {seq}: {} deletes left out", deletes.len()));
                        deletes.clear();
                    }
                }
                let request = Request::Commit {
                    seq,
                    base,
                    puts,
                    deletes,
                    audit,
                };
                let response = forward(up, &request).await?;
                self.stored(index, &response);
                if a.duplicate {
                    let again = forward(up, &request).await?;
                    events.push(format!("commit {seq} forwarded twice (parent: {again:?})"));
                }
                if let Some(i) = a.replay {
                    let old = self.shared().commits[i].clone();
                    let replay = Request::Commit {
                        seq,
                        base,
                        puts: old.puts,
                        deletes: old.deletes,
                        audit: Vec::new(),
                    };
                    let replayed = forward(up, &replay).await?;
                    events.push(format!(
                        "after commit {seq}: the records of commit #{i} (seq {}, connection {}, \
                         {}) replayed (parent: {replayed:?})",
                        old.seq,
                        old.session,
                        if old.stored { "stored" } else { "never stored" }
                    ));
                }
                for e in events {
                    self.event(e);
                }
                answer(down, &response).await?;
                true
            }
        };
        if let Some(why) = fatal {
            self.event(why.clone());
            self.shared().session(self.id).fatal.push(why);
        }
        Ok(keep_open)
    }

    /// The parent's whole store, page by page (each page noted).
    async fn fetch_store(&self, up: &mut Stream) -> Result<Vec<Record>, String> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let response = forward(
                up,
                &Request::Load {
                    after: after.clone(),
                    limit: 4096,
                },
            )
            .await?;
            let Response::Records { records, done } = response else {
                return Err(format!("the parent answered Load with {response:?}"));
            };
            {
                let mut s = self.shared();
                for r in &records {
                    s.note_version(&r.key, &r.sealed);
                }
                s.pages.push(records.clone());
            }
            if let Some(last) = records.last() {
                after = Some(last.key.clone());
            }
            let empty = records.is_empty();
            all.extend(records);
            if done || empty {
                return Ok(all);
            }
        }
    }

    /// Handles one `Load`; `Ok(false)` closes the connection.
    async fn load(
        &mut self,
        after: Option<RecordKey>,
        limit: u32,
        down: &mut Stream,
        up: &mut Stream,
    ) -> Result<bool, String> {
        // The boot's question "is the store empty?" (one record) goes as it is.
        if limit <= 1 && after.is_none() {
            let response = forward(up, &Request::Load { after, limit }).await?;
            if let Response::Records { records, .. } = &response {
                self.shared().pages.push(records.clone());
            }
            answer(down, &response).await?;
            return Ok(true);
        }
        if self.crafted.is_none() {
            let honest = self.fetch_store(up).await?;
            let plan = self.shared().plan.load.clone();
            let (served, description) = {
                let mut s = self.shared();
                if s.plan.mix_unstored {
                    let unstored: Vec<Record> = s
                        .commits
                        .iter()
                        .filter(|c| !c.stored)
                        .flat_map(|c| c.puts.clone())
                        .collect();
                    for r in &unstored {
                        s.note_version(&r.key, &r.sealed);
                    }
                }
                craft(&mut s, &plan, &honest)
            };
            let report = {
                let s = self.shared();
                LoadReport {
                    plan: plan.clone(),
                    served: served.len(),
                    honest: served == honest,
                    sealed_state: s.sealed_state_of(&served),
                    latest_sealed: s.sealed.len().checked_sub(1),
                    description,
                }
            };
            self.event(format!("load: {}", report.description));
            self.shared().session(self.id).load = Some(report);
            // What this boot seals builds on what the parent holds (the enclave's root names
            // the parent's records, whatever was served in their place).
            self.intended = honest
                .iter()
                .filter(|r| r.key.kind != DEPLOYMENT_KIND)
                .map(|r| (r.key.clone(), Arc::from(&r.sealed[..])))
                .collect();
            match plan {
                LoadPlan::Truncate => {
                    let frame = v1::encode_frame(&Response::Records {
                        records: served,
                        done: true,
                    })
                    .map_err(|e| format!("encoding: {e}"))?;
                    let cut = 1 + self.shared().rng.below(frame.len() - 1);
                    down.write_all(&frame[..cut])
                        .await
                        .map_err(|e| format!("writing to the enclave: {e}"))?;
                    let _ = down.flush().await;
                    return Ok(false);
                }
                LoadPlan::Garble => {
                    let mut frame = v1::encode_frame(&Response::Records {
                        records: served,
                        done: true,
                    })
                    .map_err(|e| format!("encoding: {e}"))?;
                    let at = self.shared().rng.below(5);
                    frame[at] ^= 0x20;
                    down.write_all(&frame)
                        .await
                        .map_err(|e| format!("writing to the enclave: {e}"))?;
                    let _ = down.flush().await;
                    return Ok(true);
                }
                _ => {}
            }
            self.crafted = Some(served);
        }
        // Pages of what was crafted, as a parent pages its store: an honest answer stays
        // honest page by page; a crafted one goes whole in the first page.
        let crafted = self.crafted.as_deref().unwrap_or_default();
        let honest_order = crafted.windows(2).all(|w| w[0].key < w[1].key);
        let response = if honest_order {
            let rest: Vec<Record> = crafted
                .iter()
                .filter(|r| after.as_ref().is_none_or(|a| r.key > *a))
                .take(limit as usize)
                .cloned()
                .collect();
            let done = crafted
                .iter()
                .filter(|r| after.as_ref().is_none_or(|a| r.key > *a))
                .count()
                <= limit as usize;
            Response::Records {
                records: rest,
                done,
            }
        } else if after.is_none() {
            Response::Records {
                records: crafted.to_vec(),
                done: true,
            }
        } else {
            Response::Records {
                records: Vec::new(),
                done: true,
            }
        };
        answer(down, &response).await?;
        Ok(true)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_manifest(key: &RecordKey) -> bool {
    key.kind == ROOT_KIND || key.kind == BUCKET_KIND
}

fn records_of(state: &Snapshot) -> Vec<Record> {
    state
        .iter()
        .map(|(k, v)| Record {
            key: k.clone(),
            sealed: v.to_vec(),
        })
        .collect()
}

/// The answer to an unseal load under `plan`, from the parent's `honest` store and everything
/// seen; with a description.
fn craft(s: &mut Shared, plan: &LoadPlan, honest: &[Record]) -> (Vec<Record>, String) {
    let deployment: Vec<Record> = honest
        .iter()
        .filter(|r| r.key.kind == DEPLOYMENT_KIND)
        .cloned()
        .collect();
    let data_indices = |records: &[Record]| -> Vec<usize> {
        (0..records.len())
            .filter(|&i| records[i].key.kind != DEPLOYMENT_KIND)
            .collect()
    };
    match plan {
        LoadPlan::Honest | LoadPlan::Truncate | LoadPlan::Garble => (
            honest.to_vec(),
            format!("{plan:?}, {} records", honest.len()),
        ),
        LoadPlan::IssueMix { old } => {
            let old_state = s.sealed[*old].clone();
            let mut out = deployment;
            out.extend(
                records_of(&old_state)
                    .into_iter()
                    .filter(|r| is_manifest(&r.key)),
            );
            let manifest = out.len() - 1;
            out.extend(
                honest
                    .iter()
                    .filter(|r| r.key.kind != DEPLOYMENT_KIND)
                    .cloned(),
            );
            let old_only: Vec<Record> = records_of(&old_state)
                .into_iter()
                .filter(|r| !is_manifest(&r.key) && !honest.iter().any(|h| h.key == r.key))
                .collect();
            let description = format!(
                "issue 17 mix: {manifest} manifest records of sealed state #{old}, the current \
                 {} records, then {} data records only state #{old} has",
                honest.len(),
                old_only.len()
            );
            out.extend(old_only);
            (out, description)
        }
        LoadPlan::Rollback { to } => {
            let mut out = deployment;
            out.extend(records_of(&s.sealed[*to]));
            let n = out.len();
            (out, format!("rollback to sealed state #{to}, {n} records"))
        }
        LoadPlan::CorruptRecords { count } => {
            let mut out = honest.to_vec();
            let candidates = data_indices(&out);
            let mut names = Vec::new();
            for _ in 0..*count {
                if let Some(&i) = s.rng.pick(&candidates) {
                    flip(&mut s.rng, &mut out[i].sealed);
                    names.push(format!("({}, {})", out[i].key.kind, hex(&out[i].key.id)));
                }
            }
            (out, format!("records altered: {}", names.join(", ")))
        }
        LoadPlan::OldVersions { count } => {
            let mut out = honest.to_vec();
            let candidates: Vec<usize> = data_indices(&out)
                .into_iter()
                .filter(|&i| s.versions.get(&out[i].key).is_some_and(|v| v.len() > 1))
                .collect();
            let mut names = Vec::new();
            for _ in 0..*count {
                let Some(&i) = s.rng.pick(&candidates) else {
                    break;
                };
                let versions = s.versions[&out[i].key].clone();
                let others: Vec<&Arc<[u8]>> = versions
                    .iter()
                    .filter(|v| v[..] != out[i].sealed[..])
                    .collect();
                if let Some(v) = s.rng.pick(&others) {
                    out[i].sealed = v.to_vec();
                    names.push(format!("({}, {})", out[i].key.kind, hex(&out[i].key.id)));
                }
            }
            (
                out,
                format!("records replaced by older versions: {}", names.join(", ")),
            )
        }
        LoadPlan::DropRecords { count } => {
            let mut out = honest.to_vec();
            let mut names = Vec::new();
            for _ in 0..*count {
                let candidates = data_indices(&out);
                if let Some(&i) = s.rng.pick(&candidates) {
                    let r = out.remove(i);
                    names.push(format!("({}, {})", r.key.kind, hex(&r.key.id)));
                }
            }
            (out, format!("records left out: {}", names.join(", ")))
        }
        LoadPlan::Repeat => {
            let mut out = honest.to_vec();
            out.extend(
                honest
                    .iter()
                    .filter(|r| r.key.kind != DEPLOYMENT_KIND)
                    .cloned(),
            );
            (out, "the store twice over".to_owned())
        }
        LoadPlan::RandomMix => random_mix(s, honest, deployment),
        LoadPlan::Overlay { commit } => {
            let old = s.commits[*commit].clone();
            let mut store: BTreeMap<RecordKey, Vec<u8>> = honest
                .iter()
                .map(|r| (r.key.clone(), r.sealed.clone()))
                .collect();
            let mut names = Vec::new();
            for r in old.puts.iter().filter(|r| r.key.id != b"root") {
                names.push(format!("({}, {})", r.key.kind, hex(&r.key.id)));
                store.insert(r.key.clone(), r.sealed.clone());
            }
            let out = store
                .into_iter()
                .map(|(key, sealed)| Record { key, sealed })
                .collect();
            (
                out,
                format!(
                    "the store with the records of commit #{commit} (seq {}, connection {}, {}) in \
                     place: {}",
                    old.seq,
                    old.session,
                    if old.stored { "stored" } else { "never stored" },
                    names.join(", ")
                ),
            )
        }
    }
}

/// Each record of the store, or of any state seen, from any of its versions; some left out,
/// some repeated, the order sometimes broken. Never the parent's store as it is.
fn random_mix(s: &mut Shared, honest: &[Record], deployment: Vec<Record>) -> (Vec<Record>, String) {
    let current: BTreeMap<RecordKey, Vec<u8>> = honest
        .iter()
        .filter(|r| r.key.kind != DEPLOYMENT_KIND)
        .map(|r| (r.key.clone(), r.sealed.clone()))
        .collect();
    let keys: Vec<RecordKey> = s
        .versions
        .keys()
        .filter(|k| k.kind != DEPLOYMENT_KIND)
        .chain(current.keys())
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut out = deployment;
    let (mut old, mut omitted, mut revived, mut repeated) = (0, 0, 0, 0);
    for key in &keys {
        let versions = s.versions.get(key).cloned().unwrap_or_default();
        let roll = s.rng.below(100);
        let chosen: Option<Vec<u8>> = match current.get(key) {
            Some(now) if roll < 65 => Some(now.clone()),
            Some(_) if roll < 88 => {
                old += 1;
                s.rng.pick(&versions).map(|v| v.to_vec())
            }
            Some(_) => {
                omitted += 1;
                None
            }
            None if roll < 35 => {
                revived += 1;
                s.rng.pick(&versions).map(|v| v.to_vec())
            }
            None => None,
        };
        if let Some(sealed) = chosen {
            let record = Record {
                key: key.clone(),
                sealed,
            };
            if s.rng.chance(30) {
                repeated += 1;
                out.push(record.clone());
            }
            out.push(record);
        }
    }
    let mut swapped = 0;
    if s.rng.chance(200) && out.len() > 2 {
        let i = 1 + s.rng.below(out.len() - 1);
        let j = 1 + s.rng.below(out.len() - 1);
        out.swap(i, j);
        swapped += 1;
    }
    if out == honest {
        // Never the store as it is: one record left out.
        let candidates: Vec<usize> = (0..out.len())
            .filter(|&i| out[i].key.kind != DEPLOYMENT_KIND)
            .collect();
        if let Some(&i) = s.rng.pick(&candidates) {
            out.remove(i);
            omitted += 1;
        }
    }
    let description = format!(
        "random mix of {} records: {old} possibly older versions, {omitted} left out, {revived} \
         brought back, {repeated} repeated, {swapped} swaps",
        out.len()
    );
    (out, description)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, id: &[u8], sealed: &[u8]) -> Record {
        Record {
            key: RecordKey {
                kind,
                id: id.to_vec(),
            },
            sealed: sealed.to_vec(),
        }
    }

    fn shared(seed: u64) -> Shared {
        Shared {
            rng: Rng::new(seed),
            plan: Plan::honest(),
            sealed: Vec::new(),
            versions: BTreeMap::new(),
            pages: Vec::new(),
            commits: Vec::new(),
            sessions: Vec::new(),
        }
    }

    /// A store: the deployment record, a root, a page, two buckets, three data records.
    fn store(generation: u8) -> Vec<Record> {
        vec![
            record(DEPLOYMENT_KIND, b"deployment", b"d"),
            record(ROOT_KIND, b"root", &[b'r', generation]),
            record(ROOT_KIND, b"root\x01", &[b'p', generation]),
            record(BUCKET_KIND, &[0, 1], &[b'b', generation]),
            record(BUCKET_KIND, &[0, 2], &[b'c', generation]),
            record(3, b"key-a", &[b'k', generation]),
            record(5, b"principal", &[b'p', generation]),
            record(7, b"grant", &[b'g', generation]),
        ]
    }

    fn state(records: &[Record]) -> Arc<Snapshot> {
        Arc::new(
            records
                .iter()
                .filter(|r| r.key.kind != DEPLOYMENT_KIND)
                .map(|r| (r.key.clone(), Arc::from(&r.sealed[..])))
                .collect(),
        )
    }

    #[test]
    fn the_same_seed_makes_the_same_choices() {
        let (mut a, mut b, mut c) = (Rng::new(7), Rng::new(7), Rng::new(8));
        let sa: Vec<u64> = (0..32).map(|_| a.next_u64()).collect();
        let sb: Vec<u64> = (0..32).map(|_| b.next_u64()).collect();
        let sc: Vec<u64> = (0..32).map(|_| c.next_u64()).collect();
        assert_eq!(sa, sb);
        assert_ne!(sa, sc);
        let mut r = Rng::new(0);
        assert!((0..1000).all(|_| r.below(3) < 3));
        assert!(!(0..1000).any(|_| r.chance(0)));
        assert!((0..1000).all(|_| r.chance(1000)));
    }

    #[test]
    fn only_an_exact_sealed_state_counts_as_one() {
        let mut s = shared(1);
        s.sealed.push(state(&store(1)));
        s.sealed.push(state(&store(2)));
        assert_eq!(s.sealed_state_of(&store(2)), Some(1));
        assert_eq!(s.sealed_state_of(&store(1)), Some(0));
        // One record of the other state, one left out, one twice, two swapped: none.
        let mut mixed = store(2);
        mixed[5] = store(1)[5].clone();
        assert_eq!(s.sealed_state_of(&mixed), None);
        let mut short = store(2);
        short.remove(6);
        assert_eq!(s.sealed_state_of(&short), None);
        let mut twice = store(2);
        twice.insert(6, twice[6].clone());
        assert_eq!(s.sealed_state_of(&twice), None);
        let mut swapped = store(2);
        swapped.swap(5, 6);
        assert_eq!(s.sealed_state_of(&swapped), None);
    }

    #[test]
    fn a_random_mix_is_never_the_store_as_it_is() {
        for seed in 0..200 {
            let mut s = shared(seed);
            for g in 1..=3 {
                for r in store(g) {
                    s.note_version(&r.key, &r.sealed);
                }
            }
            let honest = store(3);
            let (mixed, _) = craft(&mut s, &LoadPlan::RandomMix, &honest);
            assert_ne!(mixed, honest, "seed {seed}");
            assert_eq!(
                mixed.first(),
                honest.first(),
                "the deployment record stays first"
            );
        }
    }

    #[test]
    fn the_issue_17_mix_puts_the_old_manifest_first_and_old_records_last() {
        let mut s = shared(1);
        let mut old = store(1);
        old.push(record(5, b"deleted-principal", b"x"));
        s.sealed.push(state(&old));
        let (mixed, _) = craft(&mut s, &LoadPlan::IssueMix { old: 0 }, &store(2));
        let keys: Vec<(u8, Vec<u8>)> = mixed
            .iter()
            .map(|r| (r.key.kind, r.sealed.clone()))
            .collect();
        assert_eq!(keys[0].0, DEPLOYMENT_KIND);
        // Old root, page and buckets; then the whole current store; then the old-only record.
        assert_eq!(keys[1], (ROOT_KIND, b"r\x01".to_vec()));
        assert_eq!(keys[4], (BUCKET_KIND, b"c\x01".to_vec()));
        assert_eq!(keys[5], (ROOT_KIND, b"r\x02".to_vec()));
        assert_eq!(
            mixed.last().map(|r| r.key.id.clone()),
            Some(b"deleted-principal".to_vec())
        );
        assert_eq!(mixed.len(), 1 + 4 + 7 + 1);
    }
}
