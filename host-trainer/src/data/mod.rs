//! Datasets, splits, decoding and the parallel loader. No tch here: batches are plain f32
//! NCHW buffers and i64 labels that the training loop turns into tensors.
pub mod bench;
pub mod dataset;
pub mod decode;
pub mod error;
pub mod loader;
pub mod rng;
pub mod split;
pub mod tile;

pub use dataset::{Dataset, Sample};
pub use error::DataError;
pub use loader::{Batch, Loader, LoaderConfig, LoaderState};
pub use tile::{Img, Scaling, Tile, TileData};
