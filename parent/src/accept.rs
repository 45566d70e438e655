//! The accept step shared by the parent's listeners (the client relay and the store service):
//! room first, then a connection, with shutdown honoured at both waits.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ekms_shared::transport::{Listener, Stream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

/// Pause after an accept error that is not about one connection (e.g. out of file
/// descriptors), so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Waits for a permit of `limit` (one per open connection), then for a connection on
/// `listener`. `Ok(None)` once `shutdown` completes. An error that concerns one connection is
/// skipped; any other is logged and retried after a pause. `what` names the listener in logs.
///
/// # Errors
/// Only if `limit` was closed, which nothing does.
pub async fn next_connection<S: Future<Output = ()>>(
    listener: &Listener,
    limit: &Arc<Semaphore>,
    mut shutdown: Pin<&mut S>,
    what: &'static str,
) -> io::Result<Option<(OwnedSemaphorePermit, Stream, String)>> {
    let permit = tokio::select! {
        biased;
        () = shutdown.as_mut() => return Ok(None),
        permit = Arc::clone(limit).acquire_owned() => permit.map_err(io::Error::other)?,
    };
    loop {
        tokio::select! {
            biased;
            () = shutdown.as_mut() => return Ok(None),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => return Ok(Some((permit, stream, peer))),
                Err(e) if is_connection_error(&e) => {
                    debug!(listener = what, error = %e, "connection failed before accept");
                }
                Err(e) => {
                    warn!(listener = what, error = %e, "accept failed; retrying");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
        }
    }
}

/// Errors from `accept` that concern one connection, not the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Logs a connection task that panicked (a normal end says nothing).
pub fn log_task_end(result: Result<(), tokio::task::JoinError>, what: &'static str) {
    if let Err(e) = result {
        if e.is_panic() {
            warn!(listener = what, error = %e, "connection task panicked");
        }
    }
}
