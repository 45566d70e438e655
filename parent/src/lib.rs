//! ekms-parent: the untrusted half of ekms.
//!
//! - [`args`]: the options of `ekms-parent` (command line, `EKMS_*`, config file).
//! - [`relay`]: accepts client TCP connections and relays each to a new enclave stream,
//!   holding the enclave's answers until what they depend on is durable. It never parses a
//!   request: TLS and authentication end inside the enclave.
//! - [`holds`]: where the enclave's answers wait until the commit they depend on is durable.
//! - [`metrics`]: `/metrics` (the parent's counters and the enclave's aggregates), `/healthz`
//!   and `/readyz`.
//! - [`store`]: the enclave's sealed records and audit log on disk (a group-commit journal in
//!   front of redb), served over the store channel.
//!
//! The operator's tool `ekms` is a crate of its own (`cli/`, ekms-cli); it uses this library
//! (the relay for `ekms bench`'s baseline, the store for `ekms bench --op unseal`), never the
//! other way round.

mod accept;
pub mod args;
pub mod holds;
pub mod metrics;
pub mod relay;
pub mod store;
