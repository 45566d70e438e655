//! What a benchmark run reports: throughput, latency percentiles and errors, as a small table
//! for people or as one JSON line for scripts.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds, from 1 µs to this bound (larger values clamp).
pub const MAX_LATENCY_MICROS: u64 = 120_000_000;

/// A new latency histogram: microseconds, 3 significant digits.
///
/// # Panics
///
/// Never: the bounds are constants that `hdrhistogram` accepts (low ≥ 1, high ≥ 2·low,
/// sigfig ≤ 5).
pub fn new_histogram() -> Histogram<u64> {
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3)
        .expect("constant histogram bounds are valid")
}

/// Records one latency, clamped into the histogram's range.
pub fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.clamp(1, MAX_LATENCY_MICROS));
}

/// The figures of one measured run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Successful requests completed inside the measured window.
    pub requests: u64,
    /// Failed requests (non-2xx answers, transport errors, timeouts) in the window.
    pub errors: u64,
    /// Successful requests per second of the window.
    pub requests_per_sec: f64,
    /// Latency percentiles of successful requests, in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Slowest successful request, ms.
    pub max_ms: f64,
}

impl Summary {
    /// Summarizes `histogram` (µs latencies of successful requests) over `window`.
    pub fn new(histogram: &Histogram<u64>, errors: u64, window: Duration) -> Self {
        let requests = histogram.len();
        let seconds = window.as_secs_f64();
        let ms = |quantile: f64| {
            if requests == 0 {
                0.0
            } else {
                histogram.value_at_quantile(quantile) as f64 / 1000.0
            }
        };
        Summary {
            requests,
            errors,
            requests_per_sec: if seconds > 0.0 {
                requests as f64 / seconds
            } else {
                0.0
            },
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: if requests == 0 {
                0.0
            } else {
                histogram.max() as f64 / 1000.0
            },
        }
    }
}

/// The one-line JSON shape `scripts/bench.sh` collects; field order is the contract.
#[derive(Debug, Serialize)]
pub struct JsonLine<'a> {
    /// The operation's CLI name (`encrypt`, `create-key`, ...).
    pub op: &'a str,
    /// Concurrent connections (closed-loop workers).
    pub connections: usize,
    /// Successful requests per second.
    pub requests_per_sec: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 90th percentile latency, ms.
    pub p90_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// 99.9th percentile latency, ms.
    pub p999_ms: f64,
    /// Failed requests in the measured window.
    pub errors: u64,
    /// Requests per second of the in-process baseline, `null` when not measured.
    pub baseline_requests_per_sec: Option<f64>,
}

/// Rounds to `places` decimals, so the JSON line stays readable.
fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

impl<'a> JsonLine<'a> {
    /// The line for `summary` (and the baseline's, when measured).
    pub fn new(
        op: &'a str,
        connections: usize,
        summary: &Summary,
        baseline: Option<&Summary>,
    ) -> Self {
        JsonLine {
            op,
            connections,
            requests_per_sec: round(summary.requests_per_sec, 1),
            p50_ms: round(summary.p50_ms, 3),
            p90_ms: round(summary.p90_ms, 3),
            p99_ms: round(summary.p99_ms, 3),
            p999_ms: round(summary.p999_ms, 3),
            errors: summary.errors,
            baseline_requests_per_sec: baseline.map(|b| round(b.requests_per_sec, 1)),
        }
    }
}

/// A small human-readable table: one row for ekms and, when measured, one for the baseline.
pub fn table(
    op: &str,
    connections: usize,
    window: Duration,
    ekms: &Summary,
    baseline: Option<&Summary>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{op}: {connections} connection(s), {:.1} s measured after a warm-up",
        window.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "{:<10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "target", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "errors"
    );
    let mut row = |name: &str, s: &Summary| {
        let _ = writeln!(
            out,
            "{:<10} {:>10} {:>10.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>7}",
            name,
            s.requests,
            s.requests_per_sec,
            s.p50_ms,
            s.p90_ms,
            s.p99_ms,
            s.p999_ms,
            s.max_ms,
            s.errors
        );
    };
    row("ekms", ekms);
    if let Some(b) = baseline {
        row("baseline", b);
        if b.requests_per_sec > 0.0 {
            let _ = writeln!(
                out,
                "ekms reaches {:.0}% of the baseline's requests/s",
                100.0 * ekms.requests_per_sec / b.requests_per_sec
            );
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram_in_milliseconds() {
        let mut h = new_histogram();
        // 1..=1000 ms, one request each.
        for ms in 1..=1000u64 {
            record(&mut h, Duration::from_millis(ms));
        }
        let s = Summary::new(&h, 3, Duration::from_secs(2));
        assert_eq!(s.requests, 1000);
        assert_eq!(s.errors, 3);
        assert!((s.requests_per_sec - 500.0).abs() < 1e-9);
        // Three significant digits: within 0.1% of the exact value.
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 1e-9;
        assert!(close(s.p50_ms, 500.0), "{}", s.p50_ms);
        assert!(close(s.p90_ms, 900.0), "{}", s.p90_ms);
        assert!(close(s.p99_ms, 990.0), "{}", s.p99_ms);
        assert!(close(s.p999_ms, 999.0), "{}", s.p999_ms);
        assert!(close(s.max_ms, 1000.0), "{}", s.max_ms);
    }

    #[test]
    fn out_of_range_latencies_clamp_instead_of_failing() {
        let mut h = new_histogram();
        record(&mut h, Duration::ZERO);
        record(&mut h, Duration::from_secs(100_000));
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
        assert!(h.max() >= MAX_LATENCY_MICROS);
    }

    #[test]
    fn an_empty_run_reports_zeros() {
        let s = Summary::new(&new_histogram(), 7, Duration::from_secs(5));
        assert_eq!(s.requests, 0);
        assert_eq!(s.requests_per_sec, 0.0);
        assert_eq!(s.p99_ms, 0.0);
        assert_eq!(s.errors, 7);
    }

    fn sample() -> Summary {
        Summary {
            requests: 1234,
            errors: 2,
            requests_per_sec: 1234.5678,
            p50_ms: 1.23456,
            p90_ms: 2.0,
            p99_ms: 3.5,
            p999_ms: 10.0,
            max_ms: 12.0,
        }
    }

    #[test]
    fn json_line_has_the_documented_keys_in_order() {
        let line = serde_json::to_string(&JsonLine::new("encrypt", 64, &sample(), None)).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(
            line,
            r#"{"op":"encrypt","connections":64,"requests_per_sec":1234.6,"p50_ms":1.235,"p90_ms":2.0,"p99_ms":3.5,"p999_ms":10.0,"errors":2,"baseline_requests_per_sec":null}"#
        );
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = vec![
            "op",
            "connections",
            "requests_per_sec",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "p999_ms",
            "errors",
            "baseline_requests_per_sec",
        ];
        expected.sort_unstable();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected);
    }

    #[test]
    fn json_line_carries_the_baseline_when_measured() {
        let mut baseline = sample();
        baseline.requests_per_sec = 5000.04;
        let line =
            serde_json::to_string(&JsonLine::new("create-key", 1, &sample(), Some(&baseline)))
                .unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["baseline_requests_per_sec"], 5000.0);
        assert_eq!(value["op"], "create-key");
    }

    #[test]
    fn table_shows_both_rows_and_the_ratio() {
        let mut baseline = sample();
        baseline.requests_per_sec = 2469.1356;
        let t = table(
            "encrypt",
            16,
            Duration::from_secs(5),
            &sample(),
            Some(&baseline),
        );
        assert!(t.contains("ekms"));
        assert!(t.contains("baseline"));
        assert!(t.contains("50% of the baseline"), "{t}");
    }
}
