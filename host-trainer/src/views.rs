//! Two-view batches made with batched tensor ops (on the training device) from a decoded [`Bank`]:
//! random resized crop + flips + rot90 through one affine grid sample, colour jitter, random grayscale.
//!
//! Every random choice is a function of (seed, step, sample), drawn with the data pipeline's RNG on
//! the host, so a run resumed at step k sees exactly the batches an uninterrupted run sees.
use std::f64::consts::PI;

use tch::{Device, Kind, Tensor};

use crate::bank::Bank;
use crate::data::rng::Rng;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ViewCfg {
    pub size: usize,
    /// Random resized crop area range (torchvision's `scale`).
    pub crop_scale: (f64, f64),
    pub hflip: bool,
    pub vflip: bool,
    /// Random multiples of 90 degrees (overhead imagery has no "up").
    pub rot90: bool,
    /// Probability of colour jitter, and its strengths (brightness, contrast, saturation, hue).
    pub jitter_p: f64,
    pub jitter: (f64, f64, f64, f64),
    pub gray_p: f64,
    pub mean: f64,
    pub std: f64,
}

impl ViewCfg {
    pub fn ssl(size: usize) -> Self {
        ViewCfg {
            size,
            crop_scale: (0.2, 1.0),
            hflip: true,
            vflip: true,
            rot90: true,
            jitter_p: 0.8,
            jitter: (0.4, 0.4, 0.4, 0.1),
            gray_p: 0.2,
            mean: 0.5,
            std: 0.5,
        }
    }
}

/// Per-sample parameters of one view.
struct ViewParams {
    theta: Vec<f32>,
    bright: Vec<f32>,
    contrast: Vec<f32>,
    sat: Vec<f32>,
    hue: Vec<f32>,
    gray: Vec<f32>,
}

fn rrc_box(rng: &mut Rng, scale: (f64, f64)) -> (f64, f64, f64, f64) {
    // torchvision RandomResizedCrop: 10 tries at area/ratio, else the whole image (square input).
    for _ in 0..10 {
        let area = rng.range_f64(scale.0, scale.1);
        let logr = rng.range_f64((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
        let r = logr.exp();
        let w = (area * r).sqrt();
        let h = (area / r).sqrt();
        if w <= 1.0 && h <= 1.0 {
            let cx = rng.range_f64(-1.0 + w, 1.0 - w + 1e-12);
            let cy = rng.range_f64(-1.0 + h, 1.0 - h + 1e-12);
            return (cx, cy, w, h);
        }
    }
    (0.0, 0.0, 1.0, 1.0)
}

fn draw(cfg: &ViewCfg, seed: u64, step: u64, view: u64, n: usize) -> ViewParams {
    let mut p =
        ViewParams { theta: Vec::new(), bright: vec![], contrast: vec![], sat: vec![], hue: vec![], gray: vec![] };
    for i in 0..n {
        let mut rng = Rng::for_parts(seed, &[step, view, i as u64]);
        let (cx, cy, w, h) = rrc_box(&mut rng, cfg.crop_scale);
        let fx = if cfg.hflip && rng.chance(0.5) { -1.0 } else { 1.0 };
        let fy = if cfg.vflip && rng.chance(0.5) { -1.0 } else { 1.0 };
        let k = if cfg.rot90 { rng.below(4) } else { 0 };
        let (c, s) = ((k as f64 * PI / 2.0).cos().round(), (k as f64 * PI / 2.0).sin().round());
        // output (u, v) -> input: crop * flip * rotation, in normalised coordinates.
        let (a, b, d, e) = (c * fx * w, -s * fx * w, s * fy * h, c * fy * h);
        p.theta.extend([a, b, cx, d, e, cy].map(|v| v as f32));
        let (bj, cj, sj, hj) = cfg.jitter;
        if rng.chance(cfg.jitter_p) {
            p.bright.push(rng.range_f64(1.0 - bj, 1.0 + bj) as f32);
            p.contrast.push(rng.range_f64(1.0 - cj, 1.0 + cj) as f32);
            p.sat.push(rng.range_f64(1.0 - sj, 1.0 + sj) as f32);
            p.hue.push(rng.range_f64(-hj, hj) as f32);
        } else {
            p.bright.push(1.0);
            p.contrast.push(1.0);
            p.sat.push(1.0);
            p.hue.push(0.0);
        }
        p.gray.push(if rng.chance(cfg.gray_p) { 1.0 } else { 0.0 });
    }
    p
}

fn luminance(x: &Tensor) -> Tensor {
    let c = x.size()[1];
    if c == 3 {
        let w = Tensor::from_slice(&[0.299f32, 0.587, 0.114]).to_device(x.device()).view([1, 3, 1, 1]);
        (x * w).sum_dim_intlist(&[1i64][..], true, Kind::Float)
    } else {
        x.mean_dim(&[1i64][..], true, Kind::Float)
    }
}

/// Applies one view's parameters to `x` [N, C, H, W] in [0, 1]; returns normalised [N, C, S, S].
fn apply(cfg: &ViewCfg, x: &Tensor, p: &ViewParams) -> Tensor {
    let (n, c) = (x.size()[0], x.size()[1]);
    let dev = x.device();
    let col = |v: &[f32]| Tensor::from_slice(v).to_device(dev).view([n, 1, 1, 1]);
    let theta = Tensor::from_slice(&p.theta).to_device(dev).view([n, 2, 3]);
    let s = cfg.size as i64;
    let grid = Tensor::affine_grid_generator(&theta, [n, c, s, s], false);
    let mut y = x.grid_sampler(&grid, 0, 1, false);
    y = (y * col(&p.bright)).clamp(0.0, 1.0);
    let m = luminance(&y).mean_dim(&[1i64, 2, 3][..], true, Kind::Float);
    y = ((&y - &m) * col(&p.contrast) + &m).clamp(0.0, 1.0);
    if c == 3 {
        let g = luminance(&y);
        y = ((&y - &g) * col(&p.sat) + &g).clamp(0.0, 1.0);
        // Hue: rotate the chroma plane of YIQ by 2*pi*h.
        let to_yiq = Tensor::from_slice(&[0.299f32, 0.587, 0.114, 0.596, -0.274, -0.322, 0.211, -0.523, 0.312])
            .to_device(dev)
            .view([3, 3]);
        let yiq = y.permute([0, 2, 3, 1]).matmul(&to_yiq.tr());
        let ang = col(&p.hue).view([n, 1, 1]) * (2.0 * PI);
        let (cs, sn) = (ang.cos(), ang.sin());
        let yy = yiq.select(3, 0);
        let (i0, q0) = (yiq.select(3, 1), yiq.select(3, 2));
        let i1 = &i0 * &cs - &q0 * &sn;
        let q1 = &i0 * &sn + &q0 * &cs;
        let yiq = Tensor::stack(&[yy, i1, q1], 3);
        y = yiq.matmul(&to_yiq.inverse().tr()).permute([0, 3, 1, 2]).clamp(0.0, 1.0);
    }
    let gm = col(&p.gray);
    let g = luminance(&y).expand_as(&y);
    y = &y * (1.0 - &gm) + g * gm;
    (y - cfg.mean) / cfg.std
}

/// Seeded epoch-wise shuffled batches of two views. The state is just the step counter.
pub struct ViewStream<'a> {
    pub bank: &'a Bank,
    pub cfg: ViewCfg,
    pub batch: usize,
    pub seed: u64,
    pub device: Device,
    /// Class-balanced sampling: each sample picks a class uniformly, then an image of it.
    pub balanced: bool,
    perm_epoch: Option<(u64, Vec<i64>)>,
    by_class: Vec<Vec<i64>>,
}

impl<'a> ViewStream<'a> {
    pub fn new(bank: &'a Bank, cfg: ViewCfg, batch: usize, seed: u64, device: Device) -> Result<Self, String> {
        if batch == 0 || batch > bank.len() {
            return Err(format!("batch size {batch} must be between 1 and the number of images ({})", bank.len()));
        }
        let labels: Vec<i64> = Vec::<i64>::try_from(&bank.labels).map_err(|e| e.to_string())?;
        let mut by_class: Vec<Vec<i64>> = vec![Vec::new(); bank.classes.len()];
        for (i, &l) in labels.iter().enumerate() {
            if let Some(v) = by_class.get_mut(l as usize) {
                v.push(i as i64);
            }
        }
        by_class.retain(|v| !v.is_empty());
        Ok(ViewStream { bank, cfg, batch, seed, device, balanced: false, perm_epoch: None, by_class })
    }

    pub fn steps_per_epoch(&self) -> usize {
        self.bank.len() / self.batch
    }

    /// Sample indices of batch `step` (drop_last; a fresh seeded permutation per epoch).
    pub fn indices(&mut self, step: u64) -> Vec<i64> {
        if self.balanced && !self.by_class.is_empty() {
            return (0..self.batch as u64)
                .map(|k| {
                    let mut rng = Rng::for_parts(self.seed, &[u64::MAX - 1, step, k]);
                    let class = &self.by_class[rng.below(self.by_class.len())];
                    class[rng.below(class.len())]
                })
                .collect();
        }
        let spe = self.steps_per_epoch() as u64;
        let (epoch, k) = (step / spe, (step % spe) as usize);
        if self.perm_epoch.as_ref().map(|(e, _)| *e) != Some(epoch) {
            let mut perm: Vec<i64> = (0..self.bank.len() as i64).collect();
            Rng::for_parts(self.seed, &[u64::MAX, epoch]).shuffle(&mut perm);
            self.perm_epoch = Some((epoch, perm));
        }
        let perm = &self.perm_epoch.as_ref().expect("set above").1;
        perm[k * self.batch..(k + 1) * self.batch].to_vec()
    }

    /// The two views of batch `step`, each [B, C, size, size] on the device.
    pub fn views(&mut self, step: u64) -> (Tensor, Tensor) {
        let idx = Tensor::from_slice(&self.indices(step));
        let x = self.bank.images.index_select(0, &idx).to_device(self.device).to_kind(Kind::Float);
        let b = self.batch;
        let p1 = draw(&self.cfg, self.seed, step, 0, b);
        let p2 = draw(&self.cfg, self.seed, step, 1, b);
        tch::no_grad(|| (apply(&self.cfg, &x, &p1), apply(&self.cfg, &x, &p2)))
    }
}
