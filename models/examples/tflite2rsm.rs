//! Converts a full-int8 `.tflite` model to rsim's `.rsm` format.
//!
//! `cargo run -p rsim-model --example tflite2rsm -- model.tflite model.rsm --classes-file labels.txt`

use rsim_model::tflite::{convert, ConvertOptions};
use rsim_model::write::write_atomic;
use std::path::PathBuf;
use std::process::ExitCode;

const HELP: &str = "\
tflite2rsm: convert a full-int8 .tflite model to an rsim .rsm model

USAGE:
    tflite2rsm <INPUT.tflite> <OUTPUT.rsm> [OPTIONS]

ARGS:
    <INPUT.tflite>   TFLite flatbuffer (schema 3); the first subgraph is converted
    <OUTPUT.rsm>     where to write the model (written to a temp file, then renamed)

OPTIONS:
    --name <NAME>            model name stored in the metadata (default: tflite-import)
    --classes <A,B,...>      class names in output order, comma separated
    --classes-file <FILE>    class names, one per line (empty lines ignored)
    -h, --help               print this help

The input spec (size, mean/std) is derived from the input tensor's quantization: pixels 0..255
map linearly onto the int8 input's real range. Multipliers, padding and clamps are computed as
TFLite Micro's Prepare does, so rsim-edge reproduces TFLM's reference kernels bit for bit.
";

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let mut opts = ConvertOptions::default();
    while let Some(a) = args.next() {
        let mut value = |flag: &str| args.next().ok_or_else(|| format!("{flag} needs a value (see --help)"));
        match a.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(());
            }
            "--name" => opts.name = Some(value("--name")?),
            "--classes" => opts.class_names = value("--classes")?.split(',').map(|s| s.trim().to_string()).collect(),
            "--classes-file" => {
                let f = value("--classes-file")?;
                let text = std::fs::read_to_string(&f).map_err(|e| format!("cannot read class names from {f}: {e}"))?;
                opts.class_names = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s} (see --help)")),
            _ => positional.push(PathBuf::from(a)),
        }
    }
    let [input, output] = positional.as_slice() else {
        return Err("expected <INPUT.tflite> <OUTPUT.rsm> (see --help)".into());
    };
    let bytes = std::fs::read(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    opts.source = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let c = convert(&bytes, &opts).map_err(|e| format!("{}: {e}", input.display()))?;
    write_atomic(output, &c.bytes).map_err(|e| format!("cannot write {}: {e}", output.display()))?;
    println!(
        "{} -> {}: {} ops, {} bytes, arena {} bytes (liveness lower bound {}, {:.2}x)",
        input.display(),
        output.display(),
        c.op_count,
        c.bytes.len(),
        c.arena_size,
        c.arena_lower_bound,
        c.arena_size as f64 / c.arena_lower_bound.max(1) as f64
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
