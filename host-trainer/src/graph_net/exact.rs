//! The board's integer arithmetic on tch tensors (TFLite Micro's requantization, ADD, MUL, MEAN), so
//! the fake-quant forward in f64 mode reproduces the int8 runtime bit for bit; gradients still come
//! from the float path (see `GraphNet`).
use rsim_model::graph::BinaryQuant;
use tch::{Kind, Tensor};

use super::ExactStage;

/// `q - zp` of a dequantized f64 value as an integer-valued f64 tensor.
pub(super) fn to_int(x: &Tensor, scale: f32) -> Tensor {
    (x.detach().to_kind(Kind::Double) / scale as f64).round()
}

pub(super) fn i64s(v: impl IntoIterator<Item = i64>) -> Tensor {
    Tensor::from_slice(&v.into_iter().collect::<Vec<i64>>())
}

/// TFLite `MultiplyByQuantizedMultiplier` on int64 tensors holding int32 values: `x * 2^left`, then
/// SRDHM (nudge, truncating division by 2^31), then `RoundingDivideByPOT` by `2^right` (remainder vs
/// threshold, ties away from zero). `m`, `lpow`, `rpow` broadcast against `x`.
pub(super) fn mbqm(x: &Tensor, m: &Tensor, lpow: &Tensor, rpow: &Tensor) -> Tensor {
    let ab = x * lpow * m;
    // 2^30 for ab >= 0, 1 - 2^30 below.
    let nudge = ab.ge(0).to_kind(Kind::Int64) * ((1i64 << 31) - 1) + (1 - (1i64 << 30));
    let v = (ab + nudge).divide_scalar_mode(1i64 << 31, "trunc");
    let fl = v.divide_tensor_mode(rpow, "floor");
    let rem = &v - &fl * rpow;
    let threshold = (rpow - 1).divide_scalar_mode(2, "floor") + v.lt(0).to_kind(Kind::Int64);
    fl + rem.gt_tensor(&threshold).to_kind(Kind::Int64)
}

/// (multiplier, 2^left, 2^right) tensors shaped to broadcast over channel dim 1 of a rank-`dim` value.
pub(super) fn mult_tensors(mult: &[i32], shift: &[i32], dim: usize, allow_left: bool) -> (Tensor, Tensor, Tensor) {
    let mut view = vec![1i64, mult.len() as i64];
    view.extend(std::iter::repeat_n(1, dim.saturating_sub(2)));
    let (view, c) = if mult.len() == 1 { (vec![1i64], 1) } else { (view, mult.len()) };
    let m = i64s(mult.iter().map(|&v| v as i64)).reshape(view.as_slice());
    let l = i64s(shift.iter().take(c).map(|&s| if allow_left { 1i64 << s.clamp(0, 31) } else { 1 }))
        .reshape(view.as_slice());
    let r = i64s(shift.iter().take(c).map(|&s| 1i64 << (-s).clamp(0, 31))).reshape(view.as_slice());
    (m, l, r)
}

/// Back to the f64 dequantized value of int8 codes `q` (as fake_quant returns it).
pub(super) fn dequant(q: &Tensor, (s_out, z_out): (f32, i32)) -> Tensor {
    (q.to_kind(Kind::Double) - z_out as f64) * s_out as f64
}

/// Conv/FC output stage on an exact accumulator (f64 holding int32 values, channels on dim 1).
pub(super) fn requant_out(acc: &Tensor, st: &ExactStage, out: (f32, i32)) -> Tensor {
    let ExactStage::Requant { mult, shift, act } = st else { return acc.shallow_clone() };
    let (m, l, r) = mult_tensors(mult, shift, acc.dim(), true);
    let q = (mbqm(&acc.to_kind(Kind::Int64), &m, &l, &r) + out.1 as i64).clamp(act.0 as i64, act.1 as i64);
    dequant(&q, out)
}

/// TFLM int8 ADD on `q - zp` integer values.
pub(super) fn add_exact(a: &Tensor, b: &Tensor, q: &BinaryQuant, out: (f32, i32)) -> Tensor {
    let ls = 1i64 << q.left_shift.clamp(0, 30);
    // MultiplyByQuantizedMultiplierSmallerThanOneExp: no left shift.
    let side = |x: &Tensor, m: i32, s: i32| {
        let (m, l, r) = mult_tensors(&[m], &[s], 1, false);
        mbqm(&(x.to_kind(Kind::Int64) * ls), &m, &l, &r)
    };
    let sum = side(a, q.a_mult, q.a_shift) + side(b, q.b_mult, q.b_shift);
    let (m, l, r) = mult_tensors(&[q.out_mult], &[q.out_shift], 1, false);
    let v = (mbqm(&sum, &m, &l, &r) + out.1 as i64).clamp(q.act_min as i64, q.act_max as i64);
    dequant(&v, out)
}

/// TFLM int8 MEAN over H, W of NCHW `q - zp` integer values (`pool::mean_hw`).
pub(super) fn mean_exact(x: &Tensor, st: &ExactStage, in_zp: i32, out: (f32, i32)) -> Tensor {
    let ExactStage::Mean { requant, act } = st else { return x.mean_dim([2i64, 3].as_slice(), true, x.kind()) };
    let s = x.size();
    let count = (s[2] * s[3]).max(1);
    let sum = x.to_kind(Kind::Int64).sum_dim_intlist([2i64, 3].as_slice(), true, Kind::Int64);
    let q = match requant {
        // reference_ops::Mean on raw codes: sum(q) / count, truncating.
        None => (sum + in_zp as i64 * count).divide_scalar_mode(count, "trunc").clamp(-128, 127),
        Some((m, sh)) => {
            let shift = (63 - (count as u64).leading_zeros() as i32).min(32).min(31i32.saturating_add(*sh)).max(0);
            let mf = ((*m as i64) << shift) / count;
            let (mt, l, r) = mult_tensors(&[mf as i32], &[sh.saturating_sub(shift)], 1, true);
            (mbqm(&sum, &mt, &l, &r) + out.1 as i64).clamp(act.0 as i64, act.1 as i64)
        }
    };
    dequant(&q, out)
}

/// TFLM int8 MUL on `q - zp` integer values (broadcasting as torch does).
pub(super) fn mul_exact(a: &Tensor, b: &Tensor, q: &BinaryQuant, out: (f32, i32)) -> Tensor {
    let p = a.to_kind(Kind::Int64) * b.to_kind(Kind::Int64);
    let (m, l, r) = mult_tensors(&[q.out_mult], &[q.out_shift], 1, true);
    let v = (mbqm(&p, &m, &l, &r) + out.1 as i64).clamp(q.act_min as i64, q.act_max as i64);
    dequant(&v, out)
}
