//! `.rsm` ops to ONNX nodes (see the module docs for the layout rules).

use super::proto::*;
use super::{OnnxError, OPSET};
use crate::format::Model;
use crate::graph::*;
use std::collections::{HashMap, HashSet};
use tract_onnx::pb;

/// NHWC axis -> NCHW axis for rank-4 tensors.
const NHWC_TO_NCHW_AXIS: [i64; 4] = [0, 2, 3, 1];

struct Writer<'m, 'b> {
    model: &'b Model<'m>,
    op: usize,
    nodes: Vec<pb::NodeProto>,
    inits: Vec<pb::TensorProto>,
    consts: HashSet<String>,
    nhwc_views: HashMap<u16, String>,
    counter: usize,
}

fn dims_i64(t: &Tensor) -> Vec<i64> {
    t.shape.dims().iter().map(|&d| d as i64).collect()
}

fn is4(t: &Tensor) -> bool {
    t.shape.rank == 4
}

impl Writer<'_, '_> {
    fn err(&self, reason: impl Into<String>) -> OnnxError {
        OnnxError { op: Some(self.op), reason: reason.into() }
    }

    fn fresh(&mut self) -> String {
        self.counter += 1;
        format!("n{}", self.counter)
    }

    fn push(&mut self, op: &str, inputs: &[&str], output: &str, attrs: Vec<pb::AttributeProto>) {
        let name = format!("{op}_{}", self.nodes.len());
        self.nodes.push(node(op, name, inputs, &[output], attrs));
    }

    /// A constant's values as f32 (F16 widened).
    fn const_f32(&self, t: &Tensor) -> Result<Vec<f32>, OnnxError> {
        let bytes = self.model.const_bytes(t).ok_or_else(|| self.err(format!("tensor {} is not a readable constant", t.id)))?;
        match t.dtype {
            DType::F32 => Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
            DType::F16 => Ok(bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
            other => Err(self.err(format!("constant {} is {other:?}; only float models export (QDQ export comes later)", t.id))),
        }
    }

    fn scalar(&mut self, v: f32) -> String {
        let name = format!("s{}", v.to_bits());
        if self.consts.insert(name.clone()) {
            self.inits.push(tensor_f32(&name, &[], &[v]));
        }
        name
    }

    fn shape_const(&mut self, dims: &[i64]) -> String {
        let name = format!("shape_{}", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x"));
        if self.consts.insert(name.clone()) {
            self.inits.push(tensor_i64(&name, dims));
        }
        name
    }

    /// Name of `t` in ONNX layout (NCHW for rank 4).
    fn onnx(&mut self, t: &Tensor) -> Result<String, OnnxError> {
        match t.storage {
            Storage::Arena { .. } => {
                if t.dtype != DType::F32 {
                    return Err(self.err(format!("activation {} is {:?}; only float models export (QDQ export comes later)", t.id, t.dtype)));
                }
                Ok(format!("t{}", t.id))
            }
            Storage::Weights { .. } => {
                let nhwc = self.nhwc(t)?;
                if !is4(t) {
                    return Ok(nhwc);
                }
                let name = format!("c{}_nchw", t.id);
                if self.consts.insert(name.clone()) {
                    self.push("Transpose", &[&nhwc], &name, vec![attr_ints("perm", &[0, 3, 1, 2])]);
                }
                Ok(name)
            }
        }
    }

    /// Name of `t` in the `.rsm` layout (NHWC for rank 4), adding a Transpose once if needed.
    fn nhwc(&mut self, t: &Tensor) -> Result<String, OnnxError> {
        if let Storage::Weights { .. } = t.storage {
            let name = format!("c{}", t.id);
            if self.consts.insert(name.clone()) {
                let v = self.const_f32(t)?;
                self.inits.push(tensor_f32(&name, &dims_i64(t), &v));
            }
            return Ok(name);
        }
        let src = self.onnx(t)?;
        if !is4(t) {
            return Ok(src);
        }
        if let Some(n) = self.nhwc_views.get(&t.id) {
            return Ok(n.clone());
        }
        let name = format!("t{}_nhwc", t.id);
        self.push("Transpose", &[&src], &name, vec![attr_ints("perm", &[0, 2, 3, 1])]);
        self.nhwc_views.insert(t.id, name.clone());
        Ok(name)
    }

    /// Makes `out` (ONNX layout) from `src`, which holds it in NHWC layout.
    fn from_nhwc(&mut self, src: &str, out: &Tensor) -> Result<(), OnnxError> {
        let dst = self.onnx(out)?;
        if is4(out) {
            self.push("Transpose", &[src], &dst, vec![attr_ints("perm", &[0, 3, 1, 2])]);
        } else {
            self.push("Identity", &[src], &dst, vec![]);
        }
        Ok(())
    }

    /// Applies `act` to `x`, writing `out`.
    fn activation(&mut self, x: &str, act: Activation, out: &str) {
        match act {
            Activation::None => self.push("Identity", &[x], out, vec![]),
            Activation::Relu => self.push("Relu", &[x], out, vec![]),
            Activation::Relu6 => {
                let (lo, hi) = (self.scalar(0.0), self.scalar(6.0));
                self.push("Clip", &[x, &lo, &hi], out, vec![]);
            }
            Activation::HardSwish => self.push("HardSwish", &[x], out, vec![]),
            // ONNX's default alpha is 0.2; PyTorch's (and the runtime's) gate is relu6(x + 3) / 6.
            Activation::HardSigmoid => {
                self.push("HardSigmoid", &[x], out, vec![attr_float("alpha", 1.0 / 6.0), attr_float("beta", 0.5)])
            }
            Activation::Sigmoid => self.push("Sigmoid", &[x], out, vec![]),
            Activation::Gelu => {
                // Exact erf form: 0.5 * x * (1 + erf(x / sqrt 2)).
                let (r, one, half) = (self.scalar(std::f32::consts::FRAC_1_SQRT_2), self.scalar(1.0), self.scalar(0.5));
                let (a, b, c, d) = (self.fresh(), self.fresh(), self.fresh(), self.fresh());
                self.push("Mul", &[x, &r], &a, vec![]);
                self.push("Erf", &[&a], &b, vec![]);
                self.push("Add", &[&b, &one], &c, vec![]);
                self.push("Mul", &[x, &c], &d, vec![]);
                self.push("Mul", &[&d, &half], out, vec![]);
            }
        }
    }

    /// Runs `op_type` then the fused activation into `out`.
    fn with_act(&mut self, op: &str, inputs: &[&str], attrs: Vec<pb::AttributeProto>, act: Activation, out: &str) {
        if act == Activation::None {
            self.push(op, inputs, out, attrs);
        } else {
            let tmp = self.fresh();
            self.push(op, inputs, &tmp, attrs);
            self.activation(&tmp, act, out);
        }
    }

    fn op(&mut self, op: &Op) -> Result<(), OnnxError> {
        match op {
            Op::Conv2d { input, weights, bias, output, params, requant } => {
                if requant.is_some() {
                    return Err(self.err("int8 conv; only float models export (QDQ export comes later)"));
                }
                let [wo, kh, kw, wi] = weights.shape.nhwc();
                let cin = input.shape.nhwc()[3];
                let w = self.const_f32(weights)?;
                let (dims, data) = if params.groups == 1 {
                    // OHWI -> OIHW
                    let mut v = vec![0f32; w.len()];
                    for o in 0..wo {
                        for y in 0..kh {
                            for x in 0..kw {
                                for i in 0..wi {
                                    v[((o * wi + i) * kh + y) * kw + x] = w[((o * kh + y) * kw + x) * wi + i];
                                }
                            }
                        }
                    }
                    ([wo, wi, kh, kw], v)
                } else if params.groups as usize == cin && wo == 1 {
                    // 1HW(C*M) -> (C*M)1HW
                    let oc = wi;
                    let mut v = vec![0f32; w.len()];
                    for c in 0..oc {
                        for y in 0..kh {
                            for x in 0..kw {
                                v[(c * kh + y) * kw + x] = w[(y * kw + x) * oc + c];
                            }
                        }
                    }
                    ([oc, 1, kh, kw], v)
                } else {
                    return Err(self.err(format!("conv with {} groups over {cin} channels is neither dense nor depthwise", params.groups)));
                };
                let wname = format!("w{}", weights.id);
                let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
                self.inits.push(tensor_f32(&wname, &dims, &data));
                let x = self.onnx(input)?;
                let mut inputs = vec![x, wname];
                if let Some(b) = bias {
                    inputs.push(self.nhwc(b)?);
                }
                let p = params.padding;
                let attrs = vec![
                    attr_ints("kernel_shape", &[kh as i64, kw as i64]),
                    attr_ints("strides", &[params.stride[0] as i64, params.stride[1] as i64]),
                    attr_ints("dilations", &[params.dilation[0] as i64, params.dilation[1] as i64]),
                    attr_ints("pads", &[p.top as i64, p.left as i64, p.bottom as i64, p.right as i64]),
                    attr_int("group", params.groups as i64),
                ];
                let out = self.onnx(output)?;
                let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                self.with_act("Conv", &refs, attrs, params.activation, &out);
            }
            Op::FullyConnected { input, weights, bias, output, activation, requant } => {
                if requant.is_some() {
                    return Err(self.err("int8 fully-connected; only float models export (QDQ export comes later)"));
                }
                let i = weights.shape.dims().get(1).copied().unwrap_or(1) as i64;
                let mut x = self.nhwc(input)?;
                if input.shape.rank != 2 {
                    let rows = input.shape.checked_len().unwrap_or(0) as i64 / i.max(1);
                    let flat = self.fresh();
                    let shape = self.shape_const(&[rows, i]);
                    self.push("Reshape", &[&x, &shape], &flat, vec![]);
                    x = flat;
                }
                let w = self.nhwc(weights)?;
                let mut inputs = vec![x, w];
                if let Some(b) = bias {
                    inputs.push(self.nhwc(b)?);
                }
                let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                if output.shape.rank == 2 {
                    let out = self.onnx(output)?;
                    self.with_act("Gemm", &refs, vec![attr_int("transB", 1)], *activation, &out);
                } else {
                    let tmp = self.fresh();
                    self.with_act("Gemm", &refs, vec![attr_int("transB", 1)], *activation, &tmp);
                    let shaped = self.fresh();
                    let shape = self.shape_const(&dims_i64(output));
                    self.push("Reshape", &[&tmp, &shape], &shaped, vec![]);
                    self.from_nhwc(&shaped, output)?;
                }
            }
            Op::Add { a, b, output, activation, quant } | Op::Mul { a, b, output, activation, quant } => {
                if quant.is_some() {
                    return Err(self.err("int8 add/mul; only float models export (QDQ export comes later)"));
                }
                let kind = if matches!(op, Op::Add { .. }) { "Add" } else { "Mul" };
                if a.shape.rank == b.shape.rank {
                    let (x, y, out) = (self.onnx(a)?, self.onnx(b)?, self.onnx(output)?);
                    self.with_act(kind, &[&x, &y], vec![], *activation, &out);
                } else {
                    // Right-aligned broadcasting means NHWC semantics: compute in that layout.
                    let (x, y, tmp) = (self.nhwc(a)?, self.nhwc(b)?, self.fresh());
                    self.with_act(kind, &[&x, &y], vec![], *activation, &tmp);
                    self.from_nhwc(&tmp, output)?;
                }
            }
            Op::AvgPool2d { input, output, params, .. } | Op::MaxPool2d { input, output, params, .. } => {
                let p = params.padding;
                let mut attrs = vec![
                    attr_ints("kernel_shape", &[params.kernel[0] as i64, params.kernel[1] as i64]),
                    attr_ints("strides", &[params.stride[0] as i64, params.stride[1] as i64]),
                    attr_ints("pads", &[p.top as i64, p.left as i64, p.bottom as i64, p.right as i64]),
                ];
                let kind = if matches!(op, Op::AvgPool2d { .. }) {
                    // The runtime divides by in-bounds taps only (TFLite's rule).
                    attrs.push(attr_int("count_include_pad", 0));
                    "AveragePool"
                } else {
                    "MaxPool"
                };
                let (x, out) = (self.onnx(input)?, self.onnx(output)?);
                self.push(kind, &[&x], &out, attrs);
            }
            Op::GlobalAvgPool { input, output, requant } => {
                if requant.is_some() {
                    return Err(self.err("int8 mean; only float models export (QDQ export comes later)"));
                }
                let (x, out) = (self.onnx(input)?, self.onnx(output)?);
                self.push("GlobalAveragePool", &[&x], &out, vec![]);
            }
            Op::Reshape { input, output } => {
                let x = self.nhwc(input)?;
                let shape = self.shape_const(&dims_i64(output));
                let tmp = self.fresh();
                self.push("Reshape", &[&x, &shape], &tmp, vec![]);
                self.from_nhwc(&tmp, output)?;
            }
            Op::Softmax { input, output, beta, quant } => {
                if quant.is_some() {
                    return Err(self.err("int8 softmax; only float models export (QDQ export comes later)"));
                }
                let mut x = self.onnx(input)?;
                if *beta != 1.0 {
                    let (b, tmp) = (self.scalar(*beta), self.fresh());
                    self.push("Mul", &[&x, &b], &tmp, vec![]);
                    x = tmp;
                }
                let axis = if is4(input) { 1 } else { -1 };
                let out = self.onnx(output)?;
                self.push("Softmax", &[&x], &out, vec![attr_int("axis", axis)]);
            }
            Op::Concat { inputs, output, axis } => {
                let mut names = Vec::new();
                for t in inputs.iter().flatten() {
                    names.push(self.onnx(t)?);
                }
                let axis = if is4(output) { NHWC_TO_NCHW_AXIS[(*axis as usize).min(3)] } else { *axis as i64 };
                let out = self.onnx(output)?;
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                self.push("Concat", &refs, &out, vec![attr_int("axis", axis)]);
            }
            Op::LayerNorm { input, gamma, beta, output, eps } => {
                let (x, g, b, tmp) = (self.nhwc(input)?, self.nhwc(gamma)?, self.nhwc(beta)?, self.fresh());
                self.push("LayerNormalization", &[&x, &g, &b], &tmp, vec![attr_int("axis", -1), attr_float("epsilon", *eps)]);
                self.from_nhwc(&tmp, output)?;
            }
            Op::MatMul { a, b, output } => {
                let (x, y, tmp) = (self.nhwc(a)?, self.nhwc(b)?, self.fresh());
                self.push("MatMul", &[&x, &y], &tmp, vec![]);
                self.from_nhwc(&tmp, output)?;
            }
            Op::Transpose { input, output, perm } => {
                let r = input.shape.rank as usize;
                let perm: Vec<i64> = perm[..r.min(4)].iter().map(|&p| p as i64).collect();
                let (x, tmp) = (self.nhwc(input)?, self.fresh());
                self.push("Transpose", &[&x], &tmp, vec![attr_ints("perm", &perm)]);
                self.from_nhwc(&tmp, output)?;
            }
            Op::Activation { input, output, activation } => {
                let (x, out) = (self.onnx(input)?, self.onnx(output)?);
                self.activation(&x, *activation, &out);
            }
            Op::Lut { .. } | Op::Quantize { .. } | Op::Dequantize { .. } => {
                return Err(self.err(format!("{} belongs to int8 graphs; only float models export (QDQ export comes later)", op.name())));
            }
        }
        Ok(())
    }
}

pub(super) fn convert(model: &Model<'_>) -> Result<pb::ModelProto, OnnxError> {
    let info = &model.info;
    let mut w = Writer { model, op: 0, nodes: Vec::new(), inits: Vec::new(), consts: HashSet::new(), nhwc_views: HashMap::new(), counter: 0 };
    let (tin, tout) = (info.input, info.output);
    if tin.dtype != DType::F32 || tout.dtype != DType::F32 {
        return Err(OnnxError { op: None, reason: "graph input and output must be f32 (int8 QDQ export comes later)".into() });
    }
    // The ONNX input is the .rsm input tensor itself (NHWC); the graph works in NCHW behind it.
    w.nhwc_views.insert(tin.id, "input".into());
    w.from_nhwc("input", &tin)?;
    for (i, op) in model.ops().enumerate() {
        w.op = i;
        let op = op.map_err(|e| OnnxError { op: Some(i), reason: e.to_string() })?;
        w.op(&op)?;
    }
    w.op = usize::MAX;
    let src = w.nhwc(&tout)?;
    w.push("Identity", &[&src], "output", vec![]);

    let graph = pb::GraphProto {
        node: w.nodes,
        name: info.name.to_string(),
        initializer: w.inits,
        input: vec![value_info_f32("input", &dims_i64(&tin))],
        output: vec![value_info_f32("output", &dims_i64(&tout))],
        ..Default::default()
    };
    Ok(pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: OPSET }],
        producer_name: "rsim".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!("{} ({})", info.name, info.provenance.method),
        graph: Some(graph),
        ..Default::default()
    })
}
