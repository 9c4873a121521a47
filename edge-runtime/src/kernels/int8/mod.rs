//! int8 kernels with TFLite Micro's exact arithmetic (see DESIGN.md and the peer models' READMEs).
//!
//! Boundary with the engine: for any op touching an int8 activation, the engine calls
//! [`prepare`] once in `Engine::new` and [`eval`] on every run. `inputs` are the bytes of every
//! tensor the op reads, in `Op::for_each_tensor` order (output excluded), resolved from the arena
//! or the weights blob; `weights` is the whole weights blob (for per-channel multiplier blobs).
//!
//! Each submodule is a pure reference kernel over slices (TFLM's `reference_integer_ops`); this file
//! only checks descriptors and unpacks parameters. Kernels index with `get` and report short
//! buffers as errors, so even an unprepared op cannot panic.

pub mod conv;
pub mod elementwise;
pub mod fc;
pub mod fixedpoint;
pub mod misc;
pub mod pool;
pub mod softmax;

use crate::kernels::float::concat::concat_geom;
use crate::kernels::float::pool::pool_geom;
use crate::EngineError;
use rsim_model::{Blob, ConvError, ConvGeometry, ConvKind, DType, Model, Multiplier, Op, Quant, Requant, Tensor};

/// Kernel result: the reason names what was wrong; [`eval`] adds the op.
pub type KResult<T> = Result<T, &'static str>;

/// Requantization multipliers: one for the tensor or one per output channel (LE i32 arrays).
#[derive(Clone, Copy, Debug)]
pub enum Mults<'a> {
    PerTensor(i32, i32),
    PerChannel { mult: &'a [u8], shift: &'a [u8] },
}

/// Output stage of conv/FC: multiplier, output zero point, activation clamp.
#[derive(Clone, Copy, Debug)]
pub struct OutStage<'a> {
    pub mult: Mults<'a>,
    pub out_zp: i32,
    pub act_min: i32,
    pub act_max: i32,
}

impl OutStage<'_> {
    #[inline]
    pub fn multiplier(&self, channel: usize) -> KResult<(i32, i32)> {
        match self.mult {
            Mults::PerTensor(m, s) => Ok((m, s)),
            Mults::PerChannel { mult, shift } => Ok((get_i32(mult, channel)?, get_i32(shift, channel)?)),
        }
    }
}

/// Little-endian i32 number `i` of `bytes`.
#[inline]
pub fn get_i32(bytes: &[u8], i: usize) -> KResult<i32> {
    let b = bytes.get(i * 4..i * 4 + 4).ok_or("int32 array shorter than the channel count")?;
    Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn per_tensor(t: &Tensor) -> KResult<(f32, i32)> {
    match t.quant {
        Quant::PerTensor { scale, zero_point } if (-128..=127).contains(&zero_point) => Ok((scale, zero_point)),
        Quant::PerTensor { .. } => Err("int8 zero point outside -128..=127"),
        _ => Err("int8 activation needs per-tensor quantization"),
    }
}

fn want(t: &Tensor, d: DType, what: &'static str) -> KResult<()> {
    if t.dtype == d {
        Ok(())
    } else {
        Err(what)
    }
}

/// Product of dims, `None` on overflow (a 32-bit `usize` included).
fn checked_product(d: &[usize]) -> Option<usize> {
    d.iter().try_fold(1usize, |acc, &v| acc.checked_mul(v))
}

fn len(t: &Tensor) -> KResult<usize> {
    t.byte_len().ok_or("tensor size overflows")
}

fn blob(weights: &[u8], b: Blob) -> KResult<&[u8]> {
    let s = b.offset as usize;
    weights.get(s..s.checked_add(b.len as usize).ok_or("blob overflows")?).ok_or("blob lies outside the weights")
}

fn stage<'a>(r: &Option<Requant>, out: &Tensor, weights: &'a [u8]) -> KResult<OutStage<'a>> {
    let r = r.as_ref().ok_or("int8 op has no requantization parameters")?;
    let mult = match r.multiplier {
        Multiplier::PerTensor { mult, shift } => Mults::PerTensor(mult, shift),
        Multiplier::PerChannel { mult, shift } => {
            Mults::PerChannel { mult: blob(weights, mult)?, shift: blob(weights, shift)? }
        }
    };
    let (act_min, act_max) = (r.act_min.max(-128), r.act_max.min(127));
    if act_min > act_max {
        return Err("activation clamp range is empty (act_min > act_max)");
    }
    Ok(OutStage { mult, out_zp: per_tensor(out)?.1, act_min, act_max })
}

fn input<'a>(inputs: &[&'a [u8]], i: usize) -> KResult<&'a [u8]> {
    inputs.get(i).copied().ok_or("fewer input buffers than the op reads")
}

/// Validates shapes and parameters of an int8 op (called once, in `Engine::new`): dtypes,
/// quantization, and a dry run of the shape logic with empty-but-sized checks.
pub fn prepare(op_index: u32, op: &Op, model: &Model<'_>) -> Result<(), EngineError> {
    check(op, model.weights).map_err(|reason| EngineError::Unsupported { op: op_index, name: op.name(), reason })
}

/// Runs an int8 op. Never panics: bad shapes were rejected by `prepare`, and every index is checked.
pub fn eval(op_index: u32, op: &Op, weights: &[u8], inputs: &[&[u8]], output: &mut [u8]) -> Result<(), EngineError> {
    run(op, weights, inputs, output).map_err(|reason| EngineError::Unsupported {
        op: op_index,
        name: op.name(),
        reason,
    })
}

fn check(op: &Op, weights: &[u8]) -> KResult<()> {
    let i8a = |t: &Tensor| -> KResult<()> {
        want(t, DType::I8, "int8 op activation is not int8")?;
        per_tensor(t).map(|_| ())
    };
    match op {
        Op::Conv2d { input, weights: w, bias, output, requant, .. }
        | Op::FullyConnected { input, weights: w, bias, output, requant, .. } => {
            i8a(input)?;
            i8a(output)?;
            want(w, DType::I8, "int8 op weights are not int8")?;
            if let Some(b) = bias {
                want(b, DType::I32, "int8 op bias is not int32")?;
            }
            if let Quant::PerTensor { zero_point, .. } = w.quant {
                if matches!(op, Op::Conv2d { .. }) && zero_point != 0 {
                    return Err("int8 conv weights must be symmetric (zero point 0)");
                }
            }
            let s = stage(requant, output, weights)?;
            if let Mults::PerChannel { mult, .. } = s.mult {
                let channels = output.shape.dims().last().copied().unwrap_or(1) as usize;
                if Some(mult.len()) != channels.checked_mul(4) {
                    return Err("per-channel multiplier count differs from the output channels");
                }
            }
            if let Op::Conv2d { params, .. } = op {
                // The same full geometry check as the float path.
                ConvGeometry::new(input, w, bias.as_ref(), output, params).map_err(ConvError::reason)?;
            } else {
                let wd = w.shape.dims();
                let (units, depth) = match wd {
                    [u, d] if *u > 0 && *d > 0 => (*u as usize, *d as usize),
                    _ => return Err("fully connected weights are not [units, depth] matching input and output"),
                };
                let (li, lo) = (len(input)?, len(output)?);
                if li % depth != 0 || lo % units != 0 {
                    return Err("fully connected weights are not [units, depth] matching input and output");
                }
                // The kernel runs output-rows x units x depth: the rows must be the input's rows.
                if li / depth != lo / units {
                    return Err("fully connected input and output differ in batch");
                }
            }
            if let Some(b) = bias {
                if Some(len(b)?) != output.shape.nhwc()[3].checked_mul(4) {
                    return Err("bias length differs from the output channels");
                }
            }
        }
        Op::Add { a, b, output, quant, .. } | Op::Mul { a, b, output, quant, .. } => {
            i8a(a)?;
            i8a(b)?;
            i8a(output)?;
            let q = quant.as_ref().ok_or("int8 add/mul has no quantization parameters")?;
            if q.act_min > q.act_max {
                return Err("activation clamp range is empty (act_min > act_max)");
            }
            let (sa, sb, so) = (a.shape.nhwc(), b.shape.nhwc(), output.shape.nhwc());
            for i in 0..4 {
                if (sa[i] != so[i] && sa[i] != 1) || (sb[i] != so[i] && sb[i] != 1) {
                    return Err("input shapes do not broadcast to the output shape");
                }
            }
            // The kernel loops over the output's NHWC dims: their product must be its length.
            if checked_product(&so) != Some(len(output)?) {
                return Err("add/mul output is not rank 1 to 4 or its size overflows");
            }
        }
        Op::AvgPool2d { input, output, act_min, act_max, params }
        | Op::MaxPool2d { input, output, act_min, act_max, params } => {
            i8a(input)?;
            i8a(output)?;
            if (*act_min).max(-128) > (*act_max).min(127) {
                return Err("activation clamp range is empty (act_min > act_max)");
            }
            // The float path's full window geometry: rank 4, kernel and padding against the input,
            // output size from kernel, stride and padding, batch and channels kept, sizes in usize.
            pool_geom(&input.shape, &output.shape, params)?;
        }
        Op::GlobalAvgPool { input, output, requant } => {
            i8a(input)?;
            i8a(output)?;
            let (i, o) = (input.shape.nhwc(), output.shape.nhwc());
            if i[0] != o[0] || i[3] != o[3] || o[1] != 1 || o[2] != 1 {
                return Err("global pool output is not [N, 1, 1, C]");
            }
            if input.shape.rank != 4 || checked_product(&i) != Some(len(input)?) {
                return Err("global pool input is not rank 4 (NHWC) or its size overflows");
            }
            if input.quant != output.quant {
                stage(requant, output, weights)?;
            }
        }
        Op::Reshape { input, output } | Op::Lut { input, output, .. } => {
            i8a(input)?;
            i8a(output)?;
            if len(input)? != len(output)? {
                return Err("input and output sizes differ");
            }
        }
        Op::Softmax { input, output, quant, .. } => {
            i8a(input)?;
            i8a(output)?;
            quant.as_ref().ok_or("int8 softmax has no quantization parameters")?;
            if len(input)? != len(output)? {
                return Err("input and output sizes differ");
            }
        }
        Op::Concat { inputs, output, axis } => {
            i8a(output)?;
            for t in inputs.iter().flatten() {
                i8a(t)?;
            }
            // The float path's checked geometry (ranks, dims off the axis, axis sum, sizes in usize);
            // the int8 kernel's outer x (axis x inner) rows then stay inside every tensor.
            concat_geom(&inputs.map(|t| t.map(|t| t.shape)), &output.shape, *axis)?;
            if output.shape.rank == 0 {
                return Err("concat output must have rank 1 to 4");
            }
        }
        Op::Quantize { input, output } => {
            want(input, DType::F32, "quantize input is not f32")?;
            i8a(output)?;
            if input.shape.checked_len() != output.shape.checked_len() {
                return Err("input and output sizes differ");
            }
        }
        Op::Dequantize { input, output } => {
            i8a(input)?;
            want(output, DType::F32, "dequantize output is not f32")?;
            if input.shape.checked_len() != output.shape.checked_len() {
                return Err("input and output sizes differ");
            }
        }
        Op::Transpose { input, output, .. } => {
            i8a(input)?;
            i8a(output)?;
            if len(input)? != len(output)? {
                return Err("input and output sizes differ");
            }
        }
        Op::LayerNorm { .. } | Op::MatMul { .. } | Op::Activation { .. } => return Err("no int8 kernel for this op"),
    }
    Ok(())
}

fn run(op: &Op, weights: &[u8], inputs: &[&[u8]], out: &mut [u8]) -> KResult<()> {
    match op {
        Op::Conv2d { input: it, weights: wt, bias, output, params, requant } => {
            let (x, w) = (input(inputs, 0)?, input(inputs, 1)?);
            let b = if bias.is_some() { Some(input(inputs, 2)?) } else { None };
            let s = stage(requant, output, weights)?;
            let cg = ConvGeometry::new(it, wt, bias.as_ref(), output, params).map_err(ConvError::reason)?;
            let g = conv::ConvGeom {
                input: [cg.batch, cg.in_h, cg.in_w, cg.in_c],
                output: [cg.batch, cg.out_h, cg.out_w, cg.out_c],
                kernel: [cg.k_h, cg.k_w],
                stride: cg.stride,
                dilation: cg.dilation,
                pad: [cg.pad_top, cg.pad_left],
            };
            let zp = per_tensor(it)?.1;
            match cg.kind {
                ConvKind::Depthwise { .. } => conv::depthwise(&g, x, zp, w, b, &s, out),
                ConvKind::Dense | ConvKind::Grouped { .. } => conv::conv(&g, cg.groups, x, zp, w, b, &s, out),
            }
        }
        Op::FullyConnected { input: it, weights: wt, bias, output, requant, .. } => {
            let (x, w) = (input(inputs, 0)?, input(inputs, 1)?);
            let b = if bias.is_some() { Some(input(inputs, 2)?) } else { None };
            let s = stage(requant, output, weights)?;
            let wd = wt.shape.dims();
            let (units, depth) =
                (*wd.first().ok_or("weights rank")? as usize, *wd.get(1).ok_or("weights rank")? as usize);
            let w_zp = match wt.quant {
                Quant::PerTensor { zero_point, .. } => zero_point,
                _ => 0,
            };
            let batches = len(output)? / units.max(1);
            fc::fully_connected(batches, depth, units, x, per_tensor(it)?.1, w, w_zp, b, &s, out)
        }
        Op::Add { a, b, output, quant, .. } | Op::Mul { a, b, output, quant, .. } => {
            let q = quant.as_ref().ok_or("int8 add/mul has no quantization parameters")?;
            let zp = elementwise::ZeroPoints { a: per_tensor(a)?.1, b: per_tensor(b)?.1, out: per_tensor(output)?.1 };
            let (sa, sb, so) = (a.shape.nhwc(), b.shape.nhwc(), output.shape.nhwc());
            let (x, y) = (input(inputs, 0)?, input(inputs, 1)?);
            if matches!(op, Op::Add { .. }) {
                elementwise::add(&sa, &sb, &so, x, y, zp, q, out)
            } else {
                elementwise::mul(&sa, &sb, &so, x, y, zp, q, out)
            }
        }
        Op::AvgPool2d { input: it, output, params, act_min, act_max }
        | Op::MaxPool2d { input: it, output, params, act_min, act_max } => {
            let u = |v: u16| v as usize;
            let g = pool::PoolGeom {
                input: it.shape.nhwc(),
                output: output.shape.nhwc(),
                kernel: [u(params.kernel[0]), u(params.kernel[1])],
                stride: [u(params.stride[0]), u(params.stride[1])],
                pad: [u(params.padding.top), u(params.padding.left)],
            };
            let act = ((*act_min).max(-128), (*act_max).min(127));
            if matches!(op, Op::AvgPool2d { .. }) {
                pool::avg_pool(&g, input(inputs, 0)?, act, out)
            } else {
                pool::max_pool(&g, input(inputs, 0)?, act, out)
            }
        }
        Op::GlobalAvgPool { input: it, output, requant } => {
            let (in_zp, out_zp) = (per_tensor(it)?.1, per_tensor(output)?.1);
            // TFLM picks the plain mean when the quantization is identical, whatever else is stored.
            let (rq, act) = if it.quant == output.quant {
                (None, (-128, 127))
            } else {
                let s = stage(requant, output, weights)?;
                (Some(s.multiplier(0)?), (s.act_min, s.act_max))
            };
            pool::mean_hw(it.shape.nhwc(), input(inputs, 0)?, in_zp, out_zp, rq, act, out)
        }
        Op::Reshape { .. } => misc::copy(input(inputs, 0)?, out),
        Op::Softmax { input: it, quant, .. } => {
            let q = quant.as_ref().ok_or("int8 softmax has no quantization parameters")?;
            let depth = *it.shape.dims().last().unwrap_or(&1) as usize;
            let rows = len(it)? / depth.max(1);
            softmax::softmax(rows, depth, input(inputs, 0)?, q, out)
        }
        Op::Concat { inputs: ts, output, axis } => {
            let (out_scale, out_zp) = per_tensor(output)?;
            let ax = *axis as usize;
            let d = output.shape.dims();
            let outer: usize = d.get(..ax).ok_or("concat axis")?.iter().map(|&v| v as usize).product();
            let inner: usize = d.get(ax + 1..).unwrap_or(&[]).iter().map(|&v| v as usize).product();
            let mut list: [misc::ConcatPart<'_>; 4] =
                core::array::from_fn(|_| misc::ConcatPart { data: &[], axis_len: 0, scale: 1.0, zp: 0 });
            let mut n = 0;
            for (k, t) in ts.iter().flatten().enumerate() {
                let (scale, zp) = per_tensor(t)?;
                let axis_len = *t.shape.dims().get(ax).ok_or("concat axis")? as usize;
                *list.get_mut(k).ok_or("too many concat inputs")? =
                    misc::ConcatPart { data: input(inputs, k)?, axis_len, scale, zp };
                n += 1;
            }
            misc::concat(list.get(..n).ok_or("concat inputs")?, outer, inner, out_scale, out_zp, out)
        }
        Op::Lut { table, .. } => misc::lut(input(inputs, 0)?, blob(weights, *table)?, out),
        Op::Quantize { output, .. } => {
            let (scale, zp) = per_tensor(output)?;
            misc::quantize(input(inputs, 0)?, scale, zp, out)
        }
        Op::Dequantize { input: it, .. } => {
            let (scale, zp) = per_tensor(it)?;
            misc::dequantize(input(inputs, 0)?, scale, zp, out)
        }
        Op::Transpose { input: it, perm, .. } => {
            let d = it.shape.dims;
            let dims = [d[0] as usize, d[1] as usize, d[2] as usize, d[3] as usize];
            misc::transpose(&dims, it.shape.rank as usize, perm, 1, input(inputs, 0)?, out)
        }
        Op::LayerNorm { .. } | Op::MatMul { .. } | Op::Activation { .. } => Err("no int8 kernel for this op"),
    }
}
