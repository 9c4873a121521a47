//! Device side of flashing: A/B model slots on `embedded-storage` NOR flash, a power-cut-safe boot
//! record, verification (SHA-256, model decode, board limits, self-test) and rollback. The host
//! side is [`host::Sender`], a sans-IO state machine shared by the real flasher and the simulator.
//!
//! Flash layout (offsets relative to [`Layout::base`]): two boot-record copies, one erase page each,
//! then slot A and slot B of `slot_len` bytes. See `docs/WIRE.md` "Flashing".

mod boot;
mod device;
pub mod host;
mod record;
mod service;
pub mod sign;
mod verify;

#[cfg(feature = "std")]
pub mod emu;

pub use boot::{boot, Booted};
pub use device::Updater;
pub use record::{BootRecord, SlotInfo, RECORD_LEN};
pub use service::{Activated, ActiveImage, LinkService, Polled};
pub use verify::{BoardLimits, SelfTest, VerifyError};

use crate::error::{Error, ErrorKind};
use core::fmt;
use embedded_storage::nor_flash::{NorFlash, NorFlashErrorKind};

/// Flash whose contents can also be read in place (memory-mapped/XIP flash, or an emulation), so a
/// model in a slot can be decoded and run without copying it to RAM.
pub trait MappedFlash: NorFlash {
    /// `len` bytes at `offset`, or `None` if out of range.
    fn mapped(&self, offset: u32, len: u32) -> Option<&[u8]>;
}

/// Where the boot records and the two slots live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// First byte of the region (erase-aligned).
    pub base: u32,
    /// Erase page size of the flash.
    pub erase: u32,
    /// Bytes per slot (a multiple of `erase`).
    pub slot_len: u32,
}

impl Layout {
    /// Splits `[base, base + len)` into two record pages and two equal slots.
    pub fn split(base: u32, len: u32, erase: u32) -> Result<Layout, FlashError> {
        if erase == 0 || !base.is_multiple_of(erase) {
            return Err(FlashError::Layout("region base must be aligned to the erase size"));
        }
        let slots = len.checked_sub(2 * erase).ok_or(FlashError::Layout("region smaller than two erase pages"))?;
        let slot_len = slots / 2 / erase * erase;
        if slot_len == 0 {
            return Err(FlashError::Layout("region leaves no room for two slots"));
        }
        Ok(Layout { base, erase, slot_len })
    }
    /// Offset of boot record copy `i` (0 or 1).
    pub fn record(&self, i: usize) -> u32 {
        self.base + i as u32 * self.erase
    }
    /// Offset of slot `s` (0 = A, 1 = B).
    pub fn slot(&self, s: u8) -> u32 {
        self.base + 2 * self.erase + s as u32 * self.slot_len
    }
}

/// A device-side flashing or boot failure.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum FlashError {
    /// The storage driver failed.
    Storage(NorFlashErrorKind),
    /// The layout does not fit the flash.
    Layout(&'static str),
    /// No valid boot record: nothing was ever flashed (or both copies are corrupt).
    NoRecord,
    /// Neither slot holds a model that verifies; the board has no runnable model.
    NoValidModel { active: VerifyError },
    /// A slot's image did not verify.
    Verify(VerifyError),
}

impl fmt::Display for FlashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlashError::Storage(k) => write!(f, "flash storage error: {k:?}"),
            FlashError::Layout(r) => write!(f, "bad flash layout: {r}"),
            FlashError::NoRecord => f.write_str("no valid boot record: no model has been flashed"),
            FlashError::NoValidModel { active } => {
                write!(f, "no slot holds a valid model (active slot: {active})")
            }
            FlashError::Verify(e) => write!(f, "{e}"),
        }
    }
}

impl Error for FlashError {
    fn kind(&self) -> ErrorKind {
        match self {
            FlashError::Storage(_) | FlashError::Layout(_) => ErrorKind::Storage,
            FlashError::NoRecord | FlashError::NoValidModel { .. } => ErrorKind::Verify,
            FlashError::Verify(e) => e.kind(),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for FlashError {}

pub(crate) fn storage<E: embedded_storage::nor_flash::NorFlashError>(e: E) -> FlashError {
    FlashError::Storage(e.kind())
}
