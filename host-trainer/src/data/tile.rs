//! Decoded images before augmentation (`Tile`, the cached form) and the f32 working image (`Img`).

/// Pixel storage of a decoded tile, interleaved (HWC). Kept in the source bit depth so the
/// in-memory cache of EuroSAT stays at one byte per sample value.
#[derive(Clone, Debug, PartialEq)]
pub enum TileData {
    U8(Vec<u8>),
    U16(Vec<u16>),
    F32(Vec<f32>),
}

/// A decoded image: `height x width x bands`, interleaved.
#[derive(Clone, Debug, PartialEq)]
pub struct Tile {
    pub height: usize,
    pub width: usize,
    pub bands: usize,
    pub data: TileData,
}

/// How raw sample values map to the [0, 1] working range.
/// u8: v / 255. u16: v / `u16_max` (65535 for 16-bit PNG; Sentinel-2 L1C reflectance is often
/// used with 10000). f32: v / `f32_max` (1.0 keeps floats unchanged).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scaling {
    pub u16_max: f32,
    pub f32_max: f32,
}

impl Default for Scaling {
    fn default() -> Self {
        Scaling { u16_max: 65535.0, f32_max: 1.0 }
    }
}

/// Working image for augmentations: f32, HWC, nominally in [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct Img {
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub data: Vec<f32>,
}

impl Img {
    pub fn new(h: usize, w: usize, c: usize) -> Self {
        Img { h, w, c, data: vec![0.0; h * w * c] }
    }

    pub fn from_fn(h: usize, w: usize, c: usize, f: impl Fn(usize, usize, usize) -> f32) -> Self {
        let mut img = Img::new(h, w, c);
        for y in 0..h {
            for x in 0..w {
                for b in 0..c {
                    img.data[(y * w + x) * c + b] = f(y, x, b);
                }
            }
        }
        img
    }

    #[inline]
    pub fn at(&self, y: usize, x: usize, b: usize) -> f32 {
        self.data[(y * self.w + x) * self.c + b]
    }

    /// Writes this image as planar CHW into `out` (length c*h*w), applying (v - mean) / std per band.
    pub fn write_chw(&self, mean: &[f32], std: &[f32], out: &mut [f32]) {
        let plane = self.h * self.w;
        for b in 0..self.c {
            let m = mean.get(b).copied().unwrap_or(0.0);
            let s = std.get(b).copied().unwrap_or(1.0);
            let inv = if s != 0.0 { 1.0 / s } else { 1.0 };
            let dst = &mut out[b * plane..(b + 1) * plane];
            for (p, d) in dst.iter_mut().enumerate() {
                *d = (self.data[p * self.c + b] - m) * inv;
            }
        }
    }
}

impl Tile {
    /// Converts to the working image with `bands` bands.
    /// Rules: equal band counts pass through; a 1-band tile is replicated to every band
    /// (grayscale into an RGB model); more bands than wanted keep the first `bands` (RGBA -> RGB
    /// drops alpha, no compositing); anything else is an error naming both counts.
    pub fn to_img(&self, bands: usize, scaling: Scaling) -> Result<Img, String> {
        if self.bands != bands && self.bands != 1 && self.bands < bands {
            return Err(format!("image has {} bands but the dataset uses {bands}", self.bands));
        }
        let n = self.height * self.width;
        let expected = n * self.bands;
        let len = match &self.data {
            TileData::U8(v) => v.len(),
            TileData::U16(v) => v.len(),
            TileData::F32(v) => v.len(),
        };
        if len != expected {
            return Err(format!("tile holds {len} values, expected {expected}"));
        }
        let get = |i: usize| -> f32 {
            match &self.data {
                TileData::U8(v) => v[i] as f32 / 255.0,
                TileData::U16(v) => v[i] as f32 / scaling.u16_max,
                TileData::F32(v) => v[i] / scaling.f32_max,
            }
        };
        let mut img = Img::new(self.height, self.width, bands);
        for p in 0..n {
            for b in 0..bands {
                let src = if self.bands == 1 { 0 } else { b };
                img.data[p * bands + b] = get(p * self.bands + src);
            }
        }
        Ok(img)
    }
}
