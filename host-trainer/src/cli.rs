//! `rsim pretrain` and `rsim probe`: flags, then the library calls.
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use rsim_model::arch::Arch;
use tch::Device;

use crate::bank::{Bank, Part};
use crate::loss::FalseCfg;
use crate::methods::{MethodCfg, MethodKind};
use crate::net::Net;
use crate::optim::{OptConfig, OptKind};
use crate::probe;
use crate::train::{self, Amp, PretrainCfg, Trainer};
use crate::views::ViewCfg;

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Self-supervised pretraining (SimCLR, MoCo v2, BYOL) on an image folder.
    Pretrain(PretrainArgs),
    /// Few-label evaluation of a backbone: linear probe, kNN, fine-tune, supervised from scratch.
    Probe(ProbeArgs),
    /// A classifier checkpoint (backbone + head, classifier.json) from a backbone and a label budget.
    Finetune(crate::classifier::FinetuneArgs),
    /// Distil a teacher (classifier or backbone) into a compact student.
    Distill(crate::distill::DistillArgs),
    /// A classifier checkpoint to .rsm (f32/f16, with provenance) or ONNX; an existing .rsm to ONNX (int8 as per-channel QDQ).
    Export(crate::export::ExportArgs),
    /// Quantization-aware fine-tuning of a float .rsm (fake-quant, distillation from itself) to int8.
    Qat(crate::qat::QatArgs),
    /// Throughput figures (used by `cargo xtask bench train`).
    #[command(subcommand)]
    Bench(BenchCmd),
}

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    #[command(flatten)]
    Core(crate::bench::BenchCmd),
    /// The data pipeline (decode + two SimCLR views in Rust worker threads), images/s.
    Data(DataBenchArgs),
}

#[derive(Args, Debug)]
pub struct DataBenchArgs {
    /// Image folder (class subfolders).
    #[arg(long)]
    pub data: PathBuf,
    /// Source images to push through (decoded from disk each time, no cache).
    #[arg(long, default_value_t = 4096)]
    pub images: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Side of the square views.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Image folder with one subfolder per class (class names sorted; labels are ignored by pretrain).
    #[arg(long)]
    pub data: PathBuf,
    /// Share of each class (sorted file names) used as the train split; the rest is the test split.
    #[arg(long, default_value_t = 0.8)]
    pub train_share: f64,
    /// Backbone: resnet8, resnet18, resnet50, mobilenet_v2[_WIDTH], mobilenet_v3_small.
    #[arg(long, default_value = "resnet18")]
    pub arch: String,
    /// Input bands; the first conv takes this many (1-band images are replicated, extra bands dropped).
    #[arg(long, default_value_t = 3)]
    pub bands: usize,
    /// Side of the square network input; images of other sizes are resized when loaded.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// cpu, cuda, cuda:N, or auto (CUDA when available).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Torch intra-op CPU threads (0: torch's default).
    #[arg(long, default_value_t = 0)]
    pub threads: i32,
    /// Stop on the first unreadable image instead of reporting and skipping it.
    #[arg(long)]
    pub strict: bool,
    /// Seed for initialisation, sampling and augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Args, Debug)]
pub struct PretrainArgs {
    #[command(flatten)]
    pub common: Common,
    /// Run directory: metrics.jsonl, loss.png, ckpt/, backbone.safetensors (torchvision keys).
    #[arg(long)]
    pub out: PathBuf,
    /// simclr, moco (v2: momentum encoder + queue) or byol.
    #[arg(long, default_value = "simclr")]
    pub method: String,
    /// FALSE false-negative-aware contrastive loss (SimCLR and MoCo).
    #[arg(long = "false")]
    pub false_neg: bool,
    /// FALSE: share of the false negative's weight moved to the positives.
    #[arg(long, default_value_t = 1.0)]
    pub false_alpha: f64,
    /// FALSE: only act when the anchor's positive cosine is at least this.
    #[arg(long, default_value_t = 0.9)]
    pub false_threshold: f64,
    /// Contrastive temperature (default: 0.2 for SimCLR and MoCo).
    #[arg(long)]
    pub tau: Option<f64>,
    /// Projector hidden width (default 512; BYOL 1024).
    #[arg(long)]
    pub proj_hidden: Option<usize>,
    /// Projection size (default 128; BYOL 256).
    #[arg(long)]
    pub proj_dim: Option<usize>,
    /// MoCo queue length.
    #[arg(long, default_value_t = 4096)]
    pub queue: usize,
    /// MoCo momentum / BYOL base EMA rate (default 0.99).
    #[arg(long)]
    pub momentum: Option<f64>,
    /// sgd, lars or adamw (state saved in checkpoints, so resume is exact).
    #[arg(long, default_value = "sgd")]
    pub optimizer: String,
    /// Peak learning rate (after warm-up; cosine decay to 0).
    #[arg(long, default_value_t = 0.3)]
    pub lr: f64,
    /// Weight decay (not applied to biases and norm parameters).
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// Warm-up length in epochs.
    #[arg(long, default_value_t = 1.0)]
    pub warmup_epochs: f64,
    /// Training length in epochs over the train split (ignored with --steps).
    #[arg(long, default_value_t = 10.0)]
    pub epochs: f64,
    /// Training length in optimiser steps.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Images per batch (each gives two views).
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Smallest crop area of the random resized crop.
    #[arg(long, default_value_t = 0.2)]
    pub min_crop: f64,
    /// Checkpoint every N steps (0: only at the end).
    #[arg(long, default_value_t = 200)]
    pub ckpt_every: usize,
    /// Checkpoints kept.
    #[arg(long, default_value_t = 2)]
    pub keep: usize,
    /// Metrics line every N steps.
    #[arg(long, default_value_t = 10)]
    pub log_every: usize,
    /// Continue the run in --out from its latest checkpoint (exact: weights, optimiser, step, data order).
    #[arg(long)]
    pub resume: bool,
    /// Start from these backbone weights (safetensors, torchvision keys): TOV's second stage.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Class-balanced sampling (a class uniformly, then an image of it).
    #[arg(long)]
    pub balanced: bool,
    /// Stop (with a checkpoint) after this many minutes.
    #[arg(long)]
    pub minutes: Option<f64>,
    /// none, fp16 (CUDA autocast with dynamic loss scaling; ignored on CPU) or bf16 (autocast on CUDA and
    /// CPU, no loss scaling needed).
    #[arg(long, default_value = "none")]
    pub amp: String,
    /// Where views are made: `tensor` (decoded once into memory, batched tensor ops: fastest on small
    /// tiles) or `rust` (parallel Rust workers decode and augment each image: per-image recipes such as
    /// STICL's OT colour transfer and Gaussian blur; memory stays flat on large datasets).
    #[arg(long, default_value = "tensor")]
    pub pipeline: String,
    /// STICL: probability that the key view is recoloured by optimal transport onto another image of the
    /// batch (1,000 sampled pixels, exact assignment). Needs --pipeline rust.
    #[arg(long, default_value_t = 0.0)]
    pub ot_p: f64,
    /// Decode/augment worker threads for --pipeline rust (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub common: Common,
    /// Backbone weights (safetensors from `rsim pretrain`, torchvision keys); omit with --random.
    #[arg(long)]
    pub backbone: Option<PathBuf>,
    /// Evaluate a randomly initialised backbone (the random-frozen baseline).
    #[arg(long)]
    pub random: bool,
    /// Labels per class (> 1) or fraction per class (<= 1), comma-separated; first N sorted files.
    #[arg(long, default_value = "5,20,50,100", value_delimiter = ',')]
    pub labels: Vec<f64>,
    /// Which evaluations: linear, knn, finetune, scratch (supervised from random init).
    #[arg(long, default_value = "linear,knn", value_delimiter = ',')]
    pub eval: Vec<String>,
    /// Linear probe optimiser steps (full batch, Adam).
    #[arg(long, default_value_t = 500)]
    pub probe_steps: usize,
    /// kNN neighbours.
    #[arg(long, default_value_t = 20)]
    pub knn_k: i64,
    /// kNN vote temperature: weight exp(cos / T).
    #[arg(long, default_value_t = 0.07)]
    pub knn_t: f64,
    /// Fine-tune / scratch optimiser steps per budget.
    #[arg(long, default_value_t = 300)]
    pub finetune_steps: usize,
    /// Fine-tune / scratch peak learning rate (AdamW, warm-up + cosine).
    #[arg(long, default_value_t = 1e-3)]
    pub finetune_lr: f64,
    /// Write results.json (and confusion matrices) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn device(s: &str) -> Result<Device, String> {
    match s {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            if tch::Cuda::is_available() {
                Ok(Device::Cuda(0))
            } else {
                Err("--device cuda: CUDA is not available to libtorch (driver missing, or libtorch_cuda not linked)"
                    .into())
            }
        }
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) if tch::Cuda::is_available() => Ok(Device::Cuda(i)),
            _ => Err(format!("unknown or unavailable device '{other}' (expected auto, cpu, cuda, cuda:N)")),
        },
    }
}

fn setup(c: &Common) -> Result<Device, String> {
    if c.threads > 0 {
        tch::set_num_threads(c.threads);
    }
    if !(0.0..=1.0).contains(&c.train_share) || c.train_share == 0.0 {
        return Err(format!("--train-share must be in (0, 1], got {}", c.train_share));
    }
    device(&c.device)
}

fn load_train(c: &Common) -> Result<Bank, String> {
    let part = if c.train_share >= 1.0 { Part::All } else { Part::Train(c.train_share) };
    Bank::load(&c.data, part, c.bands, c.size, c.strict)
}

pub fn pretrain(a: &PretrainArgs) -> Result<(), String> {
    let dev = setup(&a.common)?;
    let kind = MethodKind::parse(&a.method)?;
    let mut m = MethodCfg::defaults(kind);
    m.tau = a.tau.unwrap_or(m.tau);
    m.proj_hidden = a.proj_hidden.unwrap_or(m.proj_hidden);
    m.proj_dim = a.proj_dim.unwrap_or(m.proj_dim);
    m.momentum = a.momentum.unwrap_or(m.momentum);
    m.queue = a.queue;
    if a.false_neg {
        if kind == MethodKind::Byol {
            return Err("--false applies to the contrastive methods (simclr, moco), not byol".into());
        }
        m.false_cfg = Some(FalseCfg { alpha: a.false_alpha, threshold: a.false_threshold });
    }
    let amp = match a.amp.as_str() {
        "none" => Amp::None,
        "fp16" => Amp::Fp16,
        "bf16" if crate::amp::available() => Amp::Bf16,
        "bf16" => return Err("--amp bf16: this rsim was built without libtorch's headers (see build.rs)".into()),
        o => return Err(format!("unknown --amp '{o}' (none, fp16 or bf16)")),
    };
    let rust_views = match a.pipeline.as_str() {
        "tensor" => false,
        "rust" => true,
        o => return Err(format!("unknown --pipeline '{o}' (tensor or rust)")),
    };
    if !(0.0..=1.0).contains(&a.ot_p) {
        return Err(format!("--ot-p must be a probability in [0, 1], got {}", a.ot_p));
    }
    if a.ot_p > 0.0 && !rust_views {
        return Err("--ot-p (STICL colour transfer) needs --pipeline rust".into());
    }
    if a.balanced && rust_views {
        return Err("--balanced sampling is available with --pipeline tensor only".into());
    }
    let t0 = std::time::Instant::now();
    let (bank, dataset) = if rust_views {
        let ds = crate::loader_views::train_split(&a.common.data, a.common.train_share)?;
        eprintln!(
            "rsim: {} images listed ({} classes); decoding and augmenting on the fly",
            ds.len(),
            ds.classes.len()
        );
        (None, Some(ds))
    } else {
        let bank = load_train(&a.common)?;
        eprintln!(
            "rsim: {} images ({} classes, {} skipped) decoded in {:.1}s",
            bank.len(),
            bank.classes.len(),
            bank.skipped,
            t0.elapsed().as_secs_f64()
        );
        (Some(bank), None)
    };
    let n_images = bank.as_ref().map(|b| b.len()).or(dataset.as_ref().map(|d| d.len())).unwrap_or(0);
    let spe = (n_images / a.batch.max(1)).max(1);
    let steps = a.steps.unwrap_or((a.epochs * spe as f64).round() as usize).max(1);
    let mut views = ViewCfg::ssl(a.common.size);
    views.crop_scale = (a.min_crop, 1.0);
    let cfg = PretrainCfg {
        arch: a.common.arch.clone(),
        bands: a.common.bands,
        method: m,
        opt: OptConfig::new(OptKind::parse(&a.optimizer)?, a.weight_decay),
        lr: a.lr,
        warmup_steps: ((a.warmup_epochs * spe as f64) as usize).min(steps / 2),
        steps,
        batch: a.batch,
        seed: a.common.seed,
        views,
        ckpt_every: a.ckpt_every,
        keep_ckpts: a.keep,
        log_every: a.log_every,
        amp,
        balanced: a.balanced,
    };
    let mut trainer = Trainer::new(cfg, dev)?;
    if let Some(p) = &a.init {
        trainer.init_backbone(p)?;
    }
    if a.resume {
        trainer.resume(&a.out)?;
        eprintln!("rsim: resumed {} at step {}", a.out.display(), trainer.step);
    }
    eprintln!(
        "rsim: {} {} on {:?}, {steps} steps of batch {} ({spe} per epoch)",
        kind.name(),
        a.common.arch,
        dev,
        a.batch
    );
    let losses = match (&bank, &dataset) {
        (Some(bank), _) => train::pretrain(&mut trainer, bank, &a.out, a.minutes, a.quiet)?,
        (None, Some(ds)) => {
            let pipeline = crate::loader_views::ssl_pipeline(&trainer.cfg.views, a.common.bands, a.ot_p);
            let workers = if a.workers == 0 {
                std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
            } else {
                a.workers
            };
            let lc = crate::data::LoaderConfig {
                batch_size: a.batch,
                seed: a.common.seed,
                workers,
                bands: a.common.bands,
                cache: true,
                strict: a.common.strict,
                ..Default::default()
            };
            let mut views = crate::loader_views::LoaderViews::new(ds, pipeline, lc, trainer.step, dev)?;
            train::pretrain_from(&mut trainer, &mut views, &a.out, a.minutes, a.quiet)?
        }
        _ => return Err("no images were loaded".into()),
    };
    if let Some(l) = losses.last() {
        eprintln!(
            "rsim: finished at step {} (last loss {l:.4}); backbone in {}",
            trainer.step,
            a.out.join("backbone.safetensors").display()
        );
    }
    Ok(())
}

fn load_net(a: &ProbeArgs, dev: Device, random_seed: u64) -> Result<Net, String> {
    let arch = Arch::parse(&a.common.arch)?;
    tch::manual_seed(random_seed as i64);
    let net = Net::new(arch, a.common.bands, None, dev);
    if let Some(p) = a.backbone.as_ref().filter(|_| !a.random) {
        let mut vars = net.vs.variables();
        let tensors = crate::checkpoint::load_tensors(p)?;
        let mut loaded = 0;
        tch::no_grad(|| -> Result<(), String> {
            for (k, t) in tensors {
                let k = k.strip_prefix("backbone.").map(str::to_string).unwrap_or(k);
                if let Some(dst) = vars.get_mut(&k) {
                    if dst.size() != t.size() {
                        return Err(format!(
                            "{}: '{k}' has shape {:?} but {} expects {:?} (wrong --arch or --bands?)",
                            p.display(),
                            t.size(),
                            a.common.arch,
                            dst.size()
                        ));
                    }
                    dst.copy_(&t.to_device(dev));
                    loaded += 1;
                }
            }
            Ok(())
        })?;
        if loaded != vars.len() {
            return Err(format!(
                "{} holds {loaded} of the {} weights of {} (wrong --arch?)",
                p.display(),
                vars.len(),
                a.common.arch
            ));
        }
    }
    Ok(net)
}

pub fn probe(a: &ProbeArgs) -> Result<(), String> {
    let dev = setup(&a.common)?;
    if a.backbone.is_none() && !a.random {
        return Err("give --backbone PATH or --random".into());
    }
    if a.common.train_share >= 1.0 {
        return Err("probe needs a test split: --train-share below 1".into());
    }
    let train =
        Bank::load(&a.common.data, Part::Train(a.common.train_share), a.common.bands, a.common.size, a.common.strict)?;
    let test =
        Bank::load(&a.common.data, Part::Test(a.common.train_share), a.common.bands, a.common.size, a.common.strict)?;
    let classes = train.classes.len();
    eprintln!("rsim: probe on {} train / {} test images, {classes} classes", train.len(), test.len());
    let net = load_net(a, dev, a.common.seed)?;
    let needs_feats = a.eval.iter().any(|e| e == "linear" || e == "knn");
    let (ftr, fte) = if needs_feats {
        (probe::features(&net, &train, dev, 256), probe::features(&net, &test, dev, 256))
    } else {
        (tch::Tensor::new(), tch::Tensor::new())
    };
    let mut rows = Vec::new();
    println!("{:>8} {:>10} {:>7} {:>7} {:>7}", "labels", "eval", "OA%", "AA%", "kappa");
    for &budget in &a.labels {
        let sel = train.budget_indices(budget)?;
        let sel_t = tch::Tensor::from_slice(&sel);
        for e in &a.eval {
            let pred = match e.as_str() {
                "linear" => probe::linear_probe(
                    &ftr.index_select(0, &sel_t),
                    &train.labels.index_select(0, &sel_t),
                    &fte,
                    classes,
                    a.probe_steps,
                    a.common.seed as i64,
                ),
                "knn" => probe::knn(
                    &ftr.index_select(0, &sel_t),
                    &train.labels.index_select(0, &sel_t),
                    &fte,
                    classes,
                    a.knn_k,
                    a.knn_t,
                ),
                "finetune" | "scratch" => {
                    let fresh = if e == "scratch" {
                        let arch = Arch::parse(&a.common.arch)?;
                        tch::manual_seed(a.common.seed as i64);
                        Net::new(arch, a.common.bands, None, dev)
                    } else {
                        load_net(a, dev, a.common.seed)?
                    };
                    let cfg = probe::FinetuneCfg {
                        steps: a.finetune_steps,
                        batch: 64,
                        lr: a.finetune_lr,
                        weight_decay: 1e-4,
                        seed: a.common.seed,
                    };
                    probe::finetune(&fresh, &probe::subset(&train, &sel), &test, &cfg, dev)?
                }
                other => return Err(format!("unknown --eval '{other}' (linear, knn, finetune, scratch)")),
            };
            let s = probe::score(classes, &test.labels, &pred)?;
            if let Some(out) = &a.out {
                let truth = Vec::<i64>::try_from(&test.labels).map_err(|e| e.to_string())?;
                let m = crate::metrics::Confusion::from_labels(classes, &truth, &pred)?;
                std::fs::create_dir_all(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
                let png = out.join(format!("confusion-{e}-{budget}.png"));
                crate::plots::plot_confusion(
                    &m,
                    &train.classes,
                    &png,
                    &format!("{e}, {budget} labels/class: OA {:.1}%", 100.0 * s.oa),
                )?;
            }
            println!("{:>8} {:>10} {:>7.2} {:>7.2} {:>7.4}", budget, e, 100.0 * s.oa, 100.0 * s.aa, s.kappa);
            rows.push(serde_json::json!({"labels": budget, "eval": e, "n_train": sel.len(), "oa": s.oa, "aa": s.aa, "kappa": s.kappa,
                "per_class": s.per_class, "pred": pred}));
        }
    }
    if let Some(out) = &a.out {
        write_results(out, a, &train.classes, &rows)?;
    }
    Ok(())
}

fn write_results(out: &Path, a: &ProbeArgs, classes: &[String], rows: &[serde_json::Value]) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let doc = serde_json::json!({"data": a.common.data, "arch": a.common.arch, "backbone": a.backbone, "random": a.random,
        "classes": classes, "results": rows});
    let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| e.to_string())?;
    rsim_model::write::write_atomic(&out.join("results.json"), &bytes).map_err(|e| format!("writing results.json: {e}"))
}

/// Runs one of the training commands (the `rsim` front end lives in `app.rs`).
pub fn run(cmd: &Cmd) -> Result<(), String> {
    match cmd {
        Cmd::Pretrain(a) => pretrain(a),
        Cmd::Probe(a) => probe(a),
        Cmd::Finetune(a) => crate::classifier::finetune(a),
        Cmd::Distill(a) => crate::distill::distill(a).map(|_| ()),
        Cmd::Export(a) => crate::export::export(a).map(|_| ()),
        Cmd::Qat(a) => crate::qat::qat(a),
        Cmd::Bench(BenchCmd::Core(crate::bench::BenchCmd::Step(a))) => crate::bench::step(a),
        Cmd::Bench(BenchCmd::Core(crate::bench::BenchCmd::Views(a))) => crate::bench::views(a),
        Cmd::Bench(BenchCmd::Data(a)) => {
            crate::data::bench::bench_pipeline(&a.data, a.images, a.batch, a.size, a.workers)
                .map(|r| {
                    println!(
                        "rust data pipeline: {} images x {} views, {} workers, {:.1}s",
                        r.images, r.views, r.workers, r.seconds
                    );
                    println!("{:.1} img/s", r.images_per_s);
                })
                .map_err(|e| e.to_string())
        }
    }
}
