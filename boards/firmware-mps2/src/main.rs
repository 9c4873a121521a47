//! Cortex-M test firmware for QEMU `mps2-an386` (Cortex-M4; `mps3-an547` Cortex-M55 with the
//! `an547` feature), in two builds:
//!
//! - embedded (default, `embedded.rs`): runs the rsim onboard loop (`rsim_boards::onboard`, no heap)
//!   over the frames embedded at build time (see build.rs: camera tiles, ready input tensors, or the
//!   model's test vector) with the model embedded 16-byte aligned in flash, then exits;
//! - receiver (feature `receiver`, `receiver.rs`): no model built in. It boots the model in its A/B
//!   flash slots, receives new ones over UART0 (`rsim flash`), and classifies frames read from the
//!   host until QEMU is stopped.
//!
//! Telemetry frames (postcard + COBS + CRC32, with each tile's raw int8 output) and heartbeats go
//! out of UART0; QEMU's `-serial` hands them to the host (`rsim ground` decodes them). Over
//! semihosting it prints parseable lines:
//! ```text
//! RSIM_OUTPUT <output tensor bytes as lowercase hex>     one line per classified tile (embedded)
//! RSIM_DONE frames=<n> tiles=<n> late=<n> dropped=<n> us=<loop time> cycles=<SysTick ticks>
//! RSIM_BOOT ...  RSIM_MODEL ...  RSIM_ACTIVATED ...      receiver events (see receiver.rs)
//! RSIM_ERROR <message>                                   exit status 1
//! ```
#![no_std]
#![no_main]

mod clock;
#[cfg(not(feature = "receiver"))]
mod embedded;
#[cfg(not(feature = "receiver"))]
mod frames;
#[cfg(feature = "receiver")]
mod receiver;
#[cfg(feature = "receiver")]
mod semiflash;
mod uart;
#[cfg(feature = "receiver")]
mod watchdog;

use core::fmt::Write;
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hio};
#[cfg(not(feature = "receiver"))]
use embedded::run;
#[cfg(feature = "receiver")]
use receiver::run;

#[cfg(not(feature = "an547"))]
mod board {
    /// CMSDK APB UART0 of AN386.
    pub const UART0: usize = 0x4000_4000;
    /// AN386 system clock (SysTick counts it).
    pub const CORE_HZ: u32 = 25_000_000;
    /// 16 MiB of PSRAM outside the linker's regions: the receiver's flash mirror and buffers.
    #[cfg(feature = "receiver")]
    pub const BULK: usize = 0x2100_0000;
    #[cfg(feature = "receiver")]
    pub const BULK_LEN: usize = 16 << 20;
}
#[cfg(feature = "an547")]
mod board {
    /// CMSDK APB UART0 of AN547, secure alias (the core boots secure).
    pub const UART0: usize = 0x5930_3000;
    /// AN547 system clock.
    pub const CORE_HZ: u32 = 32_000_000;
    /// 4 MiB of SRAM outside the linker's regions: the receiver's flash mirror and buffers.
    #[cfg(feature = "receiver")]
    pub const BULK: usize = 0x2100_0000;
    #[cfg(feature = "receiver")]
    pub const BULK_LEN: usize = 4 << 20;
}

#[cfg(not(feature = "receiver"))]
/// Forces 16-byte alignment on embedded bytes: the runtime reads f32/i32 constants in place.
#[repr(C, align(16))]
pub struct Aligned<T: ?Sized>(pub T);

#[entry]
fn main() -> ! {
    let code = match run() {
        Ok(()) => debug::EXIT_SUCCESS,
        Err(msg) => {
            if let Ok(mut out) = hio::hstdout() {
                let _ = writeln!(out, "RSIM_ERROR {msg}");
            }
            debug::EXIT_FAILURE
        }
    };
    debug::exit(code);
    loop {
        cortex_m::asm::wfi();
    }
}

/// Message of a failed run (the runtime's errors print through `Display`).
pub struct Msg(heapless_fmt::Buf);

mod heapless_fmt {
    /// A fixed-size text buffer for one error line.
    pub struct Buf {
        pub bytes: [u8; 160],
        pub len: usize,
    }
    impl core::fmt::Write for Buf {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let room = self.bytes.len() - self.len;
            let n = s.len().min(room);
            self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
            Ok(())
        }
    }
}

impl core::fmt::Display for Msg {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(core::str::from_utf8(&self.0.bytes[..self.0.len]).unwrap_or("(unprintable error)"))
    }
}

pub fn msg(args: core::fmt::Arguments<'_>) -> Msg {
    let mut b = heapless_fmt::Buf { bytes: [0; 160], len: 0 };
    let _ = b.write_fmt(args);
    Msg(b)
}

#[cfg(not(feature = "receiver"))]
/// One semihosting write per 32 output bytes: each write traps to the host, so fewer is faster.
pub fn report_hex(out: &mut hio::HostStream, bytes: &[u8]) -> core::fmt::Result {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.write_str("RSIM_OUTPUT ")?;
    let mut line = [0u8; 64];
    for chunk in bytes.chunks(32) {
        for (pair, &b) in line.chunks_exact_mut(2).zip(chunk) {
            pair[0] = HEX[(b >> 4) as usize];
            pair[1] = HEX[(b & 15) as usize];
        }
        out.write_all(&line[..2 * chunk.len()]).map_err(|_| core::fmt::Error)?;
    }
    out.write_str("\n")
}

/// A panic is a runtime bug (it must return errors instead); say so and fail loudly.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    if let Ok(mut out) = hio::hstdout() {
        let _ = writeln!(out, "RSIM_ERROR panic: {info}");
    }
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
