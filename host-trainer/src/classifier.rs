//! Classifier checkpoints: backbone + torchvision head (`fc`, `classifier.*`) in one
//! `model.safetensors` (PyTorch `state_dict` names) and a `classifier.json` sidecar saying what the
//! weights are (architecture, input, classes, normalisation) and where they came from (method, data,
//! split, label budget, host metrics). `rsim finetune` writes one, `rsim distill` reads and writes
//! them, `rsim export` turns one into an `.rsm` or ONNX model.
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rsim_model::arch::Arch;
use tch::{Device, Tensor};

use crate::bank::Bank;
use crate::checkpoint;
use crate::net::{named_sorted, Net};

pub const WEIGHTS: &str = "model.safetensors";
pub const SIDECAR: &str = "classifier.json";

/// What `classifier.json` holds.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClassifierMeta {
    pub arch: String,
    pub bands: usize,
    /// Side of the square input the network was trained at.
    pub size: usize,
    /// Class names in label order (empty: a backbone without a head).
    pub classes: Vec<String>,
    /// Per-band normalisation on the 0..1 pixel scale: x' = (x - mean) / std.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// How the weights were made, e.g. `finetune full from runs/ssl/backbone.safetensors`.
    pub method: String,
    /// The image folder trained on.
    pub data: String,
    /// e.g. `per-class sorted, train share 0.8`.
    pub split: String,
    /// Label budget (per class > 1, fraction <= 1); None: every train label (or none used).
    pub labels: Option<f64>,
    /// Host-side scores on the test split (`test_oa`, `test_aa`, `test_kappa`, ...).
    pub metrics: serde_json::Map<String, serde_json::Value>,
}

impl ClassifierMeta {
    pub fn has_head(&self) -> bool {
        !self.classes.is_empty()
    }

    pub fn arch(&self) -> Result<Arch, String> {
        Arch::parse(&self.arch)
    }
}

/// Normalisation used by every trainer path (banks and views map [0, 1] to [-1, 1]).
pub fn trainer_norm(bands: usize) -> (Vec<f32>, Vec<f32>) {
    (vec![0.5; bands], vec![0.5; bands])
}

/// Writes `dir/model.safetensors` and `dir/classifier.json` (each through temp + rename).
pub fn save(dir: &Path, net: &Net, meta: &ClassifierMeta) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    checkpoint::save_tensors(&dir.join(WEIGHTS), &named_sorted(&net.vs))?;
    let json = serde_json::to_vec_pretty(meta).map_err(|e| e.to_string())?;
    rsim_model::write::write_atomic(&dir.join(SIDECAR), &json)
        .map_err(|e| format!("writing {}: {e}", dir.join(SIDECAR).display()))
}

pub fn read_meta(dir: &Path) -> Result<ClassifierMeta, String> {
    let p = dir.join(SIDECAR);
    let bytes = std::fs::read(&p).map_err(|e| format!("reading {}: {e}", p.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{} is not a classifier sidecar: {e}", p.display()))
}

/// Loads a classifier checkpoint directory into a fresh [`Net`] (with its head when it has one).
pub fn load(dir: &Path, device: Device) -> Result<(Net, ClassifierMeta), String> {
    let meta = read_meta(dir)?;
    let arch = meta.arch()?;
    let classes = meta.has_head().then_some(meta.classes.len());
    let net = Net::new(arch, meta.bands, classes, device);
    let tensors = checkpoint::load_tensors(&dir.join(WEIGHTS))?;
    load_into(&net, tensors, &dir.join(WEIGHTS), &meta.arch, None)?;
    Ok((net, meta))
}

/// Copies `tensors` into `net` and insists every variable was found with its exact shape, naming the
/// first missing or mismatched tensor otherwise. A `backbone.` prefix on names is accepted. With
/// `only`, just the variables for which it returns true are required (e.g. the backbone of a
/// classifier net loaded from a backbone-only file).
pub fn load_into(
    net: &Net,
    tensors: Vec<(String, Tensor)>,
    path: &Path,
    arch: &str,
    only: Option<&dyn Fn(&str) -> bool>,
) -> Result<(), String> {
    let mut vars = net.vs.variables();
    let mut seen = HashSet::new();
    tch::no_grad(|| -> Result<(), String> {
        for (k, t) in tensors {
            let k = k.strip_prefix("backbone.").map(str::to_string).unwrap_or(k);
            if only.is_some_and(|f| !f(&k)) {
                continue;
            }
            if let Some(dst) = vars.get_mut(&k) {
                if dst.size() != t.size() {
                    return Err(format!(
                        "{}: tensor '{k}' has shape {:?} but {arch} needs {:?} (checkpoint of another architecture, band count or class count?)",
                        path.display(),
                        t.size(),
                        dst.size()
                    ));
                }
                dst.copy_(&t.to_device(dst.device()));
                seen.insert(k);
            }
        }
        Ok(())
    })?;
    let mut missing: Vec<&String> = vars.keys().filter(|k| !seen.contains(*k) && only.is_none_or(|f| f(k))).collect();
    missing.sort();
    if let Some(first) = missing.first() {
        return Err(format!(
            "{}: tensor '{first}' of {arch} is missing ({} of {} missing; checkpoint of another architecture?)",
            path.display(),
            missing.len(),
            vars.len()
        ));
    }
    Ok(())
}

/// Variable names of `arch`'s backbone alone (what a head-less net holds).
pub fn backbone_keys(arch: Arch, bands: usize) -> HashSet<String> {
    let net = Net::new(arch, bands, None, Device::Cpu);
    net.vs.variables().into_keys().collect()
}

/// The head's (trainable) parameters of a net built with classes: everything that is not backbone.
pub fn head_params(net: &Net) -> Vec<(String, Tensor)> {
    let bb = backbone_keys(net.arch, net.bands);
    named_sorted(&net.vs).into_iter().filter(|(k, _)| !bb.contains(k)).collect()
}

/// Stops gradients into the backbone (linear heads on frozen features); returns the head's parameters.
pub fn freeze_backbone(net: &Net) -> Vec<(String, Tensor)> {
    let head = head_params(net);
    let hk: HashSet<&String> = head.iter().map(|(k, _)| k).collect();
    for (k, t) in net.vs.variables() {
        if !hk.contains(&k) {
            let _ = t.set_requires_grad(false);
        }
    }
    head
}

/// A teacher or starting point on disk, resolved from a run directory or a file.
pub enum Source {
    /// A classifier checkpoint directory (sidecar + weights; may be a backbone without head).
    Classifier(PathBuf),
    /// Backbone weights (safetensors, torchvision keys) and the architecture they belong to, if known.
    Backbone { weights: PathBuf, arch: Option<String>, bands: Option<usize> },
}

/// `path` may be a classifier directory, a pretrain run (backbone.safetensors; arch from its last
/// checkpoint's config) or a `.safetensors` file.
pub fn resolve(path: &Path) -> Result<Source, String> {
    if path.join(SIDECAR).is_file() {
        return Ok(Source::Classifier(path.to_path_buf()));
    }
    if path.is_file() {
        return Ok(Source::Backbone { weights: path.to_path_buf(), arch: None, bands: None });
    }
    let w = path.join("backbone.safetensors");
    if w.is_file() {
        let cfg = latest_state(path);
        let arch = cfg.as_ref().and_then(|c| c["config"]["arch"].as_str().map(str::to_string));
        let bands = cfg.as_ref().and_then(|c| c["config"]["bands"].as_u64()).map(|b| b as usize);
        return Ok(Source::Backbone { weights: w, arch, bands });
    }
    Err(format!(
        "{}: neither a classifier checkpoint ({SIDECAR} + {WEIGHTS}), a pretrain run (backbone.safetensors) nor a safetensors file",
        path.display()
    ))
}

/// `state.json` of a run's newest checkpoint (pretrain writes its config there), if readable.
fn latest_state(run: &Path) -> Option<serde_json::Value> {
    let name = std::fs::read_to_string(run.join("ckpt").join("LATEST")).ok()?;
    let bytes = std::fs::read(run.join("ckpt").join(name.trim()).join("state.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Eval-mode logits of a net with a head over the whole bank, on the CPU.
pub fn logits(net: &Net, bank: &Bank, device: Device, batch: i64) -> Result<Tensor, String> {
    tch::no_grad(|| {
        let n = bank.len() as i64;
        let mut out = Vec::new();
        let mut i = 0;
        while i < n {
            let len = batch.min(n - i);
            let idx = Tensor::arange_start(i, i + len, (tch::Kind::Int64, Device::Cpu));
            let x = bank.batch(&idx, device, 0.5, 0.5);
            let l = net.forward(&x, false).1.ok_or("the network has no classifier head")?;
            out.push(l.to_device(Device::Cpu));
            i += len;
        }
        Ok(Tensor::cat(&out, 0))
    })
}

/// Scores a net with a head on `test`; returns the scores and the metrics map for the sidecar.
pub fn evaluate(
    net: &Net,
    test: &Bank,
    device: Device,
) -> Result<(crate::metrics::Scores, serde_json::Map<String, serde_json::Value>), String> {
    if net.num_classes.is_none() {
        return Err("cannot score a backbone without a classifier head".into());
    }
    let pred =
        crate::probe::predict_with(test, device, |x| net.forward(x, false).1.expect("checked: the net has a head"))?;
    let s = crate::probe::score(test.classes.len(), &test.labels, &pred)?;
    let mut m = serde_json::Map::new();
    m.insert("test_oa".into(), s.oa.into());
    m.insert("test_aa".into(), s.aa.into());
    m.insert("test_kappa".into(), s.kappa.into());
    m.insert("test_images".into(), test.len().into());
    Ok((s, m))
}

/// `rsim finetune`: a classifier checkpoint from a backbone (or a random init) and a label budget.
#[derive(clap::Args, Debug)]
pub struct FinetuneArgs {
    #[command(flatten)]
    pub common: crate::cli::Common,
    /// Backbone weights: a safetensors file (torchvision keys), a pretrain run or a classifier checkpoint.
    #[arg(long)]
    pub backbone: Option<PathBuf>,
    /// Start from a random initialisation (the supervised-from-scratch baseline) instead of --backbone.
    #[arg(long)]
    pub random: bool,
    /// Label budget per class (> 1: the first N sorted train files per class; <= 1: that fraction). Default: every train label.
    #[arg(long)]
    pub labels: Option<f64>,
    /// linear: frozen backbone (BatchNorm statistics frozen), only the head trains; full: end-to-end fine-tune.
    #[arg(long, default_value = "full")]
    pub mode: String,
    /// Optimiser steps (AdamW, warm-up + cosine, batches of mild views).
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
    /// Peak learning rate (default 1e-3 for full, 1e-2 for linear).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Images per batch.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Output directory: model.safetensors + classifier.json.
    #[arg(long)]
    pub out: PathBuf,
}

/// Device and thread settings of the shared flags (also used by distill).
pub fn setup(c: &crate::cli::Common) -> Result<Device, String> {
    if c.threads > 0 {
        tch::set_num_threads(c.threads);
    }
    if !(c.train_share > 0.0 && c.train_share < 1.0) {
        return Err(format!("--train-share must be in (0, 1) so a test split remains, got {}", c.train_share));
    }
    crate::cli::device(&c.device)
}

/// Train and test banks of the per-class sorted split.
pub fn load_split(c: &crate::cli::Common) -> Result<(Bank, Bank), String> {
    use crate::bank::Part;
    let train = Bank::load(&c.data, Part::Train(c.train_share), c.bands, c.size, c.strict)?;
    let test = Bank::load(&c.data, Part::Test(c.train_share), c.bands, c.size, c.strict)?;
    Ok((train, test))
}

/// Loads backbone weights from any [`Source`] into `net` (its head, if any, stays as initialised).
pub fn load_backbone(net: &Net, from: &Path) -> Result<(), String> {
    let weights = match resolve(from)? {
        Source::Classifier(dir) => dir.join(WEIGHTS),
        Source::Backbone { weights, .. } => weights,
    };
    let bb = backbone_keys(net.arch, net.bands);
    let tensors = checkpoint::load_tensors(&weights)?;
    load_into(net, tensors, &weights, &net.arch.name(), Some(&|k: &str| bb.contains(k)))
}

pub fn finetune(a: &FinetuneArgs) -> Result<(), String> {
    let dev = setup(&a.common)?;
    let from = match (&a.backbone, a.random) {
        (Some(_), true) => return Err("give either --backbone or --random, not both".into()),
        (None, false) => return Err("give --backbone PATH or --random".into()),
        (b, _) => b.clone(),
    };
    let linear = match a.mode.as_str() {
        "linear" => true,
        "full" => false,
        o => return Err(format!("unknown --mode '{o}' (linear or full)")),
    };
    if linear && from.is_none() {
        return Err("--mode linear with --random would train a head on random features; use --mode full for the scratch baseline".into());
    }
    let arch = Arch::parse(&a.common.arch)?;
    let (train, test) = load_split(&a.common)?;
    let sel = match a.labels {
        Some(b) => train.budget_indices(b)?,
        None => (0..train.len() as i64).collect(),
    };
    let labelled = crate::probe::subset(&train, &sel);
    tch::manual_seed(a.common.seed as i64);
    let net = Net::new(arch, a.common.bands, Some(train.classes.len()), dev);
    if let Some(p) = &from {
        load_backbone(&net, p)?;
    }
    let params = if linear { freeze_backbone(&net) } else { named_sorted(&net.vs) };
    let cfg = crate::probe::FinetuneCfg {
        steps: a.steps,
        batch: a.batch,
        lr: a.lr.unwrap_or(if linear { 1e-2 } else { 1e-3 }),
        weight_decay: 1e-4,
        seed: a.common.seed,
    };
    eprintln!(
        "rsim: {} fine-tune of {} on {} labelled of {} train images, {} steps",
        a.mode,
        arch.name(),
        labelled.len(),
        train.len(),
        cfg.steps
    );
    let losses =
        crate::probe::fit(params, &labelled, &cfg, dev, |x| net.forward(x, !linear).1.expect("built with a head"))?;
    let (s, mut metrics) = evaluate(&net, &test, dev)?;
    if let Some(l) = losses.last() {
        metrics.insert("final_train_loss".into(), (*l).into());
    }
    metrics.insert("train_labels".into(), labelled.len().into());
    let (mean, std) = trainer_norm(a.common.bands);
    let origin = from.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "random init".into());
    let meta = ClassifierMeta {
        arch: arch.name(),
        bands: a.common.bands,
        size: a.common.size,
        classes: train.classes.clone(),
        mean,
        std,
        method: format!("finetune {} from {origin}, {} steps", a.mode, cfg.steps),
        data: a.common.data.display().to_string(),
        split: split_desc(a.common.train_share),
        labels: a.labels,
        metrics,
    };
    save(&a.out, &net, &meta)?;
    println!(
        "test OA {:.2}%  AA {:.2}%  kappa {:.4}  ({} test images)",
        100.0 * s.oa,
        100.0 * s.aa,
        s.kappa,
        test.len()
    );
    eprintln!("rsim: classifier checkpoint in {}", a.out.display());
    Ok(())
}

pub fn split_desc(train_share: f64) -> String {
    format!("per-class sorted file names, first {train_share} train / rest test")
}
