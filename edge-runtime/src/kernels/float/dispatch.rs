//! Float op dispatch: checks an op once at engine creation (`prepare`) and runs it (`eval`) on the
//! bytes the engine resolved, in `Op::for_each_tensor` order (output excluded).

use super::{binary, concat, conv, fc, matmul, norm, pool, transpose, with_elems, Operand};
use crate::EngineError;
use rsim_model::{DType, Op, Storage, Tensor};

fn err(op_index: u32, op: &Op) -> impl Fn(&'static str) -> EngineError + '_ {
    move |reason| EngineError::Unsupported { op: op_index, name: op.name(), reason }
}

/// A tensor the float path reads: f32 anywhere, or f16 constants.
fn check_operand(t: &Tensor) -> Result<(), &'static str> {
    match t.dtype {
        DType::F32 | DType::F16 => Ok(()),
        _ => Err("float ops read f32 tensors or f16 constants only"),
    }
}

fn check_f32(t: &Tensor) -> Result<(), &'static str> {
    if t.dtype == DType::F32 {
        Ok(())
    } else {
        Err("this tensor must be f32 (f16 is accepted for constants such as weights, bias, gamma)")
    }
}

/// An activation read as `&[f32]`: f32 and in the arena, whose tensors are 4-byte aligned.
fn check_activation(t: &Tensor) -> Result<(), &'static str> {
    check_f32(t)?;
    match t.storage {
        Storage::Arena { .. } => Ok(()),
        Storage::Weights { .. } => Err("this op's data input must be an activation, not a constant"),
    }
}

/// Validates a float op's dtypes, shapes and parameters.
pub(crate) fn prepare(op_index: u32, op: &Op) -> Result<(), EngineError> {
    check(op).map_err(err(op_index, op))
}

fn check(op: &Op) -> Result<(), &'static str> {
    check_f32(op.output())?;
    match op {
        Op::Conv2d { input, weights, bias, output, params, .. } => {
            check_activation(input)?;
            check_operand(weights)?;
            let g = conv::conv_geom(&input.shape, &weights.shape, &output.shape, params)?;
            check_bias(bias, g.out_c)
        }
        Op::FullyConnected { input, weights, bias, output, .. } => {
            check_activation(input)?;
            check_operand(weights)?;
            let g = fc::fc_geom(&input.shape, &weights.shape, &output.shape)?;
            check_bias(bias, g.out_features)
        }
        Op::Add { a, b, output, .. } | Op::Mul { a, b, output, .. } => {
            check_operand(a)?;
            check_operand(b)?;
            binary::broadcast_geom(&a.shape, &b.shape, &output.shape).map(drop)
        }
        Op::AvgPool2d { input, output, params, .. } | Op::MaxPool2d { input, output, params, .. } => {
            check_activation(input)?;
            pool::pool_geom(&input.shape, &output.shape, params).map(drop)
        }
        Op::GlobalAvgPool { input, output, .. } => {
            check_activation(input)?;
            pool::global_geom(&input.shape, &output.shape).map(drop)
        }
        Op::Reshape { input, output } => {
            if input.dtype != output.dtype || input.byte_len() != output.byte_len() {
                return Err("reshape must keep the dtype and the byte size");
            }
            Ok(())
        }
        Op::Softmax { input, output, .. } => {
            check_activation(input)?;
            norm::rows_geom(&input.shape, &output.shape).map(drop)
        }
        Op::LayerNorm { input, gamma, beta, output, .. } => {
            check_activation(input)?;
            check_operand(gamma)?;
            check_operand(beta)?;
            let (_, row) = norm::rows_geom(&input.shape, &output.shape)?;
            if gamma.shape.checked_len() != Some(row) || beta.shape.checked_len() != Some(row) {
                return Err("layer norm gamma and beta need one value per element of the last dim");
            }
            Ok(())
        }
        Op::MatMul { a, b, output } => {
            check_operand(a)?;
            check_operand(b)?;
            matmul::matmul_geom(&a.shape, &b.shape, &output.shape).map(drop)
        }
        Op::Transpose { input, output, perm } => {
            check_operand(input)?;
            transpose::transpose_geom(&input.shape, &output.shape, perm).map(drop)
        }
        Op::Concat { inputs, output, axis } => {
            for t in inputs.iter().flatten() {
                check_operand(t)?;
            }
            concat::concat_geom(&inputs.map(|t| t.map(|t| t.shape)), &output.shape, *axis).map(drop)
        }
        Op::Activation { input, output, .. } => {
            check_operand(input)?;
            if input.shape.checked_len() != output.shape.checked_len() {
                return Err("activation input and output sizes differ");
            }
            Ok(())
        }
        Op::Lut { .. } | Op::Quantize { .. } | Op::Dequantize { .. } => Err("op needs int8 tensors"),
    }
}

fn check_bias(bias: &Option<Tensor>, channels: usize) -> Result<(), &'static str> {
    if let Some(b) = bias {
        check_operand(b)?;
        if b.shape.checked_len() != Some(channels) {
            return Err("bias must have one value per output channel");
        }
    }
    Ok(())
}

fn f32s(b: &[u8]) -> Result<&[f32], &'static str> {
    bytemuck::try_cast_slice(b).map_err(|_| "f32 tensor bytes are not 4-byte aligned")
}

/// Typed view of a read-only tensor: aligned slices when the bytes allow, byte arrays otherwise.
pub(crate) fn operand<'b>(t: &Tensor, b: &'b [u8]) -> Result<Operand<'b>, &'static str> {
    let odd = "tensor byte length is not a whole number of elements";
    match t.dtype {
        DType::F32 => Ok(match bytemuck::try_cast_slice(b) {
            Ok(s) => Operand::F32(s),
            Err(_) => Operand::F32Le(bytemuck::try_cast_slice(b).map_err(|_| odd)?),
        }),
        DType::F16 => Ok(match bytemuck::try_cast_slice(b) {
            Ok(s) => Operand::F16(s),
            Err(_) => Operand::F16Le(bytemuck::try_cast_slice(b).map_err(|_| odd)?),
        }),
        _ => Err("float ops read f32 tensors or f16 constants only"),
    }
}

/// Runs a float op. `inputs` are the read tensors' bytes in `for_each_tensor` order.
pub(crate) fn eval(op_index: u32, op: &Op, inputs: &[&[u8]], output: &mut [u8]) -> Result<(), EngineError> {
    run(op, inputs, output).map_err(err(op_index, op))
}

fn run(op: &Op, inputs: &[&[u8]], output: &mut [u8]) -> Result<(), &'static str> {
    let arg = |i: usize| inputs.get(i).copied().ok_or("missing input tensor");
    let out: &mut [f32] = bytemuck::try_cast_slice_mut(output).map_err(|_| "f32 output is not 4-byte aligned")?;
    match op {
        Op::Conv2d { input, weights, bias, output, params, .. } => {
            let g = conv::conv_geom(&input.shape, &weights.shape, &output.shape, params)?;
            let x = f32s(arg(0)?)?;
            let b = match bias {
                Some(t) => Some(operand(t, arg(2)?)?),
                None => None,
            };
            with_elems!(operand(weights, arg(1)?)?, |w| conv::conv2d(&g, x, w, b, params.activation, out))
        }
        Op::FullyConnected { input, weights, bias, output, activation, .. } => {
            let g = fc::fc_geom(&input.shape, &weights.shape, &output.shape)?;
            let x = f32s(arg(0)?)?;
            let b = match bias {
                Some(t) => Some(operand(t, arg(2)?)?),
                None => None,
            };
            with_elems!(operand(weights, arg(1)?)?, |w| fc::fully_connected(&g, x, w, b, *activation, out))
        }
        Op::Add { a, b, output, activation, .. } | Op::Mul { a, b, output, activation, .. } => {
            let kind = if matches!(op, Op::Add { .. }) { binary::BinaryKind::Add } else { binary::BinaryKind::Mul };
            let g = binary::broadcast_geom(&a.shape, &b.shape, &output.shape)?;
            let (oa, ob) = (operand(a, arg(0)?)?, operand(b, arg(1)?)?);
            with_elems!(oa, |x| with_elems!(ob, |y| binary::binary(kind, &g, x, y, *activation, out)))
        }
        Op::AvgPool2d { input, output, params, .. } => {
            pool::avg_pool(&pool::pool_geom(&input.shape, &output.shape, params)?, f32s(arg(0)?)?, out)
        }
        Op::MaxPool2d { input, output, params, .. } => {
            pool::max_pool(&pool::pool_geom(&input.shape, &output.shape, params)?, f32s(arg(0)?)?, out)
        }
        Op::GlobalAvgPool { input, output, .. } => {
            pool::global_avg_pool(pool::global_geom(&input.shape, &output.shape)?, f32s(arg(0)?)?, out)
        }
        Op::Softmax { input, output, beta, .. } => {
            let (_, row) = norm::rows_geom(&input.shape, &output.shape)?;
            norm::softmax(row, *beta, f32s(arg(0)?)?, out)
        }
        Op::LayerNorm { input, gamma, beta, output, eps } => {
            let (_, row) = norm::rows_geom(&input.shape, &output.shape)?;
            let (g, b) = (operand(gamma, arg(1)?)?, operand(beta, arg(2)?)?);
            let x = f32s(arg(0)?)?;
            with_elems!(g, |g| with_elems!(b, |b| norm::layer_norm(row, *eps, x, g, b, out)))
        }
        Op::MatMul { a, b, output } => {
            let g = matmul::matmul_geom(&a.shape, &b.shape, &output.shape)?;
            let (oa, ob) = (operand(a, arg(0)?)?, operand(b, arg(1)?)?);
            with_elems!(oa, |x| with_elems!(ob, |y| matmul::matmul(&g, x, y, out)))
        }
        Op::Transpose { input, output, perm } => {
            let g = transpose::transpose_geom(&input.shape, &output.shape, perm)?;
            with_elems!(operand(input, arg(0)?)?, |x| transpose::transpose(&g, x, out))
        }
        Op::Concat { inputs: ts, output, axis } => {
            let g = concat::concat_geom(&ts.map(|t| t.map(|t| t.shape)), &output.shape, *axis)?;
            let mut ops = [Operand::F32(&[]); 4];
            let mut slots = [0usize; 4];
            let mut n = 0;
            for (slot, t) in ts.iter().enumerate() {
                if let Some(t) = t {
                    *ops.get_mut(n).ok_or("too many concat inputs")? = operand(t, arg(n)?)?;
                    *slots.get_mut(n).ok_or("too many concat inputs")? = slot;
                    n += 1;
                }
            }
            concat::concat(&g, &ops[..n], &slots[..n], out)
        }
        Op::Activation { input, activation, .. } => {
            with_elems!(operand(input, arg(0)?)?, |x| super::act::activation(*activation, x, out))
        }
        Op::Reshape { .. } => {
            let x = arg(0)?;
            let o: &mut [u8] = bytemuck::cast_slice_mut(out);
            if x.len() != o.len() {
                return Err("reshape sizes differ");
            }
            o.copy_from_slice(x);
            Ok(())
        }
        Op::Lut { .. } | Op::Quantize { .. } | Op::Dequantize { .. } => Err("op needs int8 tensors"),
    }
}
