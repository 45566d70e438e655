//! ekms-parent: the untrusted half of ekms.
//!
//! - [`relay`]: accepts client TCP connections and relays each to a new enclave stream,
//!   holding the enclave's answers until what they depend on is durable. It never parses a
//!   request: TLS and authentication end inside the enclave.
//! - [`holds`]: where the enclave's answers wait until the commit they depend on is durable.
//! - [`cli`]: `ekms`, the operator's tool (`dev`, `attestation`, ...).

mod accept;
pub mod cli;
pub mod holds;
pub mod relay;
pub mod store;
