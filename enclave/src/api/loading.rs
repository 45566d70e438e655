//! What `Ekms.Status` answers while an unseal or a join loads the store.
//!
//! The load runs under the custody lock (nothing else may unseal meanwhile), which a plain
//! status would wait for: a store of a million keys takes seconds to minutes. So the load
//! registers here first, with the status from before it, and `Ekms.Status` answers that plus
//! the number of stored records received so far, without the lock. A count only: the parent
//! that streams the records knows it anyway, and nothing of what they hold is shown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// The load in progress, if any, and a signal when one begins.
#[derive(Default)]
pub(super) struct LoadWatch {
    current: Mutex<Option<InProgress>>,
    began: Notify,
}

struct InProgress {
    /// The status when the load began.
    status: serde_json::Value,
    /// Stored records received so far.
    records: Arc<AtomicU64>,
}

/// Ends the registration when dropped: however the load ends, `Ekms.Status` goes back to the
/// custody state machine.
pub(super) struct Registered<'a> {
    watch: &'a LoadWatch,
    /// Stored records received so far: the load adds to it.
    pub records: Arc<AtomicU64>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        *self
            .watch
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }
}

impl LoadWatch {
    /// Registers a load beginning now, with the status to show meanwhile.
    pub(super) fn begin(&self, status: serde_json::Value) -> Registered<'_> {
        let records = Arc::new(AtomicU64::new(0));
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(InProgress {
            status,
            records: Arc::clone(&records),
        });
        self.began.notify_waiters();
        Registered {
            watch: self,
            records,
        }
    }

    /// The status to answer while a load runs: the one from before it, with
    /// `RecordsLoaded`. `None` when no load runs.
    pub(super) fn status(&self) -> Option<serde_json::Value> {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        current.as_ref().map(|load| {
            let mut status = load.status.clone();
            status["RecordsLoaded"] = load.records.load(Ordering::Relaxed).into();
            status
        })
    }

    /// Resolves when a load begins after this call (`Notify::notify_waiters` wakes every
    /// future made before it, polled or not): made before [`LoadWatch::status`] is asked, no
    /// beginning is missed in between.
    pub(super) fn began(&self) -> Notified<'_> {
        self.began.notified()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The status from before the load, with the records counted so far; gone once the
    /// registration ends, however it ends.
    #[test]
    fn shows_the_count_while_registered() {
        let watch = LoadWatch::default();
        assert!(watch.status().is_none());
        {
            let load = watch.begin(serde_json::json!({ "State": "Sealed", "SharesHeld": 2 }));
            assert_eq!(
                watch.status().unwrap(),
                serde_json::json!({ "State": "Sealed", "SharesHeld": 2, "RecordsLoaded": 0 })
            );
            load.records.fetch_add(4096, Ordering::Relaxed);
            assert_eq!(watch.status().unwrap()["RecordsLoaded"], 4096);
        }
        assert!(watch.status().is_none());
    }

    /// A waiter made before the load begins is woken by it, without having been polled.
    #[tokio::test]
    async fn a_waiter_made_before_a_load_sees_it_begin() {
        let watch = LoadWatch::default();
        let began = watch.began();
        let _load = watch.begin(serde_json::json!({}));
        tokio::time::timeout(std::time::Duration::from_secs(1), began)
            .await
            .unwrap();
    }
}
