//! The parent's metrics (`/metrics`, Prometheus text) and health (`/healthz`, `/readyz`).
//!
//! Three sources: the parent's own counters (the relay's [`RelayStats`], the held answers in
//! [`Holds`], the group writer's commit latency and group size, the store's files), read at
//! each scrape; and the enclave's aggregates ([`EnclaveMetrics`]), which the enclave sends
//! every few seconds on a store connection of its own and the store service hands to
//! [`Metrics::take_enclave`]. The enclave's aggregates carry only names from fixed sets
//! (operations, AWS error codes, key specs and states), and are checked against the wire's
//! bounds before they are kept, so a scrape's size is bounded whatever the enclave sends.
//!
//! Readiness: ready when the enclave reported within [`ENCLAVE_REPORT_MAX_AGE`], unsealed,
//! and the store's last probe (every [`STORE_PROBE_INTERVAL`]) succeeded.
//!
//! Built on `prometheus-client` (the Prometheus project's Rust client): typed families, a
//! registry of our own (no global state), and [`Collector`]s for values read at scrape time.

mod http;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ekms_shared::wire::v1::{EnclaveMetrics, MetricsError};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::holds::Holds;
use crate::relay::RelayStats;
use crate::store::Store;

pub use http::serve_metrics;

/// With no aggregates from the enclave for this long, it is "not answering" (`/readyz` 503).
pub const ENCLAVE_REPORT_MAX_AGE: Duration = Duration::from_secs(15);

/// How often the store is probed for `/readyz`.
pub const STORE_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// A probe that takes longer than this counts as a failure.
pub const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Buckets of the commit latency and answer wait histograms: 100 µs to about 3.3 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0001, 2.0, 16)
}

/// The parent's metrics and what readiness is judged on.
pub struct Metrics {
    registry: Registry,
    commit_seconds: Histogram,
    group_commits: Histogram,
    enclave: Arc<Mutex<Option<EnclaveReport>>>,
    store_reachable: Arc<AtomicBool>,
    has_store: bool,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The enclave's last aggregates and when they came.
#[derive(Debug, Clone)]
struct EnclaveReport {
    at: Instant,
    metrics: EnclaveMetrics,
}

/// Why `/readyz` answers 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// The enclave never reported, or not within [`ENCLAVE_REPORT_MAX_AGE`].
    EnclaveNotAnswering,
    /// The enclave holds no domain key.
    Sealed,
    /// The enclave is taking the store's state again (its store refused a commit).
    Recovering,
    /// The store's last probe failed.
    StoreUnreachable,
}

impl NotReady {
    /// A line for the 503's body.
    pub fn reason(self) -> &'static str {
        match self {
            NotReady::EnclaveNotAnswering => "the enclave is not answering",
            NotReady::Sealed => "the enclave is sealed",
            NotReady::Recovering => {
                "the enclave is taking its store's state again (the store refused a commit)"
            }
            NotReady::StoreUnreachable => "the store is unreachable",
        }
    }
}

impl Metrics {
    /// The registry for a parent with this relay, these held answers and (when it runs one)
    /// this store.
    pub fn new(relay: RelayStats, holds: Arc<Holds>, store: Option<Arc<dyn Store>>) -> Self {
        let mut registry = Registry::default();
        let commit_seconds = Histogram::new(latency_buckets());
        let group_commits = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        registry.register(
            "ekms_store_commit_duration_seconds",
            "Time of one group commit (one synced write), seconds",
            commit_seconds.clone(),
        );
        registry.register(
            "ekms_store_group_commits",
            "Commits applied together in one group",
            group_commits.clone(),
        );
        registry.register(
            "ekms_relay_answer_wait_seconds",
            "How long answers were held for their commit to be durable, seconds",
            holds.answer_waits(),
        );
        let enclave = Arc::new(Mutex::new(None));
        let store_reachable = Arc::new(AtomicBool::new(false));
        registry.register_collector(Box::new(ParentCollector {
            relay,
            holds,
            store: store.clone(),
        }));
        registry.register_collector(Box::new(EnclaveCollector {
            enclave: Arc::clone(&enclave),
            store_reachable: Arc::clone(&store_reachable),
        }));
        Metrics {
            registry,
            commit_seconds,
            group_commits,
            enclave,
            store_reachable,
            has_store: store.is_some(),
        }
    }

    /// A group of `commits` commits took `elapsed`.
    pub fn observe_group(&self, commits: usize, elapsed: Duration) {
        self.commit_seconds.observe(elapsed.as_secs_f64());
        self.group_commits.observe(commits as f64);
    }

    /// Keeps the enclave's latest aggregates, after checking their bounds.
    ///
    /// # Errors
    /// When they are out of bounds ([`EnclaveMetrics::check`]); the previous ones stay.
    pub fn take_enclave(&self, metrics: EnclaveMetrics) -> Result<(), MetricsError> {
        metrics.check()?;
        *lock(&self.enclave) = Some(EnclaveReport {
            at: Instant::now(),
            metrics,
        });
        Ok(())
    }

    /// Records a store probe's outcome.
    pub fn set_store_reachable(&self, reachable: bool) {
        self.store_reachable.store(reachable, Ordering::Relaxed);
    }

    /// Whether `/readyz` should answer 200, and if not, why.
    ///
    /// # Errors
    /// The first reason this parent is not ready.
    pub fn ready(&self) -> Result<(), NotReady> {
        if self.has_store && !self.store_reachable.load(Ordering::Relaxed) {
            return Err(NotReady::StoreUnreachable);
        }
        let report = lock(&self.enclave);
        match &*report {
            Some(report) if report.at.elapsed() <= ENCLAVE_REPORT_MAX_AGE => {
                if report.metrics.sealed {
                    Err(NotReady::Sealed)
                } else if report.metrics.recovering {
                    Err(NotReady::Recovering)
                } else {
                    Ok(())
                }
            }
            _ => Err(NotReady::EnclaveNotAnswering),
        }
    }

    /// The Prometheus (OpenMetrics) text of every metric.
    ///
    /// # Errors
    /// Only if formatting fails, which writing to a `String` does not.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// Probes `store` every [`STORE_PROBE_INTERVAL`] (its head: a read of etcd, nothing for
    /// the embedded store, which is local) until the task is dropped.
    pub async fn probe_store(self: Arc<Self>, store: Arc<dyn Store>) {
        let mut tick = tokio::time::interval(STORE_PROBE_INTERVAL);
        loop {
            tick.tick().await;
            let store = Arc::clone(&store);
            let probe = tokio::task::spawn_blocking(move || store.head());
            let reachable = matches!(
                tokio::time::timeout(STORE_PROBE_TIMEOUT, probe).await,
                Ok(Ok(Ok(_)))
            );
            if !reachable {
                tracing::warn!("store probe failed: /readyz answers 503");
            }
            self.set_store_reachable(reachable);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Encodes one unlabelled counter.
fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// Encodes one unlabelled gauge.
fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn as_gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The parent's own values, read at each scrape.
struct ParentCollector {
    relay: RelayStats,
    holds: Arc<Holds>,
    store: Option<Arc<dyn Store>>,
}

impl std::fmt::Debug for ParentCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParentCollector").finish_non_exhaustive()
    }
}

impl Collector for ParentCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let relay = &self.relay;
        gauge(
            &mut encoder,
            "ekms_relay_connections_open",
            "Client connections open now",
            as_gauge(relay.active_connections()),
        )?;
        counter(
            &mut encoder,
            "ekms_relay_connections",
            "Client connections accepted",
            relay.total_connections(),
        )?;
        counter(
            &mut encoder,
            "ekms_relay_connections_refused",
            "Client connections closed because the enclave could not be reached",
            relay.enclave_unreachable(),
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "ekms_relay_bytes",
                "Bytes relayed, by direction",
                None,
                MetricType::Counter,
            )?;
            for (direction, value) in [
                ("to_enclave", relay.bytes_to_enclave()),
                ("to_client", relay.bytes_to_client()),
            ] {
                let labels = [("direction", direction)];
                ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        gauge(
            &mut encoder,
            "ekms_relay_answers_held",
            "Answers waiting for their commit to be durable",
            as_gauge(self.holds.held() as u64),
        )?;
        let Some(store) = &self.store else {
            return Ok(());
        };
        let usage = store.usage();
        {
            let mut family = encoder.encode_descriptor(
                "ekms_store_bytes",
                "Bytes of the embedded store's files, by part",
                None,
                MetricType::Gauge,
            )?;
            for (part, value) in [
                ("records", usage.records_bytes),
                ("journal", usage.journal_bytes),
                ("audit", usage.audit_bytes),
            ] {
                if let Some(value) = value {
                    let labels = [("part", part)];
                    ConstGauge::new(as_gauge(value)).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        if let Some(free) = usage.audit_disk_free_bytes {
            gauge(&mut encoder, "ekms_audit_disk_free_bytes", "Free bytes on the audit log's file system (commits are refused below --audit-min-free-bytes)", as_gauge(free))?;
        }
        Ok(())
    }
}

/// The enclave's last aggregates, and the readiness inputs, read at each scrape.
#[derive(Debug)]
struct EnclaveCollector {
    enclave: Arc<Mutex<Option<EnclaveReport>>>,
    store_reachable: Arc<AtomicBool>,
}

impl Collector for EnclaveCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        gauge(
            &mut encoder,
            "ekms_store_reachable",
            "1 when the store's last probe succeeded",
            i64::from(self.store_reachable.load(Ordering::Relaxed)),
        )?;
        let report = lock(&self.enclave).clone();
        let Some(report) = report else {
            return gauge(
                &mut encoder,
                "ekms_enclave_up",
                "1 when the enclave reported within 15 s",
                0,
            );
        };
        let fresh = report.at.elapsed() <= ENCLAVE_REPORT_MAX_AGE;
        gauge(
            &mut encoder,
            "ekms_enclave_up",
            "1 when the enclave reported within 15 s",
            i64::from(fresh),
        )?;
        gauge(
            &mut encoder,
            "ekms_enclave_report_age_seconds",
            "Seconds since the enclave's last report",
            as_gauge(report.at.elapsed().as_secs()),
        )?;
        let metrics = &report.metrics;
        gauge(
            &mut encoder,
            "ekms_enclave_sealed",
            "1 while the enclave holds no domain key",
            i64::from(metrics.sealed),
        )?;
        gauge(
            &mut encoder,
            "ekms_enclave_recovering",
            "1 while the enclave takes its store's state again (its store refused a commit, as a full audit disk does); requests are refused meanwhile",
            i64::from(metrics.recovering),
        )?;
        gauge(
            &mut encoder,
            "ekms_enclave_memory_used_bytes",
            "Bytes of the enclave's memory budget in use",
            as_gauge(metrics.memory_used_bytes),
        )?;
        gauge(
            &mut encoder,
            "ekms_enclave_memory_budget_bytes",
            "The enclave's memory budget for keys, aliases, grants and principals",
            as_gauge(metrics.memory_budget_bytes),
        )?;
        if let Some(seq) = metrics.last_durable_commit {
            gauge(
                &mut encoder,
                "ekms_enclave_last_durable_commit",
                "The seq of the enclave's last commit the store acknowledged",
                as_gauge(seq),
            )?;
        }
        {
            let mut family = encoder.encode_descriptor("ekms_requests", "Requests answered by the enclave, by operation and code (200 or the AWS error code)", None, MetricType::Counter)?;
            for request in &metrics.requests {
                let labels = [
                    ("operation", request.operation.as_str()),
                    ("code", request.code.as_str()),
                ];
                ConstCounter::new(request.count).encode(family.encode_family(&labels)?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "ekms_request_duration_seconds",
                "Time the enclave took per request, by operation, seconds",
                None,
                MetricType::Histogram,
            )?;
            for histogram in &metrics.durations {
                let labels = [("operation", histogram.operation.as_str())];
                let buckets: Vec<(f64, u64)> = metrics
                    .duration_bounds
                    .iter()
                    .copied()
                    .chain(std::iter::once(f64::MAX))
                    .zip(histogram.buckets.iter().copied())
                    .collect();
                let count = histogram
                    .buckets
                    .iter()
                    .fold(0u64, |sum, n| sum.saturating_add(*n));
                family.encode_family(&labels)?.encode_histogram::<()>(
                    histogram.sum_seconds,
                    count,
                    &buckets,
                    None,
                )?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "ekms_keys",
                "Keys held by the enclave, by spec and state",
                None,
                MetricType::Gauge,
            )?;
            for key in &metrics.keys {
                let labels = [("spec", key.spec.as_str()), ("state", key.state.as_str())];
                ConstGauge::new(as_gauge(key.count)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ekms_shared::wire::v1::RequestCount;

    fn metrics() -> Metrics {
        Metrics::new(RelayStats::default(), Arc::new(Holds::default()), None)
    }

    fn report(sealed: bool) -> EnclaveMetrics {
        EnclaveMetrics {
            sealed,
            requests: vec![RequestCount {
                operation: "Encrypt".to_owned(),
                code: "200".to_owned(),
                count: 7,
            }],
            ..EnclaveMetrics::default()
        }
    }

    #[test]
    fn ready_only_once_an_unsealed_enclave_reported() {
        let metrics = metrics();
        assert_eq!(metrics.ready(), Err(NotReady::EnclaveNotAnswering));
        metrics.take_enclave(report(true)).unwrap();
        assert_eq!(metrics.ready(), Err(NotReady::Sealed));
        metrics
            .take_enclave(EnclaveMetrics {
                recovering: true,
                ..report(false)
            })
            .unwrap();
        assert_eq!(metrics.ready(), Err(NotReady::Recovering));
        assert!(metrics
            .encode()
            .unwrap()
            .contains("ekms_enclave_recovering 1"));
        metrics.take_enclave(report(false)).unwrap();
        assert_eq!(metrics.ready(), Ok(()));
        let text = metrics.encode().unwrap();
        assert!(
            text.contains("ekms_requests_total{operation=\"Encrypt\",code=\"200\"} 7"),
            "{text}"
        );
    }

    #[test]
    fn a_store_that_does_not_answer_is_not_ready() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(crate::store::RedbStore::open(dir.path()).unwrap());
        let metrics = Metrics::new(
            RelayStats::default(),
            Arc::new(Holds::default()),
            Some(store),
        );
        metrics.take_enclave(report(false)).unwrap();
        // No probe has succeeded yet.
        assert_eq!(metrics.ready(), Err(NotReady::StoreUnreachable));
        metrics.set_store_reachable(true);
        assert_eq!(metrics.ready(), Ok(()));
    }

    /// A label value that is not a short name from a fixed set (a key id would be one, an
    /// injection of a new series another) is refused, and the previous report stays.
    #[test]
    fn an_out_of_bounds_report_is_refused_and_the_last_one_kept() {
        let metrics = metrics();
        metrics.take_enclave(report(false)).unwrap();
        let mut bad = report(true);
        bad.requests[0].operation = "Encrypt\"} 1\nekms_evil{x=\"".to_owned();
        assert!(metrics.take_enclave(bad).is_err());
        assert_eq!(metrics.ready(), Ok(()));
        assert!(!metrics.encode().unwrap().contains("evil"));
    }
}
