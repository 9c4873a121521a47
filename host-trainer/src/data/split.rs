//! Splits and label budgets, as the seed works do them (TOV/RSISC `classifydataset_init`):
//! per class, files in sorted order; the first share goes to train, the next to val, the rest
//! to test. Label budgets take the first N sorted train files of each class unless a seeded
//! random subset is asked for.
use super::error::DataError;
use super::rng::Rng;

/// Python's `round()`: half to even (2.5 -> 2, 3.5 -> 4). The seeds use it for split sizes.
pub fn round_half_even(x: f64) -> f64 {
    x.round_ties_even()
}

/// Splits each class's sorted index list by consecutive shares. `shares` are fractions of each
/// class (e.g. `[0.8, 0.2]` or `[0.6, 0.2, 0.2]`); boundaries are `round(n * cumulative share)`
/// (half to even, clamped to n). If the shares sum to 1 the last part takes the remainder, so no
/// file is lost to rounding. Returns one index list per part, classes in order, files sorted.
pub fn split_per_class(by_class: &[Vec<usize>], shares: &[f64]) -> Result<Vec<Vec<usize>>, DataError> {
    if shares.is_empty() || shares.iter().any(|s| !s.is_finite() || *s < 0.0) {
        return Err(DataError::Config(format!("split shares must be non-negative numbers, got {shares:?}")));
    }
    let total: f64 = shares.iter().sum();
    if total > 1.0 + 1e-9 {
        return Err(DataError::Config(format!("split shares sum to {total}, more than 1")));
    }
    let full = (total - 1.0).abs() < 1e-9;
    let mut parts = vec![Vec::new(); shares.len()];
    for files in by_class {
        let n = files.len();
        let mut start = 0usize;
        let mut cum = 0.0;
        for (k, share) in shares.iter().enumerate() {
            cum += share;
            let end = if full && k + 1 == shares.len() {
                n
            } else {
                (round_half_even(n as f64 * cum) as usize).clamp(start, n)
            };
            parts[k].extend_from_slice(&files[start..end]);
            start = end;
        }
    }
    Ok(parts)
}

/// How labelled subsets are drawn from each class's sorted train list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// The first N files (the seeds' default; reproducible without a seed).
    First,
    /// N files drawn uniformly without replacement with this seed (returned in sorted order).
    Random { seed: u64 },
}

/// Number of labelled files a class of `n` files contributes under `budget`:
/// `budget <= 1` is a fraction per class, `max(round(n * budget), 1)` (half to even; 0 for an
/// empty class); `budget > 1` is a count per class, `min(floor(budget), n)`.
pub fn budget_count(n: usize, budget: f64) -> Result<usize, DataError> {
    if !budget.is_finite() || budget <= 0.0 {
        return Err(DataError::Config(format!("label budget must be > 0, got {budget}")));
    }
    if n == 0 {
        return Ok(0);
    }
    Ok(if budget <= 1.0 {
        (round_half_even(n as f64 * budget) as usize).clamp(1, n)
    } else {
        (budget.floor() as usize).min(n)
    })
}

/// Applies a label budget per class. `by_class` lists must be sorted (see `Dataset::by_class`).
/// Returns indices grouped by class, in sorted order within each class.
pub fn apply_budget(by_class: &[Vec<usize>], budget: f64, pick: Pick) -> Result<Vec<usize>, DataError> {
    let mut out = Vec::new();
    for (c, files) in by_class.iter().enumerate() {
        let k = budget_count(files.len(), budget)?;
        match pick {
            Pick::First => out.extend_from_slice(&files[..k]),
            Pick::Random { seed } => {
                // One stream per class, so a class's subset does not depend on the other classes.
                let mut rng = Rng::for_parts(seed, &[0xB0D6E7, c as u64]);
                let mut pos: Vec<usize> = (0..files.len()).collect();
                rng.shuffle(&mut pos);
                let mut chosen: Vec<usize> = pos[..k].to_vec();
                chosen.sort_unstable();
                out.extend(chosen.into_iter().map(|p| files[p]));
            }
        }
    }
    Ok(out)
}
