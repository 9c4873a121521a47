//! int8 pooling: TFLite `reference_integer_ops::AveragePool`/`MaxPool` and TFLM's int8 MEAN over H, W.

use super::fixedpoint::multiply_by_quantized_multiplier;
use super::KResult;

const E: &str = "tensor bytes shorter than its shape";

/// Window geometry (NHWC shapes, top/left padding only, as TFLite).
#[derive(Clone, Copy, Debug)]
pub struct PoolGeom {
    pub input: [usize; 4],
    pub output: [usize; 4],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pad: [usize; 2],
}

/// Calls `f(channel, window values)` for every output element in order; `f` returns the output byte.
fn windows(
    g: &PoolGeom,
    input: &[u8],
    out: &mut [u8],
    mut f: impl FnMut(&mut dyn Iterator<Item = KResult<i32>>) -> KResult<i32>,
) -> KResult<()> {
    let [n, ih, iw, c] = g.input;
    let [_, oh, ow, oc] = g.output;
    if oc != c {
        return Err("pooling changes the channel count");
    }
    let mut o = 0;
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                // In-bounds window [y0, y1) x [x0, x1), as TFLite's filter_*_start/end.
                let (oy0, ox0) = (oy * g.stride[0], ox * g.stride[1]);
                let y0 = oy0.max(g.pad[0]) - g.pad[0];
                let y1 = (oy0 + g.kernel[0]).saturating_sub(g.pad[0]).min(ih);
                let x0 = ox0.max(g.pad[1]) - g.pad[1];
                let x1 = (ox0 + g.kernel[1]).saturating_sub(g.pad[1]).min(iw);
                for ch in 0..c {
                    let mut it = (y0..y1)
                        .flat_map(|y| (x0..x1).map(move |x| (y, x)))
                        .map(|(y, x)| input.get(((b * ih + y) * iw + x) * c + ch).map(|&v| v as i8 as i32).ok_or(E));
                    let v = f(&mut it)?;
                    *out.get_mut(o).ok_or(E)? = v as i8 as u8;
                    o += 1;
                }
            }
        }
    }
    Ok(())
}

/// Average of the in-bounds taps of raw int8 values, rounded half away from zero, then clamped.
pub fn avg_pool(g: &PoolGeom, input: &[u8], act: (i32, i32), out: &mut [u8]) -> KResult<()> {
    windows(g, input, out, |it| {
        let (mut acc, mut count) = (0i32, 0i32);
        for v in it {
            acc = acc.wrapping_add(v?);
            count += 1;
        }
        if count == 0 {
            return Err("pooling window lies entirely in the padding");
        }
        let r = if acc > 0 { (acc + count / 2) / count } else { (acc - count / 2) / count };
        Ok(r.clamp(act.0, act.1))
    })
}

/// Maximum of the in-bounds taps, clamped to the activation range.
pub fn max_pool(g: &PoolGeom, input: &[u8], act: (i32, i32), out: &mut [u8]) -> KResult<()> {
    windows(g, input, out, |it| {
        let mut m = -128i32;
        for v in it {
            m = m.max(v?);
        }
        Ok(m.clamp(act.0, act.1))
    })
}

/// TFLM int8 MEAN over H and W of `[n, h, w, c]` (`EvalIntegerMean`). With identical input and output
/// quantization (`requant == None`) it is `reference_ops::Mean`: the raw sum divided by the count,
/// truncating. Otherwise `QuantizedMeanOrSumExtraArgs`: the `s_in/s_out` multiplier absorbs 1/count.
pub fn mean_hw(
    shape: [usize; 4],
    input: &[u8],
    in_zp: i32,
    out_zp: i32,
    requant: Option<(i32, i32)>,
    act: (i32, i32),
    out: &mut [u8],
) -> KResult<()> {
    let [n, h, w, c] = shape;
    let count = h * w;
    if count == 0 {
        return Ok(()); // TFLM returns early on an empty reduction
    }
    let count_i32 = i32::try_from(count).map_err(|_| "reduction too large")?;
    // Fold 1/count into the multiplier as `QuantizedMeanOrSumExtraArgs` does (integer only).
    let folded = match requant {
        Some((m, s)) => {
            let shift = (63 - (count as u64).leading_zeros() as i32).min(32).min(31i32.saturating_add(s)).max(0);
            let m = ((m as i64) << shift) / count as i64;
            Some((i32::try_from(m).map_err(|_| "mean multiplier overflows")?, s.saturating_sub(shift)))
        }
        None => None,
    };
    for b in 0..n {
        for ch in 0..c {
            let mut sum: i32 = 0;
            for p in 0..count {
                sum = sum.wrapping_add(*input.get((b * count + p) * c + ch).ok_or(E)? as i8 as i32);
            }
            let v = match folded {
                Some((m, s)) => {
                    let shifted = sum.wrapping_sub(in_zp.wrapping_mul(count_i32));
                    multiply_by_quantized_multiplier(shifted, m, s).wrapping_add(out_zp).clamp(act.0, act.1)
                }
                None => (sum / count_i32).clamp(-128, 127),
            };
            *out.get_mut(b * c + ch).ok_or(E)? = v as i8 as u8;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avg_pool_rounds_half_away_and_skips_padding() {
        // 1x2x2x1 input, 3x3 window with pad 1, stride 2 -> one output over all 4 taps
        let g = PoolGeom { input: [1, 2, 2, 1], output: [1, 1, 1, 1], kernel: [3, 3], stride: [2, 2], pad: [1, 1] };
        let mut out = [0u8];
        avg_pool(&g, &[1, 2, 2, 1], (-128, 127), &mut out).unwrap(); // 6/4 = 1.5 -> 2
        assert_eq!(out[0] as i8, 2);
        avg_pool(&g, &[(-1i8) as u8, (-2i8) as u8, (-2i8) as u8, (-1i8) as u8], (-128, 127), &mut out).unwrap();
        assert_eq!(out[0] as i8, -2);
        max_pool(&g, &[1, 9, 2, 1], (-128, 5), &mut out).unwrap();
        assert_eq!(out[0] as i8, 5);
    }

    #[test]
    fn mean_same_quant_truncates_and_requant_matches_f64() {
        let x: Vec<u8> = [3i8, 4, 4, 4, -3, -4, -4, -4].iter().map(|&v| v as u8).collect(); // [1,2,2,2]
        let mut out = [0u8; 2];
        mean_hw([1, 2, 2, 2], &x, 0, 0, None, (-128, 127), &mut out).unwrap();
        // channel 0: 3 + 4 - 3 - 4 = 0; channel 1: 4+4-4-4 = 0
        assert_eq!(out, [0, 0]);
        let x: Vec<u8> = (0..64).map(|i| (i * 3 % 200) as u8).collect(); // [1,4,4,4]
                                                                         // s_in / s_out = 0.75 -> (1610612736, 0)
        let mut out = [0u8; 4];
        mean_hw([1, 4, 4, 4], &x, -5, 2, Some((1610612736, 0)), (-128, 127), &mut out).unwrap();
        for ch in 0..4 {
            let s: f64 = (0..16).map(|p| x[p * 4 + ch] as i8 as f64 + 5.0).sum();
            let want = (s / 16.0 * 0.75).round() + 2.0;
            assert!((out[ch] as i8 as f64 - want).abs() <= 1.0, "ch {ch}: {} vs {want}", out[ch] as i8);
        }
    }
}
