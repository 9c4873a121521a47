//! Post-training quantization (std): a float `.rsm` (f32 or f16 weights) -> a full-int8 `.rsm` with
//! TFLite's arithmetic (DESIGN.md "int8 arithmetic"), and f32 -> f16 weights.
//!
//! - Weights: symmetric int8 per output channel ([`weight_scales`]; depthwise 1HW(C*M) weights use
//!   [`depthwise_weight_scales`], channel innermost). Bias: int32 `round(b / (s_in * s_w[c]))`.
//! - Activations: asymmetric int8 per tensor from observed float ranges ([`activation_qparams`]),
//!   keyed by the FLOAT model's tensor ids. The graph input takes the exact range of the input spec
//!   (every pixel 0..255 after normalization), so it needs no observed range.
//! - Fused Relu/Relu6 become the requant clamp. Other fused activations (HardSwish, HardSigmoid,
//!   Sigmoid) are split off into a 256-entry `Lut` op; the tensor between the producer and the Lut
//!   is new. [`calibration_model`] makes that split in float, with the same new ids, so calibration
//!   observes those pre-activation tensors too: calibrate on `calibration_model(f)`, quantize `f`.
//!   New ids are `1 + the largest id in the model`, counting up in op order.
//! - Pools and Reshape keep their input's quantization (TFLite requires it); Softmax outputs 1/256, -128.
//!
//! Every int8 activation keeps its float tensor id, so a host fake-quant simulation maps onto it by id.

mod lower;
mod split;

use crate::format::Model;
use crate::graph::*;
use crate::write::{encode, WeightsBuilder};
use std::fmt;

pub use split::calibration_model;

/// Observed float range (min, max) of activation tensors, keyed by the FLOAT model's tensor id.
pub type Ranges = std::collections::BTreeMap<u16, (f32, f32)>;

/// What went wrong quantizing a model. Nothing is written on error.
#[derive(Clone, Debug, PartialEq)]
pub enum PtqError {
    /// The float model bytes do not decode or validate.
    Model(crate::ModelError),
    /// The model is not a float model (it already has int8 activations or f16 activations).
    NotFloat { reason: String },
    /// Op number `index` (`op` names it) has no int8 lowering here.
    Unsupported { op: String, index: usize },
    /// No observed range for activation `tensor`, written by op `index`.
    MissingRange { tensor: u16, index: usize },
    /// The range of `tensor` is not two finite numbers with min <= max.
    BadRange { tensor: u16, min: f32, max: f32 },
    /// A scale combination TFLite's multipliers cannot express (the text says which).
    Quant { index: usize, op: String, reason: String },
    /// The arena planner refused the graph.
    Plan(String),
}

impl fmt::Display for PtqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PtqError::Model(e) => write!(f, "float model does not load: {e}"),
            PtqError::NotFloat { reason } => write!(f, "not a float model: {reason}"),
            PtqError::Unsupported { op, index } => write!(
                f,
                "op #{index} ({op}) cannot be quantized to int8 (supported: Conv2d, FullyConnected, Add, Mul, pools, \
                 GlobalAvgPool, Reshape, Softmax, Concat, Relu/Relu6/HardSwish/HardSigmoid/Sigmoid activations)"
            ),
            PtqError::MissingRange { tensor, index } => {
                write!(f, "no calibration range for tensor {tensor} (output of op #{index}); calibrate on ptq::calibration_model")
            }
            PtqError::BadRange { tensor, min, max } => {
                write!(f, "calibration range of tensor {tensor} is [{min}, {max}]: need finite min <= max (did the float model produce NaN/inf?)")
            }
            PtqError::Quant { index, op, reason } => write!(f, "op #{index} ({op}): {reason}"),
            PtqError::Plan(e) => write!(f, "arena planning failed: {e}"),
        }
    }
}

impl std::error::Error for PtqError {}

impl From<crate::ModelError> for PtqError {
    fn from(e: crate::ModelError) -> Self {
        PtqError::Model(e)
    }
}

/// Options for [`quantize_model`]. Unset strings keep the float model's values.
#[derive(Clone, Debug, Default)]
pub struct PtqOptions {
    /// Model name (default: the float name + "-int8").
    pub name: Option<String>,
    /// Calibrator label for the provenance method (`<float method>+ptq:<calibrator>`), e.g. "mse".
    pub calibrator: String,
    /// Calibration data description for provenance `data` (default: the float model's).
    pub data: Option<String>,
    /// Commit of the tool (default: the float model's).
    pub commit: Option<String>,
    /// Host metrics JSON for the int8 model (default: empty; the float model's metrics do not apply).
    pub metrics: String,
    /// Empirical bias correction (Nagel et al. 2019, "Data-Free Quantization", sec. 4.2): for the
    /// conv/FC whose output tensor has this id, per-output-channel float amounts subtracted from its
    /// bias before quantization (the mean int8-minus-float output seen on calibration images).
    /// Ops without a bias are left as they are.
    pub bias_correction: std::collections::BTreeMap<u16, Vec<f32>>,
}

/// TFLite's asymmetric int8 (scale, zero_point) for a range: widened to include 0, zero point from
/// whichever end has the smaller error, rounded and nudged into [-128, 127]
/// (`ChooseQuantizationParams`). A degenerate range (all zeros) gets a tiny positive scale.
pub fn activation_qparams(min: f32, max: f32) -> (f32, i32) {
    let (qmin, qmax) = (-128.0f64, 127.0f64);
    let rmin = (min.min(0.0)) as f64;
    let mut rmax = (max.max(0.0)) as f64;
    if rmax - rmin < 1e-9 {
        rmax = rmin + 1e-3; // all-zero tensor: any scale represents it; keep multipliers tame
    }
    let scale = (rmax - rmin) / (qmax - qmin);
    let zp_from_min = qmin - rmin / scale;
    let zp_from_max = qmax - rmax / scale;
    let err_min = qmin.abs() + (rmin / scale).abs();
    let err_max = qmax.abs() + (rmax / scale).abs();
    let zp = if err_min < err_max { zp_from_min } else { zp_from_max };
    let nudged = crate::quant::round_half_away_f64(zp).clamp(qmin, qmax) as i32;
    (scale as f32, nudged)
}

/// Smallest weight scale: a zero channel gets this (its weights quantize to 0 whatever the scale).
pub const MIN_WEIGHT_SCALE: f32 = 1e-12;

/// Symmetric per-output-channel scales `max|w| / 127` for row-major weights with the output channel
/// outermost (conv OHWI, FC [out, in]). Zero channels get [`MIN_WEIGHT_SCALE`].
pub fn weight_scales(weights: &[f32], out_channels: usize) -> Vec<f32> {
    let per = weights.len() / out_channels.max(1);
    (0..out_channels).map(|c| scale_of(weights.get(c * per..(c + 1) * per).unwrap_or(&[]).iter().copied())).collect()
}

/// As [`weight_scales`] for weights with the output channel innermost (depthwise 1HW(C*M)):
/// channel `c` is every `out_channels`-th value starting at `c`.
pub fn depthwise_weight_scales(weights: &[f32], out_channels: usize) -> Vec<f32> {
    (0..out_channels).map(|c| scale_of(weights.iter().skip(c).step_by(out_channels.max(1)).copied())).collect()
}

fn scale_of(vals: impl Iterator<Item = f32>) -> f32 {
    let m = vals.fold(0f32, |m, v| m.max(v.abs()));
    (m / 127.0).max(MIN_WEIGHT_SCALE)
}

/// Converts a float model to full int8 with per-tensor activation ranges from `ranges` (keyed by
/// the float tensor ids, pre-activation tensors by [`calibration_model`]'s ids). Re-plans the arena.
/// No test vector is written (this crate cannot run the model).
pub fn quantize_model(float_rsm: &[u8], ranges: &Ranges, opts: &PtqOptions) -> Result<Vec<u8>, PtqError> {
    let model = Model::parse(float_rsm)?;
    split::check_float(&model)?;
    let ops = split::split_fused(&model)?;
    let mut q = lower::Quantizer::new(&model, ranges);
    q.bias_correction = &opts.bias_correction;
    let mut out_ops = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        out_ops.push(q.lower(i, op)?);
    }
    let mut input = q.activation(&model.info.input, usize::MAX)?;
    let mut output = q.activation(&model.info.output, ops.len())?;
    let plan = crate::plan::plan(&mut out_ops, &mut input, &mut output).map_err(|e| PtqError::Plan(e.to_string()))?;

    let fp = model.info.provenance;
    let name = opts.name.clone().unwrap_or_else(|| format!("{}-int8", model.info.name));
    let cal = if opts.calibrator.is_empty() { "minmax" } else { &opts.calibrator };
    let method = if fp.method.is_empty() { format!("ptq:{cal}") } else { format!("{}+ptq:{cal}", fp.method) };
    let data = opts.data.clone().unwrap_or_else(|| fp.data.to_string());
    let commit = opts.commit.clone().unwrap_or_else(|| fp.commit.to_string());
    let info = ModelInfo {
        name: &name,
        input,
        output,
        arena_size: u32::try_from(plan.arena_size).map_err(|_| PtqError::Plan("arena above 4 GiB".into()))?,
        op_count: 0,
        provenance: Provenance { method: &method, data: &data, commit: &commit, metrics: &opts.metrics },
        ..model.info
    };
    Ok(encode(&info, &out_ops, &q.weights.bytes, None))
}

/// The same float graph with conv and fully-connected weights stored as F16 (biases and other
/// constants stay F32, as `graph_builder` writes them). Arena and activations are unchanged.
pub fn to_f16(float_rsm: &[u8]) -> Result<Vec<u8>, PtqError> {
    let model = Model::parse(float_rsm)?;
    split::check_float(&model)?;
    let mut wb = WeightsBuilder::default();
    let mut ops = Vec::new();
    for (i, op) in model.ops().enumerate() {
        let mut op = op?;
        let is_weighted = has_weights(&op);
        let mut err = None;
        let mut k = 0usize;
        op.for_each_tensor_mut(|t| {
            let first_const = k == 1; // conv/FC: input, weights, ...
            k += 1;
            if !matches!(t.storage, Storage::Weights { .. }) || err.is_some() {
                return;
            }
            match copy_const(&model, t, is_weighted && first_const, &mut wb) {
                Ok(n) => *t = n,
                Err(e) => err = Some(e),
            }
        });
        if let Some(()) = err {
            return Err(PtqError::Unsupported { op: op.name().to_string(), index: i });
        }
        ops.push(op);
    }
    let (name, method) = (format!("{}-f16", model.info.name), format!("{}+f16", model.info.provenance.method));
    let info =
        ModelInfo { name: &name, provenance: Provenance { method: &method, ..model.info.provenance }, ..model.info };
    Ok(encode(&info, &ops, &wb.bytes, None))
}

/// Whether the op's second tensor (`for_each_tensor` order) is a weight matrix that `to_f16` halves.
/// Exhaustive: a new op with weights must be listed.
fn has_weights(op: &Op) -> bool {
    match op {
        Op::Conv2d { .. } | Op::FullyConnected { .. } => true,
        Op::Add { .. }
        | Op::Mul { .. }
        | Op::AvgPool2d { .. }
        | Op::MaxPool2d { .. }
        | Op::GlobalAvgPool { .. }
        | Op::Reshape { .. }
        | Op::Softmax { .. }
        | Op::Concat { .. }
        | Op::LayerNorm { .. }
        | Op::MatMul { .. }
        | Op::Transpose { .. }
        | Op::Activation { .. }
        | Op::Lut { .. }
        | Op::Quantize { .. }
        | Op::Dequantize { .. } => false,
    }
}

/// Copies one constant into `wb`, as F16 when `to_half` and it is F32. `Err(())` when it is not
/// a plain float/int constant (per-channel quantized constants have no float meaning here).
fn copy_const(model: &Model<'_>, t: &Tensor, to_half: bool, wb: &mut WeightsBuilder) -> Result<Tensor, ()> {
    let bytes = model.const_bytes(t).ok_or(())?;
    if !matches!(t.quant, Quant::None) {
        return Err(());
    }
    let dims = t.shape.dims().to_vec();
    if to_half && t.dtype == DType::F32 {
        let h: Vec<u8> = bytes
            .chunks_exact(4)
            .flat_map(|c| half::f16::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]])).to_le_bytes())
            .collect();
        Ok(wb.tensor(t.id, DType::F16, &dims, &h, Quant::None))
    } else {
        Ok(wb.tensor(t.id, t.dtype, &dims, bytes, Quant::None))
    }
}

/// f32 values of a float constant (F32 or F16), `None` when it is not one.
pub(crate) fn const_f32(model: &Model<'_>, t: &Tensor) -> Option<Vec<f32>> {
    let b = model.const_bytes(t)?;
    match t.dtype {
        DType::F32 => Some(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
        DType::F16 => Some(b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qparams_follow_tflite() {
        // [0, 2.55]: scale 0.01, zero point at qmin.
        let (s, z) = activation_qparams(0.0, 2.55);
        assert!((s - 0.01).abs() < 1e-7 && z == -128, "{s} {z}");
        // Symmetric [-1.28, 1.27]: scale 0.01, zero point 0.
        let (s, z) = activation_qparams(-1.28, 1.27);
        assert!((s - 0.01).abs() < 1e-7 && z == 0, "{s} {z}");
        // A range away from zero is widened to include it: [1, 2] -> [0, 2].
        let (s, z) = activation_qparams(1.0, 2.0);
        assert!((s - 2.0 / 255.0).abs() < 1e-7 && z == -128);
        // Negative-only: zero point at qmax.
        assert_eq!(activation_qparams(-2.0, -1.0).1, 127);
        // Degenerate: positive finite scale.
        let (s, _) = activation_qparams(0.0, 0.0);
        assert!(s > 0.0 && s.is_finite());
    }

    #[test]
    fn weight_scales_per_channel() {
        // 2 channels x 3 values, channel outermost.
        let w = [0.5, -1.27, 0.1, 0.0, 0.0, 0.0];
        let s = weight_scales(&w, 2);
        assert!((s[0] - 0.01).abs() < 1e-8);
        assert_eq!(s[1], MIN_WEIGHT_SCALE);
        // Same values with the channel innermost: c0 = {0.5, 0.1, 0.0}, c1 = {-1.27, 0.0, 0.0}.
        let s = depthwise_weight_scales(&w, 2);
        assert!((s[0] - 0.5 / 127.0).abs() < 1e-8 && (s[1] - 0.01).abs() < 1e-8);
    }
}
