//! int8 kernels with TFLite Micro's exact arithmetic (see DESIGN.md and the peer models' READMEs).
//!
//! Boundary with the engine: for any op touching an int8 activation, the engine calls
//! [`prepare`] once in `Engine::new` and [`eval`] on every run. `inputs` are the bytes of every
//! tensor the op reads, in `Op::for_each_tensor` order (output excluded), resolved from the arena
//! or the weights blob; `weights` is the whole weights blob (for per-channel multiplier blobs).

use crate::EngineError;
use rsim_model::{Model, Op};

/// Validates shapes and parameters of an int8 op (called once, in `Engine::new`).
pub fn prepare(op_index: u32, op: &Op, _model: &Model<'_>) -> Result<(), EngineError> {
    Err(EngineError::Unsupported { op: op_index, name: op.name(), reason: "int8 kernels not implemented yet" })
}

/// Runs an int8 op. Never panics: bad shapes were rejected by `prepare`, and every index is checked.
pub fn eval(op_index: u32, op: &Op, _weights: &[u8], _inputs: &[&[u8]], _output: &mut [u8]) -> Result<(), EngineError> {
    Err(EngineError::Unsupported { op: op_index, name: op.name(), reason: "int8 kernels not implemented yet" })
}
