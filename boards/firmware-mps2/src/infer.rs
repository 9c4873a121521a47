//! One inference through rsim-edge on the caller's arena: no heap, no panics, typed errors.
use rsim_edge::{Engine, EngineError};

/// Validates and prepares the model, copies `input` into its input tensor, runs every op and hands
/// the output tensor's bytes to `report` (they live in the arena, so they are lent, not returned).
pub fn run(model: &[u8], input: &[u8], arena: &mut [u8], report: impl FnOnce(&[u8])) -> Result<(), EngineError> {
    let mut engine = Engine::new(model, arena)?;
    let dst = engine.input_mut();
    if dst.len() != input.len() {
        return Err(EngineError::BadInput { reason: "embedded input size differs from the model's input tensor" });
    }
    dst.copy_from_slice(input);
    engine.invoke()?;
    report(engine.output());
    Ok(())
}
