//! The API edge: the HTTP server (the KMS JSON protocol, the `Ekms.*` administrative targets,
//! STS GetCallerIdentity over the query protocol, audit assembly) and the initialize / unseal
//! flow it drives.

mod admin;
mod audit;
mod loading;
pub mod metrics;
mod request_counts;
pub mod server;
mod sts;
