//! The workspace's one seeded generator for reproducible numbers outside training data: builder
//! weights, test models and inputs, link-fault simulation, the Cortex-M check firmware. SplitMix64
//! (Steele, Lea & Flood 2014): one `u64` of state, the same stream on every target, no_std, no
//! dependency. The trainer's data pipeline keeps its own checkpointable xoshiro256** streams.

/// SplitMix64. The state is the seed itself, so `SplitMix64(s)` and `SplitMix64::new(s)` agree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub const fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`; `0` when `n == 0` (never a division by zero). Modulo bias is below
    /// `n / 2^64`, irrelevant for tests.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64().checked_rem(n).unwrap_or(0)
    }

    /// Uniform in `lo..=hi` (`lo` when `hi < lo`).
    pub fn range_i64(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi as i128 - lo as i128 + 1).max(1) as u128;
        (lo as i128 + (self.next_u64() as u128 % span) as i128) as i64
    }

    /// True with probability `1/n` (never for `n == 0`).
    pub fn one_in(&mut self, n: u64) -> bool {
        n != 0 && self.next_u64().is_multiple_of(n)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Uniform in `[-1, 1)` with 24 random bits (exact in f32).
    pub fn unit_f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    pub fn i8(&mut self) -> i8 {
        self.next_u64() as i8
    }

    /// `n` random bytes.
    #[cfg(feature = "std")]
    pub fn bytes(&mut self, n: usize) -> std::vec::Vec<u8> {
        let mut v = std::vec![0; n];
        self.fill(&mut v);
        v
    }

    /// Fills `out` with random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            *b = self.next_u64() as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SplitMix64;

    #[test]
    fn matches_the_published_splitmix64_stream() {
        // First outputs for seed 0 (the reference C implementation's state starts at the seed).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn ranges_stay_in_bounds() {
        let mut r = SplitMix64::new(7);
        for _ in 0..1000 {
            assert!(r.below(10) < 10);
            let v = r.range_i64(-3, 4);
            assert!((-3..=4).contains(&v));
            let u = r.uniform();
            assert!((0.0..1.0).contains(&u));
            let f = r.unit_f32();
            assert!((-1.0..1.0).contains(&f));
        }
        assert_eq!(r.below(0), 0);
        assert_eq!(r.range_i64(5, 1), 5);
        assert!(!r.one_in(0));
    }
}
