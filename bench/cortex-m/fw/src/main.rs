//! rsim-edge side of bench/cortex-m: the MLPerf Tiny IC model (ResNet-8) on QEMU mps2-an386
//! (Cortex-M4), between calls of `rsim_cm_mark`, whose executions the markcount QEMU plugin counts.
//!
//! For each engine mode (`lean`: `Options { lean: true, .. }`, the microcontroller mode: ops decoded
//! on every invoke, dense convs and FC on the Cortex-M4 DSP kernel `kernels::fast::cortex_m`, other ops
//! on their reference kernels; `default`: `Options::default()`, ops prepared once, the same kernels on
//! a Cortex-M4) it measures, each region between two consecutive marker calls:
//! - `<mode>:empty`: nothing (the markers' own cost, which the harness subtracts);
//! - `<mode>:invoke`: one whole `Engine::invoke`;
//! - `<mode>:op<i>:<TYPE>`: op i alone, from a second run through `invoke_observed` (which also
//!   decodes each op in lean mode, as every invoke does);
//! - `<mode>:tail`: the observed run's return.
//!
//! Then it prints over semihosting `REGION <k> <label> crc=<crc32 of the op's output>` per region
//! (in marker order), `KERNEL <mode> <i> <op> <kernel>` lines, and `RSIM_DONE`.
#![no_std]
#![no_main]

use core::fmt::Write;
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hio};
use rsim_edge::{Engine, Options};

#[repr(C, align(16))]
struct Aligned<T: ?Sized>(T);

static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/model.rsm")));
static INPUT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/input.bin"));

/// Room for either engine: the lean arena and the default one (activations + packed weights).
const ARENA: usize = 512 * 1024;
const MAX_OPS: usize = 64;

/// The marker the plugin watches: every call snapshots the executed-instruction count.
#[no_mangle]
#[inline(never)]
pub extern "C" fn rsim_cm_mark() {
    // An asm statement is a side effect: the call is never removed or merged.
    unsafe { core::arch::asm!("", options(nostack, preserves_flags)) };
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = (c >> 1) ^ (0xEDB8_8320 & (c & 1).wrapping_neg());
        }
    }
    !c
}

/// One measured region: label parts and the crc of what it produced (0 when nothing).
#[derive(Clone, Copy)]
struct Region {
    mode: &'static str,
    what: &'static str,
    op: Option<u32>,
    crc: u32,
}

struct Regions {
    list: [Region; 2 * (MAX_OPS + 4)],
    len: usize,
}

impl Regions {
    fn push(&mut self, r: Region) -> Result<(), &'static str> {
        let slot = self.list.get_mut(self.len).ok_or("too many regions")?;
        *slot = r;
        self.len += 1;
        Ok(())
    }
}

#[entry]
fn main() -> ! {
    let mut out = hio::hstdout().ok();
    let code = match run(&mut out) {
        Ok(()) => debug::EXIT_SUCCESS,
        Err(msg) => {
            if let Some(o) = out.as_mut() {
                let _ = writeln!(o, "RSIM_ERROR {msg}");
            }
            debug::EXIT_FAILURE
        }
    };
    debug::exit(code);
    loop {
        cortex_m::asm::wfi();
    }
}

fn run(out: &mut Option<hio::HostStream>) -> Result<(), &'static str> {
    let none = Region { mode: "", what: "", op: None, crc: 0 };
    let mut regions = Regions { list: [none; 2 * (MAX_OPS + 4)], len: 0 };
    let mut arena = Aligned([0u8; ARENA]);
    let modes: [(&'static str, Options); 2] =
        [("lean", Options { lean: true, ..Default::default() }), ("default", Options::default())];
    for (mode, opts) in modes {
        let need = rsim_edge::required_arena_with(&MODEL.0, &opts).map_err(|_| "model refused")?;
        if need > ARENA {
            return Err("ARENA too small for this model");
        }
        let mut engine = Engine::with_options(&MODEL.0, &mut arena.0, opts).map_err(|_| "engine refused the model")?;
        if let Some(o) = out.as_mut() {
            for (i, (op, kernel)) in engine.kernels().enumerate() {
                let _ = writeln!(o, "KERNEL {mode} {i} {op} {kernel}");
            }
        }

        rsim_cm_mark();
        rsim_cm_mark();
        regions.push(Region { mode, what: "empty", ..none })?;

        engine.input_mut().copy_from_slice(INPUT);
        rsim_cm_mark();
        let ok = engine.invoke();
        rsim_cm_mark();
        ok.map_err(|_| "invoke failed")?;
        regions.push(Region { mode, what: "invoke", crc: crc32(engine.output()), ..none })?;

        // Op i runs between the mark before it (before the invoke, or the second one in the
        // previous op's observer) and the first mark in its own observer call.
        let mut crcs = [0u32; MAX_OPS];
        let mut names = [""; MAX_OPS];
        let mut count = 0usize;
        engine.input_mut().copy_from_slice(INPUT);
        rsim_cm_mark();
        let ok = engine.invoke_observed(&mut |i, op, bytes| {
            rsim_cm_mark();
            if let (Some(c), Some(n)) = (crcs.get_mut(i as usize), names.get_mut(i as usize)) {
                *c = crc32(bytes);
                *n = op.name();
            }
            count = count.max(i as usize + 1);
            rsim_cm_mark();
        });
        rsim_cm_mark();
        ok.map_err(|_| "observed invoke failed")?;
        if count > MAX_OPS {
            return Err("more ops than MAX_OPS");
        }
        for i in 0..count {
            regions.push(Region { mode, what: names[i], op: Some(i as u32), crc: crcs[i] })?;
        }
        regions.push(Region { mode, what: "tail", ..none })?;
    }

    if let Some(o) = out.as_mut() {
        for (k, r) in regions.list[..regions.len].iter().enumerate() {
            let _ = match r.op {
                Some(i) => writeln!(o, "REGION {k} {}:op{i}:{} crc={:x}", r.mode, r.what, r.crc),
                None => writeln!(o, "REGION {k} {}:{} crc={:x}", r.mode, r.what, r.crc),
            };
        }
        let _ = writeln!(o, "RSIM_DONE");
    }
    Ok(())
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    if let Ok(mut o) = hio::hstdout() {
        let _ = writeln!(o, "RSIM_ERROR panic: {info}");
    }
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
