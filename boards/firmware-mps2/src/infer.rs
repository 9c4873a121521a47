//! Inference through rsim-edge on the caller's arena: no heap, no panics, typed errors.
use rsim_edge::{Engine, EngineError};

/// Validates and prepares the model once, then for each input-tensor-sized chunk of `inputs` copies
/// it into the input tensor, runs every op and hands the output tensor's bytes to `report` (they live
/// in the arena, so they are lent, not returned).
pub fn run(model: &[u8], inputs: &[u8], arena: &mut [u8], mut report: impl FnMut(&[u8])) -> Result<(), EngineError> {
    let mut engine = Engine::new(model, arena)?;
    let n = engine.input_mut().len();
    if n == 0 || inputs.is_empty() || inputs.len() % n != 0 {
        return Err(EngineError::BadInput { reason: "embedded inputs are not a whole number of input tensors" });
    }
    for input in inputs.chunks_exact(n) {
        engine.input_mut().copy_from_slice(input);
        engine.invoke()?;
        report(engine.output());
    }
    Ok(())
}
