//! TFLite builtin ops -> rsim ops, with TFLM's `Prepare` arithmetic done here, offline.
//! Option-table field numbers follow TFLite's `schema.fbs`.

use super::fb::Table;
use super::Ctx;
use crate::conv::ConvGeometry;
use crate::graph::*;
use crate::quant::{self, activation_range_i8};

/// TFLite builtin operator codes used here.
mod code {
    pub const ADD: i32 = 0;
    pub const AVERAGE_POOL_2D: i32 = 1;
    pub const CONCATENATION: i32 = 2;
    pub const CONV_2D: i32 = 3;
    pub const DEPTHWISE_CONV_2D: i32 = 4;
    pub const DEQUANTIZE: i32 = 6;
    pub const FULLY_CONNECTED: i32 = 9;
    pub const LOGISTIC: i32 = 14;
    pub const MAX_POOL_2D: i32 = 17;
    pub const MUL: i32 = 18;
    pub const RESHAPE: i32 = 22;
    pub const SOFTMAX: i32 = 25;
    pub const TRANSPOSE: i32 = 39;
    pub const MEAN: i32 = 40;
    pub const QUANTIZE: i32 = 114;
    pub const HARD_SWISH: i32 = 117;
}

/// Name of a builtin code for messages.
pub fn op_name(c: i32) -> String {
    let n = match c {
        code::ADD => "ADD",
        code::AVERAGE_POOL_2D => "AVERAGE_POOL_2D",
        code::CONCATENATION => "CONCATENATION",
        code::CONV_2D => "CONV_2D",
        code::DEPTHWISE_CONV_2D => "DEPTHWISE_CONV_2D",
        code::DEQUANTIZE => "DEQUANTIZE",
        code::FULLY_CONNECTED => "FULLY_CONNECTED",
        code::LOGISTIC => "LOGISTIC",
        code::MAX_POOL_2D => "MAX_POOL_2D",
        code::MUL => "MUL",
        code::RESHAPE => "RESHAPE",
        code::SOFTMAX => "SOFTMAX",
        code::TRANSPOSE => "TRANSPOSE",
        code::MEAN => "MEAN",
        code::QUANTIZE => "QUANTIZE",
        code::HARD_SWISH => "HARD_SWISH",
        5 => "DEPTH_TO_SPACE",
        19 => "RELU",
        21 => "RELU6",
        23 => "RESIZE_BILINEAR",
        28 => "TANH",
        32 => "CUSTOM",
        34 => "PAD",
        41 => "SUB",
        43 => "SQUEEZE",
        _ => return format!("builtin code {c}"),
    };
    n.to_string()
}

/// An operator's tensor indices and its builtin options table.
pub struct OpIo<'a> {
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    pub options: Option<Table<'a>>,
}

impl OpIo<'_> {
    fn input(&self, i: usize) -> Result<i32, String> {
        self.inputs.get(i).copied().ok_or_else(|| format!("missing input {i}"))
    }
    fn output(&self) -> Result<i32, String> {
        self.outputs.first().copied().ok_or_else(|| "missing output".to_string())
    }
    fn opt_i32(&self, field: usize, default: i32) -> i32 {
        self.options.map(|t| t.i32(field, default)).unwrap_or(default)
    }
    fn opt_u8(&self, field: usize, default: u8) -> u8 {
        self.options.map(|t| t.u8(field, default)).unwrap_or(default)
    }
}

/// TFLite ActivationFunctionType -> rsim activation (only clamps can be fused in int8).
fn fused(code: u8) -> Result<Activation, String> {
    match code {
        0 => Ok(Activation::None),
        1 => Ok(Activation::Relu),
        3 => Ok(Activation::Relu6),
        c => Err(format!("fused activation {c} (only NONE, RELU, RELU6 are supported)")),
    }
}

fn pt(t: &Tensor, what: &str) -> Result<(f32, i32), String> {
    match t.quant {
        Quant::PerTensor { scale, zero_point } => Ok((scale, zero_point)),
        _ => Err(format!("{what} tensor {} must be quantized per tensor", t.id)),
    }
}

fn int8(t: &Tensor, what: &str) -> Result<(f32, i32), String> {
    if t.dtype != DType::I8 {
        return Err(format!("{what} tensor {} is {:?}; only full-int8 models are supported", t.id, t.dtype));
    }
    pt(t, what)
}

fn q(r: Result<(i32, i32), quant::QuantError>, what: &str) -> Result<(i32, i32), String> {
    r.map_err(|e| format!("{what}: {e}"))
}

/// TFLite `ComputePaddingHeightWidth` along one axis: (before, after), the odd extra after.
/// Also checks the output size TFLite would compute.
fn padding(
    same: bool,
    in_size: usize,
    k: usize,
    stride: usize,
    dilation: usize,
    out_size: usize,
) -> Result<(u16, u16), String> {
    let eff = (k.max(1) - 1) * dilation + 1;
    let expect = if same { in_size.div_ceil(stride) } else { (in_size + stride).saturating_sub(eff) / stride };
    if expect != out_size {
        return Err(format!("output size {out_size} differs from the {expect} TFLite computes"));
    }
    let total = ((out_size.max(1) - 1) * stride + eff).saturating_sub(in_size);
    let (before, extra) = (total / 2, total % 2);
    let b = u16::try_from(before).map_err(|_| "padding too large".to_string())?;
    let a = u16::try_from(before + extra).map_err(|_| "padding too large".to_string())?;
    Ok((b, a))
}

fn stride(io: &OpIo<'_>, w_field: usize, h_field: usize) -> Result<[u16; 2], String> {
    let s = [io.opt_i32(h_field, 1), io.opt_i32(w_field, 1)];
    let h = u16::try_from(s[0]).ok().filter(|&v| v > 0).ok_or("stride must be positive")?;
    let w = u16::try_from(s[1]).ok().filter(|&v| v > 0).ok_or("stride must be positive")?;
    Ok([h, w])
}

/// Per-output-channel conv multipliers as blobs (per-tensor weight scales are broadcast).
fn conv_requant(
    ctx: &mut Ctx,
    input: &Tensor,
    weights: &Tensor,
    output: &Tensor,
    act: Activation,
    channels: usize,
) -> Result<Requant, String> {
    let (in_scale, _) = int8(input, "input")?;
    let (out_scale, out_zp) = int8(output, "output")?;
    let w = ctx.tf(weights.id as i32)?;
    let scales: Vec<f32> = match w.scales.len() {
        1 => vec![w.scales[0]; channels],
        n if n == channels => w.scales.clone(),
        n => return Err(format!("{n} weight scales for {channels} output channels")),
    };
    if w.zero_points.iter().any(|&z| z != 0) {
        return Err("conv weights must be symmetric (zero point 0)".into());
    }
    let mut mults = Vec::with_capacity(channels);
    let mut shifts = Vec::with_capacity(channels);
    for s in scales {
        let (m, sh) = q(quant::conv_multiplier(in_scale, s, out_scale), "conv multiplier")?;
        mults.push(m);
        shifts.push(sh);
    }
    let (act_min, act_max) = activation_range_i8(act, out_scale, out_zp);
    let mult = ctx.weights.push_i32(&mults);
    let shift = ctx.weights.push_i32(&shifts);
    Ok(Requant { multiplier: Multiplier::PerChannel { mult, shift }, act_min, act_max })
}

fn bias(ctx: &mut Ctx, io: &OpIo<'_>, i: usize) -> Result<Option<Tensor>, String> {
    match io.inputs.get(i) {
        Some(&idx) if idx >= 0 => {
            let b = ctx.tensor(idx)?;
            if b.dtype != DType::I32 {
                return Err("bias must be int32".into());
            }
            Ok(Some(b))
        }
        _ => Ok(None),
    }
}

fn conv(ctx: &mut Ctx, io: &OpIo<'_>, depthwise: bool) -> Result<Op, String> {
    let input = ctx.tensor(io.input(0)?)?;
    let weights = ctx.tensor(io.input(1)?)?;
    let bias = bias(ctx, io, 2)?;
    let output = ctx.tensor(io.output()?)?;
    if weights.dtype != DType::I8 || input.shape.rank != 4 || output.shape.rank != 4 || weights.shape.rank != 4 {
        return Err("expects 4-D int8 input, weights and output".into());
    }
    // Conv2DOptions: padding 0, stride_w 1, stride_h 2, act 3, dil_w 4, dil_h 5.
    // DepthwiseConv2DOptions: padding 0, stride_w 1, stride_h 2, depth_multiplier 3, act 4, dil_w 5, dil_h 6.
    let (act_f, dw_f, dh_f) = if depthwise { (4, 5, 6) } else { (3, 4, 5) };
    let strides = stride(io, 1, 2)?;
    let dil = [io.opt_i32(dh_f, 1), io.opt_i32(dw_f, 1)];
    let dilation = [
        u16::try_from(dil[0]).ok().filter(|&v| v > 0).ok_or("dilation must be positive")?,
        u16::try_from(dil[1]).ok().filter(|&v| v > 0).ok_or("dilation must be positive")?,
    ];
    let act = fused(io.opt_u8(act_f, 0))?;
    let same = io.opt_u8(0, 0) == 0;
    let (i, o, w) = (input.shape.nhwc(), output.shape.nhwc(), weights.shape.nhwc());
    let groups = if depthwise {
        if w[0] != 1 || i[3] == 0 || w[3] != o[3] || o[3] % i[3] != 0 {
            return Err(format!("depthwise weights {:?} do not match {} -> {} channels", w, i[3], o[3]));
        }
        i[3] as u32
    } else {
        if w[0] != o[3] || w[3] == 0 || i[3] % w[3] != 0 {
            return Err(format!("conv weights {:?} do not match {} -> {} channels", w, i[3], o[3]));
        }
        (i[3] / w[3]) as u32
    };
    let (top, bottom) = padding(same, i[1], w[1], strides[0] as usize, dilation[0] as usize, o[1])?;
    let (left, right) = padding(same, i[2], w[2], strides[1] as usize, dilation[1] as usize, o[2])?;
    let requant = conv_requant(ctx, &input, &weights, &output, act, o[3])?;
    let params = Conv2dParams {
        stride: strides,
        dilation,
        padding: Padding { top, bottom, left, right },
        groups,
        activation: act,
    };
    // The runtime's full check (bias length, output size), at import rather than at engine creation.
    ConvGeometry::new(&input, &weights, bias.as_ref(), &output, &params).map_err(|e| e.to_string())?;
    Ok(Op::Conv2d { input, weights, bias, output, params, requant: Some(requant) })
}

fn fully_connected(ctx: &mut Ctx, io: &OpIo<'_>) -> Result<Op, String> {
    let input = ctx.tensor(io.input(0)?)?;
    let weights = ctx.tensor(io.input(1)?)?;
    let bias = bias(ctx, io, 2)?;
    let output = ctx.tensor(io.output()?)?;
    // FullyConnectedOptions: act 0, weights_format 1, keep_num_dims 2.
    let act = fused(io.opt_u8(0, 0))?;
    if io.opt_u8(1, 0) != 0 {
        return Err("shuffled weights format is not supported".into());
    }
    let (in_scale, _) = int8(&input, "input")?;
    let (out_scale, out_zp) = int8(&output, "output")?;
    if weights.dtype != DType::I8 || weights.shape.rank != 2 {
        return Err("weights must be 2-D int8".into());
    }
    let (w_scale, _) =
        pt(&weights, "per-channel fully connected is not supported; weights").map_err(|e| e.to_string())?;
    let (m, s) = q(quant::fc_multiplier(in_scale, w_scale, out_scale), "fc multiplier")?;
    let (act_min, act_max) = activation_range_i8(act, out_scale, out_zp);
    let requant = Requant { multiplier: Multiplier::PerTensor { mult: m, shift: s }, act_min, act_max };
    Ok(Op::FullyConnected { input, weights, bias, output, activation: act, requant: Some(requant) })
}

fn binary(ctx: &mut Ctx, io: &OpIo<'_>, is_add: bool) -> Result<Op, String> {
    let a = ctx.tensor(io.input(0)?)?;
    let b = ctx.tensor(io.input(1)?)?;
    let output = ctx.tensor(io.output()?)?;
    let act = fused(io.opt_u8(0, 0))?;
    let ((sa, _), (sb, _), (so, zo)) = (int8(&a, "input")?, int8(&b, "input")?, int8(&output, "output")?);
    let (act_min, act_max) = activation_range_i8(act, so, zo);
    if is_add {
        let p = quant::add_params(sa, sb, so).map_err(|e| format!("add parameters: {e}"))?;
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
        Ok(Op::Add { a, b, output, activation: act, quant: Some(quant) })
    } else {
        let (m, s) = q(quant::mul_multiplier(sa, sb, so), "mul multiplier")?;
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
        Ok(Op::Mul { a, b, output, activation: act, quant: Some(quant) })
    }
}

fn pool(ctx: &mut Ctx, io: &OpIo<'_>, is_avg: bool) -> Result<Op, String> {
    let input = ctx.tensor(io.input(0)?)?;
    let output = ctx.tensor(io.output()?)?;
    let (_, (so, zo)) = (int8(&input, "input")?, int8(&output, "output")?);
    // Pool2DOptions: padding 0, stride_w 1, stride_h 2, filter_w 3, filter_h 4, act 5.
    let strides = stride(io, 1, 2)?;
    let k = [io.opt_i32(4, 1), io.opt_i32(3, 1)];
    let kernel = [
        u16::try_from(k[0]).ok().filter(|&v| v > 0).ok_or("filter size must be positive")?,
        u16::try_from(k[1]).ok().filter(|&v| v > 0).ok_or("filter size must be positive")?,
    ];
    let act = fused(io.opt_u8(5, 0))?;
    let same = io.opt_u8(0, 0) == 0;
    let (i, o) = (input.shape.nhwc(), output.shape.nhwc());
    let (top, bottom) = padding(same, i[1], kernel[0] as usize, strides[0] as usize, 1, o[1])?;
    let (left, right) = padding(same, i[2], kernel[1] as usize, strides[1] as usize, 1, o[2])?;
    let params = PoolParams { kernel, stride: strides, padding: Padding { top, bottom, left, right } };
    let (act_min, act_max) = activation_range_i8(act, so, zo);
    Ok(if is_avg {
        Op::AvgPool2d { input, output, params, act_min, act_max }
    } else {
        Op::MaxPool2d { input, output, params, act_min, act_max }
    })
}

fn mean(ctx: &mut Ctx, io: &OpIo<'_>) -> Result<Op, String> {
    let input = ctx.tensor(io.input(0)?)?;
    let mut axes = ctx.const_i32s(io.input(1)?)?;
    let output = ctx.tensor(io.output()?)?;
    for a in axes.iter_mut() {
        if *a < 0 {
            *a += input.shape.rank as i32;
        }
    }
    axes.sort_unstable();
    if input.shape.rank != 4 || axes != [1, 2] {
        return Err(format!("only MEAN over H and W of a 4-D tensor is supported (axes {axes:?})"));
    }
    let ((si, _), (so, zo)) = (int8(&input, "input")?, int8(&output, "output")?);
    let requant = if input.quant == output.quant {
        None
    } else {
        let (m, s) = q(quant::mean_multiplier(si, so), "mean multiplier")?;
        let _ = zo;
        Some(Requant { multiplier: Multiplier::PerTensor { mult: m, shift: s }, act_min: -128, act_max: 127 })
    };
    Ok(Op::GlobalAvgPool { input, output, requant })
}

fn softmax(ctx: &mut Ctx, io: &OpIo<'_>) -> Result<Op, String> {
    let input = ctx.tensor(io.input(0)?)?;
    let output = ctx.tensor(io.output()?)?;
    let beta = io.options.map(|t| t.f32(0, 1.0)).unwrap_or(1.0);
    let ((si, _), (so, zo)) = (int8(&input, "input")?, int8(&output, "output")?);
    if so != 1.0 / 256.0 || zo != -128 {
        return Err(format!("int8 softmax output must have scale 1/256 and zero point -128 (has {so}, {zo})"));
    }
    let (m, ls, diff_min) = quant::softmax_params(beta, si).map_err(|e| format!("softmax parameters: {e}"))?;
    Ok(Op::Softmax {
        input,
        output,
        beta,
        quant: Some(SoftmaxQuant { input_multiplier: m, input_left_shift: ls, diff_min }),
    })
}

fn concat(ctx: &mut Ctx, io: &OpIo<'_>) -> Result<Op, String> {
    let output = ctx.tensor(io.output()?)?;
    if io.inputs.len() > 4 || io.inputs.is_empty() {
        return Err(format!("{} inputs; 1 to 4 are supported", io.inputs.len()));
    }
    if fused(io.opt_u8(1, 0))? != Activation::None {
        return Err("fused activation on concatenation is not supported".into());
    }
    let mut axis = io.opt_i32(0, 0);
    if axis < 0 {
        axis += output.shape.rank as i32;
    }
    let axis = u8::try_from(axis).ok().filter(|&a| a < output.shape.rank).ok_or("axis out of range")?;
    let mut inputs = [None; 4];
    for (slot, &i) in inputs.iter_mut().zip(&io.inputs) {
        let t = ctx.tensor(i)?;
        if !matches!(t.storage, Storage::Arena { .. }) {
            return Err("constant concat inputs are not supported".into());
        }
        int8(&t, "input")?;
        *slot = Some(t);
    }
    int8(&output, "output")?;
    Ok(Op::Concat { inputs, output, axis })
}

/// LOGISTIC / HARD_SWISH as a 256-entry table. The table is derived in float (dequantize, f,
/// quantize), not from TFLM's fixed-point kernels, so entries may differ from TFLM by one step.
fn lut(ctx: &mut Ctx, io: &OpIo<'_>, f: fn(f32) -> f32) -> Result<Op, String> {
    let input = ctx.tensor(io.input(0)?)?;
    let output = ctx.tensor(io.output()?)?;
    let ((si, zi), (so, zo)) = (int8(&input, "input")?, int8(&output, "output")?);
    let t = quant::build_lut_i8(si, zi, so, zo, f);
    let table = ctx.weights.push_bytes(&t);
    Ok(Op::Lut { input, output, table })
}

/// Maps one operator.
pub fn map_op(ctx: &mut Ctx, builtin: i32, io: &OpIo<'_>) -> Result<Op, String> {
    match builtin {
        code::CONV_2D => conv(ctx, io, false),
        code::DEPTHWISE_CONV_2D => conv(ctx, io, true),
        code::FULLY_CONNECTED => fully_connected(ctx, io),
        code::ADD => binary(ctx, io, true),
        code::MUL => binary(ctx, io, false),
        code::AVERAGE_POOL_2D => pool(ctx, io, true),
        code::MAX_POOL_2D => pool(ctx, io, false),
        code::MEAN => mean(ctx, io),
        code::SOFTMAX => softmax(ctx, io),
        code::CONCATENATION => concat(ctx, io),
        code::RESHAPE => {
            let (input, output) = (ctx.tensor(io.input(0)?)?, ctx.tensor(io.output()?)?);
            if input.byte_len() != output.byte_len() || input.quant != output.quant {
                return Err("reshape must keep size and quantization".into());
            }
            Ok(Op::Reshape { input, output })
        }
        code::QUANTIZE => {
            let (input, output) = (ctx.tensor(io.input(0)?)?, ctx.tensor(io.output()?)?);
            if input.dtype != DType::F32 {
                return Err("only f32 -> int8 quantize is supported (int8 requantize is not)".into());
            }
            int8(&output, "output")?;
            Ok(Op::Quantize { input, output })
        }
        code::DEQUANTIZE => {
            let (input, output) = (ctx.tensor(io.input(0)?)?, ctx.tensor(io.output()?)?);
            int8(&input, "input")?;
            if output.dtype != DType::F32 {
                return Err("dequantize output must be f32".into());
            }
            Ok(Op::Dequantize { input, output })
        }
        code::TRANSPOSE => {
            let input = ctx.tensor(io.input(0)?)?;
            let p = ctx.const_i32s(io.input(1)?)?;
            let output = ctx.tensor(io.output()?)?;
            if p.len() != input.shape.rank as usize {
                return Err("permutation length differs from the rank".into());
            }
            let mut perm = [0u8, 1, 2, 3];
            for (d, &v) in perm.iter_mut().zip(&p) {
                *d = u8::try_from(v).map_err(|_| "bad permutation".to_string())?;
            }
            Ok(Op::Transpose { input, output, perm })
        }
        code::LOGISTIC => lut(ctx, io, |x| 1.0 / (1.0 + (-x).exp())),
        code::HARD_SWISH => lut(ctx, io, |x| x * (x + 3.0).clamp(0.0, 6.0) / 6.0),
        _ => Err("no rsim mapping for this op".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::TfTensor;
    use super::*;
    use std::collections::HashMap;

    fn tf(dims: &[i32], dtype: DType, scales: &[f32], data: Option<Vec<u8>>) -> TfTensor {
        TfTensor {
            name: String::new(),
            dtype: Some(dtype),
            dims: dims.to_vec(),
            data,
            scales: scales.to_vec(),
            zero_points: vec![0; scales.len()],
            quant_dim: 0,
        }
    }
    fn ctx(tensors: Vec<TfTensor>) -> Ctx {
        Ctx { tensors, weights: Default::default(), consts: HashMap::new() }
    }
    fn io(inputs: &[i32], output: i32) -> OpIo<'static> {
        OpIo { inputs: inputs.to_vec(), outputs: vec![output], options: None }
    }

    #[test]
    fn same_padding_puts_the_odd_extra_after() {
        assert_eq!(padding(true, 32, 3, 2, 1, 16), Ok((0, 1))); // ResNet-8 stride-2 convs
        assert_eq!(padding(true, 49, 10, 2, 1, 25), Ok((4, 5))); // DS-CNN first conv, height
        assert_eq!(padding(true, 10, 3, 1, 2, 10), Ok((2, 2))); // dilation 2: effective 5x5
        assert_eq!(padding(false, 8, 8, 8, 1, 1), Ok((0, 0)));
        assert!(padding(true, 32, 3, 2, 1, 15).is_err()); // inconsistent output size
    }

    #[test]
    fn unsupported_ops_and_params_name_the_problem() {
        let a = tf(&[1, 4], DType::I8, &[0.5], None);
        let mut c = ctx(vec![a.clone(), a.clone()]);
        let e = map_op(&mut c, 34, &io(&[0], 1)).unwrap_err();
        assert!(e.contains("no rsim mapping"), "{e}");
        assert_eq!(op_name(34), "PAD");
        // Per-channel fully connected weights are refused, naming the reason.
        let w = TfTensor { quant_dim: 0, ..tf(&[2, 4], DType::I8, &[0.1, 0.2], Some(vec![0; 8])) };
        let out = tf(&[1, 2], DType::I8, &[0.3], None);
        let mut c = ctx(vec![a.clone(), w, out]);
        let e = map_op(&mut c, code::FULLY_CONNECTED, &io(&[0, 1, -1], 2)).unwrap_err();
        assert!(e.contains("per-channel"), "{e}");
        // int8 softmax output must be 1/256, -128.
        let mut c = ctx(vec![a.clone(), a.clone()]);
        let e = map_op(&mut c, code::SOFTMAX, &io(&[0], 1)).unwrap_err();
        assert!(e.contains("1/256"), "{e}");
        // A float activation in an int8-only op.
        let f = tf(&[1, 4], DType::F32, &[], None);
        let mut c = ctx(vec![f.clone(), a.clone(), a]);
        let e = map_op(&mut c, code::ADD, &io(&[0, 1], 2)).unwrap_err();
        assert!(e.contains("full-int8"), "{e}");
    }

    #[test]
    fn mean_over_h_w_only_and_requant_when_scales_differ() {
        let x = tf(&[1, 4, 4, 8], DType::I8, &[0.5], None);
        let axes = tf(&[2], DType::I32, &[], Some([1i32, 2].iter().flat_map(|v| v.to_le_bytes()).collect()));
        let same = tf(&[1, 1, 1, 8], DType::I8, &[0.5], None);
        let other = tf(&[1, 1, 1, 8], DType::I8, &[0.25], None);
        let mut c = ctx(vec![x.clone(), axes.clone(), same, other]);
        assert!(matches!(map_op(&mut c, code::MEAN, &io(&[0, 1], 2)), Ok(Op::GlobalAvgPool { requant: None, .. })));
        match map_op(&mut c, code::MEAN, &io(&[0, 1], 3)) {
            Ok(Op::GlobalAvgPool { requant: Some(r), .. }) => {
                assert_eq!(r.multiplier, Multiplier::PerTensor { mult: 1 << 30, shift: 2 })
                // 0.5/0.25 = 2
            }
            other => panic!("{other:?}"),
        }
        let axis3 = tf(&[1], DType::I32, &[], Some(3i32.to_le_bytes().to_vec()));
        let mut c = ctx(vec![x, axis3, tf(&[1, 4, 4, 1], DType::I8, &[0.5], None)]);
        assert!(map_op(&mut c, code::MEAN, &io(&[0, 1], 2)).unwrap_err().contains("H and W"));
    }
}
