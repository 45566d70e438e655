//! Who a caller is and what documents say they may do: SigV4 authentication (`sigv4`),
//! principals and their access keys, policies and grants (`policy`, pure evaluation), and the
//! measurements allowed to join a deployment (`measurements`).

pub mod measurements;
pub mod policy;
pub mod principals;
pub mod sigv4;
