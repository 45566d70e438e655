//! The parent's store: sealed records and audit lines on disk, served to the enclave.
//!
//! The parent holds only opaque bytes. It never decodes a sealed record or an audit line: the
//! enclave seals and signs them, and checks what it gets back. What the parent does promise is
//! durability: a commit is acknowledged only once it is on disk (fsync), and a commit is applied
//! whole or not at all.
//!
//! - [`Store`]: the seam, with [`RedbStore`] (a commit journal in front of redb, the default)
//!   and [`FailingStore`] (fault injection for tests; both always compiled).
//! - [`serve_store`]: the store channel ([`ekms_shared::wire::v1`]) with group commit.

use std::io;
use std::path::PathBuf;

use ekms_shared::wire::v1::{Record, RecordKey};
use thiserror::Error;

pub mod audit_files;
mod etcd;
mod failing;
mod journal;
mod redb_store;
mod service;

pub use etcd::{EtcdStore, EtcdUrl, GatewayError};
pub use failing::FailingStore;
pub use redb_store::{AuditSettings, RedbStore};
pub use service::{serve_store, serve_store_with, StoreServiceConfig};

/// One `Commit` request of the store channel, as the store applies it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CommitBatch {
    /// The request's `seq`, echoed in its acknowledgement.
    pub seq: u64,
    /// The commit it was built on (`Request::Commit`'s `base`): a store shared by several
    /// enclaves applies it only on that base; the embedded store, with one writer, ignores it.
    pub base: Option<u64>,
    /// Records to insert or overwrite.
    pub puts: Vec<Record>,
    /// Records to remove, after `puts`; absent ones are ignored.
    pub deletes: Vec<RecordKey>,
    /// Opaque audit lines, without their `\n`.
    pub audit: Vec<Vec<u8>>,
    /// The session announced on the channel it came by (`Request::Hold`), if any: a store
    /// shared by several enclaves files an unconditional audit-only batch under it.
    pub session: Option<u64>,
}

impl CommitBatch {
    /// A batch that changes no record and builds on nothing: a member's audit lines, which a
    /// shared store appends without conditions.
    pub fn is_audit_only(&self) -> bool {
        self.base.is_none() && self.puts.is_empty() && self.deletes.is_empty()
    }
}

impl CommitBatch {
    /// Bytes this batch carries, to bound a group commit.
    pub fn payload_len(&self) -> usize {
        let puts: usize = self
            .puts
            .iter()
            .map(|r| r.key.id.len() + r.sealed.len() + 1)
            .sum();
        let deletes: usize = self.deletes.iter().map(|k| k.id.len() + 1).sum();
        let audit: usize = self.audit.iter().map(|line| line.len() + 1).sum();
        puts + deletes + audit
    }
}

/// What [`Store::fetch`] read: the snapshot, and each record's sealed bytes in the order asked
/// (`None` for one absent there).
pub type Fetched = (u64, Vec<Option<Vec<u8>>>);

/// Durable storage of sealed records: the seam between the store channel and the disk.
///
/// Methods block (they sync to disk); async callers run them with `spawn_blocking`.
pub trait Store: Send + Sync + 'static {
    /// Applies every batch, in order, in one atomic and durable step: when this returns `Ok`,
    /// all of them survive a crash; when it returns `Err`, none of them was applied. Within a
    /// batch, puts are applied before deletes. Audit lines are appended to the audit log in
    /// batch order, in the same durable step.
    ///
    /// # Errors
    ///
    /// Any failure to write or sync; nothing of `batches` is then visible.
    fn commit(&self, batches: &[CommitBatch]) -> Result<(), StoreError>;

    /// Returns up to `limit` records strictly after `after` in (kind, id) order, and whether
    /// no record follows them. A `limit` of 0 is taken as 1, so paging always progresses.
    ///
    /// # Errors
    ///
    /// Any failure to read the store.
    fn load(
        &self,
        after: Option<&RecordKey>,
        limit: usize,
    ) -> Result<(Vec<Record>, bool), StoreError>;

    /// The `seq` of the last commit that changed records, read from the store itself (several
    /// enclaves may share it); `None` for a store with one writer, which does not track it.
    ///
    /// # Errors
    ///
    /// Any failure to read the store.
    fn head(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// The records named by `keys` as they stand in one snapshot of the store, in the order
    /// asked (`None` for one absent there), and that snapshot: `at`, as an earlier call
    /// returned it, or with `None` the newest state in which no commit is half applied. A
    /// member catching up on another member's commits reads the pieces that changed this way.
    /// A store with one writer, whose enclave never follows it, need not answer.
    ///
    /// # Errors
    ///
    /// Any failure to read the store, a snapshot it no longer has (etcd compacted it), or
    /// [`StoreError::Unsupported`].
    fn fetch(&self, at: Option<u64>, keys: &[RecordKey]) -> Result<Fetched, StoreError> {
        let _ = (at, keys);
        Err(StoreError::Unsupported {
            what: "reading records at a snapshot (Fetch): only a shared store answers it",
        })
    }

    /// The sizes of the store's parts, for metrics; what a store cannot tell is `None`.
    fn usage(&self) -> StoreUsage {
        StoreUsage::default()
    }
}

/// Sizes of a store's parts (metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreUsage {
    /// The records' database file.
    pub records_bytes: Option<u64>,
    /// The group-commit journal files.
    pub journal_bytes: Option<u64>,
    /// The audit log's files, rotated ones included.
    pub audit_bytes: Option<u64>,
    /// Free space on the audit log's file system.
    pub audit_disk_free_bytes: Option<u64>,
}

/// Why a store operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file or directory operation failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done, as "cannot ...".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The embedded database failed.
    #[error("redb: cannot {action}")]
    Redb {
        /// What was being done.
        action: &'static str,
        /// What redb said (boxed: `redb::Error` is large, and errors are the rare path).
        #[source]
        source: Box<redb::Error>,
    },
    /// An earlier write or sync of this file failed, so its contents are unknown: no commit is
    /// accepted until the store is reopened (which replays the journal).
    #[error("an earlier write to {path} failed and its state is unknown; reopen the store")]
    Poisoned {
        /// The file.
        path: PathBuf,
    },
    /// The journal stayed full: no checkpoint emptied it in time.
    #[error(
        "the journal {path} stayed full for {waited:?}; the store's checkpoints are not keeping up"
    )]
    JournalFull {
        /// The full journal.
        path: PathBuf,
        /// How long the commit waited.
        waited: std::time::Duration,
    },
    /// A commit whose parts do not fit the journal's 32-bit lengths.
    #[error("the commit is too large for one journal entry")]
    CommitTooLarge,
    /// An audit line contains `\n`, so it cannot be stored as one line.
    #[error("audit line {index} of commit {seq} contains a newline")]
    AuditLineHasNewline {
        /// The batch's `seq`.
        seq: u64,
        /// The line's position in the batch.
        index: usize,
    },
    /// A call to etcd failed.
    #[error("etcd: cannot {action}")]
    Etcd {
        /// What was being done.
        action: &'static str,
        /// What failed.
        #[source]
        source: etcd::GatewayError,
    },
    /// A key in etcd does not hold what this layout writes there.
    #[error("etcd key {key} {why}")]
    EtcdLayout {
        /// The key.
        key: String,
        /// What is wrong with it.
        why: String,
    },
    /// The commit was built on another state than the store's: another enclave committed first.
    /// Nothing of it was applied.
    #[error("commit built on {base}, but the store's last commit is {head}")]
    Conflict {
        /// The commit it was built on.
        base: u64,
        /// The store's last commit.
        head: u64,
    },
    /// The audit log's disk has less free space than the store keeps in reserve: the commit
    /// was refused before anything of it was written (nothing is lost, and commits are taken
    /// again once space is freed).
    #[error(
        "the audit log's disk ({dir}) has {free} bytes free, under the {reserve}-byte reserve: \
         commit refused; free space (or rotate and prune the audit log) to resume"
    )]
    AuditDiskFull {
        /// The data directory.
        dir: PathBuf,
        /// Bytes free.
        free: u64,
        /// The reserve ([`AuditSettings::min_free_bytes`]).
        reserve: u64,
    },
    /// This store does not do what was asked.
    #[error("this store does not support {what}")]
    Unsupported {
        /// What was asked.
        what: &'static str,
    },
    /// A failure injected by [`FailingStore`].
    #[error("injected failure (FailingStore, commit call {call})")]
    Injected {
        /// Which `commit` call failed, counting from 1.
        call: u64,
    },
}

/// Checks what a store can reject in a batch before touching the disk, so that the service
/// can refuse one bad request without failing the group it would have joined.
///
/// # Errors
///
/// [`StoreError::AuditLineHasNewline`].
pub fn validate_batch(batch: &CommitBatch) -> Result<(), StoreError> {
    match batch.audit.iter().position(|line| line.contains(&b'\n')) {
        Some(index) => Err(StoreError::AuditLineHasNewline {
            seq: batch.seq,
            index,
        }),
        None => Ok(()),
    }
}

/// `error` and its sources, joined by ": ", for the store channel's `Error { message }`.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
