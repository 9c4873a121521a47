//! int8 truth on the MLPerf Tiny peer models: `.tflite` -> `.rsm` -> rsim-edge must reproduce the
//! TensorFlow Lite Micro reference kernels byte for byte (logits, softmax outputs, and every
//! intermediate tensor of input 000), and the converter's offline parameters must equal the ones
//! TFLM's `Prepare` computed (`model_ops.json`). The reference files are read in place.

use rsim_edge::Engine;
use rsim_model::tflite::{convert, ConvertOptions};
use rsim_model::{Model, Multiplier, Op};
use serde_json::Value;
use std::path::{Path, PathBuf};

struct Peer {
    dir: PathBuf,
    model: Vec<u8>,
    ops: Value,
}

fn peer(folder: &str, file: &str) -> Option<Peer> {
    let dir = rsim_test_support::peer_model(folder)?;
    let tflite = std::fs::read(dir.join(file)).expect("read .tflite");
    let converted = convert(&tflite, &ConvertOptions { source: file.into(), ..Default::default() }).expect("convert");
    let ops: Value =
        serde_json::from_slice(&std::fs::read(dir.join("model_ops.json")).expect("model_ops.json")).expect("json");
    Some(Peer { dir, model: converted.bytes, ops })
}

/// Copies bytes to a 16-byte-aligned spot so constants can be read in place.
fn aligned(bytes: &[u8]) -> (Vec<u8>, usize) {
    let mut buf = vec![0u8; bytes.len() + 16];
    let off = buf.as_ptr().align_offset(16);
    buf[off..off + bytes.len()].copy_from_slice(bytes);
    (buf, off)
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Runs all 50 inputs; returns how many matched (asserting all do, with a precise first mismatch).
fn check_all_inputs(p: &Peer) {
    let logits_id = p.ops["logits"]["index"].as_u64().expect("logits index") as u16;
    let (buf, off) = aligned(&p.model);
    let model = &buf[off..off + p.model.len()];
    let mut arena = vec![0u8; rsim_edge::required_arena(model).unwrap() + 16];
    let mut engine = Engine::new(model, &mut arena).expect("engine accepts the converted model");
    let mut checked = 0;
    for n in 0..50 {
        let input = read(&p.dir.join(format!("inputs/{n:03}.bin")));
        engine.input_mut().copy_from_slice(&input);
        let mut logits = None;
        engine
            .invoke_observed(&mut |_, op: &Op, out: &[u8]| {
                if op.output().id == logits_id {
                    logits = Some(out.to_vec());
                }
            })
            .expect("invoke");
        let want_logits = read(&p.dir.join(format!("logits/{n:03}.bin")));
        let want_out = read(&p.dir.join(format!("outputs/{n:03}.bin")));
        assert_eq!(logits.as_deref(), Some(&want_logits[..]), "input {n:03}: logits differ from TFLM");
        assert_eq!(engine.output(), &want_out[..], "input {n:03}: softmax output differs from TFLM");
        checked += 1;
    }
    assert_eq!(checked, 50);
}

/// Every op output for input 000 against TFLM's intermediate dump.
fn check_intermediates(p: &Peer) {
    let index: Value = serde_json::from_slice(&read(&p.dir.join("intermediates/index.json"))).unwrap();
    let files: std::collections::HashMap<u16, String> = index
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["index"].as_u64().unwrap() as u16, e["file"].as_str().unwrap().to_string()))
        .collect();
    let (buf, off) = aligned(&p.model);
    let model = &buf[off..off + p.model.len()];
    let mut arena = vec![0u8; rsim_edge::required_arena(model).unwrap() + 16];
    let mut engine = Engine::new(model, &mut arena).unwrap();
    engine.input_mut().copy_from_slice(&read(&p.dir.join("inputs/000.bin")));
    let mut seen = 0;
    let mut failures = Vec::new();
    engine
        .invoke_observed(&mut |i, op: &Op, out: &[u8]| {
            let id = op.output().id;
            let file = files.get(&id).unwrap_or_else(|| panic!("no intermediate for tensor {id}"));
            let want = read(&p.dir.join("intermediates").join(file));
            if out != &want[..] {
                let diffs = out.iter().zip(&want).filter(|(a, b)| a != b).count();
                failures.push(format!("op {i} ({}) -> tensor {id}: {diffs} of {} bytes differ", op.name(), want.len()));
            }
            seen += 1;
        })
        .unwrap();
    assert!(failures.is_empty(), "intermediates differ from TFLM:\n{}", failures.join("\n"));
    // Every non-input intermediate was produced by some op.
    assert_eq!(seen, files.len() - 1);
}

fn i32s(bytes: &[u8]) -> Vec<i64> {
    bytes.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect()
}

/// The converter's multipliers, shifts, padding and clamps equal TFLM's `Prepare` results.
fn check_params(p: &Peer) {
    let model = Model::parse(&p.model).unwrap();
    let want_ops = p.ops["ops"].as_array().unwrap();
    let ops: Vec<Op> = model.ops().map(|o| o.unwrap()).collect();
    assert_eq!(ops.len(), want_ops.len());
    let num = |v: &Value| v.as_i64().unwrap();
    let nums = |v: &Value| v.as_array().unwrap().iter().map(num).collect::<Vec<_>>();
    for (i, (op, w)) in ops.iter().zip(want_ops).enumerate() {
        assert_eq!(op.output().id as i64, num(&w["output"]), "op {i}: output tensor");
        match op {
            Op::Conv2d { params, requant: Some(r), .. } => {
                let Multiplier::PerChannel { mult, shift } = r.multiplier else {
                    panic!("op {i}: per-channel expected")
                };
                assert_eq!(i32s(model.blob(mult).unwrap()), nums(&w["tflm_multiplier"]), "op {i}: multipliers");
                assert_eq!(i32s(model.blob(shift).unwrap()), nums(&w["tflm_shift"]), "op {i}: shifts");
                let pd = params.padding;
                let got = [pd.top, pd.bottom, pd.left, pd.right].map(|v| v as i64);
                let want = ["tflm_pad_top", "tflm_pad_bottom", "tflm_pad_left", "tflm_pad_right"].map(|k| num(&w[k]));
                assert_eq!(got, want, "op {i}: padding");
                assert_eq!(
                    (r.act_min as i64, r.act_max as i64),
                    (num(&w["tflm_act_min"]), num(&w["tflm_act_max"])),
                    "op {i}: clamp"
                );
            }
            Op::FullyConnected { requant: Some(r), .. } => {
                let Multiplier::PerTensor { mult, shift } = r.multiplier else { panic!("op {i}: per-tensor expected") };
                assert_eq!(
                    (mult as i64, shift as i64),
                    (num(&w["tflm_multiplier"]), num(&w["tflm_shift"])),
                    "op {i}: FC multiplier"
                );
            }
            Op::Add { quant: Some(q), .. } => {
                let got = [
                    q.left_shift,
                    q.a_mult,
                    q.a_shift,
                    q.b_mult,
                    q.b_shift,
                    q.out_mult,
                    q.out_shift,
                    q.act_min,
                    q.act_max,
                ];
                let keys = [
                    "tflm_left_shift",
                    "tflm_input1_multiplier",
                    "tflm_input1_shift",
                    "tflm_input2_multiplier",
                    "tflm_input2_shift",
                    "tflm_output_multiplier",
                    "tflm_output_shift",
                    "tflm_act_min",
                    "tflm_act_max",
                ];
                assert_eq!(got.map(|v| v as i64), keys.map(|k| num(&w[k])), "op {i}: ADD params");
            }
            Op::Softmax { quant: Some(q), .. } => {
                let got = [q.input_multiplier, q.input_left_shift, q.diff_min].map(|v| v as i64);
                let want = ["tflm_input_multiplier", "tflm_input_left_shift", "tflm_diff_min"].map(|k| num(&w[k]));
                assert_eq!(got, want, "op {i}: SOFTMAX params");
            }
            Op::AvgPool2d { act_min, act_max, .. } => {
                assert_eq!((*act_min as i64, *act_max as i64), (num(&w["tflm_act_min"]), num(&w["tflm_act_max"])));
            }
            Op::Reshape { .. } => {}
            other => panic!("op {i}: unexpected {}", other.name()),
        }
    }
}

#[test]
fn ic_resnet8_params_match_tflm_prepare() {
    let Some(p) = peer("mlperf-tiny-ic", "pretrainedResnet_quant.tflite") else { return };
    check_params(&p);
}

#[test]
fn kws_dscnn_params_match_tflm_prepare() {
    let Some(p) = peer("mlperf-tiny-kws", "kws_ref_model.tflite") else { return };
    check_params(&p);
}

#[test]
fn ic_resnet8_intermediates_match_tflm() {
    let Some(p) = peer("mlperf-tiny-ic", "pretrainedResnet_quant.tflite") else { return };
    check_intermediates(&p);
}

#[test]
fn kws_dscnn_intermediates_match_tflm() {
    let Some(p) = peer("mlperf-tiny-kws", "kws_ref_model.tflite") else { return };
    check_intermediates(&p);
}

#[test]
fn ic_resnet8_all_50_inputs_byte_identical() {
    let Some(p) = peer("mlperf-tiny-ic", "pretrainedResnet_quant.tflite") else { return };
    check_all_inputs(&p);
}

#[test]
fn kws_dscnn_all_50_inputs_byte_identical() {
    let Some(p) = peer("mlperf-tiny-kws", "kws_ref_model.tflite") else { return };
    check_all_inputs(&p);
}

#[test]
fn ic_input_spec_maps_pixels_to_the_int8_input() {
    // Input scale 1.0, zero point -128: real value = pixel, so mean 0 and std 1/255 on the 0..1 scale.
    let Some(p) = peer("mlperf-tiny-ic", "pretrainedResnet_quant.tflite") else { return };
    let m = Model::parse(&p.model).unwrap();
    let s = m.info.input_spec;
    assert_eq!((s.height, s.width, s.channels), (32, 32, 3));
    assert_eq!(&s.mean[..3], &[0.0; 3]);
    for v in &s.std[..3] {
        assert!((v - 1.0 / 255.0).abs() < 1e-9, "std {v}");
    }
    assert_eq!(m.info.provenance.method, "tflite-import");
}

#[test]
fn malformed_or_unsupported_tflite_gives_clear_errors() {
    let Some(dir) = rsim_test_support::peer_model("mlperf-tiny-kws") else {
        return;
    };
    let bytes = read(&dir.join("kws_ref_model.tflite"));
    let opts = ConvertOptions::default();
    // Truncations and byte flips must give errors (or a model), never a panic.
    for n in (0..bytes.len()).step_by(97) {
        let _ = convert(&bytes[..n], &opts);
    }
    let mut rng = 0x2545F4914F6CDD1Du64;
    for _ in 0..300 {
        let mut b = bytes.clone();
        for _ in 0..4 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let at = (rng as usize) % b.len();
            b[at] ^= (rng >> 32) as u8 | 1;
        }
        let _ = convert(&b, &opts);
    }
    let e = convert(b"not a flatbuffer at all", &opts).unwrap_err().to_string();
    assert!(e.contains("TFL3"), "{e}");
}
