//! Conv2d over NHWC activations: dense and grouped (weights OHWI [O, KH, KW, I/groups]) and
//! depthwise (groups == in_channels > 1, weights 1HW(C*M) as TFLite's DEPTHWISE_CONV_2D).
//! Padding is explicit and may be uneven; taps that fall in the padding are skipped (zero padding).

use super::{act, dot, Elem, Operand};
use rsim_model::{Activation, Conv2dParams, Shape};

/// Everything the kernel needs, derived and checked from the tensors' shapes and the op's params.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub out_c: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// Padding before the first row / column (the after-padding only shapes `out_h`/`out_w`).
    pub pad_top: usize,
    pub pad_left: usize,
    pub groups: usize,
    /// Depthwise layout (1HW(C*M)); `out_c = in_c * depth_mult`.
    pub depthwise: bool,
}

/// Output size of one spatial axis, or `None` when the (dilated) kernel does not fit.
pub fn out_size(
    input: usize,
    pad_a: usize,
    pad_b: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
) -> Option<usize> {
    let extent = dilation.checked_mul(kernel.checked_sub(1)?)?.checked_add(1)?;
    let padded = input.checked_add(pad_a)?.checked_add(pad_b)?;
    let span = padded.checked_sub(extent)?;
    Some(span / stride.max(1) + 1)
}

fn rank4(s: &Shape, what: &'static str) -> Result<[usize; 4], &'static str> {
    if s.rank != 4 {
        return Err(what);
    }
    Ok(s.nhwc())
}

pub fn conv_geom(input: &Shape, weights: &Shape, output: &Shape, p: &Conv2dParams) -> Result<ConvGeom, &'static str> {
    let [n, h, w, c] = rank4(input, "conv input must be rank 4 (NHWC)")?;
    let [wo, kh, kw, wi] = rank4(weights, "conv weights must be rank 4 (OHWI or 1HWC)")?;
    let [on, oh, ow, oc] = rank4(output, "conv output must be rank 4 (NHWC)")?;
    let groups = p.groups as usize;
    if groups == 0 || p.stride.contains(&0) || p.dilation.contains(&0) {
        return Err("conv stride, dilation and groups must be non-zero");
    }
    if kh == 0 || kw == 0 || c == 0 || oc == 0 {
        return Err("conv kernel and channel counts must be non-zero");
    }
    let depthwise = groups == c && c > 1;
    if depthwise {
        if wo != 1 || wi != oc || oc % c != 0 {
            return Err("depthwise weights must be [1, KH, KW, in_channels * multiplier] matching the output channels");
        }
    } else {
        if c % groups != 0 || oc % groups != 0 {
            return Err("conv groups must divide the input and output channels");
        }
        if wo != oc || wi != c / groups {
            return Err("conv weights must be [out_channels, KH, KW, in_channels / groups]");
        }
    }
    let pd = p.padding;
    let [sh, sw] = [p.stride[0] as usize, p.stride[1] as usize];
    let [dh, dw] = [p.dilation[0] as usize, p.dilation[1] as usize];
    let eh = out_size(h, pd.top as usize, pd.bottom as usize, kh, sh, dh)
        .ok_or("conv kernel is larger than the padded input")?;
    let ew = out_size(w, pd.left as usize, pd.right as usize, kw, sw, dw)
        .ok_or("conv kernel is larger than the padded input")?;
    if on != n || oh != eh || ow != ew {
        return Err("conv output shape does not match input, kernel, stride, dilation and padding");
    }
    Ok(ConvGeom {
        batch: n,
        in_h: h,
        in_w: w,
        in_c: c,
        out_h: oh,
        out_w: ow,
        out_c: oc,
        k_h: kh,
        k_w: kw,
        stride: [sh, sw],
        dilation: [dh, dw],
        pad_top: pd.top as usize,
        pad_left: pd.left as usize,
        groups,
        depthwise,
    })
}

impl ConvGeom {
    fn input_len(&self) -> Option<usize> {
        self.batch.checked_mul(self.in_h)?.checked_mul(self.in_w)?.checked_mul(self.in_c)
    }
    fn output_len(&self) -> Option<usize> {
        self.batch.checked_mul(self.out_h)?.checked_mul(self.out_w)?.checked_mul(self.out_c)
    }
    fn weights_len(&self) -> Option<usize> {
        let per_tap = if self.depthwise { self.out_c } else { self.out_c.checked_mul(self.in_c / self.groups)? };
        per_tap.checked_mul(self.k_h)?.checked_mul(self.k_w)
    }
    /// Input coordinate of tap `k` for output coordinate `o` on one axis, if inside the image.
    #[inline]
    fn src(o: usize, k: usize, stride: usize, dil: usize, pad: usize, size: usize) -> Option<usize> {
        let i = (o * stride + k * dil).checked_sub(pad)?;
        (i < size).then_some(i)
    }
}

/// `output = act(conv(input, weights) + bias)`. `bias` has one value per output channel.
pub fn conv2d<W: Elem>(
    g: &ConvGeom,
    input: &[f32],
    weights: &[W],
    bias: Option<Operand<'_>>,
    activation: Activation,
    output: &mut [f32],
) -> Result<(), &'static str> {
    if Some(input.len()) != g.input_len()
        || Some(output.len()) != g.output_len()
        || Some(weights.len()) != g.weights_len()
    {
        return Err("conv tensor sizes do not match the geometry");
    }
    if bias.is_some_and(|b| b.len() != g.out_c) {
        return Err("conv bias must have one value per output channel");
    }
    let (cin, cout) = (g.in_c, g.out_c);
    let cpg_in = cin / g.groups;
    let cpg_out = cout / g.groups;
    let tap_len = if g.depthwise { cout } else { cout * cpg_in };
    let mut pixels = output.chunks_exact_mut(cout);
    for n in 0..g.batch {
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                let out_px = pixels.next().ok_or("conv output too short")?;
                for (o, v) in out_px.iter_mut().enumerate() {
                    *v = bias.and_then(|b| b.get(o)).unwrap_or(0.0);
                }
                for ky in 0..g.k_h {
                    let Some(iy) = ConvGeom::src(oy, ky, g.stride[0], g.dilation[0], g.pad_top, g.in_h) else {
                        continue;
                    };
                    for kx in 0..g.k_w {
                        let Some(ix) = ConvGeom::src(ox, kx, g.stride[1], g.dilation[1], g.pad_left, g.in_w) else {
                            continue;
                        };
                        let at = ((n * g.in_h + iy) * g.in_w + ix) * cin;
                        let in_px = input.get(at..at + cin).ok_or("conv input index out of range")?;
                        let tap = ky * g.k_w + kx;
                        if g.depthwise {
                            let w_tap = weights
                                .get(tap * tap_len..(tap + 1) * tap_len)
                                .ok_or("conv weights index out of range")?;
                            depthwise_tap(in_px, w_tap, out_px);
                        } else {
                            for (o, v) in out_px.iter_mut().enumerate() {
                                let grp = o / cpg_out;
                                let x = in_px.get(grp * cpg_in..(grp + 1) * cpg_in).ok_or("conv group out of range")?;
                                let wa = (o * g.k_h * g.k_w + tap) * cpg_in;
                                let w = weights.get(wa..wa + cpg_in).ok_or("conv weights index out of range")?;
                                *v += dot(x, w);
                            }
                        }
                    }
                }
                act::apply_slice(activation, out_px);
            }
        }
    }
    Ok(())
}

/// One depthwise tap: output channel `c * m + j` reads input channel `c`.
#[inline]
fn depthwise_tap<W: Elem>(in_px: &[f32], w_tap: &[W], out_px: &mut [f32]) {
    let mult = out_px.len() / in_px.len().max(1);
    if mult == 1 {
        for ((o, &x), &w) in out_px.iter_mut().zip(in_px).zip(w_tap) {
            *o += x * w.f32();
        }
    } else {
        for ((o_grp, &x), w_grp) in out_px.chunks_exact_mut(mult).zip(in_px).zip(w_tap.chunks_exact(mult)) {
            for (o, &w) in o_grp.iter_mut().zip(w_grp) {
                *o += x * w.f32();
            }
        }
    }
}
