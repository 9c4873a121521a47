//! Small timing helpers shared by the benchmarks.

use std::time::{Duration, Instant};

/// Median of `v` (the mean of the two middle values for an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => 0.5 * (s[n / 2 - 1] + s[n / 2]),
    }
}

/// Smallest value of `v`; NaN when empty.
pub fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::min)
}

/// Median wall time of `f` over at least 3 runs and `min_time`, after one warm-up.
pub fn time_median(min_time: Duration, mut f: impl FnMut()) -> Duration {
    f();
    let mut runs = Vec::new();
    let start = Instant::now();
    while runs.len() < 3 || start.elapsed() < min_time {
        let t = Instant::now();
        f();
        runs.push(t.elapsed());
    }
    runs.sort();
    runs[runs.len() / 2]
}

/// Sizes of `rounds` chunks that add up to `n` (the first ones one larger when it does not divide).
pub fn chunks(n: usize, rounds: usize) -> Vec<usize> {
    let rounds = rounds.clamp(1, n.max(1));
    (0..rounds).map(|i| n / rounds + usize::from(i < n % rounds)).collect()
}

/// Timed runs per engine for one model, from each engine's estimated seconds per run: enough for
/// the fastest to run `min_time` (at least `min_runs`), capped where the slowest would run longer
/// than `cap_factor * min_time` (never below `min_runs`).
pub fn runs_for(estimates: &[f64], min_time: f64, min_runs: usize, cap_factor: f64) -> usize {
    let fastest = estimates.iter().copied().fold(f64::INFINITY, f64::min);
    let slowest = estimates.iter().copied().fold(0.0, f64::max);
    if !fastest.is_finite() || fastest <= 0.0 {
        return min_runs;
    }
    let want = (min_time / fastest).ceil() as usize;
    let cap = (cap_factor * min_time / slowest).floor() as usize;
    want.min(cap).max(min_runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_min() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(min(&[3.0, 1.0, 2.0]), 1.0);
    }

    #[test]
    fn chunks_add_up() {
        assert_eq!(chunks(12, 5), vec![3, 3, 2, 2, 2]);
        assert_eq!(chunks(3, 5), vec![1, 1, 1]);
        assert_eq!(chunks(10, 5).iter().sum::<usize>(), 10);
    }

    #[test]
    fn runs_follow_the_fastest_and_are_capped_by_the_slowest() {
        // Fastest 1 ms, 1 s: 1000 runs; slowest 20 ms would take 20 s, capped at 10 s = 500 runs.
        assert_eq!(runs_for(&[0.001, 0.020], 1.0, 10, 10.0), 500);
        assert_eq!(runs_for(&[0.001, 0.002], 1.0, 10, 10.0), 1000);
        // Very slow engines still get the minimum.
        assert_eq!(runs_for(&[0.5, 3.0], 1.0, 10, 10.0), 10);
    }
}
