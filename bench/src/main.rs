//! `rsim-bench`: speed of the edge runtime against peer runtimes, measured in one run on one
//! machine (`cargo xtask bench ...` builds and runs this in release).
//!
//! # `rsim-bench edge`: method
//!
//! - **Models.** MLPerf Tiny image classification (ResNet-8, 32x32x3) and keyword spotting (DS-CNN,
//!   49x10x1), converted from their int8 `.tflite` files in `$RSIM_MODELS` with
//!   `rsim_model::tflite::convert`; MobileNetV2-1.0 and ResNet-18 at 224x224 (1000 classes) and
//!   MobileNetV2-0.35 at 64x64 (10 classes) built with random weights by `rsim_model::graph_builder`,
//!   each as f32 and as int8 (post-training quantization, `rsim_model::ptq`, min/max ranges of a few
//!   random images; random weights are fine for speed, not for accuracy).
//! - **Engines.** rsim-edge (`Engine::invoke` on the `.rsm`, int8 and f32); tract (f32, on the ONNX
//!   export); ONNX Runtime (f32 on the ONNX export, int8 on the QDQ export, which ORT fuses into its
//!   integer kernels); LiteRT with its default XNNPACK delegate on the original int8 `.tflite` (the
//!   MLPerf models only). ONNX Runtime and LiteRT run in `bench/peers.py` under `<repo>/.venv`,
//!   driven over a pipe; the bench pip-installs them there when missing and prints a loud SKIPPED
//!   line for any peer it cannot set up or run.
//! - **Threads.** One: rsim-edge is single-threaded, tract runs without a thread pool, ONNX Runtime
//!   with intra-op = inter-op = 1 threads and sequential execution, LiteRT with `num_threads = 1`.
//! - **Timing.** Every engine gets the same input bytes and the same protocol: 3 warm-up inferences
//!   (which also estimate each engine's speed), then the same number N of timed inferences for every
//!   engine of a model. N is picked so the fastest engine runs for at least `--min-time` seconds
//!   (at least 10 runs), capped so that the slowest runs for about 10x `--min-time`. The N runs are
//!   spread over 5 rounds that visit the engines in turn, so a slow drift of the machine (shared VMs
//!   drift) hits every engine alike. Each inference is timed alone (the input is restored outside
//!   the timed region where the API allows it); the table reports the median and the minimum.
//! - **Ratio.** Median time over the median time of the fastest peer (any engine but rsim-edge) on
//!   the same model: below 1 is faster than every peer.
//! - **% of peak.** Multiply-accumulates of the model (Conv2d, dense, grouped and depthwise, and
//!   FullyConnected: output elements x kernel taps x input channels per group, counted on the decoded
//!   `.rsm` ops) per second, over this CPU's peak measured in the same run by `peak`: int8 rows against
//!   the int8 MAC/s peak (x86_64: independent `vpmaddwd` + `vpaddd` chains, 16 MACs per instruction;
//!   `vpdpbusd` on AVX-512 VNNI, 64), f32 rows against half the f32 FLOP/s peak (independent FMA
//!   chains). The int8 peak is the 16-bit multiply rate; kernels built on `vpmaddubsw` (u8 x i8 with
//!   16-bit saturation, as some peers use) can exceed 100 % of it.
//!
//! The table goes to stdout; every row, the machine (CPU model, x86 features, load average), the
//! peaks, the peers' versions and every skipped measurement go to JSON (default
//! `<repo>/target/bench/edge.json`). Figures, not targets: nothing here fails on speed.
//!
//! # `rsim-bench models`
//!
//! The earlier `cargo xtask bench`: rsim-edge f32 and int8 against tract f32 on MobileNetV2-1.0 and
//! ResNet-18 (random weights) at 64 and 224, plus model bytes, arena vs its liveness lower bound and
//! model open time.

mod edge;
mod models;
mod peak;
mod peers;
mod timing;
mod zoo;

use std::path::PathBuf;

const HELP: &str = "\
usage: rsim-bench <command> [flags]      (cargo xtask bench <command> [flags] builds it in release)

commands:
  edge     rsim-edge vs tract, ONNX Runtime and LiteRT on MLPerf Tiny and MobileNetV2/ResNet-18,
           int8 and f32, single thread; table + JSON (target/bench/edge.json)
  models   rsim-edge f32/int8 vs tract f32 at 64 and 224, model/arena bytes, open time
           (the default when no command is given)

`rsim-bench <command> --help` lists each command's flags.";

/// The workspace root (this crate lives one level below it).
pub fn repo_root() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().unwrap_or(root)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if cfg!(debug_assertions) {
        eprintln!("rsim-bench: WARNING: this is a debug build, its timings mean nothing (run with --release, or cargo xtask bench)");
    }
    let (cmd, result) = match args.first().map(String::as_str) {
        Some("edge") => ("edge", edge::run(&args[1..])),
        Some("models") => ("models", models::run(&args[1..])),
        Some("-h" | "--help" | "help") => {
            println!("{HELP}");
            return;
        }
        // `cargo xtask bench [--quick]` kept meaning the rsim-vs-tract model table.
        None => ("models", models::run(&[])),
        Some(f) if f.starts_with('-') => ("models", models::run(&args)),
        Some(other) => ("", Err(format!("unknown command `{other}`\n\n{HELP}"))),
    };
    if let Err(e) = result {
        eprintln!("rsim-bench {cmd}: {e}");
        std::process::exit(1);
    }
}
