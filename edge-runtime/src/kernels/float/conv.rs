//! Conv2d over NHWC activations: dense and grouped (weights OHWI [O, KH, KW, I/groups]) and
//! depthwise (weights 1HW(C*M) as TFLite's DEPTHWISE_CONV_2D); `rsim_model::ConvKind` decides which.
//! Padding is explicit and may be uneven; taps that fall in the padding are skipped (zero padding).

use super::{act, dot, Elem, Operand};
use rsim_model::{Activation, Conv2dParams, ConvGeometry, Shape};

/// Everything the kernel needs: the model crate's one checked conv geometry.
pub type ConvGeom = ConvGeometry;

pub use rsim_model::conv::out_size;

/// The geometry of a conv over these shapes (bias checked by the caller), or why there is none.
pub fn conv_geom(input: &Shape, weights: &Shape, output: &Shape, p: &Conv2dParams) -> Result<ConvGeom, &'static str> {
    ConvGeometry::from_shapes(input, weights, None, output, p).map_err(|e| e.reason())
}

/// Element counts of the input, output and weights slices of a conv of this geometry.
fn lens(g: &ConvGeom) -> Option<[usize; 3]> {
    let input = g.batch.checked_mul(g.in_h)?.checked_mul(g.in_w)?.checked_mul(g.in_c)?;
    let output = g.batch.checked_mul(g.out_h)?.checked_mul(g.out_w)?.checked_mul(g.out_c)?;
    let per_tap = if g.is_depthwise() { g.out_c } else { g.out_c.checked_mul(g.in_c_per_group)? };
    Some([input, output, per_tap.checked_mul(g.k_h)?.checked_mul(g.k_w)?])
}

/// Input coordinate of tap `k` for output coordinate `o` on one axis, if inside the image.
#[inline]
fn src(o: usize, k: usize, stride: usize, dil: usize, pad: usize, size: usize) -> Option<usize> {
    let i = (o * stride + k * dil).checked_sub(pad)?;
    (i < size).then_some(i)
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
    if Some([input.len(), output.len(), weights.len()]) != lens(g) {
        return Err("conv tensor sizes do not match the geometry");
    }
    if bias.is_some_and(|b| b.len() != g.out_c) {
        return Err("conv bias must have one value per output channel");
    }
    let (cin, cout) = (g.in_c, g.out_c);
    let cpg_in = cin / g.groups;
    let cpg_out = cout / g.groups;
    let depthwise = g.is_depthwise();
    let tap_len = if depthwise { cout } else { cout * cpg_in };
    let mut pixels = output.chunks_exact_mut(cout);
    for n in 0..g.batch {
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                let out_px = pixels.next().ok_or("conv output too short")?;
                for (o, v) in out_px.iter_mut().enumerate() {
                    *v = bias.and_then(|b| b.get(o)).unwrap_or(0.0);
                }
                for ky in 0..g.k_h {
                    let Some(iy) = src(oy, ky, g.stride[0], g.dilation[0], g.pad_top, g.in_h) else {
                        continue;
                    };
                    for kx in 0..g.k_w {
                        let Some(ix) = src(ox, kx, g.stride[1], g.dilation[1], g.pad_left, g.in_w) else {
                            continue;
                        };
                        let at = ((n * g.in_h + iy) * g.in_w + ix) * cin;
                        let in_px = input.get(at..at + cin).ok_or("conv input index out of range")?;
                        let tap = ky * g.k_w + kx;
                        if depthwise {
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
