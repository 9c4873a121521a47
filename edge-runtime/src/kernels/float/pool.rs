//! Average / max pooling over NHWC windows and global average pooling.
//! Average pooling divides by the number of in-bounds taps only (TFLite's rule), so padding never
//! dilutes the mean.

use super::conv::out_size;
use rsim_model::{PoolParams, Shape};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeom {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub channels: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub k: [usize; 2],
    pub stride: [usize; 2],
    pub pad_top: usize,
    pub pad_left: usize,
}

pub fn pool_geom(input: &Shape, output: &Shape, p: &PoolParams) -> Result<PoolGeom, &'static str> {
    if input.rank != 4 || output.rank != 4 {
        return Err("pool input and output must be rank 4 (NHWC)");
    }
    let [n, h, w, c] = input.nhwc();
    let [on, oh, ow, oc] = output.nhwc();
    let [kh, kw] = [p.kernel[0] as usize, p.kernel[1] as usize];
    let [sh, sw] = [p.stride[0] as usize, p.stride[1] as usize];
    let pd = p.padding;
    if kh == 0 || kw == 0 || sh == 0 || sw == 0 {
        return Err("pool kernel and stride must be non-zero");
    }
    // With padding smaller than the kernel every window holds at least one real pixel.
    if pd.top as usize >= kh || pd.bottom as usize >= kh || pd.left as usize >= kw || pd.right as usize >= kw {
        return Err("pool padding must be smaller than the kernel");
    }
    let eh = out_size(h, pd.top as usize, pd.bottom as usize, kh, sh, 1)
        .ok_or("pool kernel is larger than the padded input")?;
    let ew = out_size(w, pd.left as usize, pd.right as usize, kw, sw, 1)
        .ok_or("pool kernel is larger than the padded input")?;
    if on != n || oc != c || oh != eh || ow != ew {
        return Err("pool output shape does not match input, kernel, stride and padding");
    }
    super::count(input)?;
    super::count(output)?;
    Ok(PoolGeom {
        batch: n,
        in_h: h,
        in_w: w,
        channels: c,
        out_h: oh,
        out_w: ow,
        k: [kh, kw],
        stride: [sh, sw],
        pad_top: pd.top as usize,
        pad_left: pd.left as usize,
    })
}

/// In-bounds input range of the window for output coordinate `o` on one axis.
#[inline]
fn window(o: usize, stride: usize, pad: usize, k: usize, size: usize) -> (usize, usize) {
    let start = o * stride;
    let lo = start.saturating_sub(pad);
    let hi = (start + k).saturating_sub(pad).min(size);
    (lo, hi)
}

fn pool(g: &PoolGeom, input: &[f32], output: &mut [f32], max: bool) -> Result<(), &'static str> {
    let c = g.channels;
    if input.len() != g.batch * g.in_h * g.in_w * c || output.len() != g.batch * g.out_h * g.out_w * c {
        return Err("pool tensor sizes do not match the geometry");
    }
    let mut pixels = output.chunks_exact_mut(c.max(1));
    for n in 0..g.batch {
        for oy in 0..g.out_h {
            let (y0, y1) = window(oy, g.stride[0], g.pad_top, g.k[0], g.in_h);
            for ox in 0..g.out_w {
                let (x0, x1) = window(ox, g.stride[1], g.pad_left, g.k[1], g.in_w);
                let out_px = pixels.next().ok_or("pool output too short")?;
                out_px.fill(if max { f32::NEG_INFINITY } else { 0.0 });
                for iy in y0..y1 {
                    for ix in x0..x1 {
                        let at = ((n * g.in_h + iy) * g.in_w + ix) * c;
                        let px = input.get(at..at + c).ok_or("pool index out of range")?;
                        for (o, &x) in out_px.iter_mut().zip(px) {
                            *o = if max { o.max(x) } else { *o + x };
                        }
                    }
                }
                if !max {
                    let taps = ((y1 - y0) * (x1 - x0)).max(1) as f32;
                    out_px.iter_mut().for_each(|o| *o /= taps);
                }
            }
        }
    }
    Ok(())
}

pub fn avg_pool(g: &PoolGeom, input: &[f32], output: &mut [f32]) -> Result<(), &'static str> {
    pool(g, input, output, false)
}

pub fn max_pool(g: &PoolGeom, input: &[f32], output: &mut [f32]) -> Result<(), &'static str> {
    pool(g, input, output, true)
}

/// `[N, H, W, C] -> [N, C]` (stored as `[N,1,1,C]` or `[N,C]`): (batch, pixels per image, channels).
pub fn global_geom(input: &Shape, output: &Shape) -> Result<(usize, usize, usize), &'static str> {
    if input.rank != 4 {
        return Err("global average pool input must be rank 4 (NHWC)");
    }
    let [n, h, w, c] = input.nhwc();
    super::count(input)?;
    if super::count(output)? != n * c || output.dims().last().map(|&d| d as usize) != Some(c) {
        return Err("global average pool output must be [N, 1, 1, C] or [N, C]");
    }
    Ok((n, h * w, c))
}

pub fn global_avg_pool(geom: (usize, usize, usize), input: &[f32], output: &mut [f32]) -> Result<(), &'static str> {
    let (n, hw, c) = geom;
    if input.len() != n * hw * c || output.len() != n * c || c == 0 {
        return Err("global average pool tensor sizes do not match");
    }
    if hw == 0 {
        output.fill(0.0);
        return Ok(());
    }
    for (img, out) in input.chunks_exact(hw * c).zip(output.chunks_exact_mut(c)) {
        out.fill(0.0);
        for px in img.chunks_exact(c) {
            for (o, &x) in out.iter_mut().zip(px) {
                *o += x;
            }
        }
        let inv = hw as f32;
        out.iter_mut().for_each(|o| *o /= inv);
    }
    Ok(())
}
