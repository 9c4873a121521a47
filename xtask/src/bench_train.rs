//! `cargo xtask bench train`: rsim vs PyTorch eager in the same `.venv`, same machine, same run.
//! (1) one SimCLR step (two views, fixed model and batch) per architecture; (2) the data pipeline's
//! decoded + augmented images/s vs a PyTorch DataLoader with 2 workers.
use std::path::PathBuf;
use std::process::Command;

use crate::setup::{repo_root, torch_env, torch_lib_dir, venv_dir};

const HELP: &str = "usage: cargo xtask bench train [--arch A,B] [--size N] [--batch N] [--steps N]
                              [--images N] [--no-data] [--device cpu|cuda]

  --arch     architectures for the step benchmark (default resnet18,mobilenet_v2)
  --size     input side (default 64)      --batch   batch per view (default 64)
  --steps    timed steps (default 6; the first step is warm-up and not counted)
  --images   images through each data pipeline (default 4096)
  --no-data  skip the data-pipeline comparison
  --device   where rsim runs its step (default cpu; the PyTorch reference script runs on CPU)
  --dev      use the dev-profile build (deps at opt-level 2; the step's compute is in libtorch
             either way) instead of building rsim in release mode

Needs `cargo xtask setup` first. Data: $RSIM_DATA/eurosat-rgb (default ../shared/datasets).
Reference script: $RSIM_REFERENCE/pytorch_simclr_step.py (default ../shared/reference).";

fn last_rate(out: &str) -> Option<f64> {
    out.lines().rev().find_map(|l| l.strip_suffix(" img/s").and_then(|v| v.trim().parse().ok()))
}

fn run_capture(mut cmd: Command) -> Result<(String, f64), String> {
    cmd.envs(torch_env());
    let out = cmd.output().map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(format!("{cmd:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    let rate = last_rate(&text).ok_or_else(|| format!("{cmd:?} printed no 'N img/s' line:\n{text}"))?;
    Ok((text, rate))
}

pub fn run(args: &[String]) -> Result<(), String> {
    let (mut archs, mut size, mut batch, mut steps, mut images, mut data, mut device) =
        ("resnet18,mobilenet_v2".to_string(), 64, 64, 6, 4096, true, "cpu".to_string());
    let mut release = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|e| format!("{a} {v}: {e}"));
        match a.as_str() {
            "--arch" => archs = val()?,
            "--size" => size = num(val()?)?,
            "--batch" => batch = num(val()?)?,
            "--steps" => steps = num(val()?)?,
            "--images" => images = num(val()?)?,
            "--device" => device = val()?,
            "--no-data" => data = false,
            "--dev" => release = false,
            "-h" | "--help" => {
                println!("{HELP}");
                return Ok(());
            }
            o => return Err(format!("unknown flag `{o}`\n\n{HELP}")),
        }
    }
    torch_lib_dir().ok_or("no torch in .venv: run `cargo xtask setup` first")?;
    let python = venv_dir().join("bin").join("python");
    let root = repo_root();
    let shared = root.join("..").join("shared");
    let reference = std::env::var("RSIM_REFERENCE").map(PathBuf::from).unwrap_or_else(|_| shared.join("reference"));
    let datasets = std::env::var("RSIM_DATA").map(PathBuf::from).unwrap_or_else(|_| shared.join("datasets"));

    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build.current_dir(&root).args(["build", "-p", "rsim-train", "--bin", "rsim"]).envs(torch_env());
    if release {
        build.arg("--release");
    }
    eprintln!("xtask bench train: {build:?}");
    let st = build.status().map_err(|e| format!("cargo build: {e}"))?;
    if !st.success() {
        return Err("building rsim (release) failed".into());
    }
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    let rsim = target.join(if release { "release" } else { "debug" }).join("rsim");

    println!("== one SimCLR step: two views, batch {batch} per view, {size}x{size}, SGD (img/s counts both views)");
    println!("{:<16} {:>12} {:>12} {:>8}", "arch", "rsim img/s", "torch img/s", "ratio");
    for arch in archs.split(',') {
        let mut r = Command::new(&rsim);
        r.args(["bench", "step", "--arch", arch, "--size", &size.to_string(), "--batch", &batch.to_string()]).args([
            "--steps",
            &steps.to_string(),
            "--device",
            &device,
        ]);
        let (rt, rr) = run_capture(r)?;
        let mut p = Command::new(&python);
        p.arg(reference.join("pytorch_simclr_step.py")).args([
            arch,
            &size.to_string(),
            &batch.to_string(),
            &(steps + 1).to_string(),
        ]);
        let (pt, pr) = run_capture(p)?;
        eprint!("{rt}{pt}");
        println!("{arch:<16} {rr:>12.1} {pr:>12.1} {:>7.2}x", rr / pr);
    }
    if data {
        let eurosat = datasets.join("eurosat-rgb");
        if !eurosat.is_dir() {
            return Err(format!("{} not found (set RSIM_DATA)", eurosat.display()));
        }
        let n = images.to_string();
        println!("== data pipeline: decode JPEG + two SimCLR views, {size}x{size}, 2 workers, no cache");
        let mut r = Command::new(&rsim);
        r.args(["bench", "data", "--data"]).arg(&eurosat).args([
            "--images",
            &n,
            "--size",
            &size.to_string(),
            "--workers",
            "2",
        ]);
        let (rt, rr) = run_capture(r)?;
        let mut p = Command::new(&python);
        p.arg(root.join("xtask/scripts/dataloader_bench.py")).arg(&eurosat).args([
            n.as_str(),
            "128",
            &size.to_string(),
            "2",
        ]);
        let (pt, pr) = run_capture(p)?;
        eprint!("{rt}{pt}");
        println!("{:<28} {rr:>10.1} img/s", "rsim (Rust workers)");
        println!("{:<28} {pr:>10.1} img/s", "PyTorch DataLoader");
        println!("{:<28} {:>10.2}x", "ratio", rr / pr);
    }
    Ok(())
}
