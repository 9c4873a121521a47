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
    /// Offset and length of the image in flash (read it with [`MappedFlash::mapped`]). A signed image
    /// ends in its 80-byte envelope: [`super::sign::split`] gives the `.rsm`.
    pub offset: u32,
    pub len: u32,
    /// The active slot failed verification and the board switched to the other one.
    pub rolled_back: bool,
    /// The running image is on trial (not confirmed; the next boot reverts it if a previous image exists).
    pub trial: bool,
    /// An image on trial was not confirmed before this boot: the board went back to the previous one.
    pub reverted: bool,
}

/// Verifies the active slot and returns it, or rolls back to the other slot (persisting the
/// switch in a new boot record) when the active one fails. Never activates an unverified image.
///
/// An image still on trial at boot was not confirmed before a reset: the board reverts to the
/// previous image (verified first) and forgets the trial one. With no previous image it keeps
/// running the trial image, still unconfirmed.
pub fn boot<F: MappedFlash, T: SelfTest>(
    flash: &mut F,
    layout: &Layout,
    limits: &BoardLimits,
    selftest: &mut T,
) -> Result<Booted, FlashError> {
    let (rec, copy) = record::read(flash, layout)?.ok_or(FlashError::NoRecord)?;
    let (active, info) = rec.active_info().ok_or(FlashError::NoRecord)?;
    let other = 1 - active;
    let oinfo = rec.slots[other as usize];
    let ctr = rec.counter;
    if rec.trial && oinfo.len != 0 {
        match verify_slot(flash, layout, other, oinfo.len, &oinfo.sha256, limits, ctr, selftest) {
            Ok(_) => {
                let mut next = rec;
                next.seq = rec.seq.wrapping_add(1);
                next.active = Some(other);
                next.trial = false;
                next.slots[active as usize] = Default::default();
                record::write(flash, layout, &next, Some(copy))?;
                return Ok(Booted {
                    slot: other,
                    seq: next.seq,
                    offset: layout.slot(other),
                    len: oinfo.len,
                    rolled_back: false,
                    trial: false,
                    reverted: true,
                });
            }
            // The previous image no longer verifies: the trial image is all there is.
            Err(FlashError::Verify(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let first = match verify_slot(flash, layout, active, info.len, &info.sha256, limits, ctr, selftest) {
        Ok(_) => {
            return Ok(Booted {
                slot: active,
                seq: rec.seq,
                offset: layout.slot(active),
                len: info.len,
                rolled_back: false,
                trial: rec.trial,
                reverted: false,
            })
        }
        Err(FlashError::Verify(e)) => e,
        Err(other) => return Err(other),
    };
    if oinfo.len == 0 || verify_slot(flash, layout, other, oinfo.len, &oinfo.sha256, limits, ctr, selftest).is_err() {
        return Err(FlashError::NoValidModel { active: first });
    }
    // Forget the failed image so a later boot does not try it again.
    let mut next = rec;
    next.seq = rec.seq.wrapping_add(1);
    next.active = Some(other);
    next.trial = false;
    next.slots[active as usize] = Default::default();
    record::write(flash, layout, &next, Some(copy))?;
    Ok(Booted {
        slot: other,
        seq: next.seq,
        offset: layout.slot(other),
        len: oinfo.len,
        rolled_back: true,
        trial: false,
        reverted: false,
    })
}
