//! Helpers of the QDQ export test: ci20 tiles, int8 models, both backends, the per-op check.

use rsim_edge::Engine;
use rsim_model::arch::Arch;
use rsim_model::calib::{Calibrator, Observer};
use rsim_model::graph_builder::{export, ExportOptions};
use rsim_model::onnx::to_onnx_proto;
use rsim_model::ptq::{calibration_model, quantize_model, PtqOptions};
use rsim_model::{Model, Storage, Tensor};
use std::collections::BTreeMap;
use tract_onnx::pb;
use tract_onnx::prelude::{tvec, Framework, InferenceModelExt, IntoRunnable, TValue};

pub struct Tile {
    pub pixels: Vec<u8>,
    pub w: u32,
    pub h: u32,
}

/// (calibration tiles: first 8 per class by sorted name, all 200 tiles), or None (loud skip).
pub fn tiles() -> Option<(Vec<Tile>, Vec<Tile>)> {
    let root = rsim_test_support::dataset("eurosat-rgb-ci20")?;
    let mut classes: Vec<_> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    classes.sort();
    let (mut cal, mut all) = (Vec::new(), Vec::new());
    for c in classes {
        let mut files: Vec<_> = std::fs::read_dir(&c)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
            .collect();
        files.sort();
        for (i, f) in files.iter().enumerate() {
            let img = image::open(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())).to_rgb8();
            let t = || Tile { w: img.width(), h: img.height(), pixels: img.as_raw().clone() };
            if i < 8 {
                cal.push(t());
            }
            all.push(t());
        }
    }
    assert_eq!((cal.len(), all.len()), (80, 200), "ci20 has 20 tiles in each of 10 classes");
    Some((cal, all))
}

/// A random float model quantized with min/max ranges observed on `cal` through rsim-edge.
pub fn int8_model(arch: Arch, seed: u64, cal: &[Tile]) -> Vec<u8> {
    let float = export(&ExportOptions::random(arch, 3, 32, Some(10), seed)).unwrap().bytes;
    let calib = calibration_model(&float).unwrap();
    let mut arena = vec![0u8; rsim_edge::required_arena(&calib).unwrap() + 16];
    let mut engine = Engine::new(&calib, &mut arena).unwrap();
    let mut obs = Observer::new(Calibrator::MinMax);
    for t in cal {
        engine.set_input_image_u8(&t.pixels, t.w, t.h, 3).unwrap();
        engine.invoke_observed(&mut |_, op, out| obs.observe_le_f32(op.output().id, out)).unwrap();
    }
    quantize_model(&float, &obs.ranges(), &PtqOptions::default()).unwrap()
}

/// The first int8 model (seeds 11, 12, ...) whose top-1 takes at least 3 classes over `tiles`, else
/// the one with the most: random heads (MobileNetV3's especially) often predict one class everywhere.
pub fn separating_int8(arch: Arch, cal: &[Tile], tiles: &[Tile]) -> Vec<u8> {
    let mut best = (0, Vec::new());
    for seed in 11..19 {
        let m = int8_model(arch, seed, cal);
        let classes: std::collections::BTreeSet<usize> = runtime_io(&m, tiles).iter().map(|(_, o)| argmax(o)).collect();
        if classes.len() >= 3 {
            return m;
        }
        if classes.len() > best.0 {
            best = (classes.len(), m);
        }
    }
    best.1
}

/// int8 outputs of the edge runtime for the given int8 inputs.
pub fn runtime_outputs(model: &[u8], inputs: &[Vec<i8>]) -> Vec<Vec<i8>> {
    let mut arena = vec![0u8; rsim_edge::required_arena(model).unwrap() + 16];
    let mut engine = Engine::new(model, &mut arena).unwrap();
    inputs
        .iter()
        .map(|x| {
            engine.input_mut().iter_mut().zip(x).for_each(|(d, &v)| *d = v as u8);
            engine.invoke().unwrap();
            engine.output().iter().map(|&v| v as i8).collect()
        })
        .collect()
}

/// int8 (input, output) of the edge runtime for every tile.
pub fn runtime_io(model: &[u8], tiles: &[Tile]) -> Vec<(Vec<i8>, Vec<i8>)> {
    let mut arena = vec![0u8; rsim_edge::required_arena(model).unwrap() + 16];
    let mut engine = Engine::new(model, &mut arena).unwrap();
    let i8s = |b: &[u8]| b.iter().map(|&v| v as i8).collect::<Vec<_>>();
    tiles
        .iter()
        .map(|t| {
            engine.set_input_image_u8(&t.pixels, t.w, t.h, 3).unwrap();
            let input = i8s(engine.input_mut());
            engine.invoke().unwrap();
            (input, i8s(engine.output()))
        })
        .collect()
}

/// int8 outputs of tract on the QDQ ONNX for the given int8 inputs (NHWC, the model's input shape).
pub fn tract_outputs(onnx: &[u8], shape: &[usize], inputs: &[Vec<i8>]) -> Vec<Vec<i8>> {
    let plan = tract_onnx::onnx()
        .model_for_read(&mut &onnx[..])
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .unwrap_or_else(|e| panic!("tract cannot load the QDQ model: {e:#}"));
    inputs
        .iter()
        .map(|x| {
            let t = tract_onnx::prelude::Tensor::from_shape(shape, x).unwrap();
            let out = plan.run(tvec!(TValue::from(t))).unwrap_or_else(|e| panic!("tract run: {e:#}"));
            out[0].to_plain_array_view::<i8>().expect("the ONNX output is int8").iter().copied().collect()
        })
        .collect()
}

pub fn argmax(v: &[i8]) -> usize {
    v.iter().enumerate().fold(0, |b, (i, &x)| if x > v[b] { i } else { b })
}

/// Loads ONNX bytes into a runnable tract plan.
fn plan_of(proto: &pb::ModelProto) -> std::sync::Arc<tract_onnx::prelude::TypedRunnableModel> {
    tract_onnx::onnx()
        .model_for_proto_model(proto)
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .unwrap_or_else(|e| panic!("tract cannot load the QDQ model: {e:#}"))
}

fn nhwc_dims(t: &Tensor) -> Vec<usize> {
    t.shape.dims().iter().map(|&v| v as usize).collect()
}

/// `t`'s dims in ONNX layout (NCHW for rank 4).
fn onnx_dims(t: &Tensor) -> Vec<usize> {
    let d = nhwc_dims(t);
    if d.len() == 4 {
        vec![d[0], d[3], d[1], d[2]]
    } else {
        d
    }
}

/// NHWC int8 values of `t` in ONNX layout.
fn to_onnx_layout(t: &Tensor, v: &[i8]) -> Vec<i8> {
    if t.shape.rank != 4 {
        return v.to_vec();
    }
    let [n, h, w, c] = t.shape.nhwc();
    let mut out = vec![0i8; v.len()];
    for b in 0..n {
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    out[((b * c + ch) * h + y) * w + x] = v[((b * h + y) * w + x) * c + ch];
                }
            }
        }
    }
    out
}

fn value_info_i8(name: &str, dims: &[usize]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dim =
        dims.iter().map(|&d| Dimension { value: Some(Value::DimValue(d as i64)), ..Default::default() }).collect();
    let tensor = pb::type_proto::Tensor {
        elem_type: pb::tensor_proto::DataType::Int8 as i32,
        shape: Some(pb::TensorShapeProto { dim }),
    };
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto { value: Some(pb::type_proto::Value::TensorType(tensor)), ..Default::default() }),
        ..Default::default()
    }
}

/// Per op, with the runtime's own int8 inputs fed to that op alone in the QDQ graph (the node that
/// makes each input `q<id>` is cut and `q<id>` becomes a graph input): the largest difference from
/// the runtime's output in output steps, and the share of output values that differ, over `tiles`.
/// Returns (op index, op name, max steps, differing fraction) per op.
pub fn per_op(int8: &[u8], inputs: &[Vec<i8>]) -> Vec<(usize, &'static str, i32, f64)> {
    let m = Model::parse(int8).unwrap();
    let full = to_onnx_proto(&m).unwrap();
    // The runtime's int8 tensors of every tile, by id (NHWC).
    let mut arena = vec![0u8; rsim_edge::required_arena(m.bytes).unwrap() + 16];
    let mut engine = Engine::new(int8, &mut arena).unwrap();
    let mut seen: Vec<BTreeMap<u16, Vec<i8>>> = Vec::new();
    for x in inputs {
        engine.input_mut().iter_mut().zip(x).for_each(|(d, &v)| *d = v as u8);
        let mut map = BTreeMap::new();
        map.insert(m.info.input.id, x.clone());
        engine
            .invoke_observed(&mut |_, op, out| {
                map.insert(op.output().id, out.iter().map(|&v| v as i8).collect());
            })
            .unwrap();
        seen.push(map);
    }
    let mut report = Vec::new();
    for (i, op) in m.ops().enumerate() {
        let op = op.unwrap();
        let mut ins: Vec<Tensor> = Vec::new();
        op.for_each_tensor(|t| {
            if matches!(t.storage, Storage::Arena { .. }) && t.id != op.output().id && !ins.iter().any(|u| u.id == t.id)
            {
                ins.push(*t);
            }
        });
        let names: Vec<String> = ins.iter().map(|t| format!("q{}", t.id)).collect();
        let mut proto = full.clone();
        let g = proto.graph.as_mut().unwrap();
        g.node.retain(|n| !n.output.iter().any(|o| names.contains(o)));
        g.input.extend(ins.iter().zip(&names).map(|(t, n)| value_info_i8(n, &onnx_dims(t))));
        let out = *op.output();
        g.output = vec![value_info_i8(&format!("q{}", out.id), &onnx_dims(&out))];
        let plan = plan_of(&proto);
        let (mut max, mut differ, mut total) = (0, 0usize, 0usize);
        for map in &seen {
            let tin = &m.info.input;
            let graph_input = tract_onnx::prelude::Tensor::from_shape(&nhwc_dims(tin), &map[&tin.id]).unwrap();
            let mut feed = tvec!(TValue::from(graph_input));
            for t in &ins {
                let v = to_onnx_layout(t, &map[&t.id]);
                feed.push(TValue::from(tract_onnx::prelude::Tensor::from_shape(&onnx_dims(t), &v).unwrap()));
            }
            let res = plan.run(feed).unwrap_or_else(|e| panic!("op #{i} {}: {e:#}", op.name()));
            let theirs: Vec<i8> = res[0].to_plain_array_view::<i8>().unwrap().iter().copied().collect();
            let ours = to_onnx_layout(&out, &map[&out.id]);
            for (&a, &b) in ours.iter().zip(&theirs) {
                let d = (a as i32 - b as i32).abs();
                max = max.max(d);
                differ += (d != 0) as usize;
            }
            total += ours.len();
        }
        report.push((i, op.name(), max, differ as f64 / total.max(1) as f64));
    }
    report
}
