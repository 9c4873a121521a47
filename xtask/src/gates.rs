//! The gates of `cargo xtask test`, cheapest first: formatting, the no_std builds, rustdoc and the
//! minimum supported Rust version, and the environment that lints the test build with clippy. Each
//! fails the run with the command to reproduce.
use crate::prereq;
use crate::setup;
use std::path::Path;
use std::process::Command;

/// Crates outside the workspace (their own targets or toolchains) that `cargo fmt --all` misses.
const EXTRA_CRATES: &[&str] =
    &["boards/firmware-mps2", "tests/firmware-dsp", "fuzz", "bench/cortex-m/fw", "bench/cortex-m/gen", "bench/aarch64"];

/// The crates a microcontroller links, compiled without default features for every Cortex-M target.
const NO_STD_CRATES: &[&str] = &["rsim-model", "rsim-edge", "rsim-boards"];
const NO_STD_TARGETS: &[&str] = &["thumbv6m-none-eabi", "thumbv7em-none-eabihf", "thumbv8m.main-none-eabihf"];

/// The libraries a board integrator builds with their own pinned toolchain (their no_std core, as a
/// firmware links them): checked with the MSRV. The std side (tract, the trainer) moves with the
/// toolchain this workspace is built with; clippy's `incompatible_msrv` lint watches its API use.
const MSRV_CRATES: &[&str] = &["rsim-model", "rsim-edge", "rsim-boards"];

pub fn fmt() -> Result<(), String> {
    cargo(&["fmt", "--all", "--check"], None, &[])?;
    for dir in EXTRA_CRATES {
        let path = setup::repo_root().join(dir);
        if path.join("Cargo.toml").is_file() {
            cargo(&["fmt", "--check"], Some(&path), &[])?;
        }
    }
    Ok(())
}

/// `cargo check`, not `build`: it proves the crates compile with `core` alone on each target at a
/// fraction of the cost; the Cortex-M4/M55 firmware tests then compile and link them for real.
pub fn no_std() -> Result<(), String> {
    for target in NO_STD_TARGETS {
        let mut args = vec!["check", "--no-default-features", "--target", target];
        for c in NO_STD_CRATES {
            args.extend(["-p", c]);
        }
        cargo(&args, None, &[])?;
    }
    Ok(())
}

/// The environment that makes the test build lint as it compiles: cargo runs every workspace member
/// through `clippy-driver` (as `cargo clippy` itself does), which compiles for real and denies every
/// warning. `cargo test` then builds each member's lib, bins, tests and examples once, linted, instead
/// of a separate check-mode build of the whole tree (tract, libtorch's bindings) only for clippy.
/// Dependencies are not wrapped, so their artifacts are the same as without it.
pub fn lint_env() -> Result<Vec<(String, String)>, String> {
    let driver = clippy_driver()?;
    Ok(vec![
        ("RUSTC_WORKSPACE_WRAPPER".into(), driver),
        // cargo-clippy's own encoding of the arguments after `--`.
        ("CLIPPY_ARGS".into(), "-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__".into()),
    ])
}

/// The `clippy-driver` of the toolchain running xtask: beside `$CARGO`, else rustup's proxy on PATH.
fn clippy_driver() -> Result<String, String> {
    if let Ok(cargo) = std::env::var("CARGO") {
        if let Some(dir) = Path::new(&cargo).parent() {
            let driver = dir.join("clippy-driver");
            if driver.is_file() {
                return Ok(driver.display().to_string());
            }
        }
    }
    if prereq::on_path("clippy-driver") {
        return Ok("clippy-driver".into());
    }
    Err("clippy-driver not found (rustup component add clippy)".into())
}

/// The libraries whose API others build on; their docs are what a board integrator reads.
const DOC_CRATES: &[&str] = &["rsim-model", "rsim-edge", "rsim-edge-simd", "rsim-boards", "rsim-test-support"];

/// rustdoc over the libraries with every warning (broken intra-doc links included) an error. The
/// binaries and test crates have no public API; leaving them out keeps tract and libtorch out of a
/// second (check-mode) compilation.
pub fn doc() -> Result<(), String> {
    let deny = [("RUSTDOCFLAGS".to_string(), "-D warnings".to_string())];
    let mut args = vec!["doc", "--no-deps"];
    for c in DOC_CRATES {
        args.extend(["-p", c]);
    }
    cargo(&args, None, &deny)?;
    // The runtime's docs as an aarch64 board integrator builds them: links to x86-only items break there.
    cargo(
        &["doc", "--no-deps", "-p", "rsim-edge", "-p", "rsim-edge-simd", "--target", "aarch64-unknown-linux-gnu"],
        None,
        &deny,
    )
}

/// `cargo +<rust-version> check --no-default-features` of the embeddable libraries. The toolchain is fetched by rustup when
/// missing; where it cannot be, CI fails and a local run skips loudly.
pub fn msrv() -> Result<(), String> {
    let version = match prereq::msrv_toolchain(&setup::repo_root()) {
        Ok(v) => v,
        Err(e) if !prereq::in_ci() => {
            eprintln!("\n*** SKIPPED MSRV build: {e}\n");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let toolchain = format!("+{version}");
    let mut args = vec![toolchain.as_str(), "check", "--no-default-features"];
    for c in MSRV_CRATES {
        args.extend(["-p", c]);
    }
    // Through rustup's `cargo` proxy (the `+toolchain` argument), not the running cargo binary.
    let mut cmd = Command::new("cargo");
    cmd.current_dir(setup::repo_root())
        .args(&args)
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .env_remove("RUSTUP_TOOLCHAIN");
    run(&mut cmd, &format!("cargo {}", args.join(" ")))
}

/// Runs the cargo that runs xtask (`$CARGO`) with `args` in `dir` (default: the workspace root).
pub fn cargo(args: &[&str], dir: Option<&Path>, env: &[(String, String)]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = setup::repo_root();
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir.unwrap_or(&root)).args(args).envs(env.iter().map(|(k, v)| (k, v)));
    let place = dir.map(|d| format!(" (in {})", d.display())).unwrap_or_default();
    run(&mut cmd, &format!("cargo {}{place}", args.join(" ")))
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("cannot start {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{what}` failed ({status})"))
    }
}
