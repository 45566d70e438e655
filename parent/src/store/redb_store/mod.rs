//! [`RedbStore`]: group commits made durable by one append and one sync of a journal, and
//! applied to redb and the audit log behind it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ekms_shared::wire::v1::{Record, RecordKey};
use redb::{Database, Durability, TableDefinition, TableError};

mod audit_log;
mod journal_file;

use audit_log::AuditLog;
pub use audit_log::AuditSettings;
use journal_file::{reset, Journal};

use super::journal::{self, Op};
use super::{validate_batch, CommitBatch, Store, StoreError};

/// The records file inside the data directory.
pub const DB_FILE: &str = "store.redb";

/// The audit log inside the data directory (`store::audit_files`).
#[cfg(test)]
const AUDIT_FILE: &str = super::audit_files::CURRENT;

/// The two journal files inside the data directory: commits append to one while a checkpoint
/// applies the other's entries to redb.
pub const JOURNAL_FILES: [&str; 2] = ["journal.0", "journal.1"];

/// (kind, id) → sealed bytes. redb orders tuple keys field by field and byte slices
/// lexicographically, which is the (kind, id) order `load` pages in.
const RECORDS: TableDefinition<(u8, &[u8]), &[u8]> = TableDefinition::new("records");

/// Written by earlier versions: audit lines not yet synced in the file, by file offset.
/// [`RedbStore::open`] restores what the file lacks from it and removes it.
const LEGACY_AUDIT_PENDING: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_pending");

/// When checkpoints run and how large a journal may grow.
#[derive(Debug, Clone, Copy)]
struct Tuning {
    /// How often the checkpointer applies the journal to redb when it has not filled up first.
    interval: Duration,
    /// A journal this long wakes the checkpointer at once.
    checkpoint_bytes: u64,
    /// A journal this long takes no more commits until a checkpoint switches journals; this
    /// bounds the journal and the records held in memory beside it.
    max_bytes: u64,
    /// How long a commit waits for a full journal to be switched before it fails.
    wait: Duration,
    /// Whether to open the journals with `O_DIRECT | O_DSYNC` (where the file system allows).
    direct: bool,
}

impl Tuning {
    const DEFAULT: Tuning = Tuning {
        interval: Duration::from_secs(1),
        checkpoint_bytes: 64 * 1024 * 1024,
        max_bytes: 256 * 1024 * 1024,
        wait: Duration::from_secs(30),
        direct: true,
    };
}

/// The embedded store: `DIR/store.redb`, `DIR/audit.jsonl` and the journals `DIR/journal.{0,1}`.
///
/// A group commit is one entry appended to the active journal and synced (`fdatasync`): that
/// is when it is durable and acknowledged. Its records then wait in memory and its audit lines
/// are appended to `audit.jsonl`, unsynced. About once a second (sooner when the journal
/// reaches 64 MiB) a checkpoint thread switches commits to the other journal, syncs the audit
/// log, applies the waiting records to redb in one durable transaction, and empties the
/// journal it switched from. So a commit costs one sequential append and one sync, and redb's
/// page writes are paid once per checkpoint instead of once per commit.
///
/// [`RedbStore::open`] replays both journals in order: their records into redb, and audit lines
/// the file lacks (lost in a crash before its sync) into the file. A torn last entry was never
/// acknowledged and is cut off.
pub struct RedbStore {
    shared: Arc<Shared>,
    checkpointer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

/// What the store and its checkpoint thread share.
struct Shared {
    db: Database,
    state: Mutex<State>,
    /// Wakes the checkpointer early: a journal filled up, or the store is closing.
    wake: Condvar,
    /// Wakes commits waiting for a full journal to be switched.
    room: Condvar,
    /// Held for a whole checkpoint: one at a time.
    checkpointing: Mutex<()>,
    tuning: Tuning,
    /// The data directory.
    dir: PathBuf,
    audit_settings: AuditSettings,
}

/// A record key as the in-memory map orders it: (kind, id), as redb does.
type Key = (u8, Vec<u8>);

struct State {
    /// The journal commits append to.
    active: Journal,
    /// The other journal: empty, or being applied by a checkpoint.
    standby: Journal,
    /// Records in a journal but not yet in redb: sealed bytes, or `None` when deleted.
    pending: BTreeMap<Key, Option<Vec<u8>>>,
    /// The next journal entry's generation.
    next_gen: u64,
    audit: AuditLog,
    /// Rotated audit files the checkpointer is to compress.
    to_compress: Vec<PathBuf>,
    /// When compressing last failed (it is retried a while later).
    compress_failed: Option<Instant>,
    /// When low free space was last warned about.
    low_space_warned: Option<Instant>,
    /// A write or sync of this file failed, so its contents are unknown: no commit is
    /// accepted and no journal emptied until the store is reopened, which replays the journals.
    poisoned: Option<PathBuf>,
    /// The store is being dropped: the checkpointer ends.
    closing: bool,
}

fn redb_error<E: Into<redb::Error>>(action: &'static str) -> impl FnOnce(E) -> StoreError {
    move |source| StoreError::Redb {
        action,
        source: Box::new(source.into()),
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

impl RedbStore {
    /// Opens (creating if needed) the store in `dir`, replaying its journals.
    ///
    /// A torn last audit line or journal entry (a crash in the middle of a write, which was
    /// therefore never acknowledged) is cut off.
    ///
    /// # Errors
    ///
    /// The directory cannot be created, the database cannot be opened (corrupt, or already
    /// open in another process: redb locks the file), or the audit log or a journal cannot be
    /// read, repaired or synced.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, AuditSettings::default())
    }

    /// [`RedbStore::open`], with the audit log rotated and its disk's space kept as `audit`
    /// says.
    ///
    /// # Errors
    /// As [`RedbStore::open`]; also when a rotated audit file cannot be read.
    pub fn open_with(dir: &Path, audit: AuditSettings) -> Result<Self, StoreError> {
        Self::open_tuned(dir, Tuning::DEFAULT, audit)
    }

    /// Bytes free on the data directory's file system (the audit log's disk): commits are
    /// refused below [`AuditSettings::min_free_bytes`].
    ///
    /// # Errors
    /// When `statvfs` fails.
    pub fn audit_disk_free_bytes(&self) -> Result<u64, StoreError> {
        audit_log::free_bytes(&self.shared.dir)
    }

    fn open_tuned(
        dir: &Path,
        tuning: Tuning,
        audit_settings: AuditSettings,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(io_error("cannot create", dir))?;
        let db = Database::create(dir.join(DB_FILE)).map_err(redb_error("open the database"))?;
        let (mut audit, to_compress) = AuditLog::open(dir)?;
        restore_legacy_lines(&db, &mut audit)?;
        let mut journals = [
            Journal::open(dir.join(JOURNAL_FILES[0]), tuning.direct)?,
            Journal::open(dir.join(JOURNAL_FILES[1]), tuning.direct)?,
        ];
        let last_gen = replay(&db, &mut audit, &mut journals)?;
        // Everything replayed is in redb (durably) and in the audit file: sync the file, then
        // empty the journals.
        audit
            .file
            .sync_data()
            .map_err(io_error("cannot sync", &audit.path))?;
        for journal in &mut journals {
            journal.reset()?;
        }
        // Make the files' directory entries durable too.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error("cannot sync", dir))?;
        let [active, standby] = journals;
        let shared = Arc::new(Shared {
            db,
            state: Mutex::new(State {
                active,
                standby,
                pending: BTreeMap::new(),
                next_gen: last_gen.map_or(0, |gen| gen + 1),
                audit,
                to_compress,
                compress_failed: None,
                low_space_warned: None,
                poisoned: None,
                closing: false,
            }),
            wake: Condvar::new(),
            room: Condvar::new(),
            checkpointing: Mutex::new(()),
            tuning,
            dir: dir.to_owned(),
            audit_settings,
        });
        let thread_shared = Arc::clone(&shared);
        let checkpointer = std::thread::Builder::new()
            .name("store-checkpoint".to_owned())
            .spawn(move || run_checkpointer(&thread_shared))
            .map_err(io_error("cannot start the checkpoint thread for", dir))?;
        Ok(RedbStore {
            shared,
            checkpointer: Some(checkpointer),
        })
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // Under the lock, so the checkpointer cannot miss the wake-up between its check and
        // its wait.
        if let Ok(mut state) = self.shared.state.lock() {
            state.closing = true;
        }
        // (A poisoned lock ends the checkpointer by itself.)
        self.shared.wake.notify_all();
        if let Some(thread) = self.checkpointer.take() {
            // Waits for a checkpoint in progress, so the database is closed when this returns.
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn lock_state(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        // A panic while holding the lock leaves the files in an unknown state.
        self.state.lock().map_err(|poisoned| StoreError::Poisoned {
            path: poisoned.get_ref().audit.path.clone(),
        })
    }

    /// Refuses a commit, before anything of it is written, while the data directory's file
    /// system has less than the reserve free; warns (once a minute) below four times it.
    fn check_free_space(&self, state: &mut State) -> Result<(), StoreError> {
        let reserve = self.audit_settings.min_free_bytes;
        if reserve == 0 {
            return Ok(());
        }
        let free = audit_log::free_bytes(&self.dir)?;
        if free < reserve.saturating_mul(4) {
            let due = state
                .low_space_warned
                .is_none_or(|at| at.elapsed() >= Duration::from_secs(60));
            if due {
                state.low_space_warned = Some(Instant::now());
                tracing::warn!(
                    dir = %self.dir.display(),
                    free_bytes = free,
                    reserve_bytes = reserve,
                    "the audit log's disk is nearly full: commits are refused below the reserve"
                );
            }
        }
        if free < reserve {
            return Err(StoreError::AuditDiskFull {
                dir: self.dir.clone(),
                free,
                reserve,
            });
        }
        Ok(())
    }

    /// Rotates `audit.jsonl` if it is due (by size or age), between commits (the state lock is
    /// held); the rotated file waits for compression. A failed rotation poisons the store: the
    /// files' state is for a reopen to sort out.
    fn rotate_if_due(&self, state: &mut State) {
        if state.poisoned.is_some()
            || !state
                .audit
                .rotation_due(&self.audit_settings, std::time::SystemTime::now())
        {
            return;
        }
        match state.audit.rotate(&self.dir) {
            Ok(rotated) => {
                tracing::info!(rotated = %rotated.display(), "rotated the audit log");
                state.to_compress.push(rotated);
                self.wake.notify_all();
            }
            Err(e) => {
                tracing::error!(error = %super::error_chain(&e), "cannot rotate the audit log; refusing further commits until reopened");
                let path = state.audit.path.clone();
                self.poison(state, &path);
            }
        }
    }

    /// Marks the store unusable until reopened, and wakes commits waiting for room.
    fn poison(&self, state: &mut State, path: &Path) {
        if state.poisoned.is_none() {
            state.poisoned = Some(path.to_owned());
        }
        self.room.notify_all();
    }
}

impl Store for RedbStore {
    fn commit(&self, batches: &[CommitBatch]) -> Result<(), StoreError> {
        for batch in batches {
            validate_batch(batch)?;
        }
        let shared = &*self.shared;
        let mut state = shared.lock_state()?;
        let deadline = Instant::now() + shared.tuning.wait;
        while state.active.len >= shared.tuning.max_bytes && state.poisoned.is_none() {
            shared.wake.notify_all();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StoreError::JournalFull {
                    path: state.active.path.clone(),
                    waited: shared.tuning.wait,
                });
            }
            state = match shared.room.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => {
                    return Err(StoreError::Poisoned {
                        path: poisoned.into_inner().0.audit.path.clone(),
                    })
                }
            };
        }
        if let Some(path) = &state.poisoned {
            return Err(StoreError::Poisoned { path: path.clone() });
        }
        shared.check_free_space(&mut state)?;
        let encoded = journal::encode(state.next_gen, state.audit.end(), batches)?;
        if let Err(e) = state.active.append(&encoded.entry) {
            let path = state.active.path.clone();
            shared.poison(&mut state, &path);
            return Err(e);
        }
        // Durable. The records wait for the next checkpoint; the lines go to the audit log.
        state.next_gen += 1;
        for batch in batches {
            for put in &batch.puts {
                state
                    .pending
                    .insert((put.key.kind, put.key.id.clone()), Some(put.sealed.clone()));
            }
            for key in &batch.deletes {
                state.pending.insert((key.kind, key.id.clone()), None);
            }
        }
        let lines = encoded.lines();
        if !lines.is_empty() {
            // A failure here loses nothing (the journal has the lines) but leaves the file's
            // tail unknown, so further commits wait for a reopen to restore it.
            if let Err(e) = state.audit.file.write_all(lines) {
                tracing::error!(path = %state.audit.path.display(), error = %e, "cannot append to the audit log; refusing further commits until reopened");
                let path = state.audit.path.clone();
                shared.poison(&mut state, &path);
                return Ok(());
            }
            state.audit.len += lines.len() as u64;
            // Between commits: every line of this one is in the file it rotates. (The commit
            // is durable in the journal whatever happens to the rotation.)
            shared.rotate_if_due(&mut state);
        }
        if state.active.len >= shared.tuning.checkpoint_bytes {
            shared.wake.notify_all();
        }
        Ok(())
    }

    fn usage(&self) -> super::StoreUsage {
        let dir = &self.shared.dir;
        let size = |name: &str| std::fs::metadata(dir.join(name)).ok().map(|m| m.len());
        let journal = JOURNAL_FILES
            .iter()
            .filter_map(|name| size(name))
            .fold(None, |sum: Option<u64>, len| Some(sum.unwrap_or(0) + len));
        let audit = super::audit_files::list(dir).ok().map(|files| {
            files
                .iter()
                .filter_map(|file| std::fs::metadata(&file.path).ok())
                .map(|m| m.len())
                .sum()
        });
        super::StoreUsage {
            records_bytes: size(DB_FILE),
            journal_bytes: journal,
            audit_bytes: audit,
            audit_disk_free_bytes: self.audit_disk_free_bytes().ok(),
        }
    }

    fn load(
        &self,
        after: Option<&RecordKey>,
        limit: usize,
    ) -> Result<(Vec<Record>, bool), StoreError> {
        // Everything acknowledged into redb first, so that redb alone answers.
        checkpoint(&self.shared)?;
        if let Some(path) = &self.shared.lock_state()?.poisoned {
            return Err(StoreError::Poisoned { path: path.clone() });
        }
        let limit = limit.max(1);
        let txn = self
            .shared
            .db
            .begin_read()
            .map_err(redb_error("begin a read transaction"))?;
        let table = txn
            .open_table(RECORDS)
            .map_err(redb_error("open the records table"))?;
        let start = match after {
            Some(key) => Bound::Excluded((key.kind, key.id.as_slice())),
            None => Bound::Unbounded,
        };
        let range = table
            .range::<(u8, &[u8])>((start, Bound::Unbounded))
            .map_err(redb_error("read the records table"))?;
        let mut records = Vec::new();
        for entry in range {
            let (key, value) = entry.map_err(redb_error("read a record"))?;
            if records.len() == limit {
                return Ok((records, false));
            }
            let (kind, id) = key.value();
            records.push(Record {
                key: RecordKey {
                    kind,
                    id: id.to_vec(),
                },
                sealed: value.value().to_vec(),
            });
        }
        Ok((records, true))
    }
}

/// The checkpoint thread: a checkpoint every [`Tuning::interval`], or when woken by a full
/// journal, until the store closes.
fn run_checkpointer(shared: &Shared) {
    loop {
        {
            let Ok(mut state) = shared.state.lock() else {
                return;
            };
            if !state.closing && state.active.len < shared.tuning.checkpoint_bytes {
                let Ok((woken, _)) = shared.wake.wait_timeout(state, shared.tuning.interval) else {
                    return;
                };
                state = woken;
            }
            if state.closing {
                return;
            }
            // An idle log rotates by age too, so that a quiet deployment's records still
            // reach a rotated (shippable, prunable) file within `--audit-max-age`.
            shared.rotate_if_due(&mut state);
        }
        if let Err(e) = checkpoint(shared) {
            tracing::error!(error = %super::error_chain(&e), "store checkpoint failed; refusing further commits until reopened");
        }
        compress_rotated(shared);
    }
}

/// How long compressing waits after a failure (a full disk, say) before it tries again.
const COMPRESS_RETRY: Duration = Duration::from_secs(30);

/// Compresses the rotated audit files waiting for it, outside the state lock. A failure keeps
/// the plain file (whole, and part of the log as it is) and is retried later.
fn compress_rotated(shared: &Shared) {
    let waiting = {
        let Ok(mut state) = shared.state.lock() else {
            return;
        };
        if state
            .compress_failed
            .is_some_and(|at| at.elapsed() < COMPRESS_RETRY)
        {
            return;
        }
        std::mem::take(&mut state.to_compress)
    };
    let mut failed = Vec::new();
    for plain in waiting {
        if !failed.is_empty() {
            failed.push(plain);
            continue;
        }
        match audit_log::compress(&plain) {
            Ok(gz) => tracing::info!(file = %gz.display(), "compressed a rotated audit file"),
            Err(e) => {
                tracing::warn!(error = %super::error_chain(&e), "cannot compress a rotated audit file; trying again later");
                failed.push(plain);
            }
        }
    }
    if let Ok(mut state) = shared.state.lock() {
        if !failed.is_empty() {
            state.compress_failed = Some(Instant::now());
            failed.append(&mut state.to_compress);
            state.to_compress = failed;
        }
    }
}

/// Applies the active journal's records to redb and empties it: commits switch to the other
/// journal (so they go on meanwhile), the audit log is synced (the journal also holds lines
/// the file may not yet have on disk), the records go to redb in one durable transaction, and
/// the journal is emptied. Does nothing when the store is poisoned.
///
/// # Errors
///
/// A sync, the transaction or emptying the journal failed; the store is then poisoned.
fn checkpoint(shared: &Shared) -> Result<(), StoreError> {
    let _one = shared
        .checkpointing
        .lock()
        .map_err(|_| StoreError::Poisoned {
            path: PathBuf::from(JOURNAL_FILES[0]),
        })?;
    let (records, old, old_path, audit_sync, audit_path) = {
        let mut state = shared.lock_state()?;
        if state.poisoned.is_some() || state.active.len == 0 {
            return Ok(());
        }
        let State {
            active, standby, ..
        } = &mut *state;
        std::mem::swap(active, standby);
        let records = std::mem::take(&mut state.pending);
        let old = state.standby.file.try_clone();
        let old_path = state.standby.path.clone();
        shared.room.notify_all();
        // The audit file the journal's lines went to (rotation syncs a file before it moves it
        // aside, so this one is the only one that may have unsynced lines).
        let audit_sync = state.audit.file.try_clone();
        match (old, audit_sync) {
            (Ok(old), Ok(audit_sync)) => {
                (records, old, old_path, audit_sync, state.audit.path.clone())
            }
            (Err(e), _) => {
                shared.poison(&mut state, &old_path);
                return Err(io_error("cannot open", &old_path)(e));
            }
            (_, Err(e)) => {
                let path = state.audit.path.clone();
                shared.poison(&mut state, &path);
                return Err(io_error("cannot open", &path)(e));
            }
        }
    };
    let applied = audit_sync
        .sync_data()
        .map_err(io_error("cannot sync", &audit_path))
        .and_then(|()| apply(&shared.db, &records))
        .and_then(|()| reset(&old, &old_path));
    let mut state = shared.lock_state()?;
    match applied {
        Ok(()) => {
            state.standby.len = 0;
            Ok(())
        }
        Err(e) => {
            shared.poison(&mut state, &old_path);
            Err(e)
        }
    }
}

/// Writes `records` to redb in one durable transaction.
fn apply(db: &Database, records: &BTreeMap<Key, Option<Vec<u8>>>) -> Result<(), StoreError> {
    let mut txn = db
        .begin_write()
        .map_err(redb_error("begin a transaction"))?;
    txn.set_durability(Durability::Immediate);
    {
        let mut table = txn
            .open_table(RECORDS)
            .map_err(redb_error("open the records table"))?;
        for ((kind, id), sealed) in records {
            match sealed {
                Some(sealed) => {
                    table
                        .insert((*kind, id.as_slice()), sealed.as_slice())
                        .map_err(redb_error("insert a record"))?;
                }
                None => {
                    table
                        .remove((*kind, id.as_slice()))
                        .map_err(redb_error("remove a record"))?;
                }
            }
        }
    }
    txn.commit().map_err(redb_error("commit"))
}

/// Replays both journals, oldest entries first, into redb (one durable transaction) and into
/// the audit file, each up to its last whole entry. Returns the last entry's generation.
fn replay(
    db: &Database,
    audit: &mut AuditLog,
    journals: &mut [Journal; 2],
) -> Result<Option<u64>, StoreError> {
    let mut readers = Vec::with_capacity(2);
    for (index, journal) in journals.iter().enumerate() {
        let mut reader = journal::Reader::new(journal.reader()?, journal.size);
        let first = reader.next_entry(&journal.path)?;
        readers.push((first, reader, index));
    }
    // The journal whose first entry is older goes first; an empty one has nothing to give.
    readers.sort_by_key(|(first, _, _)| first.as_ref().map_or(u64::MAX, |e| e.gen));
    let mut txn = db
        .begin_write()
        .map_err(redb_error("begin a transaction"))?;
    txn.set_durability(Durability::Immediate);
    let mut last_gen: Option<u64> = None;
    let mut replayed = 0u64;
    {
        let mut table = txn
            .open_table(RECORDS)
            .map_err(redb_error("create the records table"))?;
        for (first, mut reader, index) in readers {
            let journal = &journals[index];
            if let (Some(entry), Some(last)) = (&first, last_gen) {
                if entry.gen <= last {
                    // Not a successor of the other journal's entries: not this store's history.
                    tracing::error!(path = %journal.path.display(), gen = entry.gen, last, "journal entries out of order; ignoring this journal");
                    continue;
                }
            }
            let mut next = first;
            while let Some(entry) = next {
                for op in &entry.ops {
                    match op {
                        Op::Put(key, sealed) => {
                            table
                                .insert((key.kind, key.id.as_slice()), sealed.as_slice())
                                .map_err(redb_error("insert a record"))?;
                        }
                        Op::Delete(key) => {
                            table
                                .remove((key.kind, key.id.as_slice()))
                                .map_err(redb_error("remove a record"))?;
                        }
                    }
                }
                audit.restore(entry.audit_offset, &entry.lines)?;
                last_gen = Some(entry.gen);
                replayed += 1;
                // A journal is reused from its start: after its last entry come a torn entry,
                // zeros, or entries of an earlier round, whose generations do not follow on.
                next = reader
                    .next_entry(&journal.path)?
                    .filter(|next| next.gen == entry.gen + 1);
            }
        }
    }
    txn.commit().map_err(redb_error("commit the replay"))?;
    if replayed > 0 {
        tracing::info!(entries = replayed, "replayed the store journal");
    }
    Ok(last_gen)
}

/// Stores written by earlier versions kept unsynced audit lines in redb: put back what the
/// file lacks, sync it, and drop the table.
fn restore_legacy_lines(db: &Database, audit: &mut AuditLog) -> Result<(), StoreError> {
    {
        let txn = db
            .begin_read()
            .map_err(redb_error("begin a read transaction"))?;
        let table = match txn.open_table(LEGACY_AUDIT_PENDING) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(redb_error("open the audit table")(e)),
        };
        for entry in table
            .range::<u64>(..)
            .map_err(redb_error("read the audit table"))?
        {
            let (offset, lines) = entry.map_err(redb_error("read audit lines"))?;
            audit.restore(offset.value(), lines.value())?;
        }
    }
    audit
        .file
        .sync_data()
        .map_err(io_error("cannot sync", &audit.path))?;
    let txn = db
        .begin_write()
        .map_err(redb_error("begin a transaction"))?;
    txn.delete_table(LEGACY_AUDIT_PENDING)
        .map_err(redb_error("remove the audit table"))?;
    txn.commit().map_err(redb_error("commit"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(kind: u8, id: &str) -> RecordKey {
        RecordKey {
            kind,
            id: id.as_bytes().to_vec(),
        }
    }

    fn put(kind: u8, id: &str, sealed: &str) -> Record {
        Record {
            key: key(kind, id),
            sealed: sealed.as_bytes().to_vec(),
        }
    }

    fn batch(seq: u64, puts: Vec<Record>, deletes: Vec<RecordKey>, audit: &[&str]) -> CommitBatch {
        CommitBatch {
            session: None,
            seq,
            base: None,
            puts,
            deletes,
            audit: audit.iter().map(|l| l.as_bytes().to_vec()).collect(),
        }
    }

    /// Every record, paging with `limit`, checking each page's order and `done`.
    fn load_all(store: &dyn Store, limit: usize) -> Vec<Record> {
        let mut all: Vec<Record> = Vec::new();
        let mut after: Option<RecordKey> = None;
        loop {
            let (page, done) = store.load(after.as_ref(), limit).unwrap();
            assert!(page.len() <= limit.max(1));
            all.extend(page);
            if done {
                break;
            }
            after = Some(all.last().unwrap().key.clone());
        }
        for pair in all.windows(2) {
            assert!(pair[0].key < pair[1].key, "out of order: {pair:?}");
        }
        all
    }

    #[test]
    fn commit_then_load_pages_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        assert_eq!(store.load(None, 10).unwrap(), (vec![], true));

        // Put in scrambled order, over two batches of one group and a second group.
        let mut expected = Vec::new();
        for kind in [3u8, 1, 2] {
            for id in ["b", "", "a", "ab", "\u{ff}"] {
                expected.push(put(kind, id, &format!("sealed-{kind}-{id}")));
            }
        }
        let (first, second) = expected.split_at(7);
        store
            .commit(&[
                batch(1, first[..3].to_vec(), vec![], &[]),
                batch(2, first[3..].to_vec(), vec![], &[]),
            ])
            .unwrap();
        store
            .commit(&[batch(3, second.to_vec(), vec![], &[])])
            .unwrap();
        expected.sort_by(|a, b| a.key.cmp(&b.key));

        for limit in [0, 1, 2, 3, 7, 15, 16, 100] {
            assert_eq!(load_all(&store, limit), expected, "limit {limit}");
        }
        // Exactly `limit` left: the page says done only when nothing follows.
        let (page, done) = store.load(Some(&expected[12].key), 2).unwrap();
        assert_eq!((page.as_slice(), done), (&expected[13..], true));
        let (page, done) = store.load(Some(&expected[11].key), 2).unwrap();
        assert_eq!((page.as_slice(), done), (&expected[12..14], false));
        // Strictly after: a key that is not stored still positions the page.
        let (page, _) = store.load(Some(&key(2, "aa")), 1).unwrap();
        assert_eq!(page[0].key, key(2, "ab"));
    }

    #[test]
    fn overwrites_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        store
            .commit(&[batch(
                1,
                vec![put(1, "a", "v1"), put(1, "b", "v1"), put(1, "c", "v1")],
                vec![],
                &[],
            )])
            .unwrap();
        store
            .commit(&[batch(
                2,
                vec![put(1, "a", "v2"), put(1, "d", "v2")],
                vec![key(1, "b"), key(9, "absent")],
                &[],
            )])
            .unwrap();
        assert_eq!(
            load_all(&store, 10),
            vec![put(1, "a", "v2"), put(1, "c", "v1"), put(1, "d", "v2")]
        );
        // Within a batch deletes come after puts; across batches, later batches win.
        store
            .commit(&[
                batch(
                    3,
                    vec![put(1, "e", "v3")],
                    vec![key(1, "e"), key(1, "a")],
                    &[],
                ),
                batch(4, vec![put(1, "a", "v4")], vec![], &[]),
            ])
            .unwrap();
        assert_eq!(
            load_all(&store, 10),
            vec![put(1, "a", "v4"), put(1, "c", "v1"), put(1, "d", "v2")]
        );
    }

    #[test]
    fn reopen_sees_every_commit_and_audit_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut expected = Vec::new();
        {
            let store = RedbStore::open(dir.path()).unwrap();
            for seq in 0..20u64 {
                let record = put(4, &format!("{seq:03}"), &"x".repeat(seq as usize * 100));
                expected.push(record.clone());
                store
                    .commit(&[batch(
                        seq,
                        vec![record],
                        vec![],
                        &[&format!("{{\"seq\":{seq}}}")],
                    )])
                    .unwrap();
            }
        }
        let store = RedbStore::open(dir.path()).unwrap();
        assert_eq!(load_all(&store, 3), expected);
        let audit = std::fs::read_to_string(dir.path().join(AUDIT_FILE)).unwrap();
        let lines: Vec<String> = (0..20).map(|seq| format!("{{\"seq\":{seq}}}")).collect();
        assert_eq!(audit, lines.join("\n") + "\n");
    }

    #[test]
    fn audit_lines_are_appended_in_batch_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        store
            .commit(&[
                batch(1, vec![], vec![], &["a1", "a2"]),
                batch(2, vec![], vec![], &[]),
                batch(3, vec![], vec![], &["c1", ""]),
            ])
            .unwrap();
        store.commit(&[batch(4, vec![], vec![], &["d1"])]).unwrap();
        let audit = std::fs::read(dir.path().join(AUDIT_FILE)).unwrap();
        assert_eq!(audit, b"a1\na2\nc1\n\nd1\n");
    }

    #[test]
    fn an_audit_line_with_a_newline_fails_the_whole_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        let err = store
            .commit(&[
                batch(1, vec![put(1, "a", "v")], vec![], &["ok"]),
                batch(2, vec![], vec![], &["fine", "two\nlines"]),
            ])
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::AuditLineHasNewline { seq: 2, index: 1 }
        ));
        assert_eq!(load_all(&store, 10), vec![]);
        assert_eq!(std::fs::read(dir.path().join(AUDIT_FILE)).unwrap(), b"");
    }

    /// A store whose checkpoints run only when a test asks.
    fn open_manual(dir: &Path) -> RedbStore {
        RedbStore::open_tuned(
            dir,
            Tuning {
                interval: Duration::from_secs(3600),
                ..Tuning::DEFAULT
            },
            AuditSettings::default(),
        )
        .unwrap()
    }

    /// Where each journal's entries end, by file name.
    fn journal_lens(store: &RedbStore) -> [u64; 2] {
        let state = store.shared.state.lock().unwrap();
        let mut lens = [0; 2];
        for journal in [&state.active, &state.standby] {
            let index = JOURNAL_FILES
                .iter()
                .position(|name| journal.path.ends_with(name))
                .unwrap();
            lens[index] = journal.len;
        }
        lens
    }

    /// What redb itself holds, without the records waiting in memory.
    fn in_redb(store: &RedbStore) -> Vec<Record> {
        let txn = store.shared.db.begin_read().unwrap();
        let table = txn.open_table(RECORDS).unwrap();
        table
            .range::<(u8, &[u8])>(..)
            .unwrap()
            .map(|e| {
                let (k, v) = e.unwrap();
                let (kind, id) = k.value();
                Record {
                    key: RecordKey {
                        kind,
                        id: id.to_vec(),
                    },
                    sealed: v.value().to_vec(),
                }
            })
            .collect()
    }

    /// Once an audit append failed, the file's tail is unknown: every commit is refused,
    /// whole, until the store is reopened, which restores the acknowledged lines from the
    /// journal.
    #[test]
    fn a_failed_audit_append_is_restored_at_reopen_and_refuses_commits_until_then() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_manual(dir.path());
        store
            .commit(&[batch(1, vec![put(1, "keep", "v1")], vec![], &["one"])])
            .unwrap();
        // A read-only handle makes the append fail after the durable journal write.
        {
            let mut state = store.shared.state.lock().unwrap();
            state.audit.file = File::open(&state.audit.path).unwrap();
        }
        store
            .commit(&[batch(2, vec![put(1, "new", "v2")], vec![], &["two"])])
            .unwrap();
        let err = store
            .commit(&[batch(3, vec![put(1, "later", "v3")], vec![], &["three"])])
            .unwrap_err();
        assert!(matches!(err, StoreError::Poisoned { .. }), "{err}");
        // Nor does a checkpoint empty the journal that holds the lost line.
        checkpoint(&store.shared).unwrap();
        assert!(journal_lens(&store)[0] > 0);
        assert!(matches!(
            store.load(None, 10),
            Err(StoreError::Poisoned { .. })
        ));
        drop(store);

        let store = open_manual(dir.path());
        assert_eq!(
            load_all(&store, 10),
            vec![put(1, "keep", "v1"), put(1, "new", "v2")]
        );
        assert_eq!(
            std::fs::read(dir.path().join(AUDIT_FILE)).unwrap(),
            b"one\ntwo\n"
        );
        store
            .commit(&[batch(4, vec![], vec![], &["four"])])
            .unwrap();
        assert_eq!(
            std::fs::read(dir.path().join(AUDIT_FILE)).unwrap(),
            b"one\ntwo\nfour\n"
        );
    }

    /// A crash before the audit log's sync: the lines are in the journal, and the next open
    /// puts back what the file lost.
    #[test]
    fn acknowledged_lines_lost_from_the_file_come_back_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open_manual(dir.path());
            store
                .commit(&[batch(1, vec![], vec![], &["a", "b"])])
                .unwrap();
            store.commit(&[batch(2, vec![], vec![], &["c"])]).unwrap();
        }
        // Lose the unsynced tail: the file as if only "a" had reached the disk.
        std::fs::write(dir.path().join(AUDIT_FILE), b"a\n").unwrap();
        drop(open_manual(dir.path()));
        assert_eq!(
            std::fs::read(dir.path().join(AUDIT_FILE)).unwrap(),
            b"a\nb\nc\n"
        );
        // Replayed and emptied: a second open has nothing to add.
        let store = open_manual(dir.path());
        assert_eq!(journal_lens(&store), [0, 0]);
        drop(store);
        assert_eq!(
            std::fs::read(dir.path().join(AUDIT_FILE)).unwrap(),
            b"a\nb\nc\n"
        );
    }

    /// A commit is durable in the journal; redb gets its records at the checkpoint, which
    /// empties the journal while commits go on in the other one.
    #[test]
    fn a_checkpoint_moves_records_to_redb_and_empties_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_manual(dir.path());
        store
            .commit(&[batch(
                1,
                vec![put(1, "a", "v1"), put(1, "b", "v1")],
                vec![],
                &["x"],
            )])
            .unwrap();
        store
            .commit(&[batch(2, vec![put(1, "a", "v2")], vec![key(1, "b")], &["y"])])
            .unwrap();
        assert_eq!(in_redb(&store), vec![]);
        let [first, second] = journal_lens(&store);
        assert!(first > 0 && second == 0, "{first} {second}");

        checkpoint(&store.shared).unwrap();
        assert_eq!(in_redb(&store), vec![put(1, "a", "v2")]);
        assert_eq!(journal_lens(&store), [0, 0]);
        store
            .commit(&[batch(3, vec![put(1, "c", "v3")], vec![], &["z"])])
            .unwrap();
        let [first, second] = journal_lens(&store);
        assert!(first == 0 && second > 0, "{first} {second}");
        // `load` sees the waiting record: it checkpoints first.
        assert_eq!(
            load_all(&store, 10),
            vec![put(1, "a", "v2"), put(1, "c", "v3")]
        );
        assert_eq!(journal_lens(&store), [0, 0]);
        assert_eq!(
            std::fs::read(dir.path().join(AUDIT_FILE)).unwrap(),
            b"x\ny\nz\n"
        );
    }

    /// A crash at any point leaves the journals in a state that replays to every acknowledged
    /// commit: here, redb is behind (no checkpoint ran) and the audit file lost its tail.
    #[test]
    fn unapplied_commits_are_replayed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open_manual(dir.path());
            store
                .commit(&[batch(
                    1,
                    vec![put(1, "a", "v1"), put(1, "b", "v1")],
                    vec![],
                    &[],
                )])
                .unwrap();
            checkpoint(&store.shared).unwrap();
            store
                .commit(&[
                    batch(2, vec![put(1, "a", "v2")], vec![key(1, "b")], &["l2"]),
                    batch(3, vec![put(1, "b", "v3")], vec![], &[]),
                ])
                .unwrap();
            store
                .commit(&[batch(4, vec![], vec![key(1, "a")], &["l4"])])
                .unwrap();
        }
        std::fs::write(dir.path().join(AUDIT_FILE), b"").unwrap();
        let store = open_manual(dir.path());
        assert_eq!(in_redb(&store), vec![put(1, "b", "v3")]);
        assert_eq!(
            std::fs::read(dir.path().join(AUDIT_FILE)).unwrap(),
            b"l2\nl4\n"
        );
    }

    /// A crash after a checkpoint applied a journal but before it was emptied leaves entries in
    /// both journals: they replay oldest first, whichever file holds them.
    #[test]
    fn both_journals_replay_in_generation_order() {
        let dir = tempfile::tempdir().unwrap();
        let saved = {
            let store = open_manual(dir.path());
            store
                .commit(&[batch(1, vec![put(1, "k", "v1")], vec![], &["1"])])
                .unwrap();
            checkpoint(&store.shared).unwrap(); // commits now go to journal.1
            store
                .commit(&[batch(2, vec![put(1, "k", "v2")], vec![], &["2"])])
                .unwrap();
            let saved = std::fs::read(dir.path().join(JOURNAL_FILES[1])).unwrap();
            checkpoint(&store.shared).unwrap(); // back to journal.0
            store
                .commit(&[batch(3, vec![put(1, "k", "v3")], vec![], &["3"])])
                .unwrap();
            saved
        };
        // journal.1's emptying "lost in the crash": its older entry is back.
        std::fs::write(dir.path().join(JOURNAL_FILES[1]), saved).unwrap();
        let store = open_manual(dir.path());
        assert_eq!(load_all(&store, 10), vec![put(1, "k", "v3")]);
        assert_eq!(
            std::fs::read(dir.path().join(AUDIT_FILE)).unwrap(),
            b"1\n2\n3\n"
        );
    }

    /// A journal is reused from its start, so an earlier round's entries can follow this
    /// round's, whole and at an entry boundary: they are not replayed.
    #[test]
    fn an_earlier_rounds_entries_are_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open_manual(dir.path());
            store
                .commit(&[batch(1, vec![put(1, "k", "v0")], vec![], &["0"])])
                .unwrap();
            store
                .commit(&[batch(2, vec![], vec![key(1, "k")], &["1"])])
                .unwrap();
            checkpoint(&store.shared).unwrap();
            store
                .commit(&[batch(3, vec![put(1, "k", "v2")], vec![], &["2"])])
                .unwrap();
            checkpoint(&store.shared).unwrap();
            // Back in journal.0, with an entry as long as the first: the second (the delete)
            // follows it.
            store
                .commit(&[batch(4, vec![put(1, "k", "v3")], vec![], &["3"])])
                .unwrap();
        }
        let store = open_manual(dir.path());
        assert_eq!(load_all(&store, 10), vec![put(1, "k", "v3")]);
        assert_eq!(
            std::fs::read(dir.path().join(AUDIT_FILE)).unwrap(),
            b"0\n1\n2\n3\n"
        );
    }

    /// A torn last entry (the crash came during the append: never acknowledged) is cut off,
    /// and the store goes on.
    #[test]
    fn a_torn_journal_entry_is_cut_off_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let tail = {
            let store = open_manual(dir.path());
            store
                .commit(&[batch(1, vec![put(1, "a", "v1")], vec![], &["one"])])
                .unwrap();
            store
                .commit(&[batch(2, vec![put(1, "b", "v2")], vec![], &["two"])])
                .unwrap();
            journal_lens(&store)[0]
        };
        // Each entry takes one block; the second's end never reached the disk.
        assert_eq!(tail, 2 * journal::BLOCK as u64);
        let path = dir.path().join(JOURNAL_FILES[0]);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[journal::BLOCK + 40..2 * journal::BLOCK].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        std::fs::write(dir.path().join(AUDIT_FILE), b"").unwrap();
        let store = open_manual(dir.path());
        assert_eq!(load_all(&store, 10), vec![put(1, "a", "v1")]);
        assert_eq!(
            std::fs::read(dir.path().join(AUDIT_FILE)).unwrap(),
            b"one\n"
        );
        store
            .commit(&[batch(3, vec![put(1, "c", "v3")], vec![], &["three"])])
            .unwrap();
        drop(store);
        let store = open_manual(dir.path());
        assert_eq!(
            load_all(&store, 10),
            vec![put(1, "a", "v1"), put(1, "c", "v3")]
        );
    }

    /// Found by fuzzing (fuzz/fuzz_targets/journal.rs, fuzz/regressions/journal/): an entry
    /// whose audit offset is near `u64::MAX` made the replay's `offset + len` overflow (a
    /// panic at open in debug builds; in release, the lines were taken as already written).
    /// Its lines are appended, as for any offset past the end of the audit log.
    #[test]
    fn an_audit_offset_past_any_file_is_appended_at_replay() {
        let dir = tempfile::tempdir().unwrap();
        let entry = journal::encode(0, u64::MAX - 1, &[batch(1, vec![], vec![], &["a"])]).unwrap();
        std::fs::write(dir.path().join(JOURNAL_FILES[0]), entry.entry.bytes()).unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        drop(store);
        assert_eq!(std::fs::read(dir.path().join(AUDIT_FILE)).unwrap(), b"a\n");
    }

    /// A full journal wakes the checkpoint thread, and a commit waits for it to switch
    /// journals; with no checkpoint coming, the wait is bounded.
    #[test]
    fn a_full_journal_waits_for_a_checkpoint_boundedly() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open_tuned(
            dir.path(),
            Tuning {
                interval: Duration::from_secs(3600),
                checkpoint_bytes: 1,
                max_bytes: 1,
                wait: Duration::from_secs(30),
                direct: true,
            },
            AuditSettings::default(),
        )
        .unwrap();
        for i in 0..20 {
            store
                .commit(&[batch(
                    i,
                    vec![put(1, &format!("{i:02}"), "v")],
                    vec![],
                    &["l"],
                )])
                .unwrap();
        }
        assert_eq!(load_all(&store, 100).len(), 20);
        drop(store);

        // A checkpoint that cannot run (its lock is held here): the second commit fails after
        // the wait, and goes through once checkpoints can run again.
        let store = RedbStore::open_tuned(
            dir.path(),
            Tuning {
                interval: Duration::from_secs(3600),
                checkpoint_bytes: u64::MAX,
                max_bytes: 1,
                wait: Duration::from_millis(100),
                direct: true,
            },
            AuditSettings::default(),
        )
        .unwrap();
        store.commit(&[batch(30, vec![], vec![], &["a"])]).unwrap();
        {
            let _blocked = store.shared.checkpointing.lock().unwrap();
            let err = store
                .commit(&[batch(31, vec![], vec![], &["b"])])
                .unwrap_err();
            assert!(matches!(err, StoreError::JournalFull { .. }), "{err}");
        }
        store.commit(&[batch(32, vec![], vec![], &["c"])]).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join(AUDIT_FILE)).unwrap(),
            b"l\n"
                .repeat(20)
                .into_iter()
                .chain(b"a\nc\n".iter().copied())
                .collect::<Vec<u8>>()
        );
    }

    /// Without O_DIRECT (a file system that refuses it) the journal writes through the page
    /// cache and syncs; commits, checkpoints and replay work the same.
    #[test]
    fn a_journal_without_direct_io_works_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let tuning = Tuning {
            interval: Duration::from_secs(3600),
            direct: false,
            ..Tuning::DEFAULT
        };
        let store = RedbStore::open_tuned(dir.path(), tuning, AuditSettings::default()).unwrap();
        assert!(!store.shared.state.lock().unwrap().active.direct);
        store
            .commit(&[batch(1, vec![put(1, "a", "v1")], vec![], &["one"])])
            .unwrap();
        checkpoint(&store.shared).unwrap();
        store
            .commit(&[batch(2, vec![put(1, "b", "v2")], vec![], &["two"])])
            .unwrap();
        drop(store);
        std::fs::write(dir.path().join(AUDIT_FILE), b"").unwrap();
        let store = RedbStore::open_tuned(dir.path(), tuning, AuditSettings::default()).unwrap();
        assert_eq!(
            load_all(&store, 10),
            vec![put(1, "a", "v1"), put(1, "b", "v2")]
        );
        assert_eq!(
            std::fs::read(dir.path().join(AUDIT_FILE)).unwrap(),
            b"two\n"
        );
    }

    /// A store written by an earlier version kept unsynced lines in redb: they come back at
    /// open, and the table is gone.
    #[test]
    fn lines_kept_in_redb_by_an_earlier_version_are_restored() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Database::create(dir.path().join(DB_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut table = txn.open_table(LEGACY_AUDIT_PENDING).unwrap();
                table.insert(0u64, b"a\nb\n".as_slice()).unwrap();
                table.insert(4u64, b"c\n".as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        std::fs::write(dir.path().join(AUDIT_FILE), b"a\n").unwrap();
        let store = open_manual(dir.path());
        assert_eq!(
            std::fs::read(dir.path().join(AUDIT_FILE)).unwrap(),
            b"a\nb\nc\n"
        );
        let txn = store.shared.db.begin_read().unwrap();
        assert!(matches!(
            txn.open_table(LEGACY_AUDIT_PENDING),
            Err(TableError::TableDoesNotExist(_))
        ));
    }

    #[test]
    fn a_torn_audit_line_is_cut_off_at_open() {
        let dir = tempfile::tempdir().unwrap();
        drop(open_manual(dir.path()));
        let path = dir.path().join(AUDIT_FILE);
        std::fs::write(&path, b"whole\nalso whole\ntor").unwrap();
        let store = open_manual(dir.path());
        assert_eq!(std::fs::read(&path).unwrap(), b"whole\nalso whole\n");
        store
            .commit(&[batch(1, vec![], vec![], &["next"])])
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"whole\nalso whole\nnext\n");

        // No newline at all: everything is torn; the acknowledged line still in the journal
        // ("next": no checkpoint ran) comes back.
        drop(store);
        std::fs::write(&path, vec![b'x'; 200_000]).unwrap();
        drop(open_manual(dir.path()));
        assert_eq!(std::fs::read(&path).unwrap(), b"next\n");
    }

    /// Every line of the audit log in `dir`, across its files in order.
    fn all_audit_lines(dir: &Path) -> (Vec<String>, Vec<String>) {
        let files = crate::store::audit_files::list(dir).unwrap();
        let mut text = String::new();
        for file in &files {
            std::io::Read::read_to_string(
                &mut crate::store::audit_files::open(file).unwrap(),
                &mut text,
            )
            .unwrap();
        }
        (
            text.lines().map(str::to_owned).collect(),
            files.iter().map(|f| f.name()).collect(),
        )
    }

    /// Rotation by size: between commits, each rotated file compressed by the checkpointer,
    /// the log read across files whole; a replay after rotations (the lines still in the
    /// journal) adds nothing twice, and a reopen continues at the right offset.
    #[test]
    fn the_audit_log_rotates_between_commits_and_replays_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let settings = AuditSettings {
            max_bytes: Some(10),
            max_age: None,
            min_free_bytes: 0,
        };
        let tuning = Tuning {
            interval: Duration::from_secs(3600),
            ..Tuning::DEFAULT
        };
        let expected: Vec<String> = (0..8).map(|i| format!("line-{i}")).collect();
        {
            let store = RedbStore::open_tuned(dir.path(), tuning, settings).unwrap();
            for (i, pair) in expected.chunks(2).enumerate() {
                let pair: Vec<&str> = pair.iter().map(String::as_str).collect();
                store
                    .commit(&[batch(i as u64, vec![], vec![], &pair)])
                    .unwrap();
            }
            // No checkpoint ran: the journal holds every line, and no file is compressed yet.
            compress_rotated(&store.shared);
        }
        let (lines, names) = all_audit_lines(dir.path());
        assert_eq!(lines, expected);
        assert_eq!(
            names,
            [
                "audit-00000000000000000000.jsonl.gz",
                "audit-00000000000000000014.jsonl.gz",
                "audit-00000000000000000028.jsonl.gz",
                "audit-00000000000000000042.jsonl.gz",
                "audit.jsonl"
            ]
        );
        // Reopen: the journal replays (its lines are all in rotated files) and the log goes on.
        let store = RedbStore::open_tuned(dir.path(), tuning, settings).unwrap();
        assert_eq!(store.shared.state.lock().unwrap().audit.end(), 56);
        store
            .commit(&[batch(9, vec![], vec![], &["after"])])
            .unwrap();
        drop(store);
        let (lines, _) = all_audit_lines(dir.path());
        assert_eq!(lines.len(), 9);
        assert_eq!(lines[8], "after");
    }

    /// Rotation by age with no commit after the one that started the file: the checkpointer
    /// rotates the idle log (and compresses it), so a quiet deployment's records still reach a
    /// rotated file within `--audit-max-age`.
    #[test]
    fn an_idle_audit_log_rotates_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let settings = AuditSettings {
            max_bytes: None,
            max_age: Some(Duration::from_millis(300)),
            min_free_bytes: 0,
        };
        let tuning = Tuning {
            interval: Duration::from_millis(50),
            ..Tuning::DEFAULT
        };
        let store = RedbStore::open_tuned(dir.path(), tuning, settings).unwrap();
        store
            .commit(&[batch(1, vec![], vec![], &["quiet"])])
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let names = loop {
            let (lines, names) = all_audit_lines(dir.path());
            if names.iter().any(|n| n.ends_with(".jsonl.gz")) {
                assert_eq!(lines, ["quiet"]);
                break names;
            }
            assert!(Instant::now() < deadline, "not rotated: {names:?}");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(
            names,
            ["audit-00000000000000000000.jsonl.gz", "audit.jsonl"]
        );
        // An empty log is never rotated, however old.
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(all_audit_lines(dir.path()).1, names);
    }

    /// A parent that stopped between a rotation and its compression, or in the middle of the
    /// compression: the plain file is compressed (or its whole `.gz` kept) after the next open.
    #[test]
    fn an_interrupted_compression_is_finished_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let settings = AuditSettings {
            max_bytes: Some(1),
            max_age: None,
            min_free_bytes: 0,
        };
        {
            let store = open_with_manual(dir.path(), settings);
            store.commit(&[batch(1, vec![], vec![], &["a"])]).unwrap();
            store.commit(&[batch(2, vec![], vec![], &["b"])]).unwrap();
            compress_rotated(&store.shared);
        }
        // Stopped before compressing the first rotated file (plain, and a partial `.tmp`), and
        // before removing the second's plain file once its `.gz` was in place.
        let first = dir.path().join("audit-00000000000000000000.jsonl");
        std::fs::remove_file(first.with_extension("jsonl.gz")).unwrap();
        std::fs::write(&first, b"a\n").unwrap();
        std::fs::write(first.with_extension("jsonl.gz.tmp"), b"partial").unwrap();
        std::fs::write(dir.path().join("audit-00000000000000000002.jsonl"), b"b\n").unwrap();
        let store = open_with_manual(dir.path(), settings);
        assert_eq!(store.shared.state.lock().unwrap().to_compress, [first]);
        compress_rotated(&store.shared);
        drop(store);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("audit"))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(
            names,
            [
                "audit-00000000000000000000.jsonl.gz",
                "audit-00000000000000000002.jsonl.gz",
                "audit.jsonl"
            ]
        );
        assert_eq!(all_audit_lines(dir.path()).0, ["a", "b"]);
    }

    /// Below the free-space reserve a commit is refused before anything is written: nothing
    /// reaches the journal or the audit log, and the store is not poisoned.
    #[test]
    fn a_commit_is_refused_whole_below_the_free_space_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let settings = AuditSettings {
            min_free_bytes: u64::MAX,
            ..AuditSettings::default()
        };
        let store = open_with_manual(dir.path(), settings);
        assert!(store.audit_disk_free_bytes().unwrap() > 0);
        let err = store
            .commit(&[batch(1, vec![put(1, "a", "v")], vec![], &["x"])])
            .unwrap_err();
        assert!(matches!(err, StoreError::AuditDiskFull { .. }), "{err}");
        assert_eq!(journal_lens(&store), [0, 0]);
        assert!(store.shared.state.lock().unwrap().poisoned.is_none());
        assert_eq!(std::fs::read(dir.path().join(AUDIT_FILE)).unwrap(), b"");
    }

    fn open_with_manual(dir: &Path, settings: AuditSettings) -> RedbStore {
        RedbStore::open_tuned(
            dir,
            Tuning {
                interval: Duration::from_secs(3600),
                ..Tuning::DEFAULT
            },
            settings,
        )
        .unwrap()
    }

    #[test]
    fn a_second_open_of_the_same_directory_fails() {
        let dir = tempfile::tempdir().unwrap();
        let _store = open_manual(dir.path());
        assert!(matches!(
            RedbStore::open(dir.path()),
            Err(StoreError::Redb { .. })
        ));
    }
}
