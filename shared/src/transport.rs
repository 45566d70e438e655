//! Transport addresses and streams (vsock, TCP, Unix).
//!
//! One code path for all three kinds: an [`Address`] is parsed from the command line, and
//! [`connect`] and [`Listener`] hand out the same boxed [`Stream`] whatever the kind. In an
//! enclave every address is vsock; in mock mode the same code runs over loopback TCP or a
//! Unix socket.
//!
//! This module moves bytes and does nothing else: it does not authenticate peers (TLS and
//! SigV4 end inside the enclave), and it applies no timeouts (callers bound their waits).

use std::fmt;
use std::io;
use std::num::ParseIntError;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_vsock::{VsockAddr, VsockListener, VsockStream};

/// Where to connect or listen: `vsock://CID:PORT`, `tcp://HOST:PORT`, `unix:PATH` or
/// `unix://PATH`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// An AF_VSOCK address. `CID` 4294967295 (`VMADDR_CID_ANY`) binds on every CID.
    Vsock {
        /// Context id of the (virtual) machine.
        cid: u32,
        /// Port on that machine.
        port: u32,
    },
    /// `host:port` as given (`127.0.0.1:4599`, `localhost:0`, `[::1]:443`); host names are
    /// resolved when connecting or binding, not when parsing.
    Tcp(String),
    /// A Unix domain socket path.
    Unix(PathBuf),
}

/// Why a string is not an [`Address`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddressError {
    /// No `scheme:` prefix at all.
    #[error(
        "address {input:?} has no scheme; expected vsock://CID:PORT, tcp://HOST:PORT or unix:PATH"
    )]
    MissingScheme {
        /// The whole address as given.
        input: String,
    },
    /// A scheme other than `vsock`, `tcp` or `unix`.
    #[error("unknown scheme {scheme:?} in address {input:?}; expected vsock, tcp or unix")]
    UnknownScheme {
        /// The scheme found.
        scheme: String,
        /// The whole address as given.
        input: String,
    },
    /// `vsock:` or `tcp:` not followed by `//`.
    #[error("address {input:?} lacks \"//\" after the scheme; expected {expected}")]
    MissingSlashes {
        /// The whole address as given.
        input: String,
        /// The form that was expected.
        expected: &'static str,
    },
    /// No `:PORT` after the CID or host.
    #[error("address {input:?} has no port; expected {expected}")]
    MissingPort {
        /// The whole address as given.
        input: String,
        /// The form that was expected.
        expected: &'static str,
    },
    /// The vsock CID is not a `u32`.
    #[error("vsock CID {value:?} in address {input:?} is not a number from 0 to 4294967295")]
    InvalidCid {
        /// The whole address as given.
        input: String,
        /// The CID text.
        value: String,
        /// Why it did not parse.
        #[source]
        source: ParseIntError,
    },
    /// The port is not a number in range (`u32` for vsock, `u16` for TCP).
    #[error("port {value:?} in address {input:?} is not a number from 0 to {max}")]
    InvalidPort {
        /// The whole address as given.
        input: String,
        /// The port text.
        value: String,
        /// The largest port the scheme allows.
        max: u32,
        /// Why it did not parse.
        #[source]
        source: ParseIntError,
    },
    /// `tcp://:PORT` or `tcp://[]:PORT`.
    #[error("tcp address {input:?} has no host")]
    MissingHost {
        /// The whole address as given.
        input: String,
    },
    /// An IPv6 literal without brackets, so host and port cannot be told apart.
    #[error("IPv6 host in address {input:?} must be in brackets, as in tcp://[::1]:4599")]
    UnbracketedIpv6 {
        /// The whole address as given.
        input: String,
    },
    /// `unix:` or `unix://` with nothing after it.
    #[error("unix address {input:?} has an empty path")]
    EmptyPath {
        /// The whole address as given.
        input: String,
    },
}

/// A lingering close: once one side of a relayed or served connection has closed first, how
/// long the other keeps reading (and dropping) what its peer still sends, and how many bytes at
/// most, so that closing does not reset the connection under an answer still being read. The
/// relay and the enclave's server both linger by these bounds.
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(2);
/// See [`LINGER`].
pub const LINGER_BYTES: usize = 1024 * 1024;

const VSOCK_FORM: &str = "vsock://CID:PORT";
const TCP_FORM: &str = "tcp://HOST:PORT";

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let Some((scheme, rest)) = input.split_once(':').filter(|(s, _)| !s.is_empty()) else {
            return Err(AddressError::MissingScheme {
                input: input.to_owned(),
            });
        };
        if scheme.eq_ignore_ascii_case("vsock") {
            parse_vsock(input, strip_slashes(input, rest, VSOCK_FORM)?)
        } else if scheme.eq_ignore_ascii_case("tcp") {
            parse_tcp(input, strip_slashes(input, rest, TCP_FORM)?)
        } else if scheme.eq_ignore_ascii_case("unix") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(AddressError::EmptyPath {
                    input: input.to_owned(),
                });
            }
            Ok(Address::Unix(PathBuf::from(path)))
        } else {
            Err(AddressError::UnknownScheme {
                scheme: scheme.to_owned(),
                input: input.to_owned(),
            })
        }
    }
}

fn strip_slashes<'a>(
    input: &str,
    rest: &'a str,
    expected: &'static str,
) -> Result<&'a str, AddressError> {
    rest.strip_prefix("//")
        .ok_or_else(|| AddressError::MissingSlashes {
            input: input.to_owned(),
            expected,
        })
}

fn parse_vsock(input: &str, rest: &str) -> Result<Address, AddressError> {
    let Some((cid, port)) = rest.split_once(':') else {
        return Err(AddressError::MissingPort {
            input: input.to_owned(),
            expected: VSOCK_FORM,
        });
    };
    let cid = cid
        .parse::<u32>()
        .map_err(|source| AddressError::InvalidCid {
            input: input.to_owned(),
            value: cid.to_owned(),
            source,
        })?;
    let port = port
        .parse::<u32>()
        .map_err(|source| AddressError::InvalidPort {
            input: input.to_owned(),
            value: port.to_owned(),
            max: u32::MAX,
            source,
        })?;
    Ok(Address::Vsock { cid, port })
}

fn parse_tcp(input: &str, rest: &str) -> Result<Address, AddressError> {
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err(AddressError::MissingPort {
            input: input.to_owned(),
            expected: TCP_FORM,
        });
    };
    let missing_host = || AddressError::MissingHost {
        input: input.to_owned(),
    };
    if let Some(bracketed) = host.strip_prefix('[') {
        // An IPv6 literal: `[::1]`.
        match bracketed.strip_suffix(']') {
            Some(inner) if !inner.is_empty() => {}
            Some(_) => return Err(missing_host()),
            None => {
                return Err(AddressError::UnbracketedIpv6 {
                    input: input.to_owned(),
                })
            }
        }
    } else if host.is_empty() {
        return Err(missing_host());
    } else if host.contains(':') {
        return Err(AddressError::UnbracketedIpv6 {
            input: input.to_owned(),
        });
    }
    port.parse::<u16>()
        .map_err(|source| AddressError::InvalidPort {
            input: input.to_owned(),
            value: port.to_owned(),
            max: u16::MAX.into(),
            source,
        })?;
    Ok(Address::Tcp(rest.to_owned()))
}

impl fmt::Display for Address {
    /// The canonical form, which parses back to the same address: `vsock://CID:PORT`,
    /// `tcp://HOST:PORT`, `unix:///absolute/path` or `unix:relative/path` (as gRPC spells
    /// them).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Vsock { cid, port } => write!(f, "vsock://{cid}:{port}"),
            Address::Tcp(host_port) => write!(f, "tcp://{host_port}"),
            Address::Unix(path) if path.is_absolute() => write!(f, "unix://{}", path.display()),
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Anything that can carry a relayed connection: a TCP, Unix or vsock stream, or
/// `tokio::io::duplex` in tests.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A connected byte stream of any transport kind.
pub type Stream = Box<dyn Io>;

/// Opens a stream to `addr`. TCP streams have `TCP_NODELAY` set.
///
/// # Errors
///
/// Whatever the operating system reports: the name does not resolve, nobody listens
/// (`ConnectionRefused`), the path does not exist, or the machine has no vsock support
/// (for vsock addresses on a machine without a vsock device).
pub async fn connect(addr: &Address) -> io::Result<Stream> {
    match addr {
        Address::Vsock { cid, port } => {
            let stream = VsockStream::connect(VsockAddr::new(*cid, *port)).await?;
            Ok(Box::new(stream))
        }
        Address::Tcp(host_port) => {
            let stream = TcpStream::connect(host_port.as_str()).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream))
        }
        Address::Unix(path) => Ok(Box::new(UnixStream::connect(path).await?)),
    }
}

/// A bound listener of any transport kind.
#[derive(Debug)]
pub struct Listener {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Vsock(VsockListener),
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
}

impl Listener {
    /// Binds a listener on `addr`.
    ///
    /// For a Unix path, a stale socket file left by a previous run is removed first; a path
    /// where another process still listens, or that is not a socket, is left alone and the
    /// bind fails.
    ///
    /// # Errors
    ///
    /// Whatever the operating system reports: the address is in use (`AddrInUse`), the host
    /// name does not resolve, the directory is not writable, or the machine has no vsock
    /// support (for vsock addresses on a machine without a vsock device).
    pub async fn bind(addr: &Address) -> io::Result<Listener> {
        let inner = match addr {
            Address::Vsock { cid, port } => {
                Inner::Vsock(VsockListener::bind(VsockAddr::new(*cid, *port))?)
            }
            Address::Tcp(host_port) => Inner::Tcp(TcpListener::bind(host_port.as_str()).await?),
            Address::Unix(path) => {
                remove_stale_socket(path).await?;
                Inner::Unix {
                    listener: UnixListener::bind(path)?,
                    path: path.clone(),
                }
            }
        };
        Ok(Listener { inner })
    }

    /// Waits for the next connection; returns it with a description of the peer for logs.
    ///
    /// # Errors
    ///
    /// Whatever the operating system reports for `accept(2)`: e.g. too many open files, or a
    /// connection aborted before it was accepted. The listener stays usable.
    pub async fn accept(&self) -> io::Result<(Stream, String)> {
        match &self.inner {
            Inner::Vsock(listener) => {
                let (stream, peer) = listener.accept().await?;
                let peer = format!("vsock://{}:{}", peer.cid(), peer.port());
                Ok((Box::new(stream), peer))
            }
            Inner::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                stream.set_nodelay(true)?;
                Ok((Box::new(stream), format!("tcp://{peer}")))
            }
            Inner::Unix { listener, path } => {
                let (stream, _unnamed) = listener.accept().await?;
                let peer = match stream.peer_cred() {
                    Ok(cred) => match cred.pid() {
                        Some(pid) => format!("{} (pid {pid}, uid {})", path.display(), cred.uid()),
                        None => format!("{} (uid {})", path.display(), cred.uid()),
                    },
                    Err(_) => path.display().to_string(),
                };
                Ok((Box::new(stream), format!("unix peer on {peer}")))
            }
        }
    }

    /// The address actually bound: after binding `tcp://127.0.0.1:0` this names the port
    /// the system chose.
    ///
    /// # Errors
    ///
    /// Whatever the operating system reports for `getsockname(2)`.
    pub fn local_addr(&self) -> io::Result<Address> {
        match &self.inner {
            Inner::Vsock(listener) => {
                let addr = listener.local_addr()?;
                Ok(Address::Vsock {
                    cid: addr.cid(),
                    port: addr.port(),
                })
            }
            Inner::Tcp(listener) => Ok(Address::Tcp(listener.local_addr()?.to_string())),
            Inner::Unix { path, .. } => Ok(Address::Unix(path.clone())),
        }
    }
}

/// Removes a socket file at `path` if nobody listens on it any more.
async fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let metadata = match tokio::fs::symlink_metadata(path).await {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !metadata.file_type().is_socket() {
        // Not ours to delete; let bind report AddrInUse.
        return Ok(());
    }
    match UnixStream::connect(path).await {
        Ok(_live) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("another process listens on {}", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::debug!(path = %path.display(), "removing stale socket file");
            match tokio::fs::remove_file(path).await {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const WAIT: Duration = Duration::from_secs(5);

    fn parse(s: &str) -> Result<Address, AddressError> {
        s.parse()
    }

    /// A fresh socket path under the temp directory, short enough for `sun_path`.
    fn temp_socket_path(name: &str) -> PathBuf {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "ekms-transport-{}-{name}-{n}.sock",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn parses_vsock() {
        assert_eq!(
            parse("vsock://3:5000").unwrap(),
            Address::Vsock { cid: 3, port: 5000 }
        );
        assert_eq!(
            parse("VSOCK://4294967295:4294967295").unwrap(),
            Address::Vsock {
                cid: u32::MAX,
                port: u32::MAX
            }
        );
    }

    #[test]
    fn rejects_bad_vsock() {
        assert!(matches!(
            parse("vsock:3:5000"),
            Err(AddressError::MissingSlashes {
                expected: VSOCK_FORM,
                ..
            })
        ));
        assert!(matches!(
            parse("vsock://3"),
            Err(AddressError::MissingPort {
                expected: VSOCK_FORM,
                ..
            })
        ));
        assert!(
            matches!(parse("vsock://x:5000"), Err(AddressError::InvalidCid { value, .. }) if value == "x")
        );
        assert!(matches!(
            parse("vsock://-1:5000"),
            Err(AddressError::InvalidCid { .. })
        ));
        assert!(matches!(
            parse("vsock://4294967296:5000"),
            Err(AddressError::InvalidCid { .. })
        ));
        assert!(
            matches!(parse("vsock://3:"), Err(AddressError::InvalidPort { value, .. }) if value.is_empty())
        );
        assert!(matches!(
            parse("vsock://3:4294967296"),
            Err(AddressError::InvalidPort { max: u32::MAX, .. })
        ));
    }

    #[test]
    fn parses_tcp() {
        for s in [
            "127.0.0.1:4599",
            "localhost:0",
            "[::1]:443",
            "kms.example:65535",
        ] {
            assert_eq!(
                parse(&format!("tcp://{s}")).unwrap(),
                Address::Tcp(s.to_owned())
            );
        }
    }

    #[test]
    fn rejects_bad_tcp() {
        assert!(matches!(
            parse("tcp:127.0.0.1:80"),
            Err(AddressError::MissingSlashes {
                expected: TCP_FORM,
                ..
            })
        ));
        assert!(matches!(
            parse("tcp://localhost"),
            Err(AddressError::MissingPort {
                expected: TCP_FORM,
                ..
            })
        ));
        assert!(matches!(
            parse("tcp://:80"),
            Err(AddressError::MissingHost { .. })
        ));
        assert!(matches!(
            parse("tcp://[]:80"),
            Err(AddressError::MissingHost { .. })
        ));
        assert!(matches!(
            parse("tcp://::1:80"),
            Err(AddressError::UnbracketedIpv6 { .. })
        ));
        assert!(matches!(
            parse("tcp://[::1:80"),
            Err(AddressError::UnbracketedIpv6 { .. })
        ));
        assert!(matches!(
            parse("tcp://localhost:65536"),
            Err(AddressError::InvalidPort { max: 65535, .. })
        ));
        assert!(matches!(
            parse("tcp://localhost:80/path"),
            Err(AddressError::InvalidPort { .. })
        ));
    }

    #[test]
    fn parses_unix() {
        let cases = [
            ("unix:/run/ekms.sock", "/run/ekms.sock"),
            ("unix:///run/ekms.sock", "/run/ekms.sock"),
            ("unix:ekms.sock", "ekms.sock"),
            ("unix://dir/ekms.sock", "dir/ekms.sock"),
        ];
        for (s, path) in cases {
            assert_eq!(parse(s).unwrap(), Address::Unix(PathBuf::from(path)), "{s}");
        }
    }

    #[test]
    fn rejects_bad_unix() {
        assert!(matches!(
            parse("unix:"),
            Err(AddressError::EmptyPath { .. })
        ));
        assert!(matches!(
            parse("unix://"),
            Err(AddressError::EmptyPath { .. })
        ));
    }

    #[test]
    fn rejects_missing_or_unknown_scheme() {
        for s in ["", "127.0.0.1", ":80"] {
            assert!(
                matches!(parse(s), Err(AddressError::MissingScheme { .. })),
                "{s:?}"
            );
        }
        assert!(
            matches!(parse("http://localhost:80"), Err(AddressError::UnknownScheme { scheme, .. }) if scheme == "http")
        );
        // A bare host:port is not silently taken as TCP.
        assert!(
            matches!(parse("localhost:4599"), Err(AddressError::UnknownScheme { scheme, .. }) if scheme == "localhost")
        );
    }

    #[test]
    fn error_messages_name_the_problem() {
        let message = parse("tcp://localhost:99999").unwrap_err().to_string();
        assert!(message.contains("\"99999\""), "{message}");
        assert!(message.contains("65535"), "{message}");
        let message = parse("ftp://x:1").unwrap_err().to_string();
        assert!(message.contains("\"ftp\""), "{message}");
    }

    #[test]
    fn display_is_canonical_and_parses_back() {
        let cases = [
            ("vsock://3:5000", "vsock://3:5000"),
            ("tcp://[::1]:443", "tcp://[::1]:443"),
            ("unix:/run/ekms.sock", "unix:///run/ekms.sock"),
            ("unix:///run/ekms.sock", "unix:///run/ekms.sock"),
            ("unix://rel/ekms.sock", "unix:rel/ekms.sock"),
        ];
        for (input, canonical) in cases {
            let addr = parse(input).unwrap();
            assert_eq!(addr.to_string(), canonical);
            assert_eq!(parse(canonical).unwrap(), addr);
        }
    }

    /// Client writes, server echoes with a prefix, both directions checked.
    async fn round_trip(listener: Listener) -> String {
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, peer) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4];
            stream.read_exact(&mut buf).await.unwrap();
            stream.write_all(b"pong:").await.unwrap();
            stream.write_all(&buf).await.unwrap();
            stream.shutdown().await.unwrap();
            peer
        });
        let mut client = connect(&addr).await.unwrap();
        client.write_all(b"ping").await.unwrap();
        let mut reply = Vec::new();
        tokio::time::timeout(WAIT, client.read_to_end(&mut reply))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply, b"pong:ping");
        tokio::time::timeout(WAIT, server).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn tcp_round_trip_on_chosen_port() {
        let listener = Listener::bind(&parse("tcp://127.0.0.1:0").unwrap())
            .await
            .unwrap();
        let Address::Tcp(bound) = listener.local_addr().unwrap() else {
            panic!("tcp listener reported a non-tcp address");
        };
        let port: u16 = bound.rsplit_once(':').unwrap().1.parse().unwrap();
        assert_ne!(port, 0);
        let peer = round_trip(listener).await;
        assert!(peer.starts_with("tcp://127.0.0.1:"), "{peer}");
    }

    #[tokio::test]
    async fn unix_round_trip() {
        let path = temp_socket_path("rt");
        let addr = Address::Unix(path.clone());
        let listener = Listener::bind(&addr).await.unwrap();
        assert_eq!(listener.local_addr().unwrap(), addr);
        let peer = round_trip(listener).await;
        assert!(
            peer.contains(&format!("pid {}", std::process::id())),
            "{peer}"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[tokio::test]
    async fn unix_bind_removes_stale_socket_only() {
        let path = temp_socket_path("stale");
        let addr = Address::Unix(path.clone());

        // A live listener keeps its path.
        let live = Listener::bind(&addr).await.unwrap();
        let err = Listener::bind(&addr).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);

        // Once it is gone, the socket file it left behind is stale and replaced.
        drop(live);
        assert!(path.exists(), "tokio leaves the socket file behind");
        let again = Listener::bind(&addr).await.unwrap();
        round_trip(again).await;
        std::fs::remove_file(&path).unwrap();

        // A regular file is never deleted.
        std::fs::write(&path, b"not a socket").unwrap();
        assert!(Listener::bind(&addr).await.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
        std::fs::remove_file(&path).unwrap();
    }

    #[tokio::test]
    async fn connect_refused_is_an_error() {
        let path = temp_socket_path("absent");
        assert!(connect(&Address::Unix(path)).await.is_err());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = Address::Tcp(listener.local_addr().unwrap().to_string());
        drop(listener);
        let err = connect(&addr).await.err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }

    /// Vsock failures are `io::Error`s, never panics. The brief assumed machines without
    /// vsock; the Firecracker guests these tests run in have `/dev/vsock`, so binding uses a
    /// CID no machine owns, and connecting is only tried where it cannot leave the machine.
    #[tokio::test]
    async fn vsock_failures_are_errors() {
        // EADDRNOTAVAIL with a vsock device (not our CID), EAFNOSUPPORT without one.
        let foreign = parse("vsock://4000000000:45999").unwrap();
        assert!(Listener::bind(&foreign).await.is_err());

        if Path::new("/dev/vsock").exists() {
            // A guest's connect goes to the host, which these tests must not poke.
            return;
        }
        let local = parse("vsock://1:45998").unwrap();
        let connected = tokio::time::timeout(WAIT, connect(&local)).await.unwrap();
        assert!(connected.is_err());
    }

    /// Needs a vsock loopback transport (`modprobe vsock_loopback`): CID 1 is the local
    /// machine. Without it, binding CID 1 fails with `AddrNotAvailable`.
    #[tokio::test]
    #[ignore = "needs a vsock device"]
    async fn vsock_round_trip() {
        let listener = Listener::bind(&parse("vsock://1:45999").unwrap())
            .await
            .unwrap();
        let peer = round_trip(listener).await;
        assert!(peer.starts_with("vsock://1:"), "{peer}");
    }
}
