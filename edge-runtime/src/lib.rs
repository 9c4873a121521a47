//! `rsim-edge`: runs `.rsm` models with no heap during inference, on hosts, Linux boards and Cortex-M.
//!
//! [`Engine`] owns the run loop; `kernels::float` and `kernels::int8` are pure reference kernels;
//! [`preprocess`] turns camera pixels into the graph input.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let pixels = vec![0u8; 64 * 64 * 3];
//! let model = std::fs::read("model.rsm")?;
//! // The engine uses the arena from its first 16-byte-aligned byte: 15 spare bytes cover any start.
//! let mut arena = vec![0u8; rsim_edge::required_arena(&model)? + 15];
//! let mut engine = rsim_edge::Engine::new(&model, &mut arena)?; // validates every op once
//! engine.run_image_u8(&pixels, 64, 64, 3)?; // resize/crop/normalize per the model's input spec
//! let mut top = [(0u16, 0f32); 3];
//! let n = engine.top_k(&mut top);
//! for (class, score) in &top[..n] {
//!     println!("{} {score:.3}", engine.model().info.classes().nth(*class as usize).unwrap_or("?"));
//! }
//! # Ok(()) }
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
// Every `unsafe` the runtime needs (SIMD intrinsics, Cortex-M DSP assembly, the prepared-op records)
// lives in the rsim-edge-simd crate, behind safe, bounds-checked functions.
#![forbid(unsafe_code)]
// A model's bytes or an input must never stop a board: failures are typed errors, not panics (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

// Tensors are read in place as little-endian; every target rsim supports is little-endian.
#[cfg(target_endian = "big")]
compile_error!("rsim-edge reads model tensors in place and supports little-endian targets only");

pub mod engine;
pub mod error;
mod exec;
pub mod kernels;
mod prepared;
pub mod preprocess;
#[cfg(feature = "tract")]
pub mod tract_backend;

pub use engine::{required_arena, required_arena_with, Engine, Kernels, Options, PreparedReport};
pub use error::EngineError;
pub use rsim_model::{Model, ModelError};
