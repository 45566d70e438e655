//! `ekms-enclave`'s options, here rather than in the binary so that `ekms config check` can
//! check a config file against them. Each is also `EKMS_<NAME>` in the environment and, in
//! mock mode only, `name = value` in the file `--config` names (`ekms_shared::config_file`):
//! a real enclave's settings are baked into its measured image.

use std::path::PathBuf;

use ekms_shared::logging::LogFormat;
use ekms_shared::transport::Address;

use crate::config::{DEFAULT_ACCOUNT, DEFAULT_REGION};

/// The ekms enclave: AWS KMS API server whose keys never leave it.
#[derive(Debug, clap::Parser)]
#[command(name = "ekms-enclave", version)]
pub struct Args {
    /// A TOML file of settings (`listen = "tcp://127.0.0.1:5000"`, the long options' names),
    /// mock mode only; the environment (`EKMS_LISTEN`) and the command line take precedence
    /// over it. Also EKMS_CONFIG.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the API listens: vsock://CID:PORT, tcp://HOST:PORT or unix:PATH.
    #[arg(long)]
    pub listen: Address,
    /// Run outside a Nitro enclave: mock attestation, principals from a file, plain HTTP
    /// allowed. NOT SECURE: for development and CI only.
    #[arg(long)]
    pub insecure_mock_enclave: bool,
    /// Principals and their access keys (mock mode only; others come from the sealed store).
    #[arg(long)]
    pub principals: Option<PathBuf>,
    /// The parent's store channel: vsock://3:PORT in an enclave, tcp:// or unix: in mock mode.
    /// Without it (mock mode only) keys live in memory and are lost at exit.
    #[arg(long)]
    pub store: Option<Address>,
    /// Mock attester CA directory (mock mode): loaded if present, else created.
    #[arg(long)]
    pub mock_ca: Option<PathBuf>,
    /// Serve HTTPS with a certificate made at boot (always on outside mock mode).
    #[arg(long)]
    pub tls: bool,
    /// Write the CA certificate (PEM) here, for clients to trust (mock mode only): the boot CA
    /// at start, the deployment's CA once init or unseal loaded it.
    #[arg(long)]
    pub tls_ca_out: Option<PathBuf>,
    /// Names and addresses the TLS certificate is valid for.
    #[arg(long = "tls-name", default_values_t = ["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()])]
    pub tls_names: Vec<String>,
    /// Memory the enclave has, in MiB (mock mode; a real enclave reads its MemTotal): the
    /// keys and aliases may take half of it, and growing operations refuse with
    /// LimitExceededException before that.
    #[arg(long)]
    pub enclave_memory_mib: Option<u64>,
    /// A quota other than AWS's default, as NAME=N (repeatable): keys-per-principal (100000),
    /// aliases-per-principal (50000), grants-per-key (50000), grants-per-grantee (500).
    #[arg(long = "quota", value_name = "NAME=N")]
    pub quotas: Vec<String>,
    /// Region in ARNs and the SigV4 credential scope.
    #[arg(long, default_value = DEFAULT_REGION)]
    pub region: String,
    /// 12-digit account id in ARNs.
    #[arg(long, default_value = DEFAULT_ACCOUNT)]
    pub account: String,
    /// Serve as one member of several enclaves sharing one store (the etcd store): an audit
    /// chain of this enclave's own, audit-only commits unconditional, the store followed.
    #[arg(long)]
    pub member: bool,
    /// Log lines as text (colours on a terminal only) or as JSON objects, one per line.
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
}
