//! `rsim quantize` and `rsim eval` end to end on a tiny random ResNet-8 and eurosat-rgb-ci20, through
//! the module entry points the CLI calls (no libtorch: `cargo test -p rsim-train --no-default-features
//! --test field_quantize_eval`).

use rsim_model::arch::Arch;
use rsim_model::graph_builder::{export, ExportOptions};
use rsim_model::{DType, Model};
use rsim_train::field::eval::{run as eval, EvalArgs};
use rsim_train::field::quantize::{run as quantize, QuantizeArgs};
use std::path::{Path, PathBuf};

mod common;
use common::ci20;

const CLASSES: [&str; 10] = [
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
];

fn tiny_model(dir: &Path, classes: Option<usize>) -> PathBuf {
    // Seed 11: a random ResNet-8 whose top-1 varies over the ci20 tiles (seed 5 predicts one class).
    let mut o = ExportOptions::random(Arch::ResNet8, 3, 32, classes, 11);
    if classes.is_some() {
        o.class_names = CLASSES.iter().map(|s| s.to_string()).collect();
    }
    let p = dir.join(if classes.is_some() { "f32.rsm" } else { "features.rsm" });
    std::fs::write(&p, export(&o).unwrap().bytes).unwrap();
    p
}

fn qargs(model: &Path, calib: &Path, out: &Path) -> QuantizeArgs {
    QuantizeArgs {
        model: model.into(),
        calib: Some(calib.into()),
        images: 40,
        calibrator: "percentile".into(),
        percentile: 99.99,
        train_share: 0.8,
        bias_correction: 128,
        f16: false,
        name: None,
        layers: true,
        max_macs: None,
        quiet: true,
        output: out.into(),
    }
}

fn eargs(model: &Path, data: &Path, out: &Path) -> EvalArgs {
    EvalArgs {
        model: model.into(),
        data: data.into(),
        split: "test".into(),
        train_share: 0.8,
        csv: None,
        limit: None,
        out: Some(out.into()),
        max_macs: None,
        quiet: true,
    }
}

#[test]
fn quantize_then_eval_int8_and_f16() {
    let Some(data) = ci20() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let f32_path = tiny_model(tmp.path(), Some(10));
    let int8_path = tmp.path().join("int8.rsm");
    let s = quantize(&qargs(&f32_path, &data, &int8_path)).unwrap();
    assert_eq!(s.images, 40);
    assert!(s.out_bytes * 3 < s.float_bytes, "{} -> {}", s.float_bytes, s.out_bytes);
    let agree = s.top1_agreement.unwrap();
    assert!(agree >= 0.9, "f32 vs int8 agreement {agree}");
    let m = std::fs::read(&int8_path).unwrap();
    let m = Model::parse(&m).unwrap();
    assert_eq!(m.info.input.dtype, DType::I8);
    assert!(m.info.provenance.method.contains("ptq:percentile99.99"), "{}", m.info.provenance.method);
    assert!(m.info.provenance.data.contains("train split"), "{}", m.info.provenance.data);

    // f16 needs no calibration data.
    let f16_path = tmp.path().join("f16.rsm");
    let a = QuantizeArgs { f16: true, calib: None, ..qargs(&f32_path, &data, &f16_path) };
    let s16 = quantize(&a).unwrap();
    assert!(s16.out_bytes < s16.float_bytes);

    // Eval each on the test split (4 of 20 tiles per class = 40 images).
    let mut oas = Vec::new();
    for (p, prec) in [(&f32_path, "f32"), (&f16_path, "f16"), (&int8_path, "int8")] {
        let out = tmp.path().join(format!("eval-{prec}"));
        let r = eval(&eargs(p, &data, &out)).unwrap();
        assert_eq!((r.precision.as_str(), r.images), (prec, 40));
        let total: u64 = r.confusion.counts.iter().sum();
        assert_eq!(total, 40);
        assert!(r.invoke.median_ms > 0.0 && r.invoke.p90_ms >= r.invoke.median_ms);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
        assert_eq!(json["images"], 40);
        assert_eq!(json["model_bytes"].as_u64(), Some(std::fs::metadata(p).unwrap().len()));
        let png = std::fs::read(out.join("confusion.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        oas.push(r.oa);
    }
    // A random model's accuracy is what it is; f16 and int8 must score close to f32 on the same tiles.
    assert!((oas[0] - oas[1]).abs() <= 0.05 && (oas[0] - oas[2]).abs() <= 0.1, "OA f32/f16/int8 {oas:?}");
}

#[test]
fn bias_correction_removes_the_systematic_output_shift() {
    let Some(data) = ci20() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let f32_path = tiny_model(tmp.path(), Some(10));
    let run = |bc: usize, name: &str| {
        let out = tmp.path().join(name);
        let s = quantize(&QuantizeArgs {
            bias_correction: bc,
            calibrator: "minmax".into(),
            ..qargs(&f32_path, &data, &out)
        })
        .unwrap();
        (s, Model::parse(&std::fs::read(&out).unwrap()).unwrap().info.provenance.method.to_string())
    };
    let (plain, plain_method) = run(0, "plain.rsm");
    let (corrected, method) = run(40, "bc.rsm");
    let (before, after) = (plain.max_mean_shift.unwrap(), corrected.max_mean_shift.unwrap());
    eprintln!("max mean logit shift on 40 calibration tiles: {before:.5} -> {after:.5}");
    // The last layer is corrected on exactly these images, after every earlier layer: what remains
    // is int32 bias rounding and output rounding, far below the uncorrected offset.
    assert!(after < 0.5 * before, "bias correction left {after} of {before}");
    assert!(method.ends_with("ptq:minmax+bc") && plain_method.ends_with("ptq:minmax"), "{method} / {plain_method}");
}

#[test]
fn bad_inputs_are_clear_errors_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let f32_path = tiny_model(tmp.path(), Some(10));
    let out = tmp.path().join("int8.rsm");
    let missing = tmp.path().join("no-such-folder");
    let e = quantize(&qargs(&f32_path, &missing, &out)).unwrap_err();
    assert!(e.contains("no-such-folder") && e.contains("does not exist"), "{e}");
    assert!(!out.exists());
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = quantize(&qargs(&f32_path, &empty, &out)).unwrap_err();
    assert!(e.contains("no class subfolders"), "{e}");
    assert!(!out.exists());
    // Nothing but the two models in the folder: no temp file left behind either.
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 2, "{left:?}");

    let e = quantize(&QuantizeArgs { calibrator: "entropy".into(), ..qargs(&f32_path, &empty, &out) }).unwrap_err();
    assert!(e.contains("unknown calibrator"), "{e}");
    // Over a board's compute budget: refused before calibration (the folder is not even read).
    let e = quantize(&QuantizeArgs { max_macs: Some(10), ..qargs(&f32_path, &missing, &out) }).unwrap_err();
    assert!(e.contains("over --max-macs 10") && e.contains("nothing written"), "{e}");
    assert!(!out.exists());

    let Some(data) = ci20() else { return };
    let feats = tiny_model(tmp.path(), None);
    let e = eval(&eargs(&feats, &data, &tmp.path().join("e"))).unwrap_err();
    assert!(e.contains("model has no class head"), "{e}");
    // A board's compute budget: refused before any image is scored, naming both numbers.
    let out = tmp.path().join("budget");
    let e = eval(&EvalArgs { max_macs: Some(1000), ..eargs(&f32_path, &data, &out) }).unwrap_err();
    assert!(e.contains("multiply-accumulates per inference, over the budget of 1000"), "{e}");
    assert!(!out.exists(), "nothing written for a refused model");
}
