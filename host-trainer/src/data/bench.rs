//! Data-pipeline throughput: decoded + augmented images per second (called by
//! `cargo xtask bench train`; figures belong in benchmarks, not tests).
use super::dataset::Dataset;
use super::error::DataError;
use super::loader::{Loader, LoaderConfig};
use crate::augment::{Pipeline, ViewAug};
use std::path::Path;
use std::time::Instant;

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PipelineBench {
    pub images: usize,
    pub views: usize,
    pub workers: usize,
    pub seconds: f64,
    /// Source images decoded and augmented (all views) per second.
    pub images_per_s: f64,
}

/// Runs the SimCLR two-view pipeline (size `size`, no cache, so every image is decoded) over the
/// image folder at `root` for at least `images` images, with `workers` threads.
pub fn bench_pipeline(
    root: &Path,
    images: usize,
    batch_size: usize,
    size: usize,
    workers: usize,
) -> Result<PipelineBench, DataError> {
    let ds = Dataset::from_folder(root)?;
    let pipeline = Pipeline::two_views(ViewAug::simclr(size), ViewAug::simclr(size));
    let cfg = LoaderConfig {
        batch_size,
        workers,
        prefetch: 2 * workers.max(1),
        cache: false,
        drop_last: true,
        seed: 1,
        ..LoaderConfig::default()
    };
    let mut loader = Loader::new(&ds, pipeline, cfg)?;
    let t0 = Instant::now();
    let mut done = 0usize;
    while done < images {
        let before = done;
        for b in loader.epoch() {
            done += b?.labels.len();
            if done >= images {
                break;
            }
        }
        if done == before {
            break;
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    Ok(PipelineBench { images: done, views: 2, workers, seconds, images_per_s: done as f64 / seconds.max(1e-9) })
}
