//! The store channel's server side: frames in, one synced write per group of commits, answers
//! out in request order.
//!
//! Each connection has a reader and a writer. The reader decodes requests and, for each,
//! queues a one-shot answer slot in the connection's ordered queue before dispatching it, so the
//! writer sends answers in request order however they complete. `Ping` is answered at once,
//! `Load`, `Head` and `Fetch` on the blocking pool, and `Commit` goes to the single group writer (a thread of its
//! own), shared by all connections: it takes everything queued (up to a cap), applies it with
//! one [`Store::commit`] (one synced write) and answers each request.
//!
//! Everything is bounded: frames by [`MAX_FRAME_LEN`], connections by a semaphore, commits
//! waiting for the group writer by a channel, answers in flight per connection by the ordered
//! queue, and a group by a count and a byte total.

use std::future::Future;
use std::io;
use std::sync::{Arc, OnceLock};

use ekms_shared::transport::{Listener, Stream};
use ekms_shared::wire::v1::{
    decode_body, encode_frame, read_frame_body, Record, RecordKey, Request, Response, WireError,
    MAX_FETCH_KEYS, MAX_FRAME_LEN,
};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::accept;
use crate::holds::Holds;
use crate::metrics::Metrics;

use super::{error_chain, validate_batch, CommitBatch, Store, StoreError};

/// Room left in a `Records` frame for the CBOR around the records.
const RECORDS_FRAME_SLACK: usize = 4096;

/// CBOR bytes per record on top of its id and sealed bytes, counted generously (field names,
/// map and string headers).
const RECORD_OVERHEAD: usize = 64;

/// The service's bounds.
#[derive(Debug, Clone)]
pub struct StoreServiceConfig {
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Commits waiting for the group writer, over all connections; readers wait when full.
    pub commit_queue_len: usize,
    /// Most commits in one group (one `Store::commit`, one synced write).
    pub max_group_commits: usize,
    /// Most payload bytes in one group; a single larger commit still goes alone.
    pub max_group_bytes: usize,
    /// Requests read but not yet answered, per connection; the reader waits when full.
    pub max_in_flight_per_connection: usize,
    /// Most records in one `Records` answer, whatever `limit` asks for.
    pub max_load_records: usize,
    /// Where the relay's held answers wait for commits (`Request::Hold`); without it, `Hold`
    /// is refused.
    pub holds: Option<Arc<Holds>>,
    /// Where commit latencies, group sizes and the enclave's aggregates (`Request::Metrics`)
    /// go; without it, `Metrics` is answered `MetricsTaken` and dropped.
    pub metrics: Option<Arc<Metrics>>,
}

impl Default for StoreServiceConfig {
    fn default() -> Self {
        StoreServiceConfig {
            max_connections: 16,
            commit_queue_len: 1024,
            max_group_commits: 1024,
            max_group_bytes: 64 * 1024 * 1024,
            max_in_flight_per_connection: 256,
            max_load_records: 1024,
            holds: None,
            metrics: None,
        }
    }
}

/// A commit waiting for the group writer.
struct PendingCommit {
    batch: CommitBatch,
    payload_len: usize,
    reply: oneshot::Sender<Response>,
    /// The session whose held answers this commit releases (its connection's).
    session: Option<u64>,
}

/// Serves the store channel on `listener` with [`StoreServiceConfig::default`] until
/// `shutdown` completes.
///
/// # Errors
///
/// See [`serve_store_with`].
pub async fn serve_store(
    listener: Listener,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    serve_store_with(listener, store, StoreServiceConfig::default(), shutdown).await
}

/// Serves the store channel on `listener` until `shutdown` completes.
///
/// A failed commit is answered with `Error` (to every request of its group) and the service
/// goes on. A malformed request body is answered with `Error` and the connection goes on; a
/// broken frame (bad magic or version, oversize, truncated) is answered with `Error` and the
/// connection is closed, since the stream is no longer at a frame boundary.
///
/// On shutdown the listener is closed and connections are dropped; commits already queued are
/// still applied before this returns, though their answers may not reach the client (which
/// must treat an unanswered commit as unknown, as after a crash).
///
/// # Errors
///
/// `InvalidInput` if a bound in `config` is 0 or `max_connections` exceeds what a semaphore
/// allows. Errors of single connections are logged, not returned.
pub async fn serve_store_with(
    listener: Listener,
    store: Arc<dyn Store>,
    config: StoreServiceConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    check_config(&config)?;
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let (commits, queue) = mpsc::channel(config.commit_queue_len);
    let writer = {
        let store = Arc::clone(&store);
        let holds = config.holds.clone();
        let metrics = config.metrics.clone();
        let (max_commits, max_bytes) = (config.max_group_commits, config.max_group_bytes);
        std::thread::Builder::new()
            .name("ekms-store-writer".to_owned())
            .spawn(move || group_writer(store, holds, metrics, queue, max_commits, max_bytes))?
    };
    let config = Arc::new(config);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        while let Some(result) = tasks.try_join_next() {
            accept::log_task_end(result, "store");
        }
        let Some((permit, stream, peer)) =
            accept::next_connection(&listener, &limit, shutdown.as_mut(), "store").await?
        else {
            break;
        };
        debug!(peer, "store connection");
        let connection = Connection {
            store: Arc::clone(&store),
            commits: commits.clone(),
            config: Arc::clone(&config),
            session: Arc::new(OnceLock::new()),
        };
        tasks.spawn(async move {
            let _permit = permit;
            match connection.serve(stream).await {
                Ok(()) => debug!(peer, "store connection closed"),
                Err(e) => info!(peer, error = %error_chain(&e), "store connection failed"),
            }
        });
    }

    drop(listener);
    tasks.shutdown().await;
    drop(commits);
    // The group writer ends once every queued commit was applied and answered.
    match tokio::task::spawn_blocking(move || writer.join()).await {
        Ok(Ok(())) => {}
        Ok(Err(_panic)) => warn!("store group writer panicked"),
        Err(e) => warn!(error = %e, "waiting for the store group writer failed"),
    }
    info!("store service stopped");
    Ok(())
}

fn check_config(config: &StoreServiceConfig) -> io::Result<()> {
    let bounds = [
        ("max_connections", config.max_connections),
        ("commit_queue_len", config.commit_queue_len),
        ("max_group_commits", config.max_group_commits),
        ("max_group_bytes", config.max_group_bytes),
        (
            "max_in_flight_per_connection",
            config.max_in_flight_per_connection,
        ),
        ("max_load_records", config.max_load_records),
    ];
    for (name, value) in bounds {
        if value == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("store service: {name} must be at least 1"),
            ));
        }
    }
    if config.max_connections > Semaphore::MAX_PERMITS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "store service: max_connections must be at most {}",
                Semaphore::MAX_PERMITS
            ),
        ));
    }
    Ok(())
}

/// Applies queued commits in groups, one [`Store::commit`] each, until every sender is gone.
///
/// It runs on a thread of its own, blocking on the queue and in the synced write. A task on
/// the blocking pool would cost two more hand-offs per commit (to the pool and back), about a
/// third of a commit's round trip when few requests are waiting; and every request waits for
/// one.
fn group_writer(
    store: Arc<dyn Store>,
    holds: Option<Arc<Holds>>,
    metrics: Option<Arc<Metrics>>,
    mut queue: mpsc::Receiver<PendingCommit>,
    max_commits: usize,
    max_bytes: usize,
) {
    // A commit taken from the queue that did not fit in the previous group.
    let mut carried: Option<PendingCommit> = None;
    loop {
        let first = match carried.take() {
            Some(pending) => pending,
            None => match queue.blocking_recv() {
                Some(pending) => pending,
                None => break,
            },
        };
        let mut bytes = first.payload_len;
        let mut group = vec![first];
        // Whatever queued up while the previous group was being synced joins this one.
        while group.len() < max_commits {
            let Ok(pending) = queue.try_recv() else { break };
            if bytes.saturating_add(pending.payload_len) > max_bytes {
                carried = Some(pending);
                break;
            }
            bytes += pending.payload_len;
            group.push(pending);
        }
        let sessions: Vec<Option<u64>> = group.iter().map(|pending| pending.session).collect();
        let (batches, replies): (Vec<CommitBatch>, Vec<oneshot::Sender<Response>>) = group
            .into_iter()
            .map(|pending| (pending.batch, pending.reply))
            .unzip();
        let seqs: Vec<u64> = batches.iter().map(|batch| batch.seq).collect();
        // A panic fails this group, as an error would, and leaves the writer serving: the
        // store's lock is then poisoned, so later commits fail too, each with its reason.
        let started = std::time::Instant::now();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.commit(&batches)));
        if let Some(metrics) = &metrics {
            metrics.observe_group(batches.len(), started.elapsed());
        }
        // A full audit disk refuses the group before any of it is written, and clears once
        // space is freed: the enclave is told so, and takes the store's state again rather
        // than stop.
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some((
                format!("commit failed: {}", error_chain(&e)),
                matches!(e, StoreError::AuditDiskFull { .. }),
            )),
            Err(_panic) => Some(("commit failed: the store panicked".to_owned(), false)),
        };
        if let Some((message, _)) = &failure {
            warn!(commits = seqs.len(), error = %message, "group commit failed");
        } else {
            debug!(commits = seqs.len(), bytes, "group committed");
        }
        // Held answers first: the enclave learns of the commit from the reply, the clients
        // from their answers, and neither has to wait for the other.
        if let Some(holds) = &holds {
            for (seq, session) in seqs.iter().zip(sessions) {
                match (session, &failure) {
                    (Some(session), None) => holds.advance(session, *seq),
                    (Some(session), Some(_)) => holds.close(session),
                    (None, _) => {}
                }
            }
        }
        for (seq, reply) in seqs.into_iter().zip(replies) {
            let response = match &failure {
                None => Response::Committed { seq },
                Some((message, true)) => Response::Unavailable {
                    message: message.clone(),
                },
                Some((message, false)) => Response::Error {
                    message: message.clone(),
                },
            };
            // The connection may be gone; its client then never learns the outcome.
            let _ = reply.send(response);
        }
    }
}

/// What one connection needs from the service.
struct Connection {
    store: Arc<dyn Store>,
    commits: mpsc::Sender<PendingCommit>,
    config: Arc<StoreServiceConfig>,
    /// The session announced on this connection (`Request::Hold`), at most one.
    session: Arc<OnceLock<u64>>,
}

impl Connection {
    /// Reads requests and writes answers in order until the client closes or the stream
    /// breaks.
    async fn serve(self, stream: Stream) -> Result<(), WireError> {
        // Answers still held for this connection's commits are never released once it ends:
        // the enclave behind it is gone or lost its channel.
        struct CloseOnEnd(Option<Arc<Holds>>, Arc<OnceLock<u64>>);
        impl Drop for CloseOnEnd {
            fn drop(&mut self) {
                if let (Some(holds), Some(session)) = (&self.0, self.1.get()) {
                    holds.close(*session);
                }
            }
        }
        let _close = CloseOnEnd(self.config.holds.clone(), Arc::clone(&self.session));
        let (mut reader, mut writer) = tokio::io::split(stream);
        let (order, mut answers) =
            mpsc::channel::<oneshot::Receiver<Response>>(self.config.max_in_flight_per_connection);

        let write_answers = async move {
            while let Some(answer) = answers.recv().await {
                let response = answer.await.unwrap_or_else(|_| Response::Error {
                    message: "internal error: the request was dropped unanswered".to_owned(),
                });
                writer.write_all(&encode_response(&response)).await?;
                if answers.is_empty() {
                    writer.flush().await?;
                }
            }
            writer.shutdown().await?;
            Ok::<(), WireError>(())
        };

        let read_requests = async move {
            loop {
                let frame = match read_frame_body(&mut reader).await {
                    Ok(Some(body)) => Ok(body),
                    Ok(None) => return Ok(()),
                    Err(e) => Err(e),
                };
                // The answer's place in the order is taken before the request is dispatched.
                let (reply, answer) = oneshot::channel();
                if order.send(answer).await.is_err() {
                    // The writer is gone: the client stopped reading or the stream broke.
                    return Ok(());
                }
                match frame {
                    Ok(body) => self.dispatch(&body, reply).await,
                    Err(e) => {
                        let _ = reply.send(Response::Error {
                            message: format!("bad frame; closing: {}", error_chain(&e)),
                        });
                        return Err(e);
                    }
                }
            }
        };

        tokio::pin!(write_answers, read_requests);
        tokio::select! {
            read = &mut read_requests => {
                // The ordered queue is closed: the writer sends what is left, then ends.
                let written = write_answers.await;
                read.and(written)
            }
            written = &mut write_answers => written,
        }
    }

    /// Starts answering one request body; the answer goes to `reply`.
    async fn dispatch(&self, body: &[u8], reply: oneshot::Sender<Response>) {
        let request = match decode_body::<Request>(body) {
            Ok(request) => request,
            Err(e) => {
                let _ = reply.send(Response::Error {
                    message: format!("malformed request: {}", error_chain(&e)),
                });
                return;
            }
        };
        match request {
            Request::Ping => {
                let _ = reply.send(Response::Pong);
            }
            Request::Hold { session } => {
                let response = match &self.config.holds {
                    None => Response::Error {
                        message: "this store service does not hold answers".to_owned(),
                    },
                    Some(holds) => match self.session.set(session) {
                        Ok(()) => {
                            holds.open(session);
                            Response::Holding
                        }
                        Err(_) => Response::Error {
                            message: "a session was already announced on this connection"
                                .to_owned(),
                        },
                    },
                };
                let _ = reply.send(response);
            }
            Request::Head => {
                let store = Arc::clone(&self.store);
                tokio::spawn(async move {
                    let head = tokio::task::spawn_blocking(move || store.head()).await;
                    let _ = reply.send(match head {
                        Ok(Ok(seq)) => Response::Head { seq },
                        Ok(Err(e)) => Response::Error {
                            message: format!("reading the head failed: {}", error_chain(&e)),
                        },
                        Err(e) => Response::Error {
                            message: format!("reading the head failed: the store task ended: {e}"),
                        },
                    });
                });
            }
            Request::Fetch { at, keys } => {
                if keys.len() > MAX_FETCH_KEYS {
                    let _ = reply.send(Response::Error {
                        message: format!(
                            "fetch refused: {} records asked, at most {MAX_FETCH_KEYS}",
                            keys.len()
                        ),
                    });
                    return;
                }
                let store = Arc::clone(&self.store);
                tokio::spawn(async move {
                    let _ = reply.send(fetch(store, at, keys).await);
                });
            }
            Request::Load { after, limit } => {
                let limit = usize::try_from(limit)
                    .unwrap_or(usize::MAX)
                    .clamp(1, self.config.max_load_records);
                let store = Arc::clone(&self.store);
                tokio::spawn(async move {
                    let _ = reply.send(load(store, after, limit).await);
                });
            }
            Request::Commit {
                seq,
                base,
                puts,
                deletes,
                audit,
            } => {
                let batch = CommitBatch {
                    seq,
                    base,
                    puts,
                    deletes,
                    audit: audit.into_iter().map(|line| line.into_vec()).collect(),
                    session: self.session.get().copied(),
                };
                // Refused alone, so that it does not fail the group it would join.
                if let Err(e) = validate_batch(&batch) {
                    let _ = reply.send(Response::Error {
                        message: format!("commit refused: {}", error_chain(&e)),
                    });
                    return;
                }
                let pending = PendingCommit {
                    payload_len: batch.payload_len(),
                    batch,
                    reply,
                    session: self.session.get().copied(),
                };
                if let Err(mpsc::error::SendError(pending)) = self.commits.send(pending).await {
                    let _ = pending.reply.send(Response::Error {
                        message: "commit refused: the store service is shutting down".to_owned(),
                    });
                }
            }
            Request::Metrics(aggregates) => {
                let response = match &self.config.metrics {
                    None => Response::MetricsTaken,
                    Some(metrics) => match metrics.take_enclave(aggregates) {
                        Ok(()) => Response::MetricsTaken,
                        Err(e) => Response::Error {
                            message: format!("metrics refused: {e}"),
                        },
                    },
                };
                let _ = reply.send(response);
            }
            // A request this parent does not know (a newer enclave): answered, not fatal.
            _ => {
                let _ = reply.send(Response::Error {
                    message: "unsupported request".to_owned(),
                });
            }
        }
    }
}

/// One `Load` page, cut short (with `done: false`) so that its frame stays under
/// [`MAX_FRAME_LEN`].
async fn load(store: Arc<dyn Store>, after: Option<RecordKey>, limit: usize) -> Response {
    let loaded = tokio::task::spawn_blocking(move || store.load(after.as_ref(), limit)).await;
    let (mut records, mut done) = match loaded {
        Ok(Ok(page)) => page,
        Ok(Err(e)) => {
            return Response::Error {
                message: format!("load failed: {}", error_chain(&e)),
            }
        }
        Err(e) => {
            return Response::Error {
                message: format!("load failed: the store task ended: {e}"),
            }
        }
    };
    let budget = MAX_FRAME_LEN - RECORDS_FRAME_SLACK;
    let mut used = 0usize;
    let fits = records
        .iter()
        .position(|record: &Record| {
            used = used.saturating_add(record.key.id.len() + record.sealed.len() + RECORD_OVERHEAD);
            used > budget
        })
        .unwrap_or(records.len());
    if fits < records.len() {
        // Always at least one record, so that paging progresses; a record too large for any
        // frame is reported by `encode_response`.
        records.truncate(fits.max(1));
        done = false;
    }
    Response::Records { records, done }
}

/// One `Fetch`: the records that exist, cut short (with `through` below the keys asked) so
/// that the frame stays under [`MAX_FRAME_LEN`].
async fn fetch(store: Arc<dyn Store>, at: Option<u64>, keys: Vec<RecordKey>) -> Response {
    let asked = keys.len();
    let read = tokio::task::spawn_blocking(move || {
        store
            .fetch(at, &keys)
            .map(|(at, values)| (at, keys, values))
    })
    .await;
    let (at, keys, values) = match read {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => {
            return Response::Error {
                message: format!("fetch failed: {}", error_chain(&e)),
            }
        }
        Err(e) => {
            return Response::Error {
                message: format!("fetch failed: the store task ended: {e}"),
            }
        }
    };
    if values.len() != asked {
        return Response::Error {
            message: format!(
                "fetch failed: the store answered {} of {asked} records",
                values.len()
            ),
        };
    }
    let budget = MAX_FRAME_LEN - RECORDS_FRAME_SLACK;
    let mut used = 0usize;
    let mut records = Vec::new();
    let mut through = 0usize;
    for (key, value) in keys.into_iter().zip(values) {
        let size = key.id.len() + value.as_ref().map_or(0, Vec::len) + RECORD_OVERHEAD;
        used = used.saturating_add(size);
        // Always at least one key, so that the enclave progresses; a record too large for any
        // frame is reported by `encode_response`.
        if used > budget && through > 0 {
            break;
        }
        through += 1;
        if let Some(sealed) = value {
            records.push(Record { key, sealed });
        }
    }
    Response::Fetched {
        at,
        records,
        through: u32::try_from(through).unwrap_or(u32::MAX),
    }
}

/// The frame for `response`, or for an `Error` saying why it cannot be sent.
fn encode_response(response: &Response) -> Vec<u8> {
    match encode_frame(response) {
        Ok(frame) => frame,
        Err(e) => {
            warn!(error = %error_chain(&e), "cannot encode a store answer");
            let error = Response::Error {
                message: format!("cannot encode the answer: {}", error_chain(&e)),
            };
            // A short message always encodes; if it somehow did not, the client would see the
            // connection end.
            encode_frame(&error).unwrap_or_default()
        }
    }
}
