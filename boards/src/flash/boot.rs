//! Boot: pick the active slot from the boot record, verify it (hash, decode, limits, self-test),
//! and roll back to the other slot when it fails.

use super::verify::{verify_slot, BoardLimits, SelfTest};
use super::{record, FlashError, Layout, MappedFlash};

/// The model the board runs after [`boot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Booted {
    pub slot: u8,
    /// Boot record sequence number now in force.
    pub seq: u32,
    /// Offset and length of the model in flash (read it with [`MappedFlash::mapped`]).
    pub offset: u32,
    pub len: u32,
    /// The active slot failed verification and the board switched to the other one.
    pub rolled_back: bool,
}

/// Verifies the active slot and returns it, or rolls back to the other slot (persisting the
/// switch in a new boot record) when the active one fails. Never activates an unverified image.
pub fn boot<F: MappedFlash, T: SelfTest>(
    flash: &mut F,
    layout: &Layout,
    limits: &BoardLimits,
    selftest: &mut T,
) -> Result<Booted, FlashError> {
    let (rec, copy) = record::read(flash, layout)?.ok_or(FlashError::NoRecord)?;
    let (active, info) = rec.active_info().ok_or(FlashError::NoRecord)?;
    let first = match verify_slot(flash, layout, active, info.len, &info.sha256, limits, selftest) {
        Ok(()) => {
            return Ok(Booted {
                slot: active,
                seq: rec.seq,
                offset: layout.slot(active),
                len: info.len,
                rolled_back: false,
            })
        }
        Err(FlashError::Verify(e)) => e,
        Err(other) => return Err(other),
    };
    let other = 1 - active;
    let oinfo = rec.slots[other as usize];
    if oinfo.len == 0 || verify_slot(flash, layout, other, oinfo.len, &oinfo.sha256, limits, selftest).is_err() {
        return Err(FlashError::NoValidModel { active: first });
    }
    // Forget the failed image so a later boot does not try it again.
    let mut next = rec;
    next.seq = rec.seq.wrapping_add(1);
    next.active = Some(other);
    next.slots[active as usize] = Default::default();
    record::write(flash, layout, &next, Some(copy))?;
    Ok(Booted { slot: other, seq: next.seq, offset: layout.slot(other), len: oinfo.len, rolled_back: true })
}
