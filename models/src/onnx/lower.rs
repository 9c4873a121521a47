//! `.rsm` ops to ONNX nodes (see the module docs for the layout rules).

use super::proto::*;
use super::{OnnxError, OPSET};
use crate::conv::ConvGeometry;
use crate::format::Model;
use crate::graph::*;
use std::collections::{HashMap, HashSet};
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

/// NHWC axis -> NCHW axis for rank-4 tensors.
const NHWC_TO_NCHW_AXIS: [i64; 4] = [0, 2, 3, 1];

pub(super) struct Writer<'m, 'b> {
    pub(super) model: &'b Model<'m>,
    pub(super) op: usize,
    pub(super) nodes: Vec<pb::NodeProto>,
    pub(super) inits: Vec<pb::TensorProto>,
    pub(super) consts: HashSet<String>,
    pub(super) nhwc_views: HashMap<u16, String>,
    /// int8 activations: the float name (ONNX layout) consumers read, i.e. its DequantizeLinear output.
    pub(super) reads: HashMap<u16, String>,
    counter: usize,
}

pub(super) fn dims_i64(t: &Tensor) -> Vec<i64> {
    t.shape.dims().iter().map(|&d| d as i64).collect()
}

pub(super) fn is4(t: &Tensor) -> bool {
    t.shape.rank == 4
}

impl Writer<'_, '_> {
    pub(super) fn err(&self, reason: impl Into<String>) -> OnnxError {
        OnnxError { op: Some(self.op), reason: reason.into() }
    }

    pub(super) fn fresh(&mut self) -> String {
        self.counter += 1;
        format!("n{}", self.counter)
    }

    pub(super) fn push(&mut self, op: &str, inputs: &[&str], output: &str, attrs: Vec<pb::AttributeProto>) {
        let name = format!("{op}_{}", self.nodes.len());
        self.nodes.push(node(op, name, inputs, &[output], attrs));
    }

    /// A constant's values as f32 (F16 widened).
    pub(super) fn const_f32(&self, t: &Tensor) -> Result<Vec<f32>, OnnxError> {
        let bytes =
            self.model.const_bytes(t).ok_or_else(|| self.err(format!("tensor {} is not a readable constant", t.id)))?;
        match t.dtype {
            DType::F32 => Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
            DType::F16 => Ok(bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
            other => Err(self.err(format!(
                "constant {} is {other:?} without per-channel quantization; no float value to write",
                t.id
            ))),
        }
    }

    pub(super) fn scalar(&mut self, v: f32) -> String {
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

    /// Name of `t` in ONNX layout (NCHW for rank 4). For an int8 activation: its dequantized value
    /// once written, else the float name its producer writes (quantized after the op, see `qdq`).
    pub(super) fn onnx(&mut self, t: &Tensor) -> Result<String, OnnxError> {
        match t.storage {
            Storage::Arena { .. } => {
                if let Some(n) = self.reads.get(&t.id) {
                    return Ok(n.clone());
                }
                if !matches!(t.dtype, DType::F32 | DType::I8) {
                    return Err(self.err(format!(
                        "activation {} is {:?}; ONNX export takes f32 and int8 activations",
                        t.id, t.dtype
                    )));
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
    pub(super) fn nhwc(&mut self, t: &Tensor) -> Result<String, OnnxError> {
        if let Storage::Weights { .. } = t.storage {
            if t.dtype == DType::I8 {
                return self.const_dq(t);
            }
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
    pub(super) fn nhwc_to_onnx(&mut self, src: &str, out: &Tensor) -> Result<(), OnnxError> {
        let dst = self.onnx(out)?;
        if is4(out) {
            self.push("Transpose", &[src], &dst, vec![attr_ints("perm", &[0, 3, 1, 2])]);
        } else {
            self.push("Identity", &[src], &dst, vec![]);
        }
        Ok(())
    }

    /// Applies `act` to `x`, writing `out`.
    pub(super) fn activation(&mut self, x: &str, act: Activation, out: &str) {
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

    /// Writes one op: int8 ops as their float form between DequantizeLinear and QuantizeLinear
    /// (`qdq`), float ops as they are.
    fn op(&mut self, op: &Op) -> Result<(), OnnxError> {
        if super::qdq::is_int8(op) {
            return self.qdq_op(op);
        }
        self.float_op(op)
    }

    /// The float form of `op` (an int8 op arrives here with its activation replaced by the clamp
    /// that `qdq` applies, and writes the float value of its output).
    pub(super) fn float_op(&mut self, op: &Op) -> Result<(), OnnxError> {
        match op {
            Op::Conv2d { input, weights, bias, output, params, .. } => {
                let g = ConvGeometry::new(input, weights, bias.as_ref(), output, params)
                    .map_err(|e| self.err(e.to_string()))?;
                let (kh, kw) = (g.k_h, g.k_w);
                let wname = self.conv_weights(weights, &g)?;
                let x = self.onnx(input)?;
                let mut inputs = vec![x, wname];
                if let Some(b) = bias {
                    inputs.push(self.bias(b, input, weights)?);
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
            Op::FullyConnected { input, weights, bias, output, activation, .. } => {
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
                    inputs.push(self.bias(b, input, weights)?);
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
                    self.nhwc_to_onnx(&shaped, output)?;
                }
            }
            Op::Add { a, b, output, activation, .. } | Op::Mul { a, b, output, activation, .. } => {
                let kind = if matches!(op, Op::Add { .. }) { "Add" } else { "Mul" };
                if a.shape.rank == b.shape.rank {
                    let (x, y, out) = (self.onnx(a)?, self.onnx(b)?, self.onnx(output)?);
                    self.with_act(kind, &[&x, &y], vec![], *activation, &out);
                } else {
                    // Right-aligned broadcasting means NHWC semantics: compute in that layout.
                    let (x, y, tmp) = (self.nhwc(a)?, self.nhwc(b)?, self.fresh());
                    self.with_act(kind, &[&x, &y], vec![], *activation, &tmp);
                    self.nhwc_to_onnx(&tmp, output)?;
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
            Op::GlobalAvgPool { input, output, .. } => {
                let (x, out) = (self.onnx(input)?, self.onnx(output)?);
                self.push("GlobalAveragePool", &[&x], &out, vec![]);
            }
            Op::Reshape { input, output } => {
                let x = self.nhwc(input)?;
                let shape = self.shape_const(&dims_i64(output));
                let tmp = self.fresh();
                self.push("Reshape", &[&x, &shape], &tmp, vec![]);
                self.nhwc_to_onnx(&tmp, output)?;
            }
            Op::Softmax { input, output, beta, .. } => {
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
                self.push(
                    "LayerNormalization",
                    &[&x, &g, &b],
                    &tmp,
                    vec![attr_int("axis", -1), attr_float("epsilon", *eps)],
                );
                self.nhwc_to_onnx(&tmp, output)?;
            }
            Op::MatMul { a, b, output } => {
                let (x, y, tmp) = (self.nhwc(a)?, self.nhwc(b)?, self.fresh());
                self.push("MatMul", &[&x, &y], &tmp, vec![]);
                self.nhwc_to_onnx(&tmp, output)?;
            }
            Op::Transpose { input, output, perm } => {
                let r = input.shape.rank as usize;
                let perm: Vec<i64> = perm[..r.min(4)].iter().map(|&p| p as i64).collect();
                let (x, tmp) = (self.nhwc(input)?, self.fresh());
                self.push("Transpose", &[&x], &tmp, vec![attr_ints("perm", &perm)]);
                self.nhwc_to_onnx(&tmp, output)?;
            }
            Op::Activation { input, output, activation } => {
                let (x, out) = (self.onnx(input)?, self.onnx(output)?);
                self.activation(&x, *activation, &out);
            }
            Op::Lut { .. } | Op::Quantize { .. } | Op::Dequantize { .. } => {
                return Err(self.err(format!("{} on float tensors: the op needs int8 tensors", op.name())));
            }
        }
        Ok(())
    }
}

pub(super) fn convert(model: &Model<'_>) -> Result<pb::ModelProto, OnnxError> {
    let info = &model.info;
    let mut w = Writer {
        model,
        op: 0,
        nodes: Vec::new(),
        inits: Vec::new(),
        consts: HashSet::new(),
        nhwc_views: HashMap::new(),
        reads: HashMap::new(),
        counter: 0,
    };
    let (tin, tout) = (info.input, info.output);
    // The ONNX input and output are the .rsm's own tensors (NHWC, f32 or int8); the graph works in
    // NCHW behind them.
    let io_type = |t: &Tensor| match t.dtype {
        DType::F32 => Ok(DataType::Float),
        DType::I8 => Ok(DataType::Int8),
        other => Err(OnnxError {
            op: None,
            reason: format!("graph input/output tensor {} is {other:?}; ONNX export takes f32 or int8", t.id),
        }),
    };
    let (in_type, out_type) = (io_type(&tin)?, io_type(&tout)?);
    if tin.dtype == DType::I8 {
        w.op = usize::MAX;
        w.qdq_input(&tin)?;
    } else {
        w.nhwc_views.insert(tin.id, "input".into());
        w.nhwc_to_onnx("input", &tin)?;
    }
    for (i, op) in model.ops().enumerate() {
        w.op = i;
        let op = op.map_err(|e| OnnxError { op: Some(i), reason: e.to_string() })?;
        w.op(&op)?;
    }
    w.op = usize::MAX;
    if tout.dtype == DType::I8 {
        w.qdq_output(&tout)?;
    } else {
        let src = w.nhwc(&tout)?;
        w.push("Identity", &[&src], "output", vec![]);
    }

    let graph = pb::GraphProto {
        node: w.nodes,
        name: info.name.to_string(),
        initializer: w.inits,
        input: vec![value_info("input", &dims_i64(&tin), in_type)],
        output: vec![value_info("output", &dims_i64(&tout), out_type)],
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
