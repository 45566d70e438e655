//! The closed-loop load generator: N workers, each with its own keep-alive connection,
//! each sending its next request as soon as the previous answer arrived.
//!
//! Everything is bounded: workers stop issuing at the end of the window, and each request
//! (connect included) has its own timeout, so a run ends at most one timeout after the window.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::client::{Connection, Connector, Signer};
use super::report;

/// Pause after a failed connect, so a dead endpoint is not hammered in a tight loop.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(50);

/// Longest error body kept for the diagnostic message.
const ERROR_SNIPPET_LEN: usize = 300;

/// One kind of request, sent over and over.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The `X-Amz-Target` value, `TrentService.<Operation>`.
    pub target: String,
    /// The JSON body.
    pub body: Bytes,
}

/// How long and how wide to run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Concurrent workers, one connection each.
    pub connections: usize,
    /// Run before measuring; nothing in it is counted.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// Bound on one request, connecting included.
    pub request_timeout: Duration,
}

/// What a run measured.
#[derive(Debug)]
pub struct Outcome {
    /// Latencies (µs) of successful requests that began and ended inside the window.
    pub histogram: Histogram<u64>,
    /// Failed requests that began inside the window.
    pub errors: u64,
    /// The measured window.
    pub window: Duration,
    /// Body length of a successful answer, to size the baseline's answers.
    pub response_len: Option<usize>,
    /// The first failure seen (warm-up included), for the operator.
    pub first_error: Option<String>,
}

impl Outcome {
    /// Adds `slice` to the outcome so far (`slice` itself if there is none yet).
    pub fn accumulate(so_far: &mut Option<Outcome>, slice: Outcome) -> &mut Outcome {
        match so_far {
            Some(all) => {
                all.merge(slice);
                all
            }
            None => so_far.insert(slice),
        }
    }

    /// Adds a later window's measurements to this one's.
    pub fn merge(&mut self, later: Outcome) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.histogram.add(&later.histogram);
        self.errors += later.errors;
        self.window += later.window;
        self.response_len = self.response_len.or(later.response_len);
        self.first_error = self.first_error.take().or(later.first_error);
    }
}

/// Requests answered so far, warm-up included, for a progress bar (`ekms bench` on a terminal).
#[derive(Debug, Default)]
pub struct Counts {
    /// Answered with success.
    pub ok: AtomicU64,
    /// Failed (an error answer, a transport failure, a timeout).
    pub failed: AtomicU64,
}

/// What one worker measured.
struct WorkerOutcome {
    histogram: Histogram<u64>,
    errors: u64,
    response_len: Option<usize>,
    first_error: Option<String>,
}

/// Why one request failed.
enum Failure {
    /// The server answered with a non-2xx status.
    Status(http::StatusCode, Bytes),
    /// Connect, TLS, HTTP or signing error; the connection is dropped.
    Transport(String),
    /// No answer within the request timeout; the connection is dropped.
    Timeout,
}

impl Failure {
    fn describe(&self) -> String {
        match self {
            Failure::Status(status, body) => {
                let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_SNIPPET_LEN)]);
                format!("HTTP {status}: {text}")
            }
            Failure::Transport(e) => e.clone(),
            Failure::Timeout => "request timed out".to_owned(),
        }
    }
}

/// Runs `plan` against `connector`'s endpoint and merges what the workers measured; every
/// answer is also counted in `counts`, when given (a progress bar reads them).
pub async fn run(
    connector: &Connector,
    signer: &Arc<Signer>,
    workload: &Arc<Workload>,
    plan: Plan,
    counts: Option<&Arc<Counts>>,
) -> Outcome {
    let measure_start = Instant::now() + plan.warmup;
    let measure_end = measure_start + plan.duration;
    let mut workers = JoinSet::new();
    for _ in 0..plan.connections.max(1) {
        let connector = connector.clone();
        let signer = Arc::clone(signer);
        let workload = Arc::clone(workload);
        let counts = counts.cloned();
        workers.spawn(async move {
            worker(
                &connector,
                &signer,
                &workload,
                plan.request_timeout,
                (measure_start, measure_end),
                counts.as_deref(),
            )
            .await
        });
    }
    let mut outcome = Outcome {
        histogram: report::new_histogram(),
        errors: 0,
        window: plan.duration,
        response_len: None,
        first_error: None,
    };
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(w) => {
                // Both histograms have the same bounds, so adding cannot fail.
                let _ = outcome.histogram.add(&w.histogram);
                outcome.errors += w.errors;
                outcome.response_len = outcome.response_len.or(w.response_len);
                outcome.first_error = outcome.first_error.or(w.first_error);
            }
            Err(e) => {
                outcome.errors += 1;
                outcome
                    .first_error
                    .get_or_insert_with(|| format!("worker failed: {e}"));
            }
        }
    }
    outcome
}

async fn worker(
    connector: &Connector,
    signer: &Signer,
    workload: &Workload,
    request_timeout: Duration,
    (measure_start, measure_end): (Instant, Instant),
    counts: Option<&Counts>,
) -> WorkerOutcome {
    let mut out = WorkerOutcome {
        histogram: report::new_histogram(),
        errors: 0,
        response_len: None,
        first_error: None,
    };
    let mut connection: Option<Connection> = None;
    while Instant::now() < measure_end {
        // Signing is client work: done before the clock starts, like an SDK would.
        let request = match signer.request(connector.endpoint(), &workload.target, &workload.body) {
            Ok(r) => r,
            Err(e) => {
                // The same inputs will fail the same way: stop rather than spin.
                out.errors += 1;
                out.first_error.get_or_insert_with(|| format!("{e:#}"));
                break;
            }
        };
        let began = Instant::now();
        let result =
            match tokio::time::timeout(request_timeout, send(connector, &mut connection, request))
                .await
            {
                Ok(result) => result,
                Err(_elapsed) => Err(Failure::Timeout),
            };
        let ended = Instant::now();
        let counted = began >= measure_start && began < measure_end;
        if let Some(counts) = counts {
            let which = if result.is_ok() {
                &counts.ok
            } else {
                &counts.failed
            };
            which.fetch_add(1, Ordering::Relaxed);
        }
        match result {
            Ok(len) => {
                out.response_len = Some(len);
                if counted && ended <= measure_end {
                    report::record(&mut out.histogram, ended - began);
                }
            }
            Err(failure) => {
                if counted {
                    out.errors += 1;
                }
                out.first_error.get_or_insert_with(|| failure.describe());
                if !matches!(failure, Failure::Status(..)) {
                    connection = None;
                    let left = measure_end.saturating_duration_since(Instant::now());
                    tokio::time::sleep(RECONNECT_BACKOFF.min(left)).await;
                }
            }
        }
    }
    out
}

/// Sends one request, connecting first when needed; the answer's body length on success.
async fn send(
    connector: &Connector,
    connection: &mut Option<Connection>,
    request: http::Request<http_body_util::Full<Bytes>>,
) -> Result<usize, Failure> {
    let conn = match connection {
        Some(c) => c,
        None => connection.insert(
            connector
                .connect()
                .await
                .map_err(|e| Failure::Transport(format!("connecting: {e}")))?,
        ),
    };
    match conn.send(request).await {
        Ok((status, body)) if status.is_success() => Ok(body.len()),
        Ok((status, body)) => Err(Failure::Status(status, body)),
        Err(e) => {
            *connection = None;
            Err(Failure::Transport(format!("HTTP: {e}")))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn outcome(latencies_ms: &[u64], errors: u64, secs: u64, first_error: Option<&str>) -> Outcome {
        let mut histogram = report::new_histogram();
        for ms in latencies_ms {
            report::record(&mut histogram, Duration::from_millis(*ms));
        }
        Outcome {
            histogram,
            errors,
            window: Duration::from_secs(secs),
            response_len: None,
            first_error: first_error.map(str::to_owned),
        }
    }

    /// Slices add up: every latency, error and second of window; the first error seen stays.
    #[test]
    fn merged_slices_add_up() {
        let mut all = outcome(&[1, 2], 1, 2, None);
        all.merge(Outcome {
            response_len: Some(700),
            ..outcome(&[3], 2, 2, Some("first"))
        });
        all.merge(Outcome {
            response_len: Some(900),
            ..outcome(&[4, 5, 6], 0, 2, Some("second"))
        });
        assert_eq!(all.histogram.len(), 6);
        assert_eq!(all.errors, 3);
        assert_eq!(all.window, Duration::from_secs(6));
        assert_eq!(all.response_len, Some(700));
        assert_eq!(all.first_error.as_deref(), Some("first"));
        assert!(all.histogram.max() >= 6_000);
    }
}
