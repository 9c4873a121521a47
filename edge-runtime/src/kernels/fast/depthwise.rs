//! int8 depthwise convolution with depth multiplier 1: for each output pixel, runs of channels are
//! accumulated tap by tap (input and weights are both channel-contiguous), then requantized from the
//! prepared channel arrays. Integer sums with wrapping adds: the reference's bits.

use super::gemm::requant_scalar;
use super::{ChannelData, Channels, Isa};
use crate::kernels::float::conv::out_size;
use crate::kernels::int8::KResult;
use rsim_model::{DType, Model, Op};

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
}

impl DwPlan {
    /// Input index of tap (`ky`, `kx`) for output (`b`, `oy`, `ox`), channel 0, if inside the image.
    #[inline]
    pub fn tap(&self, b: usize, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<usize> {
        let iy = (oy * self.stride[0] as usize + ky * self.dilation[0] as usize).checked_sub(self.pad[0] as usize)?;
        let ix = (ox * self.stride[1] as usize + kx * self.dilation[1] as usize).checked_sub(self.pad[1] as usize)?;
        if iy >= self.in_h as usize || ix >= self.in_w as usize {
            return None;
        }
        Some(((b * self.in_h as usize + iy) * self.in_w as usize + ix) * self.channels as usize)
    }
}

/// Plans a depthwise conv whose output channels equal its input channels (multiplier 1).
pub fn plan(op: &Op, model: &Model<'_>, at: &mut u32) -> Option<DwPlan> {
    let Op::Conv2d { input, weights: wt, output, params, requant, .. } = op else { return None };
    if input.dtype != DType::I8 || output.dtype != DType::I8 || wt.dtype != DType::I8 {
        return None;
    }
    let [n, ih, iw, c] = input.shape.nhwc();
    let [on, oh, ow, oc] = output.shape.nhwc();
    let [wo, kh, kw, wc] = wt.shape.nhwc();
    if input.shape.rank != 4 || output.shape.rank != 4 || wt.shape.rank != 4 {
        return None;
    }
    // The reference's depthwise rule, restricted to multiplier 1.
    if params.groups as usize != c || wo != 1 || wc != oc || oc != c || c == 0 || on != n || n == 0 || kh == 0 || kw == 0 {
        return None;
    }
    let (s, d, p) = (params.stride, params.dilation, params.padding);
    if s.contains(&0) || d.contains(&0) {
        return None;
    }
    if out_size(ih, p.top as usize, p.bottom as usize, kh, s[0] as usize, d[0] as usize)? != oh
        || out_size(iw, p.left as usize, p.right as usize, kw, s[1] as usize, d[1] as usize)? != ow
    {
        return None;
    }
    let in_zp = super::per_tensor_zp(input)?;
    let stage = super::out_stage(requant, output, model.weights)?;
    let ch = Channels::plan(c, &stage, at).ok()?;
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
        stride: [s[0] as u32, s[1] as u32],
        dilation: [d[0] as u32, d[1] as u32],
        pad: [p.top as u32, p.left as u32],
        in_offset: in_zp.wrapping_neg(),
        ch,
    })
}

pub fn pack(p: &DwPlan, op: &Op, model: &Model<'_>, persistent: &mut [u8]) -> KResult<()> {
    let Op::Conv2d { bias, output, requant, .. } = op else { return Err("not a conv op") };
    let b = match bias {
        Some(b) => Some(model.const_bytes(b).ok_or("bias lies outside the weights blob")?),
        None => None,
    };
    let stage = super::out_stage(requant, output, model.weights).ok_or("requantization parameters")?;
    p.ch.fill(b, &stage, persistent)
}

pub fn run(p: &DwPlan, isa: Isa, x: &[u8], w: &[u8], persistent: &[u8], out: &mut [u8]) -> KResult<()> {
    let c = p.channels as usize;
    let (n, oh, ow) = (p.batch as usize, p.out_h as usize, p.out_w as usize);
    let (kh, kw) = (p.k_h as usize, p.k_w as usize);
    if x.len() < n * p.in_h as usize * p.in_w as usize * c || w.len() < kh * kw * c || out.len() < n * oh * ow * c {
        return Err("depthwise tensors shorter than their shapes");
    }
    let ch = ChannelData::view(&p.ch, persistent)?;
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => super::x86::depthwise(p, x, w, &ch, out),
        _ => portable(p, x, w, &ch, out),
    }
}

/// Channels accumulated together on the stack.
const RUN: usize = 16;

fn portable(p: &DwPlan, x: &[u8], w: &[u8], ch: &ChannelData<'_>, out: &mut [u8]) -> KResult<()> {
    let c = p.channels as usize;
    let (n, oh, ow) = (p.batch as usize, p.out_h as usize, p.out_w as usize);
    let (kh, kw) = (p.k_h as usize, p.k_w as usize);
    const E: &str = "depthwise tensors shorter than their shapes";
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
                            let Some(at) = p.tap(b, oy, ox, ky, kx) else { continue };
                            let xs = x.get(at + c0..at + c0 + len).ok_or(E)?;
                            let ws = w.get((ky * kw + kx) * c + c0..(ky * kw + kx) * c + c0 + len).ok_or(E)?;
                            for ((a, &xv), &wv) in acc.iter_mut().zip(xs).zip(ws) {
                                *a = a.wrapping_add((wv as i8 as i32).wrapping_mul((xv as i8 as i32).wrapping_add(p.in_offset)));
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
