//! `ekms-parent`'s options, here rather than in the binary so that `ekms config check` can
//! check a config file against them. Each is also `EKMS_<NAME>` in the environment and
//! `name = value` in the file `--config` names (`ekms_shared::config_file`).

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use ekms_shared::logging::LogFormat;
use ekms_shared::transport::Address;

use crate::relay;
use crate::store::audit_files::{parse_age, parse_bytes};
use crate::store::{AuditSettings, EtcdUrl};

/// Relays client connections, byte for byte, to the ekms enclave, and stores its sealed
/// records.
#[derive(Debug, clap::Parser)]
#[command(name = "ekms-parent", version)]
pub struct Args {
    /// A TOML file of settings (`listen = "tcp://0.0.0.0:4599"`, the long options' names);
    /// the environment (`EKMS_LISTEN`) and the command line take precedence over it. Also
    /// EKMS_CONFIG.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Where clients connect: tcp://HOST:PORT, unix:PATH or vsock://CID:PORT.
    #[arg(long, value_name = "ADDRESS")]
    pub listen: Address,

    /// Where the enclave listens: vsock://CID:PORT, or tcp:// / unix: in mock mode.
    #[arg(long, value_name = "ADDRESS")]
    pub enclave: Address,

    /// Connections relayed at once; further clients wait in the listen backlog.
    #[arg(long, value_name = "N", default_value_t = NonZeroUsize::new(relay::DEFAULT_MAX_CONNECTIONS).unwrap_or(NonZeroUsize::MIN))]
    pub max_connections: NonZeroUsize,

    /// Close a connection after this many seconds without traffic in either direction.
    #[arg(long, value_name = "SECONDS", default_value_t = relay::DEFAULT_IDLE_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_secs: u64,

    /// Give up on reaching the enclave for a connection after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = relay::DEFAULT_CONNECT_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout_secs: u64,

    /// Where the enclave reaches its store: vsock://CID:PORT, or tcp:// / unix: in mock mode.
    /// Needs --data-dir or --store.
    #[arg(long, value_name = "ADDRESS")]
    pub store_listen: Option<Address>,

    /// Directory of the embedded store (store.redb, journal.0, journal.1, audit.jsonl); created
    /// if missing. Needs --store-listen.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Keep the store in etcd instead, shared with the deployment's other members:
    /// etcd://HOST:PORT[,HOST:PORT...]/PREFIX. Needs --store-listen.
    #[arg(long, value_name = "URL")]
    pub store: Option<EtcdUrl>,

    /// With an etcd --store: this member's API as clients and other members reach it (for
    /// example https://10.0.1.5:4599), advertised in etcd under a lease while this parent
    /// runs, so that members find each other (`ekms join --store`).
    #[arg(long, value_name = "URL")]
    pub advertise: Option<String>,

    /// Rotate the embedded store's audit log (`audit.jsonl`) once it holds this much (bytes, or
    /// with K, M, G: powers of 1024), between two commits. Rotated files are gzip-compressed as
    /// `audit-<offset>.jsonl.gz` (`ekms audit verify DIR` reads the whole set).
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    pub audit_max_bytes: Option<u64>,

    /// Rotate the embedded store's audit log once its current file is this old (seconds, or
    /// with s, m, h, d: `1d`), checked at each commit and every second while idle.
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub audit_max_age: Option<Duration>,

    /// Refuse commits while the data directory's file system has less than this free (nothing
    /// acknowledged is lost; the enclave answers DependencyTimeoutException meanwhile and serves
    /// again by itself once space is freed); a warning is logged below four times it. 0 turns
    /// the check off.
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes, default_value = "64M")]
    pub audit_min_free_bytes: u64,

    /// Serve HTTP `/metrics` (Prometheus), `/healthz` and `/readyz` on this address
    /// (HOST:PORT, e.g. 127.0.0.1:9464; port 0 picks one, printed as `ekms-parent metrics on
    /// ADDRESS`). Plain HTTP with no authentication: the metrics name no key, alias or
    /// principal, but keep the port off the internet.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_metrics_listen)]
    pub metrics_listen: Option<Address>,

    /// Log lines as text (colours on a terminal only) or as JSON objects, one per line.
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
}

/// `--metrics-listen`: `HOST:PORT`, or `tcp://HOST:PORT`.
fn parse_metrics_listen(text: &str) -> Result<Address, ArgsError> {
    let host_port = text.strip_prefix("tcp://").unwrap_or(text);
    match host_port.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(Address::Tcp(host_port.to_owned()))
        }
        _ => Err(ArgsError::MetricsListen),
    }
}

/// The store the options ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backing {
    /// The embedded store in this directory.
    Dir(PathBuf),
    /// etcd.
    Etcd(EtcdUrl),
}

/// Options that do not go together (they may come from the command line, the environment and
/// the config file: clap's own `requires` would see only the command line).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgsError {
    /// `--store-listen` with neither store.
    #[error("--store-listen needs --data-dir or --store")]
    NoBacking,
    /// Both stores.
    #[error("--data-dir and --store are exclusive: give one")]
    TwoBackings,
    /// A store and nowhere to serve it.
    #[error("--data-dir and --store need --store-listen")]
    NoStoreListen,
    /// An endpoint to advertise with no shared store to advertise it in.
    #[error("--advertise needs an etcd --store (members find each other there)")]
    AdvertiseWithoutEtcd,
    /// `--metrics-listen` is not `HOST:PORT`.
    #[error("--metrics-listen must be HOST:PORT (a TCP address)")]
    MetricsListen,
}

impl Args {
    /// The embedded store's audit log settings.
    pub fn audit_settings(&self) -> AuditSettings {
        AuditSettings {
            max_bytes: self.audit_max_bytes,
            max_age: self.audit_max_age,
            min_free_bytes: self.audit_min_free_bytes,
        }
    }

    /// Where the store is served and what keeps it, if this parent runs one.
    ///
    /// # Errors
    /// When the three store options do not go together ([`ArgsError`]).
    pub fn store(&self) -> Result<Option<(&Address, Backing)>, ArgsError> {
        if self.advertise.is_some() && self.store.is_none() {
            return Err(ArgsError::AdvertiseWithoutEtcd);
        }
        let backing = match (&self.data_dir, &self.store) {
            (Some(_), Some(_)) => return Err(ArgsError::TwoBackings),
            (Some(dir), None) => Some(Backing::Dir(dir.clone())),
            (None, Some(url)) => Some(Backing::Etcd(url.clone())),
            (None, None) => None,
        };
        match (&self.store_listen, backing) {
            (Some(address), Some(backing)) => Ok(Some((address, backing))),
            (Some(_), None) => Err(ArgsError::NoBacking),
            (None, Some(_)) => Err(ArgsError::NoStoreListen),
            (None, None) => Ok(None),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn parse(args: &[&str]) -> Args {
        let base = [
            "ekms-parent",
            "--listen",
            "tcp://127.0.0.1:1",
            "--enclave",
            "tcp://127.0.0.1:2",
        ];
        Args::try_parse_from(base.iter().chain(args)).unwrap()
    }

    #[test]
    fn store_options_go_together_and_advertise_needs_etcd() {
        let listen = ["--store-listen", "tcp://127.0.0.1:3"];
        assert_eq!(parse(&listen).store().unwrap_err(), ArgsError::NoBacking);
        assert_eq!(
            parse(&["--data-dir", "/tmp/x"]).store().unwrap_err(),
            ArgsError::NoStoreListen
        );
        let advertise = [
            "--store-listen",
            "tcp://127.0.0.1:3",
            "--data-dir",
            "/tmp/x",
            "--advertise",
            "http://a:1",
        ];
        assert_eq!(
            parse(&advertise).store().unwrap_err(),
            ArgsError::AdvertiseWithoutEtcd
        );
        let etcd = [
            "--store-listen",
            "tcp://127.0.0.1:3",
            "--store",
            "etcd://127.0.0.1:2379/p",
            "--advertise",
            "http://a:1",
        ];
        assert!(matches!(
            parse(&etcd).store(),
            Ok(Some((_, Backing::Etcd(_))))
        ));
    }
}
