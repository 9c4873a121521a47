//! int8 depthwise convolution with depth multiplier 1: for each output pixel, runs of channels are
//! accumulated tap by tap (input and weights are both channel-contiguous), then requantized from the
//! prepared channel arrays. Integer sums with wrapping adds: the reference's bits.

use super::gemm::requant_scalar;
use super::{ChannelData, Channels, Isa, Span};
use crate::kernels::int8::KResult;
use rsim_edge_simd::DwGeom;
use rsim_model::{ConvGeometry, ConvKind, DType, Model, Op};

/// Geometry of a planned depthwise op (u32: the same record on every target).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DwPlan {
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
    pub in_offset: i32,
    pub ch: Channels,
    /// Weights of each whole 16-channel block as i16 tap pairs, interleaved the way AVX2's
    /// `vpunpck{l,h}wd` interleave two taps' inputs (see [`pack_pairs`]), so one `vpmaddwd` meets them
    /// with no widening or shuffling per pixel.
    pub pairs: Span,
}

/// Most taps a planned depthwise kernel has (the AVX2 path keeps one pixel's tap offsets on the stack).
pub use rsim_edge_simd::MAX_TAPS;

impl DwPlan {
    /// The geometry and input offset, as the kernels take them.
    #[inline]
    pub fn geom(&self) -> DwGeom {
        DwGeom {
            batch: self.batch,
            in_h: self.in_h,
            in_w: self.in_w,
            channels: self.channels,
            out_h: self.out_h,
            out_w: self.out_w,
            k_h: self.k_h,
            k_w: self.k_w,
            stride: self.stride,
            dilation: self.dilation,
            pad: self.pad,
            in_offset: self.in_offset,
        }
    }

    /// Input index of tap (`ky`, `kx`) for output (`b`, `oy`, `ox`), channel 0, if inside the image.
    #[inline]
    pub fn tap(&self, b: usize, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<usize> {
        self.geom().tap(b, oy, ox, ky, kx)
    }
}

/// Plans a depthwise conv whose output channels equal its input channels (multiplier 1).
pub fn plan(op: &Op, model: &Model<'_>, at: &mut u32) -> Option<DwPlan> {
    let Op::Conv2d { input, weights: wt, bias, output, params, requant } = op else { return None };
    if input.dtype != DType::I8 || output.dtype != DType::I8 || wt.dtype != DType::I8 {
        return None;
    }
    let g = ConvGeometry::new(input, wt, bias.as_ref(), output, params).ok()?;
    if g.kind != (ConvKind::Depthwise { multiplier: 1 }) {
        return None;
    }
    let (n, ih, iw, c, oh, ow, kh, kw) = (g.batch, g.in_h, g.in_w, g.in_c, g.out_h, g.out_w, g.k_h, g.k_w);
    let (s, d, p) = (g.stride, g.dilation, [g.pad_top, g.pad_left]);
    let in_zp = super::per_tensor_zp(input)?;
    let stage = super::out_stage(requant, output, model.weights)?;
    if kh * kw > MAX_TAPS {
        return None;
    }
    let ch = Channels::plan(c, &stage, at).ok()?;
    let pairs_len = u32::try_from((c / 16) * (kh * kw).div_ceil(2) * 64).ok()?;
    let pairs = Span { start: *at, len: pairs_len };
    *at = at.checked_add(pairs_len)?.checked_next_multiple_of(16)?;
    let u = |v: usize| u32::try_from(v).ok();
    Some(DwPlan {
        batch: u(n)?,
        in_h: u(ih)?,
        in_w: u(iw)?,
        channels: u(c)?,
        out_h: u(oh)?,
        out_w: u(ow)?,
        k_h: u(kh)?,
        k_w: u(kw)?,
        stride: [u(s[0])?, u(s[1])?],
        dilation: [u(d[0])?, u(d[1])?],
        pad: [u(p[0])?, u(p[1])?],
        in_offset: in_zp.wrapping_neg(),
        ch,
        pairs,
    })
}

pub fn pack(p: &DwPlan, op: &Op, model: &Model<'_>, persistent: &mut [u8]) -> KResult<()> {
    let Op::Conv2d { weights, bias, output, requant, .. } = op else { return Err("not a conv op") };
    let w = model.const_bytes(weights).ok_or("weights lie outside the weights blob")?;
    pack_pairs(p, w, p.pairs.get_mut(persistent)?)?;
    let b = match bias {
        Some(b) => Some(model.const_bytes(b).ok_or("bias lies outside the weights blob")?),
        None => None,
    };
    let stage = super::out_stage(requant, output, model.weights).ok_or("requantization parameters")?;
    p.ch.fill(b, &stage, persistent, |_| 0)
}

pub fn run(p: &DwPlan, isa: Isa, x: &[u8], w: &[u8], persistent: &[u8], out: &mut [u8]) -> KResult<()> {
    let c = p.channels as usize;
    let (n, oh, ow) = (p.batch as usize, p.out_h as usize, p.out_w as usize);
    let (kh, kw) = (p.k_h as usize, p.k_w as usize);
    if x.len() < n * p.in_h as usize * p.in_w as usize * c || w.len() < kh * kw * c || out.len() < n * oh * ow * c {
        return Err("depthwise tensors shorter than their shapes");
    }
    let ch = p.ch.view(persistent)?;
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(t) => super::x86::depthwise(t, p, x, w, p.pairs.get(persistent)?, &ch, out),
        _ => portable(p, x, w, &ch, out),
    }
}

/// Block `b` (channels `16b..16b+16`), pair `j` (taps `2j`, `2j+1`; a missing last tap is 0) at
/// `(b * pairs + j) * 64`: 16 i16 `[t0 u0 t1 u1 t2 u2 t3 u3 t8 u8 .. t11 u11]` then 16 i16
/// `[t4 u4 .. t7 u7 t12 u12 .. t15 u15]` (`t` = tap 2j's weight of that channel, `u` = tap 2j+1's),
/// little-endian.
pub fn pack_pairs(p: &DwPlan, w: &[u8], dst: &mut [u8]) -> KResult<()> {
    let c = p.channels as usize;
    let taps = p.k_h as usize * p.k_w as usize;
    let pairs = taps.div_ceil(2);
    let weight = |tap: usize, ch: usize| -> KResult<i16> {
        if tap >= taps {
            return Ok(0);
        }
        Ok(*w.get(tap * c + ch).ok_or("depthwise weights shorter than their shape")? as i8 as i16)
    };
    for (i, group) in dst.chunks_exact_mut(64).enumerate() {
        let (b, j) = (i / pairs, i % pairs);
        // Lane order of unpacklo (first 16) and unpackhi (last 16) over two 128-bit halves.
        let order = [0usize, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15];
        for (slot, &k) in order.iter().enumerate() {
            let ch = b * 16 + k;
            let (t, u) = (weight(2 * j, ch)?, weight(2 * j + 1, ch)?);
            group[slot * 4..slot * 4 + 2].copy_from_slice(&t.to_le_bytes());
            group[slot * 4 + 2..slot * 4 + 4].copy_from_slice(&u.to_le_bytes());
        }
    }
    Ok(())
}

/// Channels accumulated together on the stack.
const RUN: usize = 16;

fn portable(p: &DwPlan, x: &[u8], w: &[u8], ch: &ChannelData<'_>, out: &mut [u8]) -> KResult<()> {
    let c = p.channels as usize;
    let (n, oh, ow) = (p.batch as usize, p.out_h as usize, p.out_w as usize);
    let (kh, kw) = (p.k_h as usize, p.k_w as usize);
    const E: &str = "depthwise tensors shorter than their shapes";
    let g = p.geom();
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let o_at = ((b * oh + oy) * ow + ox) * c;
                let mut c0 = 0;
                while c0 < c {
                    let len = RUN.min(c - c0);
                    let mut acc = [0i32; RUN];
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let Some(at) = g.tap(b, oy, ox, ky, kx) else { continue };
                            let xs = x.get(at + c0..at + c0 + len).ok_or(E)?;
                            let ws = w.get((ky * kw + kx) * c + c0..(ky * kw + kx) * c + c0 + len).ok_or(E)?;
                            for ((a, &xv), &wv) in acc.iter_mut().zip(xs).zip(ws) {
                                *a = a.wrapping_add(
                                    (wv as i8 as i32).wrapping_mul((xv as i8 as i32).wrapping_add(p.in_offset)),
                                );
                            }
                        }
                    }
                    requant_scalar(&acc, ch, c0, len, out.get_mut(o_at + c0..o_at + c0 + len).ok_or(E)?)?;
                    c0 += len;
                }
            }
        }
    }
    Ok(())
}
