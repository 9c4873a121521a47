//! `rsim qat`: quantization-aware fine-tuning of a float `.rsm`, ending in an int8 `.rsm`.
//!
//! 1. Calibration: the float model's `ptq::calibration_model` (fused HardSwish & co. split off so
//!    their inputs are observed) runs in the edge runtime over `--calib-images` train-split images;
//!    `calib::Observer` turns what it sees into ranges (minmax, percentile or mse).
//! 2. `ptq::quantize_model` of those ranges gives the int8 model whose per-tensor (scale, zero
//!    point) the host simulation uses ([`FakeQuant::from_int8_model`]), so training sees exactly the
//!    activation grid the board will. Activation ranges stay FROZEN during training (weights move,
//!    their per-channel scales follow the current weights at every step).
//! 3. Fine-tuning: the student is the graph in fake-quant mode, the teacher the same float graph
//!    with the original weights. Loss: T^2 * KL(teacher/T || student/T) on the logits for a model
//!    with classes (pre-softmax values when the graph ends in Softmax), MSE on the features for a
//!    backbone; plus `ce_weight` * cross-entropy on the labelled images when a label budget is given.
//! 4. The trained weights go back into the float graph (same ops and ids) and `ptq::quantize_model`
//!    with the same ranges writes the int8 model (temp file + rename).
use std::path::{Path, PathBuf};

use clap::Args;
use rsim_model::calib::{Calibrator, Observer};
use rsim_model::ptq::{self, PtqOptions, Ranges};
use rsim_model::{InputSpec, Model, Op};
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

use crate::data::split::{apply_budget, split_per_class, Pick};
use crate::data::Dataset;
use crate::graph_net::{FakeQuant, GraphNet};

#[derive(Args, Debug)]
pub struct QatArgs {
    /// Float model to fine-tune (f32 or f16 weights .rsm, e.g. from `rsim export`).
    #[arg(long)]
    pub model: PathBuf,
    /// Image folder with one subfolder per class (1- or 3-band images). Only its train split is read.
    #[arg(long)]
    pub data: PathBuf,
    /// Share of each class (sorted file names) that is the train split; the rest (test) is never read.
    #[arg(long, default_value_t = 0.8)]
    pub train_share: f64,
    /// Label budget per class for an extra cross-entropy term (<= 1: fraction, > 1: count). Without
    /// it QAT is label-free (distillation from the float model only). Needs a model with classes.
    #[arg(long)]
    pub labels: Option<f64>,
    /// Train-split images used to calibrate the activation ranges (spread over the classes).
    #[arg(long, default_value_t = 256)]
    pub calib_images: usize,
    /// Activation range calibrator: minmax, percentile or mse.
    #[arg(long, default_value = "minmax")]
    pub calibrator: String,
    /// Percentile kept by --calibrator percentile.
    #[arg(long, default_value_t = 99.99)]
    pub percentile: f64,
    /// Optimizer steps (Adam).
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
    /// Images per step.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Learning rate (small: the float weights are already trained).
    #[arg(long, default_value_t = 1e-5)]
    pub lr: f64,
    /// Distillation temperature T on the logits (loss scaled by T^2).
    #[arg(long, default_value_t = 2.0)]
    pub temperature: f64,
    /// Weight of the cross-entropy term when --labels is given.
    #[arg(long, default_value_t = 0.5)]
    pub ce_weight: f64,
    /// Seed of the batch sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu, cuda, cuda:N, or auto (CUDA when available).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Also write the fine-tuned FLOAT model here.
    #[arg(long)]
    pub float_out: Option<PathBuf>,
    /// Where to write the int8 model.
    #[arg(short, long)]
    pub out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Train-split images, preprocessed exactly as the runtime does for this model.
pub struct Split {
    /// NCHW float inputs `[N, C, H, W]` (normalized per the model's input spec).
    pub x: Tensor,
    /// Class of each image.
    pub labels: Vec<i64>,
    pub classes: Vec<String>,
}

/// Loads the train split of `data` for a model with input spec `spec` (runtime preprocessing).
pub fn load_train_split(
    data: &Path,
    train_share: f64,
    spec: &InputSpec,
    input: &rsim_model::Tensor,
) -> Result<Split, String> {
    if !(train_share > 0.0 && train_share <= 1.0) {
        return Err(format!("--train-share must be in (0, 1], got {train_share}"));
    }
    if !data.is_dir() {
        return Err(format!("data folder {} does not exist", data.display()));
    }
    let ds = Dataset::from_folder(data).map_err(|e| format!("{}: {e}", data.display()))?;
    let shares = if train_share >= 1.0 { vec![1.0] } else { vec![train_share, 1.0 - train_share] };
    let parts = split_per_class(&ds.by_class(), &shares).map_err(|e| e.to_string())?;
    let (h, w, c) = (spec.height as i64, spec.width as i64, spec.channels as i64);
    if c != 1 && c != 3 {
        return Err(format!("qat reads 1- or 3-band images; the model takes {c} bands"));
    }
    let mut xs = Vec::new();
    let mut labels = Vec::new();
    let mut buf = vec![0u8; (h * w * c * 4) as usize];
    for &i in &parts[0] {
        let s = &ds.samples[i];
        let img = image::open(&s.path).map_err(|e| format!("{}: {e}", s.path.display()))?;
        let (pixels, iw, ih) = if c == 3 {
            let im = img.to_rgb8();
            let (iw, ih) = im.dimensions();
            (im.into_raw(), iw, ih)
        } else {
            let im = img.to_luma8();
            let (iw, ih) = im.dimensions();
            (im.into_raw(), iw, ih)
        };
        let pimg = rsim_edge::preprocess::Image {
            pixels: &pixels,
            width: iw,
            height: ih,
            channels: c as u32,
            layout: spec.layout,
        };
        rsim_edge::preprocess::preprocess(&pimg, spec, &input.shape, None, &mut buf)
            .map_err(|e| format!("{}: {e}", s.path.display()))?;
        let v: Vec<f32> = buf.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        xs.push(Tensor::from_slice(&v).reshape([1, h, w, c]).permute([0, 3, 1, 2]));
        labels.push(s.label);
    }
    if xs.is_empty() {
        return Err(format!("no images in the train split of {}", data.display()));
    }
    Ok(Split { x: Tensor::cat(&xs, 0), labels, classes: ds.classes })
}

/// `n` indices spread evenly over `0..len` (covers every class of a class-sorted split).
pub fn spread(len: usize, n: usize) -> Vec<usize> {
    let n = n.min(len);
    (0..n).map(|k| k * len / n.max(1)).collect()
}

/// Activation ranges of `float_rsm` over the NCHW images `x` (rows `pick`), through the runtime.
pub fn calibrate(float_rsm: &[u8], x: &Tensor, pick: &[usize], calibrator: Calibrator) -> Result<Ranges, String> {
    let cal = ptq::calibration_model(float_rsm).map_err(|e| e.to_string())?;
    let mut arena = vec![0u8; rsim_edge::required_arena(&cal).map_err(|e| e.to_string())? + 16];
    let mut engine = rsim_edge::Engine::new(&cal, &mut arena).map_err(|e| format!("calibration model: {e}"))?;
    let mut obs = Observer::new(calibrator);
    let passes = if obs.needs_second_pass() { 2 } else { 1 };
    for pass in 0..passes {
        if pass == 1 {
            obs.start_second_pass();
        }
        for &i in pick {
            let nhwc = nhwc_row(x, i)?;
            engine.set_input_f32(&nhwc).map_err(|e| e.to_string())?;
            engine
                .invoke_observed(&mut |_, op, bytes| obs.observe_le_f32(op.output().id, bytes))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(obs.ranges())
}

/// The tensor the distillation loss reads: the graph output, or a final Softmax's input.
fn logits_id(float_rsm: &[u8]) -> Result<(u16, bool), String> {
    let m = Model::parse(float_rsm).map_err(|e| e.to_string())?;
    let has_classes = m.info.class_count() > 0;
    let last = m.ops().last().and_then(|o| o.ok());
    Ok(match last {
        Some(Op::Softmax { input, .. }) => (input.id, has_classes),
        _ => (m.info.output.id, has_classes),
    })
}

/// Fine-tuning state: student (fake-quant), teacher (float, frozen) and the frozen int8 grid.
pub struct Qat {
    pub student: GraphNet,
    teacher: GraphNet,
    pub fq: FakeQuant,
    pub ranges: Ranges,
    logits: u16,
    classes: bool,
    pub temperature: f64,
    pub ce_weight: f64,
    opt: nn::Optimizer,
}

impl Qat {
    /// Sets up QAT of `float_rsm` with calibrated `ranges` on `device`.
    pub fn new(float_rsm: &[u8], ranges: Ranges, lr: f64, device: Device) -> Result<Qat, String> {
        let student = GraphNet::from_rsm(float_rsm, device).map_err(|e| e.to_string())?;
        let teacher = GraphNet::from_rsm(float_rsm, device).map_err(|e| e.to_string())?;
        let int8 = ptq::quantize_model(float_rsm, &ranges, &PtqOptions::default()).map_err(|e| e.to_string())?;
        let mut fq = FakeQuant::from_int8_model(&int8).map_err(|e| e.to_string())?;
        fq.f64 = false; // f32 is close enough to train through, and fast on GPUs
        let (logits, classes) = logits_id(float_rsm)?;
        let opt = nn::Adam::default().build(&student.vs, lr).map_err(|e| e.to_string())?;
        Ok(Qat { student, teacher, fq, ranges, logits, classes, temperature: 2.0, ce_weight: 0.5, opt })
    }

    fn run(net: &GraphNet, x: &Tensor, fq: Option<&FakeQuant>, id: u16) -> Result<Tensor, String> {
        let mut keep = None;
        let out = net
            .forward_observed(x, fq, &mut |t, v| {
                if t == id {
                    keep = Some(v.shallow_clone());
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(crate::graph_net::flat_nhwc(&keep.unwrap_or(out)))
    }

    /// The loss on a batch (`labels` for the CE term: -1 = unlabelled).
    #[allow(
        clippy::assign_op_pattern,
        reason = "tch tensors: `a = a op b` makes a new tensor; `a op= b` would write in place into a tensor autograd or another owner still holds"
    )]
    pub fn loss(&self, x: &Tensor, labels: Option<&Tensor>) -> Result<Tensor, String> {
        let t = tch::no_grad(|| Self::run(&self.teacher, x, None, self.logits))?;
        let s = Self::run(&self.student, x, Some(&self.fq), self.logits)?;
        let mut loss = if self.classes {
            let tt = self.temperature;
            let pt = (&t / tt).softmax(-1, Kind::Float);
            let ls = (&s / tt).log_softmax(-1, Kind::Float);
            // KL(pt || ps) summed over classes, mean over the batch; T^2 keeps gradients T-independent.
            (&pt * (pt.clamp_min(1e-12).log() - ls))
                .sum_dim_intlist([-1i64].as_slice(), false, Kind::Float)
                .mean(Kind::Float)
                * (tt * tt)
        } else {
            (&s - &t).square().mean(Kind::Float)
        };
        if let Some(y) = labels.filter(|_| self.classes && self.ce_weight > 0.0) {
            let mask = y.ge(0);
            if mask.sum(Kind::Int64).int64_value(&[]) > 0 {
                let idx = mask.nonzero().squeeze_dim(1);
                let ce = s.index_select(0, &idx).cross_entropy_for_logits(&y.index_select(0, &idx));
                loss = loss + ce * self.ce_weight;
            }
        }
        Ok(loss)
    }

    /// One optimizer step; returns the loss before the step.
    pub fn step(&mut self, x: &Tensor, labels: Option<&Tensor>) -> Result<f64, String> {
        let loss = self.loss(x, labels)?;
        self.opt.backward_step(&loss);
        Ok(loss.double_value(&[]))
    }

    /// The fine-tuned float model and its int8 quantization (same frozen ranges).
    pub fn finish(&self, float_rsm: &[u8], opts: &PtqOptions) -> Result<(Vec<u8>, Vec<u8>), String> {
        let float = self.student.write_weights(float_rsm).map_err(|e| e.to_string())?;
        let int8 = ptq::quantize_model(&float, &self.ranges, opts).map_err(|e| e.to_string())?;
        Ok((float, int8))
    }
}

/// Top-1 agreement of two models in the runtime over rows `pick` of `x` (NCHW float inputs).
pub fn runtime_agreement(a: &[u8], b: &[u8], x: &Tensor, pick: &[usize]) -> Result<f64, String> {
    let run = |m: &[u8]| -> Result<Vec<usize>, String> {
        let mut arena = vec![0u8; rsim_edge::required_arena(m).map_err(|e| e.to_string())? + 16];
        let mut e = rsim_edge::Engine::new(m, &mut arena).map_err(|e| e.to_string())?;
        let mut top = Vec::new();
        for &i in pick {
            let nhwc = nhwc_row(x, i)?;
            e.run_f32(&nhwc).map_err(|e| e.to_string())?;
            let mut t = [(0u16, 0f32); 1];
            e.top_k(&mut t);
            top.push(t[0].0 as usize);
        }
        Ok(top)
    };
    let (ta, tb) = (run(a)?, run(b)?);
    Ok(ta.iter().zip(&tb).filter(|(p, q)| p == q).count() as f64 / pick.len().max(1) as f64)
}

/// `rsim qat`.
pub fn qat(a: &QatArgs) -> Result<(), String> {
    let device = crate::cli::device(&a.device)?;
    let float = std::fs::read(&a.model).map_err(|e| format!("cannot read --model {}: {e}", a.model.display()))?;
    let m = Model::parse(&float).map_err(|e| format!("--model {}: {e}", a.model.display()))?;
    let (spec, input) = (m.info.input_spec, m.info.input);
    // Fails early, naming the op, on anything the host interpreter or int8 cannot run.
    GraphNet::from_rsm(&float, Device::Cpu).map_err(|e| format!("--model {}: {e}", a.model.display()))?;
    let calibrator = Calibrator::parse(&a.calibrator, a.percentile)?;
    if a.steps == 0 || a.batch == 0 {
        return Err("--steps and --batch must be at least 1".into());
    }
    let split = load_train_split(&a.data, a.train_share, &spec, &input)?;
    let n = split.labels.len();
    let cal_pick = spread(n, a.calib_images.max(1));
    eprintln!("rsim qat: {} train images, calibrating on {} ({})", n, cal_pick.len(), calibrator.label());
    let ranges = calibrate(&float, &split.x, &cal_pick, calibrator)?;

    let labelled: Vec<i64> = match a.labels {
        None => vec![-1; n],
        Some(budget) => {
            if m.info.class_count() == 0 {
                return Err("--labels needs a model with classes (this one outputs features)".into());
            }
            let ds_by_class = by_class(&split.labels, split.classes.len());
            let keep = apply_budget(&ds_by_class, budget, Pick::First).map_err(|e| e.to_string())?;
            let mut l = vec![-1; n];
            for i in keep {
                l[i] = split.labels[i];
            }
            l
        }
    };
    let mut q = Qat::new(&float, ranges, a.lr, device)?;
    q.temperature = a.temperature;
    q.ce_weight = a.ce_weight;
    let ptq0 = ptq::quantize_model(&float, &q.ranges, &PtqOptions::default()).map_err(|e| e.to_string())?;

    let x_all = split.x.to_device(device);
    let y_all = Tensor::from_slice(&labelled).to_device(device);
    let mut rng = crate::data::rng::Rng::for_parts(a.seed, &[0x0A7]);
    let bar = if a.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(a.steps as u64) };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
        )
        .expect("valid template"),
    );
    let mut order: Vec<usize> = (0..n).collect();
    let mut at = n;
    let (mut first, mut last) = (None, 0.0);
    for _ in 0..a.steps {
        let mut idx = Vec::with_capacity(a.batch);
        while idx.len() < a.batch.min(n) {
            if at == n {
                rng.shuffle(&mut order);
                at = 0;
            }
            idx.push(order[at] as i64);
            at += 1;
        }
        let idx = Tensor::from_slice(&idx).to_device(device);
        let l = q.step(&x_all.index_select(0, &idx), Some(&y_all.index_select(0, &idx)))?;
        first.get_or_insert(l);
        last = l;
        bar.set_message(format!("loss {l:.4}"));
        bar.inc(1);
    }
    bar.finish_and_clear();

    let opts = PtqOptions {
        calibrator: format!("{}+qat", calibrator.label()),
        data: Some(format!("{} train {}", a.data.display(), a.train_share)),
        ..PtqOptions::default()
    };
    let (tuned, int8) = q.finish(&float, &opts)?;
    let agree_ptq = runtime_agreement(&float, &ptq0, &split.x, &cal_pick)?;
    let agree_qat = runtime_agreement(&float, &int8, &split.x, &cal_pick)?;
    if let Some(p) = &a.float_out {
        rsim_model::write::write_atomic(p, &tuned).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    rsim_model::write::write_atomic(&a.out, &int8).map_err(|e| format!("cannot write {}: {e}", a.out.display()))?;
    println!(
        "rsim qat: {} steps, fake-quant loss {:.4} -> {last:.4}; int8 top-1 agreement with the float model on the {} calibration images: PTQ {:.1}%, QAT {:.1}%; wrote {} ({} bytes)",
        a.steps,
        first.unwrap_or(0.0),
        cal_pick.len(),
        agree_ptq * 100.0,
        agree_qat * 100.0,
        a.out.display(),
        int8.len()
    );
    Ok(())
}

/// Row `i` of an NCHW batch as the runtime's NHWC floats.
fn nhwc_row(x: &Tensor, i: usize) -> Result<Vec<f32>, String> {
    Vec::<f32>::try_from(x.get(i as i64).permute([1, 2, 0]).contiguous().reshape([-1])).map_err(|e| e.to_string())
}

fn by_class(labels: &[i64], classes: usize) -> Vec<Vec<usize>> {
    let mut v = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        if let Some(c) = v.get_mut(l as usize) {
            c.push(i);
        }
    }
    v
}
