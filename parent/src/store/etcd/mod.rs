//! [`EtcdStore`]: the sealed records and the audit log in an etcd v3 cluster, which several
//! parents (each with its enclave) may share.
//!
//! etcd holds what the parent may see and nothing more: opaque sealed bytes. Its defaults bound a
//! request to 1.5 MiB and a transaction to 128 operations, and a group commit of hundreds of
//! requests, or one request that rewrites thousands of records, exceeds both. So a commit is a
//! log entry made visible by one small transaction, and applied to the records afterwards in
//! bounded steps:
//!
//! ```text
//! PREFIX/head               "<index> <seq>": the log's last entry and the last commit's seq
//! PREFIX/log/<index>        an entry: the commit's seq, its staging id and chunk count
//! PREFIX/stage/<id>/<n>     the entry's chunks (records to put or delete, audit lines)
//! PREFIX/applied            "<index> done" | "<index> <chunk>": how far the log is applied
//! PREFIX/rec/<kind><id>     a sealed record
//! PREFIX/audit/<index>/<n>  audit lines, each followed by "\n"
//! ```
//!
//! - **Commit**: the chunks are written under a fresh staging id (inside the final transaction
//!   when they fit, before it otherwise), then one transaction, conditioned on `head` holding
//!   what the commit was built on, writes the log entry and moves `head`. That transaction is
//!   the commit: once etcd acknowledges it, it is durable and will be applied; if it fails,
//!   nothing of the commit is visible (its staged chunks are removed). So two enclaves can never
//!   both commit on the same base: the loser gets [`StoreError::Conflict`].
//! - **Apply**: each chunk is applied by one transaction conditioned on `applied`, which it moves
//!   on by one: whichever parent applies, the log is applied once, in order. The last chunk of
//!   an entry also removes the entry and its chunks.
//! - **Load** first applies the whole log, then reads `rec/` at one etcd revision at which
//!   nothing was pending, so the pages of one load are one snapshot even while another member
//!   commits.
//! - **Fetch** reads named records at such a revision (the first of a catch-up picks it, the
//!   rest pass it back), [`FETCH_TXN_KEYS`] to a read-only transaction.

use std::sync::Mutex;

use ekms_shared::wire::v1::{Record, RecordKey};
use serde::{Deserialize, Serialize};

use super::{CommitBatch, Fetched, Store, StoreError};

mod gateway;

pub use gateway::GatewayError;
use gateway::{Compare, Gateway, Op};

/// Most record and audit bytes in one chunk: with its keys and the transaction around it, well
/// under etcd's default request limit of 1.5 MiB.
const CHUNK_BYTES: usize = 900 * 1024;

/// Most records in one chunk: applying it takes them and four more operations, under etcd's
/// default of 128 per transaction.
const CHUNK_RECORDS: usize = 100;

/// Most chunks written inside the commit's own transaction; more are staged before it.
const INLINE_CHUNKS: usize = 100;

/// Keys read per page when paging through etcd.
const PAGE: i64 = 1000;

/// Records above which a load reads by windows (see [`EtcdStore::load`]).
const WINDOWED_LOAD: i64 = 50_000;

/// Keys read by one transaction of a `Fetch`: under etcd's default of 128 operations.
const FETCH_TXN_KEYS: usize = 100;

/// Tries a load makes to find a revision at which the log is fully applied.
const LOAD_TRIES: usize = 50;

/// Seconds a member's advertised endpoint outlives its last renewal.
pub const MEMBER_TTL: i64 = 10;

/// Where the store lives: `etcd://HOST:PORT[,HOST:PORT...]/PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdUrl {
    /// Client URLs of the cluster's members, `HOST:PORT`.
    pub endpoints: Vec<String>,
    /// The key prefix every key of the deployment is under (without its trailing `/`).
    pub prefix: String,
}

impl std::str::FromStr for EtcdUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s
            .strip_prefix("etcd://")
            .ok_or_else(|| format!("{s:?} is not an etcd://HOST:PORT[,HOST:PORT...]/PREFIX URL"))?;
        let (hosts, prefix) = rest
            .split_once('/')
            .ok_or_else(|| format!("{s:?} has no /PREFIX after its endpoints"))?;
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() {
            return Err(format!("{s:?} has an empty PREFIX"));
        }
        let endpoints: Vec<String> = hosts.split(',').map(str::to_owned).collect();
        for endpoint in &endpoints {
            let port = endpoint
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(_))) if !host.is_empty()) {
                return Err(format!("{s:?}: endpoint {endpoint:?} is not HOST:PORT"));
            }
        }
        Ok(EtcdUrl {
            endpoints,
            prefix: format!("/{}", prefix.trim_start_matches('/')),
        })
    }
}

impl std::fmt::Display for EtcdUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "etcd://{}{}", self.endpoints.join(","), self.prefix)
    }
}

/// The log's last entry and the last commit's seq, as `head` holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Head {
    index: u64,
    seq: u64,
}

impl Head {
    fn encode(self) -> Vec<u8> {
        format!("{} {}", self.index, self.seq).into_bytes()
    }

    fn decode(bytes: &[u8]) -> Option<Head> {
        let (a, b) = std::str::from_utf8(bytes).ok()?.split_once(' ')?;
        Some(Head {
            index: a.parse().ok()?,
            seq: b.parse().ok()?,
        })
    }
}

/// How far the log is applied, as `applied` holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    /// Every entry up to this index ("<index> done"; absent: 0).
    Complete(u64),
    /// Every entry before this index, and this one's chunks before the second number.
    Partial(u64, u32),
}

impl Applied {
    fn encode(self) -> Vec<u8> {
        match self {
            Applied::Complete(index) => format!("{index} done"),
            Applied::Partial(index, n) => format!("{index} {n}"),
        }
        .into_bytes()
    }

    fn decode(bytes: &[u8]) -> Option<Applied> {
        let (index, rest) = std::str::from_utf8(bytes).ok()?.split_once(' ')?;
        let index = index.parse().ok()?;
        match rest {
            "done" => Some(Applied::Complete(index)),
            n => Some(Applied::Partial(index, n.parse().ok()?)),
        }
    }
}

/// A log entry this store wrote, to apply.
#[derive(Debug)]
struct Written {
    /// The entry before it.
    previous: u64,
    /// Its index.
    index: u64,
    /// Where its chunks are staged.
    stage: Vec<u8>,
    /// Its chunks, encoded.
    chunks: Vec<Vec<u8>>,
}

/// A log entry.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    /// The seq of the entry's last commit.
    seq: u64,
    /// Where its chunks are staged.
    #[serde(with = "serde_bytes")]
    stage: Vec<u8>,
    /// How many.
    chunks: u32,
}

/// A part of a log entry, applied by one transaction.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Chunk {
    /// Records to write (`Some`) or delete (`None`), each at most once.
    records: Vec<(RecordKey, Option<serde_bytes::ByteBuf>)>,
    /// Audit lines, in order.
    audit: Vec<serde_bytes::ByteBuf>,
}

/// The sealed records and the audit log in etcd (see the module documentation).
pub struct EtcdStore {
    url: EtcdUrl,
    /// Taken only by `Drop`.
    runtime: Option<tokio::runtime::Runtime>,
    gateway: Gateway,
    /// The head as this store last wrote or read it.
    head: Mutex<Option<Head>>,
    /// The revision the current load reads at, and whether it reads by windows (set by its
    /// first page).
    load_revision: Mutex<(i64, bool)>,
    /// Records above which a load reads by windows ([`WINDOWED_LOAD`]; tests lower it).
    windowed_load: i64,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

fn etcd(action: &'static str) -> impl FnOnce(GatewayError) -> StoreError {
    move |source| StoreError::Etcd { action, source }
}

fn layout(key: &[u8], why: &str) -> StoreError {
    StoreError::EtcdLayout {
        key: String::from_utf8_lossy(key).into_owned(),
        why: why.to_owned(),
    }
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl EtcdStore {
    /// Connects to the cluster at `url` and reads the head. Blocks; call it outside an async
    /// context.
    ///
    /// # Errors
    /// [`StoreError::Etcd`] if the cluster cannot be reached.
    pub fn open(url: &EtcdUrl) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ekms-etcd")
            .enable_all()
            .build()
            .map_err(|source| StoreError::Io {
                action: "cannot start the etcd client's runtime",
                path: std::path::PathBuf::from(url.to_string()),
                source,
            })?;
        let store = EtcdStore {
            url: url.clone(),
            runtime: Some(runtime),
            gateway: Gateway::new(url.endpoints.clone()),
            head: Mutex::new(None),
            load_revision: Mutex::new((0, false)),
            windowed_load: WINDOWED_LOAD,
        };
        let head = store.block_on(store.read_head())?;
        *store.lock_head() = Some(head);
        Ok(store)
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        match &self.runtime {
            Some(runtime) => runtime.block_on(future),
            // Only `Drop` takes it.
            None => unreachable!("the etcd store's runtime is gone before the store"),
        }
    }

    /// Where the store lives.
    pub fn url(&self) -> &EtcdUrl {
        &self.url
    }

    /// Advertises `endpoint` (a member's API, as clients and other members reach it) under
    /// `PREFIX/members/<id>` while this store lives: under a lease of [`MEMBER_TTL`] seconds,
    /// taken again every third of it, so a member that stops is gone within the TTL. Members
    /// find each other there (`ekms join --store`); an advertised endpoint is only a hint,
    /// since the join itself is attested.
    ///
    /// # Errors
    /// [`StoreError::Etcd`] if the first registration fails.
    pub fn advertise(&self, endpoint: &str) -> Result<(), StoreError> {
        let mut id = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
            .map_err(|_| layout(b"members", "no randomness for a member id"))?;
        let key = self.key(&[b"members", hex(&id).as_bytes()]);
        let value = endpoint.as_bytes().to_vec();
        let gateway = Gateway::new(self.url.endpoints.clone());
        self.block_on(async {
            let lease = gateway.lease_grant(MEMBER_TTL).await?;
            gateway.put_leased(&key, &value, lease).await
        })
        .map_err(etcd("advertise this member"))?;
        let Some(runtime) = &self.runtime else {
            return Ok(());
        };
        let endpoint = endpoint.to_owned();
        runtime.spawn(async move {
            let every = std::time::Duration::from_secs(u64::try_from(MEMBER_TTL / 3).unwrap_or(3));
            loop {
                tokio::time::sleep(every).await;
                let lease = match gateway.lease_grant(MEMBER_TTL).await {
                    Ok(lease) => lease,
                    Err(e) => {
                        tracing::warn!(error = %e, %endpoint, "cannot renew this member's registration");
                        continue;
                    }
                };
                if let Err(e) = gateway.put_leased(&key, &value, lease).await {
                    tracing::warn!(error = %e, %endpoint, "cannot renew this member's registration");
                }
            }
        });
        Ok(())
    }

    /// The endpoints members advertise on this store ([`EtcdStore::advertise`]).
    ///
    /// # Errors
    /// [`StoreError::Etcd`] if the cluster cannot be read.
    pub fn members(&self) -> Result<Vec<String>, StoreError> {
        let mut prefix = self.key(&[b"members"]);
        prefix.push(b'/');
        let end = prefix_end(&prefix);
        let range = self
            .block_on(self.gateway.range(&prefix, &end, 1000, 0))
            .map_err(etcd("read the members"))?;
        Ok(range
            .kvs
            .into_iter()
            .filter_map(|kv| String::from_utf8(kv.value).ok())
            .collect())
    }

    fn key(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut key = self.url.prefix.as_bytes().to_vec();
        for part in parts {
            key.push(b'/');
            key.extend_from_slice(part);
        }
        key
    }

    fn record_key(&self, key: &RecordKey) -> Vec<u8> {
        let mut k = self.key(&[b"rec"]);
        k.push(b'/');
        k.push(key.kind);
        k.extend_from_slice(&key.id);
        k
    }

    fn log_key(&self, index: u64) -> Vec<u8> {
        self.key(&[b"log", format!("{index:020}").as_bytes()])
    }

    fn stage_prefix(&self, stage: &[u8]) -> Vec<u8> {
        let mut k = self.key(&[b"stage", hex(stage).as_bytes()]);
        k.push(b'/');
        k
    }

    fn chunk_key(&self, stage: &[u8], n: u32) -> Vec<u8> {
        let mut k = self.stage_prefix(stage);
        k.extend_from_slice(format!("{n:06}").as_bytes());
        k
    }

    /// The operations that write `records` and `audit` straight to `rec/` and `audit/` as log
    /// entry `next`, and move the head: `None` when they do not fit one transaction.
    fn direct_ops(&self, next: Head, records: &[Change<'_>], audit: &[&[u8]]) -> Option<Vec<Op>> {
        let bytes: usize = records
            .iter()
            .map(|(k, v)| k.id.len() + 1 + v.map_or(0, <[u8]>::len))
            .sum::<usize>()
            + audit.iter().map(|l| l.len() + 1).sum::<usize>();
        if records.len() > CHUNK_RECORDS || bytes > CHUNK_BYTES {
            return None;
        }
        let mut ops = Vec::with_capacity(records.len() + 3);
        ops.push(Op::Put(self.key(&[b"head"]), next.encode()));
        for (key, value) in records {
            ops.push(match value {
                Some(v) => Op::Put(self.record_key(key), v.to_vec()),
                None => Op::Delete(self.record_key(key)),
            });
        }
        if !audit.is_empty() {
            let mut lines = Vec::with_capacity(bytes);
            for line in audit {
                lines.extend_from_slice(line);
                lines.push(b'\n');
            }
            ops.push(Op::Put(self.audit_key(next.index, 0), lines));
        }
        Some(ops)
    }

    fn audit_key(&self, index: u64, n: u32) -> Vec<u8> {
        self.key(&[b"audit", format!("{index:020}/{n:06}").as_bytes()])
    }

    /// The comparison that holds while every log entry up to `index` is applied and nothing
    /// after it is.
    fn applied_through(&self, index: u64) -> Compare {
        let key = self.key(&[b"applied"]);
        match index {
            0 => Compare::Absent(key),
            _ => Compare::Value(key, Applied::Complete(index).encode()),
        }
    }

    fn lock_head(&self) -> std::sync::MutexGuard<'_, Option<Head>> {
        self.head
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn read_head(&self) -> Result<Head, StoreError> {
        let key = self.key(&[b"head"]);
        match self
            .gateway
            .get(&key)
            .await
            .map_err(etcd("read the head"))?
        {
            None => Ok(Head::default()),
            Some(bytes) => {
                Head::decode(&bytes).ok_or_else(|| layout(&key, "not \"<index> <seq>\""))
            }
        }
    }

    /// The comparison that holds while `head` is unchanged.
    fn head_is(&self, head: Head) -> Compare {
        let key = self.key(&[b"head"]);
        if head == Head::default() {
            Compare::Absent(key)
        } else {
            Compare::Value(key, head.encode())
        }
    }

    /// Where an unconditional audit-only batch's lines go: after the lines of the commit that
    /// made log entry `index` (`u` sorts after the digits of its `<n>`), by session and seq, so
    /// that one member's lines read back in the order it wrote them.
    fn member_audit_key(&self, index: u64, session: Option<u64>, seq: u64, n: u32) -> Vec<u8> {
        let session = session.unwrap_or(0);
        self.key(&[
            b"audit",
            format!("{index:020}/u/{session:016x}/{seq:020}/{n:06}").as_bytes(),
        ])
    }

    /// Appends audit-only batches (members' reads and checkpoints) without any condition:
    /// they change no record, so they neither move the head nor conflict with anyone's commit.
    /// Filed under the head this parent last saw, which only moves forward, so each member's
    /// lines stay in its order behind its own commits.
    async fn append_audit(&self, batches: &[CommitBatch]) -> Result<(), StoreError> {
        let cached = *self.lock_head();
        let head = match cached {
            Some(h) => h,
            None => {
                let h = self.read_head().await?;
                *self.lock_head() = Some(h);
                h
            }
        };
        let mut puts = Vec::new();
        for batch in batches {
            super::validate_batch(batch)?;
            let mut n = 0u32;
            let mut value = Vec::new();
            for line in &batch.audit {
                if !value.is_empty() && value.len() + line.len() + 1 > CHUNK_BYTES {
                    puts.push(Op::Put(
                        self.member_audit_key(head.index, batch.session, batch.seq, n),
                        std::mem::take(&mut value),
                    ));
                    n += 1;
                }
                value.extend_from_slice(line);
                value.push(b'\n');
            }
            if !value.is_empty() {
                puts.push(Op::Put(
                    self.member_audit_key(head.index, batch.session, batch.seq, n),
                    value,
                ));
            }
        }
        // Transactions within etcd's limits: at most CHUNK_RECORDS puts and CHUNK_BYTES each.
        let mut txn = Vec::new();
        let mut bytes = 0usize;
        for put in puts {
            let len = match &put {
                Op::Put(k, v) => k.len() + v.len(),
                _ => 0,
            };
            if !txn.is_empty() && (txn.len() >= CHUNK_RECORDS || bytes + len > CHUNK_BYTES) {
                self.gateway
                    .txn(&[], &std::mem::take(&mut txn))
                    .await
                    .map_err(etcd("append audit lines"))?;
                bytes = 0;
            }
            bytes += len;
            txn.push(put);
        }
        if !txn.is_empty() {
            self.gateway
                .txn(&[], &txn)
                .await
                .map_err(etcd("append audit lines"))?;
        }
        Ok(())
    }

    /// Commits `batches`; the log entry still to apply, if it went through the log.
    async fn commit_async(&self, batches: &[CommitBatch]) -> Result<Option<Written>, StoreError> {
        if batches.iter().all(CommitBatch::is_audit_only) {
            self.append_audit(batches).await?;
            return Ok(None);
        }
        // The group's base: the first state commit's; the others must follow it in order.
        let mut base = None;
        let mut last_seq = None;
        for batch in batches {
            if let Some(b) = batch.base {
                match last_seq {
                    None => base = Some(b),
                    Some(previous) if previous == b => {}
                    Some(previous) => {
                        return Err(StoreError::Conflict {
                            base: b,
                            head: previous,
                        })
                    }
                }
                last_seq = Some(batch.seq);
            }
        }
        let cached = *self.lock_head();
        let mut head = match cached {
            Some(h) => h,
            None => self.read_head().await?,
        };
        if let Some(b) = base {
            if head.seq != b {
                // Another parent may have committed since: read it before refusing.
                head = self.read_head().await?;
                *self.lock_head() = Some(head);
                if head.seq != b {
                    return Err(StoreError::Conflict {
                        base: b,
                        head: head.seq,
                    });
                }
            }
        }
        let next = Head {
            index: head.index + 1,
            seq: last_seq.unwrap_or(head.seq),
        };
        let (records, audit) = collapse(batches)?;
        if let Some(ops) = self.direct_ops(next, &records, &audit) {
            // Small enough for one transaction: applied as it commits, if nothing is pending.
            let compares = [self.head_is(head), self.applied_through(head.index)];
            let mut ops = ops;
            let applied = Applied::Complete(next.index).encode();
            ops.push(Op::Put(self.key(&[b"applied"]), applied));
            match self.gateway.txn(&compares, &ops).await {
                Ok((true, _)) => {
                    *self.lock_head() = Some(next);
                    return Ok(None);
                }
                // The head moved, or a log entry is pending: read the head again, and go on
                // below once the log is applied.
                Ok((false, _)) => {
                    let now = self.read_head().await?;
                    *self.lock_head() = Some(now);
                    if now == next && base.is_some() {
                        // This very transaction, retried after a connection broke under it:
                        // committed (a commit's seq is this enclave's alone).
                        return Ok(None);
                    }
                    if now != head {
                        return Err(StoreError::Conflict {
                            base: base.unwrap_or(head.seq),
                            head: now.seq,
                        });
                    }
                    self.catch_up().await?;
                }
                Err(e) => {
                    *self.lock_head() = None;
                    return Err(etcd("commit")(e));
                }
            }
        }
        let chunks = chunk(&records, &audit)?;
        let mut stage = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut stage)
            .map_err(|_| layout(b"stage", "no randomness for a staging id"))?;
        let count = u32::try_from(chunks.len()).map_err(|_| StoreError::CommitTooLarge)?;
        let entry = serde_cbor::to_vec(&Entry {
            seq: next.seq,
            stage: stage.to_vec(),
            chunks: count,
        })
        .map_err(|_| StoreError::CommitTooLarge)?;
        let mut ops = vec![
            Op::Put(self.key(&[b"head"]), next.encode()),
            Op::Put(self.log_key(next.index), entry),
        ];
        let inline_bytes: usize = chunks.iter().map(Vec::len).sum();
        let inline = chunks.len() <= INLINE_CHUNKS && inline_bytes <= CHUNK_BYTES;
        for (n, bytes) in (0u32..).zip(&chunks) {
            let put = Op::Put(self.chunk_key(&stage, n), bytes.clone());
            if inline {
                ops.push(put);
            } else {
                self.gateway
                    .txn(&[], &[put])
                    .await
                    .map_err(etcd("stage a commit's chunk"))?;
            }
        }
        let (succeeded, _) = match self.gateway.txn(&[self.head_is(head)], &ops).await {
            Ok(done) => done,
            Err(e) => {
                // Unknown whether it applied: read the head again before the next commit.
                *self.lock_head() = None;
                return Err(etcd("commit")(e));
            }
        };
        if !succeeded {
            let now = self.read_head().await?;
            *self.lock_head() = Some(now);
            let stage_prefix = self.stage_prefix(&stage);
            let _ = self
                .gateway
                .txn(
                    &[],
                    &[Op::DeleteRange(
                        stage_prefix.clone(),
                        prefix_end(&stage_prefix),
                    )],
                )
                .await;
            if now == next && base.is_some() {
                // This very commit, retried after a connection broke under it: made (under the
                // first try's staged chunks; this try's are removed above). Applied by the
                // next commit or load.
                return Ok(None);
            }
            return Err(StoreError::Conflict {
                base: head.seq,
                head: now.seq,
            });
        }
        *self.lock_head() = Some(next);
        Ok(Some(Written {
            previous: head.index,
            index: next.index,
            stage: stage.to_vec(),
            chunks,
        }))
    }

    /// Applies the log entry this store just wrote, chunk by chunk, each conditioned on the log
    /// being applied exactly up to it; `false` as soon as it is not (another parent applies, or
    /// an earlier entry is pending: [`EtcdStore::catch_up`] then takes over).
    async fn apply_written(&self, written: &Written) -> Result<bool, StoreError> {
        let applied_key = self.key(&[b"applied"]);
        let total = u32::try_from(written.chunks.len()).map_err(|_| StoreError::CommitTooLarge)?;
        for (n, bytes) in (0u32..).zip(&written.chunks) {
            let compare = match n {
                0 => self.applied_through(written.previous),
                _ => Compare::Value(
                    applied_key.clone(),
                    Applied::Partial(written.index, n).encode(),
                ),
            };
            let chunk: Chunk =
                serde_cbor::from_slice(bytes).map_err(|_| StoreError::CommitTooLarge)?;
            let ops = self.chunk_ops(written.index, n, total, &written.stage, chunk);
            let (applied, _) = self
                .gateway
                .txn(&[compare], &ops)
                .await
                .map_err(etcd("apply a log chunk"))?;
            if !applied {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The operations that apply chunk `n` of the `total` of log entry `index` (staged under
    /// `stage`) and move `applied` past it; the last one also removes the entry.
    fn chunk_ops(&self, index: u64, n: u32, total: u32, stage: &[u8], chunk: Chunk) -> Vec<Op> {
        let applied_key = self.key(&[b"applied"]);
        let mut ops = Vec::with_capacity(chunk.records.len() + 4);
        for (key, value) in chunk.records {
            ops.push(match value {
                Some(v) => Op::Put(self.record_key(&key), v.into_vec()),
                None => Op::Delete(self.record_key(&key)),
            });
        }
        if !chunk.audit.is_empty() {
            let mut lines = Vec::new();
            for line in chunk.audit {
                lines.extend_from_slice(&line);
                lines.push(b'\n');
            }
            ops.push(Op::Put(self.audit_key(index, n), lines));
        }
        if n + 1 == total {
            ops.push(Op::Put(applied_key, Applied::Complete(index).encode()));
            ops.push(Op::Delete(self.log_key(index)));
            let stage = self.stage_prefix(stage);
            ops.push(Op::DeleteRange(stage.clone(), prefix_end(&stage)));
        } else {
            ops.push(Op::Put(
                applied_key,
                Applied::Partial(index, n + 1).encode(),
            ));
        }
        ops
    }

    /// Applies the log to `rec/` and `audit/` until no entry is pending; returns the revision
    /// at which that was seen.
    async fn catch_up(&self) -> Result<i64, StoreError> {
        let applied_key = self.key(&[b"applied"]);
        loop {
            let raw = self
                .gateway
                .get(&applied_key)
                .await
                .map_err(etcd("read how far the log is applied"))?;
            let applied = match &raw {
                None => Applied::Complete(0),
                Some(raw) => Applied::decode(raw).ok_or_else(|| {
                    layout(&applied_key, "not \"<index> done\" or \"<index> <chunk>\"")
                })?,
            };
            let compare = match &raw {
                None => Compare::Absent(applied_key.clone()),
                Some(raw) => Compare::Value(applied_key.clone(), raw.clone()),
            };
            // The entry being applied and its next chunk, or the next entry.
            let (index, n, entry) = match applied {
                Applied::Complete(index) => match self.entry_at_latest(index + 1).await? {
                    (Some(entry), _) => (index + 1, 0, entry),
                    // Nothing pending at this read's revision.
                    (None, revision) => return Ok(revision),
                },
                Applied::Partial(index, n) => match self.entry(index).await? {
                    Some(entry) if n < entry.chunks => (index, n, entry),
                    Some(entry) => {
                        // Every chunk applied but the entry still listed (the last chunk's
                        // transaction removes it, so this store was written otherwise).
                        let stage = self.stage_prefix(&entry.stage);
                        let ops = [
                            Op::Delete(self.log_key(index)),
                            Op::DeleteRange(stage.clone(), prefix_end(&stage)),
                            Op::Put(applied_key.clone(), Applied::Complete(index).encode()),
                        ];
                        self.gateway
                            .txn(&[compare], &ops)
                            .await
                            .map_err(etcd("remove an applied log entry"))?;
                        continue;
                    }
                    None => return Err(layout(&applied_key, "names a log entry that is gone")),
                },
            };
            let chunk_key = self.chunk_key(&entry.stage, n);
            let Some(bytes) = self
                .gateway
                .get(&chunk_key)
                .await
                .map_err(etcd("read a log chunk"))?
            else {
                // Another parent applied the entry and removed its chunks since `applied` was
                // read: go on from where it left off. Otherwise the chunk is lost.
                let now = self.gateway.get(&applied_key).await;
                if now.map_err(etcd("read how far the log is applied"))? != raw {
                    continue;
                }
                return Err(layout(&chunk_key, "a log entry's chunk is missing"));
            };
            let chunk: Chunk = serde_cbor::from_slice(&bytes)
                .map_err(|_| layout(&chunk_key, "not a log chunk"))?;
            let ops = self.chunk_ops(index, n, entry.chunks, &entry.stage, chunk);
            // Lost to another parent applying the same chunk: read again and go on.
            self.gateway
                .txn(&[compare], &ops)
                .await
                .map_err(etcd("apply a log chunk"))?;
        }
    }

    /// Log entry `index`, if listed.
    async fn entry(&self, index: u64) -> Result<Option<Entry>, StoreError> {
        Ok(self.entry_at_latest(index).await?.0)
    }

    /// Log entry `index`, if listed, and the revision it was read at.
    async fn entry_at_latest(&self, index: u64) -> Result<(Option<Entry>, i64), StoreError> {
        let key = self.log_key(index);
        let mut end = key.clone();
        end.push(0);
        let range = self
            .gateway
            .range(&key, &end, 1, 0)
            .await
            .map_err(etcd("read the log"))?;
        let entry = match range.kvs.into_iter().next() {
            None => None,
            Some(kv) => Some(
                serde_cbor::from_slice(&kv.value).map_err(|_| layout(&key, "not a log entry"))?,
            ),
        };
        Ok((entry, range.revision))
    }

    async fn load_async(
        &self,
        after: Option<&RecordKey>,
        limit: usize,
    ) -> Result<(Vec<Record>, bool), StoreError> {
        let records_prefix = {
            let mut k = self.key(&[b"rec"]);
            k.push(b'/');
            k
        };
        let records_end = prefix_end(&records_prefix);
        let (revision, windowed) = if after.is_none() {
            let revision = self.settled_revision().await?;
            let count = self
                .gateway
                .count(&records_prefix, &records_end, revision)
                .await
                .map_err(etcd("count records"))?;
            let load = (revision, count > self.windowed_load);
            *self
                .load_revision
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = load;
            load
        } else {
            *self
                .load_revision
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        let mut from = match after {
            None => records_prefix.clone(),
            Some(key) => {
                let mut k = self.record_key(key);
                k.push(0);
                k
            }
        };
        let limit = i64::try_from(limit.max(1)).unwrap_or(PAGE);
        // etcd 3.4 reads every key from the start of a range to its end before applying the
        // limit, so paging a large store through one range costs its square: a large store is
        // read by windows of one kind and first id byte (ids are UUIDs and digests).
        let (range, done) = loop {
            let end = if windowed {
                let mut window = from.clone();
                window.resize(from.len().max(records_prefix.len() + 2), 0);
                window.truncate(records_prefix.len() + 2);
                prefix_end(&window).min(records_end.clone())
            } else {
                records_end.clone()
            };
            let range = self
                .gateway
                .range(&from, &end, limit, revision)
                .await
                .map_err(etcd("read records"))?;
            let last_window = end == records_end;
            if !range.kvs.is_empty() || last_window {
                let done = last_window && !range.more;
                break (range, done);
            }
            // An empty window: go on from the next key there is, wherever it is.
            match self
                .gateway
                .first_key(&end, &records_end, revision)
                .await
                .map_err(etcd("read records"))?
            {
                Some(next) => from = next,
                None => break (range, true),
            }
        };
        let mut records = Vec::with_capacity(range.kvs.len());
        for kv in range.kvs {
            let Some((&kind, id)) = kv
                .key
                .get(records_prefix.len()..)
                .and_then(<[u8]>::split_first)
            else {
                return Err(layout(&kv.key, "a record key without a kind"));
            };
            records.push(Record {
                key: RecordKey {
                    kind,
                    id: id.to_vec(),
                },
                sealed: kv.value,
            });
        }
        Ok((records, done))
    }

    async fn fetch_async(
        &self,
        at: Option<u64>,
        keys: &[RecordKey],
    ) -> Result<Fetched, StoreError> {
        let revision = match at {
            Some(at) => i64::try_from(at).map_err(|_| StoreError::EtcdLayout {
                key: "revision".to_owned(),
                why: format!("{at} is not an etcd revision"),
            })?,
            None => self.settled_revision().await?,
        };
        let mut values = Vec::with_capacity(keys.len());
        for part in keys.chunks(FETCH_TXN_KEYS) {
            let names: Vec<Vec<u8>> = part.iter().map(|k| self.record_key(k)).collect();
            values.extend(
                self.gateway
                    .values_at(&names, revision)
                    .await
                    .map_err(etcd("read records at a revision"))?,
            );
        }
        Ok((u64::try_from(revision).unwrap_or(0), values))
    }

    /// A revision at which the log is fully applied: the records there are one commit's state.
    async fn settled_revision(&self) -> Result<i64, StoreError> {
        let log = self.key(&[b"log"]);
        let log_end = prefix_end(&{
            let mut k = log.clone();
            k.push(b'/');
            k
        });
        for _ in 0..LOAD_TRIES {
            let revision = self.catch_up().await?;
            let pending = self
                .gateway
                .range(&log, &log_end, 1, revision)
                .await
                .map_err(etcd("read the log"))?;
            if pending.kvs.is_empty() {
                return Ok(revision);
            }
        }
        Err(layout(
            &log,
            "the log kept growing while loading: another member commits faster than it is applied",
        ))
    }

    /// Every audit line in the store, in order (the log applied first).
    ///
    /// # Errors
    /// [`StoreError`] if the cluster cannot be read.
    pub fn audit_lines(&self, mut each: impl FnMut(&[u8])) -> Result<(), StoreError> {
        self.block_on(async {
            let revision = self.settled_revision().await?;
            let mut prefix = self.key(&[b"audit"]);
            prefix.push(b'/');
            let end = prefix_end(&prefix);
            let mut from = prefix.clone();
            loop {
                let page = self
                    .gateway
                    .range(&from, &end, PAGE, revision)
                    .await
                    .map_err(etcd("read the audit log"))?;
                for kv in &page.kvs {
                    for line in kv.value.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                        each(line);
                    }
                }
                match page.kvs.last() {
                    Some(last) if page.more => {
                        from = last.key.clone();
                        from.push(0);
                    }
                    _ => return Ok(()),
                }
            }
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A record to write (`Some`) or delete (`None`).
type Change<'a> = (&'a RecordKey, Option<&'a [u8]>);

/// The group's records, each key once, as the last batch to touch it left it (puts before
/// deletes within a batch), in key order; and its audit lines in order.
fn collapse(batches: &[CommitBatch]) -> Result<(Vec<Change<'_>>, Vec<&[u8]>), StoreError> {
    let mut records: std::collections::BTreeMap<&RecordKey, Option<&[u8]>> =
        std::collections::BTreeMap::new();
    let mut audit = Vec::new();
    for batch in batches {
        super::validate_batch(batch)?;
        for put in &batch.puts {
            records.insert(&put.key, Some(&put.sealed));
        }
        for key in &batch.deletes {
            records.insert(key, None);
        }
        audit.extend(batch.audit.iter().map(Vec::as_slice));
    }
    Ok((records.into_iter().collect(), audit))
}

/// `records` and `audit` cut into chunks that one transaction applies; at least one.
fn chunk(records: &[Change<'_>], audit: &[&[u8]]) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut chunks = Vec::new();
    let mut current = Chunk::default();
    let mut bytes = 0;
    let mut flush = |current: &mut Chunk, bytes: &mut usize| -> Result<(), StoreError> {
        if !current.records.is_empty() || !current.audit.is_empty() {
            let encoded = serde_cbor::to_vec(&*current).map_err(|_| StoreError::CommitTooLarge)?;
            chunks.push(encoded);
        }
        *current = Chunk::default();
        *bytes = 0;
        Ok(())
    };
    for (key, value) in records {
        let len = key.id.len() + 1 + value.map_or(0, <[u8]>::len);
        if current.records.len() >= CHUNK_RECORDS || (bytes > 0 && bytes + len > CHUNK_BYTES) {
            flush(&mut current, &mut bytes)?;
        }
        current.records.push((
            (*key).clone(),
            value.map(|v| serde_bytes::ByteBuf::from(v.to_vec())),
        ));
        bytes += len;
    }
    for line in audit {
        if bytes > 0 && bytes + line.len() + 1 > CHUNK_BYTES {
            flush(&mut current, &mut bytes)?;
        }
        current
            .audit
            .push(serde_bytes::ByteBuf::from(line.to_vec()));
        bytes += line.len() + 1;
    }
    flush(&mut current, &mut bytes)?;
    if chunks.is_empty() {
        // Even a commit of nothing moves the head: its entry has one (empty) chunk, whose
        // application removes it.
        chunks.push(serde_cbor::to_vec(&Chunk::default()).map_err(|_| StoreError::CommitTooLarge)?);
    }
    Ok(chunks)
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        // Without waiting: the store may be dropped on an async task.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Store for EtcdStore {
    fn commit(&self, batches: &[CommitBatch]) -> Result<(), StoreError> {
        if batches.is_empty() {
            return Ok(());
        }
        self.block_on(async {
            if let Some(written) = self.commit_async(batches).await? {
                // Applied at once, so that the log stays short; a failure here loses nothing
                // (the commit is durable in the log, and the next commit or load applies it).
                let applied = match self.apply_written(&written).await {
                    Ok(true) => Ok(0),
                    Ok(false) => self.catch_up().await,
                    Err(e) => Err(e),
                };
                if let Err(e) = applied {
                    tracing::warn!(error = %super::error_chain(&e), "could not apply the etcd log yet");
                }
            }
            Ok(())
        })
    }

    fn load(
        &self,
        after: Option<&RecordKey>,
        limit: usize,
    ) -> Result<(Vec<Record>, bool), StoreError> {
        self.block_on(self.load_async(after, limit))
    }

    fn head(&self) -> Result<Option<u64>, StoreError> {
        self.block_on(self.read_head()).map(|head| Some(head.seq))
    }

    fn fetch(&self, at: Option<u64>, keys: &[RecordKey]) -> Result<Fetched, StoreError> {
        self.block_on(self.fetch_async(at, keys))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use ekms_tests::etcd::EtcdServer;

    fn record(i: u32, sealed: &[u8]) -> Record {
        Record {
            key: RecordKey {
                kind: 3,
                id: format!("key-{i:04}").into_bytes(),
            },
            sealed: sealed.to_vec(),
        }
    }

    #[test]
    fn a_small_commit_waits_for_the_log_entry_pending_before_it() {
        let server = EtcdServer::start();
        let url: EtcdUrl = server.url("pending").parse().unwrap();
        let a = EtcdStore::open(&url).unwrap();
        // A commit too large for one transaction, its log entry left unapplied, as by a parent
        // that stopped right after committing it.
        let big = CommitBatch {
            session: None,
            seq: 10,
            base: Some(0),
            puts: (0..300).map(|i| record(i, b"old")).collect(),
            deletes: Vec::new(),
            audit: vec![b"big".to_vec()],
        };
        let written = a.block_on(a.commit_async(&[big])).unwrap();
        assert!(written.is_some(), "committed as a log entry");
        // Another parent's small commit on it: it must not go straight to the records before
        // the pending entry, whose later application would then overwrite it.
        let b = EtcdStore::open(&url).unwrap();
        let small = CommitBatch {
            session: None,
            seq: 11,
            base: Some(10),
            puts: vec![record(0, b"new")],
            deletes: Vec::new(),
            audit: vec![b"small".to_vec()],
        };
        b.commit(&[small]).unwrap();
        let (records, done) = b.load(None, 1000).unwrap();
        assert!(done);
        assert_eq!(records.len(), 300);
        assert_eq!(records[0], record(0, b"new"));
        assert!(records[1..].iter().all(|r| r.sealed == b"old"));
        let mut lines = Vec::new();
        a.audit_lines(|l| lines.push(l.to_vec())).unwrap();
        assert_eq!(lines, [b"big".to_vec(), b"small".to_vec()]);
    }

    #[test]
    fn a_commit_retried_after_its_answer_was_lost_is_recognized_as_made() {
        let server = EtcdServer::start();
        let url: EtcdUrl = server.url("retried").parse().unwrap();
        let store = EtcdStore::open(&url).unwrap();
        let small = CommitBatch {
            session: None,
            seq: 5,
            base: Some(0),
            puts: vec![record(1, b"x")],
            deletes: Vec::new(),
            audit: vec![b"small".to_vec()],
        };
        let big = CommitBatch {
            session: None,
            seq: 6,
            base: Some(5),
            puts: (0..250).map(|i| record(i, b"y")).collect(),
            deletes: Vec::new(),
            audit: vec![b"big".to_vec()],
        };
        for batch in [small, big] {
            let before = store.block_on(store.read_head()).unwrap();
            store.commit(std::slice::from_ref(&batch)).unwrap();
            // As if the transaction's answer had been lost: the same transaction again, from
            // the same view. It is not applied twice, and it is not a conflict.
            *store.lock_head() = Some(before);
            store.commit(std::slice::from_ref(&batch)).unwrap();
        }
        let (records, _) = store.load(None, 1000).unwrap();
        assert_eq!(records.len(), 250);
        let mut lines = Vec::new();
        store.audit_lines(|l| lines.push(l.to_vec())).unwrap();
        assert_eq!(lines, [b"small".to_vec(), b"big".to_vec()]);
        // A different commit from the old view is still a conflict.
        *store.lock_head() = Some(Head { index: 1, seq: 5 });
        let other = CommitBatch {
            session: None,
            seq: 7,
            base: Some(5),
            puts: vec![record(1, b"z")],
            deletes: Vec::new(),
            audit: Vec::new(),
        };
        assert!(matches!(
            store.commit(&[other]),
            Err(StoreError::Conflict { .. })
        ));
    }

    /// A catch-up reads named records at one snapshot: what a later commit changed or deleted is
    /// still read as the snapshot had it, a record absent there is `None`, and more keys than
    /// one transaction may read come back whole and in the order asked.
    #[test]
    fn fetch_reads_named_records_at_one_snapshot() {
        let server = EtcdServer::start();
        let url: EtcdUrl = server.url("fetch").parse().unwrap();
        let store = EtcdStore::open(&url).unwrap();
        let key = |i: u32| record(i, b"").key;
        store
            .commit(&[CommitBatch {
                session: None,
                seq: 1,
                base: Some(0),
                puts: (0..250).map(|i| record(i, b"first")).collect(),
                deletes: Vec::new(),
                audit: Vec::new(),
            }])
            .unwrap();
        // Asked in reverse, with one that never existed: more than one transaction's worth.
        let mut asked: Vec<RecordKey> = (0..250).rev().map(key).collect();
        asked.insert(7, key(9999));
        let (at, values) = store.fetch(None, &asked).unwrap();
        assert_eq!(values.len(), asked.len());
        assert_eq!(values[7], None);
        assert!(values
            .iter()
            .enumerate()
            .all(|(i, v)| i == 7 || v.as_deref() == Some(&b"first"[..])));

        store
            .commit(&[CommitBatch {
                session: None,
                seq: 2,
                base: Some(1),
                puts: vec![record(0, b"second")],
                deletes: vec![key(1)],
                audit: Vec::new(),
            }])
            .unwrap();
        let (again, old) = store.fetch(Some(at), &[key(0), key(1)]).unwrap();
        assert_eq!(again, at);
        assert_eq!(old, [Some(b"first".to_vec()), Some(b"first".to_vec())]);
        let (newer, now) = store.fetch(None, &[key(0), key(1)]).unwrap();
        assert!(newer > at);
        assert_eq!(now, [Some(b"second".to_vec()), None]);
    }

    #[test]
    fn a_large_store_loads_by_windows_the_same_records() {
        let server = EtcdServer::start();
        let url: EtcdUrl = server.url("windows").parse().unwrap();
        let mut store = EtcdStore::open(&url).unwrap();
        // Ids whose first byte covers the edges of the windows, over several kinds.
        let mut puts = Vec::new();
        for kind in [0u8, 2, 3, 255] {
            for first in [0u8, 1, 7, 128, 254, 255] {
                for rest in 0..5u8 {
                    puts.push(Record {
                        key: RecordKey {
                            kind,
                            id: vec![first, rest, 0xff],
                        },
                        sealed: vec![kind, first, rest],
                    });
                }
            }
            puts.push(Record {
                key: RecordKey {
                    kind,
                    id: Vec::new(),
                },
                sealed: vec![kind],
            });
        }
        puts.sort_by(|a, b| a.key.cmp(&b.key));
        store
            .commit(&[CommitBatch {
                session: None,
                seq: 1,
                base: Some(0),
                puts: puts.clone(),
                deletes: Vec::new(),
                audit: Vec::new(),
            }])
            .unwrap();
        for windowed_load in [i64::MAX, 0] {
            store.windowed_load = windowed_load;
            for limit in [1, 4, 1000] {
                let mut all = Vec::new();
                let mut after: Option<RecordKey> = None;
                loop {
                    let (page, done) = store.load(after.as_ref(), limit).unwrap();
                    assert!(page.len() <= limit);
                    after = page.last().map(|r| r.key.clone()).or(after);
                    all.extend(page);
                    if done {
                        break;
                    }
                }
                assert_eq!(
                    all, puts,
                    "windowed above {windowed_load}, pages of {limit}"
                );
            }
        }
    }

    #[test]
    fn applied_marks_round_trip() {
        for applied in [
            Applied::Complete(0),
            Applied::Complete(7),
            Applied::Partial(9, 3),
        ] {
            assert_eq!(Applied::decode(&applied.encode()), Some(applied));
        }
        for bad in [&b"7"[..], b"7 x", b"x done", b"", b"7 -1"] {
            assert_eq!(Applied::decode(bad), None);
        }
    }
}
