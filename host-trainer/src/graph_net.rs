//! A FLOAT `.rsm` graph run in tch, with trainable weights and an optional int8 fake-quant mode.
//!
//! The runtime keeps activations NHWC and weights OHWI / 1HW(C*M) / [out, in]; here activations are
//! NCHW (rank-4) or [B, ..] (other ranks) and weights live in a VarStore in PyTorch layouts
//! (OIHW, [C*M, 1, kh, kw], [out, in]) so they can be fine-tuned and written back
//! ([`GraphNet::write_weights`]). Batch size is free: the model's batch of 1 is replaced by B.
//!
//! Fake-quant ([`FakeQuant`]) mirrors the runtime's int8 arithmetic (TFLite's): every activation
//! tensor (graph input included) is quantized per tensor with its own (scale, zero point), conv and FC
//! weights per output channel symmetric with the scale taken from the CURRENT weights (max|w|/127),
//! biases to int32 steps of s_in*s_w. Rounding is half away from zero like TFLite (torch's own
//! fake-quant ops round half to even, which would flip exact .5 ties against the board). Gradients are
//! straight-through, zero outside the clamp range (as torch's FakeQuantize).
//!
//! With the int8 model's integer stages ([`FakeQuant::from_int8_model`], f64 mode) Conv/FC/Add/Mul/
//! GlobalAvgPool compute their int8 output as the board does: exact integer accumulators, then
//! TFLite's two-rounding requant (SRDHM, then rounding shift) in int64 tensors. A single float
//! rounding differs from it on ~0.1% of values, and such steps compound over depth. The forward value
//! is the integer one, the gradient the float fake-quant's: y = y_fq + (y_int - y_fq).detach().
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use rsim_model::{
    Activation, BinaryQuant, ConvGeometry, ConvKind, DType, InputSpec, Model, Multiplier, Op, Quant, Requant, Shape,
    Storage, Tensor as MTensor,
};
use tch::{nn, Device, Kind, Tensor};

mod exact;
use exact::{add_exact, mean_exact, mul_exact, requant_out, to_int};

#[derive(Debug, Clone, PartialEq)]
pub enum GraphNetError {
    /// The bytes are not a valid `.rsm` model.
    Model(String),
    /// An op this interpreter does not run (index, name, why).
    Unsupported { index: usize, op: &'static str, why: String },
    /// The model is not a float model (e.g. int8 tensors).
    NotFloat(String),
    /// An op reads a tensor that nothing wrote.
    MissingValue { index: usize, tensor: u16 },
    /// Input of the wrong shape.
    BadInput(String),
}

impl fmt::Display for GraphNetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GraphNetError::Model(e) => write!(f, "not a valid .rsm model: {e}"),
            GraphNetError::Unsupported { index, op, why } => {
                write!(f, "op #{index} ({op}) is not supported on the host: {why}")
            }
            GraphNetError::NotFloat(why) => write!(f, "expected a float (f32/f16) model: {why}"),
            GraphNetError::MissingValue { index, tensor } => {
                write!(f, "op #{index} reads tensor {tensor}, which nothing wrote")
            }
            GraphNetError::BadInput(why) => write!(f, "bad input: {why}"),
        }
    }
}

impl std::error::Error for GraphNetError {}

/// Per-tensor int8 parameters for the fake-quant forward.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FakeQuant {
    /// (scale, zero point) of each activation tensor by id, the graph input included.
    pub act: HashMap<u16, (f32, i32)>,
    /// For ops whose fused activation becomes a lookup table in int8 (HardSwish, HardSigmoid,
    /// Sigmoid, GELU): (scale, zero point) of the pre-activation value, keyed by the op's OUTPUT id.
    pub pre_act: HashMap<u16, (f32, i32)>,
    /// Fake-quantize conv/FC weights (per channel) and biases (int32 at s_in*s_w).
    pub weights: bool,
    /// Compute between the int8 grids in f64: integer-valued products and sums are then exact, as
    /// in the runtime's int32 accumulators, so only the requant rounding can differ (f32 sums flip
    /// about 1 in 10^3-10^4 values by one step, and flips compound over depth). Slower; meant for
    /// parity checks, QAT trains in f32.
    pub f64: bool,
    /// The int8 model's integer output stages by (float) output id: with `f64`, these ops compute
    /// their quantized output exactly as the board does (TFLite's two-rounding requant), the float
    /// path only supplying the gradient. Empty when built from ranges (QAT).
    pub exact: HashMap<u16, ExactStage>,
}

/// An int8 op's integer output stage, read from the int8 model.
#[derive(Clone, Debug, PartialEq)]
pub enum ExactStage {
    /// Conv / depthwise / FC: per-output-channel (or one) Q31 multiplier and shift, clamp range.
    Requant { mult: Vec<i32>, shift: Vec<i32>, act: (i32, i32) },
    /// ADD with TFLite's left shift and per-input multipliers.
    Add(BinaryQuant),
    /// MUL: the integer product requantized by the output multiplier.
    Mul(BinaryQuant),
    /// MEAN over H, W: `None` = same quantization in and out (plain truncating mean).
    Mean { requant: Option<(i32, i32)>, act: (i32, i32) },
}

fn i32s(m: &Model<'_>, b: rsim_model::Blob) -> Result<Vec<i32>, GraphNetError> {
    let bytes =
        m.blob(b).ok_or(GraphNetError::Model(format!("multiplier blob at {} lies outside the weights", b.offset)))?;
    Ok(bytes.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

fn mults(m: &Model<'_>, r: &Requant) -> Result<(Vec<i32>, Vec<i32>), GraphNetError> {
    Ok(match r.multiplier {
        Multiplier::PerTensor { mult, shift } => (vec![mult], vec![shift]),
        Multiplier::PerChannel { mult, shift } => (i32s(m, mult)?, i32s(m, shift)?),
    })
}

fn act_range(r: &Requant) -> (i32, i32) {
    (r.act_min.max(-128), r.act_max.min(127))
}

impl FakeQuant {
    /// Parameters read from an int8 model whose activation tensors keep the float model's ids.
    /// A `Lut` op's input is the pre-activation of the op that wrote the Lut's output id.
    pub fn from_int8_model(bytes: &[u8]) -> Result<FakeQuant, GraphNetError> {
        let m = Model::parse(bytes).map_err(|e| GraphNetError::Model(e.to_string()))?;
        let mut fq = FakeQuant { weights: true, f64: true, ..FakeQuant::default() };
        let put = |t: &MTensor, map: &mut HashMap<u16, (f32, i32)>| {
            if let (DType::I8, Quant::PerTensor { scale, zero_point }) = (t.dtype, t.quant) {
                map.insert(t.id, (scale, zero_point));
            }
        };
        put(&m.info.input, &mut fq.act);
        for op in m.ops() {
            let op = op.map_err(|e| GraphNetError::Model(e.to_string()))?;
            put(op.output(), &mut fq.act);
            let stage = match &op {
                Op::Conv2d { requant: Some(r), .. } | Op::FullyConnected { requant: Some(r), .. } => {
                    let (mult, shift) = mults(&m, r)?;
                    Some(ExactStage::Requant { mult, shift, act: act_range(r) })
                }
                Op::Add { quant: Some(q), .. } => Some(ExactStage::Add(*q)),
                Op::Mul { quant: Some(q), .. } => Some(ExactStage::Mul(*q)),
                Op::GlobalAvgPool { input, output, requant } => Some(if input.quant == output.quant {
                    ExactStage::Mean { requant: None, act: (-128, 127) }
                } else {
                    let r =
                        requant.as_ref().ok_or(GraphNetError::Model("int8 GlobalAvgPool without requant".into()))?;
                    let (mult, shift) = mults(&m, r)?;
                    let (Some(&mm), Some(&ss)) = (mult.first(), shift.first()) else {
                        return Err(GraphNetError::Model("empty GlobalAvgPool multiplier".into()));
                    };
                    ExactStage::Mean { requant: Some((mm, ss)), act: act_range(r) }
                }),
                // No integer output stage to reproduce. Listed, not `_`: a new int8 op with one goes here.
                Op::Conv2d { requant: None, .. }
                | Op::FullyConnected { requant: None, .. }
                | Op::Add { quant: None, .. }
                | Op::Mul { quant: None, .. }
                | Op::AvgPool2d { .. }
                | Op::MaxPool2d { .. }
                | Op::Reshape { .. }
                | Op::Softmax { .. }
                | Op::Concat { .. }
                | Op::LayerNorm { .. }
                | Op::MatMul { .. }
                | Op::Transpose { .. }
                | Op::Activation { .. }
                | Op::Lut { .. }
                | Op::Quantize { .. }
                | Op::Dequantize { .. } => None,
            };
            if let Some(st) = stage {
                fq.exact.insert(op.output().id, st);
            }
            if let Op::Lut { input, output, .. } = op {
                if let Quant::PerTensor { scale, zero_point } = input.quant {
                    fq.pre_act.insert(output.id, (scale, zero_point));
                }
                // The op before the Lut wrote its pre-activation: key its stage by the float op's output.
                if let Some(st) = fq.exact.remove(&input.id) {
                    fq.exact.insert(output.id, st);
                }
            }
        }
        Ok(fq)
    }

    /// Parameters from observed float ranges through `qparams` (e.g. `ptq::activation_qparams`).
    pub fn from_ranges(ranges: &BTreeMap<u16, (f32, f32)>, qparams: impl Fn(f32, f32) -> (f32, i32)) -> FakeQuant {
        let act = ranges.iter().map(|(&id, &(lo, hi))| (id, qparams(lo, hi))).collect();
        FakeQuant { act, pre_act: HashMap::new(), weights: true, f64: false, exact: HashMap::new() }
    }
}

/// TFLite rounding (half away from zero), exact for every f32: truncate, then step on the fraction.
pub fn round_half_away(x: &Tensor) -> Tensor {
    let t = x.trunc();
    let frac = x - &t;
    t + frac.ge(0.5).to_kind(Kind::Float) - frac.le(-0.5).to_kind(Kind::Float)
}

/// Fake-quantize to int8 with (scale, zp) in [qmin, qmax]; straight-through gradient inside the range.
pub fn fake_quant(x: &Tensor, scale: f32, zp: i32, qmin: i32, qmax: i32) -> Tensor {
    let y = tch::no_grad(|| {
        let q = (round_half_away(&(x / scale as f64)) + zp as f64).clamp(qmin as f64, qmax as f64);
        (q - zp as f64) * scale as f64
    });
    if !x.requires_grad() {
        return y;
    }
    let (lo, hi) = ((qmin - zp) as f64 * scale as f64, (qmax - zp) as f64 * scale as f64);
    let inside = tch::no_grad(|| x.ge(lo).logical_and(&x.le(hi)).to_kind(Kind::Float));
    y + (x - x.detach()) * inside
}

/// Per-output-channel symmetric weight scales max|w|/127 along dim 0 (zero channels: a tiny scale).
pub fn weight_scales(w: &Tensor) -> Tensor {
    tch::no_grad(|| {
        let o = w.size()[0];
        (w.detach().reshape([o, -1]).abs().amax([1], false) / 127.0).clamp_min(1e-30)
    })
}

/// How a weight tensor is laid out in the model, to convert to and from PyTorch's layout.
#[derive(Clone, Copy, Debug, PartialEq)]
enum WLayout {
    /// OHWI <-> OIHW.
    Dense,
    /// 1HW(C*M) <-> [C*M, 1, kh, kw].
    Depthwise,
    /// [out, in] both sides.
    Linear,
}

#[derive(Debug)]
struct Param {
    weight: Tensor,
    bias: Option<Tensor>,
    layout: WLayout,
    weight_t: MTensor,
    bias_t: Option<MTensor>,
}

/// A float `.rsm` graph over trainable tch parameters.
pub struct GraphNet {
    pub vs: nn::VarStore,
    ops: Vec<Op>,
    /// Parameters by op index (conv and FC only).
    params: HashMap<usize, Param>,
    input: MTensor,
    output: MTensor,
    spec: InputSpec,
}

fn to_torch_layout(w: &Tensor, layout: WLayout) -> Tensor {
    match layout {
        WLayout::Dense => w.permute([0, 3, 1, 2]),
        WLayout::Depthwise => w.permute([3, 0, 1, 2]),
        WLayout::Linear => w.shallow_clone(),
    }
}

fn to_model_layout(w: &Tensor, layout: WLayout) -> Tensor {
    match layout {
        WLayout::Dense => w.permute([0, 2, 3, 1]),
        WLayout::Depthwise => w.permute([1, 2, 3, 0]),
        WLayout::Linear => w.shallow_clone(),
    }
}

fn dims_i64(s: &Shape) -> Vec<i64> {
    s.dims().iter().map(|&d| d as i64).collect()
}

/// Reads a constant (F32 or F16) as an f32 tensor of its model shape.
fn constant(m: &Model<'_>, t: &MTensor, index: usize, op: &'static str) -> Result<Tensor, GraphNetError> {
    let bytes = m.const_bytes(t).ok_or(GraphNetError::Unsupported {
        index,
        op,
        why: format!("tensor {} is not a constant", t.id),
    })?;
    let kind = match t.dtype {
        DType::F32 => Kind::Float,
        DType::F16 => Kind::Half,
        other => return Err(GraphNetError::NotFloat(format!("op #{index} ({op}) has {other:?} constant {}", t.id))),
    };
    Ok(Tensor::from_data_size(bytes, &dims_i64(&t.shape), kind).to_kind(Kind::Float))
}

fn check_float(t: &MTensor, index: usize, op: &'static str) -> Result<(), GraphNetError> {
    match t.dtype {
        DType::F32 => Ok(()),
        other => Err(GraphNetError::NotFloat(format!("op #{index} ({op}) has a {other:?} activation tensor {}", t.id))),
    }
}

impl GraphNet {
    /// Decodes a float model and copies its conv/FC weights into a fresh VarStore on `device`.
    pub fn from_rsm(bytes: &[u8], device: Device) -> Result<GraphNet, GraphNetError> {
        let m = Model::parse(bytes).map_err(|e| GraphNetError::Model(e.to_string()))?;
        check_float(&m.info.input, 0, "graph input")?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let (mut ops, mut params) = (Vec::new(), HashMap::new());
        for (i, op) in m.ops().enumerate() {
            let op = op.map_err(|e| GraphNetError::Model(e.to_string()))?;
            let name = op.name();
            let unsupported = |why: &str| GraphNetError::Unsupported { index: i, op: name, why: why.to_string() };
            check_float(op.output(), i, name)?;
            let (weights, bias, layout) = match &op {
                Op::Conv2d { input, weights, bias, output, params, .. } => {
                    let g = ConvGeometry::new(input, weights, bias.as_ref(), output, params)
                        .map_err(|e| unsupported(e.reason()))?;
                    let layout = match g.kind {
                        ConvKind::Dense => WLayout::Dense,
                        ConvKind::Depthwise { .. } => WLayout::Depthwise,
                        ConvKind::Grouped { groups } => {
                            return Err(unsupported(&format!(
                                "grouped conv with {groups} groups (only dense and depthwise)"
                            )))
                        }
                    };
                    (weights, bias, layout)
                }
                Op::FullyConnected { weights, bias, .. } => (weights, bias, WLayout::Linear),
                Op::Add { .. }
                | Op::Mul { .. }
                | Op::AvgPool2d { .. }
                | Op::MaxPool2d { .. }
                | Op::GlobalAvgPool { .. }
                | Op::Reshape { .. }
                | Op::Softmax { .. }
                | Op::Activation { .. } => {
                    ops.push(op);
                    continue;
                }
                Op::Lut { .. } | Op::Quantize { .. } | Op::Dequantize { .. } => {
                    return Err(GraphNetError::NotFloat(format!("op #{i} is an int8 {name}")))
                }
                Op::Concat { .. } | Op::LayerNorm { .. } | Op::MatMul { .. } | Op::Transpose { .. } => {
                    return Err(unsupported(
                        "no host implementation (Conv2d, FullyConnected, Add, Mul, pools, Reshape, Softmax, Activation are)",
                    ))
                }
            };
            let w = to_torch_layout(&constant(&m, weights, i, name)?, layout).contiguous().to_device(device);
            let wv = root.sub(format!("op{i}")).add("weight", w, true);
            let bv = match bias {
                Some(b) => {
                    Some(root.sub(format!("op{i}")).add("bias", constant(&m, b, i, name)?.to_device(device), true))
                }
                None => None,
            };
            params.insert(i, Param { weight: wv, bias: bv, layout, weight_t: *weights, bias_t: *bias });
            ops.push(op);
        }
        Ok(GraphNet { vs, ops, params, input: m.info.input, output: m.info.output, spec: m.info.input_spec })
    }

    pub fn input_spec(&self) -> &InputSpec {
        &self.spec
    }

    /// The graph input tensor's id (fake-quant parameters of the input are keyed by it).
    pub fn input_id(&self) -> u16 {
        self.input.id
    }

    /// The graph output tensor (shape and id).
    pub fn output_tensor(&self) -> &MTensor {
        &self.output
    }

    /// Every trainable parameter (conv/FC weights and biases).
    pub fn trainable(&self) -> Vec<Tensor> {
        self.vs.trainable_variables()
    }

    /// Runs the graph on NCHW input `[B, C, H, W]`; the output is NCHW when rank 4, else `[B, ..]`.
    pub fn forward(&self, x: &Tensor, fq: Option<&FakeQuant>) -> Result<Tensor, GraphNetError> {
        self.forward_observed(x, fq, &mut |_, _| {})
    }

    /// As [`forward`](Self::forward), calling `f(tensor_id, value)` for every op output (after its
    /// activation and fake-quant) and, for Lut-activation ops in fake-quant mode, nothing extra.
    pub fn forward_observed(
        &self,
        x: &Tensor,
        fq: Option<&FakeQuant>,
        f: &mut dyn FnMut(u16, &Tensor),
    ) -> Result<Tensor, GraphNetError> {
        let [_, h, w, c] = self.input.shape.nhwc();
        let s = x.size();
        if s.len() != 4 || s[1] != c as i64 || s[2] != h as i64 || s[3] != w as i64 {
            return Err(GraphNetError::BadInput(format!(
                "input of shape {s:?}, the model takes [B, {c}, {h}, {w}] (NCHW)"
            )));
        }
        let batch = s[0];
        let mut vals: HashMap<u16, Tensor> = HashMap::new();
        let x = x.to_kind(Kind::Float);
        let x = match fq.and_then(|q| q.act.get(&self.input.id)) {
            Some(&(s, z)) => fake_quant(&x, s, z, -128, 127),
            None => x,
        };
        // The runtime quantizes the input in f32 (above); the rest may run in f64.
        let x = if fq.is_some_and(|q| q.f64) { x.to_kind(Kind::Double) } else { x };
        vals.insert(self.input.id, x);
        for (i, op) in self.ops.iter().enumerate() {
            let get = |t: &MTensor| vals.get(&t.id).ok_or(GraphNetError::MissingValue { index: i, tensor: t.id });
            let name = op.name();
            let out_id = op.output().id;
            let mut exact: Option<Tensor> = None;
            let (y, act) = match op {
                Op::Conv2d { input, params, .. } => {
                    let x = get(input)?;
                    let (w, b) = self.qparams(i, input, fq);
                    let p = params.padding;
                    let x = if p.top != p.bottom || p.left != p.right {
                        x.constant_pad_nd([p.left as i64, p.right as i64, p.top as i64, p.bottom as i64])
                    } else {
                        x.shallow_clone()
                    };
                    let pad =
                        if p.top != p.bottom || p.left != p.right { [0, 0] } else { [p.top as i64, p.left as i64] };
                    let st = [params.stride[0] as i64, params.stride[1] as i64];
                    let di = [params.dilation[0] as i64, params.dilation[1] as i64];
                    let conv =
                        |x: &Tensor, w: &Tensor, b: Option<&Tensor>| x.conv2d(w, b, st, pad, di, params.groups as i64);
                    let y = conv(&x, &w, b.as_ref());
                    exact = self.exact_for(fq, &[input.id], out_id).map(|(st, s_in, out)| {
                        tch::no_grad(|| {
                            let (wi, bi) = self.int_params(i, s_in[0]);
                            requant_out(&conv(&to_int(&x, s_in[0]), &wi, bi.as_ref()), st, out)
                        })
                    });
                    (y, params.activation)
                }
                Op::FullyConnected { input, activation, .. } => {
                    let x = flat_nhwc(get(input)?);
                    let (w, b) = self.qparams(i, input, fq);
                    exact = self.exact_for(fq, &[input.id], out_id).map(|(st, s_in, out)| {
                        tch::no_grad(|| {
                            let (wi, bi) = self.int_params(i, s_in[0]);
                            requant_out(&to_int(&x, s_in[0]).linear(&wi, bi.as_ref()), st, out)
                        })
                    });
                    (x.linear(&w, b.as_ref()), *activation)
                }
                Op::Add { a, b, activation, .. } => {
                    let (a, b) = (get(a)?, get(b)?);
                    exact = self.exact_for(fq, &[op_in(op, 0), op_in(op, 1)], out_id).map(|(st, s_in, out)| {
                        tch::no_grad(|| match st {
                            ExactStage::Add(q) => add_exact(&to_int(a, s_in[0]), &to_int(b, s_in[1]), q, out),
                            _ => a + b,
                        })
                    });
                    (a + b, *activation)
                }
                Op::Mul { a, b, activation, .. } => {
                    let (a, b) = (get(a)?, get(b)?);
                    exact = self.exact_for(fq, &[op_in(op, 0), op_in(op, 1)], out_id).map(|(st, s_in, out)| {
                        tch::no_grad(|| match st {
                            ExactStage::Mul(q) => mul_exact(&to_int(a, s_in[0]), &to_int(b, s_in[1]), q, out),
                            _ => a * b,
                        })
                    });
                    (a * b, *activation)
                }
                Op::AvgPool2d { input, params, .. } | Op::MaxPool2d { input, params, .. } => {
                    let p = params.padding;
                    if p.top != p.bottom || p.left != p.right {
                        return Err(GraphNetError::Unsupported {
                            index: i,
                            op: name,
                            why: "asymmetric pool padding".into(),
                        });
                    }
                    let (k, st, pad) = (
                        [params.kernel[0] as i64, params.kernel[1] as i64],
                        [params.stride[0] as i64, params.stride[1] as i64],
                        [p.top as i64, p.left as i64],
                    );
                    let x = get(input)?;
                    // TFLite averages over in-bounds taps only: count_include_pad = false.
                    let y = if matches!(op, Op::MaxPool2d { .. }) {
                        x.max_pool2d(k, st, pad, [1, 1], false)
                    } else {
                        x.avg_pool2d(k, st, pad, false, false, None::<i64>)
                    };
                    (y, Activation::None)
                }
                Op::GlobalAvgPool { input, output, .. } => {
                    let x = get(input)?;
                    let y = x.mean_dim([2i64, 3].as_slice(), true, x.kind());
                    exact = self.exact_for(fq, &[input.id], out_id).map(|(st, s_in, out)| {
                        let in_zp = fq.and_then(|q| q.act.get(&input.id)).map_or(0, |v| v.1);
                        let e = tch::no_grad(|| mean_exact(&to_int(x, s_in[0]), st, in_zp, out));
                        unflat_nhwc(&flat_nhwc(&e), &output.shape, batch)
                    });
                    (unflat_nhwc(&flat_nhwc(&y), &output.shape, batch), Activation::None)
                }
                Op::Reshape { input, output } => {
                    (unflat_nhwc(&flat_nhwc(get(input)?), &output.shape, batch), Activation::None)
                }
                Op::Softmax { input, beta, .. } => {
                    let x = get(input)?;
                    let dim = if input.shape.rank == 4 { 1 } else { -1 };
                    ((x * *beta as f64).softmax(dim, x.kind()), Activation::None)
                }
                Op::Activation { input, activation, .. } => (get(input)?.shallow_clone(), *activation),
                // `from_rsm` refused these already.
                Op::Concat { .. }
                | Op::LayerNorm { .. }
                | Op::MatMul { .. }
                | Op::Transpose { .. }
                | Op::Lut { .. }
                | Op::Quantize { .. }
                | Op::Dequantize { .. } => {
                    return Err(GraphNetError::Unsupported { index: i, op: name, why: "not a float op".into() })
                }
            };
            let y = match fq.and_then(|q| q.pre_act.get(&out_id)) {
                Some(&(s, z)) if is_lut_activation(act) => {
                    // The int8 lookup table is built in f32 (quant::build_lut_i8): same here.
                    let kind = y.kind();
                    let p = fake_quant(&y, s, z, -128, 127);
                    let p = match &exact {
                        Some(e) => &p + (e - p.detach()),
                        None => p,
                    }
                    .to_kind(Kind::Float);
                    let a = apply_activation(&p, act);
                    let a = match fq.and_then(|q| q.act.get(&out_id)) {
                        Some(&(s, z)) => fake_quant(&a, s, z, -128, 127),
                        None => a,
                    };
                    let a = a.to_kind(kind);
                    f(out_id, &a);
                    vals.insert(out_id, a);
                    continue;
                }
                _ => y,
            };
            let y = apply_activation(&y, act);
            let y = match fq.and_then(|q| q.act.get(&out_id)) {
                Some(&(s, z)) => fake_quant(&y, s, z, -128, 127),
                None => y,
            };
            // Straight-through: the board's integer result forward, the float path's gradient.
            let y = match &exact {
                Some(e) => &y + (e - y.detach()),
                None => y,
            };
            f(out_id, &y);
            vals.insert(out_id, y);
        }
        vals.remove(&self.output.id)
            .ok_or(GraphNetError::MissingValue { index: self.ops.len(), tensor: self.output.id })
    }

    /// The exact stage of the op writing `out_id` with its input scales and output (scale, zp), when
    /// `fq` runs in f64 and knows them all (the output is the pre-activation for Lut ops).
    fn exact_for<'a>(
        &self,
        fq: Option<&'a FakeQuant>,
        inputs: &[u16],
        out_id: u16,
    ) -> Option<(&'a ExactStage, Vec<f32>, (f32, i32))> {
        let fq = fq.filter(|q| q.f64 && q.weights)?;
        let st = fq.exact.get(&out_id)?;
        let s_in = inputs.iter().map(|id| fq.act.get(id).map(|v| v.0)).collect::<Option<Vec<f32>>>()?;
        let out = *fq.pre_act.get(&out_id).or_else(|| fq.act.get(&out_id))?;
        Some((st, s_in, out))
    }

    /// Integer-valued (f64) weights and int32 bias of op `i` as ptq writes them (same divisions as
    /// [`qparams`](Self::qparams)), for exact accumulators.
    fn int_params(&self, i: usize, s_in: f32) -> (Tensor, Option<Tensor>) {
        let p = &self.params[&i];
        let o = p.weight.size()[0];
        let scales = weight_scales(&p.weight).to_kind(Kind::Double);
        let mut view = vec![o];
        view.extend(std::iter::repeat_n(1, p.weight.dim() - 1));
        let w = round_half_away(&(p.weight.detach().to_kind(Kind::Double) / scales.reshape(view.as_slice())))
            .clamp(-127.0, 127.0);
        let b = p.bias.as_ref().map(|b| {
            let m = i32::MAX as f64;
            round_half_away(&(b.detach().to_kind(Kind::Double) / (&scales * s_in as f64))).clamp(-m, m)
        });
        (w, b)
    }

    /// Weights and bias of op `i` for the forward pass, fake-quantized when `fq.weights`.
    fn qparams(&self, i: usize, input: &MTensor, fq: Option<&FakeQuant>) -> (Tensor, Option<Tensor>) {
        let p = &self.params[&i];
        let Some(fq) = fq.filter(|q| q.weights) else {
            return (p.weight.shallow_clone(), p.bias.as_ref().map(|b| b.shallow_clone()));
        };
        let o = p.weight.size()[0];
        // ptq divides by the scales in f64: so does this, then returns to f32 unless `fq.f64`.
        let kind = if fq.f64 { Kind::Double } else { Kind::Float };
        let scales = weight_scales(&p.weight).to_kind(Kind::Double);
        let mut view = vec![o];
        view.extend(std::iter::repeat_n(1, p.weight.dim() - 1));
        let sw = scales.reshape(view.as_slice());
        let w = fq_per_channel(&p.weight.to_kind(Kind::Double), &sw, 127).to_kind(kind);
        let b = p.bias.as_ref().map(|b| match fq.act.get(&input.id) {
            // int32 bias at scale s_in * s_w[c] (the range of int32 never clamps in practice).
            Some(&(s_in, _)) => {
                fq_per_channel(&b.to_kind(Kind::Double), &(&scales * s_in as f64), i32::MAX).to_kind(kind)
            }
            None => b.to_kind(kind),
        });
        (w, b)
    }

    /// The float model with this net's current weights and biases (same graph, same ids, new bytes;
    /// the stored dtype is kept and a test vector, now stale, is dropped).
    pub fn write_weights(&self, float_rsm: &[u8]) -> Result<Vec<u8>, GraphNetError> {
        let m = Model::parse(float_rsm).map_err(|e| GraphNetError::Model(e.to_string()))?;
        let mut blob = m.weights.to_vec();
        let mut put = |t: &MTensor, v: &Tensor| -> Result<(), GraphNetError> {
            let Storage::Weights { offset } = t.storage else {
                return Err(GraphNetError::Model(format!("tensor {} is not a constant", t.id)));
            };
            let kind = if t.dtype == DType::F16 { Kind::Half } else { Kind::Float };
            let v = v.detach().to_device(Device::Cpu).to_kind(kind).contiguous();
            let n = t.byte_len().unwrap_or(0);
            let mut bytes = vec![0u8; n];
            if v.numel() * t.dtype.size() != n {
                return Err(GraphNetError::Model(format!("tensor {} changed size", t.id)));
            }
            v.copy_data_u8(&mut bytes, v.numel());
            let dst = blob
                .get_mut(offset as usize..offset as usize + n)
                .ok_or(GraphNetError::Model(format!("tensor {} lies outside the weights", t.id)))?;
            dst.copy_from_slice(&bytes);
            Ok(())
        };
        for p in self.params.values() {
            put(&p.weight_t, &to_model_layout(&p.weight, p.layout))?;
            if let (Some(bt), Some(b)) = (&p.bias_t, &p.bias) {
                put(bt, b)?;
            }
        }
        let ops: Vec<Op> = m.ops().collect::<Result<_, _>>().map_err(|e| GraphNetError::Model(e.to_string()))?;
        Ok(rsim_model::write::encode(&m.info, &ops, &blob, None))
    }
}

/// Symmetric per-channel fake-quant with scales broadcastable to `w`; straight-through gradient.
fn fq_per_channel(w: &Tensor, scales: &Tensor, qmax: i32) -> Tensor {
    let y = tch::no_grad(|| round_half_away(&(w / scales)).clamp(-(qmax as f64), qmax as f64) * scales);
    if w.requires_grad() {
        y + (w - w.detach())
    } else {
        y
    }
}

fn is_lut_activation(a: Activation) -> bool {
    matches!(a, Activation::HardSwish | Activation::HardSigmoid | Activation::Sigmoid | Activation::Gelu)
}

/// The runtime's activation formulas (edge-runtime kernels/float/act.rs), in the same operation order.
fn apply_activation(x: &Tensor, a: Activation) -> Tensor {
    match a {
        Activation::None => x.shallow_clone(),
        Activation::Relu => x.relu(),
        Activation::Relu6 => x.clamp(0.0, 6.0),
        Activation::HardSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        Activation::HardSigmoid => (x + 3.0).clamp(0.0, 6.0) / 6.0,
        Activation::Sigmoid => x.sigmoid(),
        Activation::Gelu => x.gelu("none"),
    }
}

/// `[B, ..]` in the runtime's element order (NHWC for rank-4 values) as `[B, n]`.
pub fn flat_nhwc(x: &Tensor) -> Tensor {
    let b = x.size()[0];
    if x.dim() == 4 {
        x.permute([0, 2, 3, 1]).reshape([b, -1])
    } else {
        x.reshape([b, -1])
    }
}

/// `[B, n]` in runtime order to this interpreter's layout for a model tensor of `shape`.
fn unflat_nhwc(x: &Tensor, shape: &Shape, batch: i64) -> Tensor {
    let d = shape.dims();
    let mut s: Vec<i64> = vec![batch];
    s.extend(d.iter().skip(1).map(|&v| v as i64));
    let y = x.reshape(s.as_slice());
    if d.len() == 4 {
        y.permute([0, 3, 1, 2])
    } else {
        y
    }
}

/// Id of input `k` of a two-input op (Add/Mul).
fn op_in(op: &Op, k: usize) -> u16 {
    match op {
        Op::Add { a, b, .. } | Op::Mul { a, b, .. } => {
            if k == 0 {
                a.id
            } else {
                b.id
            }
        }
        other => other.output().id,
    }
}
