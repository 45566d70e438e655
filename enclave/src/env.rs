//! What the KMS core may ask of the world: the time and random bytes. Nothing else.
//!
//! Both are traits so that tests run the core on a fixed clock, and so that the enclave can
//! take its randomness from the NSM where the OS source is not trusted.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::KmsError;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// The enclave clock.
pub trait Clock: Send + Sync {
    /// Now, in milliseconds since the Unix epoch.
    fn now_millis(&self) -> Millis;
}

/// The operating system's clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> Millis {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    /// A clock stopped at `millis`.
    pub fn new(millis: Millis) -> Self {
        FixedClock(AtomicI64::new(millis))
    }
    /// Moves the clock forward by `millis`.
    pub fn advance(&self, millis: Millis) {
        self.0.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now_millis(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

/// A source of cryptographically secure random bytes.
pub trait Entropy: Send + Sync {
    /// Fills `buf` with random bytes.
    ///
    /// # Errors
    /// [`KmsError::Internal`] when the source fails; the request must then fail too.
    fn fill(&self, buf: &mut [u8]) -> Result<(), KmsError>;
}

/// The operating system's random source (`getrandom`), through `ring`.
#[derive(Debug)]
pub struct OsEntropy(ring::rand::SystemRandom);

impl Default for OsEntropy {
    fn default() -> Self {
        OsEntropy(ring::rand::SystemRandom::new())
    }
}

impl Entropy for OsEntropy {
    fn fill(&self, buf: &mut [u8]) -> Result<(), KmsError> {
        ring::rand::SecureRandom::fill(&self.0, buf)
            .map_err(|_unspecified| KmsError::Internal("random source failed"))
    }
}

/// The clock, random source and attester handed to every operation.
#[derive(Clone)]
pub struct Env {
    /// The enclave clock.
    pub clock: Arc<dyn Clock>,
    /// The random source.
    pub entropy: Arc<dyn Entropy>,
    /// Signs attestation documents (NSM, or the insecure mock).
    pub attester: Arc<dyn crate::attest::Attester>,
}

impl Env {
    /// The system clock, the OS random source and `attester`.
    pub fn system(attester: Arc<dyn crate::attest::Attester>) -> Self {
        Env {
            clock: Arc::new(SystemClock),
            entropy: Arc::new(OsEntropy::default()),
            attester,
        }
    }

    /// Now, in milliseconds since the Unix epoch.
    pub fn now(&self) -> Millis {
        self.clock.now_millis()
    }
}
