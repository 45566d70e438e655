//! The relay: client TCP connections to enclave streams.
//!
//! Each accepted client gets a new stream to the enclave, and bytes are copied both ways
//! until both sides have finished. A client's bytes go to the enclave as they are; the
//! enclave's come in frames ([`ekms_shared::release`]), each passed on to the client once the
//! commit it waits for is durable ([`crate::holds`]). The relay never parses what it carries
//! beyond those frame headers: TLS and authentication end inside the enclave, so the parent
//! sees only ciphertext and can neither read nor forge a request. What the relay does guard is
//! the parent itself: a bounded number of connections, a connect timeout towards the enclave,
//! and an idle timeout so a silent peer cannot hold a slot forever.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ekms_shared::transport::{self, Address, Listener, Stream, LINGER, LINGER_BYTES};

use crate::accept;
use crate::holds::{Holds, Release};
use ekms_shared::release::{FrameError, FrameReader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Size of each of the two per-connection buffers (one per direction).
const BUFFER_LEN: usize = 16 * 1024;

/// How long in-flight connections may continue after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How the relay reaches the enclave and what it allows clients.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Where each relayed connection goes: vsock in production, TCP or Unix in mock mode.
    pub enclave: Address,
    /// Connections relayed at once; further clients wait in the listen backlog. At least 1.
    pub max_connections: usize,
    /// A connection is closed once no byte moved in either direction for this long.
    pub idle_timeout: Duration,
    /// How long to wait for the enclave to accept a new stream.
    pub connect_timeout: Duration,
    /// Where answers wait for the store ([`ekms_shared::release`]). While no store session
    /// is open on it (a relay without a store), only answers that wait for nothing are
    /// delivered.
    pub holds: Arc<Holds>,
}

/// `ekms-parent`'s defaults: connections relayed at once, idle and connect timeouts (seconds).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 300;
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 5;

impl RelayConfig {
    /// Relays to `enclave` with `ekms-parent`'s defaults.
    pub fn with_defaults(enclave: Address) -> Self {
        RelayConfig {
            enclave,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS),
            connect_timeout: Duration::from_secs(DEFAULT_CONNECT_TIMEOUT_SECS),
            holds: Arc::default(),
        }
    }
}

/// Counters of a running relay, cheap to clone and to read (for metrics).
#[derive(Debug, Clone, Default)]
pub struct RelayStats {
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    active: AtomicU64,
    accepted: AtomicU64,
    enclave_unreachable: AtomicU64,
    bytes_to_enclave: AtomicU64,
    bytes_to_client: AtomicU64,
}

impl RelayStats {
    /// Client connections currently open (including those still connecting to the enclave).
    pub fn active_connections(&self) -> u64 {
        self.counters.active.load(Ordering::Relaxed)
    }

    /// Client connections accepted since start.
    pub fn total_connections(&self) -> u64 {
        self.counters.accepted.load(Ordering::Relaxed)
    }

    /// Client connections closed because the enclave could not be reached in time.
    pub fn enclave_unreachable(&self) -> u64 {
        self.counters.enclave_unreachable.load(Ordering::Relaxed)
    }

    /// Bytes delivered from clients to the enclave.
    pub fn bytes_to_enclave(&self) -> u64 {
        self.counters.bytes_to_enclave.load(Ordering::Relaxed)
    }

    /// Bytes delivered from the enclave to clients.
    pub fn bytes_to_client(&self) -> u64 {
        self.counters.bytes_to_client.load(Ordering::Relaxed)
    }
}

/// Counts a connection as active for as long as it lives, also when its task is aborted.
struct ActiveGuard(Arc<Counters>);

impl ActiveGuard {
    fn new(counters: &Arc<Counters>) -> Self {
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        counters.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(Arc::clone(counters))
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Relays connections from `listener` to `config.enclave` until `shutdown` completes.
///
/// Same as [`serve_with_stats`] with counters nobody reads.
///
/// # Errors
///
/// See [`serve_with_stats`].
pub async fn serve(
    listener: Listener,
    config: RelayConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    serve_with_stats(listener, config, RelayStats::default(), shutdown).await
}

/// Relays connections from `listener` to `config.enclave` until `shutdown` completes,
/// counting into `stats`.
///
/// At most `config.max_connections` connections are relayed at once: a permit is taken
/// before accepting, so further clients wait in the kernel's listen backlog. Each client gets
/// its own enclave stream; a failure on one connection (enclave unreachable, reset, idle
/// timeout) closes that connection only and is logged. Once `shutdown` completes the
/// listener is closed, in-flight connections get a short grace, and the rest are dropped.
///
/// # Errors
///
/// `InvalidInput` if `config.max_connections` is 0 or larger than the semaphore allows.
/// Errors from accepting or relaying single connections are logged, not returned.
pub async fn serve_with_stats(
    listener: Listener,
    config: RelayConfig,
    stats: RelayStats,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    if config.max_connections == 0 || config.max_connections > Semaphore::MAX_PERMITS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "max_connections must be from 1 to {}, not {}",
                Semaphore::MAX_PERMITS,
                config.max_connections
            ),
        ));
    }
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let config = Arc::new(config);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        // Reap finished connections so the set does not grow without bound.
        while let Some(result) = tasks.try_join_next() {
            accept::log_task_end(result, "relay");
        }
        let Some((permit, client, peer)) =
            accept::next_connection(&listener, &limit, shutdown.as_mut(), "relay").await?
        else {
            break;
        };
        let guard = ActiveGuard::new(&stats.counters);
        let config = Arc::clone(&config);
        tasks.spawn(async move {
            let _permit = permit;
            handle_connection(client, &peer, &config, &guard.0).await;
            drop(guard);
        });
    }

    drop(listener);
    while let Some(result) = tasks.try_join_next() {
        accept::log_task_end(result, "relay");
    }
    info!(
        in_flight = tasks.len(),
        "relay stopped accepting; draining connections"
    );
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while let Some(result) = tasks.join_next().await {
            accept::log_task_end(result, "relay");
        }
    })
    .await;
    if drained.is_err() {
        info!(
            dropped = tasks.len(),
            "grace period over; dropping remaining connections"
        );
        tasks.shutdown().await;
    }
    Ok(())
}

/// Connects one client to a new enclave stream and relays until both sides are done.
async fn handle_connection(client: Stream, peer: &str, config: &RelayConfig, counters: &Counters) {
    let enclave = match tokio::time::timeout(
        config.connect_timeout,
        transport::connect(&config.enclave),
    )
    .await
    {
        Ok(Ok(enclave)) => enclave,
        Ok(Err(e)) => {
            counters.enclave_unreachable.fetch_add(1, Ordering::Relaxed);
            warn!(peer, enclave = %config.enclave, error = %e, "cannot reach the enclave; closing client connection");
            return;
        }
        Err(_elapsed) => {
            counters.enclave_unreachable.fetch_add(1, Ordering::Relaxed);
            warn!(peer, enclave = %config.enclave, timeout = ?config.connect_timeout, "enclave did not accept in time; closing client connection");
            return;
        }
    };
    debug!(peer, "relaying");
    match relay(
        client,
        enclave,
        config.idle_timeout,
        counters,
        &config.holds,
    )
    .await
    {
        Ok(End::Finished) => debug!(peer, "connection finished"),
        Ok(End::Idle) => {
            debug!(peer, timeout = ?config.idle_timeout, "connection idle; closed")
        }
        Ok(End::Lingered) => debug!(peer, "enclave closed first; client drained and closed"),
        Err(e) => debug!(peer, error = %e, "connection failed"),
    }
}

/// How a relayed connection ended without error.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Both sides sent EOF and every byte was delivered.
    Finished,
    /// No byte moved in either direction for the idle timeout.
    Idle,
    /// The enclave stopped reading; its answer was delivered and the client's remaining
    /// bytes were read and dropped until it closed, or for [`LINGER`] / [`LINGER_BYTES`].
    Lingered,
}

/// Copies bytes both ways between `client` and `enclave` until both directions have ended
/// (EOF read and passed on as a write shutdown), an error occurs, or nothing moved for
/// `idle_timeout`.
///
/// The enclave may answer and close before reading all a client sends (a request over the
/// body limit). Writing to it then fails, but its answer is still to be delivered: the
/// client-to-enclave direction turns to reading and dropping the client's bytes, the answer
/// and an orderly close go to the client, and the relay keeps draining for a bounded time
/// ([`LINGER`], [`LINGER_BYTES`], once the answer is delivered; until then the idle timeout
/// bounds it) so that closing does not reset the connection under a client still reading. A
/// failed read from the enclave likewise ends that direction like an EOF, after what it had
/// delivered.
/// Errors on the client's side end the relay at once: nobody is left to deliver to.
///
/// One explicit loop, one buffer per direction. Every branch of the `select!` is
/// cancel-safe: a [`Pipe::step`] performs a single `read`, `write`, `flush` or `shutdown`
/// and updates its state only once that operation completed.
async fn relay(
    client: Stream,
    enclave: Stream,
    idle_timeout: Duration,
    counters: &Counters,
    holds: &Holds,
) -> io::Result<End> {
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut enclave_read, mut enclave_write) = tokio::io::split(enclave);
    let mut up = Pipe::new();
    let mut down = Answers::new();
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    // Armed when the enclave stops reading: the bound on draining the client.
    let linger = tokio::time::sleep(idle_timeout);
    tokio::pin!(linger);

    while !(up.done && down.done) {
        let moved = tokio::select! {
            step = up.step(&mut client_read, &mut enclave_write), if !up.done => {
                match step {
                    Ok(Step::Wrote(n)) => {
                        counters.bytes_to_enclave.fetch_add(n, Ordering::Relaxed);
                        true
                    }
                    Ok(Step::Dropped) if down.done && up.dropped > LINGER_BYTES as u64 => {
                        return Ok(End::Lingered)
                    }
                    Ok(step) => step.moved(),
                    Err(Failed::Write(e)) => {
                        debug!(error = %e, "the enclave stopped reading; draining the client");
                        up.drop_from_now();
                        linger.as_mut().reset(Instant::now() + LINGER);
                        false
                    }
                    Err(Failed::Read(e)) => return Err(e),
                }
            }
            step = down.step(&mut enclave_read, &mut client_write, holds), if !down.done => {
                match step {
                    Ok(Step::Wrote(n)) => {
                        counters.bytes_to_client.fetch_add(n, Ordering::Relaxed);
                        true
                    }
                    Ok(step) => step.moved(),
                    Err(Failed::Read(e)) => {
                        debug!(error = %e, "reading from the enclave failed; closing towards the client");
                        down.eof = true;
                        false
                    }
                    Err(Failed::Write(e)) => return Err(e),
                }
            }
            () = &mut idle => return Ok(End::Idle),
            // The answer first: the bounds apply once it was delivered.
            () = &mut linger, if up.dropping && down.done => return Ok(End::Lingered),
        };
        if moved {
            idle.as_mut().reset(Instant::now() + idle_timeout);
        }
    }
    Ok(if up.dropping {
        End::Lingered
    } else {
        End::Finished
    })
}

/// One direction of a relayed connection.
struct Pipe {
    buf: Box<[u8]>,
    /// Bytes `buf[start..end]` were read but not yet written.
    start: usize,
    end: usize,
    /// Everything read so far was written but not yet flushed.
    unflushed: bool,
    /// The reading side sent EOF.
    eof: bool,
    /// EOF was passed on: the writing side was shut down (or, when dropping, EOF was read).
    done: bool,
    /// The writing side failed: what is read is dropped, nothing more is written.
    dropping: bool,
    /// Bytes read and dropped.
    dropped: u64,
}

/// What one [`Pipe::step`] did.
#[derive(Debug, Clone, Copy)]
enum Step {
    Read(u64),
    /// A held answer was released.
    Released,
    Wrote(u64),
    Dropped,
    Flushed,
    Eof,
    ShutDown,
}

/// Which side of a [`Pipe::step`] or [`Answers::step`] failed. An answer that may never be
/// released fails the writing side: the client's connection is closed without it.
#[derive(Debug)]
enum Failed {
    Read(io::Error),
    Write(io::Error),
}

impl Failed {
    fn never_released() -> Failed {
        Failed::Write(io::Error::other(
            "an answer will never be released: its commit failed or its store session ended",
        ))
    }
}

impl Step {
    /// Whether bytes moved, which resets the idle timer.
    fn moved(self) -> bool {
        matches!(self, Step::Read(n) | Step::Wrote(n) if n > 0)
    }
}

impl Pipe {
    fn new() -> Self {
        Pipe {
            buf: vec![0; BUFFER_LEN].into_boxed_slice(),
            start: 0,
            end: 0,
            unflushed: false,
            eof: false,
            done: false,
            dropping: false,
            dropped: 0,
        }
    }

    /// From now on read and drop: the writing side is gone.
    fn drop_from_now(&mut self) {
        self.dropping = true;
        self.start = 0;
        self.end = 0;
        self.unflushed = false;
        self.done = self.eof;
    }

    /// Does the next single operation: write buffered bytes, else flush them, else read
    /// more, else (after EOF) shut the writer down. When dropping, only reads (until EOF).
    /// Cancel-safe: state changes only after the operation completed, and tokio's
    /// `read`/`write` do nothing when cancelled.
    async fn step<R, W>(&mut self, reader: &mut R, writer: &mut W) -> Result<Step, Failed>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.dropping {
            let n = reader.read(&mut self.buf).await.map_err(Failed::Read)?;
            if n == 0 {
                self.eof = true;
                self.done = true;
                return Ok(Step::Eof);
            }
            self.dropped += n as u64;
            return Ok(Step::Dropped);
        }
        if self.start < self.end {
            let n = writer
                .write(&self.buf[self.start..self.end])
                .await
                .map_err(Failed::Write)?;
            if n == 0 {
                return Err(Failed::Write(io::ErrorKind::WriteZero.into()));
            }
            self.start += n;
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
                self.unflushed = true;
            }
            return Ok(Step::Wrote(n as u64));
        }
        if self.unflushed {
            writer.flush().await.map_err(Failed::Write)?;
            self.unflushed = false;
            return Ok(Step::Flushed);
        }
        if !self.eof {
            let n = reader.read(&mut self.buf).await.map_err(Failed::Read)?;
            if n == 0 {
                self.eof = true;
                return Ok(Step::Eof);
            }
            self.end = n;
            return Ok(Step::Read(n as u64));
        }
        writer.shutdown().await.map_err(Failed::Write)?;
        self.done = true;
        Ok(Step::ShutDown)
    }
}

/// The enclave-to-client direction: frames in, each payload out once it is released.
struct Answers {
    frames: FrameReader,
    front: Front,
    /// Everything written so far was not yet flushed.
    unflushed: bool,
    /// The enclave sent EOF (or its frames broke).
    eof: bool,
    /// EOF was passed on: the client's side was shut down.
    done: bool,
}

/// Where the front frame stands.
enum Front {
    /// No whole frame yet.
    Reading,
    /// Whole, waiting for its release.
    Waiting(oneshot::Receiver<()>),
    /// Released; this many of its bytes went to the client.
    Released(usize),
}

impl Answers {
    fn new() -> Self {
        Answers {
            frames: FrameReader::new(),
            front: Front::Reading,
            unflushed: false,
            eof: false,
            done: false,
        }
    }

    /// Does the next single operation: write released bytes, else wait for the front frame's
    /// release, else flush, else read a whole frame, else (after EOF) shut the writer down.
    /// Cancel-safe as [`Pipe::step`] is: the frame reader keeps what it read, and the wait
    /// for a release is kept until it resolves.
    async fn step<R, W>(
        &mut self,
        reader: &mut R,
        writer: &mut W,
        holds: &Holds,
    ) -> Result<Step, Failed>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        match &mut self.front {
            Front::Released(written) => {
                let payload = &self.frames.payload()[*written..];
                let n = writer.write(payload).await.map_err(Failed::Write)?;
                if n == 0 {
                    return Err(Failed::Write(io::ErrorKind::WriteZero.into()));
                }
                *written += n;
                if *written == self.frames.payload().len() {
                    self.frames.consume();
                    self.front = Front::Reading;
                    self.unflushed = true;
                }
                return Ok(Step::Wrote(n as u64));
            }
            Front::Waiting(release) => {
                release.await.map_err(|_| Failed::never_released())?;
                self.front = Front::Released(0);
                return Ok(Step::Released);
            }
            Front::Reading => {}
        }
        if self.unflushed {
            writer.flush().await.map_err(Failed::Write)?;
            self.unflushed = false;
            return Ok(Step::Flushed);
        }
        if !self.eof {
            let hold = match self.frames.fill(reader).await {
                Ok(Some(hold)) => hold,
                Ok(None) => {
                    self.eof = true;
                    return Ok(Step::Eof);
                }
                Err(FrameError::Io(e)) => return Err(Failed::Read(e)),
                Err(e) => return Err(Failed::Read(io::Error::new(io::ErrorKind::InvalidData, e))),
            };
            self.front = match holds.release(hold) {
                Release::Now => Front::Released(0),
                Release::Later(release) => Front::Waiting(release),
                Release::Never => return Err(Failed::never_released()),
            };
            return Ok(Step::Read(self.frames.payload().len() as u64));
        }
        writer.shutdown().await.map_err(Failed::Write)?;
        self.done = true;
        Ok(Step::ShutDown)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ekms_shared::release::{Hold, HoldCell, HoldWriter};
    use std::path::PathBuf;
    use std::sync::atomic::AtomicU32;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;
    use tokio::time::timeout;

    /// Upper bound on any wait, so a bug fails the test instead of hanging it.
    const WAIT: Duration = Duration::from_secs(10);

    fn temp_socket_path(name: &str) -> PathBuf {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("ekms-relay-{}-{name}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    fn loopback() -> Address {
        Address::Tcp("127.0.0.1:0".to_owned())
    }

    /// A stand-in enclave that echoes every connection back, half-close included.
    async fn echo_server(addr: &Address) -> Address {
        let listener = Listener::bind(addr).await.unwrap();
        let local = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let stream = framed(stream);
                    let (mut read, mut write) = tokio::io::split(stream);
                    if tokio::io::copy(&mut read, &mut write).await.is_ok() {
                        let _ = write.shutdown().await;
                    }
                });
            }
        });
        local
    }

    /// A stand-in enclave that answers only after it saw EOF: "received N bytes".
    async fn reply_after_eof_server(addr: &Address) -> Address {
        let listener = Listener::bind(addr).await.unwrap();
        let local = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut stream = framed(stream);
                    let mut request = Vec::new();
                    if stream.read_to_end(&mut request).await.is_ok() {
                        let reply = format!("received {} bytes", request.len());
                        let _ = stream.write_all(reply.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    }
                });
            }
        });
        local
    }

    /// The stream as the enclave writes to the relay: in frames, here held for nothing.
    fn framed(stream: Stream) -> HoldWriter<Stream> {
        HoldWriter::new(stream, Arc::new(HoldCell::default()))
    }

    struct Running {
        addr: Address,
        stats: RelayStats,
        stop: oneshot::Sender<()>,
        task: JoinHandle<io::Result<()>>,
    }

    async fn start_relay(
        listen: &Address,
        enclave: Address,
        max_connections: usize,
        idle_timeout: Duration,
    ) -> Running {
        start_relay_holding(
            listen,
            enclave,
            max_connections,
            idle_timeout,
            Arc::default(),
        )
        .await
    }

    async fn start_relay_holding(
        listen: &Address,
        enclave: Address,
        max_connections: usize,
        idle_timeout: Duration,
        holds: Arc<Holds>,
    ) -> Running {
        let listener = Listener::bind(listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = RelayStats::default();
        let (stop, stopped) = oneshot::channel::<()>();
        let config = RelayConfig {
            enclave,
            max_connections,
            idle_timeout,
            connect_timeout: Duration::from_secs(2),
            holds,
        };
        let task = tokio::spawn(serve_with_stats(
            listener,
            config,
            stats.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        Running {
            addr,
            stats,
            stop,
            task,
        }
    }

    /// Sends `message`, half-closes, and returns everything received until EOF.
    async fn exchange(addr: &Address, message: &[u8]) -> Vec<u8> {
        let mut client = transport::connect(addr).await.unwrap();
        client.write_all(message).await.unwrap();
        client.shutdown().await.unwrap();
        let mut reply = Vec::new();
        timeout(WAIT, client.read_to_end(&mut reply))
            .await
            .unwrap()
            .unwrap();
        reply
    }

    async fn eventually(what: &str, condition: impl Fn() -> bool) {
        let waited = timeout(WAIT, async {
            while !condition() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "timed out waiting until {what}");
    }

    #[tokio::test]
    async fn relays_over_tcp() {
        let enclave = echo_server(&loopback()).await;
        let relay = start_relay(&loopback(), enclave, 16, WAIT).await;
        assert_eq!(
            exchange(&relay.addr, b"hello enclave").await,
            b"hello enclave"
        );
        eventually("the connection is closed", || {
            relay.stats.active_connections() == 0
        })
        .await;
        assert_eq!(relay.stats.total_connections(), 1);
        assert_eq!(relay.stats.bytes_to_enclave(), 13);
        assert_eq!(relay.stats.bytes_to_client(), 13);
    }

    #[tokio::test]
    async fn relays_over_unix() {
        let enclave_path = temp_socket_path("enclave");
        let listen_path = temp_socket_path("listen");
        let enclave = echo_server(&Address::Unix(enclave_path.clone())).await;
        let relay = start_relay(&Address::Unix(listen_path.clone()), enclave, 16, WAIT).await;
        assert_eq!(exchange(&relay.addr, b"over unix").await, b"over unix");
        let _ = std::fs::remove_file(enclave_path);
        let _ = std::fs::remove_file(listen_path);
    }

    #[tokio::test]
    async fn large_transfer_is_intact_both_ways() {
        const LEN: usize = 8 * 1024 * 1024;
        // 251 is prime, so the pattern never lines up with buffer boundaries.
        let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
        let enclave = echo_server(&loopback()).await;
        let relay = start_relay(&loopback(), enclave, 16, WAIT).await;

        let client = transport::connect(&relay.addr).await.unwrap();
        let (mut read, mut write) = tokio::io::split(client);
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            write.write_all(&sent).await.unwrap();
            write.shutdown().await.unwrap();
        });
        let mut received = Vec::with_capacity(LEN);
        timeout(WAIT, read.read_to_end(&mut received))
            .await
            .unwrap()
            .unwrap();
        timeout(WAIT, writer).await.unwrap().unwrap();
        assert_eq!(received.len(), LEN);
        assert!(received == data, "relayed bytes differ from those sent");

        eventually("the connection is closed", || {
            relay.stats.active_connections() == 0
        })
        .await;
        assert_eq!(relay.stats.bytes_to_enclave(), LEN as u64);
        assert_eq!(relay.stats.bytes_to_client(), LEN as u64);
    }

    /// The client shuts down its write half; the enclave answers only after seeing that EOF,
    /// and the answer must still reach the client.
    #[tokio::test]
    async fn half_close_still_delivers_the_reply() {
        let enclave = reply_after_eof_server(&loopback()).await;
        let relay = start_relay(&loopback(), enclave, 16, WAIT).await;
        assert_eq!(exchange(&relay.addr, b"ping").await, b"received 4 bytes");
        assert_eq!(exchange(&relay.addr, b"").await, b"received 0 bytes");
    }

    /// A stand-in enclave that reads a little, answers "refused" and closes at once, leaving
    /// the rest of the upload unread (so its kernel resets the connection).
    async fn refuse_early_server(addr: &Address) -> Address {
        let listener = Listener::bind(addr).await.unwrap();
        let local = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut stream = framed(stream);
                    let mut head = [0u8; 16];
                    if stream.read_exact(&mut head).await.is_ok() {
                        let _ = stream.write_all(b"refused").await;
                    }
                    drop(stream);
                });
            }
        });
        local
    }

    /// The enclave answers before reading the whole upload and closes (an oversized request):
    /// the answer must still reach a client that is still sending, not a reset.
    #[tokio::test]
    async fn early_answer_reaches_a_client_still_sending() {
        for transport_kind in ["tcp", "unix"] {
            let (enclave_addr, listen) = match transport_kind {
                "tcp" => (loopback(), loopback()),
                _ => (
                    Address::Unix(temp_socket_path("refusing")),
                    Address::Unix(temp_socket_path("refusing-listen")),
                ),
            };
            let enclave = refuse_early_server(&enclave_addr).await;
            let relay = start_relay(&listen, enclave, 16, WAIT).await;
            for round in 0..20 {
                let client = transport::connect(&relay.addr).await.unwrap();
                let (mut read, mut write) = tokio::io::split(client);
                let writer = tokio::spawn(async move {
                    let upload = vec![b'A'; 4 * 1024 * 1024];
                    let _ = write.write_all(&upload).await;
                    write
                });
                let mut received = Vec::new();
                let mut chunk = [0u8; 64];
                let outcome = timeout(WAIT, async {
                    loop {
                        match read.read(&mut chunk).await {
                            Ok(0) => return Ok(()),
                            Ok(n) => received.extend_from_slice(&chunk[..n]),
                            Err(e) => return Err(e),
                        }
                    }
                })
                .await
                .unwrap();
                writer.abort();
                assert_eq!(
                    received.as_slice(),
                    b"refused",
                    "{transport_kind}, round {round}: {outcome:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn idle_connection_is_closed() {
        let idle = Duration::from_millis(200);
        let enclave = echo_server(&loopback()).await;
        let relay = start_relay(&loopback(), enclave, 16, idle).await;
        let mut client = transport::connect(&relay.addr).await.unwrap();

        // Traffic more often than the timeout keeps the connection open well past it.
        let mut byte = [0u8; 1];
        for i in 0..8u8 {
            client.write_all(&[i]).await.unwrap();
            timeout(WAIT, client.read_exact(&mut byte))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(byte[0], i);
            tokio::time::sleep(Duration::from_millis(80)).await;
        }

        // Then silence: the relay closes the connection.
        let silent_since = Instant::now();
        let n = timeout(WAIT, client.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0, "expected EOF from the relay");
        assert!(silent_since.elapsed() >= Duration::from_millis(100));
        eventually("the connection is closed", || {
            relay.stats.active_connections() == 0
        })
        .await;
    }

    #[tokio::test]
    async fn max_connections_makes_the_next_client_wait() {
        let enclave = echo_server(&loopback()).await;
        let relay = start_relay(&loopback(), enclave, 1, WAIT).await;

        let mut first = transport::connect(&relay.addr).await.unwrap();
        first.write_all(b"1").await.unwrap();
        let mut byte = [0u8; 1];
        timeout(WAIT, first.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();

        // The second client's TCP handshake completes in the backlog, but nobody relays it.
        let mut second = transport::connect(&relay.addr).await.unwrap();
        second.write_all(b"2").await.unwrap();
        let waited = timeout(Duration::from_millis(300), second.read_exact(&mut byte)).await;
        assert!(
            waited.is_err(),
            "second client was relayed while the first was open"
        );
        assert_eq!(relay.stats.total_connections(), 1);

        drop(first);
        timeout(WAIT, second.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&byte, b"2");
        assert_eq!(relay.stats.total_connections(), 2);
    }

    #[tokio::test]
    async fn unreachable_enclave_closes_the_client_and_relay_keeps_serving() {
        let enclave_path = temp_socket_path("late");
        let enclave = Address::Unix(enclave_path.clone());
        let relay = start_relay(&loopback(), enclave.clone(), 16, WAIT).await;

        let mut client = transport::connect(&relay.addr).await.unwrap();
        let mut reply = Vec::new();
        match timeout(WAIT, client.read_to_end(&mut reply)).await.unwrap() {
            Ok(_) => assert!(reply.is_empty()),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
        }
        eventually("the failure is counted", || {
            relay.stats.enclave_unreachable() == 1
        })
        .await;

        // Once the enclave is up, the same relay serves.
        echo_server(&enclave).await;
        assert_eq!(exchange(&relay.addr, b"now").await, b"now");
        assert_eq!(relay.stats.enclave_unreachable(), 1);
        let _ = std::fs::remove_file(enclave_path);
    }

    #[tokio::test]
    async fn shutdown_stops_accepting_and_drops_stragglers_after_grace() {
        let enclave = echo_server(&loopback()).await;
        let relay = start_relay(&loopback(), enclave, 16, WAIT).await;
        let mut straggler = transport::connect(&relay.addr).await.unwrap();
        straggler.write_all(b"x").await.unwrap();
        let mut byte = [0u8; 1];
        timeout(WAIT, straggler.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();

        let asked = Instant::now();
        relay.stop.send(()).unwrap();
        timeout(WAIT, relay.task).await.unwrap().unwrap().unwrap();
        assert!(asked.elapsed() >= SHUTDOWN_GRACE - Duration::from_millis(100));

        let n = timeout(WAIT, straggler.read(&mut byte)).await.unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "straggler still open: {n:?}");
        assert!(transport::connect(&relay.addr).await.is_err());
        assert_eq!(relay.stats.active_connections(), 0);
    }

    #[tokio::test]
    async fn shutdown_without_connections_is_immediate() {
        let enclave = echo_server(&loopback()).await;
        let relay = start_relay(&loopback(), enclave, 16, WAIT).await;
        relay.stop.send(()).unwrap();
        timeout(Duration::from_secs(1), relay.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn zero_max_connections_is_refused() {
        let listener = Listener::bind(&loopback()).await.unwrap();
        let config = RelayConfig {
            enclave: loopback(),
            max_connections: 0,
            idle_timeout: WAIT,
            connect_timeout: WAIT,
            holds: Arc::default(),
        };
        let err = serve(listener, config, std::future::pending())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    /// A stand-in enclave that answers each connection with "unheld ", then "held" framed to
    /// wait for commit 5 of session 9, then closes.
    async fn holding_server(addr: &Address) -> Address {
        let listener = Listener::bind(addr).await.unwrap();
        let local = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let hold = Arc::new(HoldCell::default());
                    let mut stream = HoldWriter::new(stream, hold.clone());
                    let _ = stream.write_all(b"unheld ").await;
                    hold.raise(Hold { session: 9, seq: 5 });
                    let _ = stream.write_all(b"held").await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        local
    }

    /// Reads what arrives within a short while (a held answer does not).
    async fn read_for_a_while(client: &mut Stream) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok(Ok(n)) = timeout(Duration::from_millis(300), client.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    #[tokio::test]
    async fn held_answers_wait_for_their_commit() {
        let holds = Arc::new(Holds::default());
        holds.open(9);
        let enclave = holding_server(&loopback()).await;
        let relay = start_relay_holding(&loopback(), enclave, 4, WAIT, holds.clone()).await;

        let mut client = transport::connect(&relay.addr).await.unwrap();
        assert_eq!(read_for_a_while(&mut client).await, b"unheld ");
        holds.advance(9, 4);
        assert_eq!(
            read_for_a_while(&mut client).await,
            b"",
            "commit 4 is not enough"
        );
        holds.advance(9, 5);
        let mut rest = Vec::new();
        timeout(WAIT, client.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rest, b"held");
    }

    #[tokio::test]
    async fn held_answers_of_a_failed_commit_or_another_session_never_arrive() {
        let holds = Arc::new(Holds::default());
        let enclave = holding_server(&loopback()).await;
        let relay = start_relay_holding(&loopback(), enclave.clone(), 4, WAIT, holds.clone()).await;

        // The session closes (its commit failed) while the answer waits.
        holds.open(9);
        let mut client = transport::connect(&relay.addr).await.unwrap();
        assert_eq!(read_for_a_while(&mut client).await, b"unheld ");
        holds.close(9);
        // The connection ends (closed or reset) with nothing more.
        let mut rest = Vec::new();
        let _ = timeout(WAIT, client.read_to_end(&mut rest)).await.unwrap();
        assert!(rest.is_empty(), "nothing of the held answer: {rest:?}");

        // Another session is open: the answer is refused at once, whatever is durable.
        holds.open(10);
        holds.advance(10, 100);
        let mut client = transport::connect(&relay.addr).await.unwrap();
        let mut got = Vec::new();
        let _ = timeout(WAIT, client.read_to_end(&mut got)).await.unwrap();
        assert_eq!(got, b"unheld ");

        // A relay without a store delivers only what waits for nothing.
        let bare = start_relay(&loopback(), enclave, 4, WAIT).await;
        let mut client = transport::connect(&bare.addr).await.unwrap();
        let mut got = Vec::new();
        let _ = timeout(WAIT, client.read_to_end(&mut got)).await.unwrap();
        assert_eq!(got, b"unheld ");
    }
}
