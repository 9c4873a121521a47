//! `rsim-bench models` (the earlier `cargo xtask bench`): single-thread latency of rsim-edge f32 and
//! int8 (PTQ) against tract f32 on the ONNX export of the same model, in the same process, plus model
//! bytes, arena vs its liveness lower bound, and model open time (`Engine::new`).
//! Figures, not targets: nothing here fails on speed.

use crate::timing::time_median as time;
use crate::zoo;
use rsim_edge::tract_backend::TractModel;
use rsim_edge::Engine;
use rsim_model::arch::Arch;
use rsim_model::graph_builder::{export, ExportOptions, Rng};
use rsim_model::Model;
use std::time::Duration;

const HELP: &str = "\
usage: cargo xtask bench [models] [--quick] [--min-time SECONDS] [--seed N]
       (or: cargo run --release -p rsim-bench -- models [flags])

Single-thread latency of MobileNetV2-1.0 and ResNet-18 (random weights, 3 bands, 10 classes) at
64x64 and 224x224: rsim-edge f32, rsim-edge int8 (PTQ, min/max over 4 random images), tract f32 on
the exported ONNX, with ratios; model bytes; planned arena vs the liveness lower bound; model open
time (Engine::new). For peers beyond tract (ONNX Runtime, LiteRT) see `cargo xtask bench edge`.

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
            other => return Err(format!("unknown flag `{other}` (see rsim-bench models --help)")),
        }
    }
    Ok(Some(a))
}

pub fn run(args: &[String]) -> Result<(), String> {
    let Some(a) = parse(args)? else {
        println!("{HELP}");
        return Ok(());
    };
    let sizes: &[usize] = if a.quick { &[64] } else { &[64, 224] };
    println!("rsim bench (single thread; median of >= 3 runs over >= {:.1} s each)\n", a.min_time.as_secs_f64());
    println!(
        "{:<16} {:>4} {:>11} {:>11} {:>11} {:>11} {:>9} {:>11} {:>11} {:>6} {:>10}",
        "model",
        "size",
        "rsim f32",
        "rsim int8",
        "tract f32",
        "f32 ratio",
        "int8/f32",
        "model B",
        "arena B",
        "/bound",
        "open"
    );
    for &size in sizes {
        for arch in [Arch::MobileNetV2 { width: 1.0 }, Arch::ResNet18] {
            bench_one(arch, size, &a)?;
        }
    }
    println!(
        "\nf32 ratio = rsim f32 / tract f32 (below 1: rsim faster). int8/f32 = rsim int8 / rsim f32.\n\
         arena B = planned activations (the engine adds its prepared-op data on top); /bound = that / its\n\
         liveness lower bound. model B, arena B and open: the f32 model."
    );
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn bench_one(arch: Arch, size: usize, a: &Args) -> Result<(), String> {
    let name = arch.name();
    let e = export(&ExportOptions::random(arch, 3, size, Some(10), a.seed)).map_err(|e| format!("{name}: {e}"))?;
    let bytes = zoo::Aligned::new(&e.bytes);
    let bytes = bytes.bytes();
    let model = Model::parse(bytes).map_err(|e| format!("{name}: {e}"))?;
    let onnx = rsim_model::onnx::to_onnx(&model).map_err(|e| format!("{name}: {e}"))?;
    let mut arena = zoo::arena_for(bytes)?;

    let open = time(a.min_time / 4, || {
        Engine::new(bytes, &mut arena).expect("Engine::new on a freshly built model");
    });

    let mut rng = Rng::new(a.seed ^ 0xB0);
    let x: Vec<f32> = (0..size * size * 3).map(|_| rng.normal() as f32).collect();
    let mut engine = Engine::new(bytes, &mut arena).map_err(|e| format!("{name}: {e}"))?;
    let rsim = time(a.min_time, || engine.run_f32(&x).expect("rsim-edge run"));

    let int8 = zoo::ptq_int8(&e.bytes, &zoo::random_images(4, size, a.seed ^ 0xCA1), size)
        .map_err(|e| format!("{name} int8 PTQ: {e}"))?;
    let int8 = zoo::Aligned::new(&int8);
    let mut arena8 = zoo::arena_for(int8.bytes())?;
    let mut engine8 = Engine::new(int8.bytes(), &mut arena8).map_err(|e| format!("{name} int8: {e}"))?;
    let rsim8 = time(a.min_time, || engine8.run_f32(&x).expect("rsim-edge int8 run"));

    let tract = TractModel::from_onnx(&onnx).map_err(|e| format!("{name}: {e}"))?;
    let tract_t = time(a.min_time, || {
        tract.run_f32(&x).expect("tract run");
    });

    println!(
        "{:<16} {:>4} {:>11} {:>11} {:>11} {:>11.2} {:>9.2} {:>11} {:>11} {:>6.3} {:>10}",
        name,
        size,
        ms(rsim),
        ms(rsim8),
        ms(tract_t),
        rsim.as_secs_f64() / tract_t.as_secs_f64(),
        rsim8.as_secs_f64() / rsim.as_secs_f64(),
        e.bytes.len(),
        e.plan.arena_size,
        e.plan.ratio(),
        format!("{:.1} us", open.as_secs_f64() * 1e6),
    );
    Ok(())
}
