//! TFLM's requantization (`MultiplyByQuantizedMultiplier`, double rounding) split into the two shifts
//! that prepared per-channel arrays store, so vector code does no branching per lane.

use crate::kernels::int8::fixedpoint::{rounding_divide_by_pot, srdhm};

/// `(left, right)` shifts of a TFLM multiplier exponent, as `multiply_by_quantized_multiplier` uses them.
#[inline]
pub fn split_shift(shift: i32) -> (i32, i32) {
    let left = shift.clamp(0, 31);
    let right = if shift > 0 { 0 } else { -shift.max(-31) };
    (left, right)
}

/// `multiply_by_quantized_multiplier(acc, m, shift)` with the shift pre-split; then zero point and clamp.
#[inline]
pub fn requant_one(acc: i32, m: i32, left: i32, right: i32, out_zp: i32, act_min: i32, act_max: i32) -> i8 {
    let x = acc.wrapping_mul(1i32.wrapping_shl(left as u32));
    let v = rounding_divide_by_pot(srdhm(x, m), right).wrapping_add(out_zp);
    v.clamp(act_min, act_max) as i8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::int8::fixedpoint::multiply_by_quantized_multiplier;

    #[test]
    fn split_matches_the_reference_for_every_shift() {
        let xs = [0, 1, -1, 12345, -98765, i32::MAX, i32::MIN, 1 << 20, -(1 << 24) + 3];
        let ms = [0, 1, 1 << 30, i32::MAX, i32::MIN, 1_552_512_760, -7];
        for shift in -40..=40 {
            let (l, r) = split_shift(shift);
            for &x in &xs {
                for &m in &ms {
                    let want = multiply_by_quantized_multiplier(x, m, shift).wrapping_add(3).clamp(-128, 127) as i8;
                    assert_eq!(requant_one(x, m, l, r, 3, -128, 127), want, "x {x} m {m} shift {shift}");
                }
            }
        }
    }
}
