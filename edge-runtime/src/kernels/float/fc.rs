//! FullyConnected: `output[b, o] = act(sum_i input[b, i] * weights[o, i] + bias[o])`, weights [out, in].

use super::{act, dot, Elem, Operand};
use rsim_model::{Activation, Shape};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FcGeom {
    pub batch: usize,
    pub in_features: usize,
    pub out_features: usize,
}

/// The input may have any rank; it is read as `batch` rows of `in_features` (the weights' second dim).
pub fn fc_geom(input: &Shape, weights: &Shape, output: &Shape) -> Result<FcGeom, &'static str> {
    if weights.rank != 2 {
        return Err("fully-connected weights must be rank 2 [out, in]");
    }
    let (out_f, in_f) = (weights.dims[0] as usize, weights.dims[1] as usize);
    if in_f == 0 || out_f == 0 {
        return Err("fully-connected weights have a zero dim");
    }
    let in_len = super::count(input)?;
    let out_len = super::count(output)?;
    if in_len % in_f != 0 || output.dims().last().map(|&d| d as usize) != Some(out_f) {
        return Err("fully-connected input/output sizes do not match the weights [out, in]");
    }
    let batch = in_len / in_f;
    if batch.checked_mul(out_f) != Some(out_len) {
        return Err("fully-connected input and output batch sizes differ");
    }
    Ok(FcGeom { batch, in_features: in_f, out_features: out_f })
}

pub fn fully_connected<W: Elem>(
    g: &FcGeom,
    input: &[f32],
    weights: &[W],
    bias: Option<Operand<'_>>,
    activation: Activation,
    output: &mut [f32],
) -> Result<(), &'static str> {
    let (i_n, o_n) = (g.in_features, g.out_features);
    if Some(input.len()) != g.batch.checked_mul(i_n)
        || Some(output.len()) != g.batch.checked_mul(o_n)
        || Some(weights.len()) != o_n.checked_mul(i_n)
    {
        return Err("fully-connected tensor sizes do not match the geometry");
    }
    if bias.is_some_and(|b| b.len() != o_n) {
        return Err("fully-connected bias must have one value per output feature");
    }
    for (x, y) in input.chunks_exact(i_n).zip(output.chunks_exact_mut(o_n)) {
        for ((o, v), w) in y.iter_mut().enumerate().zip(weights.chunks_exact(i_n)) {
            *v = dot(x, w) + bias.and_then(|b| b.get(o)).unwrap_or(0.0);
        }
        act::apply_slice(activation, y);
    }
    Ok(())
}
