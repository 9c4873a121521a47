//! One inference through rsim-edge, borrowing the caller's arena.
use rsim_model::{Model, ModelError};

/// STAND-IN until `rsim_edge::Engine` lands: validates the model and returns the input bytes.
pub fn run<'a>(model: &[u8], input: &[u8], arena: &'a mut [u8]) -> Result<&'a [u8], ModelError> {
    let _ = Model::parse(model)?;
    let n = input.len().min(arena.len());
    let (dst, _) = arena.split_at_mut(n);
    dst.copy_from_slice(input.get(..n).unwrap_or(&[]));
    Ok(dst)
}
