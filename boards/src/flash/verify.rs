//! What makes an image acceptable on this board: its SHA-256, a valid `.rsm`, limits the board can
//! meet, and the model's own test vector reproduced by the board's runtime.

use super::{storage, FlashError, Layout, MappedFlash};
use crate::error::{Error, ErrorKind};
use crate::wire::FlashErrorCode;
use core::fmt;
use rsim_model::{Model, ModelError};
use sha2::{Digest, Sha256};

/// What the board can run. A model beyond any limit is refused before it can become active.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoardLimits {
    /// Arena bytes the firmware reserves.
    pub max_arena: u32,
    /// Largest graph input tensor in bytes.
    pub max_input_bytes: u32,
    /// Refuse models without an embedded test vector (the boot self-test needs one).
    pub require_test_vector: bool,
    /// Most multiply-accumulates one inference may take ([`Model::macs`]); `None` = no limit. Bounds
    /// the boot self-test and every onboard inference before the model can become active.
    pub max_macs: Option<u64>,
}

/// Runs a model on the board's runtime: the boot self-test. Implemented over `rsim_edge::Engine`
/// by firmware and agent; tests use doubles.
pub trait SelfTest {
    /// Runs `model` on raw input tensor bytes; `Ok(())` when the output bytes equal `expected`.
    fn run(&mut self, model: &[u8], input: &[u8], expected: &[u8]) -> Result<(), &'static str>;
}

/// Why an image was refused.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum VerifyError {
    /// The slot's bytes hash differently from what was announced or recorded.
    HashMismatch,
    /// The bytes are not a valid `.rsm` model.
    BadModel(ModelError),
    /// The model exceeds the board (the reason names the limit).
    WrongBoard(&'static str),
    /// The image is bigger than a slot.
    TooLarge { size: u32, slot: u32 },
    /// The model has no test vector and the board requires one.
    NoTestVector,
    /// The board's runtime gave a different output for the test vector (or failed to run it).
    SelfTest(&'static str),
    /// One inference needs `macs` multiply-accumulates, over the board's `limit`.
    TooMuchCompute { macs: u64, limit: u64 },
}

impl VerifyError {
    /// The wire code reported to the host.
    pub fn code(&self) -> FlashErrorCode {
        match self {
            VerifyError::HashMismatch => FlashErrorCode::HashMismatch,
            VerifyError::BadModel(_) | VerifyError::NoTestVector => FlashErrorCode::BadModel,
            VerifyError::WrongBoard(_) | VerifyError::TooMuchCompute { .. } => FlashErrorCode::WrongBoard,
            VerifyError::TooLarge { .. } => FlashErrorCode::TooLarge,
            VerifyError::SelfTest(_) => FlashErrorCode::SelfTestFailed,
        }
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::HashMismatch => f.write_str("image SHA-256 does not match"),
            VerifyError::BadModel(e) => write!(f, "image is not a valid model: {e}"),
            VerifyError::WrongBoard(r) => write!(f, "model does not fit this board: {r}"),
            VerifyError::TooLarge { size, slot } => write!(f, "image of {size} bytes exceeds the {slot}-byte slot"),
            VerifyError::NoTestVector => f.write_str("model has no test vector for the boot self-test"),
            VerifyError::SelfTest(r) => write!(f, "boot self-test failed: {r}"),
            VerifyError::TooMuchCompute { macs, limit } => {
                write!(f, "model needs {macs} multiply-accumulates per inference, over the board's {limit}")
            }
        }
    }
}

impl Error for VerifyError {
    fn kind(&self) -> ErrorKind {
        match self {
            VerifyError::WrongBoard(_) | VerifyError::TooLarge { .. } | VerifyError::TooMuchCompute { .. } => {
                ErrorKind::WrongBoard
            }
            _ => ErrorKind::Verify,
        }
    }
}

/// Checks a parsed model against the board's limits.
pub fn check_limits(model: &Model<'_>, limits: &BoardLimits) -> Result<(), VerifyError> {
    if model.info.arena_size > limits.max_arena {
        return Err(VerifyError::WrongBoard("model arena is larger than the board's arena"));
    }
    let input = model.info.input.byte_len().ok_or(VerifyError::WrongBoard("input tensor size overflows"))?;
    if input > limits.max_input_bytes as usize {
        return Err(VerifyError::WrongBoard("model input is larger than the board's input buffer"));
    }
    if limits.require_test_vector && model.test_vector.is_none() {
        return Err(VerifyError::NoTestVector);
    }
    if let Some(limit) = limits.max_macs {
        let macs = model.macs().map_err(VerifyError::BadModel)?;
        if macs > limit {
            return Err(VerifyError::TooMuchCompute { macs, limit });
        }
    }
    Ok(())
}

/// SHA-256 of `len` bytes at `at`, read back from flash in blocks.
pub fn hash_region<F: MappedFlash>(flash: &mut F, at: u32, len: u32) -> Result<[u8; 32], FlashError> {
    let mut h = Sha256::new();
    let mut buf = [0u8; 256];
    let mut done = 0u32;
    while done < len {
        let n = (len - done).min(buf.len() as u32);
        let b = &mut buf[..n as usize];
        flash.read(at + done, b).map_err(storage)?;
        h.update(&*b);
        done += n;
    }
    Ok(h.finalize().into())
}

/// Full verification of the image in slot `slot`: hash, decode, limits, self-test.
pub fn verify_slot<F: MappedFlash, T: SelfTest>(
    flash: &mut F,
    layout: &Layout,
    slot: u8,
    len: u32,
    sha256: &[u8; 32],
    limits: &BoardLimits,
    selftest: &mut T,
) -> Result<(), FlashError> {
    if len == 0 || len > layout.slot_len {
        return Err(FlashError::Verify(VerifyError::TooLarge { size: len, slot: layout.slot_len }));
    }
    let at = layout.slot(slot);
    if &hash_region(flash, at, len)? != sha256 {
        return Err(FlashError::Verify(VerifyError::HashMismatch));
    }
    let bytes = flash.mapped(at, len).ok_or(FlashError::Layout("slot is not memory-mapped"))?;
    let model = Model::parse(bytes).map_err(|e| FlashError::Verify(VerifyError::BadModel(e)))?;
    check_limits(&model, limits).map_err(FlashError::Verify)?;
    if let Some(tv) = model.test_vector {
        selftest.run(bytes, tv.input, tv.output).map_err(|r| FlashError::Verify(VerifyError::SelfTest(r)))?;
    }
    Ok(())
}
