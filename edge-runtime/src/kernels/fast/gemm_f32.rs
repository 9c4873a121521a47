//! Packed f32 GEMM for dense convolution (groups 1) and fully connected layers: im2col rows times
//! weights packed once as blocks of 8 output channels (`[k][8]` f32, f16 weights widened at packing),
//! bias and the fused activation applied per output. Sums run in another order than the reference
//! (and fused on FMA CPUs): results agree within f32 rounding, the documented tolerance
//! (`tests/fast_f32.rs`: 1e-5 of the sum of absolute products, plus 1e-6).

use super::gemm::GemmGeom;
use super::{im2col, Isa, Span};
use crate::kernels::float::act;
use crate::kernels::float::conv::conv_geom;
use crate::kernels::float::fc::fc_geom;
use crate::kernels::int8::KResult;
use rsim_model::{Activation, ConvKind, DType, Model, Op, Storage, Tensor};

/// Output pixels per micro-kernel call.
pub const MR: usize = 4;
/// Largest reduction chunk gathered at once (`MR * KC` f32 on the stack: 72 KiB): 3 x 3 x 512, as the
/// int8 GEMM, so common layers gather each pixel once.
pub const KC: usize = 4608;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmF32Plan {
    pub geom: GemmGeom,
    pub k: u32,
    pub packed: Span,
    pub bias: Span,
    pub activation: Activation,
}

fn is_act(t: &Tensor) -> bool {
    matches!(t.storage, Storage::Arena { .. }) && t.dtype == DType::F32
}

/// Plans a float dense conv or FC (geometry checked by the float path's own functions).
pub fn plan(op: &Op, at: &mut u32) -> Option<GemmF32Plan> {
    let (geom, bias, activation) = match op {
        Op::Conv2d { input, weights, bias, output, params, .. } => {
            if !is_act(input) || !is_act(output) || !super::is_float_const(weights) {
                return None;
            }
            let g = conv_geom(&input.shape, &weights.shape, &output.shape, params).ok()?;
            if g.kind != ConvKind::Dense {
                return None;
            }
            let u = |v: usize| u32::try_from(v).ok();
            let geom = GemmGeom {
                batch: u(g.batch)?,
                in_h: u(g.in_h)?,
                in_w: u(g.in_w)?,
                in_c: u(g.in_c)?,
                out_h: u(g.out_h)?,
                out_w: u(g.out_w)?,
                out_c: u(g.out_c)?,
                k_h: u(g.k_h)?,
                k_w: u(g.k_w)?,
                stride: [u(g.stride[0])?, u(g.stride[1])?],
                dilation: [u(g.dilation[0])?, u(g.dilation[1])?],
                pad: [u(g.pad_top)?, u(g.pad_left)?],
            };
            (geom, bias, params.activation)
        }
        Op::FullyConnected { input, weights, bias, output, activation, .. } => {
            if !is_act(input) || !is_act(output) || !super::is_float_const(weights) {
                return None;
            }
            let g = fc_geom(&input.shape, &weights.shape, &output.shape).ok()?;
            let u = |v: usize| u32::try_from(v).ok();
            let geom = GemmGeom {
                batch: u(g.batch)?,
                in_h: 1,
                in_w: 1,
                in_c: u(g.in_features)?,
                out_h: 1,
                out_w: 1,
                out_c: u(g.out_features)?,
                k_h: 1,
                k_w: 1,
                stride: [1, 1],
                dilation: [1, 1],
                pad: [0, 0],
            };
            (geom, bias, *activation)
        }
        _ => return None,
    };
    if bias.is_some_and(|b| !super::is_float_const(&b) || b.shape.checked_len() != Some(geom.out_c as usize)) {
        return None;
    }
    let k = (geom.k_h as usize).checked_mul(geom.k_w as usize)?.checked_mul(geom.in_c as usize)?;
    let blocks = (geom.out_c as usize).div_ceil(8);
    let packed_len = u32::try_from(blocks.checked_mul(k)?.checked_mul(32)?).ok()?;
    let packed = Span { start: *at, len: packed_len };
    *at = at.checked_add(packed_len)?.checked_next_multiple_of(16)?;
    let bias_len = u32::try_from(blocks * 32).ok()?;
    let bias = Span { start: *at, len: bias_len };
    *at = at.checked_add(bias_len)?.checked_next_multiple_of(16)?;
    Some(GemmF32Plan { geom, k: u32::try_from(k).ok()?, packed, bias, activation })
}

pub fn pack(p: &GemmF32Plan, op: &Op, model: &Model<'_>, persistent: &mut [u8]) -> KResult<()> {
    let (wt, bias) = match op {
        Op::Conv2d { weights, bias, .. } | Op::FullyConnected { weights, bias, .. } => (weights, bias),
        _ => return Err("not a conv or fully connected op"),
    };
    const E: &str = "constant shorter than its shape";
    let w = super::float_const(wt, model)?;
    let (k, oc) = (p.k as usize, p.geom.out_c as usize);
    let dst = p.packed.get_mut(persistent)?;
    for (i, d) in dst.chunks_exact_mut(4).enumerate() {
        let (b, rest) = (i / (k * 8), i % (k * 8));
        let (kk, lane) = (rest / 8, rest % 8);
        let c = b * 8 + lane;
        let v = if c < oc { w.get(c * k + kk).ok_or(E)? } else { 0.0 };
        d.copy_from_slice(&v.to_le_bytes());
    }
    let dst = p.bias.get_mut(persistent)?;
    let b = match bias {
        Some(t) => Some(super::float_const(t, model)?),
        None => None,
    };
    for (c, d) in dst.chunks_exact_mut(4).enumerate() {
        let v = match b {
            Some(b) if c < oc => b.get(c).ok_or(E)?,
            _ => 0.0,
        };
        d.copy_from_slice(&v.to_le_bytes());
    }
    Ok(())
}

/// Instruction-set inner loop of the f32 GEMM.
pub trait MicroF32: Copy {
    /// `acc[r][l] += sum_j a[r * lda + j] * w[j * 8 + l]` (block `b` of `w` at `b * bstride`,
    /// lanes `l < 8 * nb`, `j < kc`).
    #[allow(clippy::too_many_arguments)]
    fn micro(
        self,
        a: &[f32],
        lda: usize,
        kc: usize,
        w: &[f32],
        bstride: usize,
        nb: usize,
        acc: &mut [[f32; 16]; MR],
    ) -> KResult<()>;
}

/// Plain Rust inner loop.
#[derive(Clone, Copy)]
pub struct PortableF32;

impl MicroF32 for PortableF32 {
    #[inline(always)]
    fn micro(
        self,
        a: &[f32],
        lda: usize,
        kc: usize,
        w: &[f32],
        bstride: usize,
        nb: usize,
        acc: &mut [[f32; 16]; MR],
    ) -> KResult<()> {
        const E: &str = "gemm operands shorter than planned";
        for b in 0..nb {
            let wb = w.get(b * bstride..b * bstride + kc * 8).ok_or(E)?;
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let ar = a.get(r * lda..r * lda + kc).ok_or(E)?;
                let mut lanes = [0f32; 8];
                for (&x, wk) in ar.iter().zip(wb.chunks_exact(8)) {
                    for (l, &wv) in lanes.iter_mut().zip(wk) {
                        *l += x * wv;
                    }
                }
                for (d, v) in acc_r[b * 8..b * 8 + 8].iter_mut().zip(lanes) {
                    *d += v;
                }
            }
        }
        Ok(())
    }
}

pub fn run(p: &GemmF32Plan, isa: Isa, threads: usize, x: &[u8], persistent: &[u8], out: &mut [u8]) -> KResult<()> {
    let g = &p.geom;
    let pixels = g.batch as usize * g.out_h as usize * g.out_w as usize;
    let oc = g.out_c as usize;
    let x: &[f32] = bytemuck::try_cast_slice(x).map_err(|_| "f32 input is not 4-byte aligned")?;
    let out: &mut [f32] = bytemuck::try_cast_slice_mut(out).map_err(|_| "f32 output is not 4-byte aligned")?;
    let packed: &[f32] =
        bytemuck::try_cast_slice(p.packed.get(persistent)?).map_err(|_| "packed weights misaligned")?;
    let bias: &[f32] = bytemuck::try_cast_slice(p.bias.get(persistent)?).map_err(|_| "packed bias misaligned")?;
    let in_len = g.batch as usize * g.in_h as usize * g.in_w as usize * g.in_c as usize;
    if x.len() < in_len || out.len() < pixels * oc {
        return Err("gemm tensors shorter than their shapes");
    }
    let out = &mut out[..pixels * oc];
    let macs = pixels * p.k as usize * oc;
    let t = im2col::threads_for(macs, threads, pixels.div_ceil(MR));
    im2col::split_pixels(pixels, oc, MR, t, out, &|first, rows_out: &mut [f32]| match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(t) => super::x86::rows_f32(t, p, first, x, packed, bias, rows_out),
        _ => rows_with(PortableF32, p, first, x, packed, bias, rows_out),
    })
}

/// The f32 GEMM driver over output pixels `first ..` (whole rows of `out`), with a gather block sized
/// to the reduction.
#[inline(always)]
pub(crate) fn rows_with<M: MicroF32>(
    m: M,
    p: &GemmF32Plan,
    first: usize,
    x: &[f32],
    packed: &[f32],
    bias: &[f32],
    out: &mut [f32],
) -> KResult<()> {
    match p.k as usize {
        0..=256 => rows_block::<M, { MR * 256 }>(m, p, first, x, packed, bias, out),
        257..=1152 => rows_block::<M, { MR * 1152 }>(m, p, first, x, packed, bias, out),
        _ => rows_block::<M, { MR * KC }>(m, p, first, x, packed, bias, out),
    }
}

#[inline(always)]
fn rows_block<M: MicroF32, const LEN: usize>(
    m: M,
    p: &GemmF32Plan,
    first: usize,
    x: &[f32],
    packed: &[f32],
    bias: &[f32],
    out: &mut [f32],
) -> KResult<()> {
    let chunk = LEN / MR;
    let oc = p.geom.out_c as usize;
    let k = p.k as usize;
    let blocks = oc.div_ceil(8);
    let bstride = k * 8;
    let count = out.len() / oc.max(1);
    let mut a = [0f32; LEN];
    let mut copy = |at: usize, dst: &mut [f32]| -> KResult<()> {
        dst.copy_from_slice(x.get(at..at + dst.len()).ok_or("gemm input short")?);
        Ok(())
    };
    let one_chunk = k <= chunk;
    // Pointwise (1x1, stride 1, no padding) convs and FCs: output pixel p's receptive field is input
    // row p itself, so whole row blocks are read in place instead of copied.
    let g = &p.geom;
    let in_place =
        g.k_h == 1 && g.k_w == 1 && g.stride == [1, 1] && g.pad == [0, 0] && g.in_h == g.out_h && g.in_w == g.out_w;
    let mut done = 0;
    while done < count {
        let nr = MR.min(count - done);
        let p0 = first + done;
        let rows_in_place = if in_place && one_chunk && nr == MR { x.get(p0 * k..(p0 + MR) * k) } else { None };
        if one_chunk && rows_in_place.is_none() {
            im2col::gather(&p.geom, k, k, MR, p0, nr, 0, k, 0.0, &mut a, &mut copy)?;
        }
        let mut b = 0;
        while b < blocks {
            let nb = 2.min(blocks - b);
            let mut acc = [[0f32; 16]; MR];
            let mut k0 = 0;
            while k0 < k {
                let kc = chunk.min(k - k0);
                if !one_chunk {
                    im2col::gather(&p.geom, k, kc, MR, p0, nr, k0, kc, 0.0, &mut a, &mut copy)?;
                }
                let w = packed.get(b * bstride + k0 * 8..).ok_or("packed weights short")?;
                m.micro(rows_in_place.unwrap_or(&a), kc, kc, w, bstride, nb, &mut acc)?;
                k0 += kc;
            }
            let c0 = b * 8;
            let n = (oc - c0).min(8 * nb);
            let bs = bias.get(c0..c0 + n).ok_or("packed bias short")?;
            for (r, acc_r) in acc.iter().enumerate().take(nr) {
                let at = (done + r) * oc + c0;
                let dst = out.get_mut(at..at + n).ok_or("gemm output short")?;
                for ((d, &v), &bv) in dst.iter_mut().zip(acc_r.iter()).zip(bs) {
                    *d = v + bv;
                }
                act::apply_slice(p.activation, dst);
            }
            b += nb;
        }
        done += nr;
    }
    Ok(())
}
