//! End-to-end harness: starts the real `ekms dev` (mock enclave + parent relay) on a free
//! loopback port and drives it with the AWS SDK for Rust, or with raw HTTP/1.1 requests
//! signed (or not) by `aws-sigv4` with whatever credentials and clock a test chooses.
//!
//! Trusts: nothing the server says beyond what a test asserts. Does not: test real Nitro
//! isolation (mock mode only).
//!
//! Every wait is bounded, so a server bug fails a test instead of hanging the suite.
//!
//! Lifetime of the server: `ekms dev` runs under a small `sh` watchdog whose stdin is a pipe
//! from the test process. [`Ekms`]'s `Drop` sends SIGTERM to `ekms dev`; and when the test
//! process exits without dropping it (a `static` shared instance), the pipe closes, and the
//! watchdog sends the SIGTERM instead. `ekms dev` then stops its two children. Its output goes
//! to `DATA_DIR/dev.log`, not to a pipe, so its shutdown never writes into a closed pipe.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sdk_kms::config::{BehaviorVersion, Region};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

pub mod etcd;
pub mod hostile;

/// Region the dev server signs for.
pub const REGION: &str = "us-east-1";
/// Account in the dev server's ARNs.
pub const ACCOUNT: &str = "111122223333";
/// How long `ekms dev` may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `ekms dev` may take to stop after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Upper bound for one raw HTTP exchange.
pub const RAW_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for one SDK operation (all attempts).
pub const SDK_TIMEOUT: Duration = Duration::from_secs(20);

const READY_LINE: &str = "ekms dev is ready";

/// A running `ekms dev`, with the credentials it wrote.
pub struct Ekms {
    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The loopback address it listens on.
    pub addr: SocketAddr,
    /// The dev principal's access key id (from `DATA_DIR/credentials`).
    pub access_key_id: String,
    /// The dev principal's secret access key.
    pub secret: String,
    /// With `--tls`: the CA certificate clients must trust (`DATA_DIR/ca.pem`).
    pub ca_pem: Option<Vec<u8>>,
    /// Holds `dev.log` (and, unless [`DevOptions::data_dir`] named one, the data dir).
    data_dir: tempfile::TempDir,
    /// The data dir `ekms dev` was given.
    data_path: PathBuf,
    /// The `sh` watchdog around `ekms dev`.
    child: Child,
    /// Closing it tells the watchdog to stop `ekms dev`.
    watchdog_stdin: Option<ChildStdin>,
    /// Pid of `ekms dev` itself, as the watchdog reported it.
    dev_pid: Option<i32>,
}

impl std::fmt::Debug for Ekms {
    // Hand-written: leaves the secret out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ekms")
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field("data_dir", &self.data_dir.path())
            .finish_non_exhaustive()
    }
}

/// The `target/debug` (or `target/release`) directory the binaries are built into: the
/// grandparent of this test executable (`target/debug/deps/<test>-<hash>`).
///
/// # Panics
/// When the test executable's path has no such ancestor.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps/")
        .to_path_buf()
}

fn require_binaries() -> PathBuf {
    let dir = bin_dir();
    let missing: Vec<&str> = ["ekms", "ekms-enclave", "ekms-parent"]
        .into_iter()
        .filter(|name| !dir.join(name).is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "missing binaries {missing:?} in {}: run `cargo build --workspace --bins` first \
         (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// A loopback port nothing listens on (now).
///
/// # Panics
/// When no port can be bound.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding an ephemeral loopback port");
    listener
        .local_addr()
        .expect("a bound listener has an address")
        .port()
}

/// The last `n` lines of `ekms dev`'s log, for failure messages.
fn log_tail(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Parses the `[ekms]` profile of an AWS shared-credentials file.
fn parse_credentials(text: &str) -> Option<(String, String)> {
    let mut in_profile = false;
    let (mut id, mut secret) = (None, None);
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_profile = line == "[ekms]";
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            match k.trim() {
                "aws_access_key_id" => id = Some(v.trim().to_owned()),
                "aws_secret_access_key" => secret = Some(v.trim().to_owned()),
                _ => {}
            }
        }
    }
    Some((id?, secret?))
}

/// The watchdog: runs `ekms dev` in the background with its output in the log, reports its
/// pid, and SIGTERMs it when stdin closes; SIGKILL after 10 s. Removes the data dir last.
const WATCHDOG: &str = r#"
log="$1"; dir="$2"; shift 2
"$@" >"$log" 2>&1 </dev/null &
pid=$!
echo "pid $pid"
cat >/dev/null
kill -TERM "$pid" 2>/dev/null
i=0
while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i+1)); done
kill -KILL "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$dir"
"#;

impl Ekms {
    /// Starts `ekms dev` over plain HTTP.
    ///
    /// # Panics
    /// When the binaries are missing or the server is not ready within [`READY_TIMEOUT`].
    pub fn start() -> Ekms {
        Self::launch(false)
    }

    /// Starts `ekms dev --tls`; [`Ekms::ca_pem`] holds the CA to trust.
    ///
    /// # Panics
    /// As [`Ekms::start`], and when `ca.pem` is missing.
    pub fn start_tls() -> Ekms {
        Self::launch(true)
    }

    /// One plain-HTTP server per test binary, started by the first test that asks. A failed
    /// start is remembered, so later tests fail at once with the same message.
    ///
    /// # Panics
    /// When the server could not be started.
    pub fn shared() -> &'static Ekms {
        static SHARED: OnceLock<Result<Ekms, String>> = OnceLock::new();
        let started = SHARED.get_or_init(|| {
            std::panic::catch_unwind(Self::start).map_err(|e| {
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "ekms dev failed to start".to_owned())
            })
        });
        match started {
            Ok(ekms) => ekms,
            Err(e) => panic!("shared ekms dev is not running: {e}"),
        }
    }

    /// The TLS counterpart of [`Ekms::shared`].
    ///
    /// # Panics
    /// When the server could not be started.
    pub fn shared_tls() -> &'static Ekms {
        static SHARED_TLS: OnceLock<Result<Ekms, String>> = OnceLock::new();
        let started = SHARED_TLS.get_or_init(|| {
            std::panic::catch_unwind(Self::start_tls).map_err(|e| {
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "ekms dev --tls failed to start".to_owned())
            })
        });
        match started {
            Ok(ekms) => ekms,
            Err(e) => panic!("shared ekms dev --tls is not running: {e}"),
        }
    }

    fn launch(tls: bool) -> Ekms {
        Self::start_with(&DevOptions {
            tls,
            ..DevOptions::default()
        })
    }

    /// Starts `ekms dev` as `options` say. With [`DevOptions::data_dir`] the data dir is the
    /// caller's and outlives this server (for restarts on the same data dir); with
    /// [`DevOptions::manual_unseal`] the credentials are read only if the data dir already
    /// holds them (else [`Ekms::access_key_id`] and [`Ekms::secret`] are empty).
    ///
    /// # Panics
    /// As [`Ekms::start`].
    pub fn start_with(options: &DevOptions) -> Ekms {
        let tls = options.tls;
        let bin = require_binaries();
        let data_dir = tempfile::Builder::new()
            .prefix("ekms-tests-")
            .tempdir()
            .expect("creating a temporary data dir");
        let addr = options
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
        let dir = options
            .data_dir
            .clone()
            .unwrap_or_else(|| data_dir.path().join("data"));
        let log = data_dir.path().join("dev.log");
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(WATCHDOG)
            .arg("ekms-watchdog")
            .arg(&log)
            .arg(data_dir.path())
            .arg(bin.join("ekms"))
            .arg("dev");
        if let Some(config) = &options.config {
            command.arg("--config").arg(config);
        } else {
            command
                .args(["--listen", &addr.to_string(), "--data-dir"])
                .arg(&dir);
            if tls {
                command.arg("--tls");
            }
            if options.manual_unseal {
                command.arg("--manual-unseal");
            }
            if let Some(mib) = options.enclave_memory_mib {
                command.args(["--enclave-memory-mib", &mib.to_string()]);
            }
        }
        command.args(&options.extra_args);
        for (name, value) in &options.env {
            command.env(name, value);
        }
        // `ekms dev` runs `cargo build` for missing siblings when CARGO is set; never from here.
        command
            .env_remove("CARGO")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = command.spawn().expect("spawning sh to run ekms dev");
        let watchdog_stdin = child.stdin.take();
        let dev_pid = child.stdout.take().and_then(|mut out| {
            // The watchdog prints one short line and nothing else.
            let mut buf = [0u8; 32];
            let n = out.read(&mut buf).ok()?;
            std::str::from_utf8(&buf[..n])
                .ok()?
                .trim()
                .strip_prefix("pid ")?
                .parse()
                .ok()
        });
        let mut ekms = Ekms {
            endpoint: format!("{}://{addr}", if tls { "https" } else { "http" }),
            addr,
            access_key_id: String::new(),
            secret: String::new(),
            ca_pem: None,
            data_dir,
            data_path: dir.clone(),
            child,
            watchdog_stdin,
            dev_pid,
        };

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains(READY_LINE) {
                break;
            }
            if let Ok(Some(status)) = ekms.child.try_wait() {
                panic!(
                    "ekms dev exited ({status}) before it was ready; its log:\n{}",
                    log_tail(&log, 40)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "ekms dev printed no {READY_LINE:?} line within {READY_TIMEOUT:?}; its log:\n{}",
                    log_tail(&log, 40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }

        let credentials_path = dir.join("credentials");
        if !options.manual_unseal || credentials_path.exists() {
            let (id, secret) = read_credentials(&credentials_path);
            ekms.access_key_id = id;
            ekms.secret = secret;
        }
        if tls {
            let ca_path = dir.join("ca.pem");
            let pem = std::fs::read(&ca_path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", ca_path.display()));
            ekms.ca_pem = Some(pem);
        }
        ekms
    }

    /// The data dir `ekms dev` was given.
    pub fn data_dir(&self) -> PathBuf {
        self.data_path.clone()
    }

    /// Pid of `ekms dev` itself (as its watchdog reported it).
    pub fn dev_pid(&self) -> Option<i32> {
        self.dev_pid
    }

    /// `ekms dev`'s combined output so far (stdout and stderr, its children's included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("dev.log")).unwrap_or_default()
    }

    /// `ekms dev`'s combined output so far (its last `lines` lines).
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.data_dir.path().join("dev.log"), lines)
    }

    /// An SDK client with the dev credentials; over TLS it trusts exactly `ca.pem`.
    pub async fn client(&self) -> aws_sdk_kms::Client {
        self.client_with(&self.access_key_id, &self.secret, self.ca_pem.as_deref())
    }

    /// An SDK client with the given credentials, trusting `ca_pem` only (or, when `None`, the
    /// platform's roots: used to show that an https endpoint is not trusted by default).
    pub fn client_with(
        &self,
        access_key_id: &str,
        secret: &str,
        ca_pem: Option<&[u8]>,
    ) -> aws_sdk_kms::Client {
        sdk_client(&self.endpoint, access_key_id, secret, ca_pem)
    }

    /// Sends one raw HTTP/1.1 `POST /` (plain HTTP only) with `Content-Type:
    /// application/x-amz-json-1.1`, the given `X-Amz-Target` (none when `None`) and body,
    /// signed as `sign` says, and reads the whole response.
    ///
    /// # Panics
    /// On an I/O error or when no complete response arrives within [`RAW_TIMEOUT`].
    pub async fn raw(&self, target: Option<&str>, body: &[u8], sign: SignWith) -> RawResponse {
        let request = self.raw_request(target, body, &sign);
        match send_raw(self.addr, &request).await {
            Ok(response) => response,
            Err(e) => panic!("raw request to {}: {e}", self.endpoint),
        }
    }

    /// The bytes of the request [`Ekms::raw`] sends.
    pub fn raw_request(&self, target: Option<&str>, body: &[u8], sign: &SignWith) -> Vec<u8> {
        let host = self.addr.to_string();
        let mut headers: Vec<(String, String)> = vec![
            ("host".to_owned(), host),
            (
                "content-type".to_owned(),
                "application/x-amz-json-1.1".to_owned(),
            ),
        ];
        if let Some(target) = target {
            headers.push(("x-amz-target".to_owned(), target.to_owned()));
        }
        let signer = match sign {
            SignWith::Unsigned => None,
            SignWith::Dev => Some((
                self.access_key_id.clone(),
                self.secret.clone(),
                SystemTime::now(),
            )),
            SignWith::Custom {
                access_key_id,
                secret,
                time,
            } => Some((access_key_id.clone(), secret.clone(), *time)),
        };
        if let Some((id, secret, time)) = signer {
            headers.extend(sigv4_headers(
                &self.endpoint,
                &headers,
                body,
                &id,
                &secret,
                time,
            ));
        }
        let mut request = b"POST / HTTP/1.1\r\n".to_vec();
        for (name, value) in &headers {
            request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        request.extend_from_slice(
            format!(
                "content-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        request.extend_from_slice(body);
        request
    }
}

impl Drop for Ekms {
    fn drop(&mut self) {
        if let Some(pid) = self.dev_pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        // EOF on the watchdog's stdin: it waits for ekms dev, then removes the data dir.
        drop(self.watchdog_stdin.take());
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(pid) = self.dev_pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How [`Ekms::raw`] signs a request.
#[derive(Debug, Clone)]
pub enum SignWith {
    /// No `Authorization` and no `X-Amz-Date` header.
    Unsigned,
    /// The dev credentials, now.
    Dev,
    /// Any credentials at any time (a wrong secret, an unknown key, a stale clock).
    Custom {
        access_key_id: String,
        secret: String,
        time: SystemTime,
    },
}

/// SigV4 (<https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html>)
/// headers for a `POST /` with `headers` and `body`, service `kms`, region [`REGION`].
fn sigv4_headers(
    endpoint: &str,
    headers: &[(String, String)],
    body: &[u8],
    access_key_id: &str,
    secret: &str,
    time: SystemTime,
) -> Vec<(String, String)> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    let identity = Credentials::new(access_key_id, secret, None, None, "ekms-tests").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("kms")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .expect("complete SigV4 signing params")
        .into();
    let signable = SignableRequest::new(
        "POST",
        format!("{endpoint}/"),
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .expect("a signable request from valid header values");
    let (instructions, _signature) = sign(signable, &params)
        .expect("SigV4 signing of a well-formed request")
        .into_parts();
    instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A raw HTTP response.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// Header names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body (chunked encoding removed).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    ///
    /// # Panics
    /// When the body is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): status {} body {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `__type` of an error body, without any `prefix#`.
    pub fn error_code(&self) -> Option<String> {
        let value: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        let code = value.get("__type")?.as_str()?;
        Some(code.rsplit('#').next().unwrap_or(code).to_owned())
    }
}

/// Writes `request` to `addr` (concurrently with reading, so a server that answers before it
/// has read everything is seen) and reads one response, all within [`RAW_TIMEOUT`].
///
/// # Errors
/// On connect or read errors, a malformed response, or the timeout.
pub async fn send_raw(addr: SocketAddr, request: &[u8]) -> std::io::Result<RawResponse> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (mut reader, mut writer) = stream.into_split();
        let request = request.to_vec();
        let write = tokio::spawn(async move {
            // The server may answer and close before reading everything: not an error here.
            let _ = writer.write_all(&request).await;
            let _ = writer.flush().await;
            writer
        });
        let mut received = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => {
                    received.extend_from_slice(&chunk[..n]);
                    if parse_response(&received).is_some() {
                        break;
                    }
                }
                // A reset after a complete response still counts as that response.
                Err(e) if parse_response(&received).is_some() => {
                    let _ = e;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        write.abort();
        parse_response(&received).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "incomplete HTTP response ({} bytes): {:?}",
                    received.len(),
                    String::from_utf8_lossy(&received[..received.len().min(512)])
                ),
            )
        })
    };
    tokio::time::timeout(RAW_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no complete response within {RAW_TIMEOUT:?}"),
            )
        })?
}

/// Parses a complete HTTP/1.1 response, or `None` while it is incomplete.
fn parse_response(bytes: &[u8]) -> Option<RawResponse> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &bytes[head_end + 4..];
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let body = if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else {
        let len: usize = find("content-length")?.parse().ok()?;
        if rest.len() < len {
            return None;
        }
        rest[..len].to_vec()
    };
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut bytes: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = bytes.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&bytes[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        if bytes.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&bytes[..size]);
        bytes = &bytes[size + 2..];
    }
}

/// Opens a connection, sends `partial` (an incomplete request) and returns the socket, for
/// tests of clients that stall or vanish mid-request.
///
/// # Panics
/// When the connection cannot be made within [`RAW_TIMEOUT`].
pub fn stall(addr: SocketAddr, partial: &[u8]) -> std::net::TcpStream {
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, RAW_TIMEOUT).expect("connecting to ekms");
    stream
        .write_all(partial)
        .expect("writing a partial request");
    stream
}

/// The code of a failed SDK call (`err.into_service_error().meta().code()`), or a description
/// of the failure when it never reached the service.
pub fn error_code<E, R>(err: aws_sdk_kms::error::SdkError<E, R>) -> String
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_kms::error::SdkError;
    match err {
        SdkError::ServiceError(service) => {
            let e = service.into_err();
            e.meta().code().map_or_else(
                || format!("<service error without a code: {:?}>", e.meta()),
                str::to_owned,
            )
        }
        other => format!(
            "<not a service error: {}>",
            aws_sdk_kms::error::DisplayErrorContext(&other)
        ),
    }
}

/// Asserts that an SDK call failed with the service error `code`.
#[macro_export]
macro_rules! assert_code {
    ($result:expr, $code:expr) => {{
        match $result {
            Ok(ok) => panic!("expected {}, got success: {:?}", $code, ok),
            Err(err) => {
                let got = $crate::error_code(err);
                assert_eq!(got, $code, "wrong error code");
            }
        }
    }};
}

/// A key ARN's expected shape: `arn:aws:kms:us-east-1:111122223333:key/<uuid>`.
pub fn key_arn(key_id: &str) -> String {
    format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}")
}

/// An alias ARN: `arn:aws:kms:us-east-1:111122223333:alias/<name>` for `alias/<name>`.
pub fn alias_arn(alias_name: &str) -> String {
    format!("arn:aws:kms:{REGION}:{ACCOUNT}:{alias_name}")
}

/// A name no other test uses: `prefix-<nanos>-<counter>`.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{prefix}-{nanos}-{}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates a symmetric key and returns its key id (the uuid).
///
/// # Panics
/// When CreateKey fails or answers without metadata.
pub async fn create_key(client: &aws_sdk_kms::Client) -> String {
    let out = client
        .create_key()
        .description("ekms-tests")
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateKey: {}", aws_sdk_kms::error::DisplayErrorContext(e)));
    out.key_metadata()
        .expect("CreateKey returns KeyMetadata")
        .key_id()
        .to_owned()
}

/// An SDK client for `endpoint` with the given credentials, trusting `ca_pem` only (or, when
/// `None`, the platform's roots), with bounded timeouts (at most [`SDK_TIMEOUT`] a call).
pub fn sdk_client(
    endpoint: &str,
    access_key_id: &str,
    secret: &str,
    ca_pem: Option<&[u8]>,
) -> aws_sdk_kms::Client {
    sdk_client_with_retries(endpoint, access_key_id, secret, ca_pem, true)
}

/// [`sdk_client`] that tries each call once: a test that records which calls succeeded must
/// not have a call the server applied and then lost retried behind its back.
pub fn sdk_client_once(endpoint: &str, access_key_id: &str, secret: &str) -> aws_sdk_kms::Client {
    sdk_client_with_retries(endpoint, access_key_id, secret, None, false)
}

fn sdk_client_with_retries(
    endpoint: &str,
    access_key_id: &str,
    secret: &str,
    ca_pem: Option<&[u8]>,
    retries: bool,
) -> aws_sdk_kms::Client {
    let trust = match ca_pem {
        Some(pem) => TrustStore::empty().with_pem_certificate(pem.to_vec()),
        None => TrustStore::default(),
    };
    let tls_context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("a TLS context from a PEM certificate");
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(tls_context)
        .build_https();
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            access_key_id,
            secret,
            None,
            None,
            "ekms-tests",
        ))
        .endpoint_url(endpoint)
        .http_client(http_client)
        .timeout_config(
            aws_sdk_kms::config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(10))
                .operation_timeout(SDK_TIMEOUT)
                .build(),
        );
    let config = if retries {
        config
    } else {
        config.retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
    };
    aws_sdk_kms::Client::from_conf(config.build())
}

/// How [`Ekms::start_with`] runs `ekms dev`.
#[derive(Debug, Clone, Default)]
pub struct DevOptions {
    /// `--tls`.
    pub tls: bool,
    /// `--manual-unseal`: init and unseal are left to the operator commands.
    pub manual_unseal: bool,
    /// A data dir the caller owns (kept after the server stops); default: a fresh one that
    /// is removed with the server.
    pub data_dir: Option<PathBuf>,
    /// `--enclave-memory-mib N`.
    pub enclave_memory_mib: Option<u64>,
    /// `--config FILE` in place of every option above: the file must set them (`listen` to
    /// [`DevOptions::listen`], `data-dir` to [`DevOptions::data_dir`], `tls` as
    /// [`DevOptions::tls`], ...), which then only say what to expect.
    pub config: Option<PathBuf>,
    /// The address to listen on (default: a free loopback port).
    pub listen: Option<SocketAddr>,
    /// More options, after those above (`--log-format json`).
    pub extra_args: Vec<String>,
    /// Variables set for `ekms dev` (`EKMS_REGION`, ...).
    pub env: Vec<(String, String)>,
}

/// The `[ekms]` profile's access key id and secret in an AWS shared-credentials file.
///
/// # Panics
/// When the file cannot be read or has no such profile.
pub fn read_credentials(path: &Path) -> (String, String) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("reading {}: {e}", path.display());
    });
    parse_credentials(&text).unwrap_or_else(|| {
        panic!(
            "{} has no [ekms] profile with aws_access_key_id and aws_secret_access_key",
            path.display()
        )
    })
}

/// How long one `ekms` operator command (init, unseal, status, keygen) may take.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// What an `ekms` operator command did.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl CliOutput {
    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Stdout as JSON.
    ///
    /// # Panics
    /// When stdout is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("ekms printed no JSON ({e}): {self:?}"))
    }

    /// Panics (with both outputs) unless it exited 0; returns itself.
    ///
    /// # Panics
    /// When the command failed.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(self.success(), "ekms failed: {self:?}");
        self
    }
}

/// Whose credentials an `ekms` command signs with.
#[derive(Debug, Clone, Copy)]
pub enum CliCredentials<'a> {
    /// Whatever the test's environment holds.
    Inherited,
    /// The `[ekms]` profile of `DATA_DIR/credentials` (the dev principal), as the AWS CLI
    /// would find it; no other credentials in the environment.
    Profile(&'a Path),
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, and no profile.
    Keys(&'a str, &'a str),
}

/// Runs the `ekms` binary with `args`, bounded by [`CLI_TIMEOUT`] (then killed).
///
/// # Panics
/// When it cannot be started or does not finish in time.
pub fn ekms_cli<I, S>(args: I) -> CliOutput
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    ekms_cli_as(args, CliCredentials::Inherited)
}

/// Runs the `ekms` binary with `args` and only the credentials `who` says (region
/// [`REGION`]), bounded by [`CLI_TIMEOUT`] (then killed).
///
/// # Panics
/// When it cannot be started or does not finish in time.
pub fn ekms_cli_as<I, S>(args: I, who: CliCredentials<'_>) -> CliOutput
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let bin = require_binaries();
    let mut command = Command::new(bin.join("ekms"));
    command
        .args(args)
        .env_remove("CARGO")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !matches!(who, CliCredentials::Inherited) {
        for var in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_REGION",
        ] {
            command.env_remove(var);
        }
        command.env("AWS_DEFAULT_REGION", REGION);
    }
    match who {
        CliCredentials::Inherited => {}
        CliCredentials::Profile(data_dir) => {
            command
                .env("AWS_SHARED_CREDENTIALS_FILE", data_dir.join("credentials"))
                .env("AWS_PROFILE", "ekms");
        }
        CliCredentials::Keys(id, secret) => {
            command
                .env("AWS_ACCESS_KEY_ID", id)
                .env("AWS_SECRET_ACCESS_KEY", secret);
        }
    }
    let rendered = format!("{command:?}");
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {rendered}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(CLI_TIMEOUT) {
        Ok(Ok(output)) => CliOutput {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        },
        Ok(Err(e)) => panic!("waiting for {rendered}: {e}"),
        Err(_) => {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            panic!("{rendered} did not finish within {CLI_TIMEOUT:?}");
        }
    }
}

/// `ekms status --endpoint ENDPOINT`, parsed.
///
/// # Panics
/// When the command fails or prints no JSON.
pub fn ekms_status(endpoint: &str) -> serde_json::Value {
    ekms_cli(["status", "--endpoint", endpoint]).ok().json()
}

/// `ekms custodian keygen --out DIR`; returns `(DIR/custodian.pub, DIR/custodian.key)`.
///
/// # Panics
/// When the command fails.
pub fn custodian_keygen(dir: &Path) -> (PathBuf, PathBuf) {
    let mut args: Vec<std::ffi::OsString> = vec!["custodian".into(), "keygen".into()];
    args.push("--out".into());
    args.push(dir.into());
    ekms_cli(args).ok();
    (dir.join("custodian.pub"), dir.join("custodian.key"))
}

/// Writes the mock PCRs (PCR0..2) of the built `ekms-enclave` to `path`, in the
/// `--expect-pcrs` format, as `ekms dev` does.
///
/// # Panics
/// When the binary cannot be read or the file written.
pub fn write_mock_pcrs(path: &Path) {
    write_pcrs_of(&require_binaries().join("ekms-enclave"), path);
}

/// Writes the mock PCRs (PCR0..2) of the enclave binary `binary` to `path`.
pub fn write_pcrs_of(binary: &Path, path: &Path) {
    let binary = std::fs::read(binary).expect("reading the ekms-enclave binary");
    let json = ekms_shared::attestation::insecure::expected_pcrs_json(&binary);
    std::fs::write(path, serde_json::to_vec_pretty(&json).expect("JSON"))
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// A process started directly (not through `ekms dev`), its output in a log file. `Drop`
/// kills it (SIGKILL) and reaps it.
pub struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("name", &self.name)
            .field("pid", &self.child.id())
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// Starts `command` with stdout and stderr appended to `log`, and waits (at most
    /// [`READY_TIMEOUT`]) until the log holds `ready` (a new log file per start is simplest).
    ///
    /// # Panics
    /// When it cannot start, exits first, or is not ready in time.
    pub fn spawn(name: &str, mut command: Command, log: &Path, ready: &str) -> Daemon {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("opening {}: {e}", log.display()));
        let err = out.try_clone().expect("cloning a file handle");
        let before = std::fs::read_to_string(log).unwrap_or_default().len();
        command
            .env_remove("CARGO")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let mut daemon = Daemon {
            name: name.to_owned(),
            child,
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.get(before..).is_some_and(|t| t.contains(ready)) {
                return daemon;
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!(
                    "{name} exited ({status}) before it was ready; its log:\n{}",
                    log_tail(log, 40)
                );
            }
            assert!(
                Instant::now() < deadline,
                "{name} printed no {ready:?} within {READY_TIMEOUT:?}; its log:\n{}",
                log_tail(log, 40)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its pid.
    ///
    /// # Panics
    /// Never in practice (pids fit in i32).
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("a pid fits in i32")
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Its whole log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` and waits (at most [`STOP_TIMEOUT`]) for it to exit; SIGKILL after
    /// that. Returns its exit status.
    pub fn stop_with(&mut self, signal: nix::sys::signal::Signal) -> std::process::ExitStatus {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        self.child.wait().expect("reaping a killed child")
    }

    /// `kill -9`, and reaps it.
    pub fn kill9(&mut self) -> std::process::ExitStatus {
        self.stop_with(nix::sys::signal::Signal::SIGKILL)
    }

    /// Waits up to `timeout` for it to exit by itself; its status if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ekms-parent` (relay + store) and `ekms-enclave --insecure-mock-enclave`, started directly
/// on loopback with the same layout `ekms dev` uses, so that either can be killed and
/// restarted alone. Dir layout: `enclave.sock`, `store.sock`, `store/`, `mock-ca/`,
/// `pcrs.json`, logs `parent-N.log` / `enclave-N.log`.
#[derive(Debug)]
pub struct Deployment {
    /// `http://127.0.0.1:PORT` (the relay).
    pub endpoint: String,
    /// The relay's address.
    pub addr: SocketAddr,
    /// The running parent, if any (fields drop in order: processes before the dir).
    pub parent: Option<Daemon>,
    /// The running enclave, if any.
    pub enclave: Option<Daemon>,
    /// A copy of `ekms-enclave` every start runs ([`Deployment::pin_enclave_binary`]).
    enclave_binary: Option<PathBuf>,
    /// `--store` for the parent (an etcd URL) instead of `DIR/store`.
    store: Option<String>,
    /// The enclave runs with `--member` (one of several sharing the store).
    member: bool,
    /// More options for `ekms-parent` ([`Deployment::with_parent_args`]).
    parent_args: Vec<String>,
    starts: u32,
    dir: tempfile::TempDir,
}

impl Deployment {
    /// A fresh dir with `pcrs.json`; nothing running yet.
    ///
    /// # Panics
    /// When the binaries are missing.
    pub fn new() -> Deployment {
        require_binaries();
        let dir = tempfile::Builder::new()
            .prefix("ekms-deployment-")
            .tempdir()
            .expect("creating a temporary dir");
        write_mock_pcrs(&dir.path().join("pcrs.json"));
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        Deployment {
            endpoint: format!("http://{addr}"),
            addr,
            parent: None,
            enclave: None,
            enclave_binary: None,
            store: None,
            member: false,
            parent_args: Vec::new(),
            starts: 0,
            dir,
        }
    }

    /// The parent keeps the store at `url` (`etcd://...`) instead of `DIR/store`.
    pub fn with_store(mut self, url: String) -> Deployment {
        self.store = Some(url);
        self
    }

    /// `ekms-parent` also gets `args` (`--audit-max-bytes 16K`, say).
    pub fn with_parent_args<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        args: I,
    ) -> Deployment {
        self.parent_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The embedded store's data directory, `DIR/store`.
    pub fn store_dir(&self) -> PathBuf {
        self.dir().join("store")
    }

    /// The enclave serves as one member of several sharing the store (`--member`).
    pub fn as_member(mut self) -> Deployment {
        self.member = true;
        self
    }

    /// The deployment's dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `DIR/pcrs.json`.
    pub fn pcrs(&self) -> PathBuf {
        self.dir().join("pcrs.json")
    }

    /// `DIR/mock-ca/root.pem` (exists once the enclave has started).
    pub fn root(&self) -> PathBuf {
        self.dir().join("mock-ca").join("root.pem")
    }

    fn next_log(&mut self, name: &str) -> PathBuf {
        self.starts += 1;
        self.dir().join(format!("{name}-{}.log", self.starts))
    }

    /// Starts `ekms-parent` (relay on [`Deployment::addr`], store in `DIR/store` or at
    /// [`Deployment::with_store`]'s URL).
    ///
    /// # Panics
    /// When it does not come up.
    pub fn start_parent(&mut self) {
        let bin = require_binaries();
        let mut command = Command::new(bin.join("ekms-parent"));
        command
            .args(["--listen", &format!("tcp://{}", self.addr)])
            .arg("--enclave")
            .arg(format!(
                "unix:{}",
                self.dir().join("enclave.sock").display()
            ))
            .arg("--store-listen")
            .arg(self.store_address());
        match &self.store {
            Some(url) => command.args(["--store", url]),
            None => command.arg("--data-dir").arg(self.store_dir()),
        };
        if self.member && self.store.is_some() {
            // Members advertise their endpoints in etcd (`ekms join --store`).
            command.args(["--advertise", &self.endpoint]);
        }
        command.args(&self.parent_args);
        let log = self.next_log("parent");
        self.parent = Some(Daemon::spawn(
            "ekms-parent",
            command,
            &log,
            "ekms-parent listening on",
        ));
    }

    /// Starts `ekms-enclave --insecure-mock-enclave` against the parent's store.
    ///
    /// # Panics
    /// When it does not come up.
    pub fn start_enclave(&mut self) {
        let store = self.store_address();
        self.start_enclave_via(&store);
    }

    /// The parent's store channel, as `--store-listen` names it (`unix:DIR/store.sock`).
    pub fn store_address(&self) -> String {
        format!("unix:{}", self.dir().join("store.sock").display())
    }

    /// Runs a copy of the built `ekms-enclave` (in the deployment's dir) from now on, with
    /// `pcrs.json` made from it: a long test's restarts then run the same image even if the
    /// binary is rebuilt meanwhile.
    ///
    /// # Panics
    /// When the binary cannot be copied.
    pub fn pin_enclave_binary(&mut self) {
        let copy = self.dir().join("ekms-enclave");
        std::fs::copy(require_binaries().join("ekms-enclave"), &copy)
            .unwrap_or_else(|e| panic!("copying ekms-enclave to {}: {e}", copy.display()));
        write_pcrs_of(&copy, &self.pcrs());
        self.enclave_binary = Some(copy);
    }

    /// Runs `binary` as the enclave from now on (another image, say); `None`: the built one.
    pub fn use_enclave_binary(&mut self, binary: Option<PathBuf>) {
        self.enclave_binary = binary;
    }

    /// Starts `ekms-enclave --insecure-mock-enclave` with `--store STORE` (a proxy between
    /// it and the parent's store channel, say).
    ///
    /// # Panics
    /// When it does not come up.
    pub fn start_enclave_via(&mut self, store: &str) {
        let binary = self
            .enclave_binary
            .clone()
            .unwrap_or_else(|| require_binaries().join("ekms-enclave"));
        let mut command = Command::new(binary);
        command
            .arg("--insecure-mock-enclave")
            .arg("--listen")
            .arg(format!(
                "unix:{}",
                self.dir().join("enclave.sock").display()
            ))
            .arg("--store")
            .arg(store)
            .arg("--mock-ca")
            .arg(self.dir().join("mock-ca"));
        if self.member {
            command.arg("--member");
        }
        let log = self.next_log("enclave");
        self.enclave = Some(Daemon::spawn(
            "ekms-enclave",
            command,
            &log,
            "ekms-enclave listening on",
        ));
    }

    /// Both, parent first.
    pub fn start(&mut self) {
        self.start_parent();
        self.start_enclave();
    }

    /// `ekms init` 1-of-1 with a new custodian in `DIR/custodian`; returns the admin's
    /// `(access key id, secret)`. Share: `DIR/init/share-1.json`.
    ///
    /// # Panics
    /// When keygen or init fails.
    pub fn init_1_of_1(&self) -> (String, String) {
        let (public, _) = custodian_keygen(&self.dir().join("custodian"));
        let out = self.dir().join("init");
        let mut args: Vec<std::ffi::OsString> = vec![
            "init".into(),
            "--endpoint".into(),
            self.endpoint.clone().into(),
            "--custodian".into(),
        ];
        args.extend([
            public.into_os_string(),
            "--threshold".into(),
            "1".into(),
            "--expect-pcrs".into(),
            self.pcrs().into(),
            "--root".into(),
            self.root().into(),
            "--out".into(),
            out.clone().into(),
            "--admin-name".into(),
            "dev".into(),
        ]);
        ekms_cli(args).ok();
        read_credentials(&out.join("credentials"))
    }

    /// `ekms unseal` with the share and custodian key [`Deployment::init_1_of_1`] made.
    ///
    /// # Panics
    /// Never: the outcome is returned.
    pub fn unseal(&self) -> CliOutput {
        let mut args: Vec<std::ffi::OsString> = vec![
            "unseal".into(),
            "--endpoint".into(),
            self.endpoint.clone().into(),
            "--share".into(),
        ];
        args.extend([
            self.dir()
                .join("init")
                .join("share-1.json")
                .into_os_string(),
            "--key".into(),
            self.dir().join("custodian").join("custodian.key").into(),
            "--expect-pcrs".into(),
            self.pcrs().into(),
            "--root".into(),
            self.root().into(),
        ]);
        ekms_cli(args)
    }

    /// An SDK client for the relay.
    pub fn client(&self, access_key_id: &str, secret: &str) -> aws_sdk_kms::Client {
        sdk_client(&self.endpoint, access_key_id, secret, None)
    }

    /// One raw `POST /` to the relay with `X-Amz-Target: TARGET` and `body`, signed now with
    /// the given credentials (for `Ekms.*` principal administration, which the SDK does not
    /// speak).
    ///
    /// # Errors
    /// As [`send_raw`].
    pub async fn call_signed(
        &self,
        target: &str,
        body: &[u8],
        access_key_id: &str,
        secret: &str,
    ) -> std::io::Result<RawResponse> {
        let mut headers: Vec<(String, String)> = vec![
            ("host".to_owned(), self.addr.to_string()),
            (
                "content-type".to_owned(),
                "application/x-amz-json-1.1".to_owned(),
            ),
            ("x-amz-target".to_owned(), target.to_owned()),
        ];
        headers.extend(sigv4_headers(
            &self.endpoint,
            &headers,
            body,
            access_key_id,
            secret,
            SystemTime::now(),
        ));
        let mut request = b"POST / HTTP/1.1\r\n".to_vec();
        for (name, value) in &headers {
            request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        request.extend_from_slice(
            format!(
                "content-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        request.extend_from_slice(body);
        send_raw(self.addr, &request).await
    }
}

impl Default for Deployment {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_ekms_profile_only() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key = B\n\
                    [ekms]\naws_access_key_id = AKIAX\naws_secret_access_key = s/e+c=\n";
        assert_eq!(
            parse_credentials(text),
            Some(("AKIAX".to_owned(), "s/e+c=".to_owned()))
        );
        assert_eq!(parse_credentials("[ekms]\naws_access_key_id = A\n"), None);
    }

    #[test]
    fn parses_length_and_chunked_responses() {
        let r =
            parse_response(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\nX-A: b\r\n\r\n{}")
                .expect("complete");
        assert_eq!(
            (r.status, r.body.as_slice(), r.header("x-a")),
            (400, &b"{}"[..], Some("b"))
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{}").is_none());
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n1\r\n \r\n0\r\n\r\n",
        )
        .expect("complete");
        assert_eq!(r.body, b"{} ");
    }

    #[test]
    fn error_code_drops_a_namespace_prefix() {
        let r = RawResponse {
            status: 400,
            headers: vec![],
            body: br#"{"__type":"com.amazonaws.kms#NotFoundException"}"#.to_vec(),
        };
        assert_eq!(r.error_code().as_deref(), Some("NotFoundException"));
    }
}
