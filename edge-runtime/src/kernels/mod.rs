//! Reference kernels: pure functions of (params, shapes, slices), as TFLM's reference kernels.
pub mod fast;
pub mod float;
pub mod int8;
