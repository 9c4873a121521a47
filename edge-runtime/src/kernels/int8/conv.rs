//! int8 convolutions: TFLite `reference_integer_ops::ConvPerChannel` (dense and grouped) and
//! `DepthwiseConvPerChannel` (filter 1HW(C*M), output channel `ic * M + m`).

use super::fixedpoint::multiply_by_quantized_multiplier;
use super::{get_i32, KResult, OutStage};

/// Geometry of a convolution, NHWC activations.
#[derive(Clone, Copy, Debug)]
pub struct ConvGeom {
    pub input: [usize; 4],
    pub output: [usize; 4],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// Top and left padding; TFLite ignores bottom/right (the output size already accounts for them).
    pub pad: [usize; 2],
}

impl ConvGeom {
    /// Input coordinate of output `o` and tap `k` along axis `a` (0 = H, 1 = W), if inside the image.
    #[inline]
    fn src(&self, a: usize, o: usize, k: usize) -> Option<usize> {
        let pos = (o * self.stride[a] + k * self.dilation[a]).checked_sub(self.pad[a])?;
        (pos < self.input[1 + a]).then_some(pos)
    }
}

const E: &str = "tensor bytes shorter than its shape";

/// Requantizes an accumulator of output channel `c` and applies the clamp.
#[inline]
fn finish(acc: i32, c: usize, stage: &OutStage<'_>) -> KResult<u8> {
    let (m, s) = stage.multiplier(c)?;
    let v = multiply_by_quantized_multiplier(acc, m, s).wrapping_add(stage.out_zp);
    Ok(v.clamp(stage.act_min, stage.act_max) as i8 as u8)
}

/// Dense or grouped conv: weights OHWI `[out_c, kh, kw, in_c / groups]`.
#[allow(clippy::too_many_arguments)] // mirrors TFLM's reference signature
pub fn conv(
    g: &ConvGeom,
    groups: usize,
    input: &[u8],
    in_zp: i32,
    weights: &[u8],
    bias: Option<&[u8]>,
    stage: &OutStage<'_>,
    out: &mut [u8],
) -> KResult<()> {
    let [n, _ih, _iw, ic] = g.input;
    let [_, oh, ow, oc] = g.output;
    let [kh, kw] = g.kernel;
    if groups == 0 || ic % groups != 0 || oc % groups != 0 {
        return Err("channels are not divisible by groups");
    }
    let fic = ic / groups;
    let per_group = oc / groups;
    let in_offset = in_zp.wrapping_neg();
    // Any valid int8 zero point gives an offset in [-127, 128]: the narrow dot applies.
    let offset16 = i16::try_from(in_offset).ok().filter(|o| (-256..=256).contains(o));
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for c in 0..oc {
                    let base_ic = (c / per_group) * fic;
                    let mut acc: i32 = 0;
                    for ky in 0..kh {
                        let Some(iy) = g.src(0, oy, ky) else { continue };
                        for kx in 0..kw {
                            let Some(ix) = g.src(1, ox, kx) else { continue };
                            let in_at = ((b * g.input[1] + iy) * g.input[2] + ix) * ic + base_ic;
                            let w_at = ((c * kh + ky) * kw + kx) * fic;
                            let xs = input.get(in_at..in_at + fic).ok_or(E)?;
                            let ws = weights.get(w_at..w_at + fic).ok_or(E)?;
                            acc = acc.wrapping_add(match offset16 {
                                Some(o) => dot_i16(xs, ws, o),
                                None => xs.iter().zip(ws).fold(0i32, |a, (&x, &w)| {
                                    a.wrapping_add(
                                        (w as i8 as i32).wrapping_mul((x as i8 as i32).wrapping_add(in_offset)),
                                    )
                                }),
                            });
                        }
                    }
                    if let Some(bias) = bias {
                        acc = acc.wrapping_add(get_i32(bias, c)?);
                    }
                    *out.get_mut(((b * oh + oy) * ow + ox) * oc + c).ok_or(E)? = finish(acc, c, stage)?;
                }
            }
        }
    }
    Ok(())
}

/// Sum of `w * (x + offset)` over int8 `xs`, `ws` with |offset| <= 256: every `x + offset` fits i16
/// and every product i32, so the widening multiply-add maps onto the CPU's i16 dot instructions
/// (x86 `pmaddwd`, Arm `smlal`); wrapping i32 sums make the order irrelevant (bit-identical).
#[inline]
fn dot_i16(xs: &[u8], ws: &[u8], offset: i16) -> i32 {
    xs.iter()
        .zip(ws)
        .fold(0i32, |a, (&x, &w)| a.wrapping_add((w as i8 as i16 as i32) * ((x as i8 as i16 + offset) as i32)))
}

/// Depthwise conv with depth multiplier `oc / ic`: weights `[1, kh, kw, oc]`.
pub fn depthwise(
    g: &ConvGeom,
    input: &[u8],
    in_zp: i32,
    weights: &[u8],
    bias: Option<&[u8]>,
    stage: &OutStage<'_>,
    out: &mut [u8],
) -> KResult<()> {
    let (ic, oc) = (g.input[3], g.output[3]);
    if ic == 0 || oc % ic != 0 {
        return Err("depthwise output channels are not a multiple of input channels");
    }
    let in_offset = in_zp.wrapping_neg();
    if oc == ic {
        return depthwise_channels_inner(g, input, in_offset, weights, bias, stage, out);
    }
    depthwise_general(g, input, in_offset, weights, bias, stage, out)
}

/// Any depth multiplier, one output channel's taps at a time (TFLM's loop order).
fn depthwise_general(
    g: &ConvGeom,
    input: &[u8],
    in_offset: i32,
    weights: &[u8],
    bias: Option<&[u8]>,
    stage: &OutStage<'_>,
    out: &mut [u8],
) -> KResult<()> {
    let [n, _ih, _iw, ic] = g.input;
    let [_, oh, ow, oc] = g.output;
    let [kh, kw] = g.kernel;
    let dm = oc / ic.max(1);
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for c in 0..oc {
                    let in_c = c / dm;
                    let mut acc: i32 = 0;
                    for ky in 0..kh {
                        let Some(iy) = g.src(0, oy, ky) else { continue };
                        for kx in 0..kw {
                            let Some(ix) = g.src(1, ox, kx) else { continue };
                            let x = *input.get(((b * g.input[1] + iy) * g.input[2] + ix) * ic + in_c).ok_or(E)? as i8
                                as i32;
                            let w = *weights.get((ky * kw + kx) * oc + c).ok_or(E)? as i8 as i32;
                            acc = acc.wrapping_add(w.wrapping_mul(x.wrapping_add(in_offset)));
                        }
                    }
                    if let Some(bias) = bias {
                        acc = acc.wrapping_add(get_i32(bias, c)?);
                    }
                    *out.get_mut(((b * oh + oy) * ow + ox) * oc + c).ok_or(E)? = finish(acc, c, stage)?;
                }
            }
        }
    }
    Ok(())
}

/// Channels handled together by [`depthwise_channels_inner`]: an accumulator array on the stack
/// (no heap) that the compiler can keep in vector registers.
const DW_CHUNK: usize = 32;

/// Depthwise with multiplier 1, channels innermost: for each output pixel and tap, a run of
/// contiguous channels is accumulated at once (input and weights are both channel-contiguous),
/// instead of one channel's taps at a time. Integer sums in the same tap order: bit-identical.
fn depthwise_channels_inner(
    g: &ConvGeom,
    input: &[u8],
    in_offset: i32,
    weights: &[u8],
    bias: Option<&[u8]>,
    stage: &OutStage<'_>,
    out: &mut [u8],
) -> KResult<()> {
    let [n, ih, iw, c_all] = g.input;
    let [_, oh, ow, _] = g.output;
    let [kh, kw] = g.kernel;
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let out_at = ((b * oh + oy) * ow + ox) * c_all;
                let mut c0 = 0;
                while c0 < c_all {
                    let len = (c_all - c0).min(DW_CHUNK);
                    let mut acc = [0i32; DW_CHUNK];
                    let acc = &mut acc[..len];
                    for ky in 0..kh {
                        let Some(iy) = g.src(0, oy, ky) else { continue };
                        for kx in 0..kw {
                            let Some(ix) = g.src(1, ox, kx) else { continue };
                            let in_at = ((b * ih + iy) * iw + ix) * c_all + c0;
                            let w_at = (ky * kw + kx) * c_all + c0;
                            let xs = input.get(in_at..in_at + len).ok_or(E)?;
                            let ws = weights.get(w_at..w_at + len).ok_or(E)?;
                            for ((a, &x), &w) in acc.iter_mut().zip(xs).zip(ws) {
                                *a = a.wrapping_add(
                                    (w as i8 as i32).wrapping_mul((x as i8 as i32).wrapping_add(in_offset)),
                                );
                            }
                        }
                    }
                    let outs = out.get_mut(out_at + c0..out_at + c0 + len).ok_or(E)?;
                    for (j, (o, &a)) in outs.iter_mut().zip(acc.iter()).enumerate() {
                        let c = c0 + j;
                        let a = match bias {
                            Some(bias) => a.wrapping_add(get_i32(bias, c)?),
                            None => a,
                        };
                        *o = finish(a, c, stage)?;
                    }
                    c0 += len;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Mults;
    use super::*;

    fn stage(zp: i32) -> OutStage<'static> {
        // multiplier 0.5 (1<<30, shift 0)
        OutStage { mult: Mults::PerTensor(1 << 30, 0), out_zp: zp, act_min: -128, act_max: 127 }
    }
    fn b(v: &[i8]) -> Vec<u8> {
        v.iter().map(|&x| x as u8).collect()
    }

    /// Plain f64 convolution of the zero-point-shifted input, then the 0.5 output scale.
    fn reference(g: &ConvGeom, x: &[i8], zp: i32, w: &[i8], dw: bool) -> Vec<i8> {
        let [_, ih, iw, ic] = g.input;
        let [_, oh, ow, oc] = g.output;
        let mut out = vec![];
        for oy in 0..oh {
            for ox in 0..ow {
                for c in 0..oc {
                    let mut acc = 0f64;
                    for ky in 0..g.kernel[0] {
                        for kx in 0..g.kernel[1] {
                            let iy = (oy * g.stride[0] + ky * g.dilation[0]) as i64 - g.pad[0] as i64;
                            let ix = (ox * g.stride[1] + kx * g.dilation[1]) as i64 - g.pad[1] as i64;
                            if iy < 0 || ix < 0 || iy >= ih as i64 || ix >= iw as i64 {
                                continue;
                            }
                            let at = (iy as usize * iw + ix as usize) * ic;
                            if dw {
                                let dm = oc / ic;
                                acc += (x[at + c / dm] as f64 - zp as f64) * w[(ky * g.kernel[1] + kx) * oc + c] as f64;
                            } else {
                                for i in 0..ic {
                                    acc += (x[at + i] as f64 - zp as f64)
                                        * w[((c * g.kernel[0] + ky) * g.kernel[1] + kx) * ic + i] as f64;
                                }
                            }
                        }
                    }
                    let v = acc * 0.5;
                    // multiplier 2^30, shift 0 is one SRDHM: ties round toward +inf
                    out.push((v + 0.5).floor().clamp(-128.0, 127.0) as i8);
                }
            }
        }
        out
    }

    #[test]
    fn dense_and_depthwise_match_f64_with_padding_stride_dilation() {
        let x: Vec<i8> = (0..5 * 6 * 2).map(|i| ((i * 37) % 17) as i8 - 8).collect();
        for (stride, dil, pad) in [(1, 1, 1), (2, 1, 0), (1, 2, 2), (2, 2, 1)] {
            let k = 3;
            let oh = (5 + 2 * pad - dil * (k - 1) - 1) / stride + 1;
            let ow = (6 + 2 * pad - dil * (k - 1) - 1) / stride + 1;
            for (dw, oc) in [(false, 3), (true, 2), (true, 6)] {
                let g = ConvGeom {
                    input: [1, 5, 6, 2],
                    output: [1, oh, ow, oc],
                    kernel: [k, k],
                    stride: [stride; 2],
                    dilation: [dil; 2],
                    pad: [pad; 2],
                };
                let wn = if dw { k * k * oc } else { oc * k * k * 2 };
                let w: Vec<i8> = (0..wn).map(|i| ((i * 53) % 7) as i8 - 3).collect();
                let mut out = vec![0u8; oh * ow * oc];
                if dw {
                    depthwise(&g, &b(&x), 3, &b(&w), None, &stage(0), &mut out).unwrap();
                } else {
                    conv(&g, 1, &b(&x), 3, &b(&w), None, &stage(0), &mut out).unwrap();
                }
                let want = reference(&g, &x, 3, &w, dw);
                assert_eq!(out, b(&want), "stride {stride} dil {dil} pad {pad} dw {dw} oc {oc}");
            }
        }
    }

    #[test]
    fn channel_runs_match_the_per_channel_loop_bit_for_bit() {
        // 70 channels: two full DW_CHUNK runs and a partial one; bias, padding, stride, dilation.
        let c = 70;
        let x: Vec<i8> = (0..5 * 6 * c).map(|i| ((i * 29) % 23) as i8 - 11).collect();
        let w: Vec<i8> = (0..9 * c).map(|i| ((i * 31) % 13) as i8 - 6).collect();
        let bias: Vec<u8> = (0..c as i32).flat_map(|i| (i * 7 - 200).to_le_bytes()).collect();
        for (stride, dil, pad) in [(1, 1, 1), (2, 1, 1), (1, 2, 2)] {
            let oh = (5 + 2 * pad - dil * 2 - 1) / stride + 1;
            let ow = (6 + 2 * pad - dil * 2 - 1) / stride + 1;
            let g = ConvGeom {
                input: [1, 5, 6, c],
                output: [1, oh, ow, c],
                kernel: [3, 3],
                stride: [stride; 2],
                dilation: [dil; 2],
                pad: [pad; 2],
            };
            let (mut fast, mut slow) = (vec![0u8; oh * ow * c], vec![0u8; oh * ow * c]);
            depthwise_channels_inner(&g, &b(&x), 4, &b(&w), Some(&bias), &stage(3), &mut fast).unwrap();
            depthwise_general(&g, &b(&x), 4, &b(&w), Some(&bias), &stage(3), &mut slow).unwrap();
            assert_eq!(fast, slow, "stride {stride} dil {dil} pad {pad}");
            assert!(fast.iter().any(|&v| v != fast[0]), "degenerate test data");
        }
    }

    #[test]
    fn narrow_dot_equals_the_wide_one() {
        let xs: Vec<u8> = (0..301u32).map(|i| (i * 97 % 256) as u8).collect();
        let ws: Vec<u8> = (0..301u32).map(|i| (i * 61 % 256) as u8).collect();
        for offset in [-256i16, -128, -1, 0, 1, 127, 128, 256] {
            let wide = xs
                .iter()
                .zip(&ws)
                .fold(0i32, |a, (&x, &w)| a.wrapping_add((w as i8 as i32) * (x as i8 as i32 + offset as i32)));
            assert_eq!(dot_i16(&xs, &ws, offset), wide, "offset {offset}");
        }
    }

    #[test]
    fn short_buffers_are_errors_not_panics() {
        let g = ConvGeom {
            input: [1, 4, 4, 2],
            output: [1, 4, 4, 2],
            kernel: [3, 3],
            stride: [1; 2],
            dilation: [1; 2],
            pad: [1; 2],
        };
        let mut out = vec![0u8; 32];
        assert!(conv(&g, 1, &[0; 5], 0, &[0; 36], None, &stage(0), &mut out).is_err());
        assert!(depthwise(&g, &[0; 32], 0, &[0; 3], None, &stage(0), &mut out).is_err());
        assert!(conv(&g, 1, &[0; 32], 0, &[0; 36], Some(&[0; 3]), &stage(0), &mut out).is_err());
    }
}
