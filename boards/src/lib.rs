//! `rsim-boards`: the onboard inference loop, telemetry and the A/B flashing protocol.
//!
//! The core is `no_std` without `alloc`, so Cortex-M firmware uses it as is: boards provide a frame
//! source, an [`embedded_io::Write`] link, a [`clock::Clock`] and [`embedded_storage::nor_flash::NorFlash`]
//! storage; everything else (framing, slots, boot record, self-test, tiling, telemetry) lives here.
//! With the `std` feature it adds the field tools (`field`: flash host side, ground station), a
//! seeded link simulator (`sim`) and RAM/file-backed flash emulation (`flash::emu`).
//! Wire formats are specified in `docs/WIRE.md`.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
// Board code must not stop on a bad byte: failures are typed errors, never panics (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod clock;
pub mod error;
pub mod flash;
pub mod onboard;
pub mod wire;

#[cfg(feature = "std")]
pub mod demo;
#[cfg(feature = "std")]
pub mod field;
#[cfg(feature = "std")]
pub mod sim;

pub use error::ErrorKind;
