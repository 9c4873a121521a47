//! f32 depthwise convolution with multiplier 1: weights and bias widened to f32 once (f16 models
//! too), channels innermost so each tap is one multiply-add over a contiguous run of channels (the
//! compiler vectorises it; the AVX2 entry compiles the same loop for 8 lanes). Each output is the
//! reference's sum in the reference's order (bias, then taps in order), so results are identical
//! where no FMA is used and within f32 rounding otherwise.

use super::{Isa, Span};
use crate::kernels::float::act;
use crate::kernels::float::conv::conv_geom;
use crate::kernels::float::Operand;
use crate::kernels::int8::KResult;
use rsim_model::{Activation, ConvKind, DType, Model, Op, Storage, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DwF32Plan {
    pub batch: u32,
    pub in_h: u32,
    pub in_w: u32,
    pub channels: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub k_h: u32,
    pub k_w: u32,
    pub stride: [u32; 2],
    pub dilation: [u32; 2],
    pub pad: [u32; 2],
    pub weights: Span,
    pub bias: Span,
    pub activation: Activation,
}

pub fn plan(op: &Op, at: &mut u32) -> Option<DwF32Plan> {
    let Op::Conv2d { input, weights, bias, output, params, .. } = op else { return None };
    let act_ok = |t: &Tensor| matches!(t.storage, Storage::Arena { .. }) && t.dtype == DType::F32;
    if !act_ok(input)
        || !act_ok(output)
        || !super::is_float_const(weights)
        || bias.is_some_and(|b| !super::is_float_const(&b))
    {
        return None;
    }
    let g = conv_geom(&input.shape, &weights.shape, &output.shape, params).ok()?;
    if g.kind != (ConvKind::Depthwise { multiplier: 1 }) || bias.is_some_and(|b| b.shape.checked_len() != Some(g.out_c))
    {
        return None;
    }
    let u = |v: usize| u32::try_from(v).ok();
    let wlen = u32::try_from(g.k_h.checked_mul(g.k_w)?.checked_mul(g.in_c)?.checked_mul(4)?).ok()?;
    let weights = Span { start: *at, len: wlen };
    *at = at.checked_add(wlen)?.checked_next_multiple_of(16)?;
    let blen = u(g.in_c.checked_mul(4)?)?;
    let bias = Span { start: *at, len: blen };
    *at = at.checked_add(blen)?.checked_next_multiple_of(16)?;
    Some(DwF32Plan {
        batch: u(g.batch)?,
        in_h: u(g.in_h)?,
        in_w: u(g.in_w)?,
        channels: u(g.in_c)?,
        out_h: u(g.out_h)?,
        out_w: u(g.out_w)?,
        k_h: u(g.k_h)?,
        k_w: u(g.k_w)?,
        stride: [u(g.stride[0])?, u(g.stride[1])?],
        dilation: [u(g.dilation[0])?, u(g.dilation[1])?],
        pad: [u(g.pad_top)?, u(g.pad_left)?],
        weights,
        bias,
        activation: params.activation,
    })
}

/// Writes a float constant's values as little-endian f32 into `dst` (f16 widened once, here).
fn widen(src: &Operand<'_>, dst: &mut [u8]) -> KResult<()> {
    for (i, d) in dst.chunks_exact_mut(4).enumerate() {
        d.copy_from_slice(&src.get(i).ok_or("constant shorter than its shape")?.to_le_bytes());
    }
    Ok(())
}

pub fn pack(p: &DwF32Plan, op: &Op, model: &Model<'_>, persistent: &mut [u8]) -> KResult<()> {
    let Op::Conv2d { weights, bias, .. } = op else { return Err("not a conv op") };
    widen(&super::float_const(weights, model)?, p.weights.get_mut(persistent)?)?;
    let dst = p.bias.get_mut(persistent)?;
    match bias {
        Some(b) => widen(&super::float_const(b, model)?, dst),
        None => {
            dst.fill(0);
            Ok(())
        }
    }
}

pub fn run(p: &DwF32Plan, isa: Isa, x: &[u8], persistent: &[u8], out: &mut [u8]) -> KResult<()> {
    let x: &[f32] = bytemuck::try_cast_slice(x).map_err(|_| "f32 input is not 4-byte aligned")?;
    let out: &mut [f32] = bytemuck::try_cast_slice_mut(out).map_err(|_| "f32 output is not 4-byte aligned")?;
    let w: &[f32] = bytemuck::try_cast_slice(p.weights.get(persistent)?).map_err(|_| "packed weights misaligned")?;
    let b: &[f32] = bytemuck::try_cast_slice(p.bias.get(persistent)?).map_err(|_| "packed bias misaligned")?;
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(t) => super::x86::depthwise_f32(t, p, x, w, b, out),
        _ => pixels(p, x, w, b, out),
    }
}

/// The depthwise loop; inlined into the AVX2 entry so it is vectorised 8 lanes wide there.
#[inline(always)]
pub(crate) fn pixels(p: &DwF32Plan, x: &[f32], w: &[f32], bias: &[f32], out: &mut [f32]) -> KResult<()> {
    const E: &str = "depthwise tensors shorter than their shapes";
    let c = p.channels as usize;
    let (ih, iw) = (p.in_h as usize, p.in_w as usize);
    let (n, oh, ow) = (p.batch as usize, p.out_h as usize, p.out_w as usize);
    let (kh, kw) = (p.k_h as usize, p.k_w as usize);
    let bias = bias.get(..c).ok_or(E)?;
    let mut o_at = 0;
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let acc = out.get_mut(o_at..o_at + c).ok_or(E)?;
                // Bias, then the taps in order (the reference's sum), the bias copy as a loop: a
                // `memcpy` call per pixel cost more than the copy.
                for (a, &b) in acc.iter_mut().zip(bias) {
                    *a = b;
                }
                for ky in 0..kh {
                    let Some(iy) = (oy * p.stride[0] as usize + ky * p.dilation[0] as usize)
                        .checked_sub(p.pad[0] as usize)
                        .filter(|&v| v < ih)
                    else {
                        continue;
                    };
                    for kx in 0..kw {
                        let Some(ix) = (ox * p.stride[1] as usize + kx * p.dilation[1] as usize)
                            .checked_sub(p.pad[1] as usize)
                            .filter(|&v| v < iw)
                        else {
                            continue;
                        };
                        let at = ((b * ih + iy) * iw + ix) * c;
                        let xs = x.get(at..at + c).ok_or(E)?;
                        let ws = w.get((ky * kw + kx) * c..(ky * kw + kx + 1) * c).ok_or(E)?;
                        for ((a, &xv), &wv) in acc.iter_mut().zip(xs).zip(ws) {
                            *a += xv * wv;
                        }
                    }
                }
                act::apply_slice(p.activation, acc);
                o_at += c;
            }
        }
    }
    Ok(())
}
