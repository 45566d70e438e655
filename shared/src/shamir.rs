//! M-of-N Shamir secret sharing of a 32-byte secret (the domain key) over GF(2^8).
//!
//! The field arithmetic is not ours: it is [`vsss_rs::Gf256`] (vsss-rs 6, Michael Lodder;
//! security audits funded by LIT Protocol and Turnkey; in production use). It was chosen over
//! the alternatives because its GF(256) is constant-time:
//!
//! - vsss-rs: multiplication is a bitwise carry-less multiply with mask arithmetic (no
//!   secret-dependent branch or table index), inversion is a fixed-length square-and-multiply
//!   with `subtle` conditional assignment; random polynomial coefficients are uniform over the
//!   whole field (the zero-rejection bias reported in its audit is fixed in 6.x).
//! - `sharks` and its fork `blahaj`: log/exp table lookups indexed by secret bytes (cache-timing
//!   leak), `sharks` unmaintained.
//! - `shamirsecretsharing`: constant-time bitsliced arithmetic, but a C library behind FFI, with
//!   no release since 2020.
//!
//! This wrapper fixes the parameters ekms uses: a 32-byte secret, share indices `1..=N`
//! (x-coordinates, public), `1 <= M <= N <= 255`. Each byte of the secret is the constant term
//! of its own random polynomial of degree M−1; share `i` holds the 32 evaluations at `x = i`.
//! M−1 shares are independent of the secret (information-theoretically); combining fewer than
//! M shares yields a different, meaningless value, not an error: the caller checks the result
//! against a commitment ([`crate::custody::commitment`]).
//!
//! vsss-rs refuses a threshold of 1 (a degree-0 polynomial). For 1-of-N the wrapper does what
//! that polynomial does without the library: every share's value is the secret itself. Known
//! limitation: vsss-rs does not wipe its polynomial's coefficients when it frees them.

use std::fmt;

use p384::elliptic_curve::rand_core::{CryptoRngCore, OsRng};
use vsss_rs::{Gf256, IdentifierGf256};
use zeroize::{Zeroize, Zeroizing};

/// Length of the shared secret and of each share's value.
pub const SECRET_LEN: usize = 32;

/// One share: its index (the public x-coordinate, `1..=255`) and its 32-byte value (secret).
/// No `Clone`, no `Serialize`; `Debug` shows the index only; the value is wiped on drop.
pub struct Share {
    index: u8,
    value: Zeroizing<[u8; SECRET_LEN]>,
}

impl Share {
    /// A share from its index and value.
    ///
    /// # Errors
    ///
    /// [`ShamirError::ZeroIndex`] for index 0 (the x-coordinate of the secret itself).
    pub fn new(index: u8, value: Zeroizing<[u8; SECRET_LEN]>) -> Result<Self, ShamirError> {
        if index == 0 {
            return Err(ShamirError::ZeroIndex);
        }
        Ok(Self { index, value })
    }

    /// A share from its index and a value of unchecked length (as decoded from the wire).
    ///
    /// # Errors
    ///
    /// [`ShamirError::ZeroIndex`], or [`ShamirError::ShareLength`] unless `value` is 32 bytes.
    pub fn from_slice(index: u8, value: &[u8]) -> Result<Self, ShamirError> {
        let mut array = Zeroizing::new([0u8; SECRET_LEN]);
        if value.len() != SECRET_LEN {
            return Err(ShamirError::ShareLength { len: value.len() });
        }
        array.copy_from_slice(value);
        Self::new(index, array)
    }

    /// The share's index (x-coordinate), `1..=255`. Public.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// The share's secret value.
    pub fn expose_value(&self) -> &[u8; SECRET_LEN] {
        &self.value
    }

    /// A copy, for holders inside this crate that hand out owned shares. Not `Clone`, so that
    /// copying a secret is always a visible call.
    pub(crate) fn duplicate(&self) -> Share {
        Share {
            index: self.index,
            value: Zeroizing::new(*self.value),
        }
    }
}

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The index is public; the value is not printed.
        f.debug_struct("Share")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// Secret-sharing failures.
#[derive(Debug, thiserror::Error)]
pub enum ShamirError {
    /// The parameters are outside `1 <= threshold <= shares <= 255`.
    #[error("invalid sharing parameters: threshold {threshold} of {shares} shares (need 1 <= threshold <= shares <= 255)")]
    Parameters {
        /// The threshold asked for.
        threshold: u8,
        /// The number of shares asked for.
        shares: u8,
    },
    /// No shares were given to combine.
    #[error("no shares to combine")]
    NoShares,
    /// Index 0 is the secret's own x-coordinate, never a share's.
    #[error("share index 0 is invalid")]
    ZeroIndex,
    /// Two shares with the same index: one of them is a copy or a forgery.
    #[error("two shares have the same index {index}")]
    DuplicateIndex {
        /// The repeated index.
        index: u8,
    },
    /// A share's value is not 32 bytes.
    #[error("a share value is {len} bytes, expected 32")]
    ShareLength {
        /// The length found.
        len: usize,
    },
    /// The random number generator failed; nothing was produced.
    #[error("the random number generator failed")]
    Rng(#[source] p384::elliptic_curve::rand_core::Error),
    /// The secret-sharing library refused the operation (not expected after the checks above).
    #[error("secret sharing failed: {0}")]
    Scheme(vsss_rs::Error),
}

/// Split `secret` into `shares` shares, any `threshold` of which rebuild it. Shares have indices
/// `1..=shares`, in that order. Randomness comes from the OS.
///
/// # Errors
///
/// [`ShamirError::Parameters`] unless `1 <= threshold <= shares` (`shares` is at most 255 by
/// its type); [`ShamirError::Rng`] if the OS RNG fails.
pub fn split(
    secret: &[u8; SECRET_LEN],
    threshold: u8,
    shares: u8,
) -> Result<Vec<Share>, ShamirError> {
    split_with_rng(&mut OsRng, secret, threshold, shares)
}

/// [`split`] with the random source given (an `Env`'s, or a test's). `rng` must be a
/// cryptographically secure generator.
///
/// # Errors
///
/// As [`split`]; [`ShamirError::Rng`] if `rng` fails.
pub fn split_with_rng(
    rng: &mut impl CryptoRngCore,
    secret: &[u8; SECRET_LEN],
    threshold: u8,
    shares: u8,
) -> Result<Vec<Share>, ShamirError> {
    if threshold == 0 || shares == 0 || threshold > shares {
        return Err(ShamirError::Parameters { threshold, shares });
    }
    if threshold == 1 {
        // The degree-0 polynomial f(x) = secret: every share is the secret.
        return (1..=shares)
            .map(|index| Share::new(index, Zeroizing::new(*secret)))
            .collect();
    }

    let mut adapter = RngAdapter { rng, failure: None };
    let ids = (1..=shares).map(|i| IdentifierGf256(Gf256(i)));
    let raw = Gf256::split_bytes_with_participant_ids_iter(
        usize::from(threshold),
        usize::from(shares),
        secret,
        &mut adapter,
        ids,
    );
    let raw = Zeroizing::new(raw.map_err(ShamirError::Scheme)?);
    if let Some(error) = adapter.failure {
        // The RNG failed part-way: the shares were computed from zeros, discard them.
        return Err(ShamirError::Rng(error));
    }
    // Each raw share is `index ‖ 32 value bytes`.
    raw.iter()
        .map(|share| match share.split_first() {
            Some((&index, value)) => Share::from_slice(index, value),
            None => Err(ShamirError::ShareLength { len: 0 }),
        })
        .collect()
}

/// Rebuild the secret from shares. With at least the threshold's number of shares from one
/// split, this is the secret; with fewer (or shares of different splits), some other value.
/// A single share gives its own value (right for 1-of-N).
///
/// # Errors
///
/// [`ShamirError::NoShares`] for an empty slice, [`ShamirError::DuplicateIndex`] if two shares
/// have the same index.
pub fn combine(shares: &[Share]) -> Result<Zeroizing<[u8; SECRET_LEN]>, ShamirError> {
    let first = shares.first().ok_or(ShamirError::NoShares)?;
    // Indices are public: plain comparisons.
    let mut seen = [false; 256];
    for share in shares {
        let slot = &mut seen[usize::from(share.index)];
        if *slot {
            return Err(ShamirError::DuplicateIndex { index: share.index });
        }
        *slot = true;
    }
    if shares.len() == 1 {
        return Ok(Zeroizing::new(*first.value));
    }

    let raw: Zeroizing<Vec<Vec<u8>>> = Zeroizing::new(
        shares
            .iter()
            .map(|share| {
                let mut bytes = Vec::with_capacity(1 + SECRET_LEN);
                bytes.push(share.index);
                bytes.extend_from_slice(&share.value[..]);
                bytes
            })
            .collect(),
    );
    let combined = Zeroizing::new(Gf256::combine_bytes(&raw[..]).map_err(ShamirError::Scheme)?);
    let mut secret = Zeroizing::new([0u8; SECRET_LEN]);
    if combined.len() != SECRET_LEN {
        return Err(ShamirError::ShareLength {
            len: combined.len(),
        });
    }
    secret.copy_from_slice(&combined);
    Ok(secret)
}

/// Feeds vsss-rs (which takes rand_core 0.10's infallible `CryptoRng`) from a rand_core 0.6
/// `CryptoRngCore`, the RNG type the rest of ekms (p384) uses. A failure is recorded instead of
/// panicking; the output is then zeros and the caller discards everything computed from it.
struct RngAdapter<'a, R: CryptoRngCore> {
    rng: &'a mut R,
    failure: Option<p384::elliptic_curve::rand_core::Error>,
}

impl<R: CryptoRngCore> rand_core::TryRng for RngAdapter<'_, R> {
    type Error = core::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut bytes = [0u8; 4];
        self.fill(&mut bytes);
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut bytes = [0u8; 8];
        self.fill(&mut bytes);
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.fill(dst);
        Ok(())
    }
}

/// The wrapped generator is a `CryptoRngCore`, so the adapter is cryptographically secure too.
impl<R: CryptoRngCore> rand_core::TryCryptoRng for RngAdapter<'_, R> {}

impl<R: CryptoRngCore> RngAdapter<'_, R> {
    fn fill(&mut self, dst: &mut [u8]) {
        if self.failure.is_some() {
            dst.zeroize();
            return;
        }
        if let Err(error) = self.rng.try_fill_bytes(dst) {
            dst.zeroize();
            self.failure = Some(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = *b"the domain key, 32 bytes long!!!";

    /// Every subset of `0..n` with `k` elements, in lexicographic order.
    fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
        fn go(
            start: usize,
            n: usize,
            k: usize,
            current: &mut Vec<usize>,
            out: &mut Vec<Vec<usize>>,
        ) {
            if current.len() == k {
                out.push(current.clone());
                return;
            }
            for i in start..n {
                current.push(i);
                go(i + 1, n, k, current, out);
                current.pop();
            }
        }
        let mut out = Vec::new();
        go(0, n, k, &mut Vec::new(), &mut out);
        out
    }

    fn copy(share: &Share) -> Share {
        Share::new(share.index(), Zeroizing::new(*share.expose_value())).expect("valid index")
    }

    fn pick(shares: &[Share], which: &[usize]) -> Vec<Share> {
        which.iter().map(|&i| copy(&shares[i])).collect()
    }

    #[test]
    fn any_m_of_n_reconstruct_and_m_minus_1_do_not() {
        for (m, n) in [(2u8, 2u8), (2, 3), (3, 5), (4, 4), (5, 7)] {
            let shares = split(&SECRET, m, n).expect("split");
            assert_eq!(shares.len(), usize::from(n));
            for (i, share) in shares.iter().enumerate() {
                assert_eq!(usize::from(share.index()), i + 1);
            }
            for subset in subsets(usize::from(n), usize::from(m)) {
                let secret = combine(&pick(&shares, &subset)).expect("combine");
                assert_eq!(*secret, SECRET, "{m}-of-{n}, shares {subset:?}");
            }
            // More than M shares also rebuild the secret.
            let all =
                combine(&pick(&shares, &(0..usize::from(n)).collect::<Vec<_>>())).expect("combine");
            assert_eq!(*all, SECRET);
            for subset in subsets(usize::from(n), usize::from(m) - 1) {
                if subset.is_empty() {
                    continue;
                }
                let wrong = combine(&pick(&shares, &subset)).expect("combine");
                assert_ne!(
                    *wrong,
                    SECRET,
                    "{m}-of-{n}: {} shares rebuilt the secret",
                    m - 1
                );
            }
        }
    }

    #[test]
    fn shares_are_fresh_each_split() {
        let a = split(&SECRET, 2, 3).expect("split");
        let b = split(&SECRET, 2, 3).expect("split");
        assert_ne!(a[0].expose_value(), b[0].expose_value());
        // No share is the secret in the clear (for threshold >= 2; 2^-256 chance per share).
        assert!(a.iter().all(|s| *s.expose_value() != SECRET));
    }

    #[test]
    fn one_of_one_and_one_of_n() {
        let shares = split(&SECRET, 1, 1).expect("split");
        assert_eq!(shares.len(), 1);
        assert_eq!(shares[0].index(), 1);
        assert_eq!(*combine(&shares).expect("combine"), SECRET);

        let shares = split(&SECRET, 1, 3).expect("split");
        for share in &shares {
            assert_eq!(*combine(&[copy(share)]).expect("combine"), SECRET);
        }
        assert_eq!(*combine(&shares).expect("combine"), SECRET);
    }

    #[test]
    fn maximum_share_count() {
        let shares = split(&SECRET, 3, 255).expect("split");
        assert_eq!(shares.len(), 255);
        assert_eq!(shares[254].index(), 255);
        let secret = combine(&pick(&shares, &[0, 127, 254])).expect("combine");
        assert_eq!(*secret, SECRET);
    }

    #[test]
    fn invalid_parameters_are_refused() {
        for (m, n) in [(0u8, 0u8), (0, 3), (1, 0), (4, 3), (255, 254)] {
            assert!(
                matches!(split(&SECRET, m, n), Err(ShamirError::Parameters { .. })),
                "{m}-of-{n}"
            );
        }
    }

    #[test]
    fn duplicate_index_is_refused() {
        let shares = split(&SECRET, 2, 3).expect("split");
        let twice = vec![copy(&shares[1]), copy(&shares[1])];
        assert!(matches!(
            combine(&twice),
            Err(ShamirError::DuplicateIndex { index: 2 })
        ));
        // Same index, different value (a forged share) is refused the same way.
        let forged = Share::new(2, Zeroizing::new([7u8; 32])).expect("share");
        let mixed = vec![copy(&shares[0]), copy(&shares[1]), forged];
        assert!(matches!(
            combine(&mixed),
            Err(ShamirError::DuplicateIndex { index: 2 })
        ));
    }

    #[test]
    fn empty_zero_index_and_bad_lengths_are_refused() {
        assert!(matches!(combine(&[]), Err(ShamirError::NoShares)));
        assert!(matches!(
            Share::new(0, Zeroizing::new([1u8; 32])),
            Err(ShamirError::ZeroIndex)
        ));
        assert!(matches!(
            Share::from_slice(1, &[0u8; 31]),
            Err(ShamirError::ShareLength { len: 31 })
        ));
        assert!(matches!(
            Share::from_slice(1, &[0u8; 33]),
            Err(ShamirError::ShareLength { len: 33 })
        ));
        assert!(Share::from_slice(1, &[0u8; 32]).is_ok());
    }

    /// Known answer, computed by hand from the definition (no vector is published for
    /// vsss-rs's GF(256), which is the AES field, polynomial x^8 + x^4 + x^3 + x + 1 = 0x11b):
    /// for a 2-of-N split of the byte s with slope a, f(x) = s ⊕ a·x. With s = 0x53 and
    /// a = 0xCA, f(1) = 0x53 ⊕ 0xCA = 0x99 and f(2) = 0x53 ⊕ (0xCA·2 = 0x8F) = 0xDC
    /// (0xCA·2 = 0x194 ⊕ 0x11B = 0x8F). Also FIPS 197 §4.2's {57}·{83} = {c1} below.
    #[test]
    fn known_answer_combine() {
        let one = Share::new(1, Zeroizing::new([0x99; 32])).expect("share");
        let two = Share::new(2, Zeroizing::new([0xDC; 32])).expect("share");
        assert_eq!(*combine(&[one, two]).expect("combine"), [0x53; 32]);
        assert_eq!((Gf256(0x57) * Gf256(0x83)).0, 0xC1);
    }

    #[test]
    fn debug_does_not_print_the_value() {
        let share = Share::new(9, Zeroizing::new([0xAB; 32])).expect("share");
        let printed = format!("{share:?}");
        assert_eq!(printed, "Share { index: 9, .. }");
    }

    /// An RNG that fails after some bytes: the split reports it instead of returning shares
    /// computed from zeros, and does not panic.
    #[test]
    fn rng_failure_is_reported() {
        struct Failing(usize);
        impl p384::elliptic_curve::rand_core::RngCore for Failing {
            fn next_u32(&mut self) -> u32 {
                0
            }
            fn next_u64(&mut self) -> u64 {
                0
            }
            fn fill_bytes(&mut self, dest: &mut [u8]) {
                dest.fill(0);
            }
            fn try_fill_bytes(
                &mut self,
                dest: &mut [u8],
            ) -> Result<(), p384::elliptic_curve::rand_core::Error> {
                if self.0 == 0 {
                    return Err(p384::elliptic_curve::rand_core::Error::new("test failure"));
                }
                self.0 -= 1;
                dest.fill(0x42);
                Ok(())
            }
        }
        impl p384::elliptic_curve::rand_core::CryptoRng for Failing {}

        assert!(matches!(
            split_with_rng(&mut Failing(5), &SECRET, 3, 5),
            Err(ShamirError::Rng(_))
        ));
    }
}
