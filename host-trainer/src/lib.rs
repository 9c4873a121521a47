//! rsim-train: self-supervised pretraining, few-label evaluation and export on the host.
//!
//! Two halves: the data side (`data`, `augment`, `metrics`, `plots`, `fetch`, `field`) needs no
//! libtorch and builds without the `train` feature; the trainer core (networks, methods, optimisers,
//! the training loop, the training commands) links libtorch through tch.

/// The `rsim` command line (field and data commands always; training with `train`).
pub mod app;

// Data side: no libtorch.
pub mod augment;
pub mod data;
pub mod fetch;
/// Field tools on the edge runtime: `rsim quantize`, `rsim eval` (no libtorch).
pub mod field;
pub mod metrics;
pub mod plots;

// Trainer core (needs libtorch: the `train` feature).
#[cfg(feature = "train")]
pub mod amp;
#[cfg(feature = "train")]
pub mod bank;
#[cfg(feature = "train")]
pub mod bench;
#[cfg(feature = "train")]
pub mod checkpoint;
#[cfg(feature = "train")]
pub mod classifier;
#[cfg(feature = "train")]
pub mod cli;
#[cfg(feature = "train")]
pub mod distill;
#[cfg(feature = "train")]
pub mod export;
#[cfg(feature = "train")]
pub mod graph_net;
#[cfg(feature = "train")]
pub mod loader_views;
#[cfg(feature = "train")]
pub mod loss;
#[cfg(feature = "train")]
pub mod methods;
#[cfg(feature = "train")]
pub mod net;
#[cfg(feature = "train")]
pub mod optim;
#[cfg(feature = "train")]
pub mod probe;
#[cfg(feature = "train")]
pub mod qat;
#[cfg(feature = "train")]
pub mod train;
#[cfg(feature = "train")]
pub mod views;
