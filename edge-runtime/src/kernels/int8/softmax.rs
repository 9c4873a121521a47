//! int8 SOFTMAX: TFLite `reference_ops::Softmax` (quantized template), the fixed-point path TFLM runs
//! for int8 (no float, no LUT). Output scale 1/256, zero point -128.

use super::fixedpoint::{
    exp_on_negative_values, get_reciprocal, mul_by_qm_greater_than_one, rounding_divide_by_pot, srdhm,
};
use super::KResult;
use rsim_model::SoftmaxQuant;

const SCALED_DIFF_INTEGER_BITS: i32 = 5;
const ACCUMULATION_INTEGER_BITS: i32 = 12;
const E: &str = "tensor bytes shorter than its shape";

/// Softmax over the last dim (`depth`) of `rows` rows.
pub fn softmax(rows: usize, depth: usize, input: &[u8], q: &SoftmaxQuant, out: &mut [u8]) -> KResult<()> {
    for r in 0..rows {
        let xs = input.get(r * depth..(r + 1) * depth).ok_or(E)?;
        let os = out.get_mut(r * depth..(r + 1) * depth).ok_or(E)?;
        let max = xs.iter().map(|&v| v as i8 as i32).max().unwrap_or(-128);
        let exp_of = |v: u8| -> Option<i32> {
            let diff = (v as i8 as i32) - max;
            (diff >= q.diff_min).then(|| {
                let scaled = mul_by_qm_greater_than_one(diff, q.input_multiplier, q.input_left_shift); // Q5.26
                exp_on_negative_values(scaled, SCALED_DIFF_INTEGER_BITS) // Q0.31
            })
        };
        // Sum in Q12.19: Rescale<12> of each Q0.31 exp.
        let mut sum: i32 = 0;
        for &v in xs {
            if let Some(e) = exp_of(v) {
                sum = sum.wrapping_add(rounding_divide_by_pot(e, ACCUMULATION_INTEGER_BITS));
            }
        }
        let (shifted_scale, num_bits_over_unit) = get_reciprocal(sum, ACCUMULATION_INTEGER_BITS);
        for (&v, o) in xs.iter().zip(os.iter_mut()) {
            let y = match exp_of(v) {
                Some(e) => {
                    let unsat = rounding_divide_by_pot(srdhm(shifted_scale, e), num_bits_over_unit + 31 - 8);
                    unsat.wrapping_add(-128).clamp(-128, 127)
                }
                None => -128,
            };
            *o = y as i8 as u8;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_to_f64_softmax_and_saturates_small_entries() {
        // input scale 0.1: PreprocessSoftmaxScaling(1, 0.1, 5) = 0.1 * 2^26 = 6710886.4 -> (1717986918, 23), diff_min -248
        let q = SoftmaxQuant { input_multiplier: 1717986918, input_left_shift: 23, diff_min: -248 };
        let x: Vec<u8> = [10i8, 0, -20, 30, 30, -128].iter().map(|&v| v as u8).collect();
        let mut out = [0u8; 6];
        softmax(1, 6, &x, &q, &mut out).unwrap();
        let reals: Vec<f64> = x.iter().map(|&v| (v as i8 as f64) * 0.1).collect();
        let z: f64 = reals.iter().map(|r| r.exp()).sum();
        for (i, r) in reals.iter().enumerate() {
            let want = (r.exp() / z * 256.0 - 128.0).round().clamp(-128.0, 127.0);
            assert!((out[i] as i8 as f64 - want).abs() <= 1.0, "{i}: {} vs {want}", out[i] as i8);
        }
        assert!(softmax(2, 6, &x, &q, &mut out).is_err());
    }
}
