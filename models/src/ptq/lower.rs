//! One float op -> one int8 op, with TFLM's Prepare arithmetic done here (as `tflite::ops` does for
//! imported models): per-channel conv/FC multipliers, BinaryQuant for Add/Mul, softmax parameters,
//! 256-entry tables for non-clamp activations.

use super::{activation_qparams, const_f32, depthwise_weight_scales, weight_scales, PtqError, Ranges};
use crate::conv::ConvGeometry;
use crate::format::Model;
use crate::graph::*;
use crate::quant::{self, activation_range_i8, round_half_away_f64, QuantError};
use crate::write::WeightsBuilder;
use std::collections::HashMap;

/// Largest |bias| kept in int32 after quantization; headroom for the accumulator sums.
const BIAS_LIMIT: f64 = (1u64 << 30) as f64;

pub(crate) struct Quantizer<'m, 'r> {
    model: &'m Model<'m>,
    ranges: &'r Ranges,
    /// Quantization chosen for each activation id so far.
    chosen: HashMap<u16, (f32, i32)>,
    pub weights: WeightsBuilder,
    /// Float bias shifts per conv/FC output id (see `PtqOptions::bias_correction`).
    pub bias_correction: &'r std::collections::BTreeMap<u16, Vec<f32>>,
}

fn qerr(index: usize, op: &Op, what: &str, e: QuantError) -> PtqError {
    PtqError::Quant { index, op: op.name().to_string(), reason: format!("{what}: {e}") }
}

impl<'m, 'r> Quantizer<'m, 'r> {
    pub fn new(model: &'m Model<'m>, ranges: &'r Ranges) -> Self {
        let mut chosen = HashMap::new();
        // The graph input covers exactly what preprocessing can produce from 0..255 pixels.
        let spec = &model.info.input_spec;
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for c in 0..(spec.channels as usize).min(MAX_BANDS) {
            for p in [0.0f32, 1.0] {
                let v = (p - spec.mean[c]) / spec.std[c];
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
        chosen.insert(model.info.input.id, activation_qparams(lo, hi));
        static NONE: std::collections::BTreeMap<u16, Vec<f32>> = std::collections::BTreeMap::new();
        Quantizer { model, ranges, chosen, weights: WeightsBuilder::default(), bias_correction: &NONE }
    }

    /// The int8 form of activation `t`, whose quantization was chosen already.
    pub fn activation(&self, t: &Tensor, index: usize) -> Result<Tensor, PtqError> {
        let &(scale, zero_point) = self.chosen.get(&t.id).ok_or(PtqError::MissingRange { tensor: t.id, index })?;
        Ok(Tensor { dtype: DType::I8, quant: Quant::PerTensor { scale, zero_point }, ..*t })
    }

    /// Chooses the output quantization from the observed range and returns the int8 output tensor.
    fn output_from_range(&mut self, t: &Tensor, index: usize) -> Result<Tensor, PtqError> {
        let &(min, max) = self.ranges.get(&t.id).ok_or(PtqError::MissingRange { tensor: t.id, index })?;
        if !(min.is_finite() && max.is_finite() && min <= max) {
            return Err(PtqError::BadRange { tensor: t.id, min, max });
        }
        self.output_with(t, activation_qparams(min, max))
    }

    fn output_with(&mut self, t: &Tensor, q: (f32, i32)) -> Result<Tensor, PtqError> {
        self.chosen.insert(t.id, q);
        self.activation(t, usize::MAX)
    }

    fn pt(t: &Tensor) -> (f32, i32) {
        match t.quant {
            Quant::PerTensor { scale, zero_point } => (scale, zero_point),
            _ => (1.0, 0),
        }
    }

    pub fn lower(&mut self, index: usize, op: &Op) -> Result<Op, PtqError> {
        let unsupported = || PtqError::Unsupported { op: op.name().to_string(), index };
        Ok(match *op {
            Op::Conv2d { input, weights, bias, output, params, .. } => {
                let g = ConvGeometry::new(&input, &weights, bias.as_ref(), &output, &params)
                    .map_err(|e| PtqError::Quant { index, op: op.name().to_string(), reason: e.to_string() })?;
                let input = self.activation(&input, index)?;
                let output = self.output_from_range(&output, index)?;
                let (oc, depthwise) = (g.out_c, g.is_depthwise());
                let (weights, bias, requant) = self.weighted(
                    index,
                    op,
                    &input,
                    &weights,
                    bias.as_ref(),
                    &output,
                    params.activation,
                    oc,
                    depthwise,
                    quant::conv_multiplier,
                )?;
                Op::Conv2d { input, weights, bias, output, params, requant: Some(requant) }
            }
            Op::FullyConnected { input, weights, bias, output, activation, .. } => {
                let input = self.activation(&input, index)?;
                let output = self.output_from_range(&output, index)?;
                let units = *weights.shape.dims().first().unwrap_or(&1) as usize;
                let (weights, bias, requant) = self.weighted(
                    index,
                    op,
                    &input,
                    &weights,
                    bias.as_ref(),
                    &output,
                    activation,
                    units,
                    false,
                    quant::fc_multiplier,
                )?;
                Op::FullyConnected { input, weights, bias, output, activation, requant: Some(requant) }
            }
            Op::Add { a, b, output, activation, .. } | Op::Mul { a, b, output, activation, .. } => {
                let (a, b) = (self.activation(&a, index)?, self.activation(&b, index)?);
                let output = self.output_from_range(&output, index)?;
                let ((sa, _), (sb, _), (so, zo)) = (Self::pt(&a), Self::pt(&b), Self::pt(&output));
                let (act_min, act_max) = activation_range_i8(activation, so, zo);
                if matches!(op, Op::Add { .. }) {
                    let p = quant::add_params(sa, sb, so).map_err(|e| qerr(index, op, "add parameters", e))?;
                    let quant = BinaryQuant {
                        left_shift: p.left_shift,
                        a_mult: p.a_mult,
                        a_shift: p.a_shift,
                        b_mult: p.b_mult,
                        b_shift: p.b_shift,
                        out_mult: p.out_mult,
                        out_shift: p.out_shift,
                        act_min,
                        act_max,
                    };
                    Op::Add { a, b, output, activation, quant: Some(quant) }
                } else {
                    let (m, s) = quant::mul_multiplier(sa, sb, so).map_err(|e| qerr(index, op, "mul multiplier", e))?;
                    let quant = BinaryQuant {
                        left_shift: 0,
                        a_mult: 0,
                        a_shift: 0,
                        b_mult: 0,
                        b_shift: 0,
                        out_mult: m,
                        out_shift: s,
                        act_min,
                        act_max,
                    };
                    Op::Mul { a, b, output, activation, quant: Some(quant) }
                }
            }
            // TFLite pools and reshape keep the input's quantization.
            Op::AvgPool2d { input, output, params, .. } | Op::MaxPool2d { input, output, params, .. } => {
                let input = self.activation(&input, index)?;
                let output = self.output_with(&output, Self::pt(&input))?;
                if matches!(op, Op::AvgPool2d { .. }) {
                    Op::AvgPool2d { input, output, params, act_min: -128, act_max: 127 }
                } else {
                    Op::MaxPool2d { input, output, params, act_min: -128, act_max: 127 }
                }
            }
            Op::Reshape { input, output } => {
                let input = self.activation(&input, index)?;
                let output = self.output_with(&output, Self::pt(&input))?;
                Op::Reshape { input, output }
            }
            Op::GlobalAvgPool { input, output, .. } => {
                let input = self.activation(&input, index)?;
                let output = self.output_from_range(&output, index)?;
                let requant = if input.quant == output.quant {
                    None
                } else {
                    let (m, s) = quant::mean_multiplier(Self::pt(&input).0, Self::pt(&output).0)
                        .map_err(|e| qerr(index, op, "mean multiplier", e))?;
                    Some(Requant {
                        multiplier: Multiplier::PerTensor { mult: m, shift: s },
                        act_min: -128,
                        act_max: 127,
                    })
                };
                Op::GlobalAvgPool { input, output, requant }
            }
            Op::Softmax { input, output, beta, .. } => {
                let input = self.activation(&input, index)?;
                let output = self.output_with(&output, (1.0 / 256.0, -128))?;
                let (m, ls, diff_min) = quant::softmax_params(beta, Self::pt(&input).0)
                    .map_err(|e| qerr(index, op, "softmax parameters", e))?;
                Op::Softmax {
                    input,
                    output,
                    beta,
                    quant: Some(SoftmaxQuant { input_multiplier: m, input_left_shift: ls, diff_min }),
                }
            }
            Op::Concat { inputs, output, axis } => {
                let mut q = [None; 4];
                for (slot, t) in q.iter_mut().zip(inputs.iter()) {
                    if let Some(t) = t {
                        if !matches!(t.storage, Storage::Arena { .. }) {
                            return Err(unsupported());
                        }
                        *slot = Some(self.activation(t, index)?);
                    }
                }
                let output = self.output_from_range(&output, index)?;
                Op::Concat { inputs: q, output, axis }
            }
            Op::Activation { input, output, activation } => {
                let f: fn(f32) -> f32 = match activation {
                    Activation::None => |x| x,
                    Activation::Relu => |x| x.max(0.0),
                    Activation::Relu6 => |x| x.clamp(0.0, 6.0),
                    Activation::HardSwish => |x| x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
                    Activation::HardSigmoid => |x| (x + 3.0).clamp(0.0, 6.0) / 6.0,
                    Activation::Sigmoid => |x| 1.0 / (1.0 + (-x).exp()),
                    Activation::Gelu => return Err(PtqError::Unsupported { op: "Activation(Gelu)".into(), index }),
                };
                let input = self.activation(&input, index)?;
                let output = self.output_from_range(&output, index)?;
                let ((si, zi), (so, zo)) = (Self::pt(&input), Self::pt(&output));
                let table = self.weights.push_bytes(&quant::build_lut_i8(si, zi, so, zo, f));
                Op::Lut { input, output, table }
            }
            Op::LayerNorm { .. }
            | Op::MatMul { .. }
            | Op::Transpose { .. }
            | Op::Lut { .. }
            | Op::Quantize { .. }
            | Op::Dequantize { .. } => return Err(unsupported()),
        })
    }

    /// Weights, bias and requant of a conv/FC: per-channel symmetric weights, int32 bias at
    /// `s_in * s_w[c]`, per-channel multipliers. A channel whose bias would not fit int32 at its
    /// weight scale gets a larger weight scale (TFLite's bias-scale adjustment).
    #[allow(clippy::too_many_arguments)]
    fn weighted(
        &mut self,
        index: usize,
        op: &Op,
        input: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        output: &Tensor,
        act: Activation,
        channels: usize,
        depthwise: bool,
        multiplier: fn(f32, f32, f32) -> Result<(i32, i32), QuantError>,
    ) -> Result<(Tensor, Option<Tensor>, Requant), PtqError> {
        let bad = |what: &str| PtqError::Quant { index, op: op.name().to_string(), reason: what.to_string() };
        let wv = const_f32(self.model, w).ok_or_else(|| bad("weights are not a float constant"))?;
        let mut bv = match bias {
            Some(b) => Some(const_f32(self.model, b).ok_or_else(|| bad("bias is not a float constant"))?),
            None => None,
        };
        if let (Some(b), Some(shift)) = (bv.as_mut(), self.bias_correction.get(&output.id)) {
            if shift.len() != b.len() {
                return Err(bad("bias correction does not match the output channels"));
            }
            b.iter_mut().zip(shift).for_each(|(v, d)| *v -= d);
        }
        if channels == 0 || wv.len() % channels != 0 || bv.as_ref().is_some_and(|b| b.len() != channels) {
            return Err(bad("weights or bias do not match the output channels"));
        }
        let (s_in, _) = Self::pt(input);
        let (s_out, z_out) = Self::pt(output);
        let mut scales = if depthwise { depthwise_weight_scales(&wv, channels) } else { weight_scales(&wv, channels) };
        if let Some(b) = &bv {
            for (s, &bc) in scales.iter_mut().zip(b) {
                let need = (bc.abs() as f64 / (s_in as f64 * BIAS_LIMIT)) as f32;
                if need > *s {
                    *s = need * 1.001;
                }
            }
        }
        let channel_of = |i: usize| if depthwise { i % channels } else { i / (wv.len() / channels) };
        let q: Vec<i8> = wv
            .iter()
            .enumerate()
            .map(|(i, &v)| round_half_away_f64(v as f64 / scales[channel_of(i)] as f64).clamp(-127.0, 127.0) as i8)
            .collect();
        let scale_blob = self.weights.push_f32(&scales);
        let axis = if depthwise { 3 } else { 0 };
        let wq = self.weights.tensor(
            w.id,
            DType::I8,
            w.shape.dims(),
            &q.iter().map(|&v| v as u8).collect::<Vec<_>>(),
            Quant::PerChannel { axis, scales: scale_blob },
        );
        let bq = match (bias, &bv) {
            (Some(bt), Some(b)) => {
                let ints: Vec<i32> = b
                    .iter()
                    .zip(&scales)
                    .map(|(&bc, &s)| {
                        round_half_away_f64(bc as f64 / (s_in as f64 * s as f64)).clamp(-BIAS_LIMIT, BIAS_LIMIT) as i32
                    })
                    .collect();
                let bytes: Vec<u8> = ints.iter().flat_map(|v| v.to_le_bytes()).collect();
                Some(self.weights.tensor(bt.id, DType::I32, bt.shape.dims(), &bytes, Quant::None))
            }
            _ => None,
        };
        let (mut mults, mut shifts) = (Vec::with_capacity(channels), Vec::with_capacity(channels));
        for &s in &scales {
            let (m, sh) = multiplier(s_in, s, s_out).map_err(|e| qerr(index, op, "requant multiplier", e))?;
            mults.push(m);
            shifts.push(sh);
        }
        let (act_min, act_max) = activation_range_i8(act, s_out, z_out);
        let multiplier =
            Multiplier::PerChannel { mult: self.weights.push_i32(&mults), shift: self.weights.push_i32(&shifts) };
        Ok((wq, bq, Requant { multiplier, act_min, act_max }))
    }
}
