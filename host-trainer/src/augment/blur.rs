//! Separable Gaussian blur with reflect padding (torchvision `GaussianBlur` semantics:
//! kernel radius `ceil(3 sigma)` unless given).
use crate::data::Img;

pub fn gaussian_kernel(sigma: f32, radius: usize) -> Vec<f32> {
    let s2 = 2.0 * sigma * sigma;
    let k: Vec<f32> = (0..=2 * radius)
        .map(|i| {
            let d = i as f32 - radius as f32;
            (-d * d / s2).exp()
        })
        .collect();
    let sum: f32 = k.iter().sum();
    k.into_iter().map(|v| v / sum).collect()
}

/// Reflect an index into [0, n) (no edge repeat, as `reflect` padding).
fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let mut i = i.rem_euclid(period);
    if i >= n as isize {
        i = period - i;
    }
    i as usize
}

pub fn gaussian_blur(img: &Img, sigma: f32) -> Img {
    if sigma <= 0.0 {
        return img.clone();
    }
    let radius = ((3.0 * sigma).ceil() as usize).max(1);
    let k = gaussian_kernel(sigma, radius);
    let (h, w, c) = (img.h, img.w, img.c);
    let mut tmp = Img::new(h, w, c);
    for y in 0..h {
        for x in 0..w {
            for b in 0..c {
                let mut acc = 0.0;
                for (t, kv) in k.iter().enumerate() {
                    let sx = reflect(x as isize + t as isize - radius as isize, w);
                    acc += kv * img.data[(y * w + sx) * c + b];
                }
                tmp.data[(y * w + x) * c + b] = acc;
            }
        }
    }
    let mut out = Img::new(h, w, c);
    for y in 0..h {
        for x in 0..w {
            for b in 0..c {
                let mut acc = 0.0;
                for (t, kv) in k.iter().enumerate() {
                    let sy = reflect(y as isize + t as isize - radius as isize, h);
                    acc += kv * tmp.data[(sy * w + x) * c + b];
                }
                out.data[(y * w + x) * c + b] = acc;
            }
        }
    }
    out
}
