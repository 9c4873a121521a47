//! `cargo xtask test`: everything CI checks, cheapest first, on a machine that has only rustup.
//!
//! 0. set-up: missing rustup targets and components are installed; missing system packages are
//!    named with their `apt-get` line (an error under `CI`, loud skips otherwise);
//! 1. gates: `cargo fmt --check` (workspace and the crates outside it); the no_std crates built for
//!    thumbv6m/thumbv7em/thumbv8m with no `std`/`alloc` feature in their graph; rustdoc with warnings
//!    denied; the MSRV build of the embeddable libraries;
//! 2. `cargo test` on the workspace, every member compiled through clippy with `-D warnings` (the
//!    clippy gate: the same lints as `cargo clippy --all-targets`, without a second build of the
//!    whole tree): with `.venv` (`cargo xtask setup`) every member in one cargo invocation (one feature
//!    resolution, one build); without it every member but the trainer plus the trainer's torch-free
//!    tests (`--no-default-features`). This includes the cross-target tests (firmware under
//!    qemu-system-arm, `rsim-run` and the agent under qemu-aarch64);
//! 3. the fast kernels' property tests built for aarch64 and run under qemu-aarch64.
use crate::{gates, prereq, setup};
use std::process::Command;

const THUMB: &str = "thumbv7em-none-eabihf";

const HELP: &str = "usage: cargo xtask test [--no-train] [--no-gates] [-- <args for cargo test>]

Runs every check CI runs, cheapest first:
  0. installs missing rustup targets (thumbv6m, thumbv7em, thumbv8m.main, aarch64) and components
     (rustfmt, clippy); names missing system packages (qemu, aarch64 cross gcc) with the apt-get line
  1. gates: cargo fmt --check; no_std cargo check of rsim-model/rsim-edge/rsim-boards for thumbv6m-none-eabi,
     thumbv7em-none-eabihf and thumbv8m.main-none-eabihf (and no std/alloc feature in that graph);
     cargo doc of the libraries with warnings denied (the runtime's also for aarch64); cargo +MSRV check of the embeddable libraries
     (toolchain from Cargo.toml's rust-version, installed by rustup)
  2. cargo test, built through clippy-driver with -D warnings (the lints of cargo clippy --all-targets):
     every member with the torch in .venv if it exists (cargo xtask setup), else every member but the
     trainer plus rsim-train's torch-free tests; includes emulated Cortex-M4/M55 and aarch64
  3. the fast-kernel property tests built for aarch64, run under qemu-aarch64 (-cpu max: sdot and
     smlal GEMMs; -cpu cortex-a57: smlal)

options:
  --no-train   leave the libtorch part of rsim-train out even when .venv exists
  --no-gates   skip step 1 and the clippy lints of step 2 (for a quick local rerun of the tests)
  -h, --help   print this help
  -- ARGS      passed to `cargo test` in step 2 (e.g. `-- --test cross_targets`)

environment:
  CI=1                  missing system packages, data, peer models, emulators or the MSRV toolchain
                        fail the run instead of being skipped
  RSIM_REQUIRE_QEMU=1   only missing emulators fail
  RSIM_DATA, RSIM_MODELS datasets and peer models (default ../shared/datasets, ../shared/models)
  RSIM_CARGO_TIMINGS=1  cargo's timing report of the test build in target/cargo-timings/";

pub fn run(args: &[String]) -> Result<(), String> {
    let (ours, passthrough) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let (mut train, mut gates) = (true, true);
    for a in ours {
        match a.as_str() {
            "--no-train" => train = false,
            "--no-gates" => gates = false,
            "-h" | "--help" => {
                println!("{HELP}");
                return Ok(());
            }
            other => return Err(format!("unknown option `{other}`\n\n{HELP}")),
        }
    }
    let with_torch = train && setup::venv_dir().is_dir();

    step("set-up: rustup targets and components, system packages");
    prereq::ensure_rust()?;
    prereq::check_system()?;

    // With the gates on, the test build itself is linted (clippy -D warnings on every member).
    let mut lint = Vec::new();
    if gates {
        step("gate: cargo fmt --check");
        gates::fmt()?;
        step("gate: no_std check for thumbv6m, thumbv7em and thumbv8m.main");
        gates::no_std()?;
        check_no_std_features()?;
        step("gate: cargo doc of the libraries, warnings denied");
        gates::doc()?;
        step("gate: MSRV build");
        gates::msrv()?;
        lint = gates::lint_env()?;
    }
    let torch_lint: Vec<(String, String)> = setup::torch_env().into_iter().chain(lint.iter().cloned()).collect();
    let linted = if gates { ", linted by clippy -D warnings" } else { "" };

    if with_torch && passthrough.is_empty() {
        // One cargo invocation for every member: features unify once, so the crates shared with the
        // trainer (rsim-model, rsim-edge, tract, ...) compile once instead of twice (CI time).
        step(&format!(
            "cargo test --workspace (incl. emulated Cortex-M4/M55 and aarch64, and rsim-train with the torch in .venv){linted}"
        ));
        let mut args = vec!["test", "--workspace"];
        if timings() {
            args.push("--timings");
        }
        gates::cargo(&args, None, &torch_lint)?;
    } else {
        step(&format!(
            "cargo test --workspace --exclude rsim-train (incl. emulated Cortex-M4/M55 and aarch64){linted}"
        ));
        let mut test_args = vec!["test", "--workspace", "--exclude", "rsim-train"];
        test_args.extend(passthrough.iter().map(String::as_str));
        gates::cargo(&test_args, None, &lint)?;
        if with_torch {
            step(&format!("cargo test -p rsim-train (torch from .venv){linted}"));
            gates::cargo(&["test", "-p", "rsim-train"], None, &torch_lint)?;
        } else {
            step(&format!("cargo test -p rsim-train --no-default-features (the trainer's torch-free tests){linted}"));
            gates::cargo(&["test", "-p", "rsim-train", "--no-default-features"], None, &lint)?;
            if train {
                eprintln!("\n*** SKIPPED rsim-train's libtorch tests: no .venv (run `cargo xtask setup` first)\n");
            }
        }
    }
    fast_kernels_on_aarch64()?;
    step("all checks passed");
    Ok(())
}

/// The fast kernels' property tests built for aarch64 and run under qemu-aarch64, so the kernels an
/// aarch64 board runs are checked against the reference there too (not only on this host's ISA).
fn fast_kernels_on_aarch64() -> Result<(), String> {
    step("fast-kernel property tests for aarch64 under qemu-aarch64");
    let missing: Vec<&str> =
        ["qemu-aarch64", "aarch64-linux-gnu-gcc"].into_iter().filter(|t| !prereq::on_path(t)).collect();
    if !missing.is_empty() {
        let msg = format!(
            "missing {}: apt-get install qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
            missing.join(", ")
        );
        let required = prereq::in_ci() || std::env::var("RSIM_REQUIRE_QEMU").is_ok_and(|v| v == "1");
        if required {
            return Err(msg);
        }
        eprintln!("\n*** SKIPPED aarch64 fast-kernel tests: {msg}\n");
        return Ok(());
    }
    // Twice: on QEMU's `max` CPU (dot product: the `sdot` GEMM and, forced, the `smlal` one) and on a
    // Cortex-A57 (no dot product: `Kernels::Native` must fall back to `smlal` by itself). The expected
    // instruction set is asserted (`RSIM_EXPECT_ISA`), so a detection change cannot skip a kernel.
    for (cpu, isa) in [("max", "neon-dotprod"), ("cortex-a57", "neon")] {
        eprintln!("qemu-aarch64 -cpu {cpu} (expects {isa})");
        gates::cargo(
            &[
                "test",
                "-p",
                "rsim-edge",
                "--target",
                "aarch64-unknown-linux-gnu",
                "--test",
                "fast_int8",
                "--test",
                "fast_f32",
            ],
            None,
            &[("QEMU_CPU".into(), cpu.into()), ("RSIM_EXPECT_ISA".into(), isa.into())],
        )?;
    }
    Ok(())
}

/// `RSIM_CARGO_TIMINGS=1`: the test build writes cargo's timing report
/// (`target/cargo-timings/cargo-timing.html`), to see where a cold CI run spends its time.
fn timings() -> bool {
    std::env::var("RSIM_CARGO_TIMINGS").is_ok_and(|v| v == "1")
}

fn step(what: &str) {
    eprintln!("\n==> xtask test: {what}");
}

/// Every crate rsim-edge links for the Cortex-M target must have no `std`/`alloc` feature on.
/// The same query on the default (std) build must find some, or the check itself is broken.
fn check_no_std_features() -> Result<(), String> {
    let no_std = std_features_in_tree(&["--no-default-features"])?;
    if !no_std.is_empty() {
        return Err(format!(
            "the no_std build (rsim-edge, rsim-boards) enables std/alloc features:\n  {}",
            no_std.join("\n  ")
        ));
    }
    if std_features_in_tree(&[])?.is_empty() {
        return Err("the std/alloc feature check found nothing in the std build either; it is broken".into());
    }
    eprintln!("no std/alloc feature on any crate of the no_std build (and the check flags the std build)");
    Ok(())
}
/// Lines of `cargo tree --format '{p} [{f}]'` for rsim-edge on the Cortex-M target that show a
/// std/alloc feature enabled. Proc-macro crates run on the host and are left out.
fn std_features_in_tree(extra: &[&str]) -> Result<Vec<String>, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args =
        vec!["tree", "-p", "rsim-edge", "-p", "rsim-boards", "--target", THUMB, "-e", "normal,no-proc-macro"];
    args.extend(["--prefix", "none", "--format", "{p} [{f}]"]);
    args.extend(extra);
    let out = Command::new(cargo)
        .current_dir(setup::repo_root())
        .args(&args)
        .output()
        .map_err(|e| format!("cannot run cargo tree: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo {} failed:\n{}", args.join(" "), String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().filter(|l| has_std_feature(l)).map(String::from).collect())
}

/// Whether a `{p} [{f}]` line lists a feature that pulls in std or alloc.
fn has_std_feature(line: &str) -> bool {
    let Some((_, feats)) = line.rsplit_once('[') else { return false };
    let feats = feats.split(']').next().unwrap_or("");
    feats.split(',').any(|f| matches!(f.trim(), "std" | "alloc" | "use-std"))
}

#[cfg(test)]
mod tests {
    use super::has_std_feature;

    #[test]
    fn std_feature_lines_are_caught() {
        assert!(has_std_feature("serde v1.0.229 [alloc,derive,serde_derive,std]"));
        assert!(has_std_feature("postcard v1.2.0 [alloc,use-std]"));
        assert!(has_std_feature("crc32fast v1.5.5 [std] (*)"));
        assert!(!has_std_feature("serde v1.0.229 [derive,serde_derive]"));
        assert!(!has_std_feature("rsim-model v0.1.0 (/work/main/models) []"));
        assert!(!has_std_feature("zerocopy v0.8.64 [derive,simd,zerocopy-derive]"));
    }
}
