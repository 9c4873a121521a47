//! The two gemmlowp / TFLite fixed-point primitives of requantization, bit for bit (gemmlowp
//! `fixedpoint.h`, TFLite `common.h`), shared by the reference kernels (rsim-edge re-exports them from
//! `kernels::int8::fixedpoint`) and the vector kernels' scalar tails here.
//!
//! Both are total: C's undefined cases are given a defined meaning, so no input can panic.

/// `SaturatingRoundingDoublingHighMul`: high 32 bits of `2*a*b`, rounded to nearest (ties toward +inf,
/// an artefact of C's truncating division); saturates only for `a == b == i32::MIN`.
#[inline]
pub fn srdhm(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// `RoundingDivideByPOT`: `x / 2^exponent` rounded half away from zero (exponent clamped to 0..=31).
#[inline]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    let e = exponent.clamp(0, 31) as u32;
    let mask: i32 = ((1i64 << e) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> e) + i32::from(remainder > threshold)
}
