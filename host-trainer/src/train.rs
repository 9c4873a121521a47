//! The pretraining loop: views -> method loss -> backward -> optimiser, with warm-up + cosine,
//! optional fp16 autocast and loss scaling on CUDA, checkpoints, exact resume, JSONL metrics and a
//! progress bar.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rsim_model::arch::Arch;
use tch::{Device, Kind, Tensor};

use crate::bank::Bank;
use crate::checkpoint;
use crate::loader_views::ViewSource;
use crate::methods::{MethodCfg, SslModel};
use crate::optim::{lr_at, OptConfig, Optimizer};
use crate::views::{ViewCfg, ViewStream};

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Amp {
    None,
    /// fp16 autocast (CUDA only; tch's autocast is fp16) with dynamic loss scaling.
    Fp16,
    /// bf16 autocast (CUDA and CPU; bf16 has f32's exponent range, so no loss scaling).
    Bf16,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PretrainCfg {
    pub arch: String,
    pub bands: usize,
    pub method: MethodCfg,
    pub opt: OptConfig,
    pub lr: f64,
    pub warmup_steps: usize,
    pub steps: usize,
    pub batch: usize,
    pub seed: u64,
    pub views: ViewCfg,
    pub ckpt_every: usize,
    pub keep_ckpts: usize,
    pub log_every: usize,
    pub amp: Amp,
    /// Sample classes uniformly, then images within a class (TOV's balanced stage).
    pub balanced: bool,
}

pub struct Trainer {
    pub cfg: PretrainCfg,
    pub model: SslModel,
    pub opt: Optimizer,
    pub step: u64,
    pub device: Device,
    scale: Option<(Tensor, Tensor)>,
    /// Step of the last checkpoint written or resumed from: a second save of the same step is a no-op.
    saved: Option<(u64, PathBuf)>,
}

impl Trainer {
    pub fn new(cfg: PretrainCfg, device: Device) -> Result<Trainer, String> {
        let arch = Arch::parse(&cfg.arch)?;
        tch::manual_seed(cfg.seed as i64);
        let model = SslModel::new(arch, cfg.bands, cfg.method.clone(), device);
        let opt = Optimizer::new(cfg.opt.clone(), model.params());
        let scale = (cfg.amp == Amp::Fp16 && device.is_cuda())
            .then(|| (Tensor::from(65536.0f32).to_device(device), Tensor::zeros([], (Kind::Int, device))));
        Ok(Trainer { cfg, model, opt, step: 0, device, scale, saved: None })
    }

    /// Starts from the backbone weights in a safetensors file (torchvision keys), e.g. TOV stage 2.
    pub fn init_backbone(&mut self, path: &Path) -> Result<(), String> {
        let tensors = checkpoint::load_tensors(path)?;
        let mut vars = self.model.backbone.vs.variables();
        let mut missing: Vec<String> = vars.keys().cloned().collect();
        tch::no_grad(|| -> Result<(), String> {
            for (k, t) in tensors {
                let k = k.strip_prefix("backbone.").map(str::to_string).unwrap_or(k);
                if let Some(dst) = vars.get_mut(&k) {
                    if dst.size() != t.size() {
                        return Err(format!(
                            "{}: '{k}' has shape {:?}, the {} backbone {:?}",
                            path.display(),
                            t.size(),
                            self.cfg.arch,
                            dst.size()
                        ));
                    }
                    dst.copy_(&t.to_device(self.device));
                    missing.retain(|m| m != &k);
                }
            }
            Ok(())
        })?;
        if !missing.is_empty() {
            return Err(format!(
                "{} lacks {} backbone weights of {}, e.g. '{}'",
                path.display(),
                missing.len(),
                self.cfg.arch,
                missing[0]
            ));
        }
        Ok(())
    }

    /// One optimisation step on two views; returns the loss (before scaling).
    pub fn train_step(&mut self, x1: &Tensor, x2: &Tensor) -> f64 {
        let lr = lr_at(self.step as usize, self.cfg.steps, self.cfg.warmup_steps, self.cfg.lr, 0.0);
        let loss = match self.cfg.amp {
            Amp::Bf16 => {
                let model = &mut self.model;
                crate::amp::with_autocast(self.device, crate::amp::Reduced::Bf16, || model.loss(x1, x2))
                    .unwrap_or_else(|e| panic!("{e}"))
            }
            _ => tch::autocast(self.scale.is_some(), || self.model.loss(x1, x2)),
        };
        self.opt.zero_grad();
        let mut skip = false;
        if let Some((scale, growth)) = self.scale.as_mut() {
            (&loss * &*scale).backward();
            let mut found_inf = Tensor::zeros([1], (Kind::Float, self.device));
            let inv = scale.reciprocal();
            for (_, p) in self.model.params() {
                let mut g = p.grad();
                if g.defined() {
                    g.internal_amp_non_finite_check_and_unscale(&mut found_inf, &inv);
                }
            }
            skip = found_inf.double_value(&[0]) > 0.0;
            // GradScaler's schedule: halve on overflow, double after 2000 clean steps.
            let _ = scale.internal_amp_update_scale_(growth, &found_inf, 2.0, 0.5, 2000);
        } else {
            loss.backward();
        }
        let value = loss.double_value(&[]);
        // A non-finite loss never reaches the weights (the caller stops the run on it).
        skip |= !value.is_finite();
        if !skip {
            self.opt.step(lr);
            self.model.after_step(self.step as f64 / self.cfg.steps.max(1) as f64);
        }
        self.step += 1;
        value
    }

    /// Writes a checkpoint of the current step (once: saving the same step again returns its directory).
    pub fn save(&mut self, run: &Path) -> Result<PathBuf, String> {
        if let Some((step, dir)) = &self.saved {
            if *step == self.step && dir.starts_with(run) {
                return Ok(dir.clone());
            }
        }
        let state = serde_json::json!({ "step": self.step, "config": self.cfg });
        let mut optim = self.opt.state();
        if let Some((s, g)) = &self.scale {
            optim.push(("amp.scale".into(), s.shallow_clone()));
            optim.push(("amp.growth".into(), g.shallow_clone()));
        }
        let dir = checkpoint::save(run, self.step, &self.model.all_state(), &optim, &state)?;
        checkpoint::prune(run, self.cfg.keep_ckpts.max(1));
        self.saved = Some((self.step, dir.clone()));
        Ok(dir)
    }

    /// Restores weights, optimiser, loss scale and step from a checkpoint (or a run's LATEST).
    pub fn resume(&mut self, path: &Path) -> Result<(), String> {
        let ck = checkpoint::load(path)?;
        self.model.load_all_state(ck.model)?;
        let mut optim = ck.optim;
        let amp: Vec<(String, Tensor)> =
            optim.iter().filter(|(k, _)| k.starts_with("amp.")).map(|(k, t)| (k.clone(), t.shallow_clone())).collect();
        optim.retain(|(k, _)| !k.starts_with("amp."));
        self.opt.load_state(optim)?;
        if let Some((s, g)) = self.scale.as_mut() {
            for (k, t) in amp {
                let dst = if k == "amp.scale" { &mut *s } else { &mut *g };
                dst.copy_(&t.to_device(self.device));
            }
        }
        self.step = ck.state["step"].as_u64().ok_or_else(|| format!("{}/state.json has no step", ck.dir.display()))?;
        self.saved = Some((self.step, ck.dir));
        Ok(())
    }
}

/// Runs pretraining to `cfg.steps`, writing `<run>/metrics.jsonl`, checkpoints and
/// `<run>/backbone.safetensors` (torchvision keys). Stops early (with a checkpoint) after
/// `max_minutes`. Returns the losses of the steps run.
pub fn pretrain(
    trainer: &mut Trainer,
    bank: &Bank,
    run: &Path,
    max_minutes: Option<f64>,
    quiet: bool,
) -> Result<Vec<f64>, String> {
    let cfg = trainer.cfg.clone();
    let mut stream = ViewStream::new(bank, cfg.views.clone(), cfg.batch, cfg.seed, trainer.device)?;
    stream.balanced = cfg.balanced;
    pretrain_from(trainer, &mut stream, run, max_minutes, quiet)
}

/// [`pretrain`] with views from any [`ViewSource`] (e.g. the Rust loader with OT colour transfer).
pub fn pretrain_from(
    trainer: &mut Trainer,
    stream: &mut dyn ViewSource,
    run: &Path,
    max_minutes: Option<f64>,
    quiet: bool,
) -> Result<Vec<f64>, String> {
    std::fs::create_dir_all(run).map_err(|e| format!("creating {}: {e}", run.display()))?;
    let cfg = trainer.cfg.clone();
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run.join("metrics.jsonl"))
        .map_err(|e| format!("opening metrics.jsonl: {e}"))?;
    let bar = if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(cfg.steps as u64) };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
        )
        .expect("valid template"),
    );
    bar.set_position(trainer.step);
    let start = Instant::now();
    let (mut window_t, mut window_imgs) = (Instant::now(), 0usize);
    let mut losses = Vec::new();
    while (trainer.step as usize) < cfg.steps {
        let (x1, x2) = stream.views(trainer.step)?;
        let loss = trainer.train_step(&x1, &x2);
        if !loss.is_finite() {
            // Weights and batch-norm statistics may already hold the bad values: nothing is saved,
            // the last good checkpoint stays LATEST.
            bar.abandon();
            let kept = match &trainer.saved {
                Some((step, dir)) => format!("the last good checkpoint is step {step} ({})", dir.display()),
                None => "no checkpoint was written in this run".into(),
            };
            return Err(format!(
                "loss became {loss} at step {}; stopped without saving, {kept}; lower --lr?",
                trainer.step
            ));
        }
        losses.push(loss);
        window_imgs += 2 * cfg.batch;
        let step = trainer.step as usize;
        if step.is_multiple_of(cfg.log_every.max(1)) || step == cfg.steps {
            let secs = window_t.elapsed().as_secs_f64().max(1e-9);
            let img_s = window_imgs as f64 / secs;
            let lr = lr_at(step - 1, cfg.steps, cfg.warmup_steps, cfg.lr, 0.0);
            let epoch = step as f64 / stream.steps_per_epoch() as f64;
            let line = serde_json::json!({"step": step, "epoch": epoch, "loss": loss, "lr": lr, "img_s": img_s,
                "elapsed_s": start.elapsed().as_secs_f64()});
            writeln!(log, "{line}").map_err(|e| format!("writing metrics.jsonl: {e}"))?;
            bar.set_message(format!("loss {loss:.4}  {img_s:.0} img/s  epoch {epoch:.2}"));
            (window_t, window_imgs) = (Instant::now(), 0);
        }
        bar.set_position(step as u64);
        let out_of_time = max_minutes.is_some_and(|m| start.elapsed().as_secs_f64() > m * 60.0);
        if (cfg.ckpt_every > 0 && step.is_multiple_of(cfg.ckpt_every)) || out_of_time {
            trainer.save(run)?;
        }
        if out_of_time {
            bar.abandon_with_message(format!("stopped by --minutes at step {step}"));
            break;
        }
    }
    bar.finish();
    if trainer.step as usize >= cfg.steps {
        trainer.save(run)?;
    }
    checkpoint::save_tensors(&run.join("backbone.safetensors"), &crate::net::named_sorted(&trainer.model.backbone.vs))?;
    let title = format!("{} {} pretraining loss", cfg.method.kind.name(), cfg.arch);
    crate::plots::plot_loss_curve(&run.join("metrics.jsonl"), &run.join("loss.png"), &["loss"], &title)?;
    Ok(losses)
}
