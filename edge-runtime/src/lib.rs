//! `rsim-edge`: runs `.rsm` models with no heap during inference, on hosts, Linux boards and Cortex-M.
#![cfg_attr(not(feature = "std"), no_std)]

pub mod error;
pub mod kernels;

pub use error::EngineError;
pub use rsim_model::{Model, ModelError};
