//! ekms-enclave: the trusted half of ekms.
//!
//! Everything that touches key material or authenticates a caller runs here: the AWS KMS API
//! server (TLS ends here), SigV4 verification, the key store and the cryptography.
//!
//! Trusts: its own binary, the clock and random source it is given ([`env`]), and the
//! principals file in mock mode. Does not trust: the parent, the bytes it relays, or any
//! client until its request verifies.

// Folders by concern (DESIGN.md, "Workspace"): private, so that dead code shows; the binary
// reaches what it needs through the re-exports below. Fuzz targets (built with `--cfg fuzzing`)
// see every module.
macro_rules! modules {
    ($($name:ident),* $(,)?) => {$(
        #[cfg(fuzzing)]
        pub mod $name;
        #[cfg(not(fuzzing))]
        mod $name;
    )*};
}
modules!(access, api, args, config, custody, durability, env, error, hexfmt, json, keys, kms);

// What the `ekms-enclave` binary needs.
pub use access::principals::Principals;
pub use api::metrics::report as report_metrics;
pub use api::server::{serve, Service};
pub use args::Args;
pub use config::{Config, DEFAULT_ACCOUNT, DEFAULT_REGION};
pub use custody::admin::Phase;
pub use custody::attest::{insecure::MockAttester, NsmAttester};
pub use durability::persist::{store_state, StoreState};
pub use env::Attester;
pub use env::Env;
pub use keys::tls::TlsIdentity;
pub use keys::KeyStore;
pub use kms::state::State;

/// Offline sealing for `ekms bench --op unseal` (the operator's tool enables it).
#[cfg(feature = "bench")]
pub mod bench {
    pub use crate::durability::bench_support::*;
    pub use crate::durability::persist::Deployment;
    pub use crate::durability::seal::manifest::SealedRecord;
}
