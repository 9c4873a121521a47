//! Cortex-M4 test firmware for QEMU `mps2-an386`.
//!
//! Runs the model embedded at build time (`RSIM_FW_MODEL`) on the embedded inputs (`RSIM_FW_INPUT`:
//! one or more input tensors back to back) with an arena on the stack and no heap, prints parseable
//! lines over semihosting and exits QEMU:
//! ```text
//! RSIM_OUTPUT <output tensor bytes as lowercase hex>     one line per input, then exit status 0
//! RSIM_ERROR <message>                                   exit status 1
//! ```
//! There is no `#[global_allocator]`: this binary links only because rsim-edge needs no `alloc`.
#![no_std]
#![no_main]

mod infer;

use core::fmt::Write;
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hio};

include!(concat!(env!("OUT_DIR"), "/model_consts.rs"));

/// Forces 16-byte alignment on embedded bytes: the runtime reads f32/i32 constants in place.
#[repr(C, align(16))]
struct Aligned<T: ?Sized>(T);

static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/model.rsm")));
static INPUTS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/input.bin"));

#[entry]
fn main() -> ! {
    // The arena lives on main's stack frame, which never returns: no `static mut`, no unsafe.
    let mut arena = Aligned([0u8; ARENA_SIZE]);
    let mut stdout = hio::hstdout().ok();
    let result = infer::run(&MODEL.0, INPUTS, &mut arena.0, |bytes| {
        if let Some(out) = stdout.as_mut() {
            let _ = report_hex(out, bytes);
        }
    });
    if let (Err(e), Some(out)) = (&result, stdout.as_mut()) {
        let _ = writeln!(out, "RSIM_ERROR {e}");
    }
    debug::exit(if result.is_ok() { debug::EXIT_SUCCESS } else { debug::EXIT_FAILURE });
    loop {
        cortex_m::asm::wfi();
    }
}

fn report_hex(out: &mut hio::HostStream, bytes: &[u8]) -> core::fmt::Result {
    out.write_str("RSIM_OUTPUT ")?;
    for b in bytes {
        write!(out, "{b:02x}")?;
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
