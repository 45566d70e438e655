//! What survives a restart: sealing (`seal`), the committer and loader (`persist`), and the
//! audit chain.

pub mod audit;
#[cfg(feature = "bench")]
pub mod bench_support;
pub mod persist;
pub mod seal;
