//! Views: per-image augmentation recipes (torchvision semantics) and STICL's OT colour transfer.
pub mod blur;
pub mod color;
pub mod geometric;
pub mod lap;
pub mod ot;

use crate::data::rng::Rng;
use crate::data::Img;
pub use color::Jitter;

/// ImageNet statistics, the usual normalisation for RGB backbones (STICL, FALSE).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// How the view's spatial size is reached.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Crop {
    /// Resize the whole image (evaluation).
    Resize,
    /// torchvision `RandomResizedCrop(scale, ratio)`.
    RandomResized { scale: (f64, f64), ratio: (f64, f64) },
}

/// One view's recipe, applied in this order: crop, h-flip, v-flip, rot90, colour jitter,
/// grayscale, blur, solarize; normalisation happens when the batch is written.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ViewAug {
    pub size: usize,
    pub crop: Crop,
    pub hflip: f64,
    pub vflip: f64,
    /// Probability of a random quarter turn (k uniform in 1..=3).
    pub rot90: f64,
    pub jitter: Option<Jitter>,
    pub jitter_p: f64,
    pub grayscale: f64,
    pub blur_p: f64,
    pub blur_sigma: (f32, f32),
    pub solarize_p: f64,
    pub solarize_threshold: f32,
    /// Per-band mean/std; missing bands get 0/1.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl ViewAug {
    /// Resize only (evaluation and feature extraction).
    pub fn eval(size: usize) -> Self {
        ViewAug {
            size,
            crop: Crop::Resize,
            hflip: 0.0,
            vflip: 0.0,
            rot90: 0.0,
            jitter: None,
            jitter_p: 0.0,
            grayscale: 0.0,
            blur_p: 0.0,
            blur_sigma: (0.1, 2.0),
            solarize_p: 0.0,
            solarize_threshold: 0.5,
            mean: IMAGENET_MEAN.to_vec(),
            std: IMAGENET_STD.to_vec(),
        }
    }

    /// TOV's linear-probe training view: RRC(scale 0.8-1) and both flips.
    pub fn probe_train(size: usize) -> Self {
        ViewAug {
            crop: Crop::RandomResized { scale: (0.8, 1.0), ratio: (3.0 / 4.0, 4.0 / 3.0) },
            hflip: 0.5,
            vflip: 0.5,
            ..Self::eval(size)
        }
    }

    /// SimCLR / MoCo v2 ("aug-plus") view; remote-sensing additions: v-flip and rot90, since
    /// overhead scenes have no up direction.
    pub fn simclr(size: usize) -> Self {
        ViewAug {
            crop: Crop::RandomResized { scale: (0.2, 1.0), ratio: (3.0 / 4.0, 4.0 / 3.0) },
            hflip: 0.5,
            vflip: 0.5,
            rot90: 0.5,
            jitter: Some(Jitter { brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1 }),
            jitter_p: 0.8,
            grayscale: 0.2,
            blur_p: 0.5,
            ..Self::eval(size)
        }
    }

    /// BYOL's asymmetric pair: view 0 always blurred, view 1 rarely blurred and sometimes solarized.
    pub fn byol(size: usize, second: bool) -> Self {
        let base = ViewAug {
            jitter: Some(Jitter { brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1 }),
            ..Self::simclr(size)
        };
        if second {
            ViewAug { blur_p: 0.1, solarize_p: 0.2, ..base }
        } else {
            ViewAug { blur_p: 1.0, ..base }
        }
    }

    /// Applies the recipe to one image with the given RNG.
    pub fn apply(&self, img: &Img, rng: &mut Rng) -> Img {
        let s = self.size.max(1);
        let mut out = match self.crop {
            Crop::Resize => geometric::resize(img, s, s),
            Crop::RandomResized { scale, ratio } => {
                let win = geometric::rrc_window(img.h, img.w, scale, ratio, rng);
                geometric::crop_resize(img, win, s, s)
            }
        };
        if rng.chance(self.hflip) {
            geometric::hflip(&mut out);
        }
        if rng.chance(self.vflip) {
            geometric::vflip(&mut out);
        }
        if rng.chance(self.rot90) {
            out = geometric::rot90(&out, 1 + rng.below(3));
        }
        if let Some(j) = &self.jitter {
            if rng.chance(self.jitter_p) {
                j.apply(&mut out, rng);
            }
        }
        if rng.chance(self.grayscale) {
            color::grayscale(&mut out);
        }
        if rng.chance(self.blur_p) {
            let sigma = rng.range_f64(self.blur_sigma.0 as f64, self.blur_sigma.1 as f64) as f32;
            out = blur::gaussian_blur(&out, sigma);
        }
        if rng.chance(self.solarize_p) {
            color::solarize(&mut out, self.solarize_threshold);
        }
        out
    }
}

/// STICL's key-view colour transfer: with probability `p`, view `view` of a sample starts from
/// its image recoloured by OT onto another image of the same batch.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OtConfig {
    pub p: f64,
    pub samples: usize,
    pub view: usize,
}

impl Default for OtConfig {
    fn default() -> Self {
        OtConfig { p: 0.1, samples: 1000, view: 1 }
    }
}

/// Everything the loader does to a sample: one recipe per view, plus the optional OT transfer.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pipeline {
    pub views: Vec<ViewAug>,
    pub ot: Option<OtConfig>,
}

impl Pipeline {
    pub fn single(view: ViewAug) -> Self {
        Pipeline { views: vec![view], ot: None }
    }
    pub fn two_views(a: ViewAug, b: ViewAug) -> Self {
        Pipeline { views: vec![a, b], ot: None }
    }
}
