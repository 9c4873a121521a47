//! Packed int8 GEMM for dense convolution (groups 1) and fully connected layers.
//!
//! `out[p, c] = requant(sum_k a[p, k] * w[c, k] + bias[c])` where row `p` is one output pixel's
//! receptive field (im2col, `k = (ky * kw + kx) * ic + ci`, as the OHWI weights) widened to i16 with the
//! input offset applied, and taps in the padding are 0 (TFLM skips them: the same sum). Every
//! `x + offset` fits i16 and every pair of products fits i32, so i16 pair dot products (`vpmaddwd`,
//! `smlal`) with wrapping i32 sums give the reference's bits exactly.
//!
//! Weights are packed once into blocks of 8 output channels: for each pair of `k`, 16 bytes
//! `[c0 k0, c0 k1, c1 k0, c1 k1, ..., c7 k1]`, so one broadcast of a row's pair meets 8 channels.
//!
//! The aarch64 dot-product kernel ([`Isa::NeonDot`], `sdot`) takes the same bytes in another order and
//! other rows: for each 4 `k`, 32 bytes `[c0 k0..k3, c1 k0..k3, ..., c7 k0..k3]` (a last odd pair of
//! `k` keeps the pair layout), so the packed size is the same for either kernel; rows hold the raw
//! int8 input (padding taps hold the input zero point, so `x + offset` is 0 there as well), and
//! `offset * sum_k w[c, k]` is added to the prepared bias of channel `c` instead:
//! `sum_k (x_k + offset) w_k = sum_k x_k w_k + offset * sum_k w_k`, equal in wrapping i32 too.

use super::{im2col, ChannelData, Channels, Isa, Span};
use crate::kernels::int8::{KResult, OutStage};
use rsim_model::{ConvGeometry, ConvKind, DType, Model, Op, Quant};

/// Scalar requantization of `n` lanes from the prepared channel arrays.
pub use rsim_edge_simd::requant::requant_scalar;
/// Convolution geometry in the fast kernels' terms (u32 so the record is the same on every target).
pub use rsim_edge_simd::GemmGeom;
/// Output pixels per micro-kernel call (rows of the im2col block).
pub use rsim_edge_simd::MR;
/// Largest `k` chunk gathered at once: an `MR * KC` i16 block on the stack (36 KiB). 4608 = 3 x 3 x 512,
/// the longest reduction of ResNet-18/50 and MobileNets, so their layers gather each pixel once;
/// longer reductions are re-gathered per output-channel block.
pub const KC: usize = 4608;

/// A planned GEMM op: geometry, reduction length, input offset, packed weights and channel data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmPlan {
    pub geom: GemmGeom,
    /// Reduction length `kh * kw * ic` and its even round-up (the packed pair count is `kp / 2`).
    pub k: u32,
    pub kp: u32,
    pub in_offset: i32,
    pub packed: Span,
    pub ch: Channels,
}

fn u32_of(v: usize) -> Option<u32> {
    u32::try_from(v).ok()
}

/// Plans a dense conv (groups 1, consistent output size) or an FC with symmetric weights; `None`
/// leaves the op to the reference kernel.
pub fn plan(op: &Op, model: &Model<'_>, at: &mut u32) -> Option<GemmPlan> {
    let (geom, input, wt, output, requant) = match op {
        Op::Conv2d { input, weights: wt, bias, output, params, requant } => {
            let g = ConvGeometry::new(input, wt, bias.as_ref(), output, params).ok()?;
            if g.kind != ConvKind::Dense {
                return None;
            }
            let g = GemmGeom {
                batch: u32_of(g.batch)?,
                in_h: u32_of(g.in_h)?,
                in_w: u32_of(g.in_w)?,
                in_c: u32_of(g.in_c)?,
                out_h: u32_of(g.out_h)?,
                out_w: u32_of(g.out_w)?,
                out_c: u32_of(g.out_c)?,
                k_h: u32_of(g.k_h)?,
                k_w: u32_of(g.k_w)?,
                stride: [u32_of(g.stride[0])?, u32_of(g.stride[1])?],
                dilation: [u32_of(g.dilation[0])?, u32_of(g.dilation[1])?],
                pad: [u32_of(g.pad_top)?, u32_of(g.pad_left)?],
            };
            (g, input, wt, output, requant)
        }
        Op::FullyConnected { input, weights: wt, output, requant, .. } => {
            let wd = wt.shape.dims();
            if wd.len() != 2 || !matches!(wt.quant, Quant::PerTensor { zero_point: 0, .. } | Quant::PerChannel { .. }) {
                return None;
            }
            let (units, depth) = (wd[0] as usize, wd[1] as usize);
            if units == 0 || depth == 0 {
                return None;
            }
            let out_len = output.shape.checked_len()?;
            let batches = out_len / units;
            if batches == 0 || batches * units != out_len || input.shape.checked_len()? != batches * depth {
                return None;
            }
            let g = GemmGeom {
                batch: u32_of(batches)?,
                in_h: 1,
                in_w: 1,
                in_c: u32_of(depth)?,
                out_h: 1,
                out_w: 1,
                out_c: u32_of(units)?,
                k_h: 1,
                k_w: 1,
                stride: [1, 1],
                dilation: [1, 1],
                pad: [0, 0],
            };
            (g, input, wt, output, requant)
        }
        _ => return None,
    };
    if input.dtype != DType::I8 || output.dtype != DType::I8 || wt.dtype != DType::I8 {
        return None;
    }
    let in_zp = super::per_tensor_zp(input)?;
    let stage = super::out_stage(requant, output, model.weights)?;
    let k = (geom.k_h as usize).checked_mul(geom.k_w as usize)?.checked_mul(geom.in_c as usize)?;
    let kp = k.checked_add(k & 1)?;
    let blocks = (geom.out_c as usize).div_ceil(8);
    let packed_len = u32_of(blocks.checked_mul(kp)?.checked_mul(8)?)?;
    let packed = Span { start: *at, len: packed_len };
    *at = at.checked_add(packed_len)?.checked_next_multiple_of(16)?;
    let ch = Channels::plan(geom.out_c as usize, &stage, at).ok()?;
    Some(GemmPlan { geom, k: u32_of(k)?, kp: u32_of(kp)?, in_offset: in_zp.wrapping_neg(), packed, ch })
}

fn op_parts<'w>(op: &Op, model: &Model<'w>) -> KResult<(&'w [u8], Option<&'w [u8]>, OutStage<'w>)> {
    let (wt, bias, output, requant) = match op {
        Op::Conv2d { weights, bias, output, requant, .. }
        | Op::FullyConnected { weights, bias, output, requant, .. } => (weights, bias, output, requant),
        _ => return Err("not a conv or fully connected op"),
    };
    let w = model.const_bytes(wt).ok_or("weights lie outside the weights blob")?;
    let b = match bias {
        Some(b) => Some(model.const_bytes(b).ok_or("bias lies outside the weights blob")?),
        None => None,
    };
    let stage = super::out_stage(requant, output, model.weights).ok_or("requantization parameters")?;
    Ok((w, b, stage))
}

/// Packs the weights into 8-channel blocks (the pair layout, or the dot-product kernel's quad layout
/// when `isa` takes it: [`Isa::gemm_dot`]) and writes the channel arrays.
pub fn pack(p: &GemmPlan, op: &Op, model: &Model<'_>, persistent: &mut [u8], isa: Isa) -> KResult<()> {
    let (w, bias, stage) = op_parts(op, model)?;
    let (k, kp, oc) = (p.k as usize, p.kp as usize, p.geom.out_c as usize);
    if w.len() < k * oc {
        return Err("weights shorter than their shape");
    }
    let at = |c: usize, kk: usize| if c < oc && kk < k { w[c * k + kk] } else { 0 };
    let dst = p.packed.get_mut(persistent)?;
    let dot = isa.gemm_dot();
    // k below `quads` goes in 4-k groups (dot layout only), the rest in pairs.
    let quads = if dot { kp / 4 * 4 } else { 0 };
    for (b, block) in dst.chunks_exact_mut(kp * 8).enumerate() {
        let (quad_part, pair_part) = block.split_at_mut(quads * 8);
        for (j, quad) in quad_part.chunks_exact_mut(32).enumerate() {
            for (i, v) in quad.iter_mut().enumerate() {
                *v = at(b * 8 + i / 4, 4 * j + i % 4);
            }
        }
        for (j, pair) in pair_part.chunks_exact_mut(16).enumerate() {
            for (i, v) in pair.iter_mut().enumerate() {
                *v = at(b * 8 + i / 2, quads + 2 * j + i % 2);
            }
        }
    }
    if !dot {
        return p.ch.fill(bias, &stage, persistent, |_| 0);
    }
    // The dot kernel sums raw inputs: the input offset's share, `offset * sum_k w[c, k]`, joins the bias.
    let off = p.in_offset;
    p.ch.fill(bias, &stage, persistent, |c| {
        let row = w.get(c * k..(c + 1) * k).unwrap_or_default();
        off.wrapping_mul(row.iter().fold(0i32, |s, &v| s.wrapping_add(v as i8 as i32)))
    })
}

/// The instruction-set-specific inner loops of the GEMM, called on a value of the implementing type
/// (for the SIMD ones, the rsim-edge-simd token that proves the instruction set is there).
pub trait Micro: Copy {
    /// Element of the gathered rows: `x + offset` as i16 (the pair kernels) or the raw int8 byte (the
    /// dot-product kernel, whose offset is in the bias).
    type A: Copy + Default;
    /// `acc[r][l] (+)= sum_k a[r * lda + k] * w(l, k)` for rows `r < MR`, lanes `l < 8 * nb` (block `b`
    /// of `w` at `b * bstride`), `k < kc` (`w` in this kernel's packed layout: module docs); `first`
    /// overwrites the lanes instead of adding (the first chunk of a reduction: no zeroing pass).
    #[allow(clippy::too_many_arguments)]
    fn micro(
        self,
        a: &[Self::A],
        lda: usize,
        kc: usize,
        w: &[u8],
        bstride: usize,
        nb: usize,
        first: bool,
        acc: &mut [[i32; 16]; MR],
    ) -> KResult<()>;
    /// Requantizes `n <= 16` lanes of `acc` for channels `c0..c0 + n` into `out[..n]`.
    fn requant(self, acc: &[i32; 16], ch: &ChannelData<'_>, c0: usize, n: usize, out: &mut [u8]) -> KResult<()>;
    /// `dst[i]` = input byte `src[i]` as a row element (`src[i] as i8 + off` for i16 rows) for
    /// `i < dst.len()` (`src` at least as long).
    fn widen(self, src: &[u8], off: i16, dst: &mut [Self::A]);
    /// The row element of a tap in the padding, whose `x + offset` is 0.
    fn pad(self, off: i32) -> Self::A;
    /// The whole reduction of rows `p0 .. p0 + nr` into `a` at stride `kp` (see [`im2col::gather`]).
    #[inline(always)]
    fn gather_whole(self, p: &GemmPlan, p0: usize, nr: usize, x: &[u8], a: &mut [Self::A]) -> KResult<()> {
        gather_whole_generic(self, p, p0, nr, x, a)
    }
}

/// [`Micro::gather_whole`] through the generic im2col walk and [`Micro::widen`].
#[inline(always)]
pub fn gather_whole_generic<M: Micro>(
    m: M,
    p: &GemmPlan,
    p0: usize,
    nr: usize,
    x: &[u8],
    a: &mut [M::A],
) -> KResult<()> {
    let off = p.in_offset as i16;
    let mut widen = |at: usize, dst: &mut [M::A]| -> KResult<()> {
        m.widen(x.get(at..at + dst.len()).ok_or("gemm input short")?, off, dst);
        Ok(())
    };
    let kp = p.kp as usize;
    im2col::gather(&p.geom, p.k as usize, kp, MR, p0, nr, 0, kp, m.pad(p.in_offset), a, &mut widen)
}

/// Plain-Rust [`Micro::widen`].
#[inline]
pub fn widen_scalar(src: &[u8], off: i16, dst: &mut [i16]) {
    for (d, &v) in dst.iter_mut().zip(src) {
        *d = v as i8 as i16 + off;
    }
}

/// Plain Rust inner loops (any target).
#[derive(Clone, Copy)]
pub struct Portable;

impl Micro for Portable {
    type A = i16;

    fn micro(
        self,
        a: &[i16],
        lda: usize,
        kc: usize,
        w: &[u8],
        bstride: usize,
        nb: usize,
        first: bool,
        acc: &mut [[i32; 16]; MR],
    ) -> KResult<()> {
        const E: &str = "gemm operands shorter than planned";
        for b in 0..nb {
            let wb = w.get(b * bstride..b * bstride + kc * 8).ok_or(E)?;
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let ar = a.get(r * lda..r * lda + kc).ok_or(E)?;
                let mut lanes = [0i32; 8];
                for (ap, wp) in ar.chunks_exact(2).zip(wb.chunks_exact(16)) {
                    let (a0, a1) = (ap[0] as i32, ap[1] as i32);
                    for (l, lane) in lanes.iter_mut().enumerate() {
                        let (w0, w1) = (wp[2 * l] as i8 as i32, wp[2 * l + 1] as i8 as i32);
                        *lane = lane.wrapping_add(a0 * w0 + a1 * w1);
                    }
                }
                for (d, v) in acc_r[b * 8..b * 8 + 8].iter_mut().zip(lanes) {
                    *d = if first { v } else { d.wrapping_add(v) };
                }
            }
        }
        Ok(())
    }

    fn requant(self, acc: &[i32; 16], ch: &ChannelData<'_>, c0: usize, n: usize, out: &mut [u8]) -> KResult<()> {
        requant_scalar(acc, ch, c0, n, out)
    }

    fn widen(self, src: &[u8], off: i16, dst: &mut [i16]) {
        widen_scalar(src, off, dst)
    }

    fn pad(self, _off: i32) -> i16 {
        0
    }
}

/// Runs the GEMM over all output pixels, on `threads` threads when the std feature allows.
pub fn run(p: &GemmPlan, isa: Isa, threads: usize, x: &[u8], persistent: &[u8], out: &mut [u8]) -> KResult<()> {
    let g = &p.geom;
    let pixels = g.pixels();
    let oc = g.out_c as usize;
    if x.len() < g.input_len() || out.len() < pixels * oc {
        return Err("gemm tensors shorter than their shapes");
    }
    let packed = p.packed.get(persistent)?;
    let ch = p.ch.view(persistent)?;
    let out = &mut out[..pixels * oc];
    let macs = pixels * p.k as usize * oc;
    let t = im2col::threads_for(macs, threads, pixels.div_ceil(MR));
    im2col::split_pixels(pixels, oc, MR, t, out, &|first, rows_out: &mut [u8]| {
        rows(p, isa, first, x, packed, &ch, rows_out)
    })
}

/// Output pixels `first .. first + out.len() / oc` (whole rows of `out`).
fn rows(
    p: &GemmPlan,
    isa: Isa,
    first: usize,
    x: &[u8],
    packed: &[u8],
    ch: &ChannelData<'_>,
    out: &mut [u8],
) -> KResult<()> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(t) => super::x86::rows(t, p, first, x, packed, ch, out),
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        Isa::Neon(t) => rows_with(t, p, first, x, packed, ch, out),
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        Isa::NeonDot(t) => rows_with(t, p, first, x, packed, ch, out),
        _ => rows_with(Portable, p, first, x, packed, ch, out),
    }
}

/// The GEMM driver; inlined into each instruction set's entry so its inner calls inline too. The
/// gather block is sized to the reduction (zeroing 36 KiB for a 16-channel layer would cost more
/// than its MACs).
#[inline(always)]
pub(crate) fn rows_with<M: Micro>(
    m: M,
    p: &GemmPlan,
    first: usize,
    x: &[u8],
    packed: &[u8],
    ch: &ChannelData<'_>,
    out: &mut [u8],
) -> KResult<()> {
    match p.kp as usize {
        0..=256 => rows_block::<M, { MR * 256 }>(m, p, first, x, packed, ch, out),
        257..=1152 => rows_block::<M, { MR * 1152 }>(m, p, first, x, packed, ch, out),
        _ => rows_block::<M, { MR * KC }>(m, p, first, x, packed, ch, out),
    }
}

/// [`rows_with`] with a gather block of `LEN = MR * chunk` i16.
#[inline(always)]
fn rows_block<M: Micro, const LEN: usize>(
    m: M,
    p: &GemmPlan,
    first: usize,
    x: &[u8],
    packed: &[u8],
    ch: &ChannelData<'_>,
    out: &mut [u8],
) -> KResult<()> {
    let chunk = LEN / MR;
    let oc = p.geom.out_c as usize;
    let kp = p.kp as usize;
    let blocks = oc.div_ceil(8);
    let bstride = kp * 8;
    let count = out.len() / oc.max(1);
    let mut a = [M::A::default(); LEN];
    // Reused for every block: each lane the requantization reads is written by the block's first
    // micro-kernel call (`first`), so it is never zeroed again.
    let mut acc = [[0i32; 16]; MR];
    let pad = m.pad(p.in_offset);
    let mut done = 0;
    while done < count {
        let nr = MR.min(count - done);
        let p0 = first + done;
        let one_chunk = kp <= chunk;
        let off = p.in_offset as i16;
        let mut widen = |at: usize, dst: &mut [M::A]| -> KResult<()> {
            m.widen(x.get(at..at + dst.len()).ok_or("gemm input short")?, off, dst);
            Ok(())
        };
        if one_chunk {
            m.gather_whole(p, p0, nr, x, &mut a)?;
        }
        let mut b = 0;
        while b < blocks {
            let nb = 2.min(blocks - b);
            let mut k0 = 0;
            while k0 < kp {
                let kc = chunk.min(kp - k0);
                if !one_chunk {
                    im2col::gather(&p.geom, p.k as usize, kc, MR, p0, nr, k0, kc, pad, &mut a, &mut widen)?;
                }
                let w = packed.get(b * bstride + k0 * 8..).ok_or("packed weights short")?;
                m.micro(&a, kc, kc, w, bstride, nb, k0 == 0, &mut acc)?;
                k0 += kc;
            }
            let c0 = b * 8;
            let n = (oc - c0).min(8 * nb);
            for (r, acc_r) in acc.iter().enumerate().take(nr) {
                let at = (done + r) * oc + c0;
                m.requant(acc_r, ch, c0, n, out.get_mut(at..at + n).ok_or("gemm output short")?)?;
            }
            b += nb;
        }
        done += nr;
    }
    Ok(())
}
