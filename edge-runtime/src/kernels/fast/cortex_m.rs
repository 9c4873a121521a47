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
//! Requantization is the reference's (`multiply_by_quantized_multiplier`, per-channel or per-tensor).
#![allow(unsafe_code)]

use super::gemm::{self, GemmGeom};
use crate::kernels::int8::fixedpoint::multiply_by_quantized_multiplier;
use crate::kernels::int8::{get_i32, KResult, Mults, OutStage};
use rsim_model::{Model, Multiplier, Op};

/// Reduction elements per pixel gathered at once (a multiple of 4): a `2 * KC` i16 block, 1.5 KiB.
pub const KC: usize = 384;
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
        _ => return None,
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

/// `SXTAB16`: `(off.lo + sext(w[7:0]), off.hi + sext(w[23:16]))`, and the same of `w` rotated by 8
/// (bytes 1 and 3): 4 int8 inputs to the i16 pairs `(x0 + o, x2 + o), (x1 + o, x3 + o)`.
#[inline(always)]
fn widen4(w: u32, off2: u32) -> (u32, u32) {
    let (lo, hi): (u32, u32);
    // SAFETY: register-only DSP instructions (Armv7E-M), no memory access, no flags.
    unsafe {
        core::arch::asm!(
            "sxtab16 {lo}, {off}, {w}",
            "sxtab16 {hi}, {off}, {w}, ror #8",
            lo = out(reg) lo,
            hi = out(reg) hi,
            off = in(reg) off2,
            w = in(reg) w,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    (lo, hi)
}

/// The i16 im2col block of 2 pixels x [`KC`] elements, word-aligned for `LDM`.
#[repr(C, align(8))]
struct Block([i16; 2 * KC]);

/// Index in the block of reduction element `kk` (relative to the chunk) of pixel `r`.
#[inline(always)]
fn slot(kk: usize, r: usize) -> usize {
    const PERM: [usize; 4] = [0, 2, 1, 3];
    ((kk >> 2) * 2 + r) * 4 + PERM[kk & 3]
}

/// Writes `src[i] as i8 + off` to reduction elements `d + i` of pixel `r`.
#[inline(always)]
fn put_run(a: &mut [i16; 2 * KC], r: usize, mut d: usize, src: &[u8], off: i16) -> KResult<()> {
    const E: &str = "im2col block short";
    let mut s = src;
    while d & 3 != 0 {
        let Some((&v, rest)) = s.split_first() else { return Ok(()) };
        *a.get_mut(slot(d, r)).ok_or(E)? = v as i8 as i16 + off;
        s = rest;
        d += 1;
    }
    let off2 = (off as u16 as u32) * 0x0001_0001;
    let mut quads = s.chunks_exact(4);
    for q in &mut quads {
        let (lo, hi) = widen4(u32::from_le_bytes([q[0], q[1], q[2], q[3]]), off2);
        let at = ((d >> 2) * 2 + r) * 4;
        let dst = a.get_mut(at..at + 4).ok_or(E)?;
        dst[0] = lo as i16;
        dst[1] = (lo >> 16) as i16;
        dst[2] = hi as i16;
        dst[3] = (hi >> 16) as i16;
        d += 4;
    }
    for &v in quads.remainder() {
        *a.get_mut(slot(d, r)).ok_or(E)? = v as i8 as i16 + off;
        d += 1;
    }
    Ok(())
}

/// Gathers elements `k0 .. k0 + kc` (`kc` a multiple of 4) of pixels `p0`, `p0 + 1` (the second
/// only when `nr == 2`) into the block; padding taps, elements past `k` and absent pixels are 0.
#[allow(clippy::too_many_arguments)]
fn gather(g: &GemmGeom, k: usize, p0: usize, nr: usize, k0: usize, kc: usize, x: &[u8], off: i16, a: &mut [i16; 2 * KC]) -> KResult<()> {
    const E: &str = "conv input shorter than its shape";
    let (ih, iw, ic) = (g.in_h as usize, g.in_w as usize, g.in_c as usize);
    let (oh, ow) = (g.out_h as usize, g.out_w as usize);
    let (kh, kw) = (g.k_h as usize, g.k_w as usize);
    let (sh, sw, dh, dw) = (g.stride[0] as usize, g.stride[1] as usize, g.dilation[0] as usize, g.dilation[1] as usize);
    let (pt, pl) = (g.pad[0] as usize, g.pad[1] as usize);
    a.get_mut(..2 * kc).ok_or(E)?.fill(0);
    let k1 = (k0 + kc).min(k);
    for r in 0..nr {
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
            if let (Some(iy), Some(ix)) = (iy, ix) {
                let at = ((b * ih + iy) * iw + ix) * ic + (s - t * ic);
                put_run(a, r, s - k0, x.get(at..at + (e - s)).ok_or(E)?, off)?;
            }
            t += 1;
            kx += 1;
            if kx == kw {
                kx = 0;
                ky += 1;
            }
        }
    }
    Ok(())
}

/// The micro-kernel: `acc = [c0 p0, c0 p1, c1 p0, c1 p1]` += the dot products of `groups` groups of 4
/// block elements at `a` (2 pixels, see the module doc) with 4 weight bytes at `w` (channel c0) and at
/// `w + stride` (channel c1) per group. Wrapping i32 accumulation (`SMLAD`).
///
/// # Safety
/// `a` is 4-byte aligned with `groups * 16` readable i16; `w` has `groups * 4` readable bytes and so
/// does `w + stride`; `acc` is 4 writable i32; `groups >= 1`.
#[unsafe(naked)]
unsafe extern "C" fn mac_2x2(a: *const i16, w: *const u8, stride: usize, groups: usize, acc: *mut i32) {
    // r0 a, r1 w (c0), r2 stride to c1, r3 group count, r4-r7 accumulators, r8-r11 the block words
    // (p0 (k0,k2) (k1,k3), p1 (k0,k2) (k1,k3)), r12/lr weight words. r4-r11 and lr are saved (r6, r7
    // included: a naked function may use them), and acc's pointer (5th argument) is kept on the stack.
    core::arch::naked_asm!(
        "push {{r4-r11, lr}}",
        "ldr r12, [sp, #36]",
        "push {{r12}}",
        "ldm r12, {{r4-r7}}",
        "2:",
        "ldm r0!, {{r8-r11}}",
        "ldr lr, [r1, r2]",
        "sxtb16 r12, lr",
        "sxtb16 lr, lr, ror #8",
        "smlad r6, r8, r12, r6",
        "smlad r6, r9, lr, r6",
        "smlad r7, r10, r12, r7",
        "smlad r7, r11, lr, r7",
        "ldr lr, [r1], #4",
        "sxtb16 r12, lr",
        "sxtb16 lr, lr, ror #8",
        "smlad r4, r8, r12, r4",
        "smlad r4, r9, lr, r4",
        "smlad r5, r10, r12, r5",
        "smlad r5, r11, lr, r5",
        "subs r3, r3, #1",
        "bne 2b",
        "pop {{r12}}",
        "stm r12, {{r4-r7}}",
        "pop {{r4-r11, pc}}",
    )
}

/// `acc` (as [`mac_2x2`]) += elements `0 .. kc` of the block with weights `w[c0 * k + k0 ..]` and
/// `w[c1 * k + k0 ..]`. The assembly reads whole groups of 4 weight bytes; a group that would read past
/// the weights (the last channel's tail when `k % 4 != 0`) is done in plain Rust. Bytes read past a
/// channel's row otherwise meet zeros in the block.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn mac(a: &Block, w: &[u8], k: usize, k0: usize, kc: usize, c0: usize, c1: usize, acc: &mut [i32; 4]) -> KResult<()> {
    const E: &str = "conv weights shorter than their shape";
    let (s0, s1) = (c0 * k + k0, c1 * k + k0);
    let valid = kc.min(k - k0);
    let room = w.len().checked_sub(s0.max(s1)).ok_or(E)?;
    let groups = if room >= valid.div_ceil(4) * 4 { valid.div_ceil(4) } else { room.min(valid) / 4 };
    if groups > 0 {
        // SAFETY: `groups * 4 <= kc <= KC` elements per pixel: `groups * 16` i16 of the aligned block;
        // `s0 + groups * 4` and `s1 + groups * 4` are at most `w.len()` (checked above).
        unsafe { mac_2x2(a.0.as_ptr(), w.as_ptr().add(s0), s1 - s0, groups, acc.as_mut_ptr()) };
    }
    for kk in groups * 4..valid {
        let (x0, x1) = (a.0[slot(kk, 0)] as i32, a.0[slot(kk, 1)] as i32);
        let (w0, w1) = (*w.get(s0 + kk).ok_or(E)? as i8 as i32, *w.get(s1 + kk).ok_or(E)? as i8 as i32);
        acc[0] = acc[0].wrapping_add(x0 * w0);
        acc[1] = acc[1].wrapping_add(x1 * w0);
        acc[2] = acc[2].wrapping_add(x0 * w1);
        acc[3] = acc[3].wrapping_add(x1 * w1);
    }
    Ok(())
}

/// Writes the outputs of channels `c0` and `c1` (`c1 == c0` for a lone last channel: written once)
/// for the `nr` pixels of the block at output pixel `p0`: bias, the reference's requantization
/// (`multiply_by_quantized_multiplier`), zero point and clamp.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn store(acc: &[i32; 4], c0: usize, c1: usize, p0: usize, nr: usize, oc: usize, bias: Option<&[u8]>, stage: &OutStage<'_>, out: &mut [u8]) -> KResult<()> {
    const E: &str = "conv output shorter than its shape";
    let chans = if c1 != c0 { 2 } else { 1 };
    for (j, c) in [c0, c1].into_iter().enumerate().take(chans) {
        let b = match bias {
            Some(b) => get_i32(b, c)?,
            None => 0,
        };
        let (m, s) = stage.multiplier(c)?;
        for r in 0..nr {
            let v = multiply_by_quantized_multiplier(acc[2 * j + r].wrapping_add(b), m, s).wrapping_add(stage.out_zp);
            *out.get_mut((p0 + r) * oc + c).ok_or(E)? = v.clamp(stage.act_min, stage.act_max) as i8 as u8;
        }
    }
    Ok(())
}

/// Dense int8 convolution (groups 1; weights OHWI `[oc, kh, kw, ic]`, read in place) or, with a 1x1
/// geometry, fully connected: byte-identical to `kernels::int8::conv::conv(.., groups 1, ..)` with
/// `in_zp = -in_offset` (`|in_offset| <= 256`) for any shapes, strides, paddings and dilations.
pub fn conv(g: &GemmGeom, in_offset: i32, x: &[u8], w: &[u8], bias: Option<&[u8]>, stage: &OutStage<'_>, out: &mut [u8]) -> KResult<()> {
    let off = i16::try_from(in_offset).ok().filter(|o| (-256..=256).contains(o)).ok_or("input offset out of the i16 range")?;
    let pixels = (g.batch as usize).checked_mul(g.out_h as usize).and_then(|v| v.checked_mul(g.out_w as usize)).ok_or("shape overflows")?;
    let (oc, ic) = (g.out_c as usize, g.in_c as usize);
    let k = (g.k_h as usize).checked_mul(g.k_w as usize).and_then(|v| v.checked_mul(ic)).ok_or("shape overflows")?;
    if pixels == 0 || oc == 0 {
        return Ok(());
    }
    if k == 0 {
        return Err("empty reduction");
    }
    let kq = k.div_ceil(4) * 4;
    let mut a = Block([0; 2 * KC]);
    let mut p0 = 0;
    while p0 < pixels {
        let nr = 2.min(pixels - p0);
        if kq <= KC {
            // One chunk: gather once, then every channel pair straight to its outputs.
            gather(g, k, p0, nr, 0, kq, x, off, &mut a.0)?;
            let mut c0 = 0;
            while c0 < oc {
                let c1 = (c0 + 1).min(oc - 1);
                let mut acc = [0i32; 4];
                mac(&a, w, k, 0, kq, c0, c1, &mut acc)?;
                store(&acc, c0, c1, p0, nr, oc, bias, stage, out)?;
                c0 += 2;
            }
        } else {
            // Long reduction: up to CG channels' partial sums on the stack, chunk by chunk.
            let mut g0 = 0;
            while g0 < oc {
                let gn = CG.min(oc - g0);
                let mut accs = [[0i32; 4]; CG / 2];
                let mut k0 = 0;
                while k0 < kq {
                    let kc = KC.min(kq - k0);
                    gather(g, k, p0, nr, k0, kc, x, off, &mut a.0)?;
                    for (j, acc) in accs.iter_mut().enumerate().take(gn.div_ceil(2)) {
                        let c0 = g0 + 2 * j;
                        mac(&a, w, k, k0, kc, c0, (c0 + 1).min(oc - 1), acc)?;
                    }
                    k0 += kc;
                }
                for (j, acc) in accs.iter().enumerate().take(gn.div_ceil(2)) {
                    let c0 = g0 + 2 * j;
                    store(acc, c0, (c0 + 1).min(oc - 1), p0, nr, oc, bias, stage, out)?;
                }
                g0 += gn;
            }
        }
        p0 += nr;
    }
    Ok(())
}
