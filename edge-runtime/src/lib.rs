//! `rsim-edge`: runs `.rsm` models with no heap during inference, on hosts, Linux boards and Cortex-M.
//!
//! [`Engine`] owns the run loop; `kernels::float` and `kernels::int8` are pure reference kernels;
//! [`preprocess`] turns camera pixels into the graph input.
#![cfg_attr(not(feature = "std"), no_std)]

// Tensors are read in place as little-endian; every target rsim supports is little-endian.
#[cfg(target_endian = "big")]
compile_error!("rsim-edge reads model tensors in place and supports little-endian targets only");

pub mod engine;
pub mod error;
mod exec;
pub mod kernels;
pub mod preprocess;

pub use engine::{required_arena, Engine};
pub use error::EngineError;
pub use rsim_model::{Model, ModelError};
