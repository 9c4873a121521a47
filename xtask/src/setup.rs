//! `cargo xtask setup`: a `.venv` with pip's torch 2.11.0 (+ torchvision 0.26 for the benchmark
//! comparisons), then the trainer built against it through `LIBTORCH_USE_PYTORCH=1`.
//!
//! The CPU wheel index is tried first (small download, enough for CI); when it is unreachable, or with
//! `--cuda`, torch comes from PyPI (the CUDA build, which also runs on CPU).
use std::path::{Path, PathBuf};
use std::process::Command;

pub const TORCH_VERSION: &str = "2.11.0";
pub const TORCHVISION_VERSION: &str = "0.26.0";
const CPU_INDEX: &str = "https://download.pytorch.org/whl/cpu";

const HELP: &str = "usage: cargo xtask setup [--cpu | --cuda] [--no-build] [--release]

Creates .venv (python3 -m venv) with torch==2.11.0 and torchvision==0.26.0, then builds rsim-train
(binary `rsim`) against that torch with LIBTORCH_USE_PYTORCH=1.

  --cpu        only try the CPU wheel index (fail if it is unreachable)
  --cuda       install from PyPI (CUDA build) without trying the CPU index
  --no-build   only create/refresh the virtual environment
  --release    build the trainer in release mode (default: debug, as `cargo test` uses)

Environment: PYTHON (interpreter used to create .venv, default python3),
RSIM_TORCH_INDEX (a pip index URL to use instead of the two above).
An existing .venv that already holds torch 2.11.0 is kept as is.";

/// The workspace root (xtask lives one level below it).
pub fn repo_root() -> PathBuf {
    // Canonical, so the paths the demo and tests print read /repo/runs/demo, not /repo/xtask/../runs/demo.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().unwrap_or(root)
}

pub fn venv_dir() -> PathBuf {
    repo_root().join(".venv")
}

fn venv_python() -> PathBuf {
    venv_dir().join("bin").join("python")
}

/// `.venv/lib/python3.X/site-packages/torch/lib`, if torch is installed there.
pub fn torch_lib_dir() -> Option<PathBuf> {
    let lib = venv_dir().join("lib");
    let entries = std::fs::read_dir(&lib).ok()?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages").join("torch").join("lib"))
        .filter(|p| p.is_dir())
        .collect();
    found.sort();
    found.pop()
}

/// Environment for building and running anything that links libtorch from `.venv`:
/// `LIBTORCH_USE_PYTORCH=1`, `LD_LIBRARY_PATH` with torch/lib first, the venv's `bin` first on `PATH`
/// (torch-sys asks `python` where torch lives).
pub fn torch_env() -> Vec<(String, String)> {
    let mut env = vec![("LIBTORCH_USE_PYTORCH".to_string(), "1".to_string())];
    let prepend = |var: &str, dir: &Path| {
        let old = std::env::var(var).unwrap_or_default();
        let dir = dir.display().to_string();
        if old.is_empty() {
            dir
        } else {
            format!("{dir}:{old}")
        }
    };
    if let Some(lib) = torch_lib_dir() {
        env.push(("LD_LIBRARY_PATH".into(), prepend("LD_LIBRARY_PATH", &lib)));
    }
    env.push(("PATH".into(), prepend("PATH", &venv_dir().join("bin"))));
    env
}

fn run_cmd(cmd: &mut Command) -> Result<(), String> {
    eprintln!("xtask setup: {cmd:?}");
    let status = cmd.status().map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}

fn installed_torch() -> Option<String> {
    let out = Command::new(venv_python()).args(["-c", "import torch; print(torch.__version__)"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn pip_install(index: Option<&str>) -> Result<(), String> {
    let mut cmd = Command::new(venv_python());
    cmd.args(["-m", "pip", "install"]);
    if let Some(url) = index {
        cmd.args(["--index-url", url]);
    }
    cmd.arg(format!("torch=={TORCH_VERSION}")).arg(format!("torchvision=={TORCHVISION_VERSION}"));
    run_cmd(&mut cmd)
}

pub fn run(args: &[String]) -> Result<(), String> {
    let (mut cpu_only, mut cuda, mut build, mut release) = (false, false, true, false);
    for a in args {
        match a.as_str() {
            "--cpu" => cpu_only = true,
            "--cuda" => cuda = true,
            "--no-build" => build = false,
            "--release" => release = true,
            "-h" | "--help" => {
                println!("{HELP}");
                return Ok(());
            }
            other => return Err(format!("unknown flag `{other}`\n\n{HELP}")),
        }
    }
    if cpu_only && cuda {
        return Err("--cpu and --cuda exclude each other".into());
    }
    if !venv_python().exists() {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        run_cmd(Command::new(&python).args(["-m", "venv"]).arg(venv_dir()))?;
    }
    match installed_torch() {
        // `2.11.0` or `2.11.0+cpu` / `+cu130`: the build check ignores the local suffix too.
        Some(v) if v.split('+').next() == Some(TORCH_VERSION) => {
            eprintln!("xtask setup: .venv already has torch {v}");
        }
        found => {
            if let Some(v) = found {
                eprintln!("xtask setup: .venv has torch {v}, installing {TORCH_VERSION}");
            }
            if let Ok(url) = std::env::var("RSIM_TORCH_INDEX") {
                pip_install(Some(&url))?;
            } else if cuda {
                pip_install(None)?;
            } else {
                match pip_install(Some(CPU_INDEX)) {
                    Ok(()) => {}
                    Err(e) if !cpu_only => {
                        eprintln!("xtask setup: CPU wheel index failed ({e}); falling back to PyPI");
                        pip_install(None)?;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    let lib = torch_lib_dir().ok_or("torch installed but .venv/lib/python*/site-packages/torch/lib not found")?;
    eprintln!("xtask setup: libtorch at {}", lib.display());
    if build {
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(repo_root()).args(["build", "-p", "rsim-train"]);
        if release {
            cmd.arg("--release");
        }
        cmd.envs(torch_env());
        run_cmd(&mut cmd)?;
        eprintln!(
            "xtask setup: done. Run tests with `cargo xtask test`, or by hand:\n  \
             LIBTORCH_USE_PYTORCH=1 LD_LIBRARY_PATH={} PATH=$PWD/.venv/bin:$PATH cargo test -p rsim-train",
            lib.display()
        );
    }
    Ok(())
}
