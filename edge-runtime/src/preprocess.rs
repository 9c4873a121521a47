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

/// TFLite's float -> int8 quantization (round half away from zero, then clamp); the one shared
/// with the exporter and the int8 Quantize kernel.
pub use rsim_model::quant::quantize_i8;

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
pub fn preprocess(
    img: &Image<'_>,
    spec: &InputSpec,
    shape: &Shape,
    quant: Option<(f32, i32)>,
    dst: &mut [u8],
) -> Result<(), EngineError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rsim_model::MAX_BANDS;

    fn spec(h: u32, w: u32, c: u32, resize_shorter: u32) -> InputSpec {
        InputSpec {
            height: h,
            width: w,
            channels: c,
            layout: Layout::Hwc,
            mean: [0.0; MAX_BANDS],
            std: [1.0; MAX_BANDS],
            resize_shorter,
        }
    }

    /// Runs preprocessing to f32 and returns the values scaled back to 0..255 pixel units.
    fn run(img: &Image<'_>, s: &InputSpec) -> Result<Vec<f32>, EngineError> {
        let (h, w, c) = (s.height, s.width, s.channels);
        let mut dst = vec![0u8; (h * w * c * 4) as usize];
        preprocess(img, s, &Shape::new(&[1, h, w, c]), None, &mut dst)?;
        Ok(dst.chunks(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * 255.0).collect())
    }

    fn near(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-3, "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn same_size_is_exact_and_normalizes_per_channel() {
        let px = [0u8, 255, 51, 102, 204, 153];
        let img = Image { pixels: &px, width: 1, height: 2, channels: 3, layout: Layout::Hwc };
        let mut s = spec(2, 1, 3, 0);
        s.mean[..3].copy_from_slice(&[0.5, 0.0, 0.2]);
        s.std[..3].copy_from_slice(&[0.5, 2.0, 0.1]);
        let mut dst = vec![0u8; 24];
        preprocess(&img, &s, &Shape::new(&[1, 2, 1, 3]), None, &mut dst).unwrap();
        let got: Vec<f32> = dst.chunks(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        // (p/255 - mean) / std by hand: 0 -> -1, 255 -> 0.5, 51 -> 0, 102 -> -0.2, 204 -> 0.4, 153 -> 4.
        near(&got, &[-1.0, 0.5, 0.0, -0.2, 0.4, 4.0]);
    }

    #[test]
    fn bilinear_downscale_by_two_averages_blocks() {
        // 4x4 single-band image, value 10*y + x; half-pixel centres sample between pixel pairs.
        let px: Vec<u8> = (0..16).map(|i| (10 * (i / 4) + i % 4) as u8).collect();
        let img = Image { pixels: &px, width: 4, height: 4, channels: 1, layout: Layout::Hwc };
        // Block means: (0,1,10,11) -> 5.5, (2,3,12,13) -> 7.5, (20,21,30,31) -> 25.5, (22,23,32,33) -> 27.5.
        near(&run(&img, &spec(2, 2, 1, 0)).unwrap(), &[5.5, 7.5, 25.5, 27.5]);
    }

    #[test]
    fn bilinear_upscale_clamps_at_the_edges() {
        // 1x2 -> 1x4: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (neighbour clamped).
        let px = [100u8, 200];
        let img = Image { pixels: &px, width: 2, height: 1, channels: 1, layout: Layout::Hwc };
        near(&run(&img, &spec(1, 4, 1, 0)).unwrap(), &[100.0, 125.0, 175.0, 200.0]);
    }

    #[test]
    fn shorter_side_resize_then_centre_crop() {
        // 8 wide x 4 high, S = 2: resized 4 x 2 (each value a 2x2 block mean), crop 2x2 at left
        // round(1.0) = 1, top 0. Block (y 0..2, x 2..4) of 10*y + x: mean 7.5; next block 9.5; row 2: 27.5, 29.5.
        let px: Vec<u8> = (0..32).map(|i| (10 * (i / 8) + i % 8) as u8).collect();
        let img = Image { pixels: &px, width: 8, height: 4, channels: 1, layout: Layout::Hwc };
        near(&run(&img, &spec(2, 2, 1, 2)).unwrap(), &[7.5, 9.5, 27.5, 29.5]);
        assert_eq!(plan(8, 4, &spec(2, 2, 1, 2)).unwrap(), (2, 4, 0, 1));
        // torchvision: 640x480 -> Resize(256) -> 341x256, CenterCrop(224) offsets round(16) and round(58.5) = 58.
        assert_eq!(plan(640, 480, &spec(224, 224, 3, 256)).unwrap(), (256, 341, 16, 58));
        assert!(plan(8, 4, &spec(3, 3, 1, 2)).is_err());
    }

    #[test]
    fn planar_layout_reads_bands_from_planes() {
        // CHW: band 0 = [1, 2], band 1 = [3, 4] -> NHWC [1, 3, 2, 4].
        let px = [1u8, 2, 3, 4];
        let img = Image { pixels: &px, width: 2, height: 1, channels: 2, layout: Layout::Chw };
        near(&run(&img, &spec(1, 2, 2, 0)).unwrap(), &[1.0, 3.0, 2.0, 4.0]);
    }

    #[test]
    fn int8_quantization_rounds_half_away_from_zero_and_saturates() {
        assert_eq!(quantize_i8(0.5, 1.0, 0), 1);
        assert_eq!(quantize_i8(-0.5, 1.0, 0), -1);
        assert_eq!(quantize_i8(2.5, 1.0, 0), 3);
        assert_eq!(quantize_i8(0.26, 0.1, -3), 0);
        assert_eq!(quantize_i8(1000.0, 0.1, 0), 127);
        assert_eq!(quantize_i8(-1000.0, 0.1, 5), -128);
        assert_eq!(quantize_i8(f32::NAN, 0.1, 7), 7);
        let px = [0u8, 255];
        let img = Image { pixels: &px, width: 2, height: 1, channels: 1, layout: Layout::Hwc };
        let mut dst = [0u8; 2];
        // 0 -> 0.0 -> 0 + zp 10 = 10; 255 -> 1.0 / (1/64) = 64 + 10 = 74.
        preprocess(&img, &spec(1, 2, 1, 0), &Shape::new(&[1, 1, 2, 1]), Some((1.0 / 64.0, 10)), &mut dst).unwrap();
        assert_eq!(dst, [10, 74]);
    }

    #[test]
    fn mismatched_images_are_bad_input() {
        let px = [0u8; 12];
        let s = spec(2, 2, 3, 0);
        let shape = Shape::new(&[1, 2, 2, 3]);
        let mut dst = [0u8; 48];
        let img = |w, h, c| Image { pixels: &px, width: w, height: h, channels: c, layout: Layout::Hwc };
        assert!(preprocess(&img(2, 2, 1), &s, &shape, None, &mut dst).is_err()); // channels
        assert!(preprocess(&img(3, 2, 3), &s, &shape, None, &mut dst).is_err()); // length
        assert!(preprocess(&img(0, 0, 3), &s, &shape, None, &mut dst).is_err()); // empty
        assert!(preprocess(&img(2, 2, 3), &s, &Shape::new(&[1, 3, 2, 3]), None, &mut dst).is_err()); // tensor
        assert!(preprocess(&img(2, 2, 3), &s, &shape, None, &mut dst[..47]).is_err()); // buffer
        assert!(preprocess(&img(2, 2, 3), &s, &shape, None, &mut dst).is_ok());
        assert_eq!([1, 3, 5, 7, 4].map(half_round_even), [0, 2, 2, 4, 2]);
    }
}
