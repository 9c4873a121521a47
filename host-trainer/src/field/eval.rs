//! `rsim eval`: scores the edge runtime itself (what ships) on a dataset split: OA, AA, kappa,
//! per-class accuracy, confusion PNG, model and arena bytes, per-image latency on this machine.

use super::images::{load_u8, select, Part};
use crate::metrics::Confusion;
use clap::Args;
use rsim_edge::{Engine, Options};
use rsim_model::{DType, Model, Op};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// The .rsm model to score (f32, f16 or int8; needs a class head).
    #[arg(long)]
    pub model: PathBuf,
    /// Image folder with one subfolder per class (split by --split/--train-share), a CSV split
    /// file, or the image root that --csv paths are relative to.
    #[arg(long)]
    pub data: PathBuf,
    /// Part of a --data folder to score: test (the default), train or all.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Share of each class (sorted file names) in the train split; the rest is the test split.
    #[arg(long, default_value_t = 0.8)]
    pub train_share: f64,
    /// CSV split file (e.g. EuroSAT test.csv); its paths are relative to --data.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Score at most this many images (in split order), e.g. for a quick check.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Folder for results.json and confusion.png (created if missing).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Refuse a model whose one inference needs more multiply-accumulates than this (a board's
    /// compute budget), before anything runs. results.json records the model's count either way.
    #[arg(long)]
    pub max_macs: Option<u64>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Latency {
    pub median_ms: f64,
    pub p90_ms: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct EvalResults {
    pub model: String,
    pub name: String,
    /// f32, f16 or int8.
    pub precision: String,
    pub provenance_method: String,
    pub data: String,
    pub split: String,
    pub images: usize,
    /// Multiply-accumulates of one inference (`Model::macs`).
    pub macs: u64,
    pub oa: f64,
    pub aa: f64,
    pub kappa: f64,
    pub per_class: Vec<(String, f64)>,
    pub confusion: Confusion,
    pub model_bytes: usize,
    pub arena_bytes: u32,
    /// `Engine::invoke` only.
    pub invoke: Latency,
    /// `Engine::set_input_image_u8` (resize, normalize, quantize) only; decoding excluded.
    pub preprocess: Latency,
    pub machine: String,
}

fn precision(m: &Model<'_>) -> &'static str {
    if m.info.input.dtype == DType::I8 {
        return "int8";
    }
    let f16 = m.ops().flatten().any(|op| matches!(op, Op::Conv2d { weights, .. } | Op::FullyConnected { weights, .. } if weights.dtype == DType::F16));
    if f16 {
        "f16"
    } else {
        "f32"
    }
}

fn latency(mut ms: Vec<f64>) -> Latency {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms.get(((ms.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0);
    Latency { median_ms: at(0.5), p90_ms: at(0.9) }
}

pub fn run(a: &EvalArgs) -> Result<EvalResults, String> {
    let bytes = std::fs::read(&a.model).map_err(|e| format!("cannot read {}: {e}", a.model.display()))?;
    let model = Model::parse(&bytes).map_err(|e| format!("{}: {e}", a.model.display()))?;
    let classes: Vec<String> = model.info.classes().map(String::from).collect();
    let out_len = model.info.output.shape.checked_len().unwrap_or(0);
    if classes.is_empty() || classes.len() != out_len {
        return Err(format!(
            "{}: model has no class head ({} class names for {out_len} outputs); export it with a classifier",
            a.model.display(),
            classes.len()
        ));
    }
    let part = Part::parse(&a.split, a.train_share)?;
    let ds = select(&a.data, a.csv.as_deref(), part).map_err(|e| format!("evaluation data: {e}"))?;
    // Dataset classes -> model outputs: by name when every name is known, else by index.
    let map: Vec<usize> = if ds.classes.iter().all(|c| classes.contains(c)) {
        ds.classes.iter().map(|c| classes.iter().position(|m| m == c).unwrap_or(0)).collect()
    } else if ds.classes.len() == classes.len() {
        eprintln!("note: dataset class names differ from the model's; matching them by index");
        (0..classes.len()).collect()
    } else {
        return Err(format!(
            "dataset has {} classes {:?}, the model {} {:?}",
            ds.classes.len(),
            ds.classes,
            classes.len(),
            classes
        ));
    };

    let bands = model.info.input_spec.channels;
    let mut arena =
        vec![0u8; rsim_edge::required_arena(&bytes).map_err(|e| format!("{}: {e}", a.model.display()))? + 16];
    let opts = Options { max_macs: a.max_macs, ..Options::default() };
    let mut engine =
        Engine::with_options(&bytes, &mut arena, opts).map_err(|e| format!("{}: {e}", a.model.display()))?;
    let macs = engine.macs();
    let n = a.limit.unwrap_or(usize::MAX).min(ds.len());
    let bar = if a.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(n as u64) };
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "evaluating {bar:30} {pos}/{len} images  [{elapsed_precise} < {eta_precise}]",
    ) {
        bar.set_style(style);
    }
    let mut conf = Confusion::new(classes.len());
    let (mut t_pre, mut t_inv) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for s in ds.samples.iter().take(n) {
        let im = load_u8(&s.path, bands as usize)?;
        let t0 = Instant::now();
        engine
            .set_input_image_u8(&im.pixels, im.width, im.height, bands)
            .map_err(|e| format!("{}: {e}", s.path.display()))?;
        let t1 = Instant::now();
        engine.invoke().map_err(|e| format!("{}: {e}", s.path.display()))?;
        let t2 = Instant::now();
        t_pre.push((t1 - t0).as_secs_f64() * 1e3);
        t_inv.push((t2 - t1).as_secs_f64() * 1e3);
        let mut top = [(0u16, 0f32)];
        engine.top_k(&mut top);
        let truth = map
            .get(s.label as usize)
            .copied()
            .ok_or_else(|| format!("{}: label {} out of range", s.path.display(), s.label))?;
        conf.add(truth as i64, top[0].0 as i64)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let sc = conf.scores();
    let split = match (&a.csv, part) {
        (Some(c), _) => format!("csv {}", c.display()),
        (None, _) if a.data.is_file() => format!("csv {}", a.data.display()),
        (None, Part::All) => "all".into(),
        (None, Part::Train(s)) => format!("train (train share {s})"),
        (None, Part::Test(s)) => format!("test (train share {s})"),
    };
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let res = EvalResults {
        model: a.model.display().to_string(),
        name: model.info.name.to_string(),
        precision: precision(&model).into(),
        provenance_method: model.info.provenance.method.to_string(),
        data: a.data.display().to_string(),
        split,
        images: n,
        macs,
        oa: sc.oa,
        aa: sc.aa,
        kappa: sc.kappa,
        per_class: classes.iter().cloned().zip(sc.per_class.iter().copied()).collect(),
        confusion: conf.clone(),
        model_bytes: bytes.len(),
        arena_bytes: model.info.arena_size,
        invoke: latency(t_inv),
        preprocess: latency(t_pre),
        machine: format!(
            "{} {}, {threads} threads, one image at a time on one thread",
            std::env::consts::OS,
            std::env::consts::ARCH
        ),
    };
    print_results(&res);
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let json = serde_json::to_vec_pretty(&res).map_err(|e| e.to_string())?;
        rsim_model::write::write_atomic(&dir.join("results.json"), &json)
            .map_err(|e| format!("cannot write results.json: {e}"))?;
        let title = format!("{} ({}) on {}", res.name, res.precision, res.split);
        crate::plots::plot_confusion(&conf, &classes, &dir.join("confusion.png"), &title)?;
        println!("wrote {} and {}", dir.join("results.json").display(), dir.join("confusion.png").display());
    }
    Ok(res)
}

fn print_results(r: &EvalResults) {
    println!("model      {} ({}, {})", r.model, r.name, r.precision);
    println!("data       {} [{}], {} images", r.data, r.split, r.images);
    println!("OA {:.2}%  AA {:.2}%  kappa {:.4}", r.oa * 100.0, r.aa * 100.0, r.kappa);
    for (c, acc) in &r.per_class {
        println!("  {c:<24} {:>6.2}%", acc * 100.0);
    }
    println!("model bytes {}  arena bytes {}  MACs per inference {}", r.model_bytes, r.arena_bytes, r.macs);
    println!(
        "latency per image: invoke median {:.3} ms (p90 {:.3}), preprocess median {:.3} ms (p90 {:.3}) [{}]",
        r.invoke.median_ms, r.invoke.p90_ms, r.preprocess.median_ms, r.preprocess.p90_ms, r.machine
    );
}
