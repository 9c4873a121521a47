//! rsim-edge side of bench/aarch64: one int8 MLPerf Tiny model through `rsim_edge::Engine` under
//! qemu-aarch64, between calls of `rsim_mark`, whose executions the markcount QEMU plugin
//! (bench/cortex-m/plugin/markcount.c) counts.
//!
//!   rsim-aarch64-count <model.tflite> <input.bin> <native|nodot|portable|reference>
//!
//! The `.tflite` is converted in process (`rsim_model::tflite::convert`, before any marker). Kernel
//! families: `native` = `Kernels::Native` (the `sdot` GEMM where the CPU has the dot-product
//! extension), `nodot` = `Kernels::NativeNoDotProd` (the NEON `smlal` GEMM), as `Options::kernels`
//! with one thread. Regions, each between two consecutive marker calls, in this order:
//! 1. `empty`: nothing (the marker's own cost);
//! 2. `invoke`: one whole `Engine::invoke`;
//! 3. `op<i>`: op i of a second run through `invoke_observed` (whose observer calls the marker), so
//!    each op's count includes one observer call.
//!
//! Prints `isa <name>`, `op <i> <type> <kernel>` per op, and `output <hex>` (must be the same for
//! every kernel family).
use rsim_edge::{required_arena_with, Engine, Kernels, Options};
use std::process::ExitCode;

/// The marker the plugin watches: every call snapshots the executed-instruction count.
#[no_mangle]
#[inline(never)]
pub extern "C" fn rsim_mark() {
    // An asm statement is a side effect: the call is never removed or merged.
    unsafe { core::arch::asm!("", options(nostack, preserves_flags)) };
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rsim-aarch64-count: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [tflite, input, kernels] = args.as_slice() else {
        return Err("usage: rsim-aarch64-count <model.tflite> <input.bin> <native|nodot|portable|reference>".into());
    };
    let kernels = match kernels.as_str() {
        "native" => Kernels::Native,
        "nodot" => Kernels::NativeNoDotProd,
        "portable" => Kernels::Portable,
        "reference" => Kernels::Reference,
        k => return Err(format!("unknown kernel family {k}")),
    };
    let read = |p: &str| std::fs::read(p).map_err(|e| format!("{p}: {e}"));
    let converted = rsim_model::tflite::convert(&read(tflite)?, &rsim_model::tflite::ConvertOptions::default())
        .map_err(|e| format!("convert {tflite}: {e}"))?;
    let input = read(input)?;
    // int8 constants are read in place at any alignment.
    let model = converted.bytes.as_slice();
    let opts = Options { kernels, threads: 1, ..Options::default() };
    let need = required_arena_with(model, &opts).map_err(|e| e.to_string())?;
    let mut arena = vec![0u8; need + 16];
    let mut engine = Engine::with_options(model, &mut arena, opts).map_err(|e| e.to_string())?;
    println!("isa {}", engine.report().isa);
    for (i, (op, kernel)) in engine.kernels().enumerate() {
        println!("op {i} {op} {}", kernel.replace(' ', "-"));
    }
    if engine.input_mut().len() != input.len() {
        return Err(format!("input has {} bytes, the model's input {}", input.len(), engine.input_mut().len()));
    }

    rsim_mark();
    rsim_mark();

    engine.input_mut().copy_from_slice(&input);
    rsim_mark();
    let ok = engine.invoke();
    rsim_mark();
    ok.map_err(|e| e.to_string())?;
    let out = engine.output().to_vec();

    engine.input_mut().copy_from_slice(&input);
    rsim_mark();
    engine.invoke_observed(&mut |_, _, _| rsim_mark()).map_err(|e| e.to_string())?;
    if engine.output() != out.as_slice() {
        return Err("the observed run gave other bytes".into());
    }
    println!("output {}", out.iter().map(|b| format!("{b:02x}")).collect::<String>());
    Ok(())
}
