//! int8 ops as a QDQ graph (the form ONNX Runtime's quantizer writes): every int8 activation is a
//! QuantizeLinear output `q<id>` (ONNX layout) with its per-tensor scale and zero point, read by
//! consumers through one DequantizeLinear `t<id>_dq`; each op runs in float between them. Weights
//! are int8 initializers with a per-channel DequantizeLinear (axis = output channel), biases int32
//! initializers dequantized at `s_in * s_w[c]` with zero point 0. Requant clamps become Relu/Clip
//! before the QuantizeLinear; a `Lut` becomes the float activation whose table it is.

use super::lower::{dims_i64, is4, Writer};
use super::proto::*;
use super::OnnxError;
use crate::graph::*;
use crate::quant::{build_lut_i8, dequantize_i8};
use tract_onnx::pb::tensor_proto::DataType;

/// Whether `op` is an int8 op: it touches an int8 activation or is one of the int8-only ops.
pub(super) fn is_int8(op: &Op) -> bool {
    let mut any = matches!(op, Op::Lut { .. } | Op::Quantize { .. } | Op::Dequantize { .. });
    op.for_each_tensor(|t| any |= matches!(t.storage, Storage::Arena { .. }) && t.dtype == DType::I8);
    any
}

/// The float op an int8 op computes, and the clamp of its output in the int8 domain, if any.
fn float_form(op: &Op) -> (Op, Option<(i32, i32)>) {
    let stage = |r: &Option<Requant>| r.map(|r| (r.act_min, r.act_max));
    match *op {
        Op::Conv2d { input, weights, bias, output, mut params, requant } => {
            params.activation = Activation::None; // int8 graphs clamp in the requant stage instead
            (Op::Conv2d { input, weights, bias, output, params, requant: None }, stage(&requant))
        }
        Op::FullyConnected { input, weights, bias, output, requant, .. } => (
            Op::FullyConnected { input, weights, bias, output, activation: Activation::None, requant: None },
            stage(&requant),
        ),
        Op::Add { a, b, output, quant, .. } => {
            (Op::Add { a, b, output, activation: Activation::None, quant: None }, quant.map(|q| (q.act_min, q.act_max)))
        }
        Op::Mul { a, b, output, quant, .. } => {
            (Op::Mul { a, b, output, activation: Activation::None, quant: None }, quant.map(|q| (q.act_min, q.act_max)))
        }
        Op::AvgPool2d { act_min, act_max, .. } | Op::MaxPool2d { act_min, act_max, .. } => {
            (*op, Some((act_min, act_max)))
        }
        Op::GlobalAvgPool { input, output, requant } => {
            (Op::GlobalAvgPool { input, output, requant: None }, stage(&requant))
        }
        Op::Softmax { input, output, beta, .. } => (Op::Softmax { input, output, beta, quant: None }, None),
        // No int8-only parameters: the op is its own float form.
        Op::Reshape { .. }
        | Op::Concat { .. }
        | Op::LayerNorm { .. }
        | Op::MatMul { .. }
        | Op::Transpose { .. }
        | Op::Activation { .. }
        | Op::Lut { .. }
        | Op::Quantize { .. }
        | Op::Dequantize { .. } => (*op, None),
    }
}

/// The int8 functions a `Lut` may tabulate, in the order they are tried (ptq's formulas, f32).
const LUT_FUNCTIONS: [(Activation, fn(f32) -> f32); 6] = [
    (Activation::HardSwish, |x| x * (x + 3.0).clamp(0.0, 6.0) / 6.0),
    (Activation::HardSigmoid, |x| (x + 3.0).clamp(0.0, 6.0) / 6.0),
    (Activation::Sigmoid, |x| 1.0 / (1.0 + (-x).exp())),
    (Activation::Relu, |x| x.max(0.0)),
    (Activation::Relu6, |x| x.clamp(0.0, 6.0)),
    (Activation::None, |x| x),
];

/// The activation whose int8 table `table` is (every entry within one step of the table rebuilt
/// from the input and output quantization; the closest wins), if any.
pub fn identify_lut(table: &[u8], in_q: (f32, i32), out_q: (f32, i32)) -> Option<Activation> {
    let mut best: Option<(Activation, i32)> = None;
    for (act, f) in LUT_FUNCTIONS {
        let rebuilt = build_lut_i8(in_q.0, in_q.1, out_q.0, out_q.1, f);
        let diffs = rebuilt.iter().zip(table).map(|(&a, &b)| (a as i8 as i32 - b as i8 as i32).abs());
        let (max, sum) = diffs.fold((0, 0), |(m, s), d| (m.max(d), s + d));
        if table.len() == 256 && max <= 1 && best.is_none_or(|(_, s)| sum < s) {
            best = Some((act, sum));
        }
    }
    best.map(|(a, _)| a)
}

impl Writer<'_, '_> {
    /// (scale, zero point) of a per-tensor int8 tensor, checked.
    fn per_tensor(&self, t: &Tensor) -> Result<(f32, i8), OnnxError> {
        match t.quant {
            Quant::PerTensor { scale, zero_point } if scale.is_finite() && scale > 0.0 => i8::try_from(zero_point)
                .map(|z| (scale, z))
                .map_err(|_| self.err(format!("tensor {} has zero point {zero_point} outside int8", t.id))),
            q => {
                Err(self
                    .err(format!("int8 activation {} needs a per-tensor scale > 0 and zero point, has {q:?}", t.id)))
            }
        }
    }

    /// Initializers holding `t`'s scale and zero point.
    fn qparams(&mut self, t: &Tensor) -> Result<(String, String), OnnxError> {
        let (s, z) = self.per_tensor(t)?;
        let (sn, zn) = (format!("qs{}", t.id), format!("qz{}", t.id));
        if self.consts.insert(sn.clone()) {
            self.inits.push(tensor_f32(&sn, &[], &[s]));
            self.inits.push(tensor_i8(&zn, &[], &[z]));
        }
        Ok((sn, zn))
    }

    /// Makes `q` (int8, ONNX layout) the value of `t` and its DequantizeLinear what consumers read.
    fn dequantize_from(&mut self, q: &str, t: &Tensor) -> Result<(), OnnxError> {
        let (s, z) = self.qparams(t)?;
        let dq = format!("t{}_dq", t.id);
        self.push("DequantizeLinear", &[q, &s, &z], &dq, vec![]);
        self.reads.insert(t.id, dq);
        Ok(())
    }

    /// QuantizeLinear of the float value `x` onto `t`'s grid, as `q<id>`.
    fn quantize_to(&mut self, x: &str, t: &Tensor) -> Result<(), OnnxError> {
        if t.dtype != DType::I8 || !matches!(t.storage, Storage::Arena { .. }) {
            return Err(
                self.err(format!("op output {} is {:?}; an int8 op must write an int8 activation", t.id, t.dtype))
            );
        }
        let (s, z) = self.qparams(t)?;
        let q = format!("q{}", t.id);
        self.push("QuantizeLinear", &[x, &s, &z], &q, vec![]);
        self.dequantize_from(&q, t)
    }

    /// The int8 graph input `input` (NHWC) as `q<id>` in ONNX layout.
    pub(super) fn qdq_input(&mut self, t: &Tensor) -> Result<(), OnnxError> {
        let q = format!("q{}", t.id);
        if is4(t) {
            self.push("Transpose", &["input"], &q, vec![attr_ints("perm", &[0, 3, 1, 2])]);
        } else {
            self.push("Identity", &["input"], &q, vec![]);
        }
        self.dequantize_from(&q, t)
    }

    /// The int8 graph output `output` (NHWC) from `q<id>`.
    pub(super) fn qdq_output(&mut self, t: &Tensor) -> Result<(), OnnxError> {
        if !self.reads.contains_key(&t.id) {
            return Err(self.err(format!("no op writes the int8 graph output {}", t.id)));
        }
        let q = format!("q{}", t.id);
        if is4(t) {
            self.push("Transpose", &[&q], "output", vec![attr_ints("perm", &[0, 2, 3, 1])]);
        } else {
            self.push("Identity", &[&q], "output", vec![]);
        }
        Ok(())
    }

    /// An int8 op: its float form between DequantizeLinear and QuantizeLinear.
    pub(super) fn qdq_op(&mut self, op: &Op) -> Result<(), OnnxError> {
        match *op {
            Op::Lut { input, output, table } => return self.lut(&input, &output, table),
            Op::Quantize { input, output } => {
                let x = self.onnx(&input)?;
                return self.quantize_to(&x, &output);
            }
            Op::Dequantize { input, output } => {
                let (x, out) = (self.onnx(&input)?, self.onnx(&output)?);
                self.push("Identity", &[&x], &out, vec![]);
                return Ok(());
            }
            Op::GlobalAvgPool { input, output, requant: None } if is4(&input) => {
                return self.integer_mean(&input, &output)
            }
            Op::Softmax { input, output, beta, .. } => return self.softmax(&input, &output, beta),
            Op::LayerNorm { .. } | Op::MatMul { .. } | Op::Activation { .. } => {
                return Err(self.err(format!(
                "{} has no int8 form in the QDQ export (int8 graphs take Conv2d, FullyConnected, Add, Mul, AvgPool2d, \
                     MaxPool2d, GlobalAvgPool, Reshape, Softmax, Concat, Transpose, Lut, Quantize, Dequantize)",
                op.name()
            )))
            }
            // The float form between DequantizeLinear and QuantizeLinear, below.
            Op::Conv2d { .. }
            | Op::FullyConnected { .. }
            | Op::Add { .. }
            | Op::Mul { .. }
            | Op::AvgPool2d { .. }
            | Op::MaxPool2d { .. }
            | Op::GlobalAvgPool { .. }
            | Op::Reshape { .. }
            | Op::Concat { .. }
            | Op::Transpose { .. } => {}
        }
        let (float_op, clamp) = float_form(op);
        self.float_op(&float_op)?;
        let out = *op.output();
        let mut x = format!("t{}", out.id); // what the float op wrote (`onnx(out)` before quantization)
        if let Some((lo, hi)) = clamp {
            x = self.clamp(&x, &out, lo, hi)?;
        }
        self.quantize_to(&x, &out)
    }

    /// TFLM's MEAN with equal input and output quantization (no requant stage): the raw int8 sum over
    /// H and W divided by the count, truncating toward zero, where a float mean would round. Written
    /// as integer ops so the export gives the runtime's values: Cast, ReduceSum, Div (int32 Div
    /// truncates in ONNX Runtime and tract), Cast.
    fn integer_mean(&mut self, input: &Tensor, output: &Tensor) -> Result<(), OnnxError> {
        if input.quant != output.quant {
            return Err(self.err("int8 mean without a requant stage needs equal input and output quantization"));
        }
        let [_, h, w, _] = input.shape.nhwc();
        let count = i32::try_from(h * w).map_err(|_| self.err("mean over more than 2^31 values"))?;
        let (axes, div) = (format!("mean_axes_{}", output.id), format!("mean_count_{}", output.id));
        self.inits.push(tensor_i64(&axes, &[2, 3]));
        self.inits.push(tensor_i32(&div, &[], &[count]));
        let (wide, sum, mean, q) = (self.fresh(), self.fresh(), self.fresh(), format!("q{}", output.id));
        self.push("Cast", &[&format!("q{}", input.id)], &wide, vec![attr_int("to", DataType::Int32 as i64)]);
        self.push("ReduceSum", &[&wide, &axes], &sum, vec![attr_int("keepdims", 1)]);
        self.push("Div", &[&sum, &div], &mean, vec![]);
        self.push("Cast", &[&mean], &q, vec![attr_int("to", DataType::Int8 as i64)]);
        self.dequantize_from(&q, output)
    }

    /// Softmax of `x - max(x)` (the same values). The shift gives the DequantizeLinear a second
    /// consumer: tract 0.23.9 folds a single-consumer chain DequantizeLinear -> Softmax ->
    /// QuantizeLinear into a 256-entry lookup table (its Softmax reports an element-wise axes
    /// mapping), which computes nonsense.
    fn softmax(&mut self, input: &Tensor, output: &Tensor, beta: f32) -> Result<(), OnnxError> {
        let x = self.onnx(input)?;
        let axis = if is4(input) { 1 } else { -1 };
        let (max, mut z) = (self.fresh(), self.fresh());
        self.push("ReduceMax", &[&x], &max, vec![attr_ints("axes", &[axis]), attr_int("keepdims", 1)]);
        self.push("Sub", &[&x, &max], &z, vec![]);
        if beta != 1.0 {
            let (b, scaled) = (self.scalar(beta), self.fresh());
            self.push("Mul", &[&z, &b], &scaled, vec![]);
            z = scaled;
        }
        let y = self.fresh();
        self.push("Softmax", &[&z], &y, vec![attr_int("axis", axis)]);
        self.quantize_to(&y, output)
    }

    /// Relu or Clip of `x` to the int8 range [lo, hi] of `t` (nothing when it is the full range).
    fn clamp(&mut self, x: &str, t: &Tensor, lo: i32, hi: i32) -> Result<String, OnnxError> {
        let (s, z) = self.per_tensor(t)?;
        let (lo, hi) = (lo.max(-128), hi.min(127));
        if lo > hi {
            return Err(self.err(format!("clamp range [{lo}, {hi}] of tensor {} is empty", t.id)));
        }
        if lo == -128 && hi == 127 {
            return Ok(x.to_string());
        }
        let out = self.fresh();
        if hi == 127 && lo == z as i32 {
            self.push("Relu", &[x], &out, vec![]);
        } else {
            // Exactly representable grid points, so QuantizeLinear lands on lo and hi themselves.
            let lo_f = self.scalar(dequantize_i8(lo as i8, s, z as i32));
            let hi_f = self.scalar(dequantize_i8(hi as i8, s, z as i32));
            self.push("Clip", &[x, &lo_f, &hi_f], &out, vec![]);
        }
        Ok(out)
    }

    /// A lookup table: the float activation it tabulates, or (a table of no known function) the
    /// table itself as an int8 Gather, exact either way up to rounding ties.
    fn lut(&mut self, input: &Tensor, output: &Tensor, table: Blob) -> Result<(), OnnxError> {
        let bytes = self.model.blob(table).filter(|b| b.len() == 256);
        let bytes = bytes
            .ok_or_else(|| self.err(format!("lookup table of tensor {} is not 256 bytes in the weights", output.id)))?;
        let (si, zi) = self.per_tensor(input)?;
        let (so, zo) = self.per_tensor(output)?;
        if let Some(act) = identify_lut(bytes, (si, zi as i32), (so, zo as i32)) {
            let (x, y) = (self.onnx(input)?, self.fresh());
            self.activation(&x, act, &y);
            return self.quantize_to(&y, output);
        }
        let tname = format!("lut{}", output.id);
        self.inits.push(tensor_i8(&tname, &[256], &bytes.iter().map(|&b| b as i8).collect::<Vec<_>>()));
        let (wide, idx, q) = (self.fresh(), self.fresh(), format!("q{}", output.id));
        let offset = format!("lut{}_offset", output.id);
        self.inits.push(tensor_i32(&offset, &[], &[128]));
        self.push("Cast", &[&format!("q{}", input.id)], &wide, vec![attr_int("to", DataType::Int32 as i64)]);
        self.push("Add", &[&wide, &offset], &idx, vec![]);
        self.push("Gather", &[&tname, &idx], &q, vec![attr_int("axis", 0)]);
        self.dequantize_from(&q, output)
    }

    /// Per-output-channel scales of an int8 weight tensor (one entry for per-tensor weights).
    fn weight_scales(&self, w: &Tensor) -> Result<(Vec<f32>, i64), OnnxError> {
        match w.quant {
            Quant::PerChannel { axis, scales } => {
                let b = self
                    .model
                    .blob(scales)
                    .ok_or_else(|| self.err(format!("scales of weights {} are outside the weights", w.id)))?;
                Ok((b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(), axis as i64))
            }
            Quant::PerTensor { scale, zero_point: 0 } => Ok((vec![scale], 0)),
            q => Err(self.err(format!("int8 weights {} need symmetric quantization, have {q:?}", w.id))),
        }
    }

    /// int8 values of a constant.
    pub(super) fn const_i8(&self, t: &Tensor) -> Result<Vec<i8>, OnnxError> {
        let b = self.model.const_bytes(t).filter(|_| t.dtype == DType::I8);
        Ok(b.ok_or_else(|| self.err(format!("tensor {} is not a readable int8 constant", t.id)))?
            .iter()
            .map(|&v| v as i8)
            .collect())
    }

    /// `data` (dims `dims`, int8 values of the weights `w`) as an initializer and its
    /// DequantizeLinear along `axis` (the output channel in `dims`); returns the float name.
    pub(super) fn int8_const(
        &mut self,
        name: &str,
        dims: &[i64],
        data: &[i8],
        w: &Tensor,
        axis: i64,
    ) -> Result<String, OnnxError> {
        let dq = format!("{name}_dq");
        if !self.consts.insert(dq.clone()) {
            return Ok(dq);
        }
        let (scales, _) = self.weight_scales(w)?;
        let channels = usize::try_from(axis).ok().and_then(|a| dims.get(a)).copied().unwrap_or(-1);
        if scales.len() != 1 && scales.len() as i64 != channels {
            return Err(self.err(format!("weights {} have {} scales for {channels} channels", w.id, scales.len())));
        }
        let (sn, zn) = (format!("{name}_scale"), format!("{name}_zp"));
        let sdims: &[i64] = if scales.len() == 1 { &[] } else { &[channels] };
        self.inits.push(tensor_i8(name, dims, data));
        self.inits.push(tensor_f32(&sn, sdims, &scales));
        self.inits.push(tensor_i8(&zn, sdims, &vec![0; scales.len()]));
        self.push("DequantizeLinear", &[name, &sn, &zn], &dq, vec![attr_int("axis", axis)]);
        Ok(dq)
    }

    /// An int8 constant in its `.rsm` layout (e.g. fully-connected [out, in] weights), dequantized.
    pub(super) fn const_dq(&mut self, t: &Tensor) -> Result<String, OnnxError> {
        let data = self.const_i8(t)?;
        let (_, axis) = self.weight_scales(t)?;
        self.int8_const(&format!("c{}", t.id), &dims_i64(t), &data, t, axis)
    }

    /// A conv/FC bias: float as it is; int32 dequantized at `s_in * s_w[c]`, zero point 0.
    pub(super) fn bias(&mut self, b: &Tensor, input: &Tensor, weights: &Tensor) -> Result<String, OnnxError> {
        if b.dtype != DType::I32 {
            return self.nhwc(b);
        }
        let (s_in, _) = self.per_tensor(input)?;
        let (ws, _) = self.weight_scales(weights)?;
        let vals: Vec<i32> = match self.model.const_bytes(b) {
            Some(bytes) => bytes.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            None => return Err(self.err(format!("bias {} is not a readable constant", b.id))),
        };
        let scales: Vec<f32> =
            (0..vals.len()).map(|c| s_in * ws.get(c).or(ws.first()).copied().unwrap_or(1.0)).collect();
        if ws.len() != 1 && ws.len() != vals.len() {
            return Err(self.err(format!("bias {} has {} values for {} weight scales", b.id, vals.len(), ws.len())));
        }
        let (name, dq) = (format!("b{}", b.id), format!("b{}_dq", b.id));
        if self.consts.insert(dq.clone()) {
            let n = vals.len() as i64;
            self.inits.push(tensor_i32(&name, &[n], &vals));
            self.inits.push(tensor_f32(&format!("{name}_scale"), &[n], &scales));
            self.inits.push(tensor_i32(&format!("{name}_zp"), &[n], &vec![0; vals.len()]));
            self.push(
                "DequantizeLinear",
                &[&name, &format!("{name}_scale"), &format!("{name}_zp")],
                &dq,
                vec![attr_int("axis", 0)],
            );
        }
        Ok(dq)
    }
}
