//! ONNX writer: an `.rsm` model (float, or int8 as a QDQ graph) as an ONNX graph that tract-onnx
//! (or ONNX Runtime) runs, so a second, independent backend can check the runtime and serve Linux
//! boards.
//!
//! Layout: the ONNX model's input and output are the `.rsm` graph's own tensors, NHWC, byte for byte
//! (input `input` [1, H, W, C]; output `output` with the `.rsm` output's dims). Inside, every rank-4
//! activation is NCHW as ONNX's Conv/Pool ops require: a Transpose follows the input and precedes a
//! rank-4 output, and ops whose meaning depends on the layout (Reshape, Transpose, MatMul,
//! LayerNorm, FullyConnected on unflattened input) run on an NHWC view. Weights go back to PyTorch's
//! OIHW. F16 weights are widened to f32 initializers (the same values the runtime computes with).
//!
//! int8 graphs become QDQ graphs (see `qdq`): the input and output keep the `.rsm`'s dtype (int8
//! for `rsim quantize` models, so the ONNX model takes the same quantized tile the runtime does),
//! every op runs in float between DequantizeLinear and QuantizeLinear with the `.rsm`'s own
//! scales and zero points. Ops without an int8 form (LayerNorm, MatMul, Activation on int8
//! tensors) give an [`OnnxError`] naming them.

mod layout;
mod lower;
mod proto;
mod qdq;

pub use qdq::identify_lut;

use crate::format::Model;
use std::fmt;
use std::path::Path;

/// Opset the writer targets (HardSwish needs 14, LayerNormalization 17).
pub const OPSET: i64 = 17;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnnxError {
    /// Index of the op that could not be written, if one.
    pub op: Option<usize>,
    pub reason: String,
}

impl fmt::Display for OnnxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.op {
            Some(i) => write!(f, "cannot write op #{i} to ONNX: {}", self.reason),
            None => write!(f, "cannot write ONNX: {}", self.reason),
        }
    }
}

impl std::error::Error for OnnxError {}

/// The model as an ONNX `ModelProto`.
pub fn to_onnx_proto(model: &Model<'_>) -> Result<tract_onnx::pb::ModelProto, OnnxError> {
    lower::convert(model)
}

/// The model as ONNX protobuf bytes.
pub fn to_onnx(model: &Model<'_>) -> Result<Vec<u8>, OnnxError> {
    use prost::Message;
    Ok(to_onnx_proto(model)?.encode_to_vec())
}

/// Writes the ONNX form of `model` to `path` (temp file + rename).
pub fn write_onnx(model: &Model<'_>, path: &Path) -> Result<(), OnnxError> {
    let bytes = to_onnx(model)?;
    crate::write::write_atomic(path, &bytes)
        .map_err(|e| OnnxError { op: None, reason: format!("writing {}: {e}", path.display()) })
}
