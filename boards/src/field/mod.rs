//! Field tools (std, no libtorch): the host side of flashing and the ground station. Each tool is
//! a clap `Args` struct plus a `run_*` function, so `rsim-field` and the main `rsim` CLI share them.

pub mod classmap;
pub mod flash;
pub mod ground;
pub mod link;

pub use flash::{run_flash, FlashArgs};
pub use ground::{run_ground, GroundArgs};
