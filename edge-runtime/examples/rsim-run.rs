//! `rsim-run`: run an `.rsm` model on raw input tensors and print the output bytes.
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

Runs the model on each input in <input.bin> and prints one line per input,
`RSIM_OUTPUT <hex>`: the raw bytes of the output tensor.

arguments:
  <model.rsm>   model file written by rsim (any .rsm; it is validated before it runs)
  <input.bin>   raw bytes of one or more input tensors back to back (a whole number
                of them; int8 NHWC for an int8 model, little-endian f32 for a float one)

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
        Ok(outputs) => {
            for out in outputs {
                println!("RSIM_OUTPUT {}", hex(&out));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rsim-run: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(model_path: &str, input_path: &str) -> Result<Vec<Vec<u8>>, String> {
    let bytes = std::fs::read(model_path).map_err(|e| format!("cannot read model {model_path}: {e}"))?;
    let inputs = std::fs::read(input_path).map_err(|e| format!("cannot read input {input_path}: {e}"))?;
    // Constants are read in place, so the model must sit 16-byte aligned as it would in flash.
    let mut model = AlignedBuf::new(bytes.len());
    model.bytes_mut().copy_from_slice(&bytes);
    let need = rsim_edge::required_arena(model.bytes()).map_err(|e| format!("{model_path}: {e}"))?;
    let mut arena = AlignedBuf::new(need);
    let mut engine = Engine::new(model.bytes(), arena.bytes_mut()).map_err(|e| format!("{model_path}: {e}"))?;
    let n = engine.input_mut().len();
    if n == 0 || inputs.is_empty() || inputs.len() % n != 0 {
        return Err(format!("{input_path} has {} bytes, not a whole number of {n}-byte input tensors", inputs.len()));
    }
    let mut outputs = Vec::new();
    for (i, input) in inputs.chunks_exact(n).enumerate() {
        engine.input_mut().copy_from_slice(input);
        engine.invoke().map_err(|e| format!("{model_path}: inference on input {i} failed: {e}"))?;
        outputs.push(engine.output().to_vec());
    }
    Ok(outputs)
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
