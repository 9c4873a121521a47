//! Pretraining fed by the Rust data pipeline (`--pipeline rust`): deterministic views, resume at any
//! step sees the batches an uninterrupted run sees, and SimCLR with STICL's OT colour transfer runs
//! end to end on real tiles (eurosat-rgb-ci20).
mod common;
use common::ci20;

use rsim_train::augment::{OtConfig, Pipeline};
use rsim_train::data::LoaderConfig;
use rsim_train::loader_views::{ssl_pipeline, train_split, LoaderViews, ViewSource};
use rsim_train::methods::{MethodCfg, MethodKind};
use rsim_train::optim::{OptConfig, OptKind};
use rsim_train::train::{self, Amp, PretrainCfg, Trainer};
use rsim_train::views::ViewCfg;
use tch::{Device, Tensor};

fn loader_cfg(workers: usize) -> LoaderConfig {
    LoaderConfig { batch_size: 16, seed: 11, workers, bands: 3, cache: true, strict: true, ..Default::default() }
}

/// The SSL pipeline with OT on view 1 at probability `p`, over 64 sampled pixels instead of STICL's
/// 1,000 so the exact assignment stays cheap in a debug test.
fn pipeline(p: f64) -> Pipeline {
    let mut pipe = ssl_pipeline(&ViewCfg::ssl(32), 3, p);
    pipe.ot = pipe.ot.map(|o| OtConfig { samples: 64, ..o });
    pipe
}

fn same(a: &Tensor, b: &Tensor) -> bool {
    a.size() == b.size() && a.equal(b)
}

#[test]
fn views_are_deterministic_and_resume_mid_run() {
    let Some(root) = ci20() else { return };
    let ds = train_split(&root, 0.8).unwrap();
    assert_eq!(ds.len(), 160, "ci20 has 20 tiles per class, 16 in the train split");
    let pipe = pipeline(0.5);
    assert!(pipe.ot.is_some());

    // Ten batches (one epoch is 10 of 16) plus two into the next epoch, from two worker counts.
    let mut a = LoaderViews::new(&ds, pipe.clone(), loader_cfg(2), 0, Device::Cpu).unwrap();
    let mut b = LoaderViews::new(&ds, pipe.clone(), loader_cfg(0), 0, Device::Cpu).unwrap();
    assert_eq!(a.steps_per_epoch(), 10);
    let mut seen = Vec::new();
    for step in 0..12 {
        let (a1, a2) = a.views(step).unwrap();
        let (b1, b2) = b.views(step).unwrap();
        assert_eq!(a1.size(), vec![16, 3, 32, 32]);
        assert!(same(&a1, &b1) && same(&a2, &b2), "step {step}: worker count changed the views");
        assert!(!same(&a1, &a2), "the two views of a batch must differ");
        seen.push((a1, a2));
    }
    // A run resumed at step 7 (mid-epoch) and at 10 (epoch boundary).
    for start in [7u64, 10] {
        let mut r = LoaderViews::new(&ds, pipe.clone(), loader_cfg(2), start, Device::Cpu).unwrap();
        for step in start..12 {
            let (r1, r2) = r.views(step).unwrap();
            let (s1, s2) = &seen[step as usize];
            assert!(same(&r1, s1) && same(&r2, s2), "resumed at {start}: step {step} differs");
        }
        assert!(r.views(3).is_err(), "asking for an earlier step is an error, not a silent wrong batch");
    }
    // Another seed gives other views.
    let mut c = LoaderViews::new(&ds, pipe, LoaderConfig { seed: 12, ..loader_cfg(2) }, 0, Device::Cpu).unwrap();
    assert!(!same(&c.views(0).unwrap().0, &seen[0].0));
}

#[test]
fn simclr_with_ot_colour_transfer_trains_from_the_rust_pipeline() {
    let Some(root) = ci20() else { return };
    tch::set_num_threads(2);
    let ds = train_split(&root, 0.8).unwrap();
    let mut m = MethodCfg::defaults(MethodKind::SimClr);
    m.proj_hidden = 64;
    m.proj_dim = 32;
    let cfg = PretrainCfg {
        arch: "resnet8".into(),
        bands: 3,
        method: m,
        opt: OptConfig::new(OptKind::Sgd, 1e-4),
        lr: 0.05,
        warmup_steps: 1,
        steps: 4,
        batch: 16,
        seed: 11,
        views: ViewCfg::ssl(32),
        ckpt_every: 2,
        keep_ckpts: 2,
        log_every: 1,
        amp: Amp::None,
        balanced: false,
    };
    let dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::new(cfg.clone(), Device::Cpu).unwrap();
    let pipe = pipeline(1.0);
    let mut views = LoaderViews::new(&ds, pipe.clone(), loader_cfg(2), 0, Device::Cpu).unwrap();
    let losses = train::pretrain_from(&mut t, &mut views, dir.path(), None, true).unwrap();
    assert_eq!(losses.len(), 4);
    assert!(losses.iter().all(|l| l.is_finite() && *l > 0.0), "{losses:?}");
    assert!(dir.path().join("backbone.safetensors").exists());

    // Resume from the step-2 checkpoint with a loader started at step 2: the same last two losses.
    let resumed_dir = tempfile::tempdir().unwrap();
    let mut first = Trainer::new(cfg.clone(), Device::Cpu).unwrap();
    let mut v1 = LoaderViews::new(&ds, pipe.clone(), loader_cfg(2), 0, Device::Cpu).unwrap();
    for step in 0..2 {
        let (x1, x2) = v1.views(step).unwrap();
        first.train_step(&x1, &x2);
    }
    first.save(resumed_dir.path()).unwrap();
    drop((first, v1));
    let mut second = Trainer::new(cfg, Device::Cpu).unwrap();
    second.resume(resumed_dir.path()).unwrap();
    assert_eq!(second.step, 2);
    let mut v2 = LoaderViews::new(&ds, pipe, loader_cfg(2), second.step, Device::Cpu).unwrap();
    let rest = train::pretrain_from(&mut second, &mut v2, resumed_dir.path(), None, true).unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(&rest[..], &losses[2..], "resumed losses differ from the uninterrupted run");
}
