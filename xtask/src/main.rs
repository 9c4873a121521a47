//! `cargo xtask <task>`: the glue a user would otherwise type. Each task lives in its own module.
mod bench;
mod bench_train;
mod demo;
mod gates;
mod prereq;
mod setup;
mod test;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((t, r)) => (t.as_str(), r),
        None => ("help", &[][..]),
    };
    let result = match task {
        "setup" => setup::run(rest),
        "demo" => demo::run_demo(rest),
        "test" => test::run(rest),
        "bench" if rest.first().map(String::as_str) == Some("train") => bench_train::run(&rest[1..]),
        "bench" => bench::run(rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n\
                 tasks:\n  \
                 demo           the main job: pretrain, few-label probes, int8 edge run (see --help)\n  \
                 setup          create .venv with torch 2.11 and build the trainer against it\n  \
                 test           every check CI runs: fmt, clippy, doc, no_std, MSRV gates, then the tests
  \
                 \x20              (host, qemu-aarch64, Cortex-M under QEMU; --help)\n  \
                 bench edge     edge runtime vs tract, ONNX Runtime and LiteRT: int8/f32, median/min ms,\n  \
                 \x20              % of peak; table + target/bench/edge.json (--quick, --help)\n  \
                 bench          (= bench models) edge runtime f32/int8 latency, memory vs tract (--quick: 64x64)\n  \
                 bench train    one SSL step and the data pipeline vs PyTorch in the same run"
            );
            Err(if task == "help" { String::new() } else { format!("unknown task `{task}`") })
        }
    };
    if let Err(e) = result {
        if !e.is_empty() {
            eprintln!("xtask {task}: {e}");
        }
        std::process::exit(1);
    }
}
