//! Second backend and oracle (feature `tract`, std): runs the ONNX form of a model through
//! tract-onnx. Linux boards can use it as a faster path; tests use it as an independent reference.
//!
//! Input and output are the `.rsm` graph's own tensors (NHWC f32), because rsim's ONNX writer keeps
//! them at the interface (see `rsim_model::onnx`).

use std::fmt;
use std::sync::Arc;
use tract_onnx::prelude::*;

/// A tract failure (load, optimize or run), with tract's message chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TractError(pub String);

impl fmt::Display for TractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tract: {}", self.0)
    }
}

impl std::error::Error for TractError {}

fn wrap(what: &str) -> impl Fn(TractError_) -> TractError + '_ {
    move |e| TractError(format!("{what}: {e:#}"))
}

type TractError_ = tract_onnx::prelude::TractError;

/// An optimized, runnable ONNX model with one f32 input and one f32 output.
pub struct TractModel {
    plan: Arc<TypedRunnableModel>,
    input_shape: Vec<usize>,
    output_shape: Vec<usize>,
}

impl TractModel {
    /// Loads ONNX bytes, fixes the input to its declared shape, and optimizes.
    pub fn from_onnx(bytes: &[u8]) -> Result<TractModel, TractError> {
        let model = tract_onnx::onnx().model_for_read(&mut &bytes[..]).map_err(wrap("loading the ONNX model"))?;
        let typed = model.into_optimized().map_err(wrap("optimizing"))?;
        let input_shape = shape_of(typed.input_fact(0).map_err(wrap("reading the input"))?)?;
        let output_shape = shape_of(typed.output_fact(0).map_err(wrap("reading the output"))?)?;
        let plan = typed.into_runnable().map_err(wrap("planning"))?;
        Ok(TractModel { plan, input_shape, output_shape })
    }

    /// Converts an `.rsm` model with f32 input and output to ONNX and loads that (int8-I/O models are refused by name).
    pub fn from_rsm(model_bytes: &[u8]) -> Result<TractModel, TractError> {
        let model =
            rsim_model::Model::parse(model_bytes).map_err(|e| TractError(format!("parsing the .rsm model: {e}")))?;
        let dtype = model.info.input.dtype;
        if dtype != rsim_model::DType::F32 {
            return Err(TractError(format!(
                "this backend feeds f32 tiles, the model's input is {dtype:?} (an int8 model from `rsim quantize`): \
                 run it with the edge runtime, or export its QDQ ONNX (`rsim export --ckpt m.rsm --format onnx`) for an int8-I/O ONNX runtime"
            )));
        }
        let onnx = rsim_model::onnx::to_onnx(&model).map_err(|e| TractError(e.to_string()))?;
        TractModel::from_onnx(&onnx)
    }

    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    pub fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    /// Runs one input (row-major in the input shape, i.e. NHWC for images) and returns the output.
    pub fn run_f32(&self, input: &[f32]) -> Result<Vec<f32>, TractError> {
        let expected: usize = self.input_shape.iter().product();
        if input.len() != expected {
            return Err(TractError(format!(
                "input has {} values, the model takes {:?} = {expected}",
                input.len(),
                self.input_shape
            )));
        }
        let t = Tensor::from_shape(&self.input_shape, input).map_err(wrap("building the input"))?;
        let out = self.plan.run(tvec!(t.into())).map_err(wrap("running"))?;
        let first = out.first().ok_or_else(|| TractError("model produced no output".into()))?;
        let view = first.to_plain_array_view::<f32>().map_err(wrap("reading the output"))?;
        Ok(view.iter().copied().collect())
    }
}

fn shape_of(fact: &TypedFact) -> Result<Vec<usize>, TractError> {
    fact.shape
        .as_concrete()
        .map(|s| s.to_vec())
        .ok_or_else(|| TractError(format!("shape {:?} is not concrete", fact.shape)))
}
