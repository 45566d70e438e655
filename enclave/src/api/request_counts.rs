//! Request counts by operation and code, and request durations by operation, since the
//! enclave started: what the parent exports as `ekms_requests_total` and
//! `ekms_request_duration_seconds` ([`super::metrics`] sends them). Keyed by the static names
//! of the operation table and the error enum, so the number of series is bounded by those.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use ekms_shared::wire::v1::{DurationHistogram, EnclaveMetrics, RequestCount};

/// Upper bounds of the request duration buckets, seconds (+Inf implied).
const DURATION_BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Request counts and durations since start, by the static names of the operation table and
/// the error enum (so the number of series is bounded by those).
#[derive(Debug, Default)]
pub struct RequestMetrics {
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    requests: BTreeMap<(&'static str, &'static str), u64>,
    durations: BTreeMap<&'static str, Histogram>,
}

#[derive(Debug)]
struct Histogram {
    buckets: [u64; DURATION_BOUNDS.len() + 1],
    sum_seconds: f64,
}

impl RequestMetrics {
    /// One request of `operation` answered with `code` (`"200"` or an AWS error code) in
    /// `elapsed`.
    pub fn record(&self, operation: &'static str, code: &'static str, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = DURATION_BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(DURATION_BOUNDS.len());
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        *counts.requests.entry((operation, code)).or_default() += 1;
        let histogram = counts.durations.entry(operation).or_insert(Histogram {
            buckets: [0; DURATION_BOUNDS.len() + 1],
            sum_seconds: 0.0,
        });
        if let Some(count) = histogram.buckets.get_mut(bucket) {
            *count += 1;
        }
        histogram.sum_seconds += seconds;
    }

    /// Puts the counts and histograms into `metrics`.
    pub fn fill(&self, metrics: &mut EnclaveMetrics) {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        metrics.requests = counts
            .requests
            .iter()
            .map(|((operation, code), count)| RequestCount {
                operation: (*operation).to_owned(),
                code: (*code).to_owned(),
                count: *count,
            })
            .collect();
        metrics.duration_bounds = DURATION_BOUNDS.to_vec();
        metrics.durations = counts
            .durations
            .iter()
            .map(|(operation, histogram)| DurationHistogram {
                operation: (*operation).to_owned(),
                buckets: histogram.buckets.to_vec(),
                sum_seconds: histogram.sum_seconds,
            })
            .collect();
    }
}

