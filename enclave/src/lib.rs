//! ekms-enclave: the trusted half of ekms.
//!
//! Everything that touches key material or authenticates a caller runs here: the AWS KMS API
//! server (TLS ends here), SigV4 verification, the key store and the cryptography.
//!
//! Trusts: its own binary, the clock and random source it is given ([`env`]), and the
//! principals file in mock mode. Does not trust: the parent, the bytes it relays, or any
//! client until its request verifies.

pub mod admin;
pub mod asym;
pub mod attest;
pub mod audit;
pub mod authz;
pub mod bench_support;
pub mod ciphertext;
pub mod config;
pub mod dispatch;
pub mod env;
pub mod error;
pub mod hexfmt;
pub mod import;
pub mod json;
pub mod keys;
pub mod mac;
pub mod ops;
pub mod persist;
pub mod policy;
pub mod principal_ops;
pub mod principals;
pub mod recipient;
pub mod rotation;
pub mod seal;
pub mod server;
pub mod sigv4;
pub mod tls;
pub mod validate;
