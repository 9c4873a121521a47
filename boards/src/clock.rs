//! Time for the onboard loop and the flashing protocol, and a fake clock for host tests.

/// A monotonic microsecond clock. MUST never go backwards; MAY wrap only after 2^64 us.
pub trait Clock {
    /// Microseconds since an arbitrary fixed origin (boot).
    fn now_us(&self) -> u64;
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now_us(&self) -> u64 {
        (**self).now_us()
    }
}

/// A clock that only moves when told to: tests advance it explicitly (`advance`), so timing
/// behaviour (deadlines, heartbeats, timeouts) is deterministic on the host.
#[derive(Debug, Default)]
pub struct FakeClock {
    now: core::cell::Cell<u64>,
}

impl FakeClock {
    /// A clock at `start_us`.
    pub fn new(start_us: u64) -> Self {
        FakeClock { now: core::cell::Cell::new(start_us) }
    }
    /// Moves time forward by `us`.
    pub fn advance(&self, us: u64) {
        self.now.set(self.now.get().saturating_add(us));
    }
    /// Sets the time (never backwards: an earlier value is ignored).
    pub fn set(&self, us: u64) {
        if us > self.now.get() {
            self.now.set(us);
        }
    }
}

impl Clock for FakeClock {
    fn now_us(&self) -> u64 {
        self.now.get()
    }
}

/// Wall-clock time since the clock was made (std hosts: agent, ground, flasher).
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct StdClock(std::time::Instant);

#[cfg(feature = "std")]
impl Default for StdClock {
    fn default() -> Self {
        StdClock(std::time::Instant::now())
    }
}

#[cfg(feature = "std")]
impl Clock for StdClock {
    fn now_us(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
}
