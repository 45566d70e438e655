//! ekms-parent: the untrusted half of ekms.
//!
//! - [`relay`]: accepts client TCP connections and relays each, byte for byte, to a new enclave
//!   stream. It never parses a request: TLS and authentication end inside the enclave.
//! - [`cli`]: `ekms`, the operator's tool (`dev`, `attestation`, ...).

mod accept;
pub mod cli;
pub mod relay;
pub mod store;
