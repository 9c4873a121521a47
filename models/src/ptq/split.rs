//! Splitting fused non-clamp activations off their producers, in float, so calibration can observe
//! the pre-activation tensor that int8 needs a range for.

use super::PtqError;
use crate::format::Model;
use crate::graph::*;
use crate::write::encode;

/// Refuses models that are not float (int8 activations, f16 activations, quantized tensors).
pub(crate) fn check_float(model: &Model<'_>) -> Result<(), PtqError> {
    for t in [&model.info.input, &model.info.output] {
        if t.dtype != DType::F32 {
            return Err(PtqError::NotFloat { reason: format!("graph input/output tensor {} is {:?}", t.id, t.dtype) });
        }
    }
    for (i, op) in model.ops().enumerate() {
        let op = op?;
        let mut bad = None;
        op.for_each_tensor(|t| {
            let act = matches!(t.storage, Storage::Arena { .. });
            if bad.is_none() && ((act && t.dtype != DType::F32) || !matches!(t.quant, Quant::None)) {
                bad =
                    Some(format!("op #{i} ({}) has tensor {} of type {:?} / {:?}", op.name(), t.id, t.dtype, t.quant));
            }
        });
        if let Some(reason) = bad {
            return Err(PtqError::NotFloat { reason });
        }
    }
    Ok(())
}

/// Activations int8 expresses as the requant clamp of the producing op.
pub(crate) fn is_clamp(a: Activation) -> bool {
    matches!(a, Activation::None | Activation::Relu | Activation::Relu6)
}

fn fused_mut(op: &mut Op) -> Option<(&mut Activation, &mut Tensor)> {
    match op {
        Op::Conv2d { params, output, .. } => Some((&mut params.activation, output)),
        Op::FullyConnected { activation, output, .. }
        | Op::Add { activation, output, .. }
        | Op::Mul { activation, output, .. } => Some((activation, output)),
        // No fused activation. Listed, not `_`: a new op with one must be split here.
        Op::AvgPool2d { .. }
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
        | Op::Dequantize { .. } => None,
    }
}

/// The model's ops with every fused non-clamp activation moved into a following `Activation` op.
/// The producer writes a new tensor (id `1 + largest id`, counting up in op order); the activation
/// writes the original tensor, so every original id keeps its meaning. Idempotent.
pub(crate) fn split_fused(model: &Model<'_>) -> Result<Vec<Op>, PtqError> {
    let mut ops = Vec::new();
    for op in model.ops() {
        ops.push(op?);
    }
    let mut max_id = model.info.input.id.max(model.info.output.id);
    for op in &ops {
        op.for_each_tensor(|t| max_id = max_id.max(t.id));
    }
    let mut next = max_id as u32 + 1;
    let mut out = Vec::with_capacity(ops.len());
    for mut op in ops {
        let mut extra = None;
        if let Some((act, output)) = fused_mut(&mut op) {
            if !is_clamp(*act) {
                let id = u16::try_from(next)
                    .map_err(|_| PtqError::Plan("more than 65535 tensors after splitting activations".into()))?;
                next += 1;
                let orig = *output;
                let pre = Tensor { id, ..orig };
                extra = Some(Op::Activation { input: pre, output: orig, activation: *act });
                *act = Activation::None;
                *output = pre;
            }
        }
        out.push(op);
        out.extend(extra);
    }
    Ok(out)
}

/// The float model with fused HardSwish/HardSigmoid/Sigmoid/GELU split into standalone activation
/// ops (same results, bit for bit), re-planned. Run calibration on this model: its tensor ids are
/// exactly the ones [`super::quantize_model`] looks up in the ranges.
pub fn calibration_model(float_rsm: &[u8]) -> Result<Vec<u8>, PtqError> {
    let model = Model::parse(float_rsm)?;
    check_float(&model)?;
    let mut ops = split_fused(&model)?;
    let (mut input, mut output) = (model.info.input, model.info.output);
    let plan = crate::plan::plan(&mut ops, &mut input, &mut output).map_err(|e| PtqError::Plan(e.to_string()))?;
    let info = ModelInfo {
        input,
        output,
        arena_size: u32::try_from(plan.arena_size).map_err(|_| PtqError::Plan("arena above 4 GiB".into()))?,
        ..model.info
    };
    // Constants keep their offsets: the weights section is copied as is.
    Ok(encode(&info, &ops, model.weights, None))
}
