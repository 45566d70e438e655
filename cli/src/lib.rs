//! `ekms`, the operator's tool. One module per subcommand.

pub mod attestation;
pub mod audit;
pub mod bench;
pub mod children;
pub mod config;
pub mod custodian;
pub mod custody;
pub mod dev;
pub mod import_key;
pub mod measurements;
pub mod principal;
pub mod progress;
pub mod signed_client;
pub mod trust;
