//! Helpers shared by the runtime's integration tests: a seeded generator and float comparisons.
#![allow(dead_code)]

use rsim_model::Shape;

/// The workspace's seeded generator (rsim-model's SplitMix64) with the draws these tests need.
pub struct Rng(rsim_model::rng::SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(rsim_model::rng::SplitMix64::new(seed))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        self.0.unit_f32()
    }
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.unit()).collect()
    }
}

/// Asserts `got` matches the f64 reference within 1e-4 absolute + 1e-4 relative.
#[track_caller]
pub fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = 1e-4 + 1e-4 * w.abs();
        assert!(((g as f64) - w).abs() <= tol, "{what}: element {i}: got {g}, want {w}");
    }
}

pub fn shape(d: &[u32]) -> Shape {
    Shape::new(d)
}

/// f32 -> f16 bit patterns (round to nearest) and back, for f16-weight tests.
pub fn to_f16_bits(v: &[f32]) -> Vec<u16> {
    v.iter().map(|&x| half::f16::from_f32(x).to_bits()).collect()
}
pub fn from_f16_bits(v: &[u16]) -> Vec<f32> {
    v.iter().map(|&b| half::f16::from_bits(b).to_f32()).collect()
}
