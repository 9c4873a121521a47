//! `rsim bench step` / `rsim bench views`: the numbers `cargo xtask bench train` compares with
//! PyTorch. Timings only; nothing here is a test.
use std::time::Instant;

use clap::{Args, Subcommand};
use tch::{Device, Kind, Tensor};

use crate::methods::{MethodCfg, MethodKind};
use crate::optim::{OptConfig, OptKind};
use crate::train::{Amp, PretrainCfg, Trainer};
use crate::views::ViewCfg;

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// One SSL step (two views, fixed random batch): forward, loss, backward, optimiser.
    Step(StepArgs),
    /// Tensor-side two-view augmentation (crop/flip/rot90/jitter/gray) from decoded images.
    Views(ViewsArgs),
}

#[derive(Args, Debug)]
pub struct StepArgs {
    /// Backbone architecture.
    #[arg(long, default_value = "resnet18")]
    pub arch: String,
    /// simclr, moco or byol.
    #[arg(long, default_value = "simclr")]
    pub method: String,
    /// Input side.
    #[arg(long, default_value_t = 64)]
    pub size: i64,
    /// Images per view.
    #[arg(long, default_value_t = 64)]
    pub batch: i64,
    /// Timed steps (the first, warm-up, step is not counted).
    #[arg(long, default_value_t = 6)]
    pub steps: usize,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// none or fp16 (CUDA).
    #[arg(long, default_value = "none")]
    pub amp: String,
}

#[derive(Args, Debug)]
pub struct ViewsArgs {
    /// Image folder (class subfolders).
    #[arg(long)]
    pub data: std::path::PathBuf,
    /// View side.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Timed batches.
    #[arg(long, default_value_t = 20)]
    pub batches: u64,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn step(a: &StepArgs) -> Result<(), String> {
    let dev = crate::cli::device(&a.device)?;
    let kind = MethodKind::parse(&a.method)?;
    // Same head and optimiser as the PyTorch reference script: Linear-ReLU-Linear 512/128, SGD 0.9.
    let mut m = MethodCfg::defaults(kind);
    m.tau = 0.5;
    let cfg = PretrainCfg {
        arch: a.arch.clone(),
        bands: 3,
        method: m,
        opt: OptConfig::new(OptKind::Sgd, 1e-4),
        lr: 0.1,
        warmup_steps: 0,
        steps: a.steps + 1,
        batch: a.batch as usize,
        seed: 0,
        views: ViewCfg::ssl(a.size as usize),
        ckpt_every: 0,
        keep_ckpts: 1,
        log_every: 1,
        amp: if a.amp == "fp16" { Amp::Fp16 } else { Amp::None },
        balanced: false,
    };
    let mut t = Trainer::new(cfg, dev)?;
    let x1 = Tensor::randn([a.batch, 3, a.size, a.size], (Kind::Float, dev));
    let x2 = Tensor::randn([a.batch, 3, a.size, a.size], (Kind::Float, dev));
    let mut times = Vec::new();
    for i in 0..=a.steps {
        let t0 = Instant::now();
        let _ = t.train_step(&x1, &x2); // reads the loss back: a device sync
        if i > 0 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    let med = median(times);
    println!(
        "rsim tch threads {} {}@{} batch {} {} on {:?}: median step {:.0} ms",
        tch::get_num_threads(),
        a.arch,
        a.size,
        a.batch,
        kind.name(),
        dev,
        med * 1000.0
    );
    println!("{:.1} img/s", 2.0 * a.batch as f64 / med);
    Ok(())
}

pub fn views(a: &ViewsArgs) -> Result<(), String> {
    let dev = crate::cli::device(&a.device)?;
    let t0 = Instant::now();
    let bank = crate::bank::Bank::load(&a.data, crate::bank::Part::All, 3, a.size, false)?;
    let decode_s = t0.elapsed().as_secs_f64();
    let mut s = crate::views::ViewStream::new(&bank, ViewCfg::ssl(a.size), a.batch, 0, dev)?;
    let _ = s.views(0);
    let t0 = Instant::now();
    for k in 1..=a.batches {
        let (v1, _) = s.views(k);
        let _ = v1.sum(Kind::Float).double_value(&[]);
    }
    let secs = t0.elapsed().as_secs_f64();
    println!("decoded {} images in {decode_s:.1}s ({:.0} img/s)", bank.len(), bank.len() as f64 / decode_s);
    println!(
        "{:.1} augmented img/s (two views of {} x {} batches on {:?})",
        (2 * a.batch as u64 * a.batches) as f64 / secs,
        a.batch,
        a.batches,
        dev
    );
    let _ = Device::Cpu;
    Ok(())
}
