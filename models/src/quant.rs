//! TFLite's offline quantization parameters (TFLM's `Prepare` step), computed once by the writer so
//! every target runs the same integer arithmetic. no_std: pure f32/f64 arithmetic, no libm.
//!
//! Each function names the TFLite routine it reproduces; the rounding of every intermediate (f32 vs
//! f64) matters for bit-exactness and is kept as TFLite has it.

use crate::graph::Activation;

/// Why a multiplier cannot be represented in the form a kernel expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantError {
    /// The real multiplier is negative, NaN or infinite.
    NotFinitePositive,
    /// A "smaller than one" multiplier was >= 1 (or a "greater than one" was <= 1).
    OutOfRange,
}

impl core::fmt::Display for QuantError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            QuantError::NotFinitePositive => f.write_str("real multiplier is not a finite non-negative number"),
            QuantError::OutOfRange => f.write_str("real multiplier is outside the range this op's kernel accepts"),
        }
    }
}

/// `std::round` for doubles: half away from zero. Exact for every finite input.
pub fn round_half_away_f64(x: f64) -> f64 {
    if !x.is_finite() || x.abs() >= 4_503_599_627_370_496.0 {
        return x; // already integral (|x| >= 2^52) or not a number
    }
    let t = x as i64 as f64; // truncation toward zero, exact in this range
    let frac = x - t; // exact: both lie in the same binade or t == 0
    if frac >= 0.5 {
        t + 1.0
    } else if frac <= -0.5 {
        t - 1.0
    } else {
        t
    }
}

/// `std::round` for floats (`TfLiteRound(float)`): half away from zero, in f32.
pub fn round_half_away_f32(x: f32) -> f32 {
    if !x.is_finite() || x.abs() >= 8_388_608.0 {
        return x;
    }
    let t = x as i32 as f32;
    let frac = x - t;
    if frac >= 0.5 {
        t + 1.0
    } else if frac <= -0.5 {
        t - 1.0
    } else {
        t
    }
}

/// C's `frexp`: `x = m * 2^e` with `0.5 <= |m| < 1` (m = 0, e = 0 for zero; non-finite passes through).
pub fn frexp(x: f64) -> (f64, i32) {
    if x == 0.0 || !x.is_finite() {
        return (x, 0);
    }
    let (x, bias) = if x.abs() < f64::MIN_POSITIVE { (x * 18_014_398_509_481_984.0, -54) } else { (x, 0) }; // 2^54
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let m = f64::from_bits((bits & !(0x7ffu64 << 52)) | (1022u64 << 52));
    (m, exp - 1022 + bias)
}

/// `QuantizeMultiplier` (quantization_util.cc): Q31 mantissa and power-of-two exponent with
/// `real = mult * 2^(shift - 31)`; the 2^31 rounding edge bumps the shift; below 2^-31 gives 0.
pub fn quantize_multiplier(real: f64) -> Result<(i32, i32), QuantError> {
    if !real.is_finite() || real < 0.0 {
        return Err(QuantError::NotFinitePositive);
    }
    if real == 0.0 {
        return Ok((0, 0));
    }
    let (q, mut shift) = frexp(real);
    let mut q_fixed = round_half_away_f64(q * 2_147_483_648.0) as i64;
    if q_fixed == 1i64 << 31 {
        q_fixed /= 2;
        shift += 1;
    }
    if shift < -31 {
        return Ok((0, 0));
    }
    Ok((q_fixed as i32, shift))
}

/// `QuantizeMultiplierSmallerThanOneExp`: as [`quantize_multiplier`] for `0 < real < 1` (shift <= 0).
pub fn quantize_multiplier_smaller_than_one(real: f64) -> Result<(i32, i32), QuantError> {
    if !(real < 1.0 && real > 0.0) {
        return Err(QuantError::OutOfRange);
    }
    let (m, s) = quantize_multiplier(real)?;
    if s > 0 {
        return Err(QuantError::OutOfRange);
    }
    Ok((m, s))
}

/// `QuantizeMultiplierGreaterThanOne`: as [`quantize_multiplier`] for `real > 1` (shift >= 0).
pub fn quantize_multiplier_greater_than_one(real: f64) -> Result<(i32, i32), QuantError> {
    if real.is_nan() || real <= 1.0 {
        return Err(QuantError::OutOfRange);
    }
    let (m, s) = quantize_multiplier(real)?;
    if s < 0 {
        return Err(QuantError::OutOfRange);
    }
    Ok((m, s))
}

/// CONV_2D / DEPTHWISE_CONV_2D per-channel (`PopulateConvolutionQuantizationParams`): every factor
/// widened to double before multiplying.
pub fn conv_multiplier(in_scale: f32, w_scale: f32, out_scale: f32) -> Result<(i32, i32), QuantError> {
    quantize_multiplier(in_scale as f64 * w_scale as f64 / out_scale as f64)
}

/// FULLY_CONNECTED (`GetQuantizedConvolutionMultipler`, current TFLM): every factor widened to double,
/// `double(s_in) * double(s_w) / double(s_out)`, the same rule as [`conv_multiplier`]. An older TFLM
/// rounded the `s_in * s_w` product to f32 first; that differs by an ulp often enough to move an output
/// by one step on rounding ties, so it is not used.
pub fn fc_multiplier(in_scale: f32, w_scale: f32, out_scale: f32) -> Result<(i32, i32), QuantError> {
    quantize_multiplier(in_scale as f64 * w_scale as f64 / out_scale as f64)
}

/// MUL int8 (`mul_common.cc`): `s1 * s2 / s_out` in double.
pub fn mul_multiplier(a_scale: f32, b_scale: f32, out_scale: f32) -> Result<(i32, i32), QuantError> {
    quantize_multiplier(a_scale as f64 * b_scale as f64 / out_scale as f64)
}

/// MEAN int8 (`PrepareMeanOrSum`): `s_in / s_out` in double (the 1/count factor is folded in at run time).
pub fn mean_multiplier(in_scale: f32, out_scale: f32) -> Result<(i32, i32), QuantError> {
    quantize_multiplier(in_scale as f64 / out_scale as f64)
}

/// ADD int8 parameters (`CalculateOpDataAdd` for int8 outputs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddParams {
    pub left_shift: i32,
    pub a_mult: i32,
    pub a_shift: i32,
    pub b_mult: i32,
    pub b_shift: i32,
    pub out_mult: i32,
    pub out_shift: i32,
}

/// `CalculateOpDataAdd`: inputs rescaled to twice the larger input scale, 20 bits of headroom.
pub fn add_params(a_scale: f32, b_scale: f32, out_scale: f32) -> Result<AddParams, QuantError> {
    const LEFT_SHIFT: i32 = 20;
    let twice_max = 2.0 * (if a_scale > b_scale { a_scale } else { b_scale }) as f64;
    let (a_mult, a_shift) = quantize_multiplier_smaller_than_one(a_scale as f64 / twice_max)?;
    let (b_mult, b_shift) = quantize_multiplier_smaller_than_one(b_scale as f64 / twice_max)?;
    let real_out = twice_max / ((1i64 << LEFT_SHIFT) as f64 * out_scale as f64);
    let (out_mult, out_shift) = quantize_multiplier_smaller_than_one(real_out)?;
    Ok(AddParams { left_shift: LEFT_SHIFT, a_mult, a_shift, b_mult, b_shift, out_mult, out_shift })
}

/// Integer bits of the scaled difference in TFLite's int8 softmax (`kScaledDiffIntegerBits`).
pub const SOFTMAX_DIFF_INTEGER_BITS: i32 = 5;

/// `PreprocessSoftmaxScaling(beta, in_scale, 5)`: Q31 multiplier and left shift mapping an int8
/// difference to a Q5.26 value.
pub fn preprocess_softmax_scaling(beta: f64, in_scale: f64, integer_bits: i32) -> Result<(i32, i32), QuantError> {
    let scaled = beta * in_scale * (1i64 << (31 - integer_bits)) as f64;
    let max = ((1i64 << 31) - 1) as f64;
    quantize_multiplier_greater_than_one(if scaled < max { scaled } else { max })
}

/// `CalculateInputRadius(integer_bits, left_shift, 31)`: the largest |difference| that does not saturate.
pub fn calculate_input_radius(integer_bits: i32, left_shift: i32) -> i32 {
    let total_signed_bits = 31;
    let max = ((1i64 << integer_bits) - 1) as f64 * (1i64 << (total_signed_bits - integer_bits)) as f64
        / (1i64 << left_shift.clamp(0, 62)) as f64;
    // floor of a non-negative value: truncation
    max as i32
}

/// Softmax int8 parameters: (input_multiplier, input_left_shift, diff_min), as `CalculateSoftmaxParams`.
pub fn softmax_params(beta: f32, in_scale: f32) -> Result<(i32, i32, i32), QuantError> {
    let (m, ls) = preprocess_softmax_scaling(beta as f64, in_scale as f64, SOFTMAX_DIFF_INTEGER_BITS)?;
    Ok((m, ls, -calculate_input_radius(SOFTMAX_DIFF_INTEGER_BITS, ls)))
}

/// TFLite's `Quantize` helper used for clamp bounds: `zp + round(f / scale)` in f32.
fn quantize_bound(scale: f32, zero_point: i32, f: f32) -> i32 {
    let t = round_half_away_f32(f / scale);
    // Out-of-range values are a TFLite error; saturate so callers still get a valid clamp.
    zero_point.saturating_add(t as i32)
}

/// `CalculateActivationRangeQuantized` for int8 outputs: the clamp in the quantized domain. Activations
/// other than Relu/Relu6 are not clamps (they become a separate Lut op), so they give the full range.
pub fn activation_range_i8(act: Activation, scale: f32, zero_point: i32) -> (i32, i32) {
    let (qmin, qmax) = (-128, 127);
    match act {
        Activation::Relu => (qmin.max(quantize_bound(scale, zero_point, 0.0)), qmax),
        Activation::Relu6 => {
            (qmin.max(quantize_bound(scale, zero_point, 0.0)), qmax.min(quantize_bound(scale, zero_point, 6.0)))
        }
        _ => (qmin, qmax),
    }
}

/// TFLite `AffineQuantize` of one value to int8: `round_half_away(x / scale) + zp`, clamped (f32 math).
pub fn quantize_i8(x: f32, scale: f32, zero_point: i32) -> i8 {
    let q = round_half_away_f32(x / scale) as i32; // `as` saturates; NaN -> 0
    q.saturating_add(zero_point).clamp(-128, 127) as i8
}

/// Dequantize one int8 value (TFLite: `scale` widened to double, then the product cast to f32).
pub fn dequantize_i8(q: i8, scale: f32, zero_point: i32) -> f32 {
    (scale as f64 * (q as i64 - zero_point as i64) as f64) as f32
}

/// A 256-entry int8 lookup table for `f` (index `q + 128` holds the output for input `q`), as the
/// runtime's `Lut` op reads it: dequantize, apply `f`, quantize with the output parameters.
pub fn build_lut_i8(in_scale: f32, in_zp: i32, out_scale: f32, out_zp: i32, f: impl Fn(f32) -> f32) -> [u8; 256] {
    let mut t = [0u8; 256];
    for (i, slot) in t.iter_mut().enumerate() {
        let q = (i as i32 - 128) as i8;
        *slot = quantize_i8(f(dequantize_i8(q, in_scale, in_zp)), out_scale, out_zp) as u8;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frexp_matches_c() {
        assert_eq!(frexp(1.0), (0.5, 1));
        assert_eq!(frexp(0.75), (0.75, 0));
        assert_eq!(frexp(-3.0), (-0.75, 2));
        assert_eq!(frexp(0.125), (0.5, -2));
        let tiny = f64::MIN_POSITIVE / 8.0; // subnormal: 2^-1025
        assert_eq!(frexp(tiny), (0.5, -1024));
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(round_half_away_f64(2.5), 3.0);
        assert_eq!(round_half_away_f64(-2.5), -3.0);
        assert_eq!(round_half_away_f64(2.4999999), 2.0);
        assert_eq!(round_half_away_f32(0.5), 1.0);
        assert_eq!(round_half_away_f32(-0.5), -1.0);
        assert_eq!(round_half_away_f32(-1.49), -1.0);
    }

    #[test]
    fn fc_multiplier_uses_the_double_product() {
        // MLPerf Tiny ResNet-8's FULLY_CONNECTED (scales from its model_ops.json): current TFLM gives
        // 1552512760 >> 5; the f32-rounded product of older TFLM gave 1552512742.
        let (s_in, s_w, s_out): (f32, f32, f32) = (
            "0.1270691454410553".parse().unwrap(),
            "0.0305543914437294".parse().unwrap(),
            "0.17185351252555847".parse().unwrap(),
        );
        assert_eq!(fc_multiplier(s_in, s_w, s_out).unwrap(), (1_552_512_760, -5));
        let older = quantize_multiplier((s_in * s_w) as f64 / s_out as f64).unwrap();
        assert_eq!(older, (1_552_512_742, -5), "the two rules must differ on this case");
    }

    #[test]
    fn quantize_multiplier_hand_cases() {
        assert_eq!(quantize_multiplier(0.5), Ok((1 << 30, 0)));
        assert_eq!(quantize_multiplier(1.0), Ok((1 << 30, 1)));
        assert_eq!(quantize_multiplier(0.25), Ok((1 << 30, -1)));
        assert_eq!(quantize_multiplier(0.0), Ok((0, 0)));
        // Just below 1.0: the mantissa rounds to 2^31, so it is halved and the shift bumped.
        assert_eq!(quantize_multiplier(1.0 - 1e-12), Ok((1 << 30, 1)));
        // 2^-40 is below what a shift of -31 can express.
        assert_eq!(quantize_multiplier(1.0 / (1u64 << 40) as f64), Ok((0, 0)));
        assert!(quantize_multiplier(-1.0).is_err());
        assert!(quantize_multiplier(f64::NAN).is_err());
        // 0.1 = 0.8 * 2^-3; 0.8 * 2^31 = 1717986918.4
        assert_eq!(quantize_multiplier(0.1), Ok((1717986918, -3)));
    }

    #[test]
    fn softmax_radius_matches_tflite() {
        assert_eq!(calculate_input_radius(5, 24), 124);
        assert_eq!(calculate_input_radius(5, 26), 31);
    }

    #[test]
    fn activation_ranges() {
        assert_eq!(activation_range_i8(Activation::Relu, 0.1, -128), (-128, 127));
        assert_eq!(activation_range_i8(Activation::Relu, 0.1, 5), (5, 127));
        // 6 / 0.05 = 120 -> -128 + 120 = -8
        assert_eq!(activation_range_i8(Activation::Relu6, 0.05, -128), (-128, -8));
        assert_eq!(activation_range_i8(Activation::None, 0.05, 3), (-128, 127));
    }

    #[test]
    fn quantize_and_lut() {
        assert_eq!(quantize_i8(0.25, 0.5, 0), 1); // 0.5 rounds away from zero
        assert_eq!(quantize_i8(-0.25, 0.5, 0), -1);
        assert_eq!(quantize_i8(1000.0, 0.5, 0), 127);
        assert_eq!(quantize_i8(f32::NAN, 0.5, 3), 3);
        assert_eq!(dequantize_i8(-128, 0.5, -128), 0.0);
        let id = build_lut_i8(0.1, 0, 0.1, 0, |x| x);
        for (i, &v) in id.iter().enumerate() {
            assert_eq!(v as i8 as i32, i as i32 - 128);
        }
    }
}
