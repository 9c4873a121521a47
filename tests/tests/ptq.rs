//! Post-training int8 quantization of our own float models: random-weight builder models
//! calibrated on real EuroSAT tiles (eurosat-rgb-ci20), run by rsim-edge in f32 and int8.
//!
//! Split per class by sorted file name: the first 8 tiles calibrate (train side), the other 12 are
//! compared (f32 vs int8 top-1 agreement and logit error in units of the output scale).

use rsim_edge::Engine;
use rsim_model::arch::Arch;
use rsim_model::calib::{Calibrator, Observer};
use rsim_model::graph_builder::{export, ExportOptions};
use rsim_model::ptq::{calibration_model, quantize_model, to_f16, PtqError, PtqOptions, Ranges};
use rsim_model::{DType, Model, Op, Quant, Storage};
use std::collections::BTreeSet;

struct Tile {
    pixels: Vec<u8>,
    w: u32,
    h: u32,
}

/// (calibration tiles, evaluation tiles) or None (loud skip) when the data is missing.
fn tiles() -> Option<(Vec<Tile>, Vec<Tile>)> {
    let root = rsim_test_support::dataset("eurosat-rgb-ci20")?;
    let mut classes: Vec<_> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    classes.sort();
    let (mut cal, mut eval) = (Vec::new(), Vec::new());
    for c in classes {
        let mut files: Vec<_> = std::fs::read_dir(&c)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
            .collect();
        files.sort();
        for (i, f) in files.iter().enumerate() {
            let img = image::open(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())).to_rgb8();
            let t = Tile { w: img.width(), h: img.height(), pixels: img.into_raw() };
            if i < 8 {
                cal.push(t);
            } else {
                eval.push(t);
            }
        }
    }
    assert_eq!((cal.len(), eval.len()), (80, 120), "ci20 has 20 tiles in each of 10 classes");
    Some((cal, eval))
}

fn arena_for(bytes: &[u8]) -> Vec<u8> {
    vec![0u8; rsim_edge::required_arena(bytes).unwrap() + 16]
}

/// Min/max ranges of every op output of the calibration model over `tiles`.
fn observe(calib_model: &[u8], tiles: &[Tile], cal: Calibrator) -> Ranges {
    let mut arena = arena_for(calib_model);
    let mut engine = Engine::new(calib_model, &mut arena).unwrap();
    let mut obs = Observer::new(cal);
    let passes = if obs.needs_second_pass() { 2 } else { 1 };
    for pass in 0..passes {
        if pass == 1 {
            obs.start_second_pass();
        }
        for t in tiles {
            engine.set_input_image_u8(&t.pixels, t.w, t.h, 3).unwrap();
            engine.invoke_observed(&mut |_, op, out| obs.observe_le_f32(op.output().id, out)).unwrap();
        }
    }
    obs.ranges()
}

/// Dequantized outputs of `model` for every tile.
fn outputs(model: &[u8], tiles: &[Tile]) -> Vec<Vec<f32>> {
    let mut arena = arena_for(model);
    let mut engine = Engine::new(model, &mut arena).unwrap();
    tiles
        .iter()
        .map(|t| {
            engine.run_image_u8(&t.pixels, t.w, t.h, 3).unwrap();
            let mut o = vec![0f32; engine.output_len()];
            engine.output_f32(&mut o).unwrap();
            o
        })
        .collect()
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |b, (i, &x)| if x > v[b] { i } else { b })
}

fn float_model(arch: Arch) -> Vec<u8> {
    export(&ExportOptions::random(arch, 3, 32, Some(10), 11)).unwrap().bytes
}

/// Distinct top-1 classes the model predicts over `tiles`.
fn classes_predicted(model: &[u8], tiles: &[Tile]) -> usize {
    outputs(model, tiles).iter().map(|v| argmax(v)).collect::<BTreeSet<_>>().len()
}

/// A random model whose float top-1 varies over the tiles (seeds 11, 12, ... in order): a model
/// that predicts one class everywhere (random MobileNetV3 heads often do) makes agreement trivial.
fn separating_model(arch: Arch, tiles: &[Tile]) -> Vec<u8> {
    let mut best = (0, Vec::new());
    for seed in 11..19 {
        let m = export(&ExportOptions::random(arch, 3, 32, Some(10), seed)).unwrap().bytes;
        let n = classes_predicted(&m, tiles);
        if n >= 3 {
            return m;
        }
        if n > best.0 {
            best = (n, m);
        }
    }
    best.1
}

fn arena_ids(model: &[u8]) -> BTreeSet<u16> {
    let m = Model::parse(model).unwrap();
    let mut ids = BTreeSet::new();
    for op in m.ops() {
        op.unwrap().for_each_tensor(|t| {
            if matches!(t.storage, Storage::Arena { .. }) {
                ids.insert(t.id);
            }
        });
    }
    ids
}

/// Float top-1 minus top-2.
fn margin(v: &[f32]) -> f32 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| b.total_cmp(a));
    s[0] - s.get(1).copied().unwrap_or(f32::NEG_INFINITY)
}

/// `min_agreement` applies to all evaluation tiles; tiles whose float top-2 margin exceeds two
/// output quantization steps (a flip there is a quantization failure, not a near-tie) must agree
/// on >= 90% in every case.
fn check_arch(arch: Arch, min_agreement: f64) {
    let Some((cal, eval)) = tiles() else { return };
    let f32_model = separating_model(arch, &eval);
    let calib = calibration_model(&f32_model).unwrap();
    let ranges = observe(&calib, &cal, Calibrator::MinMax);
    let int8 =
        quantize_model(&f32_model, &ranges, &PtqOptions { calibrator: "minmax".into(), ..Default::default() }).unwrap();

    // Round trip through the decoder; every activation int8 and per-tensor, every weight per-channel.
    let m = Model::parse(&int8).unwrap();
    assert_eq!(m.info.input.dtype, DType::I8);
    assert_eq!(m.info.class_count(), 10);
    assert!(m.info.provenance.method.ends_with("+ptq:minmax"), "{}", m.info.provenance.method);
    for op in m.ops() {
        let op = op.unwrap();
        op.for_each_tensor(|t| match (t.storage, t.dtype) {
            (Storage::Arena { .. }, d) => {
                assert!(d == DType::I8 && matches!(t.quant, Quant::PerTensor { .. }), "{op:?}")
            }
            (Storage::Weights { .. }, DType::I8) => assert!(matches!(t.quant, Quant::PerChannel { .. }), "{op:?}"),
            (Storage::Weights { .. }, d) => assert_eq!(d, DType::I32, "{op:?}"),
        });
        assert!(!matches!(op, Op::Activation { .. }), "float activation left in the int8 graph");
    }
    // Tensor ids: every int8 activation exists in the (split) float model, and every float activation survives.
    let (ids_int8, ids_calib, ids_float) = (arena_ids(&int8), arena_ids(&calib), arena_ids(&f32_model));
    assert!(
        ids_int8.is_subset(&ids_calib),
        "int8 ids not in the float model: {:?}",
        ids_int8.difference(&ids_calib).collect::<Vec<_>>()
    );
    assert!(
        ids_float.is_subset(&ids_int8),
        "float ids lost: {:?}",
        ids_float.difference(&ids_int8).collect::<Vec<_>>()
    );

    // The split calibration model computes the same thing as the fused float model.
    let (f, fc) = (outputs(&f32_model, &eval[..5]), outputs(&calib, &eval[..5]));
    assert_eq!(f, fc, "splitting activations changed the float results");

    let f = outputs(&f32_model, &eval);
    let q = outputs(&int8, &eval);
    let out_scale = match m.info.output.quant {
        Quant::PerTensor { scale, .. } => scale,
        _ => panic!("int8 output has no per-tensor quantization"),
    };
    let agree = f.iter().zip(&q).filter(|(a, b)| argmax(a) == argmax(b)).count() as f64 / f.len() as f64;
    let diffs: Vec<f32> = f.iter().zip(&q).flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs())).collect();
    let mean_steps = diffs.iter().sum::<f32>() / diffs.len() as f32 / out_scale;
    let spread = f.iter().flatten().fold(f32::NEG_INFINITY, |m, &v| m.max(v))
        - f.iter().flatten().fold(f32::INFINITY, |m, &v| m.min(v));
    let classes: BTreeSet<usize> = f.iter().map(|v| argmax(v)).collect();
    let clear: Vec<bool> = f.iter().map(|v| margin(v) > 2.0 * out_scale).collect();
    let n_clear = clear.iter().filter(|&&c| c).count();
    let agree_clear = f.iter().zip(&q).zip(&clear).filter(|((a, b), &c)| c && argmax(a) == argmax(b)).count() as f64
        / n_clear.max(1) as f64;
    println!(
        "{:<22} f32 {} B -> int8 {} B, arena {} -> {} B; top-1 agreement {:.1}% ({} classes predicted); \
         {:.1}% on the {} tiles with a top-2 margin above 2 output steps; \
         mean |dlogit| {:.2} output steps ({:.4}; logit spread {:.3})",
        arch.name(),
        f32_model.len(),
        int8.len(),
        Model::parse(&f32_model).unwrap().info.arena_size,
        m.info.arena_size,
        agree * 100.0,
        classes.len(),
        agree_clear * 100.0,
        n_clear,
        mean_steps,
        mean_steps * out_scale,
        spread
    );
    assert!(
        classes.len() >= 2,
        "the random float model predicts {} class: agreement would prove little",
        classes.len()
    );
    assert!(agree >= min_agreement, "{}: int8 agrees with f32 on {:.1}% of tiles", arch.name(), agree * 100.0);
    if n_clear >= 20 {
        assert!(
            agree_clear >= 0.9,
            "{}: int8 agrees on {:.1}% of clear tiles (< 90%)",
            arch.name(),
            agree_clear * 100.0
        );
    } else {
        // Only the near-tied random MobileNetV3 gets here (min_agreement below 0.9 says so).
        assert!(min_agreement < 0.9, "{}: only {n_clear} tiles have a clear float top-1", arch.name());
        println!("{}: only {n_clear} tiles with a clear top-1; the clear-tile bound is not checked", arch.name());
    }
    // Bound: mean |dlogit| <= 5% of the f32 logit spread over the tiles. Measured with min/max
    // calibration on 80 tiles: ResNet-8 0.4%, MobileNetV3-small 0.5%, MobileNetV2-0.35 2.5% (the
    // deepest chain of requantizations; random BN statistics widen activation ranges). In output
    // steps that is ~1 for ResNet-8 but ~7 for MobileNetV2, so steps are printed, not bounded.
    let rel = mean_steps * out_scale / spread;
    assert!(rel <= 0.05, "{}: mean logit error {:.2}% of the logit spread", arch.name(), rel * 100.0);
    assert!(int8.len() * 3 < f32_model.len(), "int8 file is not much smaller than f32");
}

#[test]
fn resnet8_int8_agrees_with_f32() {
    check_arch(Arch::ResNet8, 0.9);
}

#[test]
fn mobilenet_v2_035_int8_agrees_with_f32() {
    check_arch(Arch::MobileNetV2 { width: 0.35 }, 0.9);
}

#[test]
fn mobilenet_v3_small_int8_agrees_with_f32() {
    // Random MobileNetV3-small heads give nearly tied logits (spread ~0.8 over all tiles, at most
    // two classes ever on top for seeds 11..18, only 4 of 120 tiles with a top-2 margin above two
    // output steps): raw agreement measured 77.5% while the mean logit error is 0.6% of the
    // spread. The 90% agreement goal needs a trained MobileNetV3 to be tested meaningfully.
    check_arch(Arch::MobileNetV3Small, 0.7);
}

#[test]
fn calibrators_give_runnable_models() {
    let Some((cal, eval)) = tiles() else { return };
    let f32_model = float_model(Arch::ResNet8);
    let calib = calibration_model(&f32_model).unwrap();
    let f = outputs(&f32_model, &eval);
    let minmax = observe(&calib, &cal, Calibrator::MinMax);
    for c in [Calibrator::Percentile(99.99), Calibrator::Mse] {
        let r = observe(&calib, &cal, c);
        // Clipping calibrators never widen a range beyond what was seen.
        for (id, &(lo, hi)) in &r {
            let (mlo, mhi) = minmax[id];
            // (int8 ranges always include 0, so compare against the observed range widened to 0.)
            let (mlo, mhi) = (mlo.min(0.0), mhi.max(0.0));
            assert!(lo >= mlo && hi <= mhi && lo <= hi, "{c:?} tensor {id}: [{lo}, {hi}] outside [{mlo}, {mhi}]");
        }
        let q = outputs(&quantize_model(&f32_model, &r, &PtqOptions::default()).unwrap(), &eval);
        let agree = f.iter().zip(&q).filter(|(a, b)| argmax(a) == argmax(b)).count();
        println!("resnet8 {c:?}: top-1 agreement {agree}/{}", f.len());
        assert!(agree * 10 >= f.len() * 9, "{c:?}: agreement {agree}/{}", f.len());
    }
}

#[test]
fn f16_weights_match_f32_closely() {
    let Some((_, eval)) = tiles() else { return };
    let f32_model = float_model(Arch::MobileNetV2 { width: 0.35 });
    let half = to_f16(&f32_model).unwrap();
    let m = Model::parse(&half).unwrap();
    let mut n_f16 = 0;
    for op in m.ops() {
        if let Op::Conv2d { weights, .. } | Op::FullyConnected { weights, .. } = op.unwrap() {
            assert_eq!(weights.dtype, DType::F16);
            n_f16 += 1;
        }
    }
    assert!(n_f16 > 10);
    assert!((half.len() as f64) < 0.6 * f32_model.len() as f64, "{} vs {}", half.len(), f32_model.len());
    // Bound: max |dlogit| <= 3% of max |logit| per tile. f16 rounds each weight by <= 2^-11
    // relative; through ~50 random layers this measured up to 1.3% on MobileNetV2-0.35.
    let (f, h) = (outputs(&f32_model, &eval[..20]), outputs(&half, &eval[..20]));
    let mut same = 0;
    for (a, b) in f.iter().zip(&h) {
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(err <= 3e-2 * scale, "f16 error {err} vs max |logit| {scale}");
        same += (argmax(a) == argmax(b)) as usize;
    }
    assert!(same >= 19, "f16 changed the top-1 class on {} of 20 tiles", 20 - same);
}

#[test]
fn missing_and_nan_ranges_and_unsupported_ops_are_errors() {
    let f32_model = float_model(Arch::ResNet8);
    let calib = calibration_model(&f32_model).unwrap();
    // Synthetic ranges for every op output: enough to quantize.
    let m = Model::parse(&calib).unwrap();
    let mut ranges = Ranges::new();
    for op in m.ops() {
        ranges.insert(op.unwrap().output().id, (-4.0, 4.0));
    }
    quantize_model(&f32_model, &ranges, &PtqOptions::default()).unwrap();

    // The output of the first conv: its quantization can only come from a range.
    let victim = m.ops().map(|o| o.unwrap()).find(|o| matches!(o, Op::Conv2d { .. })).unwrap().output().id;
    let mut missing = ranges.clone();
    missing.remove(&victim);
    match quantize_model(&f32_model, &missing, &PtqOptions::default()) {
        Err(e @ PtqError::MissingRange { tensor, .. }) => {
            assert_eq!(tensor, victim);
            assert!(e.to_string().contains(&format!("tensor {victim}")), "{e}");
        }
        other => panic!("expected MissingRange, got {other:?}"),
    }
    let mut nan = ranges.clone();
    nan.insert(victim, (f32::NAN, 1.0));
    assert!(
        matches!(quantize_model(&f32_model, &nan, &PtqOptions::default()), Err(PtqError::BadRange { tensor, .. }) if tensor == victim)
    );

    // An int8 model is not a float model.
    let int8 = quantize_model(&f32_model, &ranges, &PtqOptions::default()).unwrap();
    assert!(matches!(quantize_model(&int8, &ranges, &PtqOptions::default()), Err(PtqError::NotFloat { .. })));
    assert!(matches!(to_f16(&int8), Err(PtqError::NotFloat { .. })));

    // A graph with a Transpose (no int8 lowering here) names the op and its index.
    let mut ops: Vec<Op> = m.ops().map(|o| o.unwrap()).collect();
    let last = *ops.last().unwrap().output();
    let t_out = rsim_model::Tensor { id: 9000, ..last };
    ops.push(Op::Transpose { input: last, output: t_out, perm: [0, 1, 2, 3] });
    let mut input = m.info.input;
    let mut output = t_out;
    let plan = rsim_model::plan::plan(&mut ops, &mut input, &mut output).unwrap();
    let info = rsim_model::ModelInfo { input, output, arena_size: plan.arena_size as u32, ..m.info };
    let bad = rsim_model::write::encode(&info, &ops, m.weights, None);
    ranges.insert(9000, (-1.0, 1.0));
    match quantize_model(&bad, &ranges, &PtqOptions::default()) {
        Err(e @ PtqError::Unsupported { .. }) => {
            let PtqError::Unsupported { op, index } = &e else { unreachable!() };
            assert_eq!((op.as_str(), *index), ("Transpose", ops.len() - 1));
            assert!(e.to_string().contains("Transpose"), "{e}");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
}
