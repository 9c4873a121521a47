//! Output tensor → confidences → optional temporal smoothing → top-k, without heap.

use crate::wire::{Score, TOP_K_MAX};

/// Most classes the loop handles (stack buffer of confidences).
pub const MAX_CLASSES: usize = 256;

/// A classifier's output tensor.
#[derive(Clone, Copy, Debug)]
pub enum Output<'a> {
    /// int8 values with their quantization.
    I8 { data: &'a [u8], scale: f32, zero_point: i32 },
    /// Little-endian f32 values.
    F32 { data: &'a [u8] },
}

impl Output<'_> {
    pub fn len(&self) -> usize {
        match self {
            Output::I8 { data, .. } => data.len(),
            Output::F32 { data } => data.len() / 4,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn value(&self, i: usize) -> f32 {
        match *self {
            Output::I8 { data, scale, zero_point } => {
                data.get(i).map_or(0.0, |&q| scale * ((q as i8) as i32 - zero_point) as f32)
            }
            Output::F32 { data } => {
                data.get(i * 4..i * 4 + 4).map_or(0.0, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
        }
    }
    /// The raw int8 value of class `i` (0 for float outputs).
    pub fn raw(&self, i: usize) -> i8 {
        match *self {
            Output::I8 { data, .. } => data.get(i).map_or(0, |&q| q as i8),
            Output::F32 { .. } => 0,
        }
    }
}

/// Fills `conf[..n]` with probabilities: the dequantized outputs when they already form a
/// distribution (a softmax head), else their softmax (logits).
pub fn confidences(out: &Output<'_>, conf: &mut [f32]) -> usize {
    let n = out.len().min(conf.len());
    let mut sum = 0.0;
    let mut is_dist = true;
    for (i, c) in conf.iter_mut().take(n).enumerate() {
        *c = out.value(i);
        sum += *c;
        is_dist &= (-1e-3..=1.001).contains(c);
    }
    if is_dist && (sum - 1.0).abs() < 0.05 {
        return n;
    }
    let max = conf[..n].iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut total = 0.0;
    for c in conf[..n].iter_mut() {
        *c = libm::expf(*c - max);
        total += *c;
    }
    if total > 0.0 {
        conf[..n].iter_mut().for_each(|c| *c /= total);
    }
    n
}

/// Exponential moving average: `state = alpha * conf + (1 - alpha) * state`; a state of all
/// zeros (first sight of this tile) takes `conf` as is. `conf` is replaced by the new state.
pub fn smooth(state: &mut [f32], conf: &mut [f32], alpha: f32) {
    let fresh = state.iter().all(|&s| s == 0.0);
    for (s, c) in state.iter_mut().zip(conf.iter_mut()) {
        *s = if fresh { *c } else { alpha * *c + (1.0 - alpha) * *s };
        *c = *s;
    }
}

/// The best `k` classes by confidence (ties: lower index first). Returns how many were filled.
pub fn top_k(conf: &[f32], out: &Output<'_>, k: usize, top: &mut [Score; TOP_K_MAX]) -> u8 {
    let k = k.min(TOP_K_MAX).min(conf.len());
    let mut filled = 0;
    for (i, &c) in conf.iter().enumerate() {
        let pos = top[..filled].iter().position(|s| s.confidence < c).unwrap_or(filled);
        if pos >= k {
            continue;
        }
        let end = filled.min(k - 1);
        top[pos..=end].rotate_right(1);
        top[pos] = Score { class: i as u16, q: out.raw(i), confidence: c };
        filled = (filled + 1).min(k);
    }
    filled as u8
}
