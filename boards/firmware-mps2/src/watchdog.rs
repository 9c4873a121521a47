//! The board's hardware watchdog around every image verification (boot and commit): a verification
//! that overruns its budget resets the board, which then boots what its boot record says (the old
//! model after a commit, the previous one after a trial). The CMSDK APB watchdog of mps2-an386: it
//! counts down at the core clock, raises its interrupt at zero and reloads; at the second zero with
//! the interrupt still pending it resets the system. mps3-an547 has no watchdog driven here (its
//! secure watchdogs sit behind the SSE-300's own clocking), so there the hooks do nothing.

use rsim_boards::flash::SelfTest;
use rsim_boards::onboard::EngineSelfTest;

/// The self-test under a watchdog.
pub struct Watched(pub EngineSelfTest<'static>);

impl SelfTest for Watched {
    fn build(&mut self, model: &[u8]) -> Result<(), &'static str> {
        self.0.build(model)
    }
    fn run(&mut self, model: &[u8], input: &[u8], expected: &[u8]) -> Result<(), &'static str> {
        self.0.run(model, input, expected)
    }
    fn arm_watchdog(&mut self, budget_ms: u32) {
        if budget_ms > 0 {
            imp::arm(budget_ms);
        }
    }
    fn disarm_watchdog(&mut self) {
        imp::disarm();
    }
}

#[cfg(not(feature = "an547"))]
mod imp {
    use core::ptr::write_volatile;

    const BASE: usize = 0x4000_8000;
    const LOAD: usize = 0x000;
    const CONTROL: usize = 0x008;
    const INTCLR: usize = 0x00C;
    const LOCK: usize = 0xC00;
    const UNLOCK_KEY: u32 = 0x1ACC_E551;
    const INTEN: u32 = 1 << 0;
    const RESEN: u32 = 1 << 1;

    fn write(off: usize, v: u32) {
        // SAFETY: a 32-bit register of the board's CMSDK watchdog; nothing else drives it.
        unsafe { write_volatile((BASE + off) as *mut u32, v) }
    }

    /// Reset after `budget_ms`: two countdowns of half the budget each.
    pub fn arm(budget_ms: u32) {
        let ticks = (u64::from(budget_ms) * u64::from(crate::board::CORE_HZ) / 1000 / 2).clamp(1, u64::from(u32::MAX));
        write(LOCK, UNLOCK_KEY);
        write(INTCLR, 1);
        write(LOAD, ticks as u32);
        write(CONTROL, INTEN | RESEN);
        write(LOCK, 0);
    }

    pub fn disarm() {
        write(LOCK, UNLOCK_KEY);
        write(CONTROL, 0);
        write(INTCLR, 1);
        write(LOCK, 0);
    }
}

#[cfg(feature = "an547")]
mod imp {
    pub fn arm(_budget_ms: u32) {}
    pub fn disarm() {}
}
