//! Trainer core: builder naming, losses and optimisers against hand values, and on real tiles
//! (eurosat-rgb-ci20) each method end to end, loss falling on a fixed batch, and exact resume.
mod common;
use common::ci20;
use std::rc::Rc;

use rsim_model::arch::{ConvSpec, NetBuilder};
use rsim_model::graph::Activation;
use rsim_train::bank::{Bank, Part};
use rsim_train::checkpoint;
use rsim_train::loader_views::ViewSource;
use rsim_train::loss::{self, FalseCfg};
use rsim_train::methods::{MethodCfg, MethodKind};
use rsim_train::net::TchBuilder;
use rsim_train::optim::{lr_at, OptConfig, OptKind, Optimizer};
use rsim_train::train::{self, Amp, PretrainCfg, Trainer};
use rsim_train::views::{ViewCfg, ViewStream};
use tch::{nn, Device, Kind, Tensor};

/// A two-conv network written here, independent of the architecture files.
fn tiny<B: NetBuilder>(b: &mut B, bands: usize, x: &B::Value) -> B::Value {
    let y = b.conv2d("stem.0", x, ConvSpec::new(bands, 8, 3, 2));
    let y = b.batch_norm("stem.1", &y, 8);
    let y = b.activation(&y, Activation::Relu);
    let y = b.conv2d("head", &y, ConvSpec::new(8, 4, 1, 1).with_bias());
    let y = b.global_avg_pool(&y);
    let y = b.flatten(&y);
    b.linear("fc", &y, 4, 2)
}

#[test]
fn builder_names_are_state_dict_keys_and_bands_reach_the_first_conv() {
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let mut b = TchBuilder::new(&root, true);
    let out = tiny(&mut b, 5, &Rc::new(Tensor::randn([3, 5, 16, 16], (Kind::Float, Device::Cpu))));
    assert_eq!(out.size(), vec![3, 2]);
    let mut keys: Vec<String> = vs.variables().into_keys().collect();
    keys.sort();
    let expect = [
        "fc.bias",
        "fc.weight",
        "head.bias",
        "head.weight",
        "stem.0.weight",
        "stem.1.bias",
        "stem.1.num_batches_tracked",
        "stem.1.running_mean",
        "stem.1.running_var",
        "stem.1.weight",
    ];
    assert_eq!(keys, expect);
    assert_eq!(vs.variables()["stem.0.weight"].size(), vec![8, 5, 3, 3]);
    // A second pass reuses the variables (no `__N` duplicates) and trains BN's running stats.
    let mut b = TchBuilder::new(&root, true);
    let _ = tiny(&mut b, 5, &Rc::new(Tensor::randn([3, 5, 16, 16], (Kind::Float, Device::Cpu)) + 3.0));
    assert_eq!(vs.variables().len(), expect.len());
    assert_eq!(vs.variables()["stem.1.num_batches_tracked"].int64_value(&[]), 2);
    assert!(vs.variables()["stem.1.running_mean"].abs().sum(Kind::Float).double_value(&[]) > 0.0);
}

#[test]
fn nt_xent_matches_the_closed_form_and_false_lowers_it_by_log_1_plus_alpha_s_over_p() {
    // Identical views of N orthonormal vectors: positive cos 1, negatives cos 0.
    let n = 4i64;
    let z = Tensor::eye(n, (Kind::Float, Device::Cpu));
    let tau = 0.5;
    let l = loss::nt_xent(&z, &z, tau, None).double_value(&[]);
    let e2 = (1.0f64 / tau).exp();
    let expect = -(e2 / (e2 + (2 * n - 2) as f64)).ln();
    assert!((l - expect).abs() < 1e-5, "{l} vs {expect}");
    // FALSE with alpha: one row gains alpha*S of a negative in its numerator (S = e^0 = 1, P = e^2).
    let alpha = 0.7;
    let lf = loss::nt_xent(&z, &z, tau, Some(FalseCfg { alpha, threshold: 0.9 })).double_value(&[]);
    let drop = (1.0 + alpha * 1.0 / e2).ln() / (2 * n) as f64;
    assert!((l - lf - drop).abs() < 1e-5, "drop {} vs {drop}", l - lf);
    // Gate: positive cosine below the threshold leaves the loss unchanged.
    let lg = loss::nt_xent(&z, &z, tau, Some(FalseCfg { alpha, threshold: 1.5 })).double_value(&[]);
    assert!((lg - l).abs() < 1e-7);
}

#[test]
fn moco_infonce_puts_the_key_first() {
    let q = Tensor::eye(2, (Kind::Float, Device::Cpu));
    let queue = Tensor::from_slice(&[0.0f32, 1.0, 1.0, 0.0]).view([2, 2]);
    let l = loss::moco_infonce(&q, &q, &queue, 1.0, None).double_value(&[]);
    // Row 0: logits [1, 0, 1] -> -log(e / (2e + 1)); row 1 the same by symmetry.
    let e = 1f64.exp();
    assert!((l + (e / (2.0 * e + 1.0)).ln()).abs() < 1e-6);
}

fn param(v: &[f32]) -> Tensor {
    Tensor::from_slice(v).set_requires_grad(true)
}

#[test]
fn sgd_and_adamw_follow_pytorch_update_rules() {
    let w = param(&[1.0, -2.0]).view([1, 2]).detach().set_requires_grad(true);
    let mut o = Optimizer::new(
        OptConfig { momentum: 0.9, ..OptConfig::new(OptKind::Sgd, 0.1) },
        vec![("w".into(), w.shallow_clone())],
    );
    for _ in 0..2 {
        o.zero_grad();
        (&w * Tensor::from_slice(&[3.0f32, 4.0]).view([1, 2])).sum(Kind::Float).backward();
        o.step(0.5);
    }
    // step 1: d = g + 0.1 w = [3.1, 3.8]; buf = d; w = [1 - 1.55, -2 - 1.9] = [-0.55, -3.9]
    // step 2: d = [3 - 0.055, 4 - 0.39] = [2.945, 3.61]; buf = 0.9 buf + d = [5.735, 7.03]
    let got = Vec::<f32>::try_from(w.detach().flatten(0, -1)).unwrap();
    let want = [-0.55 - 0.5 * 5.735, -3.9 - 0.5 * 7.03];
    for (g, e) in got.iter().zip(want) {
        assert!((*g as f64 - e).abs() < 1e-5, "{got:?} vs {want:?}");
    }
    let w = param(&[1.0, -2.0]).view([1, 2]).detach().set_requires_grad(true);
    let mut o = Optimizer::new(OptConfig::new(OptKind::AdamW, 0.01), vec![("w".into(), w.shallow_clone())]);
    o.zero_grad();
    (&w * Tensor::from_slice(&[3.0f32, -4.0]).view([1, 2])).sum(Kind::Float).backward();
    o.step(0.1);
    // First AdamW step: w (1 - lr wd) - lr * sign(g) (bias-corrected m/sqrt(v) = g/|g|).
    let got = Vec::<f32>::try_from(w.detach().flatten(0, -1)).unwrap();
    let want = [1.0 * (1.0 - 0.001) - 0.1, -2.0 * (1.0 - 0.001) + 0.1];
    for (g, e) in got.iter().zip(want) {
        assert!((*g as f64 - e).abs() < 1e-5, "{got:?} vs {want:?}");
    }
}

#[test]
fn lars_scales_by_trust_ratio_and_skips_biases() {
    let w = Tensor::from_slice(&[3.0f32, 4.0]).view([1, 2]).set_requires_grad(true); // |w| = 5
    let b = param(&[1.0]);
    let cfg = OptConfig { momentum: 0.0, eta: 0.02, ..OptConfig::new(OptKind::Lars, 0.0) };
    let mut o = Optimizer::new(cfg, vec![("w".into(), w.shallow_clone()), ("b".into(), b.shallow_clone())]);
    o.zero_grad();
    ((&w * Tensor::from_slice(&[0.6f32, 0.8]).view([1, 2])).sum(Kind::Float) + &b * 2.0).sum(Kind::Float).backward();
    o.step(1.0);
    // |g| = 1 -> trust = 0.02 * 5 / 1 = 0.1; w -= 0.1 * g. Bias: plain SGD.
    let got = Vec::<f32>::try_from(w.detach().flatten(0, -1)).unwrap();
    assert!((got[0] - (3.0 - 0.06)).abs() < 1e-6 && (got[1] - (4.0 - 0.08)).abs() < 1e-6, "{got:?}");
    assert!((b.double_value(&[0]) - (1.0 - 2.0)).abs() < 1e-6);
}

#[test]
fn warmup_then_cosine() {
    assert!((lr_at(0, 100, 10, 1.0, 0.0) - 0.1).abs() < 1e-12);
    assert!((lr_at(9, 100, 10, 1.0, 0.0) - 1.0).abs() < 1e-12);
    assert!((lr_at(55, 100, 10, 1.0, 0.0) - 0.5).abs() < 1e-12);
    assert!(lr_at(100, 100, 10, 1.0, 0.0).abs() < 1e-12);
}

fn cfg(kind: MethodKind, steps: usize) -> PretrainCfg {
    let mut m = MethodCfg::defaults(kind);
    m.queue = 64;
    m.proj_hidden = 64;
    m.proj_dim = 32;
    PretrainCfg {
        arch: "resnet8".into(),
        bands: 3,
        method: m,
        opt: OptConfig::new(OptKind::Sgd, 1e-4),
        lr: 0.05,
        warmup_steps: 2,
        steps,
        batch: 16,
        seed: 7,
        views: ViewCfg::ssl(32),
        ckpt_every: 0,
        keep_ckpts: 2,
        log_every: 1,
        amp: Amp::None,
        balanced: false,
    }
}

fn bank() -> Option<Bank> {
    let root = ci20()?;
    tch::set_num_threads(2);
    Some(Bank::load(&root, Part::Train(0.8), 3, 32, true).expect("ci20 decodes"))
}

#[test]
fn each_method_runs_end_to_end_on_real_tiles() {
    let Some(bank) = bank() else { return };
    for (kind, fneg) in
        [(MethodKind::SimClr, false), (MethodKind::SimClr, true), (MethodKind::MoCo, true), (MethodKind::Byol, false)]
    {
        let mut c = cfg(kind, 3);
        if fneg {
            c.method.false_cfg = Some(FalseCfg::default());
        }
        let dir = tempfile::tempdir().unwrap();
        let mut t = Trainer::new(c, Device::Cpu).unwrap();
        let losses = train::pretrain(&mut t, &bank, dir.path(), None, true).unwrap();
        assert_eq!(losses.len(), 3, "{kind:?}");
        assert!(losses.iter().all(|l| l.is_finite()), "{kind:?}: {losses:?}");
        assert!(dir.path().join("backbone.safetensors").exists());
        assert!(dir.path().join("ckpt/LATEST").exists());
        let lines = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
        assert_eq!(lines.lines().count(), 3);
    }
}

#[test]
fn loss_falls_on_a_fixed_batch() {
    let Some(bank) = bank() else { return };
    for kind in [MethodKind::SimClr, MethodKind::MoCo, MethodKind::Byol] {
        let mut c = cfg(kind, 30);
        // On one fixed batch the MoCo queue fills with older keys of the very same images, so each
        // positive reappears among the negatives and the loss floor is ln(1 + copies). A queue of one
        // batch holds exactly one copy (floor ln 2); the loss is measured once that queue is real.
        c.method.queue = 16;
        let mut t = Trainer::new(c, Device::Cpu).unwrap();
        let mut s = ViewStream::new(&bank, ViewCfg::ssl(32), 16, 3, Device::Cpu).unwrap();
        let (x1, x2) = s.views(0);
        let losses: Vec<f64> = (0..30).map(|_| t.train_step(&x1, &x2)).collect();
        let first: f64 = losses[1..4].iter().sum::<f64>() / 3.0;
        let last: f64 = losses[27..].iter().sum::<f64>() / 3.0;
        assert!(last < 0.8 * first, "{kind:?}: {first} -> {last} ({losses:?})");
    }
}

#[test]
fn resumed_run_gives_the_same_next_losses() {
    let Some(bank) = bank() else { return };
    for kind in [MethodKind::MoCo, MethodKind::Byol, MethodKind::SimClr] {
        let mut c = cfg(kind, 8);
        c.opt = OptConfig::new(if kind == MethodKind::Byol { OptKind::Lars } else { OptKind::AdamW }, 1e-4);
        c.lr = if kind == MethodKind::Byol { 0.05 } else { 1e-3 };
        c.ckpt_every = 4;
        let full_dir = tempfile::tempdir().unwrap();
        let mut full = Trainer::new(c.clone(), Device::Cpu).unwrap();
        let all = train::pretrain(&mut full, &bank, full_dir.path(), None, true).unwrap();
        // Interrupted: a run that stopped after step 4, then a fresh process resuming it.
        let dir = tempfile::tempdir().unwrap();
        let mut first = Trainer::new(PretrainCfg { steps: 8, ..c.clone() }, Device::Cpu).unwrap();
        let mut stream = ViewStream::new(&bank, c.views.clone(), c.batch, c.seed, Device::Cpu).unwrap();
        for step in 0..4 {
            let (x1, x2) = stream.views(step);
            first.train_step(&x1, &x2);
        }
        first.save(dir.path()).unwrap();
        drop(first);
        let mut resumed = Trainer::new(c.clone(), Device::Cpu).unwrap();
        resumed.resume(dir.path()).unwrap();
        assert_eq!(resumed.step, 4);
        let rest = train::pretrain(&mut resumed, &bank, dir.path(), None, true).unwrap();
        assert_eq!(rest.len(), 4);
        assert_eq!(&all[4..], &rest[..], "{kind:?}: resumed losses differ");
    }
}

/// Real views, except that from `poison_from` on one image is NaN (a corrupt tile, a bad band).
struct PoisonedViews<'a> {
    inner: ViewStream<'a>,
    poison_from: u64,
}

impl ViewSource for PoisonedViews<'_> {
    fn views(&mut self, step: u64) -> Result<(Tensor, Tensor), String> {
        let (x1, x2) = self.inner.views(step);
        if step >= self.poison_from {
            let _ = x1.get(0).fill_(f64::NAN);
        }
        Ok((x1, x2))
    }
    fn steps_per_epoch(&self) -> usize {
        ViewSource::steps_per_epoch(&self.inner)
    }
}

#[test]
fn a_non_finite_loss_stops_the_run_and_never_becomes_a_checkpoint() {
    let Some(bank) = bank() else { return };
    let mut c = cfg(MethodKind::SimClr, 8);
    c.ckpt_every = 2;
    let dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::new(c.clone(), Device::Cpu).unwrap();
    let inner = ViewStream::new(&bank, c.views.clone(), c.batch, c.seed, Device::Cpu).unwrap();
    let mut views = PoisonedViews { inner, poison_from: 3 };
    let err = train::pretrain_from(&mut t, &mut views, dir.path(), None, true).unwrap_err();
    assert!(err.contains("loss became NaN at step 4") && err.contains("last good checkpoint is step 2"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.path().join("ckpt/LATEST")).unwrap(), "step-0000002");
    assert!(!dir.path().join("ckpt/step-0000004").exists());
    // The kept checkpoint is finite and resumable. The step that saw NaN did not touch the trained
    // weights; its forward pass did poison batch-norm running statistics, which is why nothing is saved.
    let mut resumed = Trainer::new(c.clone(), Device::Cpu).unwrap();
    resumed.resume(dir.path()).unwrap();
    assert_eq!(resumed.step, 2);
    let finite = |t: &Tensor| t.isfinite().all().int64_value(&[]) == 1;
    let is_stat = |name: &str| name.contains("running_") || name.contains("num_batches");
    for (name, p) in t.model.params().into_iter().filter(|(n, _)| !is_stat(n)) {
        assert!(finite(&p), "{name} became non-finite although its step was skipped");
    }
    assert!(t.model.params().iter().any(|(n, p)| is_stat(n) && !finite(p)), "the NaN batch reached no statistic");
    assert!(resumed.model.params().iter().all(|(_, p)| finite(p)));
    // The checkpoint writer refuses non-finite weights whatever calls it.
    let nan = vec![("w".to_string(), Tensor::from_slice(&[1.0f32, f32::NAN]))];
    let err = checkpoint::save(dir.path(), 9, &nan, &[], &serde_json::json!({"step": 9})).unwrap_err();
    assert!(err.contains("`w`") && err.contains("NaN"), "{err}");
    assert!(!dir.path().join("ckpt/step-0000009").exists());
}

#[test]
fn a_torn_latest_checkpoint_falls_back_to_the_previous_one_and_a_step_is_saved_once() {
    let Some(bank) = bank() else { return };
    let mut c = cfg(MethodKind::SimClr, 4);
    c.ckpt_every = 2;
    let dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::new(c.clone(), Device::Cpu).unwrap();
    train::pretrain(&mut t, &bank, dir.path(), None, true).unwrap();
    let last = dir.path().join("ckpt/step-0000004");
    // Saved once: a second save of step 4 (the run end after a checkpoint step) keeps the directory.
    std::fs::write(last.join("marker"), b"x").unwrap();
    assert_eq!(t.save(dir.path()).unwrap(), last);
    assert!(last.join("marker").exists(), "step 4 was written again");
    // A torn model file in the newest checkpoint: loading the run falls back to step 2.
    let model = last.join("model.safetensors");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 3]).unwrap();
    let ck = checkpoint::load(dir.path()).unwrap();
    assert_eq!(ck.dir, dir.path().join("ckpt/step-0000002"));
    assert_eq!(ck.state["step"], 2);
    // Naming the torn checkpoint directly is an error, not a silent fallback.
    assert!(checkpoint::load(&last).is_err());
}
