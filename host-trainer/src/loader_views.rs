//! Two-view batches from the Rust data pipeline (`crate::data::Loader`): files decoded and
//! augmented per image by parallel workers with a bounded prefetch queue, including STICL's
//! optimal-transport colour transfer on the key view. The alternative to the tensor-side
//! [`ViewStream`](crate::views::ViewStream) when a recipe needs per-image work (OT, blur) or the
//! images do not fit in memory.
//!
//! Batch `step` is batch `step % per_epoch` of epoch `step / per_epoch`, and the loader draws every
//! random choice from (seed, epoch, sample, view), so a run resumed at step k sees the batches an
//! uninterrupted run sees, whatever the worker count.
use std::path::Path;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver};
use tch::{Device, Tensor};

use crate::augment::{OtConfig, Pipeline, ViewAug};
use crate::data::split::split_per_class;
use crate::data::{Batch, DataError, Dataset, Loader, LoaderConfig, LoaderState};
use crate::views::{ViewCfg, ViewStream};

/// Where pretraining gets its two views from.
pub trait ViewSource {
    /// The two views of batch `step`, each [B, C, size, size] on the training device.
    fn views(&mut self, step: u64) -> Result<(Tensor, Tensor), String>;
    fn steps_per_epoch(&self) -> usize;
}

impl ViewSource for ViewStream<'_> {
    fn views(&mut self, step: u64) -> Result<(Tensor, Tensor), String> {
        Ok(ViewStream::views(self, step))
    }
    fn steps_per_epoch(&self) -> usize {
        ViewStream::steps_per_epoch(self)
    }
}

/// The SSL recipe of [`ViewCfg`] as per-image loader views, normalised the way the rest of the
/// trainer normalises (so probes and export see the same input scale), with optional OT transfer
/// onto view 1 with probability `ot_p`.
pub fn ssl_pipeline(cfg: &ViewCfg, bands: usize, ot_p: f64) -> Pipeline {
    let mut v = ViewAug::simclr(cfg.size);
    v.crop = crate::augment::Crop::RandomResized { scale: cfg.crop_scale, ratio: (3.0 / 4.0, 4.0 / 3.0) };
    v.hflip = if cfg.hflip { 0.5 } else { 0.0 };
    v.vflip = if cfg.vflip { 0.5 } else { 0.0 };
    v.rot90 = if cfg.rot90 { 0.75 } else { 0.0 }; // k uniform in 0..=3, as the tensor views draw it
    v.jitter_p = cfg.jitter_p;
    v.jitter = Some(crate::augment::Jitter {
        brightness: cfg.jitter.0 as f32,
        contrast: cfg.jitter.1 as f32,
        saturation: cfg.jitter.2 as f32,
        hue: cfg.jitter.3 as f32,
    });
    v.grayscale = cfg.gray_p;
    v.mean = vec![cfg.mean as f32; bands];
    v.std = vec![cfg.std as f32; bands];
    let ot = (ot_p > 0.0).then(|| OtConfig { p: ot_p, ..OtConfig::default() });
    Pipeline { views: vec![v.clone(), v], ot }
}

/// The train split (first `share` of each class's sorted files) as a dataset, like `Bank::load`.
pub fn train_split(root: &Path, share: f64) -> Result<Dataset, String> {
    let ds = Dataset::from_folder(root).map_err(|e| e.to_string())?;
    if share >= 1.0 {
        return Ok(ds);
    }
    let idx = split_per_class(&ds.by_class(), &[share, 1.0 - share]).map_err(|e| e.to_string())?.swap_remove(0);
    Ok(ds.subset(&idx))
}

/// Two-view batches produced by a background thread that owns the loader.
pub struct LoaderViews {
    rx: Option<Receiver<Result<Batch, DataError>>>,
    handle: Option<JoinHandle<()>>,
    per_epoch: usize,
    device: Device,
    next_step: u64,
}

impl LoaderViews {
    /// Starts producing at batch `start_step` (0 for a new run, the checkpoint's step on resume).
    pub fn new(
        ds: &Dataset,
        pipeline: Pipeline,
        cfg: LoaderConfig,
        start_step: u64,
        device: Device,
    ) -> Result<Self, String> {
        if pipeline.views.len() != 2 {
            return Err(format!("two-view pretraining needs a two-view pipeline, got {} views", pipeline.views.len()));
        }
        let mut loader =
            Loader::new(ds, pipeline, LoaderConfig { drop_last: true, ..cfg }).map_err(|e| e.to_string())?;
        let per_epoch = loader.batches_per_epoch();
        let pe = per_epoch as u64;
        loader
            .set_state(LoaderState { seed: loader.state().seed, epoch: start_step / pe, batch: start_step % pe })
            .map_err(|e| e.to_string())?;
        // One batch waits in the channel while the loader's own workers prefetch the next ones.
        let (tx, rx) = bounded(1);
        let handle = std::thread::spawn(move || loop {
            for b in loader.epoch() {
                let failed = b.is_err();
                if tx.send(b).is_err() || failed {
                    return;
                }
            }
        });
        Ok(LoaderViews { rx: Some(rx), handle: Some(handle), per_epoch, device, next_step: start_step })
    }
}

impl ViewSource for LoaderViews {
    fn views(&mut self, step: u64) -> Result<(Tensor, Tensor), String> {
        if step != self.next_step {
            return Err(format!("loader views are sequential: asked for step {step}, next is {}", self.next_step));
        }
        let rx = self.rx.as_ref().ok_or("the loader has stopped")?;
        let b =
            rx.recv().map_err(|_| "the loader thread stopped unexpectedly".to_string())?.map_err(|e| e.to_string())?;
        self.next_step += 1;
        let view = |v: usize| -> Result<Tensor, String> {
            let (buf, shape) =
                (b.views.get(v).ok_or("missing view")?, b.view_shapes.get(v).ok_or("missing view shape")?);
            let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
            Ok(Tensor::from_slice(buf).view(dims.as_slice()).to_device(self.device))
        };
        Ok((view(0)?, view(1)?))
    }
    fn steps_per_epoch(&self) -> usize {
        self.per_epoch
    }
}

impl Drop for LoaderViews {
    fn drop(&mut self) {
        // Closing the channel makes the producer's next send fail; it then drops the loader,
        // whose epoch iterator stops and joins the workers.
        self.rx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
