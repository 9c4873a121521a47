//! f32 parity: rsim-edge's interpreter vs tract on the ONNX export of the same model, for every
//! builder architecture with random weights at 64x64 and 224x224.
//!
//! Acceptance (issue 2): max relative error <= 1e-4, where
//! `rel = max_i |rsim_i - tract_i| / max_i |tract_i|` over the logits.

use rsim_edge::tract_backend::TractModel;
use rsim_edge::Engine;
use rsim_model::arch::Arch;
use rsim_model::graph_builder::{export, ExportOptions, Rng};
use rsim_model::{DType, Model};

const TOLERANCE: f64 = 1e-4;

fn max_rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).abs()).fold(0.0, f64::max);
    let scale = b.iter().map(|y| (*y as f64).abs()).fold(0.0, f64::max);
    assert!(scale > 0.0, "reference output is all zeros: the comparison would prove nothing");
    diff / scale
}

fn input(len: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..len).map(|_| r.normal() as f32).collect()
}

/// Runs `opts` through both backends and returns the relative error (printed).
fn parity(opts: &ExportOptions) -> f64 {
    let exported = export(opts).unwrap_or_else(|e| panic!("{}: export failed: {e}", opts.name));
    let bytes = exported.bytes;
    let model = Model::parse(&bytes).unwrap();
    let onnx = rsim_model::onnx::to_onnx(&model).unwrap_or_else(|e| panic!("{}: ONNX export failed: {e}", opts.name));

    let x = input(opts.height * opts.width * opts.bands, 42);
    let mut arena = vec![0u8; model.info.arena_size as usize + 16];
    let mut engine = Engine::new(&bytes, &mut arena).unwrap_or_else(|e| panic!("{}: Engine::new: {e}", opts.name));
    engine.run_f32(&x).unwrap_or_else(|e| panic!("{}: run: {e}", opts.name));
    let mut ours = vec![0f32; engine.output_len()];
    engine.output_f32(&mut ours).unwrap();

    let tract = TractModel::from_onnx(&onnx).unwrap_or_else(|e| panic!("{}: {e}", opts.name));
    assert_eq!(tract.input_shape(), &[1, opts.height, opts.width, opts.bands]);
    let theirs = tract.run_f32(&x).unwrap();

    let rel = max_rel_err(&ours, &theirs);
    println!(
        "{:<24} {:>3}x{:<3} {:?} weights: {} outputs, max |tract| {:.4e}, max rel err {rel:.3e}",
        opts.name,
        opts.height,
        opts.width,
        opts.weight_dtype,
        ours.len(),
        theirs.iter().fold(0f32, |m, v| m.max(v.abs()))
    );
    rel
}

fn check(arch: Arch, size: usize) {
    let opts = ExportOptions::random(arch, 3, size, Some(10), 7);
    let rel = parity(&opts);
    assert!(rel <= TOLERANCE, "{} at {size}: max relative error {rel:.3e} > {TOLERANCE:e}", arch.name());
}

#[test]
fn resnet8_64() {
    check(Arch::ResNet8, 64);
}
#[test]
fn resnet8_224() {
    check(Arch::ResNet8, 224);
}
#[test]
fn resnet18_64() {
    check(Arch::ResNet18, 64);
}
#[test]
fn resnet18_224() {
    check(Arch::ResNet18, 224);
}
#[test]
fn mobilenet_v2_1_0_64() {
    check(Arch::MobileNetV2 { width: 1.0 }, 64);
}
#[test]
fn mobilenet_v2_1_0_224() {
    check(Arch::MobileNetV2 { width: 1.0 }, 224);
}
#[test]
fn mobilenet_v2_0_35_64() {
    check(Arch::MobileNetV2 { width: 0.35 }, 64);
}
#[test]
fn mobilenet_v2_0_35_224() {
    check(Arch::MobileNetV2 { width: 0.35 }, 224);
}
#[test]
fn mobilenet_v3_small_64() {
    check(Arch::MobileNetV3Small, 64);
}
#[test]
fn mobilenet_v3_small_224() {
    check(Arch::MobileNetV3Small, 224);
}

/// F16 weights: the runtime widens them, the ONNX export carries the same widened values.
#[test]
fn f16_weights_mobilenet_v3_small_64() {
    let mut opts = ExportOptions::random(Arch::MobileNetV3Small, 3, 64, Some(10), 9);
    opts.weight_dtype = DType::F16;
    opts.name = "mobilenet_v3_small-f16".into();
    assert!(parity(&opts) <= TOLERANCE);
}

/// Multispectral input and a features-only model (no classifier head), softmax-free.
#[test]
fn resnet8_13_bands_features() {
    let opts = ExportOptions::random(Arch::ResNet8, 13, 64, None, 11);
    assert!(parity(&opts) <= TOLERANCE);
}

/// The comparison itself can fail: a perturbed output is caught.
#[test]
fn relative_error_detects_a_difference() {
    let b = [1.0f32, -2.0, 0.5];
    assert_eq!(max_rel_err(&b, &b), 0.0);
    let a = [1.0f32, -2.0, 0.5 + 2e-3];
    assert!((max_rel_err(&a, &b) - 1e-3).abs() < 1e-6);
}
