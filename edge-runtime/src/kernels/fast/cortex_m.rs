//! Cortex-M4/M7 (Armv7E-M DSP extension) int8 dense convolution and fully connected, bit-identical to
//! the reference (`kernels::int8::conv::conv`, `fc::fully_connected`), for microcontrollers: the OHWI
//! weights are read in place (flash stays flash: no packing, no persistent bytes, no heap), so it also
//! runs in lean mode.
//!
//! Per block of 2 output pixels, their receptive fields are gathered (im2col) as i16 with the input
//! offset applied, into a small fixed stack buffer ([`KC`] reduction elements per pixel; longer
//! reductions are done in chunks). Taps in the padding are zeros: TFLM skips them, and with the offset
//! already applied a zero adds nothing to the sum. The block is laid out for `SMLAD`: for every 4
//! reduction elements `k0..k3`, pixel 0 then pixel 1, each as the i16 pairs `(k0, k2), (k1, k3)`,
//! which is what `SXTAB16` (widen bytes 0/2 or, rotated, 1/3 and add the offset pair) produces from 4
//! input bytes, and what `SXTB16` produces from 4 weight bytes. The micro-kernel then computes 2
//! output channels x 2 pixels with 8 `SMLAD` per 4 reduction elements (17 instructions per 16 MACs).
//! Every `x + offset` fits i16 (|offset| <= 128), every product pair fits i32, and `SMLAD`'s
//! accumulate wraps like the reference's wrapping i32 sums: the order of the sum does not matter.
//! Requantization is the reference's arithmetic (`multiply_by_quantized_multiplier`, per-channel or
//! per-tensor), with SRDHM written as one rounding shift ([`requantize`]).
//!
//! The assembly (`SXTAB16` widening, the `SMLAD` micro-kernel) is in rsim-edge-simd's `cortex_m`
//! module, behind safe bounds-checked functions.

use super::gemm::{self, GemmGeom};
use super::requant::split_shift;
use crate::kernels::int8::{get_i32, KResult, Mults, OutStage};
use rsim_edge_simd::cortex_m::{mac, put_quads, slot, widen4};
use rsim_model::{Model, Multiplier, Op};

/// Reduction elements per pixel gathered at once (a multiple of 4): a `2 * KC` i16 block, 1.25 KiB.
pub use rsim_edge_simd::cortex_m::KC;
/// Output channels whose partial sums are kept (on the stack) while a long reduction is chunked.
pub const CG: usize = 32;

/// A planned DSP conv or FC: the GEMM geometry (FC: 1x1 pixels, one per batch row), reduction length,
/// input offset and output stage (per-channel multipliers stay in the weights blob).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DspPlan {
    pub geom: GemmGeom,
    pub k: u32,
    pub in_offset: i32,
    pub out_zp: i32,
    pub act_min: i32,
    pub act_max: i32,
    pub mult: Multiplier,
    pub has_bias: bool,
}

/// Plans a dense int8 conv (groups 1) or FC with symmetric weights (the same ops the packed GEMM
/// takes); `None` leaves the op to the reference kernel. Needs no persistent bytes.
pub fn plan(op: &Op, model: &Model<'_>) -> Option<DspPlan> {
    let (requant, bias) = match op {
        Op::Conv2d { requant, bias, .. } | Op::FullyConnected { requant, bias, .. } => (requant.as_ref()?, bias),
        // The reference kernel. Listed, not `_`: a new op must decide whether this kernel applies.
        Op::Add { .. }
        | Op::Mul { .. }
        | Op::AvgPool2d { .. }
        | Op::MaxPool2d { .. }
        | Op::GlobalAvgPool { .. }
        | Op::Reshape { .. }
        | Op::Softmax { .. }
        | Op::Concat { .. }
        | Op::LayerNorm { .. }
        | Op::MatMul { .. }
        | Op::Transpose { .. }
        | Op::Activation { .. }
        | Op::Lut { .. }
        | Op::Quantize { .. }
        | Op::Dequantize { .. } => return None,
    };
    // The GEMM's planner does the shape, dtype and quantization checks; its packed-weight and
    // channel-array reservations are discarded (this kernel reads everything in place).
    let g = gemm::plan(op, model, &mut 0)?;
    if !(-256..=256).contains(&g.in_offset) {
        return None;
    }
    Some(DspPlan {
        geom: g.geom,
        k: g.k,
        in_offset: g.in_offset,
        out_zp: g.ch.out_zp,
        act_min: g.ch.act_min,
        act_max: g.ch.act_max,
        mult: requant.multiplier,
        has_bias: bias.is_some(),
    })
}

/// Runs a planned op: `inputs` = activation, weights, bias (when the op has one); `weights` is the
/// model's whole constant blob (per-channel multipliers).
pub fn run(p: &DspPlan, inputs: &[&[u8]], weights: &[u8], out: &mut [u8]) -> KResult<()> {
    const E: &str = "fewer input buffers than the op reads";
    let x = inputs.first().copied().ok_or(E)?;
    let w = inputs.get(1).copied().ok_or(E)?;
    let bias = if p.has_bias { Some(inputs.get(2).copied().ok_or(E)?) } else { None };
    let blob = |b: rsim_model::Blob| -> KResult<&[u8]> {
        let s = b.offset as usize;
        weights.get(s..s.checked_add(b.len as usize).ok_or("blob overflows")?).ok_or("blob lies outside the weights")
    };
    let mult = match p.mult {
        Multiplier::PerTensor { mult, shift } => Mults::PerTensor(mult, shift),
        Multiplier::PerChannel { mult, shift } => Mults::PerChannel { mult: blob(mult)?, shift: blob(shift)? },
    };
    let stage = OutStage { mult, out_zp: p.out_zp, act_min: p.act_min, act_max: p.act_max };
    conv(&p.geom, p.in_offset, x, w, bias, &stage, out)
}

/// The i16 im2col block of 2 pixels x [`KC`] elements, as words of 2 i16 (low half first), aligned for
/// `LDM`.
#[repr(C, align(8))]
struct Block([u32; KC]);

/// Sets the i16 at half-index `i` of the block.
#[inline(always)]
fn set16(a: &mut [u32; KC], i: usize, v: i16) -> KResult<()> {
    const E: &str = "im2col block short";
    let halves: &mut [i16] = bytemuck::try_cast_slice_mut(&mut a[..]).map_err(|_| E)?;
    *halves.get_mut(i).ok_or(E)? = v;
    Ok(())
}

/// Writes `src[i] as i8 + off` (or 0 for every element when `src` is `None`: padding) to reduction
/// elements `d .. d + len` of pixel `r`.
#[inline(always)]
fn put_run(a: &mut [u32; KC], r: usize, mut d: usize, len: usize, src: Option<&[u8]>, off: i16) -> KResult<()> {
    const E: &str = "im2col block short";
    let end = d + len;
    let mut s = src.unwrap_or_default();
    let val = |s: &mut &[u8]| -> i16 {
        match s.split_first() {
            Some((&v, rest)) => {
                *s = rest;
                v as i8 as i16 + off
            }
            None => 0,
        }
    };
    while d & 3 != 0 && d < end {
        let v = val(&mut s);
        set16(a, slot(d, r), v)?;
        d += 1;
    }
    let off2 = (off as u16 as u32) * 0x0001_0001;
    while d + 4 <= end {
        let at = ((d >> 2) * 2 + r) * 2;
        let (lo, hi) = match s.split_first_chunk::<4>() {
            Some((q, rest)) => {
                s = rest;
                widen4(u32::from_le_bytes(*q), off2)
            }
            None => (0, 0),
        };
        let dst = a.get_mut(at..at + 2).ok_or(E)?;
        dst[0] = lo;
        dst[1] = hi;
        d += 4;
    }
    while d < end {
        let v = val(&mut s);
        set16(a, slot(d, r), v)?;
        d += 1;
    }
    Ok(())
}

/// Gathers elements `k0 .. k0 + kc` (`kc` a multiple of 4) of pixels `p0`, `p0 + 1` (the second
/// only when `nr == 2`) into the block; padding taps, elements past `k` and absent pixels are 0.
#[allow(clippy::too_many_arguments)]
fn gather(
    g: &GemmGeom,
    k: usize,
    p0: usize,
    nr: usize,
    k0: usize,
    kc: usize,
    x: &[u8],
    off: i16,
    a: &mut [u32; KC],
) -> KResult<()> {
    const E: &str = "conv input shorter than its shape";
    let (ih, iw, ic) = (g.in_h as usize, g.in_w as usize, g.in_c as usize);
    let (oh, ow) = (g.out_h as usize, g.out_w as usize);
    let (kh, kw) = (g.k_h as usize, g.k_w as usize);
    let (sh, sw, dh, dw) = (g.stride[0] as usize, g.stride[1] as usize, g.dilation[0] as usize, g.dilation[1] as usize);
    let (pt, pl) = (g.pad[0] as usize, g.pad[1] as usize);
    let k1 = (k0 + kc).min(k);
    let off2 = (off as u16 as u32) * 0x0001_0001;
    for r in 0..2 {
        if r >= nr {
            put_run(a, r, 0, kc, None, off)?;
            continue;
        }
        let pix = p0 + r;
        let (b, rem) = (pix / (oh * ow), pix % (oh * ow));
        let (y0, x0) = ((rem / ow) * sh, (rem % ow) * sw);
        // Taps overlapping [k0, k1), each a run of `ic` channels.
        let mut t = k0 / ic;
        let (mut ky, mut kx) = (t / kw, t % kw);
        while ky < kh && t * ic < k1 {
            let (s, e) = ((t * ic).max(k0), ((t + 1) * ic).min(k1));
            let iy = (y0 + ky * dh).checked_sub(pt).filter(|&v| v < ih);
            let ix = (x0 + kx * dw).checked_sub(pl).filter(|&v| v < iw);
            let src = match (iy, ix) {
                (Some(iy), Some(ix)) => {
                    let at = ((b * ih + iy) * iw + ix) * ic + (s - t * ic);
                    Some(x.get(at..at + (e - s)).ok_or(E)?)
                }
                _ => None,
            };
            if (s - k0) & 3 == 0 && (e - s) & 3 == 0 {
                put_quads(a, r, s - k0, e - s, src, off2)?;
            } else {
                put_run(a, r, s - k0, e - s, src, off)?;
            }
            t += 1;
            kx += 1;
            if kx == kw {
                kx = 0;
                ky += 1;
            }
        }
        // Elements past the reduction (up to the multiple of 4).
        put_run(a, r, k1 - k0, k0 + kc - k1, None, off)?;
    }
    Ok(())
}

/// [`gather`] for a whole reduction in one chunk (`k0 = 0`, `kq = k` rounded up to 4 <= KC): taps
/// walked in order without divisions.
#[allow(clippy::too_many_arguments)]
fn gather_whole(
    g: &GemmGeom,
    k: usize,
    kq: usize,
    p0: usize,
    nr: usize,
    x: &[u8],
    off: i16,
    a: &mut [u32; KC],
) -> KResult<()> {
    const E: &str = "conv input shorter than its shape";
    let (ih, iw, ic) = (g.in_h as isize, g.in_w as isize, g.in_c as usize);
    let (oh, ow) = (g.out_h as usize, g.out_w as usize);
    let (kh, kw) = (g.k_h as usize, g.k_w as usize);
    let (sh, sw, dh, dw) = (g.stride[0] as isize, g.stride[1] as isize, g.dilation[0] as isize, g.dilation[1] as isize);
    let (pt, pl) = (g.pad[0] as isize, g.pad[1] as isize);
    let off2 = (off as u16 as u32) * 0x0001_0001;
    let quads = ic & 3 == 0;
    for r in 0..2 {
        if r >= nr {
            put_quads(a, r, 0, kq, None, off2)?;
            continue;
        }
        let pix = p0 + r;
        let (b, rem) = (pix / (oh * ow), pix % (oh * ow));
        let (y0, x0) = ((rem / ow) as isize * sh - pt, (rem % ow) as isize * sw - pl);
        let plane = b as isize * ih;
        let mut d = 0;
        for ky in 0..kh {
            let iy = y0 + ky as isize * dh;
            let row_in = (0..ih).contains(&iy);
            for kx in 0..kw {
                let ix = x0 + kx as isize * dw;
                let src = if row_in && (0..iw).contains(&ix) {
                    let at = (((plane + iy) * iw + ix) as usize) * ic;
                    Some(x.get(at..at + ic).ok_or(E)?)
                } else {
                    None
                };
                if quads {
                    put_quads(a, r, d, ic, src, off2)?;
                } else {
                    put_run(a, r, d, ic, src, off)?;
                }
                d += ic;
            }
        }
        put_run(a, r, k, kq - k, None, off)?;
    }
    Ok(())
}

/// `multiply_by_quantized_multiplier(x, m, shift)` with `(left, right) = split_shift(shift)`, bit for
/// bit: SRDHM's `(ab + nudge) / 2^31` truncated toward zero, with the nudge `2^30` for `ab >= 0` and
/// `1 - 2^30` below, equals `floor((ab + 2^30) / 2^31)` in both cases (for negative `n`,
/// `trunc(n / d) = floor((n + d - 1) / d)`), an arithmetic shift: `SMULL`, add, shift. The one
/// saturating case (`i32::MIN * i32::MIN`) is kept. Checked against the reference by the firmware test.
#[inline(always)]
pub fn requantize(x: i32, m: i32, left: i32, right: i32) -> i32 {
    let x = x.wrapping_shl(left as u32);
    let hi = if x == i32::MIN && m == i32::MIN { i32::MAX } else { ((x as i64 * m as i64 + (1 << 30)) >> 31) as i32 };
    // `rounding_divide_by_pot(hi, right)` for `right` in 0..=31 (what `split_shift` gives), in 32-bit
    // operations: `(hi >> right) + (remainder > mask / 2 + (hi < 0))`.
    let right = right as u32 & 31;
    let mask = (1u32 << right).wrapping_sub(1) as i32;
    let threshold = (mask >> 1) + (hi < 0) as i32;
    (hi >> right) + ((hi & mask) > threshold) as i32
}

/// Dense int8 convolution (groups 1; weights OHWI `[oc, kh, kw, ic]`, read in place) or, with a 1x1
/// geometry, fully connected: byte-identical to `kernels::int8::conv::conv(.., groups 1, ..)` with
/// `in_zp = -in_offset` (`|in_offset| <= 256`) for any shapes, strides, paddings and dilations.
pub fn conv(
    g: &GemmGeom,
    in_offset: i32,
    x: &[u8],
    w: &[u8],
    bias: Option<&[u8]>,
    stage: &OutStage<'_>,
    out: &mut [u8],
) -> KResult<()> {
    let off = i16::try_from(in_offset)
        .ok()
        .filter(|o| (-256..=256).contains(o))
        .ok_or("input offset out of the i16 range")?;
    let pixels = (g.batch as usize)
        .checked_mul(g.out_h as usize)
        .and_then(|v| v.checked_mul(g.out_w as usize))
        .ok_or("shape overflows")?;
    let (oc, ic) = (g.out_c as usize, g.in_c as usize);
    let k = (g.k_h as usize).checked_mul(g.k_w as usize).and_then(|v| v.checked_mul(ic)).ok_or("shape overflows")?;
    if pixels == 0 || oc == 0 {
        return Ok(());
    }
    if k == 0 {
        return Err("empty reduction");
    }
    let kq = k.div_ceil(4) * 4;
    let mut a = Block([0; KC]);
    let (out_zp, lo, hi) = (stage.out_zp, stage.act_min, stage.act_max);
    // Channel groups of up to CG: their requantization parameters are read once per group, and their
    // sums for one pixel pair stay on the stack across the reduction's chunks.
    let mut params = [[0i32; 4]; CG];
    let mut g0 = 0;
    while g0 < oc {
        let gn = CG.min(oc - g0);
        let pairs = gn.div_ceil(2);
        for (j, p) in params.iter_mut().enumerate().take(gn) {
            let c = g0 + j;
            let b = match bias {
                Some(b) => get_i32(b, c)?,
                None => 0,
            };
            let (m, s) = stage.multiplier(c)?;
            let (left, right) = split_shift(s);
            *p = [b, m, left, right];
        }
        let mut p0 = 0;
        while p0 < pixels {
            let nr = 2.min(pixels - p0);
            let mut accs = [[0i32; 4]; CG / 2];
            let mut k0 = 0;
            while k0 < kq {
                let kc = KC.min(kq - k0);
                if kq <= KC {
                    gather_whole(g, k, kq, p0, nr, x, off, &mut a.0)?;
                } else {
                    gather(g, k, p0, nr, k0, kc, x, off, &mut a.0)?;
                }
                for (j, acc) in accs.iter_mut().enumerate().take(pairs) {
                    let c0 = g0 + 2 * j;
                    mac(&a.0, w, k, k0, kc, c0, (c0 + 1).min(oc - 1), acc)?;
                }
                k0 += kc;
            }
            let rows = out.get_mut(p0 * oc..(p0 + nr) * oc).ok_or("conv output shorter than its shape")?;
            for r in 0..nr {
                let row = rows.get_mut(r * oc + g0..r * oc + g0 + gn).ok_or("conv output shorter than its shape")?;
                for (j, (o, p)) in row.iter_mut().zip(params.iter()).enumerate() {
                    let [b, m, left, right] = *p;
                    let acc = accs[j >> 1][(j & 1) * 2 + r];
                    let v = requantize(acc.wrapping_add(b), m, left, right).wrapping_add(out_zp);
                    *o = v.clamp(lo, hi) as i8 as u8;
                }
            }
            p0 += nr;
        }
        g0 += gn;
    }
    Ok(())
}
