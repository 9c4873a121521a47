//! What makes an image acceptable on this board: its SHA-256, a valid `.rsm`, limits the board can
//! meet, its signature and version (when the board holds keys), and the model's own test vector
//! reproduced by the board's runtime.

use super::sign::{self, SignError, TrustPolicy};
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
    /// Public keys and downgrade policy. `TrustPolicy::default()` (no keys): unsigned images are
    /// accepted and signatures are not checked.
    pub trust: TrustPolicy,
    /// Trial boot: `None` confirms a new image at commit (no trial). `Some(n)`: a committed image
    /// runs on trial and is confirmed after `n` successful inferences reported through
    /// [`super::Updater::inference_ok`] (`n = 0`: only by an explicit confirm from the ground); a boot
    /// before that reverts to the previous image.
    pub confirm_after: Option<u32>,
    /// Watchdog budget for one image verification (self-test included), in milliseconds, handed to
    /// [`SelfTest::arm_watchdog`]; 0 = the board sets none.
    pub verify_budget_ms: u32,
    /// Most multiply-accumulates one inference may take ([`Model::macs`]); `None` = no limit. Bounds
    /// the boot self-test and every onboard inference before the model can become active.
    pub max_macs: Option<u64>,
}

impl BoardLimits {
    /// Limits with no keys, no trial and no watchdog budget (the behaviour before signed images).
    pub const fn new(max_arena: u32, max_input_bytes: u32, require_test_vector: bool) -> Self {
        BoardLimits {
            max_arena,
            max_input_bytes,
            require_test_vector,
            trust: TrustPolicy { keys: &[], allow_downgrade: false },
            confirm_after: None,
            verify_budget_ms: 0,
            max_macs: None,
        }
    }
}

/// Runs a model on the board's runtime: the boot self-test. Implemented over `rsim_edge::Engine`
/// by firmware and agent; tests use doubles.
///
/// Every verification builds the runtime for the model ([`SelfTest::build`], or [`SelfTest::run`]
/// when the model has a test vector): no image becomes active without it.
pub trait SelfTest {
    /// Builds the board's runtime for `model` (decode, prepare, arena) without running it.
    fn build(&mut self, model: &[u8]) -> Result<(), &'static str>;
    /// Runs `model` on raw input tensor bytes; `Ok(())` when the output bytes equal `expected`.
    fn run(&mut self, model: &[u8], input: &[u8], expected: &[u8]) -> Result<(), &'static str>;
    /// Called before an image verification (hash, signature, decode, self-test) starts, with the
    /// board's budget in milliseconds ([`BoardLimits::verify_budget_ms`], 0 = none). Firmware starts
    /// its hardware watchdog here: a verification that hangs resets the board, and a reset during a
    /// commit or a trial boot leaves the previous image active. The default does nothing.
    fn arm_watchdog(&mut self, _budget_ms: u32) {}
    /// Called when that verification ended (either way).
    fn disarm_watchdog(&mut self) {}
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
    /// Signature or version check failed (unsigned on a keyed board, wrong key, changed byte,
    /// truncated image, rollback).
    Sign(SignError),
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
            VerifyError::Sign(SignError::Unsigned) => FlashErrorCode::Unsigned,
            VerifyError::Sign(SignError::Rollback { .. }) => FlashErrorCode::Rollback,
            VerifyError::Sign(_) => FlashErrorCode::BadSignature,
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
            VerifyError::Sign(e) => write!(f, "{e}"),
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

/// Full verification of the image in slot `slot`: hash, signature and version against `counter`
/// (when the board holds keys), decode, limits, and the runtime built (and its test vector run).
/// Returns the image's signed model version (0 on a board without keys).
#[allow(clippy::too_many_arguments, reason = "internal; each argument is one fact the check needs")]
pub fn verify_slot<F: MappedFlash, T: SelfTest>(
    flash: &mut F,
    layout: &Layout,
    slot: u8,
    len: u32,
    sha256: &[u8; 32],
    limits: &BoardLimits,
    counter: u32,
    selftest: &mut T,
) -> Result<u32, FlashError> {
    selftest.arm_watchdog(limits.verify_budget_ms);
    let r = verify_inner(flash, layout, slot, len, sha256, limits, counter, selftest);
    selftest.disarm_watchdog();
    r
}

#[allow(clippy::too_many_arguments, reason = "see verify_slot")]
fn verify_inner<F: MappedFlash, T: SelfTest>(
    flash: &mut F,
    layout: &Layout,
    slot: u8,
    len: u32,
    sha256: &[u8; 32],
    limits: &BoardLimits,
    counter: u32,
    selftest: &mut T,
) -> Result<u32, FlashError> {
    if len == 0 || len > layout.slot_len {
        return Err(FlashError::Verify(VerifyError::TooLarge { size: len, slot: layout.slot_len }));
    }
    let at = layout.slot(slot);
    if &hash_region(flash, at, len)? != sha256 {
        return Err(FlashError::Verify(VerifyError::HashMismatch));
    }
    let image = flash.mapped(at, len).ok_or(FlashError::Layout("slot is not memory-mapped"))?;
    let t = &limits.trust;
    let checked =
        sign::check(image, t.keys, counter, t.allow_downgrade).map_err(|e| FlashError::Verify(VerifyError::Sign(e)))?;
    let bytes = checked.rsm;
    let model = Model::parse(bytes).map_err(|e| FlashError::Verify(VerifyError::BadModel(e)))?;
    check_limits(&model, limits).map_err(FlashError::Verify)?;
    let st = match model.test_vector {
        Some(tv) => selftest.run(bytes, tv.input, tv.output),
        None => selftest.build(bytes),
    };
    st.map_err(|r| FlashError::Verify(VerifyError::SelfTest(r)))?;
    Ok(checked.version)
}
