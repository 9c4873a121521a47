//! rsim-train: self-supervised pretraining, few-label evaluation and export on the host.
//!
//! Module ownership: `data`, `augment`, `metrics`, `plots`, `fetch` belong to the data pipeline
//! engineer; the rest (networks, methods, optimisers, training loop, CLI) to the trainer core.

// Data-pipeline side (stubs until the data engineer fills them in).
pub mod augment;
pub mod data;
pub mod fetch;
pub mod metrics;
pub mod plots;
