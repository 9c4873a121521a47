//! A microsecond clock from SysTick: the 24-bit down-counter runs at the core clock and its wrap
//! interrupt extends it to 64 bits. Under QEMU the count follows virtual time (host time, or
//! instructions with `-icount`), not real Cortex-M cycles.

use core::cell::Cell;
use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{SCB, SYST};
use cortex_m_rt::exception;
use rsim_boards::clock::Clock;

const RELOAD: u32 = 0x00FF_FFFF;
static WRAPS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    WRAPS.fetch_add(1, Ordering::Relaxed);
}

/// SysTick-based [`Clock`]; `hz` is the core clock SysTick counts.
pub struct SysTickClock {
    hz: u32,
    last: Cell<u64>,
}

impl SysTickClock {
    pub fn start(mut syst: SYST, hz: u32) -> Self {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        SysTickClock { hz: hz.max(1_000_000), last: Cell::new(0) }
    }

    /// Core clock ticks since start.
    pub fn ticks(&self) -> u64 {
        loop {
            let w1 = WRAPS.load(Ordering::Relaxed);
            let pend1 = SCB::is_pendst_pending();
            let val = SYST::get_current();
            let pend2 = SCB::is_pendst_pending();
            if WRAPS.load(Ordering::Relaxed) != w1 || pend1 != pend2 {
                continue; // a wrap happened while reading: read again
            }
            // A wrap whose interrupt is not yet taken (QEMU delivers it at block boundaries).
            let wraps = w1 as u64 + pend1 as u64;
            return wraps * (RELOAD as u64 + 1) + (RELOAD - val) as u64;
        }
    }
}

impl Clock for SysTickClock {
    fn now_us(&self) -> u64 {
        let t = self.ticks() / (self.hz / 1_000_000) as u64;
        // Never backwards, whatever the emulator's timer delivery order.
        let t = t.max(self.last.get());
        self.last.set(t);
        t
    }
}
