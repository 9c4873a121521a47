//! Seeded random parameters for builder models: portable (same numbers on every host), He-scaled
//! so activations keep their size through deep nets, BatchNorm statistics away from the identity
//! so a wrong fold shows up in parity tests.

use crate::rng::SplitMix64;

/// The workspace's SplitMix64 ([`crate::rng`]) behind a fixed seed offset, with the draws weight
/// initialisation needs.
#[derive(Clone, Debug)]
pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(SplitMix64::new(seed ^ 0x5DEE_CE66_D1CE_4E5B))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0.uniform()
    }
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Init {
    /// N(0, 2 / fan_in): Kaiming normal for ReLU nets.
    He {
        fan_in: usize,
    },
    Bias,
    BnGamma,
    BnBeta,
    BnMean,
    BnVar,
}

impl Init {
    pub(crate) fn sample(self, rng: &mut Rng, len: usize) -> Vec<f32> {
        (0..len)
            .map(|_| {
                let v = match self {
                    Init::He { fan_in } => rng.normal() * (2.0 / fan_in.max(1) as f64).sqrt(),
                    Init::Bias => rng.range(-0.1, 0.1),
                    Init::BnGamma => rng.range(0.5, 1.5),
                    Init::BnBeta => rng.range(-0.2, 0.2),
                    Init::BnMean => rng.range(-0.2, 0.2),
                    Init::BnVar => rng.range(0.5, 2.0),
                };
                v as f32
            })
            .collect()
    }
}
