//! Host side of flashing as a sans-IO state machine: feed it received messages and the time, and it
//! says what to send. The serial/TCP flasher and the seeded link simulator both drive this one.
//!
//! Protocol: `FlashBegin` (size, SHA-256) → `FlashAck{next}` (resume point) → chunks from `next`
//! with up to `window` bytes unacknowledged (go-back-N: on a timeout or repeated acks the sender
//! rewinds to the last acknowledged offset) → `FlashCommit` → `FlashDone` or `FlashNack`.
//!
//! Recovery does not wait for the full `timeout_us` when the link is merely lossy: the sender
//! measures the round trip of a chunk to its ack (smoothed, as TCP's SRTT) and, when nothing was
//! acknowledged for a few round trips, rewinds early. Early rewinds do not count against
//! `max_retries`; only full timeouts do, so a dead device is declared dead no sooner than before.

use crate::wire::{FlashBegin, FlashErrorCode, Msg, MAX_CHUNK};

/// Smallest chunk the sender shrinks to (a multiple of every supported flash write size).
pub const MIN_CHUNK: u32 = 16;

/// Tuning of the sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderConfig {
    /// Largest bytes per chunk (rounded down to a power of two in 16..=[`MAX_CHUNK`]). The sender
    /// halves the chunk after each loss and doubles it again after a run of clean acks, so noisy
    /// links still get whole frames through.
    pub chunk: u32,
    /// Unacknowledged bytes allowed in flight.
    pub window: u32,
    /// No progress for this long rewinds to the last ack (or resends begin/commit).
    pub timeout_us: u64,
    /// Consecutive timeouts without progress before giving up.
    pub max_retries: u32,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig { chunk: MAX_CHUNK as u32, window: 4 * MAX_CHUNK as u32, timeout_us: 1_000_000, max_retries: 20 }
    }
}

/// How a transfer ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The device verified the image and activated it.
    Done { slot: u8, seq: u32 },
    /// The device refused the image; its old model stays active.
    Refused(FlashErrorCode),
    /// The device stopped answering.
    TimedOut { acked: u32 },
    /// Every byte was acknowledged and `FlashCommit` sent, but neither `FlashDone` nor a refusal
    /// came back before the retries ran out: the board runs the new model (the answer was lost)
    /// or the old one. Flashing the same image again settles it (an active image answers `FlashDone`).
    Unconfirmed { acked: u32 },
    /// The board lost the transfer after the commit [`MAX_BOARD_RESETS`] times: it reset while
    /// verifying the image (its watchdog budget ran out, or it crashed). It runs the previous image.
    BoardReset { resets: u32 },
}

/// Commits answered by a lost transfer (the board reset during verification) before the sender
/// gives up instead of sending the image again.
pub const MAX_BOARD_RESETS: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Begin,
    Sending,
    Committing,
    Finished(Outcome),
}

/// Sends one image.
#[derive(Debug)]
pub struct Sender<'a> {
    image: &'a [u8],
    begin: FlashBegin,
    cfg: SenderConfig,
    state: State,
    acked: u32,
    sent: u32,
    /// When the last frame of the current state went out / progress was last seen.
    last_tx: Option<u64>,
    last_progress: u64,
    retries: u32,
    dup_acks: u32,
    cur_chunk: u32,
    clean_acks: u32,
    /// Chunks resent after a rewind (for the report).
    pub resent_bytes: u64,
    /// Rewinds to the last acknowledged offset.
    pub rewinds: u32,
    /// Rewinds triggered by the round-trip estimate rather than the full timeout (also in `rewinds`).
    pub early_rewinds: u32,
    /// Commits answered by a lost transfer: the board reset while verifying the image.
    pub board_resets: u32,
    /// Smoothed chunk-to-ack round trip in µs (none measured yet).
    srtt: Option<u64>,
    /// The chunk being timed: the offset its ack must reach, and when it was sent.
    probe: Option<(u32, u64)>,
    /// Highest offset ever sent: only first transmissions are timed (Karn's rule).
    max_sent: u32,
    /// When the last early rewind happened.
    last_early: u64,
    /// A commit went out and no refusal or `Incomplete` came back since: giving up now is
    /// [`Outcome::Unconfirmed`], not a plain timeout.
    committed: bool,
}

/// Smallest early-rewind interval (µs): well above a frame's time on a fast link.
const MIN_RTO_US: u64 = 2_000;

impl<'a> Sender<'a> {
    /// `sha256` must be the image's SHA-256 (the device checks it after the last byte).
    pub fn new(image: &'a [u8], sha256: [u8; 32], cfg: SenderConfig) -> Self {
        let chunk = 1u32 << (31 - cfg.chunk.clamp(MIN_CHUNK, MAX_CHUNK as u32).leading_zeros());
        let cfg = SenderConfig { chunk, window: cfg.window.max(chunk), ..cfg };
        Sender {
            image,
            begin: FlashBegin { size: image.len() as u32, sha256 },
            cfg,
            state: State::Begin,
            acked: 0,
            sent: 0,
            last_tx: None,
            last_progress: 0,
            retries: 0,
            dup_acks: 0,
            cur_chunk: chunk,
            clean_acks: 0,
            resent_bytes: 0,
            rewinds: 0,
            early_rewinds: 0,
            board_resets: 0,
            srtt: None,
            probe: None,
            max_sent: 0,
            last_early: 0,
            committed: false,
        }
    }

    /// Bytes the device has acknowledged, and the image size.
    pub fn progress(&self) -> (u32, u32) {
        (self.acked, self.begin.size)
    }

    /// The outcome once the transfer ended.
    pub fn outcome(&self) -> Option<Outcome> {
        match self.state {
            State::Finished(o) => Some(o),
            _ => None,
        }
    }

    /// Handles a message from the device.
    pub fn on_msg(&mut self, msg: &Msg<'_>, now_us: u64) {
        match (*msg, self.state) {
            (_, State::Finished(_)) => {}
            (Msg::FlashDone { slot, seq }, State::Committing | State::Begin) => {
                self.acked = self.begin.size;
                self.state = State::Finished(Outcome::Done { slot, seq });
            }
            (Msg::FlashAck { next }, State::Begin) if next <= self.begin.size => {
                self.acked = next;
                self.sent = next;
                self.max_sent = self.max_sent.max(next);
                self.committed = false; // an active image would have answered FlashDone
                self.progress_at(now_us);
                self.state = State::Sending;
            }
            (Msg::FlashAck { next }, State::Sending) => {
                // The device's ack is authoritative even past `sent`: after a rewind, acks of
                // chunks sent before it still arrive, and ignoring them stalls the transfer once
                // the device is more than a window ahead of the resent offset.
                if next > self.acked && next <= self.begin.size {
                    self.acked = next;
                    self.sent = self.sent.max(next);
                    self.sample_rtt(next, now_us);
                    self.dup_acks = 0;
                    self.progress_at(now_us);
                    self.clean_acks += 1;
                    if self.clean_acks >= 16 && self.cur_chunk < self.cfg.chunk {
                        self.cur_chunk *= 2;
                        self.clean_acks = 0;
                    }
                } else if next == self.acked && self.sent > self.acked {
                    // A serial line never reorders, so a repeated ack means the chunk at `acked` was
                    // lost: rewind at once, but only once until the ack moves (later repeats come
                    // from chunks already in flight before the rewind).
                    self.dup_acks += 1;
                    if self.dup_acks == 1 {
                        self.rewind();
                    }
                }
            }
            (Msg::FlashNack { code: FlashErrorCode::Incomplete, next }, State::Committing) => {
                self.committed = false;
                self.acked = next.min(self.begin.size);
                self.sent = self.acked;
                self.probe = None;
                self.state = State::Sending;
            }
            (Msg::FlashNack { code: FlashErrorCode::NoTransfer, .. }, State::Sending | State::Committing) => {
                if self.state == State::Committing {
                    // Lost after the commit: the board reset while verifying. Not forever.
                    self.board_resets += 1;
                    if self.board_resets >= MAX_BOARD_RESETS {
                        self.state = State::Finished(Outcome::BoardReset { resets: self.board_resets });
                        return;
                    }
                }
                // The device lost the transfer (reboot): start over; it resumes nothing.
                self.state = State::Begin;
                self.last_tx = None;
            }
            (Msg::FlashNack { code, .. }, _)
                if code != FlashErrorCode::NoTransfer && code != FlashErrorCode::Incomplete =>
            {
                self.state = State::Finished(Outcome::Refused(code));
            }
            _ => {}
        }
    }

    fn progress_at(&mut self, now: u64) {
        self.last_progress = now;
        self.retries = 0;
    }

    fn sample_rtt(&mut self, acked: u32, now: u64) {
        if let Some((end, sent_at)) = self.probe {
            if acked >= end {
                let sample = now.saturating_sub(sent_at);
                self.srtt = Some(self.srtt.map_or(sample, |s| (7 * s + sample) / 8));
                self.probe = None;
            }
        }
    }

    /// Early-rewind interval: four smoothed round trips, within [`MIN_RTO_US`, `timeout_us`].
    fn rto(&self) -> Option<u64> {
        self.srtt.map(|s| (4 * s).clamp(MIN_RTO_US, self.cfg.timeout_us))
    }

    /// When an early rewind is due (bytes in flight and a round-trip estimate).
    fn early_deadline(&self) -> Option<u64> {
        let rto = self.rto()?;
        (self.sent > self.acked).then(|| self.last_progress.max(self.last_early) + rto)
    }

    fn rewind(&mut self) {
        self.probe = None;
        self.resent_bytes += (self.sent - self.acked) as u64;
        self.rewinds += 1;
        self.sent = self.acked;
        self.cur_chunk = (self.cur_chunk / 2).max(MIN_CHUNK);
        self.clean_acks = 0;
    }

    /// The next message to send at `now_us`, if any. Call until it returns `None`, then wait for input.
    pub fn poll(&mut self, now_us: u64) -> Option<Msg<'a>> {
        let timed_out = now_us.saturating_sub(self.last_progress) >= self.cfg.timeout_us;
        match self.state {
            State::Finished(_) => None,
            State::Begin | State::Committing => {
                let due = match self.last_tx {
                    None => true,
                    Some(t) => now_us.saturating_sub(t) >= self.cfg.timeout_us,
                };
                if !due {
                    return None;
                }
                if self.last_tx.is_some() && !self.give_up() {
                    return None;
                }
                self.last_tx = Some(now_us);
                Some(if self.state == State::Begin { Msg::FlashBegin(self.begin) } else { Msg::FlashCommit })
            }
            State::Sending => {
                if self.acked >= self.begin.size {
                    self.state = State::Committing;
                    self.committed = true;
                    self.last_tx = Some(now_us);
                    self.retries = 0;
                    return Some(Msg::FlashCommit);
                }
                if timed_out {
                    if !self.give_up() {
                        return None;
                    }
                    self.rewind();
                    self.last_progress = now_us;
                } else if self.early_deadline().is_some_and(|d| now_us >= d) {
                    self.rewind();
                    self.early_rewinds += 1;
                    self.last_early = now_us;
                }
                // The window shrinks with the chunk: after losses, a rewind resends little.
                let window = self.cfg.window.min(4 * self.cur_chunk);
                if self.sent >= self.begin.size || self.sent - self.acked >= window {
                    return None;
                }
                let start = self.sent as usize;
                let end = (start + self.cur_chunk as usize).min(self.image.len());
                self.sent = end as u32;
                if self.sent > self.max_sent {
                    self.max_sent = self.sent;
                    if self.probe.is_none() {
                        self.probe = Some((self.sent, now_us));
                    }
                }
                Some(Msg::FlashChunk { offset: start as u32, data: self.image.get(start..end)? })
            }
        }
    }

    /// How the transfer ends if the caller stops waiting now ([`Outcome::Unconfirmed`] once a
    /// commit is out, else [`Outcome::TimedOut`]); the outcome itself if it already ended.
    pub fn abandon(&mut self) -> Outcome {
        if let State::Finished(o) = self.state {
            return o;
        }
        let acked = self.acked;
        let o = if self.committed { Outcome::Unconfirmed { acked } } else { Outcome::TimedOut { acked } };
        self.state = State::Finished(o);
        o
    }

    /// Counts a retry; returns false (and finishes) when retries are exhausted.
    fn give_up(&mut self) -> bool {
        self.retries += 1;
        if self.retries > self.cfg.max_retries {
            self.abandon();
            return false;
        }
        true
    }

    /// Microseconds until `poll` may have something new to send (for sleeping).
    pub fn next_deadline(&self) -> Option<u64> {
        match self.state {
            State::Finished(_) => None,
            State::Begin | State::Committing => self.last_tx.map(|t| t + self.cfg.timeout_us),
            State::Sending => {
                let full = self.last_progress + self.cfg.timeout_us;
                Some(self.early_deadline().map_or(full, |d| d.min(full)))
            }
        }
    }
}
