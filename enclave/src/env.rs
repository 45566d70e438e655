//! What the KMS core may ask of the world: the time and random bytes. Nothing else.
//!
//! Both are traits so that tests run the core on a fixed clock, and so that the enclave can
//! take its randomness from the NSM where the OS source is not trusted.

#[cfg(any(test, fuzzing))]
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
    // The one place the core's clock reads the system's.
    #[allow(clippy::disallowed_methods)]
    fn now_millis(&self) -> Millis {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to (tests).
#[cfg(any(test, fuzzing))]
#[derive(Debug, Default)]
pub struct FixedClock(AtomicI64);

#[cfg(any(test, fuzzing))]
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

#[cfg(any(test, fuzzing))]
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
    // The one place the core's random source is opened.
    #[allow(clippy::disallowed_methods)]
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

/// Bytes read from the source at a time by [`PooledEntropy`].
const POOL_BYTES: usize = 4096;
/// Larger requests go to the source directly.
const MAX_POOLED: usize = 256;

/// A random source read [`POOL_BYTES`] at a time: one `getrandom` call serves about a
/// hundred requests' ids and nonces, where each request made two or three (each call about
/// 1.5% of the enclave's CPU for Encrypt). The bytes are the source's, unchanged and in
/// order; each is handed out once and zeroed in the pool as it goes, and the pool is zeroed
/// when dropped. Requests over [`MAX_POOLED`] bytes go to the source directly.
pub struct PooledEntropy<E: Entropy = OsEntropy> {
    source: E,
    pool: std::sync::Mutex<Pool>,
}

struct Pool {
    bytes: zeroize::Zeroizing<[u8; POOL_BYTES]>,
    /// The first byte not yet handed out; [`POOL_BYTES`] when empty.
    next: usize,
}

impl<E: Entropy> PooledEntropy<E> {
    /// An empty pool over `source`; the first request fills it.
    pub fn new(source: E) -> Self {
        PooledEntropy {
            source,
            pool: std::sync::Mutex::new(Pool {
                bytes: zeroize::Zeroizing::new([0; POOL_BYTES]),
                next: POOL_BYTES,
            }),
        }
    }
}

impl Default for PooledEntropy {
    fn default() -> Self {
        PooledEntropy::new(OsEntropy::default())
    }
}

impl<E: Entropy> Entropy for PooledEntropy<E> {
    fn fill(&self, buf: &mut [u8]) -> Result<(), KmsError> {
        use zeroize::Zeroize as _;
        if buf.len() > MAX_POOLED {
            return self.source.fill(buf);
        }
        let mut pool = self
            .pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if POOL_BYTES - pool.next < buf.len() {
            // Marked empty first: a failed read leaves nothing that could be handed out.
            pool.next = POOL_BYTES;
            self.source.fill(&mut pool.bytes[..])?;
            pool.next = 0;
        }
        let (start, end) = (pool.next, pool.next + buf.len());
        buf.copy_from_slice(&pool.bytes[start..end]);
        pool.bytes[start..end].zeroize();
        pool.next = end;
        Ok(())
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
    pub attester: Arc<dyn crate::env::Attester>,
}

impl Env {
    /// The system clock, the OS random source (pooled) and `attester`.
    pub fn system(attester: Arc<dyn crate::env::Attester>) -> Self {
        Env {
            clock: Arc::new(SystemClock),
            entropy: Arc::new(PooledEntropy::default()),
            attester,
        }
    }

    /// Now, in milliseconds since the Unix epoch.
    pub fn now(&self) -> Millis {
        self.clock.now_millis()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};

    /// Counts 0, 1, 2, ... as 8-byte big-endian words (so every handed-out byte says where
    /// it came from), counts its reads, and fails while told to.
    #[derive(Default)]
    struct Counting {
        word: AtomicU64,
        reads: AtomicUsize,
        failing: AtomicBool,
    }

    impl Entropy for Counting {
        fn fill(&self, buf: &mut [u8]) -> Result<(), KmsError> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(KmsError::Internal("random source failed"));
            }
            self.reads.fetch_add(1, Ordering::SeqCst);
            for chunk in buf.chunks_mut(8) {
                let word = self.word.fetch_add(1, Ordering::SeqCst).to_be_bytes();
                chunk.copy_from_slice(&word[..chunk.len()]);
            }
            Ok(())
        }
    }

    fn words(bytes: &[u8]) -> Vec<u64> {
        bytes
            .chunks(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
            .collect()
    }

    /// The pool hands out the source's bytes in order, each once, one read per pool; the
    /// bytes handed out are zero in the pool.
    #[test]
    fn pool_hands_out_each_source_byte_once() {
        let pooled = PooledEntropy::new(Counting::default());
        let mut seen = Vec::new();
        for _ in 0..3 * (POOL_BYTES / 40) {
            let mut buf = [0u8; 40];
            pooled.fill(&mut buf).unwrap();
            seen.extend(words(&buf));
        }
        // 102 requests of 40 bytes fit in a pool of 4096; the 103rd refills, leaving 16
        // bytes (two words) never handed out. Three pools' worth, three reads.
        let per_pool = (POOL_BYTES / 40) * 5;
        let expected: Vec<u64> = (0..3u64)
            .flat_map(|pool| {
                let first = pool * (POOL_BYTES as u64 / 8);
                first..first + per_pool as u64
            })
            .collect();
        assert_eq!(seen, expected);
        assert_eq!(pooled.source.reads.load(Ordering::SeqCst), 3);
        let pool = pooled.pool.lock().unwrap();
        assert!(pool.bytes[..pool.next].iter().all(|&b| b == 0));
    }

    /// Requests over the bound go to the source directly and leave the pool as it was.
    #[test]
    fn large_requests_bypass_the_pool() {
        let pooled = PooledEntropy::new(Counting::default());
        let mut small = [0u8; 8];
        pooled.fill(&mut small).unwrap();
        let mut large = [0u8; MAX_POOLED + 8];
        pooled.fill(&mut large).unwrap();
        assert_eq!(
            words(&large)[0],
            POOL_BYTES as u64 / 8,
            "read after the pool"
        );
        pooled.fill(&mut small).unwrap();
        assert_eq!(words(&small), [1], "the pool goes on where it was");
        assert_eq!(pooled.source.reads.load(Ordering::SeqCst), 2);
    }

    /// A failed refill is an error, and nothing of the old pool is handed out after it.
    #[test]
    fn failed_refill_hands_out_nothing_stale() {
        let pooled = PooledEntropy::new(Counting::default());
        let mut buf = [0u8; 8];
        pooled.fill(&mut buf).unwrap();
        {
            // Nearly empty: the next request needs a refill.
            pooled.pool.lock().unwrap().next = POOL_BYTES - 4;
        }
        pooled.source.failing.store(true, Ordering::SeqCst);
        assert!(pooled.fill(&mut buf).is_err());
        assert!(pooled.fill(&mut [0u8; 1]).is_err(), "the pool is empty");
        pooled.source.failing.store(false, Ordering::SeqCst);
        pooled.fill(&mut buf).unwrap();
        assert_eq!(words(&buf), [POOL_BYTES as u64 / 8], "fresh bytes");
    }
}

/// Attestation failed.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// `/dev/nsm` could not be opened.
    #[error("the NSM device is not available")]
    NsmUnavailable,
    /// The NSM answered with an error or an unexpected response.
    #[error("the NSM refused the request: {0}")]
    Nsm(String),
    /// The mock attester failed.
    #[error("mock attestation failed: {0}")]
    Mock(#[from] ekms_shared::attestation::insecure::InsecureMockError),
}

/// Produces attestation documents binding `public_key`, `user_data` and `nonce`.
pub trait Attester: Send + Sync {
    /// A COSE_Sign1 attestation document.
    ///
    /// # Errors
    /// [`AttestError`] when the device or mock fails, or a field exceeds 1024 bytes.
    fn attest(
        &self,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, AttestError>;

    /// Whether documents from this attester prove anything (false for the mock).
    fn is_secure(&self) -> bool;
}
