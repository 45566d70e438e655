//! Where the relay's held answers wait for the store (see [`ekms_shared::release`]).
//!
//! The store service opens a session when the enclave announces one on its store channel
//! (`Request::Hold`), advances it as that channel's commits become durable, and closes it
//! when a commit fails or the channel ends. The relay asks, for each frame of an answer,
//! whether it may go to the client now, later, or never.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use ekms_shared::release::Hold;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use tokio::sync::oneshot;

/// The store's side of held answers: one session at a time.
#[derive(Debug)]
pub struct Holds {
    state: Mutex<State>,
    /// How long released answers waited (metrics).
    waits: Histogram,
}

impl Default for Holds {
    fn default() -> Self {
        Holds {
            state: Mutex::default(),
            // 100 µs to about 3.3 s.
            waits: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// The open session, if any.
    session: Option<u64>,
    /// Its last durable commit.
    durable: u64,
    /// Relayed answers waiting, by the commit they wait for.
    waiting: BTreeMap<u64, Vec<(Instant, oneshot::Sender<()>)>>,
}

/// When a held answer may go to the client.
#[derive(Debug)]
pub enum Release {
    /// Now.
    Now,
    /// When this resolves with `Ok`; an `Err` means never.
    Later(oneshot::Receiver<()>),
    /// Never: its session is not open (it ended, or it was never announced).
    Never,
}

impl Holds {
    /// Opens `session`, closing the one before (whose waiting answers are then never
    /// released).
    pub fn open(&self, session: u64) {
        let mut state = self.lock();
        *state = State {
            session: Some(session),
            durable: 0,
            waiting: BTreeMap::new(),
        };
    }

    /// Commit `seq` of `session` (and every one before it) is durable: releases the answers
    /// that waited for it.
    pub fn advance(&self, session: u64, seq: u64) {
        let released = {
            let mut state = self.lock();
            if state.session != Some(session) || seq <= state.durable {
                return;
            }
            state.durable = seq;
            let later = state.waiting.split_off(&(seq + 1));
            std::mem::replace(&mut state.waiting, later)
        };
        for (since, sender) in released.into_values().flatten() {
            self.waits.observe(since.elapsed().as_secs_f64());
            let _ = sender.send(());
        }
    }

    /// Closes `session` if it is the open one: its waiting answers are never released.
    pub fn close(&self, session: u64) {
        let mut state = self.lock();
        if state.session == Some(session) {
            *state = State::default();
        }
    }

    /// When an answer framed with `hold` may go to the client.
    pub fn release(&self, hold: Hold) -> Release {
        if hold.is_none() {
            return Release::Now;
        }
        let mut state = self.lock();
        if state.session != Some(hold.session) {
            return Release::Never;
        }
        if hold.seq <= state.durable {
            return Release::Now;
        }
        let (sender, receiver) = oneshot::channel();
        state
            .waiting
            .entry(hold.seq)
            .or_default()
            .push((Instant::now(), sender));
        Release::Later(receiver)
    }

    /// Answers waiting now.
    pub fn held(&self) -> usize {
        self.lock().waiting.values().map(Vec::len).sum()
    }

    /// The histogram of how long released answers waited, for the metrics registry.
    pub fn answer_waits(&self) -> Histogram {
        self.waits.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hold(session: u64, seq: u64) -> Hold {
        Hold { session, seq }
    }

    fn later(release: Release) -> oneshot::Receiver<()> {
        match release {
            Release::Later(receiver) => receiver,
            other => panic!("expected Later, got {other:?}"),
        }
    }

    #[test]
    fn answers_wait_for_their_commit_and_no_longer() {
        let holds = Holds::default();
        holds.open(5);
        let mut first = later(holds.release(hold(5, 10)));
        let mut second = later(holds.release(hold(5, 11)));
        let mut also_first = later(holds.release(hold(5, 10)));

        holds.advance(5, 9);
        assert!(first.try_recv().is_err() && second.try_recv().is_err());
        holds.advance(5, 10);
        first.try_recv().unwrap();
        also_first.try_recv().unwrap();
        assert!(second.try_recv().is_err(), "commit 11 is not durable yet");
        // A later commit releases everything before it.
        holds.advance(5, 12);
        second.try_recv().unwrap();
        assert!(matches!(holds.release(hold(5, 12)), Release::Now));
        assert!(matches!(holds.release(hold(5, 3)), Release::Now));
        assert!(matches!(holds.release(Hold::NONE), Release::Now));
    }

    #[test]
    fn other_sessions_and_closed_ones_are_never_released() {
        let holds = Holds::default();
        assert!(
            matches!(holds.release(hold(5, 1)), Release::Never),
            "none open"
        );
        assert!(matches!(holds.release(Hold::NONE), Release::Now));

        holds.open(5);
        assert!(matches!(holds.release(hold(6, 1)), Release::Never));
        // Another session's durability releases nothing here.
        let mut waiting = later(holds.release(hold(5, 3)));
        holds.advance(6, 100);
        assert!(waiting.try_recv().is_err());

        // A close of another session changes nothing; of this one, drops what waits.
        holds.close(6);
        assert!(waiting.try_recv().is_err());
        holds.close(5);
        assert!(matches!(
            waiting.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
        assert!(matches!(holds.release(hold(5, 1)), Release::Never));

        // A new session drops what waited for the old one, whose frames are refused from then
        // on even with seqs the new one made durable.
        holds.open(7);
        let mut old = later(holds.release(hold(7, 20)));
        holds.open(8);
        assert!(matches!(
            old.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
        holds.advance(8, 50);
        assert!(matches!(holds.release(hold(7, 20)), Release::Never));
        assert!(matches!(holds.release(hold(8, 20)), Release::Now));
    }
}
