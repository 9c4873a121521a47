//! A labelled image set decoded once into one tensor [N, bands, size, size] (f16 in [0, 1]), for
//! tensor-side augmentation and for feature extraction in probes. Listing, splits and decoding are
//! the data pipeline's (`crate::data`); this only stacks the decoded tiles.
use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::augment::geometric::resize;
use crate::data::split::split_per_class;
use crate::data::{decode::decode_file, Dataset, Scaling};

pub struct Bank {
    /// [N, bands, size, size], Kind::Half, values in [0, 1].
    pub images: Tensor,
    /// [N] i64 class indices.
    pub labels: Tensor,
    pub classes: Vec<String>,
    /// Unreadable files skipped (reported on stderr by path).
    pub skipped: usize,
}

/// Which part of the seeds' per-class sorted split to load.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Part {
    All,
    /// The first `share` of each class.
    Train(f64),
    /// The rest after the first `share`.
    Test(f64),
}

impl Bank {
    pub fn load(root: &Path, part: Part, bands: usize, size: usize, strict: bool) -> Result<Bank, String> {
        let ds = Dataset::from_folder(root).map_err(|e| e.to_string())?;
        let by_class = ds.by_class();
        let idx: Vec<usize> = match part {
            Part::All => by_class.concat(),
            Part::Train(s) => split_per_class(&by_class, &[s, 1.0 - s]).map_err(|e| e.to_string())?.swap_remove(0),
            Part::Test(s) => split_per_class(&by_class, &[s, 1.0 - s]).map_err(|e| e.to_string())?.swap_remove(1),
        };
        if idx.is_empty() {
            return Err(format!("no images selected under {}", root.display()));
        }
        let per = bands * size * size;
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8);
        let chunk = idx.len().div_ceil(threads);
        // Decode in parallel; each worker fills its own slice of the output buffer.
        let mut pixels = vec![0f32; idx.len() * per];
        let mut ok = vec![true; idx.len()];
        let errors: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = pixels
                .chunks_mut(chunk * per)
                .zip(ok.chunks_mut(chunk))
                .zip(idx.chunks(chunk))
                .map(|((px, okc), ids)| {
                    let ds = &ds;
                    s.spawn(move || {
                        let mut errs = Vec::new();
                        for (k, &i) in ids.iter().enumerate() {
                            let path = &ds.samples[i].path;
                            let img = decode_file(path)
                                .map_err(|e| e.to_string())
                                .and_then(|t| t.to_img(bands, Scaling::default()));
                            match img {
                                Ok(img) => {
                                    let img =
                                        if img.h != size || img.w != size { resize(&img, size, size) } else { img };
                                    let out = &mut px[k * per..(k + 1) * per];
                                    // HWC -> CHW
                                    for y in 0..size {
                                        for x in 0..size {
                                            for b in 0..bands {
                                                out[b * size * size + y * size + x] =
                                                    img.data[(y * size + x) * bands + b];
                                            }
                                        }
                                    }
                                }
                                Err(e) => {
                                    okc[k] = false;
                                    errs.push(format!("{}: {e}", path.display()));
                                }
                            }
                        }
                        errs
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().expect("decoder thread panicked")).collect()
        });
        for e in &errors {
            eprintln!("rsim: unreadable image skipped: {e}");
        }
        if strict && !errors.is_empty() {
            return Err(format!("{} unreadable image(s) under --strict; first: {}", errors.len(), errors[0]));
        }
        let keep: Vec<i64> = (0..idx.len()).filter(|&k| ok[k]).map(|k| k as i64).collect();
        let labels: Vec<i64> = idx.iter().map(|&i| ds.samples[i].label).collect();
        let n = idx.len() as i64;
        let images = Tensor::from_slice(&pixels).view([n, bands as i64, size as i64, size as i64]);
        let keep_t = Tensor::from_slice(&keep);
        let images = images.index_select(0, &keep_t).to_kind(Kind::Half);
        let labels = Tensor::from_slice(&labels).index_select(0, &keep_t);
        Ok(Bank { images, labels, classes: ds.classes.clone(), skipped: errors.len() })
    }

    pub fn len(&self) -> usize {
        self.images.size()[0] as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first `per_class` samples of each class (the bank keeps the seeds' sorted order), or a
    /// fraction when `per_class <= 1`.
    pub fn budget_indices(&self, budget: f64) -> Result<Vec<i64>, String> {
        let labels: Vec<i64> = Vec::<i64>::try_from(&self.labels).map_err(|e| e.to_string())?;
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); self.classes.len()];
        for (i, &l) in labels.iter().enumerate() {
            if let Some(v) = by_class.get_mut(l as usize) {
                v.push(i);
            }
        }
        let sel = crate::data::split::apply_budget(&by_class, budget, crate::data::split::Pick::First)
            .map_err(|e| e.to_string())?;
        Ok(sel.into_iter().map(|i| i as i64).collect())
    }

    /// Images `idx` as f32 on `device`, normalised with `mean`/`std`.
    pub fn batch(&self, idx: &Tensor, device: Device, mean: f64, std: f64) -> Tensor {
        let x = self.images.index_select(0, idx).to_device(device).to_kind(Kind::Float);
        (x - mean) / std
    }
}
