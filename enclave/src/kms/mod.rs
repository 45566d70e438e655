//! The KMS core: the state and what a request touched (`state`), authorization as guarded
//! access to that state (`authz`), the operation table (`dispatch`), one module per operation
//! (`ops/`, and `principal_ops` for the `Ekms.*` principal operations), and request validation.

pub mod authz;
pub mod dispatch;
pub mod ops;
pub mod principal_ops;
pub mod state;
#[cfg(test)]
mod tests;
pub mod validate;
