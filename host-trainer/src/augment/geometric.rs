//! Geometric augmentations on `Img` (HWC f32): resized crops, flips, rot90.
use crate::data::rng::Rng;
use crate::data::Img;

/// A crop window in source pixels: top, left, height, width.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// torchvision's `RandomResizedCrop.get_params`: ten tries of area in `scale` x source area and
/// log-uniform aspect ratio in `ratio`; then a centre crop with the ratio clamped to `ratio`.
pub fn rrc_window(h: usize, w: usize, scale: (f64, f64), ratio: (f64, f64), rng: &mut Rng) -> Window {
    let area = (h * w) as f64;
    let (lr0, lr1) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * rng.range_f64(scale.0, scale.1);
        let ar = rng.range_f64(lr0, lr1).exp();
        let cw = (target * ar).sqrt().round() as usize;
        let ch = (target / ar).sqrt().round() as usize;
        if cw > 0 && ch > 0 && cw <= w && ch <= h {
            let top = rng.below(h - ch + 1);
            let left = rng.below(w - cw + 1);
            return Window { top, left, height: ch, width: cw };
        }
    }
    let in_ratio = w as f64 / h as f64;
    let (cw, ch) = if in_ratio < ratio.0 {
        (w, ((w as f64 / ratio.0).round() as usize).max(1))
    } else if in_ratio > ratio.1 {
        (((h as f64 * ratio.1).round() as usize).max(1), h)
    } else {
        (w, h)
    };
    let (cw, ch) = (cw.min(w), ch.min(h));
    Window { top: (h - ch) / 2, left: (w - cw) / 2, height: ch, width: cw }
}

/// Bilinear resample of a window to `out_h x out_w` (half-pixel centres, as
/// `align_corners=False`; edges clamp). No antialiasing: EuroSAT crops are upsampled or near 1:1.
pub fn crop_resize(img: &Img, win: Window, out_h: usize, out_w: usize) -> Img {
    let c = img.c;
    let mut out = Img::new(out_h, out_w, c);
    let sy = win.height as f32 / out_h as f32;
    let sx = win.width as f32 / out_w as f32;
    let max_y = (img.h - 1) as f32;
    let max_x = (img.w - 1) as f32;
    // Precompute the x taps once per row.
    let xs: Vec<(usize, usize, f32)> = (0..out_w)
        .map(|x| {
            let fx = (win.left as f32 + (x as f32 + 0.5) * sx - 0.5).clamp(0.0, max_x);
            let x0 = fx.floor() as usize;
            (x0, (x0 + 1).min(img.w - 1), fx - x0 as f32)
        })
        .collect();
    for y in 0..out_h {
        let fy = (win.top as f32 + (y as f32 + 0.5) * sy - 0.5).clamp(0.0, max_y);
        let y0 = fy.floor() as usize;
        let y1 = (y0 + 1).min(img.h - 1);
        let wy = fy - y0 as f32;
        let r0 = &img.data[y0 * img.w * c..(y0 + 1) * img.w * c];
        let r1 = &img.data[y1 * img.w * c..(y1 + 1) * img.w * c];
        let dst = &mut out.data[y * out_w * c..(y + 1) * out_w * c];
        for (x, &(x0, x1, wx)) in xs.iter().enumerate() {
            for b in 0..c {
                let top = r0[x0 * c + b] * (1.0 - wx) + r0[x1 * c + b] * wx;
                let bot = r1[x0 * c + b] * (1.0 - wx) + r1[x1 * c + b] * wx;
                dst[x * c + b] = top * (1.0 - wy) + bot * wy;
            }
        }
    }
    out
}

/// Resize the whole image (used for evaluation views and odd-sized inputs).
pub fn resize(img: &Img, out_h: usize, out_w: usize) -> Img {
    if img.h == out_h && img.w == out_w {
        return img.clone();
    }
    crop_resize(img, Window { top: 0, left: 0, height: img.h, width: img.w }, out_h, out_w)
}

/// Mirror left-right.
pub fn hflip(img: &mut Img) {
    let (w, c) = (img.w, img.c);
    for row in img.data.chunks_mut(w * c) {
        for x in 0..w / 2 {
            for b in 0..c {
                row.swap(x * c + b, (w - 1 - x) * c + b);
            }
        }
    }
}

/// Mirror top-bottom.
pub fn vflip(img: &mut Img) {
    let stride = img.w * img.c;
    for y in 0..img.h / 2 {
        let (a, b) = img.data.split_at_mut((img.h - 1 - y) * stride);
        a[y * stride..(y + 1) * stride].swap_with_slice(&mut b[..stride]);
    }
}

/// Rotate by `k` quarter turns counter-clockwise (as `torch.rot90(x, k, dims=(H, W))`).
pub fn rot90(img: &Img, k: usize) -> Img {
    let k = k % 4;
    if k == 0 {
        return img.clone();
    }
    let (h, w, c) = (img.h, img.w, img.c);
    let (oh, ow) = if k % 2 == 1 { (w, h) } else { (h, w) };
    let mut out = Img::new(oh, ow, c);
    for y in 0..oh {
        for x in 0..ow {
            // Source pixel for output (y, x) under a CCW rotation by k quarters.
            let (sy, sx) = match k {
                1 => (x, w - 1 - y),
                2 => (h - 1 - y, w - 1 - x),
                _ => (h - 1 - x, y),
            };
            let (d, s) = ((y * ow + x) * c, (sy * w + sx) * c);
            out.data[d..d + c].copy_from_slice(&img.data[s..s + c]);
        }
    }
    out
}
