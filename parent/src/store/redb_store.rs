//! [`RedbStore`]: sealed records and audit lines committed together in one redb transaction
//! (one fsync per group commit), the audit lines then appended to an append-only file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use ekms_shared::wire::v1::{Record, RecordKey};
use redb::{Database, Durability, TableDefinition};

use super::{validate_batch, CommitBatch, Store, StoreError};

/// The records file inside the data directory.
pub const DB_FILE: &str = "store.redb";

/// The audit log inside the data directory: one opaque line per audit entry.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// (kind, id) → sealed bytes. redb orders tuple keys field by field and byte slices
/// lexicographically, which is the (kind, id) order `load` pages in.
const RECORDS: TableDefinition<(u8, &[u8]), &[u8]> = TableDefinition::new("records");

/// Audit lines not yet known to be synced in `audit.jsonl`: the file offset where a commit's
/// lines start → those lines (each with its `\n`), one entry per commit. Written in the same
/// transaction as the records, so an acknowledged commit's lines are durable even if the file
/// append is lost in a crash; `open` appends whatever the file lacks.
const AUDIT_PENDING: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_pending");

/// How often the audit file is synced, by a thread of its own, off the commit path (after which
/// its pending lines are dropped from redb by the next commit).
const AUDIT_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The embedded store: `DIR/store.redb` and `DIR/audit.jsonl`.
///
/// A commit is one redb write transaction with [`Durability::Immediate`] (it returns after
/// fsync) holding the records and the audit lines; only then are the lines appended to
/// `audit.jsonl`, which a background thread syncs about once a second. So a group commit costs
/// one fsync, and records and their audit lines are durable together or not at all. A crash can leave the
/// file short of acknowledged lines; [`RedbStore::open`] restores them from redb.
pub struct RedbStore {
    db: Database,
    audit: Arc<Mutex<AuditLog>>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

struct AuditLog {
    file: File,
    path: PathBuf,
    /// The length of the log as far as acknowledged commits go.
    len: u64,
    /// How much of the log is known to be synced.
    synced: u64,
    /// Up to where redb's pending lines have been dropped (never beyond `synced`).
    pruned: u64,
    /// An append failed: the file's tail is unknown until `open` restores it from redb.
    poisoned: bool,
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
    /// Opens (creating if needed) the store in `dir`.
    ///
    /// A torn last audit line (a crash in the middle of an append, which was therefore never
    /// acknowledged) is cut off.
    ///
    /// # Errors
    ///
    /// The directory cannot be created, the database cannot be opened (corrupt, or already
    /// open in another process: redb locks the file), or the audit log cannot be opened or
    /// repaired.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(io_error("cannot create", dir))?;
        let db = Database::create(dir.join(DB_FILE)).map_err(redb_error("open the database"))?;
        let mut txn = db
            .begin_write()
            .map_err(redb_error("begin a transaction"))?;
        txn.set_durability(Durability::Immediate);
        txn.open_table(RECORDS)
            .map_err(redb_error("create the records table"))?;
        txn.open_table(AUDIT_PENDING)
            .map_err(redb_error("create the audit table"))?;
        txn.commit()
            .map_err(redb_error("commit the records table"))?;
        let mut audit = AuditLog::open(dir.join(AUDIT_FILE))?;
        // Lines acknowledged but missing from the file (a crash before the append or the
        // sync): append them from redb, sync, and forget them.
        {
            let txn = db
                .begin_read()
                .map_err(redb_error("begin a read transaction"))?;
            let table = txn
                .open_table(AUDIT_PENDING)
                .map_err(redb_error("open the audit table"))?;
            let mut restored = 0usize;
            for entry in table
                .range::<u64>(..)
                .map_err(redb_error("read the audit table"))?
            {
                let (offset, lines) = entry.map_err(redb_error("read audit lines"))?;
                let (offset, lines) = (offset.value(), lines.value());
                if offset + lines.len() as u64 <= audit.len {
                    continue; // already in the file
                }
                // The file was cut back to whole lines at open, so a commit whose lines reached
                // the file only in part ends at one of its own line boundaries: append the rest.
                let have = usize::try_from(audit.len.saturating_sub(offset)).unwrap_or(0);
                if offset > audit.len {
                    // The file lost more than a crash can explain (it was cut or replaced):
                    // keep what redb holds; `ekms audit verify` will name the gap.
                    tracing::error!(
                        offset,
                        file_len = audit.len,
                        "the audit log is shorter than its acknowledged lines; appending them at its end"
                    );
                }
                let missing = lines.get(have..).unwrap_or_default();
                audit
                    .file
                    .write_all(missing)
                    .map_err(io_error("cannot restore lines to", &audit.path))?;
                audit.len += missing.len() as u64;
                restored += missing.iter().filter(|&&b| b == b'\n').count();
            }
            if restored > 0 {
                tracing::warn!(
                    restored,
                    "restored acknowledged audit lines the file had lost"
                );
            }
        }
        audit
            .file
            .sync_data()
            .map_err(io_error("cannot sync", &audit.path))?;
        audit.synced = audit.len;
        audit.pruned = audit.len;
        {
            let txn = db
                .begin_write()
                .map_err(redb_error("begin a transaction"))?;
            txn.open_table(AUDIT_PENDING)
                .map_err(redb_error("open the audit table"))?
                .retain(|_, _| false)
                .map_err(redb_error("clear the audit table"))?;
            txn.commit().map_err(redb_error("commit"))?;
        }
        // Make the new files' directory entries durable too.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error("cannot sync", dir))?;
        let syncer = audit
            .file
            .try_clone()
            .map_err(io_error("cannot open", &audit.path))?;
        let audit = Arc::new(Mutex::new(audit));
        let weak = Arc::downgrade(&audit);
        std::thread::Builder::new()
            .name("audit-sync".to_owned())
            .spawn(move || sync_audit_log(&weak, &syncer))
            .map_err(io_error("cannot start the audit sync thread for", dir))?;
        Ok(RedbStore { db, audit })
    }

    fn audit_log(&self) -> Result<MutexGuard<'_, AuditLog>, StoreError> {
        // A panic while holding the lock leaves the log's tail unknown, like a failed undo.
        self.audit
            .lock()
            .map_err(|poisoned| StoreError::AuditLogPoisoned {
                path: poisoned.get_ref().path.clone(),
            })
    }
}

impl Store for RedbStore {
    fn commit(&self, batches: &[CommitBatch]) -> Result<(), StoreError> {
        for batch in batches {
            validate_batch(batch)?;
        }
        // Held for the whole commit: one writer at a time, audit lines in commit order.
        let mut audit = self.audit_log()?;
        if audit.poisoned {
            return Err(StoreError::AuditLogPoisoned {
                path: audit.path.clone(),
            });
        }
        let mut txn = self
            .db
            .begin_write()
            .map_err(redb_error("begin a transaction"))?;
        txn.set_durability(Durability::Immediate);
        {
            let mut table = txn
                .open_table(RECORDS)
                .map_err(redb_error("open the records table"))?;
            for batch in batches {
                for put in &batch.puts {
                    table
                        .insert((put.key.kind, put.key.id.as_slice()), put.sealed.as_slice())
                        .map_err(redb_error("insert a record"))?;
                }
                for key in &batch.deletes {
                    table
                        .remove((key.kind, key.id.as_slice()))
                        .map_err(redb_error("remove a record"))?;
                }
            }
        }
        // The group's audit lines go into the same transaction, as one entry at the file
        // offset they will have.
        let size: usize = batches
            .iter()
            .flat_map(|b| &b.audit)
            .map(|line| line.len() + 1)
            .sum();
        let mut buf = Vec::with_capacity(size);
        for line in batches.iter().flat_map(|b| &b.audit) {
            buf.extend_from_slice(line);
            buf.push(b'\n');
        }
        let synced = audit.synced;
        if !buf.is_empty() || synced > audit.pruned {
            let mut pending = txn
                .open_table(AUDIT_PENDING)
                .map_err(redb_error("open the audit table"))?;
            if !buf.is_empty() {
                pending
                    .insert(audit.len, buf.as_slice())
                    .map_err(redb_error("insert audit lines"))?;
            }
            // Lines the file holds synced are no longer needed here. Entries never straddle
            // `synced`: it is always the end of some commit's lines.
            if synced > audit.pruned {
                pending
                    .retain_in(..synced, |_, _| false)
                    .map_err(redb_error("prune the audit table"))?;
            }
        }
        // Dropping `txn` on any error above aborts it: nothing of the group is applied.
        txn.commit().map_err(redb_error("commit"))?;
        // Durable. Now the file; a failure here loses nothing (redb has the lines) but leaves
        // the file's tail unknown, so further commits wait for a reopen to restore it.
        audit.pruned = synced;
        if !buf.is_empty() {
            if let Err(e) = audit.file.write_all(&buf) {
                tracing::error!(path = %audit.path.display(), error = %e, "cannot append to the audit log; refusing further commits until reopened");
                audit.poisoned = true;
                return Ok(());
            }
            audit.len += buf.len() as u64;
        }
        Ok(())
    }

    fn load(
        &self,
        after: Option<&RecordKey>,
        limit: usize,
    ) -> Result<(Vec<Record>, bool), StoreError> {
        let limit = limit.max(1);
        let txn = self
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

impl AuditLog {
    fn open(path: PathBuf) -> Result<Self, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_error("cannot open the audit log", &path))?;
        let len = file
            .metadata()
            .map_err(io_error("cannot stat the audit log", &path))?
            .len();
        let complete = complete_len(&file, len).map_err(io_error("cannot read", &path))?;
        if complete != len {
            tracing::warn!(path = %path.display(), torn = len - complete, "cutting off a torn last audit line");
            file.set_len(complete)
                .and_then(|()| file.sync_all())
                .map_err(io_error("cannot repair the audit log", &path))?;
        }
        Ok(AuditLog {
            file,
            path,
            len: complete,
            synced: 0,
            pruned: 0,
            poisoned: false,
        })
    }
}

/// The audit sync thread: every [`AUDIT_SYNC_INTERVAL`], syncs what the log holds (without the
/// lock, so commits go on meanwhile) and records it as synced. Ends with the store.
fn sync_audit_log(audit: &Weak<Mutex<AuditLog>>, file: &File) {
    loop {
        std::thread::sleep(AUDIT_SYNC_INTERVAL);
        let Some(shared) = audit.upgrade() else {
            return;
        };
        let state = match shared.lock() {
            Ok(log) if !log.poisoned => Some((log.len, log.synced, log.path.clone())),
            _ => None,
        };
        drop(shared);
        let Some((len, synced, path)) = state else {
            continue;
        };
        if len == synced {
            continue;
        }
        if let Err(e) = file.sync_data() {
            tracing::error!(path = %path.display(), error = %e, "cannot sync the audit log");
            continue;
        }
        let Some(shared) = audit.upgrade() else {
            return;
        };
        let mut log = match shared.lock() {
            Ok(log) => log,
            Err(_) => return,
        };
        // Everything appended before the sync started is on disk now.
        log.synced = log.synced.max(len);
    }
}

/// The length of `file` up to and including its last `\n` (0 if it has none).
fn complete_len(file: &File, len: u64) -> std::io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let mut end = len;
    let mut buf = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
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
            seq,
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

    /// Once an audit append failed, the file's tail is unknown: every commit is refused,
    /// whole, until the store is reopened, which restores the acknowledged lines from redb.
    #[test]
    fn a_failed_audit_append_is_restored_at_reopen_and_refuses_commits_until_then() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        store
            .commit(&[batch(1, vec![put(1, "keep", "v1")], vec![], &["one"])])
            .unwrap();
        // A read-only handle makes the append fail after the durable commit.
        {
            let mut audit = store.audit.lock().unwrap();
            audit.file = File::open(&audit.path).unwrap();
        }
        store
            .commit(&[batch(2, vec![put(1, "new", "v2")], vec![], &["two"])])
            .unwrap();
        let err = store
            .commit(&[batch(3, vec![put(1, "later", "v3")], vec![], &["three"])])
            .unwrap_err();
        assert!(matches!(err, StoreError::AuditLogPoisoned { .. }), "{err}");
        assert_eq!(
            load_all(&store, 10),
            vec![put(1, "keep", "v1"), put(1, "new", "v2")]
        );
        drop(store);

        let store = RedbStore::open(dir.path()).unwrap();
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

    /// A crash after the durable commit but before the append: the lines are in redb only,
    /// and the next open puts them in the file.
    #[test]
    fn acknowledged_lines_lost_from_the_file_come_back_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = RedbStore::open(dir.path()).unwrap();
            store
                .commit(&[batch(1, vec![], vec![], &["a", "b"])])
                .unwrap();
            store.commit(&[batch(2, vec![], vec![], &["c"])]).unwrap();
        }
        // Lose the unsynced tail: the file as if only "a" had reached the disk.
        std::fs::write(dir.path().join(AUDIT_FILE), b"a\n").unwrap();
        drop(RedbStore::open(dir.path()).unwrap());
        assert_eq!(
            std::fs::read(dir.path().join(AUDIT_FILE)).unwrap(),
            b"a\nb\nc\n"
        );
    }

    fn pending_offsets(store: &RedbStore) -> Vec<u64> {
        let txn = store.db.begin_read().unwrap();
        let table = txn.open_table(AUDIT_PENDING).unwrap();
        table
            .range::<u64>(..)
            .unwrap()
            .map(|e| e.unwrap().0.value())
            .collect()
    }

    /// Each commit adds one pending entry; once the sync thread has synced the file, the next
    /// commit drops the synced entries.
    #[test]
    fn synced_audit_lines_leave_redb_at_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        store
            .commit(&[batch(1, vec![], vec![], &["a", "b"])])
            .unwrap();
        store.commit(&[batch(2, vec![], vec![], &["c"])]).unwrap();
        assert_eq!(pending_offsets(&store), vec![0, 4]);
        let deadline = std::time::Instant::now() + AUDIT_SYNC_INTERVAL * 10;
        while store.audit.lock().unwrap().synced < 6 {
            assert!(std::time::Instant::now() < deadline, "never synced");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        store.commit(&[batch(3, vec![], vec![], &["d"])]).unwrap();
        assert_eq!(pending_offsets(&store), vec![6]);
        assert_eq!(
            std::fs::read(dir.path().join(AUDIT_FILE)).unwrap(),
            b"a\nb\nc\nd\n"
        );
    }

    #[test]
    fn a_torn_audit_line_is_cut_off_at_open() {
        let dir = tempfile::tempdir().unwrap();
        drop(RedbStore::open(dir.path()).unwrap());
        let path = dir.path().join(AUDIT_FILE);
        std::fs::write(&path, b"whole\nalso whole\ntor").unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"whole\nalso whole\n");
        store
            .commit(&[batch(1, vec![], vec![], &["next"])])
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"whole\nalso whole\nnext\n");

        // No newline at all: everything is torn; the acknowledged line still held in redb
        // ("next", not yet synced when the store closed) comes back.
        drop(store);
        std::fs::write(&path, vec![b'x'; 200_000]).unwrap();
        drop(RedbStore::open(dir.path()).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"next\n");
    }

    #[test]
    fn a_second_open_of_the_same_directory_fails() {
        let dir = tempfile::tempdir().unwrap();
        let _store = RedbStore::open(dir.path()).unwrap();
        assert!(matches!(
            RedbStore::open(dir.path()),
            Err(StoreError::Redb { .. })
        ));
    }
}
