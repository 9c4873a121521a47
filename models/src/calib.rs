//! Calibration observers (std): per-tensor statistics of float activations, turned into the
//! [`Ranges`] PTQ needs by one of three calibrators.
//!
//! The runner (which needs `rsim-edge`, so it lives with the caller) feeds every op output of the
//! float [`calibration_model`](crate::ptq::calibration_model) to [`Observer::observe_le_f32`]:
//! once for min/max, and, for `percentile` and `mse`, a second pass over the same images that fills
//! a histogram spanning the first pass's range ([`Observer::needs_second_pass`]).
//! - `minmax`: the observed range.
//! - `percentile`: the `p` and `100 - p` percentiles (default 99.99).
//! - `mse`: the clipping range that minimises the expected squared int8 quantization error over
//!   the histogram (a shrink of both ends, then of each end alone, by factors 0.95^k, k < 100).

use crate::ptq::{activation_qparams, Ranges};
use crate::quant::{dequantize_i8, quantize_i8};
use std::collections::BTreeMap;

/// Bins per tensor histogram (PyTorch's HistogramObserver uses 2048 too).
pub const BINS: usize = 2048;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Calibrator {
    MinMax,
    /// Percentile in (50, 100], e.g. 99.99.
    Percentile(f64),
    Mse,
}

impl Calibrator {
    /// `minmax`, `percentile` (with `percentile`), `mse`.
    pub fn parse(name: &str, percentile: f64) -> Result<Calibrator, String> {
        match name {
            "minmax" | "min-max" => Ok(Calibrator::MinMax),
            "percentile" if percentile > 50.0 && percentile <= 100.0 => Ok(Calibrator::Percentile(percentile)),
            "percentile" => Err(format!("--percentile must be in (50, 100], got {percentile}")),
            "mse" => Ok(Calibrator::Mse),
            other => Err(format!("unknown calibrator '{other}' (minmax, percentile, mse)")),
        }
    }
    /// Short label for provenance, e.g. `percentile99.99`.
    pub fn label(&self) -> String {
        match self {
            Calibrator::MinMax => "minmax".into(),
            Calibrator::Percentile(p) => format!("percentile{p}"),
            Calibrator::Mse => "mse".into(),
        }
    }
}

#[derive(Clone, Debug)]
struct Stats {
    min: f32,
    max: f32,
    /// Values that were NaN or infinite: the range becomes NaN so PTQ refuses it.
    nonfinite: u64,
    /// Exact zeros (ReLU outputs): always representable, kept out of the histogram.
    zeros: u64,
    hist: Vec<u64>,
}

/// Per-tensor statistics over calibration images.
#[derive(Clone, Debug)]
pub struct Observer {
    calibrator: Calibrator,
    stats: BTreeMap<u16, Stats>,
    second_pass: bool,
}

impl Observer {
    pub fn new(calibrator: Calibrator) -> Observer {
        Observer { calibrator, stats: BTreeMap::new(), second_pass: false }
    }

    /// Whether this calibrator needs the histogram pass after the min/max pass.
    pub fn needs_second_pass(&self) -> bool {
        !matches!(self.calibrator, Calibrator::MinMax)
    }

    /// Switches from the min/max pass to the histogram pass (feed the same images again).
    pub fn start_second_pass(&mut self) {
        self.second_pass = true;
        for s in self.stats.values_mut() {
            s.hist = vec![0; BINS];
            s.zeros = 0;
        }
    }

    /// Observes the raw little-endian f32 bytes of tensor `id` (what `invoke_observed` hands out).
    pub fn observe_le_f32(&mut self, id: u16, bytes: &[u8]) {
        let vals: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        self.observe(id, &vals);
    }

    pub fn observe(&mut self, id: u16, vals: &[f32]) {
        let s = self.stats.entry(id).or_insert(Stats {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            nonfinite: 0,
            zeros: 0,
            hist: Vec::new(),
        });
        if !self.second_pass {
            for &v in vals {
                if v.is_finite() {
                    s.min = s.min.min(v);
                    s.max = s.max.max(v);
                } else {
                    s.nonfinite += 1;
                }
            }
            return;
        }
        let (lo, width) = (s.min as f64, (s.max as f64 - s.min as f64) / BINS as f64);
        for &v in vals {
            if v == 0.0 {
                s.zeros += 1;
            } else if v.is_finite() && width > 0.0 {
                let b = ((v as f64 - lo) / width).floor().clamp(0.0, (BINS - 1) as f64) as usize;
                if let Some(h) = s.hist.get_mut(b) {
                    *h += 1;
                }
            }
        }
    }

    /// Tensor ids seen so far.
    pub fn tensors(&self) -> usize {
        self.stats.len()
    }

    /// The calibrated range of every observed tensor.
    pub fn ranges(&self) -> Ranges {
        self.stats
            .iter()
            .map(|(&id, s)| {
                let r = if s.nonfinite > 0 || s.min > s.max {
                    (f32::NAN, f32::NAN)
                } else if !self.second_pass || s.hist.iter().all(|&h| h == 0) {
                    (s.min, s.max)
                } else {
                    match self.calibrator {
                        Calibrator::MinMax => (s.min, s.max),
                        Calibrator::Percentile(p) => percentile_range(s, p),
                        Calibrator::Mse => mse_range(s),
                    }
                };
                (id, r)
            })
            .collect()
    }
}

fn bin_width(s: &Stats) -> f64 {
    (s.max as f64 - s.min as f64) / BINS as f64
}

/// Value below which `q` (0..1) of all observed values lie, zeros included, linear within a bin.
fn quantile(s: &Stats, q: f64) -> f32 {
    let total: u64 = s.hist.iter().sum::<u64>() + s.zeros;
    let target = q * total as f64;
    let (lo, w) = (s.min as f64, bin_width(s));
    // Zeros sit in the bin containing 0; add them there.
    let zero_bin = if w > 0.0 { ((-lo) / w).floor().clamp(0.0, (BINS - 1) as f64) as usize } else { 0 };
    let mut acc = 0f64;
    for (i, &h) in s.hist.iter().enumerate() {
        let n = h as f64 + if i == zero_bin { s.zeros as f64 } else { 0.0 };
        if acc + n >= target && n > 0.0 {
            let frac = ((target - acc) / n).clamp(0.0, 1.0);
            return (lo + (i as f64 + frac) * w) as f32;
        }
        acc += n;
    }
    s.max
}

fn percentile_range(s: &Stats, p: f64) -> (f32, f32) {
    let q = p / 100.0;
    let lo = if s.min >= 0.0 { s.min } else { quantile(s, 1.0 - q).min(0.0) };
    let hi = if s.max <= 0.0 { s.max } else { quantile(s, q).max(0.0) };
    (lo.max(s.min), hi.min(s.max))
}

/// Expected squared error of quantizing the histogram with the int8 parameters of `[lo, hi]`:
/// four evenly spaced sample points per bin, each carrying a quarter of its count.
fn quant_error(s: &Stats, lo: f32, hi: f32) -> f64 {
    let (scale, zp) = activation_qparams(lo, hi);
    let (min, w) = (s.min as f64, bin_width(s));
    let mut err = 0f64;
    for (i, &h) in s.hist.iter().enumerate() {
        if h == 0 {
            continue;
        }
        for j in 0..4 {
            let x = (min + (i as f64 + (j as f64 + 0.5) / 4.0) * w) as f32;
            let d = (x - dequantize_i8(quantize_i8(x, scale, zp), scale, zp)) as f64;
            err += h as f64 * 0.25 * d * d;
        }
    }
    err
}

fn mse_range(s: &Stats) -> (f32, f32) {
    // Geometric shrink factors 0.95^k: fine near the observed range, down to ~0.6% of it.
    let grid = |k: usize| 0.95f32.powi(k as i32);
    // The int8 range always includes 0, so shrink toward 0 from the widened range.
    let (min, max) = (s.min.min(0.0), s.max.max(0.0));
    let mut best = (min, max);
    let mut best_err = quant_error(s, min, max);
    let mut consider = |lo: f32, hi: f32, best: &mut (f32, f32)| {
        let e = quant_error(s, lo, hi);
        if e < best_err {
            best_err = e;
            *best = (lo, hi);
        }
    };
    for k in 1..100 {
        consider(min * grid(k), max * grid(k), &mut best);
    }
    let (lo0, hi0) = best;
    for k in 1..100 {
        consider(lo0, hi0 * grid(k), &mut best);
    }
    let (lo1, hi1) = best;
    if lo1 < 0.0 {
        for k in 1..100 {
            consider(lo1 * grid(k), hi1, &mut best);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cal: Calibrator, vals: &[f32]) -> (f32, f32) {
        let mut o = Observer::new(cal);
        o.observe(7, vals);
        if o.needs_second_pass() {
            o.start_second_pass();
            o.observe(7, vals);
        }
        o.ranges()[&7]
    }

    /// `n` values uniform in [0, 1) plus one outlier at 100.
    fn with_outlier(n: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..n).map(|i| i as f32 / n as f32).collect();
        v.push(100.0);
        v
    }

    #[test]
    fn minmax_keeps_the_outlier() {
        assert_eq!(run(Calibrator::MinMax, &with_outlier(10_000)), (0.0, 100.0));
    }

    #[test]
    fn percentile_clips_the_outlier() {
        let (lo, hi) = run(Calibrator::Percentile(99.9), &with_outlier(10_000));
        assert_eq!(lo, 0.0);
        // 99.9% of 10,001 values lie below ~0.999; the histogram bin is 100/2048 wide.
        assert!((hi - 0.999).abs() < 0.06, "{hi}");
    }

    #[test]
    fn mse_clips_and_beats_minmax_error() {
        // Clipping the outlier costs ~(100 - c)^2 once; the finer step saves ~n * (100/255)^2 / 12,
        // so with a million values clipping wins (with 10,000 min/max would be the MSE optimum).
        let v = with_outlier(1_000_000);
        let (lo, hi) = run(Calibrator::Mse, &v);
        assert!(lo == 0.0 && hi < 50.0, "mse kept too much of the outlier: {hi}");
        let err = |(lo, hi): (f32, f32)| {
            let (s, z) = activation_qparams(lo, hi);
            v.iter().map(|&x| ((x - dequantize_i8(quantize_i8(x, s, z), s, z)) as f64).powi(2)).sum::<f64>()
        };
        assert!(err((lo, hi)) < err((0.0, 100.0)), "{} vs {}", err((lo, hi)), err((0.0, 100.0)));
    }

    #[test]
    fn nan_makes_a_nan_range_and_parse_checks_names() {
        let (lo, hi) = run(Calibrator::MinMax, &[1.0, f32::NAN]);
        assert!(lo.is_nan() && hi.is_nan());
        assert!(Calibrator::parse("entropy", 99.9).unwrap_err().contains("unknown calibrator"));
        assert!(Calibrator::parse("percentile", 120.0).is_err());
        assert_eq!(Calibrator::parse("percentile", 99.99), Ok(Calibrator::Percentile(99.99)));
    }
}
