//! `cargo xtask bench`: single-thread latency of rsim-edge f32 (and int8 once a float->int8 builder
//! exists) against tract f32 on the ONNX export of the same model, in the same process, plus model
//! bytes, arena vs its liveness lower bound, and model open time (`Engine::new`).
//!
//! Always measures a release build: when invoked from a debug xtask it re-runs itself with
//! `cargo run --release`. Figures, not targets: nothing here fails on speed.

use rsim_edge::tract_backend::TractModel;
use rsim_edge::Engine;
use rsim_model::arch::Arch;
use rsim_model::graph_builder::{export, ExportOptions, Rng};
use rsim_model::Model;
use std::time::{Duration, Instant};

const HELP: &str = "\
usage: cargo xtask bench [--quick] [--min-time SECONDS] [--seed N]

Single-thread latency of MobileNetV2-1.0 and ResNet-18 (random weights, 3 bands, 10 classes) at
64x64 and 224x224: rsim-edge f32, rsim-edge int8, tract f32 on the exported ONNX, with ratios;
model bytes; planned arena vs the liveness lower bound; model open time (Engine::new).
Runs a release build (re-invokes itself with `cargo run --release` from a debug build).

flags:
  --quick             64x64 only
  --min-time SECONDS  time spent per measurement after one warm-up run (default 2; at least 3 runs)
  --seed N            weight seed for the random models (default 1)
  -h, --help          this text";

struct Args {
    quick: bool,
    min_time: Duration,
    seed: u64,
}

fn parse(args: &[String]) -> Result<Option<Args>, String> {
    let mut a = Args { quick: false, min_time: Duration::from_secs(2), seed: 1 };
    let mut it = args.iter();
    while let Some(f) = it.next() {
        match f.as_str() {
            "-h" | "--help" => return Ok(None),
            "--quick" => a.quick = true,
            "--min-time" => {
                let v = it.next().ok_or("--min-time needs a value in seconds")?;
                let s: f64 = v.parse().map_err(|_| format!("--min-time: '{v}' is not a number of seconds"))?;
                if !(s.is_finite() && s > 0.0) {
                    return Err(format!("--min-time must be positive, got {v}"));
                }
                a.min_time = Duration::from_secs_f64(s);
            }
            "--seed" => {
                let v = it.next().ok_or("--seed needs a value")?;
                a.seed = v.parse().map_err(|_| format!("--seed: '{v}' is not an unsigned integer"))?;
            }
            other => return Err(format!("unknown flag `{other}` (see cargo xtask bench --help)")),
        }
    }
    Ok(Some(a))
}

pub fn run(args: &[String]) -> Result<(), String> {
    let Some(a) = parse(args)? else {
        println!("{HELP}");
        return Ok(());
    };
    if cfg!(debug_assertions) {
        // Timings of a debug build mean nothing: hand over to a release build of this same task.
        eprintln!("xtask bench: building and running the release build (first time compiles tract in release: minutes)");
        let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["run", "--quiet", "--release", "--package", "xtask", "--", "bench"])
            .args(args)
            .status()
            .map_err(|e| format!("could not start cargo: {e}"))?;
        return if status.success() { Ok(()) } else { Err(format!("release bench exited with {status}")) };
    }
    let sizes: &[usize] = if a.quick { &[64] } else { &[64, 224] };
    println!("rsim bench (release, single thread; median of >= 3 runs over >= {:.1} s each)\n", a.min_time.as_secs_f64());
    println!(
        "{:<16} {:>4} {:>11} {:>11} {:>11} {:>11} {:>9} {:>11} {:>11} {:>6} {:>10}",
        "model", "size", "rsim f32", "rsim int8", "tract f32", "f32 ratio", "int8/f32", "model B", "arena B", "/bound", "open"
    );
    for &size in sizes {
        for arch in [Arch::MobileNetV2 { width: 1.0 }, Arch::ResNet18] {
            bench_one(arch, size, &a)?;
        }
    }
    println!(
        "\nf32 ratio = rsim f32 / tract f32 (below 1: rsim faster). /bound = arena / liveness lower bound.\n\
         rsim int8: n/a (int8 builder pending) until a float->int8 quantizing exporter lands."
    );
    Ok(())
}

/// Median wall time of `f` over at least 3 runs and `min_time`, after one warm-up.
fn time(min_time: Duration, mut f: impl FnMut()) -> Duration {
    f();
    let mut runs = Vec::new();
    let start = Instant::now();
    while runs.len() < 3 || start.elapsed() < min_time {
        let t = Instant::now();
        f();
        runs.push(t.elapsed());
    }
    runs.sort();
    runs[runs.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn bench_one(arch: Arch, size: usize, a: &Args) -> Result<(), String> {
    let name = arch.name();
    let e = export(&ExportOptions::random(arch, 3, size, Some(10), a.seed)).map_err(|e| format!("{name}: {e}"))?;
    let bytes = e.bytes;
    let model = Model::parse(&bytes).map_err(|e| format!("{name}: {e}"))?;
    let onnx = rsim_model::onnx::to_onnx(&model).map_err(|e| format!("{name}: {e}"))?;
    let mut arena = vec![0u8; model.info.arena_size as usize + 16];

    let open = time(a.min_time / 4, || {
        Engine::new(&bytes, &mut arena).expect("Engine::new on a freshly built model");
    });

    let mut rng = Rng::new(a.seed ^ 0xB0);
    let x: Vec<f32> = (0..size * size * 3).map(|_| rng.normal() as f32).collect();
    let mut engine = Engine::new(&bytes, &mut arena).map_err(|e| format!("{name}: {e}"))?;
    let rsim = time(a.min_time, || engine.run_f32(&x).expect("rsim-edge run"));

    let tract = TractModel::from_onnx(&onnx).map_err(|e| format!("{name}: {e}"))?;
    let tract_t = time(a.min_time, || {
        tract.run_f32(&x).expect("tract run");
    });

    println!(
        "{:<16} {:>4} {:>11} {:>11} {:>11} {:>11.2} {:>9} {:>11} {:>11} {:>6.3} {:>10}",
        name,
        size,
        ms(rsim),
        "n/a",
        ms(tract_t),
        rsim.as_secs_f64() / tract_t.as_secs_f64(),
        "n/a",
        bytes.len(),
        e.plan.arena_size,
        e.plan.ratio(),
        format!("{:.1} us", open.as_secs_f64() * 1e6),
    );
    Ok(())
}
