//! Field tools that run the edge runtime instead of libtorch, so they work without the `train`
//! feature: `rsim quantize` (PTQ int8 / f16 from a float `.rsm`) and `rsim eval` (scores what ships).

pub mod bias_correct;
pub mod eval;
pub mod images;
pub mod quantize;
