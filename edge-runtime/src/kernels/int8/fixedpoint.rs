//! gemmlowp / TFLite fixed-point primitives, bit for bit (gemmlowp `fixedpoint.h`, TFLite `common.h`).
//!
//! Every function is total: C's undefined cases (overflowing shifts, shift counts out of range) are
//! given a defined wrapping or clamped meaning, so no input can panic.

/// `SaturatingRoundingDoublingHighMul` and `RoundingDivideByPOT`, shared with the fast kernels'
/// vector code and its scalar tails (defined in rsim-edge-simd).
pub use rsim_edge_simd::fixedpoint::{rounding_divide_by_pot, srdhm};

/// gemmlowp `SaturatingRoundingMultiplyByPOT<exponent>`: saturating left shift for exponent > 0,
/// rounding right shift for exponent < 0.
#[inline]
pub fn saturating_rounding_mul_by_pot(x: i32, exponent: i32) -> i32 {
    if exponent <= 0 {
        return rounding_divide_by_pot(x, -exponent);
    }
    let e = exponent.min(31) as u32;
    let threshold: i32 = ((1i64 << (31 - e)) - 1) as i32;
    if x > threshold {
        i32::MAX
    } else if x < -threshold {
        i32::MIN
    } else {
        x.wrapping_shl(e)
    }
}

/// `MultiplyByQuantizedMultiplier` (TFLite `common.cc`, default double rounding):
/// `RoundingDivideByPOT(SRDHM(x * 2^max(shift,0), m), max(-shift,0))`.
#[inline]
pub fn multiply_by_quantized_multiplier(x: i32, m: i32, shift: i32) -> i32 {
    let left = shift.clamp(0, 31) as u32;
    let right = if shift > 0 { 0 } else { -shift.max(-31) };
    rounding_divide_by_pot(srdhm(x.wrapping_mul(1i32.wrapping_shl(left)), m), right)
}

/// `MultiplyByQuantizedMultiplierSmallerThanOneExp`: `RoundingDivideByPOT(SRDHM(x, m), -shift)`.
#[inline]
pub fn mul_by_qm_smaller_than_one_exp(x: i32, m: i32, shift: i32) -> i32 {
    // Wrapping negation: total for `i32::MIN` (a hostile model's shift) instead of an overflow.
    rounding_divide_by_pot(srdhm(x, m), shift.wrapping_neg())
}

/// `MultiplyByQuantizedMultiplierGreaterThanOne`: `SRDHM(x * 2^left_shift, m)`.
#[inline]
pub fn mul_by_qm_greater_than_one(x: i32, m: i32, left_shift: i32) -> i32 {
    srdhm(x.wrapping_mul(1i32.wrapping_shl(left_shift.clamp(0, 31) as u32)), m)
}

/// `exp_on_interval_between_negative_one_quarter_and_0_excl` on a Q0.31 value: Taylor series around -1/8.
fn exp_on_interval_between_negative_one_quarter_and_0_excl(a: i32) -> i32 {
    const CONSTANT_TERM: i32 = 1895147668; // exp(-1/8) in Q0.31
    const ONE_THIRD: i32 = 715827883;
    let x = a.wrapping_add(1 << 28); // + 1/8
    let x2 = srdhm(x, x);
    let x3 = srdhm(x2, x);
    let x4 = srdhm(x2, x2);
    let x4_over_4 = rounding_divide_by_pot(x4, 2);
    let poly = rounding_divide_by_pot(srdhm(x4_over_4.wrapping_add(x3), ONE_THIRD).wrapping_add(x2), 1);
    CONSTANT_TERM.wrapping_add(srdhm(CONSTANT_TERM, x.wrapping_add(poly)))
}

/// gemmlowp `exp_on_negative_values` for a Q(`integer_bits`).(31-`integer_bits`) input `a <= 0`,
/// giving Q0.31. TFLite's int8 softmax uses `integer_bits = 5`.
pub fn exp_on_negative_values(a: i32, integer_bits: i32) -> i32 {
    let int_bits = integer_bits.clamp(0, 31);
    let frac_bits = 31 - int_bits;
    if frac_bits < 2 {
        return 0; // no quarter-step representable; TFLite never instantiates this
    }
    let one_quarter: i32 = 1 << (frac_bits - 2);
    let mask = one_quarter - 1;
    let a_mod_quarter_minus_one_quarter = (a & mask).wrapping_sub(one_quarter);
    let mut result = exp_on_interval_between_negative_one_quarter_and_0_excl(saturating_rounding_mul_by_pot(
        a_mod_quarter_minus_one_quarter,
        int_bits,
    ));
    let remainder = a_mod_quarter_minus_one_quarter.wrapping_sub(a);
    // exp(-2^k) in Q0.31 for k = -2..=4 (gemmlowp's barrel shifter constants)
    const BARREL: [(i32, i32); 7] =
        [(-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401), (4, 242)];
    for (exponent, multiplier) in BARREL {
        if int_bits > exponent {
            let shift = (frac_bits + exponent) as u32;
            if shift < 32 && remainder & (1i32.wrapping_shl(shift)) != 0 {
                result = srdhm(result, multiplier);
            }
        }
    }
    if int_bits > 5 {
        let clamp = -(1i32 << (36 - int_bits).clamp(0, 30)); // -32.0
        if a < clamp {
            result = 0;
        }
    }
    if a == 0 {
        result = i32::MAX;
    }
    result
}

/// gemmlowp `one_over_one_plus_x_for_x_in_0_1`: Q0.31 in, Q0.31 out, three Newton-Raphson steps in Q2.29.
pub fn one_over_one_plus_x_for_x_in_0_1(a: i32) -> i32 {
    // RoundingHalfSum(a, One) with One = i32::MAX in Q0.31
    let sum = a as i64 + i32::MAX as i64;
    let sign: i64 = if sum >= 0 { 1 } else { -1 };
    let half_denominator = ((sum + sign) / 2) as i32;
    const C48_OVER_17: i32 = 1515870810; // Q2.29
    const CNEG32_OVER_17: i32 = -1010580540;
    const F2_ONE: i32 = 1 << 29;
    let mut x = C48_OVER_17.wrapping_add(srdhm(half_denominator, CNEG32_OVER_17));
    for _ in 0..3 {
        let half_denominator_times_x = srdhm(half_denominator, x); // Q2.29
        let one_minus = F2_ONE.wrapping_sub(half_denominator_times_x);
        // Q2 * Q2 = Q4; Rescale<2> = saturating shift left by 2
        x = x.wrapping_add(saturating_rounding_mul_by_pot(srdhm(x, one_minus), 2));
    }
    // ExactMulByPot<-1> reinterprets Q2.29 as Q1.30; Rescale<0> shifts left by 1, saturating.
    saturating_rounding_mul_by_pot(x, 1)
}

/// TFLite `GetReciprocal(x, x_integer_digits)`: reciprocal of a positive Q(x_integer_digits) value as
/// Q0.31 plus `num_bits_over_unit`.
pub fn get_reciprocal(x: i32, x_integer_digits: i32) -> (i32, i32) {
    let headroom_plus_one = (x as u32).leading_zeros() as i32;
    let num_bits_over_unit = x_integer_digits - headroom_plus_one;
    let shifted = (x as u32).checked_shl(headroom_plus_one as u32).unwrap_or(0);
    let shifted_sum_minus_one = shifted.wrapping_sub(1u32 << 31) as i32;
    (one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), num_bits_over_unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(x: f64, frac_bits: i32) -> i32 {
        (x * (1i64 << frac_bits) as f64).round() as i32
    }
    fn f(x: i32, frac_bits: i32) -> f64 {
        x as f64 / (1i64 << frac_bits) as f64
    }

    #[test]
    fn srdhm_hand_cases() {
        assert_eq!(srdhm(i32::MIN, i32::MIN), i32::MAX);
        assert_eq!(srdhm(1 << 30, 1 << 30), 1 << 29); // 0.5 * 0.5 = 0.25
                                                      // 2*3*2^30/2^31 = 3 exactly; nudges do not change exact results
        assert_eq!(srdhm(3, 1 << 30), 2); // 1.5 rounds half away to 2
                                          // Negative ties round toward zero: the nudge is 1 - 2^30, not -2^30.
        assert_eq!(srdhm(-3, 1 << 30), -1);
        assert_eq!(srdhm(5, 1 << 30), 3); // 2.5 -> 3
        assert_eq!(srdhm(-5, 1 << 30), -2);
        assert_eq!(srdhm(i32::MIN, i32::MAX), -i32::MAX);
    }

    #[test]
    fn rounding_divide_hand_cases() {
        assert_eq!(rounding_divide_by_pot(5, 1), 3); // 2.5 -> 3
        assert_eq!(rounding_divide_by_pot(-5, 1), -3); // -2.5 -> -3
        assert_eq!(rounding_divide_by_pot(-4, 1), -2);
        assert_eq!(rounding_divide_by_pot(7, 2), 2); // 1.75 -> 2
        assert_eq!(rounding_divide_by_pot(-7, 2), -2);
        assert_eq!(rounding_divide_by_pot(-6, 2), -2); // -1.5 -> -2
        assert_eq!(rounding_divide_by_pot(6, 2), 2); // 1.5 -> 2
        assert_eq!(rounding_divide_by_pot(123, 0), 123);
        assert_eq!(rounding_divide_by_pot(i32::MIN, 31), -1);
        assert_eq!(rounding_divide_by_pot(i32::MAX, 31), 1);
    }

    #[test]
    fn multiply_by_quantized_multiplier_against_f64() {
        // Exact rational arithmetic: SRDHM rounds ties up (toward +inf), the shift rounds ties away.
        let cases =
            [(1000, 1 << 30, 0), (1000, 1717986918, -3), (-12345, 1552512742, -5), (77, 1 << 30, 3), (-1, 1 << 30, 0)];
        for (x, m, s) in cases {
            let left = if s > 0 { s } else { 0 };
            let right = if s > 0 { 0 } else { -s };
            let ab = (x as i64) * (1 << left) * (m as i64);
            let first = (ab as f64 / 2f64.powi(31)).add_half_floor();
            let second = (first / 2f64.powi(right)).abs().add_half_floor() * first.signum();
            assert_eq!(multiply_by_quantized_multiplier(x, m, s) as f64, second, "x={x} m={m} s={s}");
        }
        // Overflowing left shifts wrap instead of panicking.
        let _ = multiply_by_quantized_multiplier(i32::MAX, i32::MAX, 31);
    }

    trait HalfUp {
        fn add_half_floor(self) -> f64;
    }
    impl HalfUp for f64 {
        fn add_half_floor(self) -> f64 {
            (self + 0.5).floor()
        }
    }

    #[test]
    fn exp_on_negative_values_against_f64() {
        assert_eq!(exp_on_negative_values(0, 5), i32::MAX);
        let mut worst = 0.0f64;
        for i in 0..2000 {
            let x = -(i as f64) * 0.0157; // down to about -31.4
            let a = q(x, 26);
            let got = f(exp_on_negative_values(a, 5), 31);
            worst = worst.max((got - x.exp()).abs());
        }
        assert!(worst < 2e-7, "max abs error {worst}");
    }

    #[test]
    fn one_over_one_plus_x_against_f64() {
        for i in 0..=100 {
            let x = i as f64 / 100.0 * 0.999;
            let got = f(one_over_one_plus_x_for_x_in_0_1(q(x, 31)), 31);
            assert!((got - 1.0 / (1.0 + x)).abs() < 1e-8, "x={x} got {got}");
        }
    }

    #[test]
    fn reciprocal_against_f64() {
        // 3.0 in Q12.19
        let (r, bits) = get_reciprocal(3 << 19, 12);
        let got = f(r, 31) / 2f64.powi(bits);
        assert!((got - 1.0 / 3.0).abs() < 1e-8, "{got} bits {bits}");
        let _ = get_reciprocal(0, 12); // must not panic
    }

    #[test]
    fn saturating_pot() {
        assert_eq!(saturating_rounding_mul_by_pot(1 << 29, 2), i32::MAX);
        assert_eq!(saturating_rounding_mul_by_pot(-(1 << 29), 2), i32::MIN);
        assert_eq!(saturating_rounding_mul_by_pot(3, 2), 12);
        assert_eq!(saturating_rounding_mul_by_pot(5, -1), 3);
    }
}
