//! A bench run's progress on a terminal: a bar over the run's expected time, with what is
//! loaded (ekms or the baseline), the requests answered and failed, and the rate over the last
//! half second. Nothing is counted or drawn when stderr is not a terminal
//! ([`crate::progress`]), so `--json` lines, piped tables and `scripts/bench.sh` see no change,
//! and the workers do no counting for it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use indicatif::ProgressBar;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::load::Counts;
use crate::progress;

/// How often the figures are read.
const REFRESH: Duration = Duration::from_millis(500);

/// The progress of one run.
pub struct Live {
    bar: ProgressBar,
    counts: Option<Arc<Counts>>,
    ticker: Option<JoinHandle<()>>,
}

impl Live {
    /// Starts showing a run expected to take `total`, if stderr is a terminal.
    pub fn start(total: Duration) -> Live {
        let shown = progress::shown();
        let bar = progress::timed(shown, total);
        if !shown {
            return Live {
                bar,
                counts: None,
                ticker: None,
            };
        }
        let counts = Arc::new(Counts::default());
        let ticker = tokio::spawn(tick(bar.clone(), Arc::clone(&counts)));
        Live {
            bar,
            counts: Some(counts),
            ticker: Some(ticker),
        }
    }

    /// The counters the workers add to (none when nothing is shown).
    pub fn counts(&self) -> Option<&Arc<Counts>> {
        self.counts.as_ref()
    }

    /// Names what is loaded now.
    pub fn loading(&self, what: &'static str) {
        self.bar.set_prefix(what);
    }

    /// Clears the bar: the report follows as it would through a pipe. (Dropping does the
    /// same, so a run that fails leaves no bar behind its error.)
    pub fn finish(self) {}
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        self.bar.finish_and_clear();
    }
}

/// Moves the bar with the time and shows the figures, until aborted.
async fn tick(bar: ProgressBar, counts: Arc<Counts>) {
    let started = Instant::now();
    let mut interval = tokio::time::interval(REFRESH);
    let mut before = (0u64, Instant::now());
    loop {
        interval.tick().await;
        let now = Instant::now();
        let ok = counts.ok.load(Ordering::Relaxed);
        let failed = counts.failed.load(Ordering::Relaxed);
        let answered = ok + failed;
        let seconds = now.duration_since(before.1).as_secs_f64();
        let rate = if seconds > 0.0 {
            answered.saturating_sub(before.0) as f64 / seconds
        } else {
            0.0
        };
        before = (answered, now);
        let elapsed = u64::try_from(now.duration_since(started).as_millis()).unwrap_or(u64::MAX);
        bar.set_position(elapsed.min(bar.length().unwrap_or(u64::MAX)));
        bar.set_message(format!(
            "{} requests/s, {} answered, {} failed",
            progress::thousands(rate.round() as u64),
            progress::thousands(ok),
            progress::thousands(failed),
        ));
    }
}
