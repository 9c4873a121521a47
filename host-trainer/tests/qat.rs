//! Host graph interpreter (graph_net) and QAT against the edge runtime, on real tiles (eurosat-rgb-ci20).
//!
//! - float graph_net == rsim-edge f32 engine, relative error <= 1e-4 (the parity contract);
//! - runtime int8 (ptq::quantize_model output in rsim-edge) vs host fake-quant graph_net: same argmax
//!   on every tile and logits within one output quantization step;
//! - a few QAT steps lower the fake-quant KD loss, and the written int8 model loads and runs.
mod common;
use common::ci20;
use std::path::Path;

use rsim_edge::Engine;
use rsim_model::arch::Arch;
use rsim_model::calib::Calibrator;
use rsim_model::graph_builder::{export, ExportOptions};
use rsim_model::ptq;
use rsim_train::graph_net::{flat_nhwc, FakeQuant, GraphNet};
use rsim_train::qat;
use tch::{Device, Kind, Tensor};

/// Every image of the folder as (RGB pixels, width, height), classes and files in sorted order.
fn tiles(root: &Path) -> Vec<(Vec<u8>, u32, u32)> {
    let ds = rsim_train::data::Dataset::from_folder(root).unwrap();
    ds.samples
        .iter()
        .map(|s| {
            let img = image::open(&s.path).unwrap().to_rgb8();
            let (w, h) = img.dimensions();
            (img.into_raw(), w, h)
        })
        .collect()
}

/// Runs each tile through `model` in the runtime: (normalized f32 NHWC inputs as NCHW batch, outputs).
/// The float input is taken from the runtime's own preprocessing, so both sides see the same numbers.
fn runtime(model: &[u8], float_inputs_from: Option<&[u8]>, tiles: &[(Vec<u8>, u32, u32)]) -> (Tensor, Vec<Vec<f32>>) {
    let mut arena = vec![0u8; rsim_edge::required_arena(model).unwrap() + 16];
    let mut engine = Engine::new(model, &mut arena).unwrap();
    let f32_model = float_inputs_from.unwrap_or(model);
    let mut farena = vec![0u8; rsim_edge::required_arena(f32_model).unwrap() + 16];
    let mut fengine = Engine::new(f32_model, &mut farena).unwrap();
    let spec = fengine.model().info.input_spec;
    let (h, w, c) = (spec.height as i64, spec.width as i64, spec.channels as i64);
    let mut inputs = Vec::new();
    let mut outs = Vec::new();
    for (px, tw, th) in tiles {
        fengine.set_input_image_u8(px, *tw, *th, 3).unwrap();
        let x: Vec<f32> =
            fengine.input_mut().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        inputs.push(Tensor::from_slice(&x).reshape([1, h, w, c]).permute([0, 3, 1, 2]));
        engine.run_image_u8(px, *tw, *th, 3).unwrap();
        let mut o = vec![0f32; engine.output_len()];
        engine.output_f32(&mut o).unwrap();
        outs.push(o);
    }
    (Tensor::cat(&inputs, 0), outs)
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    let t = flat_nhwc(&t.detach()).to_kind(Kind::Float).contiguous();
    let (n, k) = (t.size()[0] as usize, t.size()[1] as usize);
    let v: Vec<f32> = Vec::try_from(t.reshape([-1])).unwrap();
    (0..n).map(|i| v[i * k..(i + 1) * k].to_vec()).collect()
}

fn float_model(arch: Arch) -> Vec<u8> {
    export(&ExportOptions::random(arch, 3, 32, Some(10), 11)).unwrap().bytes
}

fn float_parity(arch: Arch) {
    let Some(root) = ci20() else { return };
    let tiles = tiles(&root);
    let model = float_model(arch);
    let (x, rt) = runtime(&model, None, &tiles);
    let net = GraphNet::from_rsm(&model, Device::Cpu).unwrap();
    let host = rows(&tch::no_grad(|| net.forward(&x, None)).unwrap());
    let mut worst = 0f64;
    for (h, r) in host.iter().zip(&rt) {
        let diff = h.iter().zip(r).map(|(a, b)| (*a as f64 - *b as f64).abs()).fold(0.0, f64::max);
        let scale = r.iter().map(|v| (*v as f64).abs()).fold(0.0, f64::max);
        assert!(scale > 0.0, "runtime output is all zeros: the comparison would prove nothing");
        worst = worst.max(diff / scale);
    }
    println!("{}: {} tiles, float host vs runtime max relative error {worst:.3e}", arch.name(), tiles.len());
    assert_eq!(host.len(), tiles.len());
    assert!(worst <= 1e-4, "{}: relative error {worst:.3e} > 1e-4", arch.name());
}

#[test]
fn float_graph_net_matches_runtime_resnet8() {
    float_parity(Arch::ResNet8);
}

#[test]
fn float_graph_net_matches_runtime_mobilenet_v2_035() {
    float_parity(Arch::MobileNetV2 { width: 0.35 });
}

#[test]
fn float_graph_net_matches_runtime_mobilenet_v3_small() {
    float_parity(Arch::MobileNetV3Small);
}

#[test]
fn written_weights_round_trip_and_unsupported_input_is_named() {
    let model = float_model(Arch::ResNet8);
    let net = GraphNet::from_rsm(&model, Device::Cpu).unwrap();
    // Unchanged weights write back to the same weights section (and a valid model).
    let again = net.write_weights(&model).unwrap();
    let (a, b) = (rsim_model::Model::parse(&model).unwrap(), rsim_model::Model::parse(&again).unwrap());
    assert_eq!(a.weights, b.weights);
    // A changed weight lands in the bytes the runtime reads.
    tch::no_grad(|| {
        for mut v in net.trainable() {
            let _ = v.g_mul_scalar_(0.5);
        }
    });
    let halved = net.write_weights(&model).unwrap();
    assert_ne!(rsim_model::Model::parse(&halved).unwrap().weights, a.weights);
    let bad = GraphNet::from_rsm(&model[..model.len() - 1], Device::Cpu).err().unwrap().to_string();
    assert!(bad.contains("not a valid .rsm"), "{bad}");
}

/// Argmax with the runtime's tie rule (`Engine::top_k`: equal scores keep the lower index first).
fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// Calibrated int8 model of `float` (minmax over the ci20 train split, in the runtime).
fn int8_of(float: &[u8], root: &Path) -> Vec<u8> {
    let m = rsim_model::Model::parse(float).unwrap();
    let split = qat::load_train_split(root, 0.8, &m.info.input_spec, &m.info.input).unwrap();
    let pick = qat::spread(split.labels.len(), 64);
    let ranges = qat::calibrate(float, &split.x, &pick, Calibrator::MinMax).unwrap();
    ptq::quantize_model(float, &ranges, &ptq::PtqOptions::default()).unwrap()
}

/// THE ACCEPTANCE PARITY: runtime int8 vs host fake-quant on every ci20 tile.
fn int8_parity(arch: Arch) {
    let Some(root) = ci20() else { return };
    let tiles = tiles(&root);
    let float = float_model(arch);
    let int8 = int8_of(&float, &root);
    let (x, rt) = runtime(&int8, Some(&float), &tiles);
    let net = GraphNet::from_rsm(&float, Device::Cpu).unwrap();
    let fq = FakeQuant::from_int8_model(&int8).unwrap();
    let host = rows(&tch::no_grad(|| net.forward(&x, Some(&fq))).unwrap());
    let out = rsim_model::Model::parse(&int8).unwrap().info.output;
    let rsim_model::Quant::PerTensor { scale: step, .. } = out.quant else {
        panic!("int8 output has no per-tensor scale")
    };
    let (mut worst, mut same_bytes, mut mismatched) = (0f64, 0usize, Vec::new());
    for (i, (h, r)) in host.iter().zip(&rt).enumerate() {
        let d = h.iter().zip(r).map(|(a, b)| (*a as f64 - *b as f64).abs()).fold(0.0, f64::max);
        worst = worst.max(d / step as f64);
        same_bytes += (d == 0.0) as usize;
        if argmax(h) != argmax(r) {
            mismatched.push(i);
        }
    }
    println!(
        "{}: {} tiles, int8 runtime vs host fake-quant: worst logit gap {worst:.2} output steps (step {step:.4e}), identical outputs on {same_bytes}, argmax mismatches {mismatched:?}",
        arch.name(),
        tiles.len()
    );
    assert!(mismatched.is_empty(), "{}: argmax differs on tiles {mismatched:?}", arch.name());
    // Fake-quant outputs sit on the same grid as the runtime's, so "within one step" means <= 1.0 (+ f32 noise).
    assert!(worst <= 1.0 + 1e-3, "{}: logits differ by {worst:.2} output quantization steps", arch.name());
}

#[test]
fn int8_runtime_matches_host_fake_quant_resnet8() {
    int8_parity(Arch::ResNet8);
}

#[test]
fn int8_runtime_matches_host_fake_quant_mobilenet_v2_035() {
    int8_parity(Arch::MobileNetV2 { width: 0.35 });
}

#[test]
fn int8_runtime_matches_host_fake_quant_mobilenet_v3_small() {
    int8_parity(Arch::MobileNetV3Small);
}

/// The exact (board-integer) forward still trains: its value is the board's bit for bit, and
/// gradients reach every conv/FC weight and bias through the float path (straight-through).
#[test]
fn exact_fake_quant_forward_keeps_float_gradients() {
    let Some(root) = ci20() else { return };
    let tiles = tiles(&root);
    let float = float_model(Arch::ResNet8);
    let int8 = int8_of(&float, &root);
    let (x, rt) = runtime(&int8, Some(&float), &tiles[..8]);
    let net = GraphNet::from_rsm(&float, Device::Cpu).unwrap();
    let fq = FakeQuant::from_int8_model(&int8).unwrap();
    assert!(!fq.exact.is_empty(), "no integer stages read from the int8 model");
    let y = net.forward(&x, Some(&fq)).unwrap();
    assert_eq!(rows(&y), rt, "exact forward differs from the board on the first 8 tiles");
    y.to_kind(Kind::Float).square().sum(Kind::Float).backward();
    for (i, v) in net.trainable().iter().enumerate() {
        let g = v.grad();
        assert!(g.defined() && g.abs().sum(Kind::Double).double_value(&[]) > 0.0, "trainable #{i} got no gradient");
    }
}

#[test]
fn qat_steps_lower_the_fake_quant_loss_and_the_int8_model_runs() {
    let Some(root) = ci20() else { return };
    let float = float_model(Arch::ResNet8);
    let m = rsim_model::Model::parse(&float).unwrap();
    let split = qat::load_train_split(&root, 0.8, &m.info.input_spec, &m.info.input).unwrap();
    assert_eq!(split.labels.len(), 160, "ci20 has 16 train images per class at 0.8");
    let pick = qat::spread(split.labels.len(), 64);
    let ranges = qat::calibrate(&float, &split.x, &pick, Calibrator::MinMax).unwrap();
    // Small steps: the loss starts at ~3e-4 (random weights); lr >= 3e-4 overshoots (debug_qat_lr_sweep).
    let mut q = qat::Qat::new(&float, ranges, 3e-5, Device::Cpu).unwrap();
    q.temperature = 1.0;
    let idx = Tensor::from_slice(&pick.iter().map(|&i| i as i64).collect::<Vec<_>>());
    let xb = split.x.index_select(0, &idx);
    let before = tch::no_grad(|| q.loss(&xb, None)).unwrap().double_value(&[]);
    for _ in 0..20 {
        q.step(&xb, None).unwrap();
    }
    let after = tch::no_grad(|| q.loss(&xb, None)).unwrap().double_value(&[]);
    println!("QAT resnet8: fake-quant KD loss {before:.5} -> {after:.5}");
    assert!(before > 0.0 && after < 0.8 * before, "loss {before} -> {after}");
    let (tuned, int8) = q.finish(&float, &ptq::PtqOptions::default()).unwrap();
    assert_ne!(rsim_model::Model::parse(&tuned).unwrap().weights, m.weights, "trained weights were not written back");
    let mut arena = vec![0u8; rsim_edge::required_arena(&int8).unwrap() + 16];
    let mut e = Engine::new(&int8, &mut arena).unwrap();
    let (px, w, h) = &tiles(&root)[0];
    e.run_image_u8(px, *w, *h, 3).unwrap();
    let mut o = vec![0f32; e.output_len()];
    assert_eq!(e.output_f32(&mut o).unwrap(), 10);
    assert!(o.iter().all(|v| v.is_finite()));
    assert_eq!(e.model().info.input.dtype, rsim_model::DType::I8);
}
