//! `rsim_edge::Engine` as the loop's [`Classifier`] and as the flash [`SelfTest`].

use super::{Classifier, Output};
use crate::flash::SelfTest;
use rsim_edge::{Engine, EngineError, Options};
use rsim_model::{DType, Quant};

/// Classifies tiles with the edge runtime (preprocessing per the model's input spec inside).
pub struct EngineClassifier<'m, 'a> {
    pub engine: Engine<'m, 'a>,
}

impl<'m, 'a> EngineClassifier<'m, 'a> {
    /// Prepared ops and fast kernels when the arena holds them, lean mode otherwise (see `board_engine` below).
    pub fn new(model: &'m [u8], arena: &'a mut [u8]) -> Result<Self, EngineError> {
        Ok(EngineClassifier { engine: board_engine(model, arena)? })
    }
}

/// A board's engine: with the persistent part (decoded ops, fast kernels) when `arena` has room for
/// [`rsim_edge::required_arena`], else in lean mode within the planned activations (microcontrollers
/// whose RAM holds only those). Both give the same output bytes.
pub fn board_engine<'m, 'a>(model: &'m [u8], arena: &'a mut [u8]) -> Result<Engine<'m, 'a>, EngineError> {
    let full = rsim_edge::required_arena(model)?;
    let skip = arena.as_ptr().align_offset(rsim_edge::engine::ARENA_ALIGN).min(arena.len());
    let lean = arena.len() - skip < full;
    Engine::with_options(model, arena, Options { lean, ..Options::default() })
}

impl Classifier for EngineClassifier<'_, '_> {
    type Error = EngineError;
    fn classify(&mut self, pixels: &[u8], width: u32, height: u32, channels: u32) -> Result<(), EngineError> {
        self.engine.run_image_u8(pixels, width, height, channels)
    }
    fn output(&self) -> Output<'_> {
        let t = self.engine.model().info.output;
        let data = self.engine.output();
        match (t.dtype, t.quant) {
            (DType::I8, Quant::PerTensor { scale, zero_point }) => Output::I8 { data, scale, zero_point },
            (DType::I8, _) => Output::I8 { data, scale: 1.0, zero_point: 0 },
            _ => Output::F32 { data },
        }
    }
    fn arena_high_water(&self) -> u32 {
        self.engine.arena_used() as u32
    }
}

/// Boot/commit self-test: runs the model's test vector input through the engine and compares
/// the output bytes exactly.
pub struct EngineSelfTest<'a> {
    pub arena: &'a mut [u8],
}

impl SelfTest for EngineSelfTest<'_> {
    fn build(&mut self, model: &[u8]) -> Result<(), &'static str> {
        board_engine(model, self.arena).map(|_| ()).map_err(|e| match e {
            EngineError::ArenaTooSmall { .. } => "board arena too small for the model",
            _ => "runtime refused the model",
        })
    }
    fn run(&mut self, model: &[u8], input: &[u8], expected: &[u8]) -> Result<(), &'static str> {
        let mut e = board_engine(model, self.arena).map_err(|e| match e {
            EngineError::ArenaTooSmall { .. } => "board arena too small for the model",
            _ => "runtime refused the model",
        })?;
        let dst = e.input_mut();
        if dst.len() != input.len() {
            return Err("test vector input size differs from the graph input");
        }
        dst.copy_from_slice(input);
        e.invoke().map_err(|_| "model failed to run")?;
        if e.output() == expected {
            Ok(())
        } else {
            Err("output differs from the model's test vector")
        }
    }
}

#[cfg(feature = "std")]
/// An owned-arena self-test for hosts and Linux boards.
pub struct OwnedSelfTest(pub Vec<u8>);

#[cfg(feature = "std")]
impl SelfTest for OwnedSelfTest {
    fn build(&mut self, model: &[u8]) -> Result<(), &'static str> {
        EngineSelfTest { arena: &mut self.0 }.build(model)
    }
    fn run(&mut self, model: &[u8], input: &[u8], expected: &[u8]) -> Result<(), &'static str> {
        EngineSelfTest { arena: &mut self.0 }.run(model, input, expected)
    }
}
