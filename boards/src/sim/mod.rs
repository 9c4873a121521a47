//! A seeded, deterministic serial-link simulator (std): each direction carries bytes at a baud rate
//! and can drop, corrupt (one flipped bit), duplicate and delay them. Order is preserved, as on a
//! UART: a delayed byte holds back the ones behind it. Used by the fault tests and the benchmark.

use std::collections::VecDeque;

/// The workspace's seeded generator (rsim-model's SplitMix64): runs are reproducible from a seed.
pub use rsim_model::rng::SplitMix64 as Rng;

/// Fault probabilities per byte and the extra delay of a delayed byte.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Faults {
    pub drop: f64,
    pub corrupt: f64,
    pub duplicate: f64,
    pub delay: f64,
    /// Upper bound of a delay, microseconds.
    pub max_delay_us: u64,
}

impl Faults {
    /// The same probability `p` for every fault kind, delays up to 20 ms.
    pub fn uniform(p: f64) -> Self {
        Faults { drop: p, corrupt: p, duplicate: p, delay: p, max_delay_us: 20_000 }
    }
}

/// Counts of injected faults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub bytes: u64,
    pub dropped: u64,
    pub corrupted: u64,
    pub duplicated: u64,
    pub delayed: u64,
}

impl FaultCounts {
    pub fn total(&self) -> u64 {
        self.dropped + self.corrupted + self.duplicated + self.delayed
    }
    pub fn add(&mut self, o: &FaultCounts) {
        self.bytes += o.bytes;
        self.dropped += o.dropped;
        self.corrupted += o.corrupted;
        self.duplicated += o.duplicated;
        self.delayed += o.delayed;
    }
}

/// One direction of a serial line.
#[derive(Debug)]
pub struct Wire {
    /// Microseconds one byte occupies the line (10 bits at the baud rate: 8N1).
    pub byte_us: f64,
    faults: Faults,
    rng: Rng,
    /// When the transmitter is free again.
    line_free: f64,
    /// Bytes in flight with their arrival time.
    in_flight: VecDeque<(f64, u8)>,
    pub counts: FaultCounts,
}

impl Wire {
    pub fn new(baud: u32, faults: Faults, seed: u64) -> Self {
        Wire {
            byte_us: 10e6 / baud as f64,
            faults,
            rng: Rng::new(seed),
            line_free: 0.0,
            in_flight: VecDeque::new(),
            counts: FaultCounts::default(),
        }
    }

    /// Queues `bytes` for transmission at `now_us`; returns when the last one leaves the sender.
    pub fn send(&mut self, now_us: u64, bytes: &[u8]) -> u64 {
        let mut t = self.line_free.max(now_us as f64);
        for &b in bytes {
            t += self.byte_us;
            self.counts.bytes += 1;
            let f = self.faults;
            if self.rng.chance(f.drop) {
                self.counts.dropped += 1;
                continue;
            }
            let mut b = b;
            if self.rng.chance(f.corrupt) {
                b ^= 1 << self.rng.below(8);
                self.counts.corrupted += 1;
            }
            let mut arrive = t;
            if self.rng.chance(f.delay) {
                arrive += self.rng.below(f.max_delay_us.max(1)) as f64;
                self.counts.delayed += 1;
            }
            // A UART never reorders: a byte cannot arrive before the one ahead of it.
            if let Some(&(last, _)) = self.in_flight.back() {
                arrive = arrive.max(last);
            }
            self.in_flight.push_back((arrive, b));
            if self.rng.chance(f.duplicate) {
                self.in_flight.push_back((arrive, b));
                self.counts.duplicated += 1;
            }
        }
        self.line_free = t;
        t.ceil() as u64
    }

    /// Bytes that have arrived by `now_us`.
    pub fn recv(&mut self, now_us: u64, out: &mut Vec<u8>) {
        while let Some(&(t, b)) = self.in_flight.front() {
            if t > now_us as f64 {
                break;
            }
            out.push(b);
            self.in_flight.pop_front();
        }
    }

    /// Arrival time of the next byte in flight.
    pub fn next_arrival(&self) -> Option<u64> {
        self.in_flight.front().map(|&(t, _)| t.ceil() as u64)
    }

    /// True while the transmitter is still clocking out bytes at `now_us`.
    pub fn busy(&self, now_us: u64) -> bool {
        self.line_free > now_us as f64
    }

    /// Loses everything in flight (e.g. the receiver rebooted).
    pub fn clear(&mut self) {
        self.in_flight.clear();
    }
}

impl Wire {
    /// When the transmitter is free again (microseconds, rounded up).
    pub fn free_at(&self) -> u64 {
        self.line_free.ceil() as u64
    }
}

mod flash;
pub use flash::{run_flash, FlashRun};
