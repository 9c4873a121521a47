//! The board's end of the link: bytes from the UART (or a TCP socket) in, flash replies out.
//!
//! Firmware and the Linux agent poll a [`LinkService`] between frames. It reassembles frames, hands
//! flash messages to the [`Updater`] and writes each reply back as one frame on the same link, so a
//! board needs nothing but an `embedded-io` byte link to receive models with `rsim flash`.
//! Telemetry goes out on the same link; the host tools skip the frames that are not theirs.

use super::device::Updater;
use super::verify::SelfTest;
use super::{FlashError, MappedFlash};
use crate::wire::{encode, FrameReader, MAX_FRAME};
use embedded_io::{Read, ReadReady, Write};

/// Receiver of flash transfers over one byte link.
pub struct LinkService<F, T> {
    pub updater: Updater<F, T>,
    reader: FrameReader,
    out: [u8; MAX_FRAME],
}

/// The image a commit just activated: the loop loads it before the next frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Activated {
    pub slot: u8,
    /// Boot record sequence number now in force.
    pub seq: u32,
}

/// The active image of the boot record: where it lies in flash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveImage {
    pub slot: u8,
    pub seq: u32,
    /// Offset and length of the image (signed images end in their envelope).
    pub offset: u32,
    pub len: u32,
    /// Not confirmed yet: a reset before confirmation reverts it.
    pub trial: bool,
    /// SHA-256 of the image as flashed.
    pub sha256: [u8; 32],
}

/// What one [`LinkService::poll`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Polled {
    /// Bytes read from the link.
    pub bytes: usize,
    /// The image a commit in those bytes activated.
    pub activated: Option<Activated>,
}

impl<F: MappedFlash, T: SelfTest> LinkService<F, T> {
    pub fn new(updater: Updater<F, T>) -> Self {
        LinkService { updater, reader: FrameReader::new(), out: [0; MAX_FRAME] }
    }

    /// Frames that did not decode (noise, a half frame after a reset), for the board's counters.
    pub fn bad_frames(&self) -> u32 {
        self.reader.bad_frames
    }

    /// Feeds bytes received from the link; replies are written to `tx`. Returns the image a commit
    /// in these bytes activated, if any. A reply that cannot be written is an error of `tx`; the
    /// host resends what was not acknowledged.
    pub fn receive<W: Write>(&mut self, bytes: &[u8], tx: &mut W) -> Result<Option<Activated>, W::Error> {
        let mut activated = None;
        for &b in bytes {
            let reply = match self.reader.push(b) {
                Some(Ok(msg)) => self.updater.handle(&msg),
                _ => None,
            };
            if let Some(reply) = reply {
                // Replies are small fixed-size messages: encoding cannot overflow MAX_FRAME.
                if let Ok(n) = encode(&reply, &mut self.out) {
                    tx.write_all(&self.out[..n])?;
                }
            }
            if let Some((slot, seq)) = self.updater.take_activated() {
                activated = Some(Activated { slot, seq });
            }
        }
        Ok(activated)
    }

    /// Reads and handles what the link has waiting, at most `max` bytes (so a flood cannot starve
    /// the onboard loop), without blocking. Returns the image a commit activated, if any.
    pub fn poll<L: Read + ReadReady + Write>(&mut self, link: &mut L, max: usize) -> Result<Polled, L::Error> {
        let mut buf = [0u8; 64];
        let mut polled = Polled::default();
        while polled.bytes < max && link.read_ready()? {
            let want = buf.len().min(max - polled.bytes);
            let n = link.read(&mut buf[..want])?;
            if n == 0 {
                break;
            }
            polled.bytes += n;
            if let Some(a) = self.receive(&buf[..n], link)? {
                polled.activated = Some(a);
            }
        }
        Ok(polled)
    }

    /// The image the boot record names as active (without verifying it again: [`Updater::boot`]
    /// and every commit already did), or `None` when nothing was ever flashed.
    pub fn active(&mut self) -> Result<Option<ActiveImage>, FlashError> {
        let Some(rec) = self.updater.record()? else { return Ok(None) };
        Ok(rec.active_info().map(|(slot, info)| ActiveImage {
            slot,
            seq: rec.seq,
            offset: self.updater.layout().slot(slot),
            len: info.len,
            trial: rec.trial,
            sha256: info.sha256,
        }))
    }
}
