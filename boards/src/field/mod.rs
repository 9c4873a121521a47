//! Field tools (std, no libtorch): the host side of flashing and the ground station. Each tool is
//! a clap `Args` struct plus a `run_*` function, so `rsim-field` and the main `rsim` CLI share them.

pub mod classmap;
pub mod flash;
pub mod ground;
pub mod link;
pub mod trust;

pub use flash::{run_confirm, run_flash, ConfirmArgs, FlashArgs};
pub use ground::{run_ground, GroundArgs};
pub use trust::{run_keygen, run_sign, run_verify, KeygenArgs, SignArgs, VerifyArgs};
