//! Parallel loader: worker threads decode and augment whole batches ahead of the consumer,
//! bounded by `prefetch`, and batches come out in order. Every random choice comes from
//! `Rng::for_parts(seed, [epoch, dataset index, view, ...])`, so the output does not depend on
//! the number of workers, and `LoaderState` (seed, epoch, next batch) is all a checkpoint needs.
use super::dataset::{Dataset, Sample};
use super::decode::decode_file;
use super::error::DataError;
use super::rng::Rng;
use super::tile::{Img, Scaling, Tile};
use crate::augment::{ot, Pipeline};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

#[derive(Clone, Debug, PartialEq)]
pub struct LoaderConfig {
    pub batch_size: usize,
    pub shuffle: bool,
    pub drop_last: bool,
    pub seed: u64,
    /// Decode/augment threads; 0 runs everything on the caller's thread.
    pub workers: usize,
    /// Batches in flight ahead of the consumer (at least 1).
    pub prefetch: usize,
    /// Bands fed to the network (3 for RGB; see `Tile::to_img` for conversions).
    pub bands: usize,
    pub scaling: Scaling,
    /// Keep decoded tiles in memory after first use (EuroSAT RGB: ~330 MB as u8).
    pub cache: bool,
    /// Stop at the first unreadable file instead of reporting it and using the next sample.
    pub strict: bool,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 64,
            shuffle: true,
            drop_last: true,
            seed: 0,
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            prefetch: 4,
            bands: 3,
            scaling: Scaling::default(),
            cache: false,
            strict: false,
        }
    }
}

/// Where the loader is: the batch `batch` of epoch `epoch` is delivered next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoaderState {
    pub seed: u64,
    pub epoch: u64,
    pub batch: u64,
}

/// One batch: each view is an NCHW f32 buffer of shape `view_shapes[v]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub views: Vec<Vec<f32>>,
    pub view_shapes: Vec<[usize; 4]>,
    pub labels: Vec<i64>,
    /// Dataset indices actually used (a substitute appears where a file was unreadable).
    pub indices: Vec<usize>,
    pub epoch: u64,
    pub batch: u64,
    /// Loader state to save in a checkpoint taken after this batch.
    pub next_state: LoaderState,
}

// Stream tags, so each purpose draws from its own stream.
const TAG_SHUFFLE: u64 = 0x5348_5546;
const TAG_VIEW: u64 = 0x5649_4557;
const TAG_OT: u64 = 0x4f54;

struct Shared {
    samples: Vec<Sample>,
    pipeline: Pipeline,
    cfg: LoaderConfig,
    cache: Vec<OnceLock<Arc<Tile>>>,
    errors: Mutex<BTreeMap<PathBuf, String>>,
}

pub struct Loader {
    shared: Arc<Shared>,
    state: LoaderState,
}

impl Loader {
    pub fn new(ds: &Dataset, pipeline: Pipeline, cfg: LoaderConfig) -> Result<Loader, DataError> {
        if cfg.batch_size == 0 {
            return Err(DataError::Config("batch size must be at least 1".into()));
        }
        if pipeline.views.is_empty() {
            return Err(DataError::Config("the pipeline needs at least one view".into()));
        }
        if cfg.bands == 0 {
            return Err(DataError::Config("bands must be at least 1".into()));
        }
        if ds.samples.is_empty() {
            return Err(DataError::Config("the dataset is empty".into()));
        }
        if cfg.drop_last && ds.samples.len() < cfg.batch_size {
            return Err(DataError::Config(format!(
                "drop_last with batch size {} but only {} samples: no batch would be produced",
                cfg.batch_size,
                ds.samples.len()
            )));
        }
        let state = LoaderState { seed: cfg.seed, epoch: 0, batch: 0 };
        let cache = (0..ds.samples.len()).map(|_| OnceLock::new()).collect();
        let shared = Shared { samples: ds.samples.clone(), pipeline, cfg, cache, errors: Mutex::new(BTreeMap::new()) };
        Ok(Loader { shared: Arc::new(shared), state })
    }

    pub fn state(&self) -> LoaderState {
        self.state
    }

    /// Resume from a saved state. The seed must match the loader's configuration.
    pub fn set_state(&mut self, s: LoaderState) -> Result<(), DataError> {
        if s.seed != self.shared.cfg.seed {
            return Err(DataError::Config(format!(
                "checkpoint loader seed {} differs from --seed {}",
                s.seed, self.shared.cfg.seed
            )));
        }
        if s.batch as usize > self.batches_per_epoch() {
            return Err(DataError::Config(format!(
                "checkpoint batch {} beyond the epoch's {} batches",
                s.batch,
                self.batches_per_epoch()
            )));
        }
        self.state = s;
        Ok(())
    }

    pub fn len_samples(&self) -> usize {
        self.shared.samples.len()
    }

    pub fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.shared.samples.len(), self.shared.cfg.batch_size);
        if self.shared.cfg.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// Unreadable files met so far, with the reason (each reported once).
    pub fn errors(&self) -> Vec<(PathBuf, String)> {
        self.shared.errors.lock().map(|m| m.iter().map(|(p, r)| (p.clone(), r.clone())).collect()).unwrap_or_default()
    }

    /// The sample order of an epoch: a seeded shuffle, or dataset order.
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        epoch_order(&self.shared, epoch)
    }

    /// Builds one batch synchronously (what each worker does).
    pub fn load_batch(&self, epoch: u64, batch: u64) -> Result<Batch, DataError> {
        let order = epoch_order(&self.shared, epoch);
        build_batch(&self.shared, &order, epoch, batch, self.batches_per_epoch() as u64)
    }

    /// Iterates the rest of the current epoch, then moves the state to the next epoch.
    pub fn epoch(&mut self) -> EpochIter<'_> {
        EpochIter::start(self)
    }
}

fn epoch_order(sh: &Shared, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sh.samples.len()).collect();
    if sh.cfg.shuffle {
        Rng::for_parts(sh.cfg.seed, &[TAG_SHUFFLE, epoch]).shuffle(&mut order);
    }
    order
}

fn decode_cached(sh: &Shared, i: usize) -> Result<Arc<Tile>, DataError> {
    if let Some(t) = sh.cache.get(i).and_then(|c| c.get()) {
        return Ok(t.clone());
    }
    let s = sh.samples.get(i).ok_or_else(|| DataError::Config(format!("sample index {i} out of range")))?;
    let tile = Arc::new(decode_file(&s.path)?);
    if sh.cfg.cache {
        if let Some(c) = sh.cache.get(i) {
            let _ = c.set(tile.clone());
        }
    }
    Ok(tile)
}

/// Decodes sample `i` as a working image; on failure (not strict) reports the file once and
/// walks forward to the next readable sample, so the batch keeps its size deterministically.
fn load_img(sh: &Shared, i: usize) -> Result<(usize, Img), DataError> {
    let n = sh.samples.len();
    for step in 0..n {
        let j = (i + step) % n;
        let r = decode_cached(sh, j).and_then(|t| {
            t.to_img(sh.cfg.bands, sh.cfg.scaling).map_err(|e| DataError::decode(&sh.samples[j].path, e))
        });
        match r {
            Ok(img) => return Ok((j, img)),
            Err(e) if sh.cfg.strict => return Err(e),
            Err(e) => {
                if let DataError::Decode { path, reason } = &e {
                    if let Ok(mut m) = sh.errors.lock() {
                        if !m.contains_key(path) {
                            eprintln!("warning: unreadable image {} ({reason}); using the next sample", path.display());
                            m.insert(path.clone(), reason.clone());
                        }
                    }
                } else {
                    return Err(e);
                }
            }
        }
    }
    Err(DataError::Config("no readable image in the dataset".into()))
}

fn build_batch(sh: &Shared, order: &[usize], epoch: u64, batch: u64, per_epoch: u64) -> Result<Batch, DataError> {
    let bs = sh.cfg.batch_size;
    let start = (batch as usize)
        .checked_mul(bs)
        .filter(|&s| s < order.len())
        .ok_or_else(|| DataError::Config(format!("batch {batch} is past the end of the epoch")))?;
    let end = (start + bs).min(order.len());
    let mut indices = Vec::with_capacity(end - start);
    let mut imgs = Vec::with_capacity(end - start);
    for &i in &order[start..end] {
        let (j, img) = load_img(sh, i)?;
        indices.push(j);
        imgs.push(img);
    }
    let labels = indices.iter().map(|&j| sh.samples[j].label).collect();
    let n = imgs.len();
    let c = sh.cfg.bands;
    let mut views = Vec::new();
    let mut view_shapes = Vec::new();
    for (v, aug) in sh.pipeline.views.iter().enumerate() {
        let s = aug.size.max(1);
        let plane = c * s * s;
        let mut buf = vec![0.0f32; n * plane];
        for (k, img) in imgs.iter().enumerate() {
            let idx = indices[k] as u64;
            let mut src = std::borrow::Cow::Borrowed(img);
            if let Some(otc) = sh.pipeline.ot.filter(|o| o.view == v && n > 1) {
                let mut r = Rng::for_parts(sh.cfg.seed, &[TAG_OT, epoch, idx]);
                if r.chance(otc.p) {
                    // Colours come from another image of this batch.
                    let mut partner = r.below(n - 1);
                    if partner >= k {
                        partner += 1;
                    }
                    src = std::borrow::Cow::Owned(ot::ot_colour_transfer(img, &imgs[partner], otc.samples, &mut r));
                }
            }
            let mut rng = Rng::for_parts(sh.cfg.seed, &[TAG_VIEW, epoch, idx, v as u64]);
            let out = aug.apply(&src, &mut rng);
            out.write_chw(&aug.mean, &aug.std, &mut buf[k * plane..(k + 1) * plane]);
        }
        views.push(buf);
        view_shapes.push([n, c, s, s]);
    }
    let next_state = if batch + 1 >= per_epoch {
        LoaderState { seed: sh.cfg.seed, epoch: epoch + 1, batch: 0 }
    } else {
        LoaderState { seed: sh.cfg.seed, epoch, batch: batch + 1 }
    };
    Ok(Batch { views, view_shapes, labels, indices, epoch, batch, next_state })
}

struct Sched {
    next: u64,
    consumed: u64,
    stop: bool,
}

/// Iterator over the remaining batches of one epoch. Dropping it stops the workers.
pub struct EpochIter<'a> {
    loader: &'a mut Loader,
    order: Arc<Vec<usize>>,
    cur: u64,
    end: u64,
    sched: Arc<(Mutex<Sched>, Condvar)>,
    rx: Option<crossbeam_channel::Receiver<(u64, Result<Batch, DataError>)>>,
    pending: HashMap<u64, Result<Batch, DataError>>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl<'a> EpochIter<'a> {
    fn start(loader: &'a mut Loader) -> Self {
        let st = loader.state;
        let end = loader.batches_per_epoch() as u64;
        let order = Arc::new(epoch_order(&loader.shared, st.epoch));
        let sched = Arc::new((Mutex::new(Sched { next: st.batch, consumed: st.batch, stop: false }), Condvar::new()));
        let mut handles = Vec::new();
        let mut rx = None;
        let workers = loader.shared.cfg.workers;
        if workers > 0 && st.batch < end {
            let (tx, r) = crossbeam_channel::unbounded();
            rx = Some(r);
            let prefetch = loader.shared.cfg.prefetch.max(1) as u64;
            for _ in 0..workers {
                let (sh, order, sched, tx) = (loader.shared.clone(), order.clone(), sched.clone(), tx.clone());
                let epoch = st.epoch;
                handles.push(std::thread::spawn(move || loop {
                    let k = {
                        let (m, cv) = &*sched;
                        let Ok(mut g) = m.lock() else { return };
                        while !g.stop && g.next < end && g.next >= g.consumed + prefetch {
                            g = match cv.wait(g) {
                                Ok(g) => g,
                                Err(_) => return,
                            };
                        }
                        if g.stop || g.next >= end {
                            return;
                        }
                        g.next += 1;
                        g.next - 1
                    };
                    let r = build_batch(&sh, &order, epoch, k, end);
                    if tx.send((k, r)).is_err() {
                        return;
                    }
                }));
            }
        }
        EpochIter { cur: st.batch, end, order, sched, rx, pending: HashMap::new(), handles, loader }
    }

    fn stop(&mut self) {
        if let Ok(mut g) = self.sched.0.lock() {
            g.stop = true;
        }
        self.sched.1.notify_all();
        self.rx = None;
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

impl Iterator for EpochIter<'_> {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.cur >= self.end {
            return None;
        }
        let k = self.cur;
        let r = match &self.rx {
            None => build_batch(&self.loader.shared, &self.order, self.loader.state.epoch, k, self.end),
            Some(rx) => loop {
                if let Some(r) = self.pending.remove(&k) {
                    break r;
                }
                match rx.recv() {
                    Ok((j, r)) => {
                        self.pending.insert(j, r);
                    }
                    Err(_) => break Err(DataError::Config("loader workers stopped unexpectedly".into())),
                }
            },
        };
        self.cur += 1;
        if let Ok(mut g) = self.sched.0.lock() {
            g.consumed = self.cur;
        }
        self.sched.1.notify_all();
        match &r {
            Ok(b) => self.loader.state = b.next_state,
            Err(_) => {
                // A failed batch ends the epoch's iteration; the state stays at that batch.
                self.cur = self.end;
                self.stop();
            }
        }
        Some(r)
    }
}

impl Drop for EpochIter<'_> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Decodes every file once (in parallel) and returns the dataset without unreadable files,
/// plus the list of those files with reasons. Under `strict` the first bad file is an error.
pub fn check_files(ds: &Dataset, workers: usize, strict: bool) -> Result<(Dataset, Vec<(PathBuf, String)>), DataError> {
    let n = ds.samples.len();
    let workers = workers.max(1).min(n.max(1));
    let ok: Vec<Option<String>> = std::thread::scope(|s| {
        let chunks: Vec<_> = (0..workers)
            .map(|w| {
                s.spawn(move || {
                    (w..n)
                        .step_by(workers)
                        .map(|i| (i, decode_file(&ds.samples[i].path).err().map(|e| e.to_string())))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = vec![None; n];
        for h in chunks {
            for (i, e) in h.join().unwrap_or_default() {
                all[i] = e;
            }
        }
        all
    });
    let mut bad = Vec::new();
    let mut keep = Vec::new();
    for (i, e) in ok.into_iter().enumerate() {
        match e {
            Some(reason) => {
                if strict {
                    return Err(DataError::decode(&ds.samples[i].path, reason));
                }
                bad.push((ds.samples[i].path.clone(), reason));
            }
            None => keep.push(i),
        }
    }
    Ok((ds.subset(&keep), bad))
}

/// Band count of the dataset, from its first readable file.
pub fn probe_bands(ds: &Dataset) -> Result<usize, DataError> {
    let mut last = None;
    for s in ds.samples.iter().take(64) {
        match decode_file(&s.path) {
            Ok(t) => return Ok(t.bands),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| DataError::Config("the dataset is empty".into())))
}
