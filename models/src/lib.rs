//! `rsim-model`: the `.rsm` container shared by the host trainer and the edge runtime.
//!
//! The core (`no_std`, no `alloc`) decodes and validates model bytes in place; see `docs/FORMAT.md`.
//! With the `std` feature it also writes models, builds architectures and converts ONNX/TFLite.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
// A model's bytes or an input must never stop a board: failures are typed errors, not panics (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod conv;
pub mod cost;
pub mod error;
pub mod format;
pub mod graph;
pub mod quant;
pub mod rng;

#[cfg(feature = "std")]
pub mod arch;
#[cfg(feature = "std")]
pub mod calib;
#[cfg(feature = "std")]
pub mod graph_builder;
#[cfg(feature = "onnx")]
pub mod onnx;
#[cfg(feature = "std")]
pub mod plan;
#[cfg(feature = "std")]
pub mod ptq;
#[cfg(feature = "std")]
pub mod tflite;
#[cfg(feature = "std")]
pub mod write;

pub use conv::{ConvError, ConvGeometry, ConvKind};
pub use error::ModelError;
pub use format::{Model, FORMAT_VERSION, MAGIC};
pub use graph::*;
