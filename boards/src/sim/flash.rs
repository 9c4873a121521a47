//! Drives a host [`Sender`] and a device [`Updater`] against each other over two simulated wires,
//! in simulated time. Deterministic for a given seed.

use super::Wire;
use crate::flash::host::{Outcome, Sender};
use crate::flash::{MappedFlash, SelfTest, Updater};
use crate::wire::{encode, FrameReader, MAX_FRAME};

/// What a simulated transfer did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlashRun {
    pub outcome: Outcome,
    /// Simulated microseconds from the first byte to the outcome.
    pub elapsed_us: u64,
    /// Frames the device and host discarded as corrupt.
    pub device_bad_frames: u32,
    pub host_bad_frames: u32,
}

/// Runs until the sender finishes or `limit_us` of simulated time passes (then `TimedOut`).
pub fn run_flash<F: MappedFlash, T: SelfTest>(
    sender: &mut Sender<'_>,
    device: &mut Updater<F, T>,
    h2d: &mut Wire,
    d2h: &mut Wire,
    limit_us: u64,
) -> FlashRun {
    let mut now = 0u64;
    let mut dev_rx: FrameReader = FrameReader::new();
    let mut host_rx: FrameReader = FrameReader::new();
    let mut buf = [0u8; MAX_FRAME];
    let mut bytes = Vec::new();
    loop {
        while h2d.free_at() <= now {
            let Some(msg) = sender.poll(now) else { break };
            if let Ok(n) = encode(&msg, &mut buf) {
                h2d.send(now, &buf[..n]);
            }
        }
        bytes.clear();
        h2d.recv(now, &mut bytes);
        for &b in &bytes {
            if let Some(Ok(m)) = dev_rx.push(b) {
                if let Some(reply) = device.handle(&m) {
                    if let Ok(n) = encode(&reply, &mut buf) {
                        d2h.send(now, &buf[..n]);
                    }
                }
            }
        }
        bytes.clear();
        d2h.recv(now, &mut bytes);
        for &b in &bytes {
            if let Some(Ok(m)) = host_rx.push(b) {
                sender.on_msg(&m, now);
            }
        }
        let outcome = sender.outcome().or(if now >= limit_us { Some(sender.abandon()) } else { None });
        if let Some(outcome) = outcome {
            return FlashRun {
                outcome,
                elapsed_us: now,
                device_bad_frames: dev_rx.bad_frames,
                host_bad_frames: host_rx.bad_frames,
            };
        }
        let next = [h2d.next_arrival(), d2h.next_arrival(), Some(h2d.free_at()), sender.next_deadline()]
            .into_iter()
            .flatten()
            .filter(|&t| t > now)
            .min()
            .unwrap_or(now + 1_000);
        now = next;
    }
}
