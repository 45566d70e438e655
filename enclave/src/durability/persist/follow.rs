//! Following a shared store: a member polls the store's head on a store channel of its own,
//! and when another member committed, reads what changed and takes it ([`super::catch_up`]),
//! or, when that cannot be done, loads the newer state whole, verifies it as an unseal does, and
//! adopts it ([`Persister::adopt`]). [`Freshness`] is when the member last knew its state to be
//! the store's: a member that has not known it for [`FRESHNESS`] refuses to answer
//! (`DependencyTimeoutException`) rather than serve authorization that may be stale.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};

use ekms_shared::wire::v1::{self, Request, Response};

use super::catch_up::{catch_up, Fallback};
use super::{load, Newer, NotAdopted, PersistError, Persister};
use crate::durability::seal::{DomainKey, NameKey};
use crate::error::KmsError;

/// How often a member asks for the store's head.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How long a member answers after it last knew its state to be the store's: a change another
/// member acknowledged is enforced here within this bound, or this member refuses.
pub const FRESHNESS: Duration = Duration::from_secs(1);

/// When this member last knew its state to be the store's (the moment it asked, not the moment
/// it heard: the store's answer may have been delayed).
#[derive(Debug, Default)]
pub struct Freshness {
    confirmed: Mutex<Option<Instant>>,
}

impl Freshness {
    /// The state was the store's as of `asked`.
    pub fn confirm(&self, asked: Instant) {
        let mut confirmed = self
            .confirmed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if confirmed.is_none_or(|c| c < asked) {
            *confirmed = Some(asked);
        }
    }

    /// The state is no longer known to be the store's (a member recovering).
    pub fn reset(&self) {
        *self
            .confirmed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// Whether requests may be answered at `now`.
    ///
    /// # Errors
    /// `DependencyTimeoutException` when the state was last known current more than
    /// [`FRESHNESS`] ago (or never).
    pub fn check(&self, now: Instant) -> Result<(), KmsError> {
        let confirmed = *self
            .confirmed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match confirmed {
            Some(at) if now.saturating_duration_since(at) <= FRESHNESS => Ok(()),
            _ => Err(KmsError::DependencyTimeout(
                "The service could not confirm its state with the shared store in time. Retry \
                 the request."
                    .to_owned(),
            )),
        }
    }
}

/// Polls the store's head on `stream` every [`POLL_INTERVAL`] and adopts newer states, until
/// the channel or the store fails. Confirms `freshness` each time the state is the store's.
///
/// # Errors
/// [`PersistError`] when the channel breaks or the store failed: the session is then over.
pub async fn follow<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    persister: Persister,
    domain: Arc<DomainKey>,
    config: Arc<crate::config::Config>,
    freshness: Arc<Freshness>,
) -> Result<(), PersistError> {
    #[allow(clippy::disallowed_methods)] // the follower is the shell: it reads the clock
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    let names = NameKey::of(&domain);
    loop {
        tick.tick().await;
        #[allow(clippy::disallowed_methods)]
        let asked = Instant::now();
        // Asked with nothing in flight: a head equal to the base is this member's own state.
        let (base, head) = persister
            .quiet_base(|base| {
                let stream = &mut stream;
                async move { (base, store_head(stream).await) }
            })
            .await?;
        let head = match head? {
            Ok(head) => head,
            Err(message) => {
                // The store could not be read (etcd unreachable, say): not fresh.
                tracing::warn!(%message, "the store's head could not be read");
                continue;
            }
        };
        let Some(head) = head else {
            if !warned {
                tracing::error!(
                    "this member's store does not track a head (the embedded store has one \
                     writer): members need a shared store (etcd); refusing requests"
                );
                warned = true;
            }
            continue;
        };
        if head == base {
            freshness.confirm(asked);
            continue;
        }
        // Another member committed: read what changed and take it; failing that, load the
        // store whole.
        #[allow(clippy::disallowed_methods)] // the follower is the shell: it reads the clock
        let seen = Instant::now();
        match catch_up(&mut stream, &persister, base, &domain, &names).await? {
            Ok((caught, changes)) => {
                let (seq, records) = (changes.seq(), caught.count());
                match persister
                    .take_caught(base, caught, changes, &names, &config)
                    .await
                {
                    Ok(Ok(())) => {
                        tracing::info!(
                            from = base,
                            to = seq,
                            records,
                            took_us = seen.elapsed().as_micros(),
                            "took another member's changes by difference"
                        );
                        freshness.confirm(asked);
                        continue;
                    }
                    Ok(Err(fallback)) => {
                        tracing::warn!(%fallback, "another member's changes not taken: loading the store");
                    }
                    Err(NotAdopted::Moved | NotAdopted::LocalChanges) => continue,
                    Err(NotAdopted::Unavailable) => return Err(PersistError::Unavailable),
                }
            }
            // This member committed meanwhile: ask again.
            Err(Fallback::Moved) => continue,
            Err(fallback @ Fallback::Refused(_)) => {
                tracing::warn!(%fallback, "catching up by difference refused: loading the store");
            }
            Err(fallback) => {
                tracing::info!(%fallback, "loading the store");
            }
        }
        let loaded = load(&mut stream, &domain, &config).await?;
        if !loaded.refused.is_empty() {
            let why: Vec<String> = loaded.refused.iter().map(ToString::to_string).collect();
            tracing::error!(
                ?why,
                "a newer state of the store did not verify: not taken; refusing requests until one does"
            );
            continue;
        }
        let seq = loaded.manifest.seq();
        let newer = Newer {
            keys: loaded.keys,
            principals: loaded.principals,
            tls_operator: loaded.tls_operator,
            measurements: loaded.measurements.unwrap_or_default(),
            manifest: loaded.manifest,
        };
        match persister.adopt(base, newer, &config).await {
            Ok(()) => {
                tracing::info!(
                    from = base,
                    to = seq,
                    took_us = seen.elapsed().as_micros(),
                    "took another member's changes by loading the store"
                );
                freshness.confirm(asked);
            }
            // A change of this member's went first, or waits: built on the old state, its
            // commit is refused, and the member stops.
            Err(NotAdopted::Moved | NotAdopted::LocalChanges) => {}
            Err(NotAdopted::Unavailable) => return Err(PersistError::Unavailable),
        }
    }
}

/// One `Head` request: the store's head, or the parent's error message.
async fn store_head<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
) -> Result<Result<Option<u64>, String>, PersistError> {
    v1::write_frame(stream, &Request::Head).await?;
    match v1::read_frame::<_, Response>(stream).await? {
        Some(Response::Head { seq }) => Ok(Ok(seq)),
        Some(Response::Error { message }) => Ok(Err(message)),
        other => Err(PersistError::Refused(format!(
            "unexpected answer to Head: {other:?}"
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn freshness_lapses_after_its_bound_and_never_goes_back() {
        let f = Freshness::default();
        #[allow(clippy::disallowed_methods)] // any instant will do
        let t0 = Instant::now();
        assert!(f.check(t0).is_err(), "never confirmed: not fresh");
        f.confirm(t0);
        assert!(f.check(t0 + FRESHNESS).is_ok());
        let late = f.check(t0 + FRESHNESS + Duration::from_millis(1)).unwrap_err();
        assert_eq!(late.aws_code(), "DependencyTimeoutException");
        // A late answer to an earlier question does not move it back.
        f.confirm(t0 + Duration::from_millis(500));
        f.confirm(t0);
        assert!(f.check(t0 + Duration::from_millis(1400)).is_ok());
        assert!(f.check(t0 + Duration::from_millis(1600)).is_err());
    }
}
