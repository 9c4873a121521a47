//! The device's flash receiver: takes `FlashBegin`/`FlashChunk`/`FlashCommit` messages, writes the
//! inactive slot, verifies, and only then writes the boot record that activates it.

use super::record::{self, BootRecord, SlotInfo};
use super::verify::{verify_slot, BoardLimits, SelfTest};
use super::{storage, FlashError, Layout, MappedFlash};
use crate::wire::{FlashBegin, FlashErrorCode, Msg, MAX_CHUNK};

#[derive(Clone, Copy, Debug)]
struct Transfer {
    begin: FlashBegin,
    slot: u8,
    /// Bytes `[0, next)` are written.
    next: u32,
    /// Pages `[0, erased)` of the slot are erased.
    erased: u32,
}

/// Device-side flash state machine over storage `F` and self-test runner `T`.
pub struct Updater<F, T> {
    flash: F,
    layout: Layout,
    limits: BoardLimits,
    selftest: T,
    xfer: Option<Transfer>,
    /// Set by a successful commit until [`Updater::take_activated`]: the loop reloads its model.
    activated: Option<(u8, u32)>,
    /// Successful inferences of the model on trial since its activation or this boot.
    inferences: u32,
    /// The trial (if any) was settled by inference count: stop reading the record per inference.
    settled: bool,
}

impl<F: MappedFlash, T: SelfTest> Updater<F, T> {
    pub fn new(flash: F, layout: Layout, limits: BoardLimits, selftest: T) -> Result<Self, FlashError> {
        let end = layout.slot(1) as u64 + layout.slot_len as u64;
        if end > flash.capacity() as u64 || !(layout.erase as usize).is_multiple_of(F::ERASE_SIZE.max(1)) {
            return Err(FlashError::Layout("layout does not fit the flash or its erase size"));
        }
        if !MAX_CHUNK.is_multiple_of(F::WRITE_SIZE.max(1)) {
            return Err(FlashError::Layout("flash write size must divide the chunk size"));
        }
        Ok(Updater { flash, layout, limits, selftest, xfer: None, activated: None, inferences: 0, settled: false })
    }

    pub fn flash(&self) -> &F {
        &self.flash
    }
    pub fn flash_mut(&mut self) -> &mut F {
        &mut self.flash
    }
    /// The self-test runner (tests read its counters).
    pub fn selftest(&self) -> &T {
        &self.selftest
    }
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
    /// Gives the storage back (e.g. to simulate a reboot).
    pub fn into_flash(self) -> F {
        self.flash
    }
    /// The current boot record, if any.
    pub fn record(&mut self) -> Result<Option<BootRecord>, FlashError> {
        Ok(record::read(&mut self.flash, &self.layout)?.map(|(r, _)| r))
    }
    /// Slot and sequence number of an image a commit just activated, once.
    pub fn take_activated(&mut self) -> Option<(u8, u32)> {
        self.activated.take()
    }
    /// True while a transfer is in progress.
    pub fn busy(&self) -> bool {
        self.xfer.is_some()
    }
    /// Runs boot verification (rollback, and the revert of an unconfirmed trial image) on this storage.
    pub fn boot(&mut self) -> Result<super::Booted, FlashError> {
        self.inferences = 0;
        self.settled = false;
        super::boot(&mut self.flash, &self.layout, &self.limits, &mut self.selftest)
    }

    /// Confirms the image on trial: it stays active across resets, and the security counter rises
    /// to its signed version. Returns the active slot and new record sequence number, or `None`
    /// when nothing was on trial.
    pub fn confirm(&mut self) -> Result<Option<(u8, u32)>, FlashError> {
        let Some((mut rec, copy)) = record::read(&mut self.flash, &self.layout)? else { return Ok(None) };
        let Some((slot, info)) = rec.active_info() else { return Ok(None) };
        if !rec.trial {
            return Ok(None);
        }
        rec.trial = false;
        rec.counter = rec.counter.max(info.version);
        rec.seq = rec.seq.wrapping_add(1);
        record::write(&mut self.flash, &self.layout, &rec, Some(copy))?;
        Ok(Some((slot, rec.seq)))
    }

    /// The onboard loop reports one successful inference of the running model. After
    /// [`BoardLimits::confirm_after`] of them (counted since activation or boot) an image on trial
    /// is confirmed. Returns what [`Updater::confirm`] did, once.
    pub fn inference_ok(&mut self) -> Result<Option<(u8, u32)>, FlashError> {
        let Some(n) = self.limits.confirm_after else { return Ok(None) };
        if n == 0 || self.settled {
            return Ok(None);
        }
        self.inferences = self.inferences.saturating_add(1);
        if self.inferences < n {
            return Ok(None);
        }
        self.settled = true;
        self.confirm()
    }

    /// Handles one host message; returns the reply to send (none for device-to-host messages).
    pub fn handle(&mut self, msg: &Msg<'_>) -> Option<Msg<'static>> {
        Some(match *msg {
            Msg::FlashBegin(b) => self.begin(b),
            Msg::FlashChunk { offset, data } => self.chunk(offset, data),
            Msg::FlashCommit => self.commit(),
            Msg::FlashConfirm { sha256 } => self.confirm_msg(&sha256),
            Msg::FlashAbort => {
                self.xfer = None;
                Msg::FlashAck { next: 0 }
            }
            _ => return None,
        })
    }

    fn confirm_msg(&mut self, sha256: &[u8; 32]) -> Msg<'static> {
        let rec = match record::read(&mut self.flash, &self.layout) {
            Ok(r) => r.map(|(r, _)| r),
            Err(_) => return Msg::FlashNack { code: FlashErrorCode::Storage, next: 0 },
        };
        match rec.and_then(|r| r.active_info().map(|(s, i)| (r, s, i))) {
            Some((r, slot, info)) if &info.sha256 == sha256 => match self.confirm() {
                Ok(Some((slot, seq))) => Msg::FlashDone { slot, seq },
                Ok(None) => Msg::FlashDone { slot, seq: r.seq }, // already confirmed
                Err(_) => Msg::FlashNack { code: FlashErrorCode::Storage, next: 0 },
            },
            _ => Msg::FlashNack { code: FlashErrorCode::NotActive, next: 0 },
        }
    }

    fn nack(&mut self, code: FlashErrorCode) -> Msg<'static> {
        self.xfer = None;
        Msg::FlashNack { code, next: 0 }
    }

    fn begin(&mut self, b: FlashBegin) -> Msg<'static> {
        if let Some(x) = &self.xfer {
            if x.begin == b {
                return Msg::FlashAck { next: x.next }; // resume
            }
        }
        if b.size == 0 || b.size > self.layout.slot_len {
            return self.nack(FlashErrorCode::TooLarge);
        }
        let rec = match record::read(&mut self.flash, &self.layout) {
            Ok(r) => r.map(|(r, _)| r),
            Err(_) => return self.nack(FlashErrorCode::Storage),
        };
        if let Some(r) = rec {
            if let Some((slot, info)) = r.active_info() {
                if info.len == b.size && info.sha256 == b.sha256 {
                    self.xfer = None;
                    return Msg::FlashDone { slot, seq: r.seq }; // already installed and active
                }
            }
            // Flashing now would overwrite the previous image, the trial image's only fallback.
            if r.trial && r.active.is_some_and(|a| r.slots[1 - a as usize].len != 0) {
                return self.nack(FlashErrorCode::TrialPending);
            }
        }
        let slot = match rec.and_then(|r| r.active) {
            Some(a) => 1 - a,
            None => 0,
        };
        self.xfer = Some(Transfer { begin: b, slot, next: 0, erased: 0 });
        Msg::FlashAck { next: 0 }
    }

    fn chunk(&mut self, offset: u32, data: &[u8]) -> Msg<'static> {
        let Some(mut x) = self.xfer else {
            return Msg::FlashNack { code: FlashErrorCode::NoTransfer, next: 0 };
        };
        let w = F::WRITE_SIZE.max(1);
        let end = offset as u64 + data.len() as u64;
        let is_last = end == x.begin.size as u64;
        // Only the next in-order chunk is written; duplicates and gaps just re-ack (go-back-N).
        if offset != x.next
            || data.is_empty()
            || end > x.begin.size as u64
            || (!data.len().is_multiple_of(w) && !is_last)
        {
            return Msg::FlashAck { next: x.next };
        }
        let at = self.layout.slot(x.slot) + offset;
        let page = self.layout.erase;
        while (x.erased as u64) < end {
            let p = self.layout.slot(x.slot) + x.erased;
            if let Err(e) = self.flash.erase(p, p + page).map_err(storage) {
                return self.storage_fail(e);
            }
            x.erased += page;
        }
        let res = if data.len().is_multiple_of(w) {
            self.flash.write(at, data)
        } else {
            let mut pad = [0xFFu8; MAX_CHUNK];
            let n = data.len().div_ceil(w) * w;
            match pad.get_mut(..data.len()) {
                Some(p) if n <= MAX_CHUNK => p.copy_from_slice(data),
                _ => return Msg::FlashAck { next: x.next },
            }
            self.flash.write(at, &pad[..n])
        };
        if let Err(e) = res.map_err(storage) {
            return self.storage_fail(e);
        }
        x.next = end as u32;
        self.xfer = Some(x);
        Msg::FlashAck { next: x.next }
    }

    fn storage_fail(&mut self, _e: FlashError) -> Msg<'static> {
        self.nack(FlashErrorCode::Storage)
    }

    fn commit(&mut self) -> Msg<'static> {
        let Some(x) = self.xfer else {
            return Msg::FlashNack { code: FlashErrorCode::NoTransfer, next: 0 };
        };
        if x.next != x.begin.size {
            return Msg::FlashNack { code: FlashErrorCode::Incomplete, next: x.next };
        }
        let (size, sha) = (x.begin.size, x.begin.sha256);
        let cur = match record::read(&mut self.flash, &self.layout) {
            Ok(r) => r,
            Err(_) => return self.nack(FlashErrorCode::Storage),
        };
        let mut rec = cur.map(|(r, _)| r).unwrap_or_default();
        let (l, st) = (&self.limits, &mut self.selftest);
        let version = match verify_slot(&mut self.flash, &self.layout, x.slot, size, &sha, l, rec.counter, st) {
            Ok(v) => v,
            Err(e) => {
                let code = match e {
                    FlashError::Verify(v) => v.code(),
                    _ => FlashErrorCode::Storage,
                };
                return self.nack(code);
            }
        };
        rec.seq = rec.seq.wrapping_add(1);
        rec.active = Some(x.slot);
        rec.slots[x.slot as usize] = SlotInfo { len: size, sha256: sha, version };
        // With trial boot the image must earn its confirmation; without it, the commit confirms.
        rec.trial = self.limits.confirm_after.is_some();
        if !rec.trial {
            rec.counter = rec.counter.max(version);
        }
        if record::write(&mut self.flash, &self.layout, &rec, cur.map(|(_, c)| c)).is_err() {
            return self.nack(FlashErrorCode::Storage);
        }
        self.xfer = None;
        self.inferences = 0;
        self.settled = false;
        self.activated = Some((x.slot, rec.seq));
        Msg::FlashDone { slot: x.slot, seq: rec.seq }
    }
}
