//! Who a caller is and what documents say they may do: SigV4 authentication (`sigv4`),
//! principals and their access keys, and policies and grants (`policy`, pure evaluation).

pub mod policy;
pub mod principals;
pub mod sigv4;
