//! Elementwise activations (fused into producers or run as a standalone `Activation` op).

use rsim_model::Activation;

/// One activation applied to one value. GELU is the exact erf form (PyTorch's default).
#[inline]
pub fn apply(act: Activation, x: f32) -> f32 {
    match act {
        Activation::None => x,
        Activation::Relu => x.max(0.0),
        Activation::Relu6 => x.clamp(0.0, 6.0),
        Activation::HardSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        Activation::HardSigmoid => (x + 3.0).clamp(0.0, 6.0) / 6.0,
        Activation::Sigmoid => 1.0 / (1.0 + libm::expf(-x)),
        Activation::Gelu => 0.5 * x * (1.0 + libm::erff(x * core::f32::consts::FRAC_1_SQRT_2)),
    }
}

/// Applies `act` in place (no-op for `None`, so producers can call it unconditionally). Inlined, so
/// the fast kernels' AVX2 entries vectorise it 8 lanes wide.
#[inline(always)]
pub fn apply_slice(act: Activation, xs: &mut [f32]) {
    // One match per slice, so the common clamps run as tight (vectorisable) loops; same values as `apply`.
    match act {
        Activation::None => {}
        Activation::Relu => xs.iter_mut().for_each(|x| *x = x.max(0.0)),
        Activation::Relu6 => xs.iter_mut().for_each(|x| *x = x.clamp(0.0, 6.0)),
        _ => xs.iter_mut().for_each(|x| *x = apply(act, *x)),
    }
}

/// Standalone activation op: `output[i] = act(input[i])`.
pub fn activation<E: super::Elem>(act: Activation, input: &[E], output: &mut [f32]) -> Result<(), &'static str> {
    if input.len() != output.len() {
        return Err("activation input and output sizes differ");
    }
    for (o, &x) in output.iter_mut().zip(input) {
        *o = apply(act, x.f32());
    }
    Ok(())
}
