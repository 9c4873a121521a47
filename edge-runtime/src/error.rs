//! Runtime errors. Nothing in the runtime panics on model bytes or input; it returns one of these.

use core::fmt;
use rsim_model::ModelError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineError {
    /// The model bytes did not decode or validate.
    Model(ModelError),
    /// The arena given to `Engine::new` is smaller than the model's planned arena.
    ArenaTooSmall { needed: usize, given: usize },
    /// Op `op` (named `name`) has shapes, dtypes or parameters this runtime cannot execute.
    Unsupported { op: u32, name: &'static str, reason: &'static str },
    /// Op `op`'s output overlaps one of its inputs in the arena (the plan is invalid).
    Aliasing { op: u32 },
    /// The input given to `run_*` does not match the model's input spec.
    BadInput { reason: &'static str },
    /// One inference needs `macs` multiply-accumulates, more than the `limit` the caller allows
    /// ([`Options::max_macs`](crate::Options::max_macs)).
    OverBudget { macs: u64, limit: u64 },
}

impl From<ModelError> for EngineError {
    fn from(e: ModelError) -> Self {
        EngineError::Model(e)
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Model(e) => write!(f, "{e}"),
            EngineError::ArenaTooSmall { needed, given } => {
                write!(f, "arena of {given} bytes is too small: the model needs {needed} (16-byte aligned)")
            }
            EngineError::Unsupported { op, name, reason } => write!(f, "op #{op} ({name}) cannot run: {reason}"),
            EngineError::Aliasing { op } => write!(f, "op #{op}: output overlaps an input in the arena plan"),
            EngineError::BadInput { reason } => write!(f, "bad input: {reason}"),
            EngineError::OverBudget { macs, limit } => {
                write!(f, "model needs {macs} multiply-accumulates per inference, over the budget of {limit}")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for EngineError {}
