//! Photometric augmentations, following torchvision's functional definitions on [0, 1] floats.
//! Images with other than 3 bands get brightness and contrast only (saturation and hue are
//! RGB notions); grayscale of such images is the band mean.
use crate::data::rng::Rng;
use crate::data::Img;

fn clamp01(v: f32) -> f32 {
    v.clamp(0.0, 1.0)
}

/// ITU-R 601 luma as torchvision's `rgb_to_grayscale`; band mean when not RGB.
fn gray_of(px: &[f32]) -> f32 {
    if px.len() == 3 {
        0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2]
    } else {
        px.iter().sum::<f32>() / px.len().max(1) as f32
    }
}

pub fn adjust_brightness(img: &mut Img, f: f32) {
    for v in img.data.iter_mut() {
        *v = clamp01(*v * f);
    }
}

/// Blend with the mean grayscale value of the whole image.
pub fn adjust_contrast(img: &mut Img, f: f32) {
    let n = (img.h * img.w).max(1);
    let mean = img.data.chunks(img.c).map(gray_of).sum::<f32>() / n as f32;
    for v in img.data.iter_mut() {
        *v = clamp01(f * *v + (1.0 - f) * mean);
    }
}

/// Blend each pixel with its own grayscale value (RGB only).
pub fn adjust_saturation(img: &mut Img, f: f32) {
    if img.c != 3 {
        return;
    }
    for px in img.data.chunks_mut(3) {
        let g = gray_of(px);
        for v in px.iter_mut() {
            *v = clamp01(f * *v + (1.0 - f) * g);
        }
    }
}

/// Shift hue by `shift` of a full turn (in [-0.5, 0.5]), via HSV as torchvision (RGB only).
pub fn adjust_hue(img: &mut Img, shift: f32) {
    if img.c != 3 {
        return;
    }
    for px in img.data.chunks_mut(3) {
        let (h, s, v) = rgb_to_hsv(px[0], px[1], px[2]);
        let h = (h + shift).rem_euclid(1.0);
        let (r, g, b) = hsv_to_rgb(h, s, v);
        px[0] = r;
        px[1] = g;
        px[2] = b;
    }
}

pub fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let cr = maxc - minc;
    let s = if maxc > 0.0 { cr / maxc } else { 0.0 };
    if cr == 0.0 {
        return (0.0, s, maxc);
    }
    let h = if maxc == r {
        (g - b) / cr
    } else if maxc == g {
        2.0 + (b - r) / cr
    } else {
        4.0 + (r - g) / cr
    };
    ((h / 6.0).rem_euclid(1.0), s, maxc)
}

pub fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let h6 = h * 6.0;
    let i = h6.floor();
    let f = h6 - i;
    let p = clamp01(v * (1.0 - s));
    let q = clamp01(v * (1.0 - s * f));
    let t = clamp01(v * (1.0 - s * (1.0 - f)));
    match (i as i32).rem_euclid(6) {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

/// torchvision `ColorJitter(brightness, contrast, saturation, hue)`: factors drawn from
/// [max(0, 1-x), 1+x] (hue shift from [-hue, hue]) and applied in a random order. A zero
/// strength leaves that adjustment out, as torchvision does.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Jitter {
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub hue: f32,
}

impl Jitter {
    pub fn apply(&self, img: &mut Img, rng: &mut Rng) {
        let mut order = [0usize, 1, 2, 3];
        rng.shuffle(&mut order);
        let factor = |x: f32, rng: &mut Rng| rng.range_f64((1.0 - x as f64).max(0.0), 1.0 + x as f64) as f32;
        for op in order {
            match op {
                0 if self.brightness > 0.0 => {
                    let f = factor(self.brightness, rng);
                    adjust_brightness(img, f)
                }
                1 if self.contrast > 0.0 => {
                    let f = factor(self.contrast, rng);
                    adjust_contrast(img, f)
                }
                2 if self.saturation > 0.0 => {
                    let f = factor(self.saturation, rng);
                    adjust_saturation(img, f)
                }
                3 if self.hue > 0.0 => {
                    let hmax = self.hue.min(0.5) as f64;
                    let s = rng.range_f64(-hmax, hmax) as f32;
                    adjust_hue(img, s)
                }
                _ => {}
            }
        }
    }
}

/// Replace every band by the pixel's grayscale value (band count kept).
pub fn grayscale(img: &mut Img) {
    let c = img.c;
    for px in img.data.chunks_mut(c) {
        let g = gray_of(px);
        px.fill(g);
    }
}

/// Invert values at or above `threshold` (torchvision `solarize`).
pub fn solarize(img: &mut Img, threshold: f32) {
    for v in img.data.iter_mut() {
        if *v >= threshold {
            *v = 1.0 - *v;
        }
    }
}
