//! `rsim-run`: run an `.rsm` model once on a raw input tensor and print the output bytes.
//!
//! Built for aarch64 Linux boards (and run under `qemu-aarch64` by the cross-target test), so it
//! stays tiny: no argument-parsing crate, std only. The output line matches the Cortex-M test
//! firmware's, so one parser reads both:
//! ```text
//! RSIM_OUTPUT <output tensor bytes as lowercase hex>
//! ```
use rsim_edge::Engine;
use std::process::ExitCode;

const USAGE: &str = "\
usage: rsim-run <model.rsm> <input.bin>

Runs the model once and prints `RSIM_OUTPUT <hex>`: the raw bytes of the output tensor.

arguments:
  <model.rsm>   model file written by rsim (any .rsm; it is validated before it runs)
  <input.bin>   raw bytes of the graph's input tensor, exactly its size
                (int8 NHWC for an int8 model, little-endian f32 for a float one)

options:
  -h, --help    print this help

exit status: 0 on success, 1 on a model/input/runtime error, 2 on bad arguments";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let [model_path, input_path] = args.as_slice() else {
        eprintln!("rsim-run: expected two arguments, got {}\n\n{USAGE}", args.len());
        return ExitCode::from(2);
    };
    match run(model_path, input_path) {
        Ok(out) => {
            println!("RSIM_OUTPUT {}", hex(&out));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rsim-run: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(model_path: &str, input_path: &str) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(model_path).map_err(|e| format!("cannot read model {model_path}: {e}"))?;
    let input = std::fs::read(input_path).map_err(|e| format!("cannot read input {input_path}: {e}"))?;
    // Constants are read in place, so the model must sit 16-byte aligned as it would in flash.
    let mut model = AlignedBuf::new(bytes.len());
    model.bytes_mut().copy_from_slice(&bytes);
    let need = rsim_edge::required_arena(model.bytes()).map_err(|e| format!("{model_path}: {e}"))?;
    let mut arena = AlignedBuf::new(need);
    let mut engine = Engine::new(model.bytes(), arena.bytes_mut()).map_err(|e| format!("{model_path}: {e}"))?;
    let dst = engine.input_mut();
    if dst.len() != input.len() {
        return Err(format!("{input_path} has {} bytes but the model's input tensor has {}", input.len(), dst.len()));
    }
    dst.copy_from_slice(&input);
    engine.invoke().map_err(|e| format!("{model_path}: inference failed: {e}"))?;
    Ok(engine.output().to_vec())
}

/// A zeroed byte buffer whose start is 16-byte aligned (backed by `u128`s).
struct AlignedBuf {
    words: Vec<u128>,
    len: usize,
}

impl AlignedBuf {
    fn new(len: usize) -> Self {
        AlignedBuf { words: vec![0; len.div_ceil(16)], len }
    }
    fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.words)[..self.len]
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
