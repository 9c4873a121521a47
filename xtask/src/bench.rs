//! `cargo xtask bench [edge | models] [flags]`: builds the `rsim-bench` crate in release and runs it
//! with the same arguments (`cargo run --release -p rsim-bench -- <args>`). The benchmarks, and their
//! tract / ONNX Runtime / LiteRT peers, live in `bench/`, so xtask itself links no tract.
//! (`cargo xtask bench train` is `bench_train`, not this.)

pub fn run(args: &[String]) -> Result<(), String> {
    eprintln!("xtask bench: building rsim-bench in release, then running it (the first build compiles tract in release: minutes)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(&cargo)
        .current_dir(crate::setup::repo_root())
        .args(["run", "--quiet", "--release", "--package", "rsim-bench", "--"])
        .args(args)
        .status()
        .map_err(|e| format!("could not start {cargo}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("rsim-bench exited with {status}"))
    }
}
