//! The metrics listener: `GET /metrics`, `/healthz` and `/readyz` over HTTP/1.1, nothing else.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use ekms_shared::transport::Listener;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::Metrics;
use crate::accept;

/// Scrapes served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 16;

/// The OpenMetrics text format, which Prometheus reads.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown` completes.
///
/// # Errors
/// Only if accepting fails for good (see `accept::next_connection`).
pub async fn serve_metrics(
    listener: Listener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while let Some(result) = tasks.try_join_next() {
            accept::log_task_end(result, "metrics");
        }
        let Some((permit, stream, peer)) =
            accept::next_connection(&listener, &limit, shutdown.as_mut(), "metrics").await?
        else {
            break;
        };
        let metrics = Arc::clone(&metrics);
        tasks.spawn(async move {
            let _permit = permit;
            let service = service_fn(move |request| {
                let metrics = Arc::clone(&metrics);
                async move { Ok::<_, Infallible>(answer(&metrics, &request)) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(peer, error = %e, "metrics connection failed");
            }
        });
    }
    tasks.shutdown().await;
    Ok(())
}

/// The answer to one request.
fn answer<B>(metrics: &Metrics, request: &Request<B>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    match request.uri().path() {
        "/metrics" => match metrics.encode() {
            Ok(body) => Response::builder()
                .header(hyper::header::CONTENT_TYPE, OPENMETRICS)
                .body(Full::new(Bytes::from(body)))
                .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "\n")),
            Err(_) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the metrics\n",
            ),
        },
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => match metrics.ready() {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("not ready: {}\n", why.reason()),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: /metrics, /healthz, /readyz\n",
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
