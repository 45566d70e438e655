//! ekms-shared: what both sides of the trust boundary need to agree on.
//!
//! - [`transport`]: `vsock://CID:PORT`, `tcp://HOST:PORT` and `unix:PATH` addresses, with one
//!   connect/listen code path for all three.
//! - [`attestation`]: verification of Nitro attestation documents (COSE_Sign1, ES384, X.509
//!   chain to a pinned root, PCR policy), and the insecure mock attester used off-Nitro.
//! - [`envelope`]: ECDH P-384 + HKDF-SHA384 + AES-256-GCM envelopes bound to their purpose, and
//!   P-384 key codecs (SPKI, PKCS #8, PEM).
//! - [`shamir`]: M-of-N secret sharing of the domain key over GF(256).
//! - [`custody`]: custodians' key files, and shares as custodians hold them (`share-N.json`).
//! - [`release`]: the frames in which the enclave's answers reach the parent, each held until
//!   the commit it depends on is durable.
//! - [`tls_binding`]: the attested user data that binds the enclave's TLS certificate.
//! - [`logging`] and [`config_file`]: what the three binaries share to start: `--log-format`,
//!   and their settings from a config file and `EKMS_*` variables.
//!
//! This crate trusts nothing it receives: every decoder caps its input before allocating.

pub mod attestation;
pub mod audit_format;
pub mod config_file;
pub mod custody;
pub mod envelope;
pub mod logging;
pub mod release;
pub mod shamir;
pub mod tls_binding;
pub mod transport;
pub mod wire;
