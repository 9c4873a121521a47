//! Cortex-M test firmware for QEMU `mps2-an386` (Cortex-M4; `mps3-an547` Cortex-M55 with the
//! `an547` feature).
//!
//! Runs the rsim onboard loop (`rsim_boards::onboard`, no heap) over the frames embedded at build
//! time (see build.rs: camera tiles, ready input tensors, or the model's test vector) with the
//! model embedded 16-byte aligned in flash and the arena on the stack. Telemetry frames (postcard
//! + COBS + CRC32, with each tile's raw int8 output) and heartbeats go out of UART0; QEMU's
//! `-serial` hands them to the host (`rsim ground` decodes them). Over semihosting it prints
//! parseable lines and exits QEMU:
//! ```text
//! RSIM_OUTPUT <output tensor bytes as lowercase hex>     one line per classified tile
//! RSIM_DONE frames=<n> tiles=<n> late=<n> dropped=<n> us=<loop time> cycles=<SysTick ticks>
//! RSIM_ERROR <message>                                   exit status 1
//! ```
#![no_std]
#![no_main]

mod clock;
mod frames;
mod uart;

use core::fmt::Write;
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hio};
use embedded_io::Write as _;
use rsim_boards::clock::Clock;
use rsim_boards::onboard::{EngineClassifier, FrameInfo, LoopConfig, OnboardLoop};

include!(concat!(env!("OUT_DIR"), "/model_consts.rs"));

#[cfg(not(feature = "an547"))]
mod board {
    /// CMSDK APB UART0 of AN386.
    pub const UART0: usize = 0x4000_4000;
    /// AN386 system clock (SysTick counts it).
    pub const CORE_HZ: u32 = 25_000_000;
}
#[cfg(feature = "an547")]
mod board {
    /// CMSDK APB UART0 of AN547, secure alias (the core boots secure).
    pub const UART0: usize = 0x5930_3000;
    /// AN547 system clock.
    pub const CORE_HZ: u32 = 32_000_000;
}

/// Forces 16-byte alignment on embedded bytes: the runtime reads f32/i32 constants in place.
#[repr(C, align(16))]
struct Aligned<T: ?Sized>(T);

static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/model.rsm")));
static FRAMES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/frames.bin"));

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
struct Msg(heapless_fmt::Buf);

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

fn msg(args: core::fmt::Arguments<'_>) -> Msg {
    let mut b = heapless_fmt::Buf { bytes: [0; 160], len: 0 };
    let _ = b.write_fmt(args);
    Msg(b)
}

fn run() -> Result<(), Msg> {
    let cp = cortex_m::Peripherals::take().ok_or_else(|| msg(format_args!("core peripherals already taken")))?;
    let clock = clock::SysTickClock::start(cp.SYST, board::CORE_HZ);
    // SAFETY: UART0 is this board's CMSDK UART and only this function drives it.
    let mut uart = unsafe { uart::Uart::new(board::UART0, 16) };
    let mut stdout = hio::hstdout().ok();

    // Arena, frame and tile buffers live on main's stack frame, which never returns: no heap, no `static mut`.
    let mut arena = Aligned([0u8; ARENA_SIZE]);
    let mut frame = [0u8; FRAME_LEN];
    let mut tile = [0u8; TILE_BUF];
    let inner = EngineClassifier::new(&MODEL.0, &mut arena.0).map_err(|e| msg(format_args!("model refused: {e}")))?;
    let mut clf = frames::Firmware {
        inner,
        raw: RAW_TENSORS,
        report: |bytes: &[u8]| {
            if let (true, Some(out)) = (HEX_LINES, stdout.as_mut()) {
                let _ = report_hex(out, bytes);
            }
        },
    };
    let cfg = LoopConfig {
        tile: TILE,
        stride: STRIDE,
        top_k: TOP_K,
        deadline_us: DEADLINE_US,
        heartbeat_us: 1_000_000,
        smoothing: None,
        send_raw_output: true,
    };
    let info = FrameInfo { width: FRAME_W, height: FRAME_H, channels: FRAME_C };
    let mut source = frames::Embedded::new(FRAMES, info, FRAME_LEN, REPEAT);
    let mut lp = OnboardLoop::new(cfg, &clock, &mut tile, &mut []);
    let (t0, c0) = (clock.now_us(), clock.ticks());
    while lp.step(&mut source, &mut frame, &mut clf, &mut uart).map_err(|e| msg(format_args!("loop stopped: {e}")))? {}
    let (us, cycles) = (clock.now_us() - t0, clock.ticks() - c0);
    lp.send_heartbeat(&mut uart);
    let _ = uart.flush();
    let s = lp.stats;
    drop(clf);
    if let Some(out) = stdout.as_mut() {
        let _ = writeln!(
            out,
            "RSIM_DONE frames={} tiles={} late={} dropped={} tx_errors={} classify_errors={} us={us} cycles={cycles}",
            s.frames, s.tiles, s.frames_late, s.tiles_dropped, s.tx_errors, s.classify_errors
        );
    }
    if s.classify_errors > 0 {
        return Err(msg(format_args!("{} tiles failed to classify", s.classify_errors)));
    }
    Ok(())
}

/// One semihosting write per 32 output bytes: each write traps to the host, so fewer is faster.
fn report_hex(out: &mut hio::HostStream, bytes: &[u8]) -> core::fmt::Result {
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
