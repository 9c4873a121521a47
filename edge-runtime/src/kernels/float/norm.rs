//! Row-wise normalizations over the last dim: softmax (max-subtracted, so large logits do not
//! overflow) and layer norm (population variance, as PyTorch's `nn.LayerNorm`).

use super::Elem;
use rsim_model::Shape;

/// Rows and row length of a tensor normalized over its last dim.
pub fn rows_geom(input: &Shape, output: &Shape) -> Result<(usize, usize), &'static str> {
    if input.dims() != output.dims() {
        return Err("normalization input and output shapes differ");
    }
    let len = super::count(input)?;
    let row = input.dims().last().map_or(1, |&d| d as usize);
    if row == 0 {
        return Ok((0, 0));
    }
    Ok((len / row, row))
}

/// `output = exp(beta * (x - max)) / sum` per row.
pub fn softmax(row: usize, beta: f32, input: &[f32], output: &mut [f32]) -> Result<(), &'static str> {
    if input.len() != output.len() || (row == 0 && !input.is_empty()) || (row != 0 && !input.len().is_multiple_of(row))
    {
        return Err("softmax tensor sizes do not match");
    }
    if row == 0 {
        return Ok(());
    }
    for (x, y) in input.chunks_exact(row).zip(output.chunks_exact_mut(row)) {
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for (o, &v) in y.iter_mut().zip(x) {
            *o = libm::expf(beta * (v - max));
            sum += *o;
        }
        let inv = 1.0 / sum;
        y.iter_mut().for_each(|o| *o *= inv);
    }
    Ok(())
}

/// `(x - mean) / sqrt(var + eps) * gamma + beta` per row; gamma and beta hold `row` values.
pub fn layer_norm<G: Elem, B: Elem>(
    row: usize,
    eps: f32,
    input: &[f32],
    gamma: &[G],
    beta: &[B],
    output: &mut [f32],
) -> Result<(), &'static str> {
    if input.len() != output.len()
        || gamma.len() != row
        || beta.len() != row
        || (row != 0 && !input.len().is_multiple_of(row))
    {
        return Err("layer norm tensor sizes do not match (gamma and beta need one value per element of the last dim)");
    }
    if row == 0 {
        return Ok(());
    }
    let n = row as f32;
    for (x, y) in input.chunks_exact(row).zip(output.chunks_exact_mut(row)) {
        let mean = x.iter().sum::<f32>() / n;
        let var = x.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / n;
        let inv = 1.0 / libm::sqrtf(var + eps);
        for (((o, &v), &g), &b) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
            *o = (v - mean) * inv * g.f32() + b.f32();
        }
    }
    Ok(())
}
