//! The domain key's custody: initialize and unseal (`admin`), and the attester.

pub mod admin;
pub mod attest;
pub mod join;
pub mod measurements;
