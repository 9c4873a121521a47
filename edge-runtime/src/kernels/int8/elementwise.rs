//! int8 ADD and MUL: TFLite `reference_integer_ops::Add`/`AddFunc` (two input scales, 20-bit
//! headroom) and `MulElementwise`, with NHWC broadcasting (each dim equal or 1), as `BroadcastAdd4DSlow`.

use super::fixedpoint::{mul_by_qm_smaller_than_one_exp, multiply_by_quantized_multiplier};
use super::KResult;
use rsim_model::BinaryQuant;

const E: &str = "tensor bytes shorter than its shape";

/// Zero points of the two inputs and the output.
#[derive(Clone, Copy, Debug)]
pub struct ZeroPoints {
    pub a: i32,
    pub b: i32,
    pub out: i32,
}

/// Index into a broadcast operand of shape `s` for output coordinate `o`.
#[inline]
fn bidx(s: &[usize; 4], o: [usize; 4]) -> usize {
    let c = |i: usize| if s[i] == 1 { 0 } else { o[i] };
    ((c(0) * s[1] + c(1)) * s[2] + c(2)) * s[3] + c(3)
}

fn check_broadcast(a: &[usize; 4], b: &[usize; 4], out: &[usize; 4]) -> KResult<()> {
    for i in 0..4 {
        if (a[i] != out[i] && a[i] != 1) || (b[i] != out[i] && b[i] != 1) {
            return Err("input shapes do not broadcast to the output shape");
        }
    }
    Ok(())
}

fn for_each(
    a_shape: &[usize; 4],
    b_shape: &[usize; 4],
    out_shape: &[usize; 4],
    a: &[u8],
    b: &[u8],
    out: &mut [u8],
    f: impl Fn(i32, i32) -> i32,
) -> KResult<()> {
    check_broadcast(a_shape, b_shape, out_shape)?;
    let mut i = 0;
    for n in 0..out_shape[0] {
        for h in 0..out_shape[1] {
            for w in 0..out_shape[2] {
                for c in 0..out_shape[3] {
                    let o = [n, h, w, c];
                    let x = *a.get(bidx(a_shape, o)).ok_or(E)? as i8 as i32;
                    let y = *b.get(bidx(b_shape, o)).ok_or(E)? as i8 as i32;
                    *out.get_mut(i).ok_or(E)? = f(x, y) as i8 as u8;
                    i += 1;
                }
            }
        }
    }
    Ok(())
}

/// ADD: both inputs shifted left by `left_shift`, rescaled to a common scale, summed, rescaled.
#[allow(clippy::too_many_arguments)] // mirrors TFLM's reference signature
pub fn add(
    a_shape: &[usize; 4],
    b_shape: &[usize; 4],
    out_shape: &[usize; 4],
    a: &[u8],
    b: &[u8],
    zp: ZeroPoints,
    q: &BinaryQuant,
    out: &mut [u8],
) -> KResult<()> {
    let ls = q.left_shift.clamp(0, 30) as u32;
    for_each(a_shape, b_shape, out_shape, a, b, out, |x, y| {
        let xa = x.wrapping_sub(zp.a).wrapping_shl(ls);
        let ya = y.wrapping_sub(zp.b).wrapping_shl(ls);
        let xs = mul_by_qm_smaller_than_one_exp(xa, q.a_mult, q.a_shift);
        let ys = mul_by_qm_smaller_than_one_exp(ya, q.b_mult, q.b_shift);
        let raw = mul_by_qm_smaller_than_one_exp(xs.wrapping_add(ys), q.out_mult, q.out_shift).wrapping_add(zp.out);
        raw.clamp(q.act_min, q.act_max)
    })
}

/// MUL: `(x - zp_a) * (y - zp_b)` requantized by `out_mult`/`out_shift` (`a_*`, `b_*` unused).
#[allow(clippy::too_many_arguments)] // mirrors TFLM's reference signature
pub fn mul(
    a_shape: &[usize; 4],
    b_shape: &[usize; 4],
    out_shape: &[usize; 4],
    a: &[u8],
    b: &[u8],
    zp: ZeroPoints,
    q: &BinaryQuant,
    out: &mut [u8],
) -> KResult<()> {
    for_each(a_shape, b_shape, out_shape, a, b, out, |x, y| {
        let p = x.wrapping_sub(zp.a).wrapping_mul(y.wrapping_sub(zp.b));
        multiply_by_quantized_multiplier(p, q.out_mult, q.out_shift).wrapping_add(zp.out).clamp(q.act_min, q.act_max)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bq(a: (i32, i32), b: (i32, i32), o: (i32, i32)) -> BinaryQuant {
        BinaryQuant {
            left_shift: 20,
            a_mult: a.0,
            a_shift: a.1,
            b_mult: b.0,
            b_shift: b.1,
            out_mult: o.0,
            out_shift: o.1,
            act_min: -128,
            act_max: 127,
        }
    }

    #[test]
    fn add_two_scales_against_f64() {
        // scales: a 0.1, b 0.05, out 0.2 -> twice_max 0.2: a 0.5, b 0.25, out 0.2/(2^20*0.2) = 2^-20
        let q = bq((1 << 30, 0), (1 << 30, -1), (1 << 30, -19));
        let zp = ZeroPoints { a: 3, b: -7, out: 1 };
        let a: Vec<u8> = (-128i32..128).map(|v| v as i8 as u8).collect();
        let b: Vec<u8> = (-128i32..128).rev().map(|v| v as i8 as u8).collect();
        let mut out = vec![0u8; 256];
        let s = [1, 1, 16, 16];
        add(&s, &s, &s, &a, &b, zp, &q, &mut out).unwrap();
        for i in 0..256 {
            let real = 0.1 * ((a[i] as i8 as f64) - 3.0) + 0.05 * ((b[i] as i8 as f64) + 7.0);
            let want = (real / 0.2 + 1.0).round().clamp(-128.0, 127.0);
            let got = out[i] as i8 as f64;
            assert!((got - want).abs() <= 1.0, "i={i} got {got} want {want}");
        }
    }

    #[test]
    fn mul_broadcasts_a_channel_gate() {
        // a [1,2,2,2], b [1,1,1,2]; scales multiply to 1 -> multiplier 1.0 = (1<<30, 1)
        let q = bq((0, 0), (0, 0), (1 << 30, 1));
        let zp = ZeroPoints { a: 0, b: 1, out: 0 };
        let a = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let b = [3u8, (-1i8) as u8]; // b - zp = 2, -2
        let mut out = [0u8; 8];
        mul(&[1, 2, 2, 2], &[1, 1, 1, 2], &[1, 2, 2, 2], &a, &b, zp, &q, &mut out).unwrap();
        assert_eq!(out.map(|v| v as i8), [2, -4, 6, -8, 10, -12, 14, -16]);
        assert!(mul(&[1, 2, 2, 2], &[1, 1, 2, 3], &[1, 2, 2, 2], &a, &b, zp, &q, &mut out).is_err());
    }
}
