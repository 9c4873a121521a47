//! Image preprocessing into the graph input tensor, allocation-free (one pass, row by row):
//! u8 pixels -> resize (bilinear) [-> shorter-side resize + centre crop] -> /255 -> (v - mean) / std
//! -> f32, or int8 with the input tensor's scale and zero point.
//!
//! Conventions, chosen to match PyTorch/torchvision evaluation transforms:
//! - bilinear with half-pixel centres (`align_corners=False`, no antialiasing): source coordinate
//!   `(dst + 0.5) * in / out - 0.5`, clamped at 0; neighbours clamped at the last pixel;
//! - `resize_shorter = S`: the shorter side becomes S, the longer `floor(S * long / short)`
//!   (torchvision `Resize(S)`); then the centre crop offset is `round((resized - crop) / 2)` with
//!   Python's round-half-to-even (torchvision `CenterCrop`);
//! - int8: `q = clamp(round(x / scale) + zero_point, -128, 127)`, round half away from zero
//!   (TFLite's `AffineQuantize`).

use crate::EngineError;
use rsim_model::{InputSpec, Layout, Shape};

/// A borrowed u8 image. `Hwc`: interleaved bands; `Chw`: one plane per band.
#[derive(Clone, Copy, Debug)]
pub struct Image<'p> {
    pub pixels: &'p [u8],
    pub width: u32,
    pub height: u32,
    pub channels: u32,
    pub layout: Layout,
}

/// TFLite's float -> int8 quantization (round half away from zero, then clamp).
#[inline]
pub fn quantize_i8(x: f32, scale: f32, zero_point: i32) -> i8 {
    let q = libm::roundf(x / scale) as i32; // `as` saturates (NaN -> 0), so no UB or wrap
    q.saturating_add(zero_point).clamp(-128, 127) as i8
}

/// Python's `round` of `d / 2` for a non-negative integer `d` (half to even).
pub fn half_round_even(d: usize) -> usize {
    let k = d / 2;
    if d % 2 == 1 && k % 2 == 1 {
        k + 1
    } else {
        k
    }
}

/// Size after the resize step and the crop offset into it, per axis: (resized_h, resized_w, top, left).
pub fn plan(src_w: usize, src_h: usize, spec: &InputSpec) -> Result<(usize, usize, usize, usize), EngineError> {
    let (ch, cw) = (spec.height as usize, spec.width as usize);
    let s = spec.resize_shorter as usize;
    if s == 0 {
        return Ok((ch, cw, 0, 0));
    }
    let (rh, rw) = if src_w <= src_h {
        (s.checked_mul(src_h).map(|v| v / src_w.max(1)).unwrap_or(0), s)
    } else {
        (s, s.checked_mul(src_w).map(|v| v / src_h.max(1)).unwrap_or(0))
    };
    if rh < ch || rw < cw {
        return Err(EngineError::BadInput { reason: "resize_shorter leaves the image smaller than the crop" });
    }
    Ok((rh, rw, half_round_even(rh - ch), half_round_even(rw - cw)))
}

/// Bilinear taps on one axis for output coordinate `dst` of a resize from `src` to `out` samples:
/// (index0, index1, weight of index1).
#[inline]
pub fn taps(dst: usize, src: usize, out: usize) -> (usize, usize, f32) {
    let scale = src as f32 / out.max(1) as f32;
    let pos = ((dst as f32 + 0.5) * scale - 0.5).max(0.0);
    let i0 = (pos as usize).min(src.saturating_sub(1));
    let i1 = (i0 + 1).min(src.saturating_sub(1));
    (i0, i1, pos - i0 as f32)
}

/// Fills `dst` (the raw input tensor, NHWC f32 or int8 per `quant`) from `img`.
pub fn preprocess(img: &Image<'_>, spec: &InputSpec, shape: &Shape, quant: Option<(f32, i32)>, dst: &mut [u8]) -> Result<(), EngineError> {
    let bad = |reason| EngineError::BadInput { reason };
    let (w, h, c) = (img.width as usize, img.height as usize, img.channels as usize);
    if img.channels != spec.channels {
        return Err(bad("image channel count differs from the model's input spec"));
    }
    if w == 0 || h == 0 || w.checked_mul(h).and_then(|v| v.checked_mul(c)) != Some(img.pixels.len()) {
        return Err(bad("pixel buffer length is not width * height * channels (or the image is empty)"));
    }
    let [n, th, tw, tc] = shape.nhwc();
    if shape.rank != 4 || n != 1 || th != spec.height as usize || tw != spec.width as usize || tc != c {
        return Err(bad("graph input tensor is not [1, height, width, channels] of the input spec"));
    }
    let elem = if quant.is_some() { 1 } else { 4 };
    if th.checked_mul(tw).and_then(|v| v.checked_mul(tc)).and_then(|v| v.checked_mul(elem)) != Some(dst.len()) {
        return Err(bad("graph input tensor size does not match the input spec"));
    }
    let (rh, rw, top, left) = plan(w, h, spec)?;
    let px = |y: usize, x: usize, ch: usize| -> f32 {
        let i = match img.layout {
            Layout::Hwc => (y * w + x) * c + ch,
            Layout::Chw => (ch * h + y) * w + x,
        };
        img.pixels.get(i).copied().unwrap_or(0) as f32
    };
    let mut out = dst.chunks_exact_mut(elem);
    for oy in 0..th {
        let (y0, y1, ly) = taps(oy + top, h, rh);
        for ox in 0..tw {
            let (x0, x1, lx) = taps(ox + left, w, rw);
            for ch in 0..c {
                let top_row = px(y0, x0, ch) * (1.0 - lx) + px(y0, x1, ch) * lx;
                let bottom_row = px(y1, x0, ch) * (1.0 - lx) + px(y1, x1, ch) * lx;
                let v = top_row * (1.0 - ly) + bottom_row * ly;
                let mean = spec.mean.get(ch).copied().unwrap_or(0.0);
                let std = spec.std.get(ch).copied().unwrap_or(1.0);
                let x = (v / 255.0 - mean) / std;
                let slot = out.next().ok_or(bad("graph input tensor too short"))?;
                match quant {
                    None => slot.copy_from_slice(&x.to_le_bytes()),
                    Some((scale, zp)) => {
                        if let Some(b) = slot.first_mut() {
                            *b = quantize_i8(x, scale, zp) as u8;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
