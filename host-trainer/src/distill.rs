//! `rsim distill`: a compact student from a frozen teacher.
//!
//! - Teacher with a classifier head: Hinton logit distillation, T^2 * KL(softmax(t/T) || softmax(s/T)),
//!   on every train image (labels unused), plus cross-entropy on the labelled budget with `--labels`.
//! - Backbone-only teacher: SEED (Fang et al., ICLR 2021): the student's embedding (through a linear
//!   adapter to the teacher's width) and the teacher's embedding are scored against a queue of earlier
//!   teacher embeddings; the student matches the teacher's softmax similarity distribution. Or
//!   `--embed-loss mse`: regression of the normalised embeddings through the same adapter.
//!
//! Student and teacher see the same augmented view (resized for the teacher if its input size differs).
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use rsim_model::arch::Arch;
use tch::{nn, nn::Module, Device, Kind, Tensor};

use crate::bank::Bank;
use crate::classifier::{self, ClassifierMeta, Source};
use crate::loss::l2_normalize;
use crate::net::{named_sorted, Net};
use crate::optim::{lr_at, OptConfig, OptKind, Optimizer};
use crate::probe::{self, FinetuneCfg};
use crate::views::ViewStream;

#[derive(clap::Args, Debug, Clone)]
pub struct DistillArgs {
    /// Teacher: a classifier checkpoint (logit KD), a pretrain run or a backbone .safetensors (SEED / MSE).
    #[arg(long)]
    pub teacher: PathBuf,
    /// Teacher architecture, for a backbone file that does not say (pretrain runs record it).
    #[arg(long)]
    pub teacher_arch: Option<String>,
    /// Student: mobilenet_v2_0.35, mobilenet_v2_0.5, mobilenet_v2_1.0, mobilenet_v3_small, resnet8, resnet18.
    #[arg(long)]
    pub student: String,
    /// Image folder with one subfolder per class.
    #[arg(long)]
    pub data: PathBuf,
    /// Share of each class (sorted file names) used for training; the rest is the test split.
    #[arg(long, default_value_t = 0.8)]
    pub train_share: f64,
    /// Label budget per class (> 1 count, <= 1 fraction): adds CE on those labels (logit KD), or trains a
    /// linear head after embedding distillation so the output is a classifier.
    #[arg(long)]
    pub labels: Option<f64>,
    /// Input bands.
    #[arg(long, default_value_t = 3)]
    pub bands: usize,
    /// Side of the student's square input (the teacher's view is resized to its own size if different).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Training length in epochs over the train split (ignored with --steps).
    #[arg(long, default_value_t = 10.0)]
    pub epochs: f64,
    /// Training length in optimiser steps.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Time budget in minutes: after 20 steps the schedule (warm-up + cosine) is shortened to fit it,
    /// so the learning rate still anneals; training stops at the budget in any case.
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Images per batch.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Peak learning rate (AdamW, warm-up + cosine).
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// Logit distillation temperature T (loss scaled by T^2).
    #[arg(long, default_value_t = 4.0)]
    pub temperature: f64,
    /// Weight of the cross-entropy on labelled images (with --labels and a teacher head).
    #[arg(long, default_value_t = 0.5)]
    pub ce_weight: f64,
    /// Labelled images per step for that cross-entropy (a second, smaller batch: the teacher's logits
    /// already carry the labels, so a full second batch mostly doubles the step time).
    #[arg(long, default_value_t = 32)]
    pub ce_batch: usize,
    /// Head-less teacher: seed (similarity distributions over a queue) or mse (embedding regression).
    #[arg(long, default_value = "seed")]
    pub embed_loss: String,
    /// SEED queue length (teacher embeddings).
    #[arg(long, default_value_t = 4096)]
    pub queue: usize,
    /// SEED student temperature.
    #[arg(long, default_value_t = 0.2)]
    pub tau_student: f64,
    /// SEED teacher temperature (sharper than the student's).
    #[arg(long, default_value_t = 0.05)]
    pub tau_teacher: f64,
    /// Steps of the linear head trained after embedding distillation (with --labels).
    #[arg(long, default_value_t = 300)]
    pub head_steps: usize,
    /// cpu, cuda, cuda:N, or auto.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Torch intra-op CPU threads (0: torch's default).
    #[arg(long, default_value_t = 0)]
    pub threads: i32,
    /// Stop on the first unreadable image instead of skipping it.
    #[arg(long)]
    pub strict: bool,
    /// Seed for initialisation, sampling and augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Metrics line every N steps.
    #[arg(long, default_value_t = 10)]
    pub log_every: usize,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Run directory: model.safetensors + classifier.json, metrics.jsonl, loss.png.
    #[arg(long)]
    pub out: PathBuf,
}

/// What a run did (for callers and tests).
#[derive(Debug)]
pub struct DistillReport {
    pub steps: usize,
    pub losses: Vec<f64>,
    /// Test OA of the student (when it has a head) and of the teacher (when it has one).
    pub student_oa: Option<f64>,
    pub teacher_oa: Option<f64>,
}

pub enum Teacher {
    Logits { net: Net, meta: ClassifierMeta },
    Embed { net: Net, name: String },
}

impl Teacher {
    pub fn net(&self) -> &Net {
        match self {
            Teacher::Logits { net, .. } | Teacher::Embed { net, .. } => net,
        }
    }
}

/// NCHW images at `side` x `side` (bilinear; the teacher's view of the student's batch), or as they are.
fn resized(x: &Tensor, side: usize) -> Tensor {
    if x.size().last() == Some(&(side as i64)) {
        x.shallow_clone()
    } else {
        x.upsample_bilinear2d([side as i64, side as i64], false, None, None)
    }
}

/// With --minutes: the steps timed (after FIT_FROM warm-up steps) to fit the schedule into the budget.
const FIT_FROM: usize = 5;
const FIT_STEPS: usize = 15;

/// Loads a teacher from any [`Source`]; a checkpoint of the wrong architecture is an error naming the
/// first missing or mismatched tensor.
pub fn load_teacher(
    path: &std::path::Path,
    arch_flag: Option<&str>,
    bands: usize,
    device: Device,
) -> Result<Teacher, String> {
    match classifier::resolve(path)? {
        Source::Classifier(dir) => {
            let (net, meta) = classifier::load(&dir, device)?;
            if meta.bands != bands {
                return Err(format!("teacher {} takes {} bands, --bands is {bands}", dir.display(), meta.bands));
            }
            if let Some(a) = arch_flag.filter(|a| Arch::parse(a).ok() != Some(net.arch)) {
                return Err(format!("--teacher-arch {a} but {} holds a {}", dir.display(), meta.arch));
            }
            if meta.has_head() {
                Ok(Teacher::Logits { net, meta })
            } else {
                Ok(Teacher::Embed { net, name: format!("{} ({})", dir.display(), meta.arch) })
            }
        }
        Source::Backbone { weights, arch, bands: b } => {
            let name = arch_flag.map(str::to_string).or(arch).ok_or_else(|| {
                format!("{}: the teacher's architecture is not recorded; give --teacher-arch", weights.display())
            })?;
            if b.is_some_and(|b| b != bands) {
                return Err(format!(
                    "teacher {} was trained on {} bands, --bands is {bands}",
                    weights.display(),
                    b.unwrap_or(0)
                ));
            }
            let arch = Arch::parse(&name)?;
            let net = Net::new(arch, bands, None, device);
            let tensors = crate::checkpoint::load_tensors(&weights)?;
            classifier::load_into(&net, tensors, &weights, &arch.name(), None)?;
            Ok(Teacher::Embed { net, name: format!("{} ({})", weights.display(), arch.name()) })
        }
    }
}

/// Hinton's distillation loss T^2 * KL(softmax(t/T) || softmax(s/T)), batch mean.
pub fn kd_loss(student: &Tensor, teacher: &Tensor, t: f64) -> Tensor {
    let lps = (student / t).log_softmax(1, Kind::Float);
    let lpt = (teacher / t).log_softmax(1, Kind::Float);
    (lpt.exp() * (&lpt - lps)).sum_dim_intlist(&[1i64][..], false, Kind::Float).mean(Kind::Float) * (t * t)
}

/// SEED: cross-entropy between the teacher's and the student's softmax similarity distributions over
/// [the teacher's own embedding, the queue]. `zs`, `zt` [B, D] and `queue` [K, D] are unit vectors.
pub fn seed_loss(zs: &Tensor, zt: &Tensor, queue: &Tensor, tau_s: f64, tau_t: f64) -> Tensor {
    let pos_s = (zs * zt).sum_dim_intlist(&[1i64][..], true, Kind::Float);
    let pos_t = (zt * zt).sum_dim_intlist(&[1i64][..], true, Kind::Float);
    let ls = Tensor::cat(&[pos_s, zs.matmul(&queue.tr())], 1) / tau_s;
    let lt = Tensor::cat(&[pos_t, zt.matmul(&queue.tr())], 1) / tau_t;
    let pt = lt.softmax(1, Kind::Float);
    -(pt * ls.log_softmax(1, Kind::Float)).sum_dim_intlist(&[1i64][..], false, Kind::Float).mean(Kind::Float)
}

pub fn distill(a: &DistillArgs) -> Result<DistillReport, String> {
    let common = crate::cli::Common {
        data: a.data.clone(),
        train_share: a.train_share,
        arch: a.student.clone(),
        bands: a.bands,
        size: a.size,
        device: a.device.clone(),
        threads: a.threads,
        strict: a.strict,
        seed: a.seed,
    };
    let dev = classifier::setup(&common)?;
    let sarch = Arch::parse(&a.student)?;
    let mse = match a.embed_loss.as_str() {
        "seed" => false,
        "mse" => true,
        o => return Err(format!("unknown --embed-loss '{o}' (seed or mse)")),
    };
    if !(a.temperature > 0.0 && a.tau_student > 0.0 && a.tau_teacher > 0.0) {
        return Err("--temperature, --tau-student and --tau-teacher must be positive".into());
    }
    let teacher = load_teacher(&a.teacher, a.teacher_arch.as_deref(), a.bands, dev)?;
    let teacher_size = match &teacher {
        Teacher::Logits { meta, .. } => meta.size,
        Teacher::Embed { .. } => a.size,
    };
    let (train, test) = classifier::load_split(&common)?;
    if let Teacher::Logits { meta, .. } = &teacher {
        if meta.classes != train.classes {
            return Err(format!(
                "the teacher's classes {:?} differ from {}'s {:?}",
                meta.classes,
                a.data.display(),
                train.classes
            ));
        }
    }
    let classes = train.classes.len();
    let labelled = a.labels.map(|b| train.budget_indices(b).map(|s| probe::subset(&train, &s))).transpose()?;

    tch::manual_seed(a.seed as i64);
    let with_head = matches!(teacher, Teacher::Logits { .. });
    let student = Net::new(sarch, a.bands, with_head.then_some(classes), dev);
    let tdim = teacher.net().feature_dim() as i64;
    let adapter_vs = nn::VarStore::new(dev);
    let adapter = nn::linear(adapter_vs.root().sub("adapter"), student.feature_dim() as i64, tdim, Default::default());
    let mut params = named_sorted(&student.vs);
    if !with_head {
        params.extend(named_sorted(&adapter_vs));
    }
    let mut opt = Optimizer::new(OptConfig::new(OptKind::AdamW, 1e-4), params);

    let mut vc = probe::finetune_views(a.size);
    vc.crop_scale = (0.5, 1.0);
    let batch = a.batch.min(train.len());
    let mut stream = ViewStream::new(&train, vc.clone(), batch, a.seed, dev)?;
    let mut lab_stream = match &labelled {
        Some(l) if with_head && a.ce_weight > 0.0 => {
            Some(ViewStream::new(l, vc, a.ce_batch.clamp(1, l.len()), a.seed ^ 0x5eed, dev)?)
        }
        _ => None,
    };
    let mut steps = a.steps.unwrap_or((a.epochs * stream.steps_per_epoch() as f64).round() as usize).max(1);
    let queue = l2_normalize(&Tensor::randn([a.queue.max(1) as i64, tdim], (Kind::Float, dev)));
    let mut qptr = 0i64;
    let mut enqueue: Option<Tensor> = None;

    std::fs::create_dir_all(&a.out).map_err(|e| format!("creating {}: {e}", a.out.display()))?;
    let jsonl = a.out.join("metrics.jsonl");
    let mut log = std::fs::File::create(&jsonl).map_err(|e| format!("creating {}: {e}", jsonl.display()))?;
    let bar = if a.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(steps as u64) };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
        )
        .expect("valid template"),
    );
    let kind = if with_head {
        "logit KD"
    } else if mse {
        "embedding MSE"
    } else {
        "SEED"
    };
    eprintln!(
        "rsim: distilling into {} ({kind}) on {} train images, {steps} steps of batch {batch}",
        sarch.name(),
        train.len()
    );
    let start = Instant::now();
    let mut losses = Vec::with_capacity(steps);
    let mut timed_from = None;
    let mut step = 0;
    while step < steps {
        let (x, _) = stream.views(step as u64);
        let tx = resized(&x, teacher_size);
        let tout = tch::no_grad(|| teacher.net().forward(&tx, false));
        let (sf, slog) = student.forward(&x, true);
        let (loss, extra) = match (&teacher, slog) {
            (Teacher::Logits { .. }, Some(sl)) => {
                let kd = kd_loss(&sl, tout.1.as_ref().ok_or("teacher lost its head")?, a.temperature);
                match lab_stream.as_mut() {
                    Some(ls) => {
                        let idx = ls.indices(step as u64);
                        let (xl, _) = ls.views(step as u64);
                        let yl = ls.bank.labels.index_select(0, &Tensor::from_slice(&idx)).to_device(dev);
                        let ce =
                            student.forward(&xl, true).1.ok_or("student lost its head")?.cross_entropy_for_logits(&yl);
                        let kdv = kd.double_value(&[]);
                        (kd + ce * a.ce_weight, Some(("kd", kdv)))
                    }
                    None => (kd, None),
                }
            }
            _ => {
                let zs = l2_normalize(&adapter.forward(&sf));
                let zt = l2_normalize(&tout.0);
                let l = if mse {
                    (&zs - &zt).square().sum_dim_intlist(&[1i64][..], false, Kind::Float).mean(Kind::Float)
                } else {
                    seed_loss(&zs, &zt, &queue, a.tau_student, a.tau_teacher)
                };
                enqueue = Some(zt);
                (l, None)
            }
        };
        opt.zero_grad();
        loss.backward();
        // This batch's teacher embeddings join the queue after backward (the loss read the old queue).
        if let Some(zt) = enqueue.take() {
            let b = zt.size()[0].min(queue.size()[0]);
            let room = (queue.size()[0] - qptr).min(b);
            tch::no_grad(|| {
                queue.narrow(0, qptr, room).copy_(&zt.narrow(0, 0, room));
                if room < b {
                    queue.narrow(0, 0, b - room).copy_(&zt.narrow(0, room, b - room));
                }
            });
            qptr = (qptr + b) % queue.size()[0];
        }
        opt.step(lr_at(step, steps, steps / 20, a.lr, 0.0));
        let lv = loss.double_value(&[]);
        if !lv.is_finite() {
            return Err(format!("distillation loss became {lv} at step {step}; lower --lr?"));
        }
        losses.push(lv);
        if (step + 1) % a.log_every.max(1) == 0 || step + 1 == steps {
            let mut line = serde_json::json!({"step": step + 1, "loss": lv, "lr": lr_at(step, steps, steps / 20, a.lr, 0.0),
                "elapsed_s": start.elapsed().as_secs_f64()});
            if let Some((k, v)) = extra {
                line[k] = v.into();
            }
            writeln!(log, "{line}").map_err(|e| format!("writing metrics.jsonl: {e}"))?;
            bar.set_message(format!("loss {lv:.4}"));
        }
        bar.set_position(step as u64 + 1);
        if let Some(m) = a.minutes {
            // Once the step time is known, the schedule shrinks to fit the budget: a capped run
            // still warms up and anneals its learning rate instead of stopping at a high one.
            if step + 1 == FIT_FROM {
                timed_from = Some(Instant::now());
            }
            if let Some(t) = timed_from.filter(|_| step + 1 == FIT_FROM + FIT_STEPS) {
                let per_step = t.elapsed().as_secs_f64() / FIT_STEPS as f64;
                let fit = ((m * 60.0 - start.elapsed().as_secs_f64()) / per_step) as usize + step + 1;
                if fit < steps {
                    eprintln!(
                        "rsim: --minutes {m}: {per_step:.2} s per step, schedule shortened from {steps} to {fit} steps"
                    );
                    steps = fit;
                    bar.set_length(steps as u64);
                }
            }
            if start.elapsed().as_secs_f64() > m * 60.0 && step + 1 < steps {
                bar.abandon_with_message(format!("stopped by --minutes at step {}", step + 1));
                break;
            }
        }
        step += 1;
    }
    bar.finish();
    drop(log);
    if let Err(e) = crate::plots::plot_loss_curve(
        &jsonl,
        &a.out.join("loss.png"),
        &["loss"],
        &format!("distill {} ({kind})", sarch.name()),
    ) {
        eprintln!("rsim: no loss plot: {e}");
    }
    finish(a, teacher, student, &train, &test, labelled.as_ref(), kind, losses, dev)
}

/// Scores and saves the student: a classifier when the teacher had a head or `--labels` trains one
/// after embedding distillation, else the backbone (sidecar without classes).
#[allow(clippy::too_many_arguments)]
fn finish(
    a: &DistillArgs,
    teacher: Teacher,
    student: Net,
    train: &Bank,
    test: &Bank,
    labelled: Option<&Bank>,
    kind: &str,
    losses: Vec<f64>,
    dev: Device,
) -> Result<DistillReport, String> {
    let (tname, teacher_oa) = match &teacher {
        Teacher::Logits { net, meta } => {
            // The teacher is scored at its own input size, on the test images resized as in training.
            let other = (meta.size != a.size).then(|| Bank {
                images: resized(&test.images.to_kind(Kind::Float), meta.size).to_kind(Kind::Half),
                labels: test.labels.shallow_clone(),
                classes: test.classes.clone(),
                skipped: test.skipped,
            });
            let (s, _) = classifier::evaluate(net, other.as_ref().unwrap_or(test), dev)?;
            (format!("{} ({})", a.teacher.display(), meta.arch), Some(s.oa))
        }
        Teacher::Embed { name, .. } => (name.clone(), None),
    };
    let net = match (&teacher, labelled) {
        (Teacher::Embed { .. }, Some(l)) => {
            // A linear head on the distilled (frozen) backbone, trained on the labelled budget.
            tch::manual_seed(a.seed as i64);
            let clf = Net::new(student.arch, a.bands, Some(train.classes.len()), dev);
            let keys = classifier::backbone_keys(student.arch, a.bands);
            classifier::load_into(
                &clf,
                named_sorted(&student.vs),
                &a.out,
                &student.arch.name(),
                Some(&|k: &str| keys.contains(k)),
            )?;
            let head = classifier::freeze_backbone(&clf);
            let cfg = FinetuneCfg { steps: a.head_steps, batch: 64, lr: 1e-2, weight_decay: 1e-4, seed: a.seed };
            probe::fit(head, l, &cfg, dev, |x| clf.forward(x, false).1.expect("built with a head"))?;
            clf
        }
        _ => student,
    };
    let (student_oa, metrics) = if net.num_classes.is_some() {
        let (s, mut m) = classifier::evaluate(&net, test, dev)?;
        if let Some(t) = teacher_oa {
            m.insert("teacher_test_oa".into(), t.into());
        }
        (Some(s.oa), m)
    } else {
        (None, serde_json::Map::new())
    };
    let (mean, std) = classifier::trainer_norm(a.bands);
    let mut method = format!("distill {kind} from {tname}, {} steps", losses.len());
    if kind == "logit KD" {
        method += &format!(", T={}", a.temperature);
    }
    let meta = ClassifierMeta {
        arch: net.arch.name(),
        bands: a.bands,
        size: a.size,
        classes: if net.num_classes.is_some() { train.classes.clone() } else { Vec::new() },
        mean,
        std,
        method,
        data: a.data.display().to_string(),
        split: classifier::split_desc(a.train_share),
        labels: a.labels,
        metrics,
    };
    classifier::save(&a.out, &net, &meta)?;
    if let Some(oa) = student_oa {
        match teacher_oa {
            Some(t) => println!("student test OA {:.2}%  (teacher {:.2}%)", 100.0 * oa, 100.0 * t),
            None => println!("student test OA {:.2}%", 100.0 * oa),
        }
    }
    eprintln!("rsim: student in {}", a.out.display());
    Ok(DistillReport { steps: losses.len(), losses, student_oa, teacher_oa })
}
