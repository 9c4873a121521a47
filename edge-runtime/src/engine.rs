//! The engine: a parsed model, a prepared op list and one caller-owned arena. Nothing allocates.
//!
//! Arena contract: the caller passes any byte buffer; the engine uses it from its first 16-byte
//! aligned address (skipping up to 15 bytes), and needs `info.arena_size` bytes from there. So a
//! 16-byte-aligned buffer of [`required_arena`] bytes is enough, an unaligned one may need up to
//! 15 more, and one byte short is [`EngineError::ArenaTooSmall`].
//!
//! Model bytes: constants are read in place (flash stays flash) at any alignment. When the bytes
//! start 4-byte aligned (the weights section is 16-aligned within the file) f32 weights are read as
//! `&[f32]`; otherwise (e.g. a bare `include_bytes!`) as little-endian byte arrays, same results.

use crate::exec;
use crate::preprocess;
use crate::EngineError;
use rsim_model::{DType, Model, Op, Quant, Tensor};

/// Alignment of the arena start the engine uses.
pub const ARENA_ALIGN: usize = 16;

/// One model running in one caller-owned arena. Feed it with [`set_input_f32`](Self::set_input_f32),
/// [`set_input_image_u8`](Self::set_input_image_u8) or [`input_mut`](Self::input_mut), run it with
/// [`invoke`](Self::invoke), read [`output`](Self::output), [`output_f32`](Self::output_f32) or
/// [`top_k`](Self::top_k). `run_f32` / `run_image_u8` set the input and invoke in one call.
pub struct Engine<'m, 'a> {
    model: Model<'m>,
    /// Exactly `info.arena_size` bytes, starting 16-byte aligned.
    arena: &'a mut [u8],
    high_water: usize,
}

/// Bytes of arena a 16-byte-aligned buffer needs for this model (its planned arena size).
pub fn required_arena(model: &[u8]) -> Result<usize, EngineError> {
    Ok(Model::parse(model)?.info.arena_size as usize)
}

impl<'m, 'a> Engine<'m, 'a> {
    /// Parses and validates the model, checks every op (shapes, dtypes, parameters, arena placement)
    /// and takes the arena. After this, `invoke` fails only on a kernel bug, never on model bytes.
    ///
    /// Errors: [`EngineError::Model`] when the bytes do not decode or validate;
    /// [`EngineError::ArenaTooSmall`] (`needed` includes the bytes skipped to reach 16-byte
    /// alignment); [`EngineError::Unsupported`] naming the first op this runtime cannot run and why;
    /// [`EngineError::Aliasing`] when a plan puts an op's output over one of its inputs.
    pub fn new(model: &'m [u8], arena: &'a mut [u8]) -> Result<Self, EngineError> {
        let model = Model::parse(model)?;
        let need = model.info.arena_size as usize;
        let addr = arena.as_ptr() as usize;
        let skip = (ARENA_ALIGN - addr % ARENA_ALIGN) % ARENA_ALIGN;
        let given = arena.len();
        let arena = match arena.get_mut(skip..).and_then(|a| a.get_mut(..need)) {
            Some(a) => a,
            None => return Err(EngineError::ArenaTooSmall { needed: need.saturating_add(skip), given }),
        };
        let mut high_water = 0;
        for t in [&model.info.input, &model.info.output] {
            let (_, end) = exec::arena_span(t).ok_or(EngineError::BadInput { reason: "graph input/output must be arena tensors" })?;
            if end > need {
                return Err(EngineError::BadInput { reason: "graph input/output lies outside the arena" });
            }
            high_water = high_water.max(end);
        }
        for (i, op) in model.ops().enumerate() {
            let op = op?;
            let hw = exec::prepare_op(i as u32, &op, &model, need)?;
            high_water = high_water.max(hw);
        }
        Ok(Engine { model, arena, high_water })
    }

    pub fn model(&self) -> &Model<'m> {
        &self.model
    }

    /// Highest arena byte any tensor occupies (from the aligned start), for board telemetry.
    pub fn arena_used(&self) -> usize {
        self.high_water
    }

    fn span(&self, t: &Tensor) -> (usize, usize) {
        exec::arena_span(t).unwrap_or((0, 0))
    }

    /// Raw bytes of the graph input tensor (fill, then `invoke`).
    pub fn input_mut(&mut self) -> &mut [u8] {
        let (s, e) = self.span(&self.model.info.input);
        self.arena.get_mut(s..e).unwrap_or_default()
    }

    /// Raw bytes of the graph output tensor (valid after `invoke`).
    pub fn output(&self) -> &[u8] {
        let (s, e) = self.span(&self.model.info.output);
        self.arena.get(s..e).unwrap_or_default()
    }

    /// Runs every op in order on whatever the input tensor holds.
    pub fn invoke(&mut self) -> Result<(), EngineError> {
        self.invoke_observed(&mut |_, _, _| {})
    }

    /// As [`invoke`](Self::invoke), calling `f(op_index, op, output_bytes)` after each op, so tests can
    /// compare every intermediate tensor and boards can trace.
    pub fn invoke_observed(&mut self, f: &mut dyn FnMut(u32, &Op, &[u8])) -> Result<(), EngineError> {
        let weights = self.model.weights;
        for (i, op) in self.model.ops().enumerate() {
            let op = op?;
            let (s, e) = exec::run_op(i as u32, &op, weights, self.arena)?;
            f(i as u32, &op, self.arena.get(s..e).unwrap_or_default());
        }
        Ok(())
    }

    /// Writes already-normalized NHWC floats into the graph input (quantized when it is int8).
    /// The input lives in the planned arena, so a run may overwrite it: set it before every run.
    pub fn set_input_f32(&mut self, nhwc: &[f32]) -> Result<(), EngineError> {
        let input = self.model.info.input;
        let q = input_quant(&input)?;
        if Some(nhwc.len()) != input.shape.checked_len() {
            return Err(EngineError::BadInput { reason: "input length does not match the graph input tensor" });
        }
        let dst = self.input_mut();
        match q {
            None => {
                for (d, v) in dst.chunks_exact_mut(4).zip(nhwc) {
                    d.copy_from_slice(&v.to_le_bytes());
                }
            }
            Some((scale, zp)) => {
                for (d, &v) in dst.iter_mut().zip(nhwc) {
                    *d = preprocess::quantize_i8(v, scale, zp) as u8;
                }
            }
        }
        Ok(())
    }

    /// [`set_input_f32`](Self::set_input_f32), then [`invoke`](Self::invoke).
    pub fn run_f32(&mut self, nhwc: &[f32]) -> Result<(), EngineError> {
        self.set_input_f32(nhwc)?;
        self.invoke()
    }

    /// Preprocesses an image of u8 pixels (`channels` bands, in the input spec's layout) into the
    /// graph input: resize, centre crop and normalize per the model's [`InputSpec`](rsim_model::InputSpec)
    /// (see [`preprocess`](mod@crate::preprocess)).
    pub fn set_input_image_u8(&mut self, pixels: &[u8], width: u32, height: u32, channels: u32) -> Result<(), EngineError> {
        let info = self.model.info;
        let q = input_quant(&info.input)?;
        let img = preprocess::Image { pixels, width, height, channels, layout: info.input_spec.layout };
        let dst = self.input_mut();
        preprocess::preprocess(&img, &info.input_spec, &info.input.shape, q, dst)
    }

    /// [`set_input_image_u8`](Self::set_input_image_u8), then [`invoke`](Self::invoke).
    pub fn run_image_u8(&mut self, pixels: &[u8], width: u32, height: u32, channels: u32) -> Result<(), EngineError> {
        self.set_input_image_u8(pixels, width, height, channels)?;
        self.invoke()
    }

    /// Number of elements in the graph output.
    pub fn output_len(&self) -> usize {
        self.model.info.output.shape.checked_len().unwrap_or(0)
    }

    /// Output element `i` as f32 (int8 outputs dequantized).
    fn output_value(&self, out: &[u8], i: usize, q: Option<(f32, i32)>) -> Option<f32> {
        match q {
            None => out.get(i * 4..i * 4 + 4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Some((scale, zp)) => out.get(i).map(|&b| rsim_model::quant::dequantize_i8(b as i8, scale, zp)),
        }
    }

    /// Writes the output as f32 (dequantizing int8) into `out[..output_len()]`; returns the count.
    pub fn output_f32(&self, out: &mut [f32]) -> Result<usize, EngineError> {
        let q = output_quant(&self.model.info.output)?;
        let n = self.output_len();
        let dst = out.get_mut(..n).ok_or(EngineError::BadInput { reason: "output buffer is shorter than the graph output" })?;
        let bytes = self.output();
        for (i, d) in dst.iter_mut().enumerate() {
            *d = self.output_value(bytes, i, q).unwrap_or(0.0);
        }
        Ok(n)
    }

    /// The `out.len()` best classes as (index, score), best first; equal scores keep the lower index
    /// first. Returns how many entries were filled (fewer when the output has fewer classes).
    /// Scores are the dequantized outputs; NaN ranks last.
    pub fn top_k(&self, out: &mut [(u16, f32)]) -> usize {
        let Ok(q) = output_quant(&self.model.info.output) else { return 0 };
        let bytes = self.output();
        let n = self.output_len().min(u16::MAX as usize + 1);
        let scores = (0..n).map(|i| self.output_value(bytes, i, q).unwrap_or(f32::NAN));
        top_k_into(scores, out)
    }
}

/// Keeps the best `out.len()` of `scores` in `out`, sorted; see [`Engine::top_k`].
pub fn top_k_into(scores: impl Iterator<Item = f32>, out: &mut [(u16, f32)]) -> usize {
    let key = |s: f32| if s.is_nan() { f32::NEG_INFINITY } else { s };
    let mut filled = 0usize;
    for (i, s) in scores.enumerate().take(u16::MAX as usize + 1) {
        // First slot holding a strictly worse score: later equal scores stay behind earlier ones.
        let pos = out.iter().take(filled).position(|&(_, o)| key(o) < key(s)).unwrap_or(filled);
        if pos >= out.len() {
            continue;
        }
        let end = filled.min(out.len() - 1);
        if let Some(tail) = out.get_mut(pos..=end) {
            tail.rotate_right(1);
        }
        if let Some(slot) = out.get_mut(pos) {
            *slot = (i as u16, s);
        }
        filled = (filled + 1).min(out.len());
    }
    filled
}

/// The graph input's quantization: `None` for f32, `(scale, zero_point)` for per-tensor int8.
fn input_quant(t: &Tensor) -> Result<Option<(f32, i32)>, EngineError> {
    match (t.dtype, t.quant) {
        (DType::F32, _) => Ok(None),
        (DType::I8, Quant::PerTensor { scale, zero_point }) => Ok(Some((scale, zero_point))),
        (DType::I8, _) => Err(EngineError::BadInput { reason: "int8 graph input needs per-tensor quantization" }),
        _ => Err(EngineError::BadInput { reason: "graph input must be f32 or int8" }),
    }
}

fn output_quant(t: &Tensor) -> Result<Option<(f32, i32)>, EngineError> {
    input_quant(t).map_err(|_| EngineError::BadInput { reason: "graph output must be f32 or per-tensor int8" })
}
