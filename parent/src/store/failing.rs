//! [`FailingStore`]: a store whose commits fail on purpose, for fault-injection tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ekms_shared::wire::v1::{Record, RecordKey};

use super::{CommitBatch, Fetched, Store, StoreError};

/// Passes the first `ok_commits` commit calls (and every load) to an inner store, then fails
/// every commit with [`StoreError::Injected`] without touching the inner store.
///
/// Honest about atomicity: a failed commit applied nothing, because it never reached the
/// inner store.
pub struct FailingStore {
    inner: Arc<dyn Store>,
    ok_commits: u64,
    calls: AtomicU64,
}

impl std::fmt::Debug for FailingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailingStore")
            .field("ok_commits", &self.ok_commits)
            .field("calls", &self.calls.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl FailingStore {
    /// Fails every commit; loads read `inner`.
    pub fn always(inner: Arc<dyn Store>) -> Self {
        Self::after(0, inner)
    }

    /// Passes the first `ok_commits` commit calls to `inner`, then fails every one.
    pub fn after(ok_commits: u64, inner: Arc<dyn Store>) -> Self {
        FailingStore {
            inner,
            ok_commits,
            calls: AtomicU64::new(0),
        }
    }

    /// Commit calls so far, passed or failed.
    pub fn commit_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

impl Store for FailingStore {
    fn commit(&self, batches: &[CommitBatch]) -> Result<(), StoreError> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if call > self.ok_commits {
            return Err(StoreError::Injected { call });
        }
        self.inner.commit(batches)
    }

    fn load(
        &self,
        after: Option<&RecordKey>,
        limit: usize,
    ) -> Result<(Vec<Record>, bool), StoreError> {
        self.inner.load(after, limit)
    }

    fn fetch(&self, at: Option<u64>, keys: &[RecordKey]) -> Result<Fetched, StoreError> {
        self.inner.fetch(at, keys)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::RedbStore;

    #[test]
    fn fails_after_n_commits_and_applies_nothing_then() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path()).unwrap());
        let store = FailingStore::after(1, Arc::clone(&inner));
        let batch = |seq: u64, id: &str| CommitBatch {
            session: None,
            seq,
            base: None,
            puts: vec![Record {
                key: RecordKey {
                    kind: 1,
                    id: id.as_bytes().to_vec(),
                },
                sealed: b"s".to_vec(),
            }],
            deletes: vec![],
            audit: vec![format!("line {seq}").into_bytes()],
        };
        store.commit(&[batch(1, "a")]).unwrap();
        for call in 2..=3 {
            let err = store
                .commit(&[batch(call, "b"), batch(call, "c")])
                .unwrap_err();
            assert!(matches!(err, StoreError::Injected { call: c } if c == call));
        }
        assert_eq!(store.commit_calls(), 3);
        let (records, done) = store.load(None, 10).unwrap();
        assert!(done);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].key.id, b"a");
        let audit = std::fs::read(dir.path().join("audit.jsonl")).unwrap();
        assert_eq!(audit, b"line 1\n");

        let always = FailingStore::always(inner);
        assert!(always.commit(&[]).is_err());
    }
}
