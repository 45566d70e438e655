//! ekms-shared: what both sides of the trust boundary need to agree on.
//!
//! - [`transport`]: `vsock://CID:PORT`, `tcp://HOST:PORT` and `unix:PATH` addresses, with one
//!   connect/listen code path for all three.
//! - [`attestation`]: verification of Nitro attestation documents (COSE_Sign1, ES384, X.509
//!   chain to a pinned root, PCR policy), and the insecure mock attester used off-Nitro.
//!
//! This crate trusts nothing it receives: every decoder caps its input before allocating.

pub mod attestation;
pub mod transport;
pub mod wire;
