//! The boot record: which slot is active and what each slot holds, kept in two copies (one erase
//! page each). Updates overwrite the older copy, so a power cut at any byte of an update leaves the
//! newer copy intact; readers take the valid copy with the highest sequence number.
//!
//! Layout of version 2 (little-endian, 104 bytes, padded with 0xFF to the write size):
//! `0 magic "RSBR" | 4 version u8 = 2 | 5 active u8 (0, 1, 0xFF none) | 6 trial u8 (0, 1) | 7 reserved u8 = 0 |
//!  8 seq u32 | 12 slot A: len u32, sha256 [32] | 48 slot B: len u32, sha256 [32] | 84 counter u32 |
//!  88 slot A version u32 | 92 slot B version u32 | 96 reserved u32 = 0 | 100 crc32 of bytes [0, 100)`
//!
//! Version 1 records (92 bytes: the same up to 84, then reserved u32 = 0 and the crc32 of [0, 88)) still
//! read, as counter 0, slot versions 0 and no trial; the next update writes version 2.

use super::{storage, FlashError, Layout};
use embedded_storage::nor_flash::NorFlash;

pub const RECORD_LEN: usize = 104;
const MAGIC: [u8; 4] = *b"RSBR";
const VERSION: u8 = 2;
/// Record writes are padded to the flash write size inside this buffer.
const PAD_BUF: usize = 256;

/// What a slot holds: an image of `len` bytes (0 = empty) with this SHA-256.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotInfo {
    pub len: u32,
    pub sha256: [u8; 32],
    /// Signed model version of the image (0: unsigned, or a board without keys).
    pub version: u32,
}

/// The persisted boot state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootRecord {
    /// Increases by one on every update; the higher valid copy wins.
    pub seq: u32,
    /// Active slot, or `None` before anything was flashed.
    pub active: Option<u8>,
    pub slots: [SlotInfo; 2],
    /// Security counter: the lowest signed model version the board accepts (anti-rollback). It only
    /// advances when an image is confirmed.
    pub counter: u32,
    /// The active slot runs on trial: it is not confirmed yet, and the next boot reverts to the other
    /// slot (when that holds an image).
    pub trial: bool,
}

impl BootRecord {
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4] = VERSION;
        b[5] = self.active.unwrap_or(0xFF);
        b[6] = self.trial as u8;
        b[8..12].copy_from_slice(&self.seq.to_le_bytes());
        for (i, s) in self.slots.iter().enumerate() {
            let o = 12 + i * 36;
            b[o..o + 4].copy_from_slice(&s.len.to_le_bytes());
            b[o + 4..o + 36].copy_from_slice(&s.sha256);
            b[88 + i * 4..92 + i * 4].copy_from_slice(&s.version.to_le_bytes());
        }
        b[84..88].copy_from_slice(&self.counter.to_le_bytes());
        let crc = crc32fast::hash(&b[..100]);
        b[100..104].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a record copy; `None` for an erased, torn or foreign page.
    /// Version 1 records (before anti-rollback and trial boot) decode with counter 0, slot versions 0
    /// and no trial.
    pub fn decode(b: &[u8]) -> Option<BootRecord> {
        let le = |at: usize| Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?));
        if b.get(0..4)? != MAGIC {
            return None;
        }
        let v2 = match *b.get(4)? {
            1 => false,
            VERSION => true,
            _ => return None,
        };
        let crc_at = if v2 { 100 } else { 88 };
        if crc32fast::hash(b.get(..crc_at)?) != le(crc_at)? {
            return None;
        }
        let active = match b[5] {
            0 | 1 => Some(b[5]),
            0xFF => None,
            _ => return None,
        };
        let trial = match (v2, b[6]) {
            (false, _) | (true, 0) => false,
            (true, 1) => true,
            _ => return None,
        };
        let mut slots = [SlotInfo::default(); 2];
        for (i, s) in slots.iter_mut().enumerate() {
            let o = 12 + i * 36;
            s.len = le(o)?;
            s.sha256.copy_from_slice(b.get(o + 4..o + 36)?);
            s.version = if v2 { le(88 + i * 4)? } else { 0 };
        }
        let counter = if v2 { le(84)? } else { 0 };
        Some(BootRecord { seq: le(8)?, active, slots, counter, trial })
    }

    /// The active slot's info, if any.
    pub fn active_info(&self) -> Option<(u8, SlotInfo)> {
        let a = self.active?;
        Some((a, *self.slots.get(a as usize)?))
    }
}

fn read_copy<F: NorFlash>(flash: &mut F, at: u32) -> Result<Option<BootRecord>, FlashError> {
    let mut b = [0u8; RECORD_LEN];
    flash.read(at, &mut b).map_err(storage)?;
    Ok(BootRecord::decode(&b))
}

/// Reads both copies. Returns the newest valid record and which copy held it.
pub fn read<F: NorFlash>(flash: &mut F, layout: &Layout) -> Result<Option<(BootRecord, usize)>, FlashError> {
    let a = read_copy(flash, layout.record(0))?;
    let b = read_copy(flash, layout.record(1))?;
    Ok(match (a, b) {
        (Some(a), Some(b)) if b.seq > a.seq => Some((b, 1)),
        (Some(a), _) => Some((a, 0)),
        (None, Some(b)) => Some((b, 1)),
        (None, None) => None,
    })
}

/// Persists `rec` (its `seq` must exceed the current one) over the copy that is not `current_copy`.
pub fn write<F: NorFlash>(
    flash: &mut F,
    layout: &Layout,
    rec: &BootRecord,
    current_copy: Option<usize>,
) -> Result<(), FlashError> {
    let target = match current_copy {
        Some(0) => 1,
        _ => 0,
    };
    let w = F::WRITE_SIZE.max(1);
    let padded = RECORD_LEN.div_ceil(w) * w;
    if padded > PAD_BUF || layout.erase as usize > 0 && padded > layout.erase as usize {
        return Err(FlashError::Layout("flash write size too large for the boot record"));
    }
    let mut buf = [0xFFu8; PAD_BUF];
    buf[..RECORD_LEN].copy_from_slice(&rec.encode());
    let at = layout.record(target);
    flash.erase(at, at + layout.erase).map_err(storage)?;
    flash.write(at, &buf[..padded]).map_err(storage)
}
