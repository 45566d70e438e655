//! The enclave's aggregates for the parent's `/metrics` and `/readyz`: request counts by
//! operation and code, request durations by operation, keys by spec and state, memory budget
//! use, sealed state, the last durable commit.
//!
//! The request counts are kept in [`super::request_counts`]. Counts only, labelled by names from fixed sets: operation names from the operation table
//! (and the `Ekms.*` targets), codes from the error enum (`KmsError::aws_code`), key specs and
//! states. Never a key id, alias, principal or request id: the parent may see all of this.
//! [`report`] sends them every [`REPORT_INTERVAL`] as `Request::Metrics` on a store-channel
//! connection of their own (the committer's connection expects its answers in order, so
//! nothing else may ask on it).

use std::sync::Arc;
use std::time::Duration;

use ekms_shared::transport::{self, Address, Stream};
use ekms_shared::wire::v1::{self, EnclaveMetrics, KeyCount, Response, WireError};

use super::server::Service;
use crate::custody::admin::Phase;

/// How often the aggregates go to the parent (it calls the enclave "not answering" after 15 s
/// without).
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// The aggregates as they stand.
pub fn snapshot(service: &Service) -> EnclaveMetrics {
    let mut metrics = EnclaveMetrics {
        sealed: matches!(service.phase(), Phase::Sealed | Phase::Uninitialized),
        memory_budget_bytes: u64::try_from(service.config.memory_budget).unwrap_or(u64::MAX),
        last_durable_commit: service.persister().map(|p| p.durable_seq()),
        recovering: service.recovering(),
        ..EnclaveMetrics::default()
    };
    service.request_metrics.fill(&mut metrics);
    let keys = service.state.read();
    metrics.memory_used_bytes = u64::try_from(keys.bytes()).unwrap_or(u64::MAX);
    metrics.keys = keys
        .census()
        .into_iter()
        .map(|((spec, state), count)| KeyCount {
            spec: spec.to_owned(),
            state: state.to_owned(),
            count,
        })
        .collect();
    metrics
}

/// Why one report did not reach the parent.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Connecting to the store channel failed.
    #[error("cannot connect to the store channel")]
    Connect(#[source] std::io::Error),
    /// Writing or reading the frame failed.
    #[error("store channel")]
    Wire(#[from] WireError),
    /// The parent closed the connection.
    #[error("the parent closed the metrics connection")]
    Closed,
    /// The parent did not answer within [`REPORT_INTERVAL`].
    #[error("the parent did not answer in time")]
    Timeout,
    /// The parent refused them.
    #[error("the parent refused the metrics: {0}")]
    Refused(String),
}

/// Sends the aggregates to the parent at `address` every [`REPORT_INTERVAL`], for ever; a
/// failed report drops the connection, and the next one connects again.
pub async fn report(service: Arc<Service>, address: Address) {
    let mut tick = tokio::time::interval(REPORT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut channel: Option<Stream> = None;
    let mut failing = false;
    loop {
        tick.tick().await;
        let metrics = snapshot(&service);
        let sent =
            tokio::time::timeout(REPORT_INTERVAL, report_once(&mut channel, &address, &metrics))
                .await
                .unwrap_or(Err(ReportError::Timeout));
        match sent {
            Ok(()) => failing = false,
            Err(e) => {
                channel = None;
                // Logged once per outage, not every 5 s.
                if !failing {
                    tracing::warn!(error = %e, "cannot report metrics to the parent");
                }
                failing = true;
            }
        }
    }
}

async fn report_once(
    channel: &mut Option<Stream>,
    address: &Address,
    metrics: &EnclaveMetrics,
) -> Result<(), ReportError> {
    let stream = match channel {
        Some(stream) => stream,
        None => channel.insert(
            transport::connect(address)
                .await
                .map_err(ReportError::Connect)?,
        ),
    };
    v1::write_frame(stream, &v1::Request::Metrics(metrics.clone())).await?;
    match v1::read_frame::<_, Response>(stream).await? {
        Some(Response::MetricsTaken) => Ok(()),
        Some(Response::Error { message }) => Err(ReportError::Refused(message)),
        Some(_) => Err(ReportError::Refused("an unexpected answer".to_owned())),
        None => Err(ReportError::Closed),
    }
}
