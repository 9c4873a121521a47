//! Compression and export on real tiles (eurosat-rgb-ci20): classifier checkpoints, `rsim export`
//! parity (host tch f32 vs rsim-edge f32 vs tract on the ONNX, relative error <= 1e-4), f16 files,
//! provenance, logit and SEED distillation, and the errors a wrong checkpoint gets.
mod common;
use common::ci20;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rsim_edge::tract_backend::TractModel;
use rsim_edge::Engine;
use rsim_model::Model;
use rsim_train::bank::{Bank, Part};
use rsim_train::classifier::{self, FinetuneArgs};
use rsim_train::cli::Common;
use rsim_train::distill::{self, DistillArgs};
use rsim_train::export::{self, ExportArgs};
use tch::{Device, Kind, Tensor};

const TOLERANCE: f64 = 1e-4;
const SIZE: usize = 32;

fn common(data: &Path, arch: &str) -> Common {
    Common {
        data: data.to_path_buf(),
        train_share: 0.8,
        arch: arch.into(),
        bands: 3,
        size: SIZE,
        device: "cpu".into(),
        threads: 0,
        strict: true,
        seed: 3,
    }
}

fn scratch_dir() -> PathBuf {
    let d = tempfile::tempdir().expect("temp dir");
    d.keep()
}

/// A briefly fine-tuned classifier checkpoint of `arch` (trained once per test process).
fn trained(arch: &'static str) -> Option<PathBuf> {
    static R8: OnceLock<PathBuf> = OnceLock::new();
    static MB: OnceLock<PathBuf> = OnceLock::new();
    let data = ci20()?;
    let cell = if arch == "resnet8" { &R8 } else { &MB };
    Some(
        cell.get_or_init(|| {
            let out = scratch_dir().join(arch);
            let a = FinetuneArgs {
                common: common(&data, arch),
                backbone: None,
                random: true,
                labels: None,
                mode: "full".into(),
                steps: 40,
                lr: Some(3e-3),
                batch: 32,
                out: out.clone(),
            };
            classifier::finetune(&a).unwrap_or_else(|e| panic!("finetune {arch}: {e}"));
            out
        })
        .clone(),
    )
}

fn max_rel_err(a: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(a.len(), reference.len());
    let diff = a.iter().zip(reference).map(|(x, y)| (*x as f64 - *y as f64).abs()).fold(0.0, f64::max);
    let scale = reference.iter().map(|y| (*y as f64).abs()).fold(0.0, f64::max);
    assert!(scale > 0.0, "reference output is all zeros: the comparison would prove nothing");
    diff / scale
}

fn export_to(ckpt: &Path, format: &str, dtype: &str, out: &Path) -> Result<export::ExportReport, String> {
    export::export(&ExportArgs {
        ckpt: ckpt.to_path_buf(),
        format: format.into(),
        dtype: dtype.into(),
        softmax: false,
        name: None,
        output: out.to_path_buf(),
    })
}

/// The first `n` test tiles, normalised as the trainer does, NCHW.
fn test_tiles(data: &Path, n: i64) -> Tensor {
    let test = Bank::load(data, Part::Test(0.8), 3, SIZE, true).unwrap();
    let idx = Tensor::arange(n.min(test.len() as i64), (Kind::Int64, Device::Cpu));
    test.batch(&idx, Device::Cpu, 0.5, 0.5)
}

fn nhwc(x: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(x.permute([1, 2, 0]).contiguous().flatten(0, -1)).unwrap()
}

/// Host f32 (tch, eval mode) vs runtime f32 (.rsm) vs tract (ONNX) on real tiles.
fn parity(arch: &'static str) {
    let Some(ckpt) = trained(arch) else { return };
    let data = ci20().unwrap();
    let dir = scratch_dir();
    let (rsm_path, onnx_path) = (dir.join("m.rsm"), dir.join("m.onnx"));
    export_to(&ckpt, "rsm", "f32", &rsm_path).unwrap();
    export_to(&ckpt, "onnx", "f32", &onnx_path).unwrap();
    let rsm = std::fs::read(&rsm_path).unwrap();
    let onnx = std::fs::read(&onnx_path).unwrap();
    let (net, meta) = classifier::load(&ckpt, Device::Cpu).unwrap();
    let tiles = test_tiles(&data, 8);
    let host = tch::no_grad(|| net.forward(&tiles, false).1.unwrap());
    Model::parse(&rsm).unwrap();
    let mut arena = vec![0u8; rsim_edge::required_arena(&rsm).unwrap() + 16];
    let mut engine = Engine::new(&rsm, &mut arena).unwrap();
    let tract = TractModel::from_onnx(&onnx).unwrap();
    assert_eq!(tract.input_shape(), &[1, SIZE, SIZE, 3]);
    let mut worst = (0f64, 0f64);
    for i in 0..tiles.size()[0] {
        let x = nhwc(&tiles.get(i));
        let h = Vec::<f32>::try_from(host.get(i)).unwrap();
        engine.run_f32(&x).unwrap();
        let mut ours = vec![0f32; engine.output_len()];
        engine.output_f32(&mut ours).unwrap();
        let theirs = tract.run_f32(&x).unwrap();
        assert_eq!(ours.len(), meta.classes.len());
        let (r1, r2) = (max_rel_err(&ours, &h), max_rel_err(&theirs, &h));
        worst = (worst.0.max(r1), worst.1.max(r2));
    }
    println!("{arch}@{SIZE}: max rel err runtime vs host {:.3e}, tract vs host {:.3e}", worst.0, worst.1);
    assert!(worst.0 <= TOLERANCE, "{arch}: runtime vs host f32 {:.3e} > {TOLERANCE:e}", worst.0);
    assert!(worst.1 <= TOLERANCE, "{arch}: tract vs host f32 {:.3e} > {TOLERANCE:e}", worst.1);
}

#[test]
fn parity_resnet8_32_real_tiles() {
    parity("resnet8");
}

#[test]
fn parity_mobilenet_v2_035_32_real_tiles() {
    parity("mobilenet_v2_0.35");
}

#[test]
fn f16_export_is_half_the_size_runs_and_carries_provenance() {
    let Some(ckpt) = trained("resnet8") else { return };
    let dir = scratch_dir();
    let (p32, p16) = (dir.join("f32.rsm"), dir.join("f16.rsm"));
    export_to(&ckpt, "rsm", "f32", &p32).unwrap();
    export_to(&ckpt, "rsm", "f16", &p16).unwrap();
    let (b32, b16) = (std::fs::read(&p32).unwrap(), std::fs::read(&p16).unwrap());
    let ratio = b16.len() as f64 / b32.len() as f64;
    println!("resnet8@32: f32 {} bytes, f16 {} bytes ({ratio:.3})", b32.len(), b16.len());
    assert!((0.45..0.6).contains(&ratio), "f16/f32 size ratio {ratio}");

    let x = nhwc(&test_tiles(&ci20().unwrap(), 1).get(0));
    let run = |bytes: &[u8]| {
        let mut arena = vec![0u8; rsim_edge::required_arena(bytes).unwrap() + 16];
        let mut e = Engine::new(bytes, &mut arena).unwrap();
        e.run_f32(&x).unwrap();
        let mut out = vec![0f32; e.output_len()];
        e.output_f32(&mut out).unwrap();
        out
    };
    let (o32, o16) = (run(&b32), run(&b16));
    let rel = max_rel_err(&o16, &o32);
    assert!(rel > 0.0 && rel < 2e-2, "f16 weights should change the logits a little, not a lot: {rel:.3e}");

    let meta = classifier::read_meta(&ckpt).unwrap();
    let m = Model::parse(&b16).unwrap();
    let p = m.info.provenance;
    assert!(p.method.starts_with("finetune full from random init"), "method: {}", p.method);
    assert!(p.data.contains("eurosat-rgb-ci20") && p.data.contains("0.8"), "data: {}", p.data);
    assert!(
        p.commit.is_empty() || (p.commit.len() == 40 && p.commit.chars().all(|c| c.is_ascii_hexdigit())),
        "commit: {}",
        p.commit
    );
    let metrics: serde_json::Value = serde_json::from_str(p.metrics).expect("metrics are JSON");
    assert_eq!(metrics["test_oa"].as_f64(), meta.metrics["test_oa"].as_f64());
    let names: Vec<&str> = m.info.class_names.split('\n').collect();
    assert_eq!(
        names,
        [
            "AnnualCrop",
            "Forest",
            "HerbaceousVegetation",
            "Highway",
            "Industrial",
            "Pasture",
            "PermanentCrop",
            "Residential",
            "River",
            "SeaLake"
        ]
    );
    assert_eq!(m.info.input_spec.mean[..3], [0.5, 0.5, 0.5]);
}

#[test]
fn bad_checkpoint_leaves_no_output_file() {
    let Some(ckpt) = trained("resnet8") else { return };
    let dir = scratch_dir();
    // The sidecar claims another architecture than the weights hold.
    let bad = dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(ckpt.join(classifier::WEIGHTS), bad.join(classifier::WEIGHTS)).unwrap();
    let mut meta = classifier::read_meta(&ckpt).unwrap();
    meta.arch = "resnet18".into();
    std::fs::write(bad.join(classifier::SIDECAR), serde_json::to_vec(&meta).unwrap()).unwrap();
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    for format in ["rsm", "onnx"] {
        let e = export_to(&bad, format, "f32", &out.join(format!("m.{format}"))).unwrap_err();
        assert!(e.contains("layer2.0.conv1.weight") || e.contains("weight '"), "{format}: {e}");
    }
    // Truncated weights.
    let trunc = dir.join("trunc");
    std::fs::create_dir_all(&trunc).unwrap();
    let w = std::fs::read(ckpt.join(classifier::WEIGHTS)).unwrap();
    std::fs::write(trunc.join(classifier::WEIGHTS), &w[..w.len() / 2]).unwrap();
    std::fs::copy(ckpt.join(classifier::SIDECAR), trunc.join(classifier::SIDECAR)).unwrap();
    assert!(export_to(&trunc, "rsm", "f32", &out.join("t.rsm")).is_err());
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}

fn distill_args(teacher: &Path, student: &str, out: &Path) -> DistillArgs {
    DistillArgs {
        teacher: teacher.to_path_buf(),
        teacher_arch: None,
        student: student.into(),
        data: ci20().unwrap(),
        train_share: 0.8,
        labels: None,
        bands: 3,
        size: SIZE,
        epochs: 1.0,
        steps: Some(40),
        minutes: None,
        batch: 32,
        lr: 3e-3,
        temperature: 4.0,
        ce_weight: 0.5,
        ce_batch: 16,
        embed_loss: "seed".into(),
        queue: 64,
        tau_student: 0.2,
        tau_teacher: 0.05,
        head_steps: 30,
        device: "cpu".into(),
        threads: 0,
        strict: true,
        seed: 5,
        log_every: 5,
        quiet: true,
        out: out.to_path_buf(),
    }
}

/// KD loss of `student` against `teacher` on fixed (unaugmented) train images, eval mode.
fn fixed_kd(student: &rsim_train::net::Net, teacher: &rsim_train::net::Net, x: &Tensor) -> f64 {
    tch::no_grad(|| {
        let s = student.forward(x, false).1.unwrap();
        let t = teacher.forward(x, false).1.unwrap();
        distill::kd_loss(&s, &t, 4.0).double_value(&[])
    })
}

#[test]
fn logit_distillation_lowers_the_kd_loss() {
    let Some(teacher) = trained("resnet8") else { return };
    let out = scratch_dir().join("student");
    let a = distill_args(&teacher, "resnet8", &out);
    let train = Bank::load(&a.data, Part::Train(0.8), 3, SIZE, true).unwrap();
    let x = train.batch(&Tensor::arange(64, (Kind::Int64, Device::Cpu)), Device::Cpu, 0.5, 0.5);
    let (tnet, _) = classifier::load(&teacher, Device::Cpu).unwrap();
    // The student as distill initialises it (same seed, same construction).
    tch::manual_seed(a.seed as i64);
    let init = rsim_train::net::Net::new(rsim_model::arch::Arch::ResNet8, 3, Some(10), Device::Cpu);
    let before = fixed_kd(&init, &tnet, &x);
    let r = distill::distill(&a).unwrap();
    assert_eq!(r.steps, 40);
    let (snet, meta) = classifier::load(&out, Device::Cpu).unwrap();
    let after = fixed_kd(&snet, &tnet, &x);
    println!(
        "KD loss on 64 fixed train tiles: {before:.4} -> {after:.4}; student OA {:?}, teacher {:?}",
        r.student_oa, r.teacher_oa
    );
    assert!(after < 0.7 * before, "KD loss {before:.4} -> {after:.4}");
    assert!(r.student_oa.is_some() && r.teacher_oa.is_some());
    assert!(meta.method.contains("logit KD") && meta.has_head());
    assert!(out.join("loss.png").is_file() && out.join("metrics.jsonl").is_file());
}

#[test]
fn seed_and_mse_embedding_distillation_run() {
    let Some(teacher) = trained("resnet8") else { return };
    // A backbone-only teacher: the classifier's weights without its head.
    let dir = scratch_dir();
    let (tnet, _) = classifier::load(&teacher, Device::Cpu).unwrap();
    let bb: Vec<(String, Tensor)> =
        rsim_train::net::named_sorted(&tnet.vs).into_iter().filter(|(k, _)| !k.starts_with("fc.")).collect();
    let tfile = dir.join("teacher-backbone.safetensors");
    rsim_train::checkpoint::save_tensors(&tfile, &bb).unwrap();

    let out = dir.join("seed");
    let mut a = distill_args(&tfile, "resnet8", &out);
    a.teacher_arch = Some("resnet8".into());
    a.steps = Some(8);
    a.labels = Some(5.0);
    let r = distill::distill(&a).unwrap();
    assert!(r.losses.iter().all(|l| l.is_finite() && *l > 0.0));
    assert!(r.student_oa.is_some(), "--labels trains a head after SEED");
    assert!(classifier::read_meta(&out).unwrap().method.contains("SEED"));

    let out = dir.join("mse");
    let mut a = distill_args(&tfile, "resnet8", &out);
    a.teacher_arch = Some("resnet8".into());
    a.embed_loss = "mse".into();
    a.steps = Some(20);
    let r = distill::distill(&a).unwrap();
    let (first, last) = (r.losses[..5].iter().sum::<f64>(), r.losses[15..].iter().sum::<f64>());
    assert!(last < first, "embedding MSE did not fall: {:?}", r.losses);
    let meta = classifier::read_meta(&out).unwrap();
    assert!(!meta.has_head() && r.student_oa.is_none());
    // A head-less checkpoint exports as a feature extractor.
    let p = dir.join("features.rsm");
    export_to(&out, "rsm", "f32", &p).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    let m = Model::parse(&bytes).unwrap();
    assert_eq!(m.info.output.shape.checked_len(), Some(rsim_model::arch::Arch::ResNet8.feature_dim()));
}

#[test]
fn wrong_teacher_architecture_names_the_tensor() {
    let Some(teacher) = trained("resnet8") else { return };
    let dir = scratch_dir();
    let (tnet, _) = classifier::load(&teacher, Device::Cpu).unwrap();
    let tfile = dir.join("t.safetensors");
    rsim_train::checkpoint::save_tensors(&tfile, &rsim_train::net::named_sorted(&tnet.vs)).unwrap();
    let mut a = distill_args(&tfile, "resnet8", &dir.join("s"));
    a.teacher_arch = Some("resnet18".into());
    let e = distill::distill(&a).unwrap_err();
    assert!(e.contains("tensor '") && e.contains("resnet18"), "{e}");
    assert!(!dir.join("s").join(classifier::WEIGHTS).exists());
    // No recorded architecture and no --teacher-arch.
    a.teacher_arch = None;
    let e = distill::distill(&a).unwrap_err();
    assert!(e.contains("--teacher-arch"), "{e}");
    // A classifier teacher whose sidecar names another architecture.
    let bad = dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(teacher.join(classifier::WEIGHTS), bad.join(classifier::WEIGHTS)).unwrap();
    let mut meta = classifier::read_meta(&teacher).unwrap();
    meta.arch = "mobilenet_v2_0.35".into();
    std::fs::write(bad.join(classifier::SIDECAR), serde_json::to_vec(&meta).unwrap()).unwrap();
    let e = distill::distill(&distill_args(&bad, "resnet8", &dir.join("s2"))).unwrap_err();
    assert!(e.contains("tensor '"), "{e}");
}
