//! A real etcd server for a test: its own data dir and loopback ports, stopped on drop.
//!
//! The binary is `EKMS_ETCD` if set, else `etcd` on the PATH (Debian's `etcd-server`, which
//! `scripts/test.sh` and `.ci/run` install).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long etcd may take to answer after it starts.
pub const ETCD_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running etcd.
#[derive(Debug)]
pub struct EtcdServer {
    /// `127.0.0.1:PORT`, where clients connect.
    pub endpoint: String,
    child: Child,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("EKMS_ETCD") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("etcd"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "etcd is not installed: these tests need a real etcd (Debian: apt-get install \
             etcd-server; scripts/test.sh installs it when it can), or EKMS_ETCD=/path/to/etcd"
        )
    })
}

impl EtcdServer {
    /// Starts etcd and waits until it answers.
    ///
    /// # Panics
    /// If etcd is not installed or does not answer within [`ETCD_READY_TIMEOUT`].
    pub fn start() -> EtcdServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let client = free_port();
        let peer = free_port();
        let endpoint = format!("127.0.0.1:{client}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd.log");
        let child = Command::new(binary())
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--name", "ekms-test"])
            .arg(format!("--listen-client-urls=http://{endpoint}"))
            .arg(format!("--advertise-client-urls=http://{endpoint}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!(
                "--initial-cluster=ekms-test=http://127.0.0.1:{peer}"
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        let server = EtcdServer {
            endpoint,
            child,
            dir,
        };
        server.wait_ready();
        server
    }

    /// `etcd://ENDPOINT/PREFIX`.
    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://{}/{prefix}", self.endpoint)
    }

    /// What etcd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// Pauses etcd (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Resumes a paused etcd.
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("a pid"));
        nix::sys::signal::kill(pid, signal).expect("signal etcd");
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + ETCD_READY_TIMEOUT;
        while Instant::now() < deadline {
            if self.answers() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "etcd did not answer within {ETCD_READY_TIMEOUT:?}:\n{}",
            self.log()
        );
    }

    /// Whether `POST /v3/kv/range` is answered with 200.
    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(&self.endpoint) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let body = r#"{"key":"AA=="}"#;
        let request = format!(
            "POST /v3/kv/range HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.endpoint,
            body.len()
        );
        let mut answer = String::new();
        stream.write_all(request.as_bytes()).is_ok()
            && stream.read_to_string(&mut answer).is_ok()
            && answer.starts_with("HTTP/1.1 200")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.resume_quietly();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl EtcdServer {
    fn resume_quietly(&self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGCONT,
            );
        }
    }
}
