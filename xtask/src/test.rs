//! `cargo xtask test`: everything CI checks, in order of cost.
//!
//! 1. rsim-edge builds for `thumbv7em-none-eabihf` with `--no-default-features`, and its feature
//!    graph there enables no `std` or `alloc` anywhere (the firmware, which has no global
//!    allocator, links in step 2 and proves the same at link time).
//! 2. `cargo test` on the default workspace members. That includes the cross-target test
//!    (tests/tests/cross_targets.rs), which builds the mps2-an386 firmware and the aarch64
//!    `rsim-run`, runs them under qemu-system-arm / qemu-aarch64 and compares outputs byte for byte.
//! 3. If `.venv` exists (`cargo xtask setup`), `cargo test -p rsim-train` against its torch.
//! 4. The fast kernels' property tests (rsim-edge `fast_int8`, `fast_f32`) for aarch64 under
//!    qemu-aarch64: the kernels an aarch64 board runs, checked against the reference.
//!
//! With `.venv` and no pass-through arguments, steps 2 and 3 run as one `cargo test --workspace`.
use crate::setup;
use std::process::Command;

const THUMB: &str = "thumbv7em-none-eabihf";

const HELP: &str = "usage: cargo xtask test [--no-train] [-- <args for cargo test>]

Runs every test CI runs:
  1. no_std check: rsim-edge --no-default-features for thumbv7em-none-eabihf, and no `std`/`alloc`
     feature anywhere in its dependency graph for that target
  2. cargo test on the default workspace members, including the cross-target test: firmware under
     qemu-system-arm (mps2-an386, Cortex-M4) and rsim-run under qemu-aarch64 must match x86_64
  3. cargo test -p rsim-train with the torch in .venv, if .venv exists (cargo xtask setup)
  4. the fast-kernel property tests built for aarch64, run under qemu-aarch64
  With .venv and no `-- ARGS`, steps 2 and 3 are one `cargo test --workspace` (one build).

options:
  --no-train   skip step 3 even when .venv exists
  -h, --help   print this help
  -- ARGS      passed to `cargo test` in step 2 (e.g. `-- --test cross_targets`)

environment:
  CI=1 or RSIM_REQUIRE_QEMU=1   missing qemu, aarch64 linker or rustup targets fail the
                                cross-target test instead of skipping it
  RSIM_DATA, RSIM_MODELS        datasets and peer models (default ../shared/datasets, ../shared/models)";

pub fn run(args: &[String]) -> Result<(), String> {
    let (ours, passthrough) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let mut train = true;
    for a in ours {
        match a.as_str() {
            "--no-train" => train = false,
            "-h" | "--help" => {
                println!("{HELP}");
                return Ok(());
            }
            other => return Err(format!("unknown option `{other}`\n\n{HELP}")),
        }
    }

    step("no_std: rsim-edge for thumbv7em-none-eabihf without default features");
    run_cargo(&["build", "-p", "rsim-edge", "--no-default-features", "--target", THUMB], &[])?;
    check_no_std_features()?;

    let with_torch = train && setup::venv_dir().is_dir();
    if with_torch && passthrough.is_empty() {
        // One cargo invocation for every member: features unify once, so the crates shared with the
        // trainer (rsim-model, rsim-edge, tract, ...) compile once instead of twice (CI time).
        step("cargo test --workspace (default members incl. emulated Cortex-M4/M55 and aarch64, + rsim-train with the torch in .venv)");
        run_cargo(&["test", "--workspace"], &setup::torch_env())?;
        fast_kernels_on_aarch64()?;
        step("all tests passed");
        return Ok(());
    }

    step("cargo test (default workspace members, incl. emulated Cortex-M4 and aarch64)");
    let mut test_args = vec!["test"];
    test_args.extend(passthrough.iter().map(String::as_str));
    run_cargo(&test_args, &[])?;

    // rsim-train: only with the torch that `cargo xtask setup` installs.
    if with_torch {
        step("cargo test -p rsim-train (torch from .venv)");
        run_cargo(&["test", "-p", "rsim-train"], &setup::torch_env())?;
    } else if train {
        eprintln!("\n*** SKIPPED rsim-train tests: no .venv (run `cargo xtask setup` first)\n");
    }
    fast_kernels_on_aarch64()?;
    step("all tests passed");
    Ok(())
}

/// The fast kernels' property tests built for aarch64 and run under qemu-aarch64, so the kernels an
/// aarch64 board runs are checked against the reference there too (not only on this host's ISA).
fn fast_kernels_on_aarch64() -> Result<(), String> {
    step("fast-kernel property tests for aarch64 under qemu-aarch64");
    let have = |tool: &str| Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    let missing: Vec<&str> = ["qemu-aarch64", "aarch64-linux-gnu-gcc"].into_iter().filter(|t| !have(t)).collect();
    if !missing.is_empty() {
        let msg = format!(
            "missing {}: apt-get install qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross; rustup target add aarch64-unknown-linux-gnu",
            missing.join(", ")
        );
        let required = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0")
            || std::env::var("RSIM_REQUIRE_QEMU").is_ok_and(|v| v == "1");
        if required {
            return Err(msg);
        }
        eprintln!("\n*** SKIPPED aarch64 fast-kernel tests: {msg}\n");
        return Ok(());
    }
    run_cargo(
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
        &[],
    )
}

fn step(what: &str) {
    eprintln!("\n==> xtask test: {what}");
}

fn run_cargo(args: &[&str], env: &[(String, String)]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(setup::repo_root()).args(args).envs(env.iter().map(|(k, v)| (k, v)));
    let status = cmd.status().map_err(|e| format!("cannot start cargo {}: {e}", args.join(" ")))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", args.join(" ")))
    }
}

/// Every crate rsim-edge links for the Cortex-M target must have no `std`/`alloc` feature on.
/// The same query on the default (std) build must find some, or the check itself is broken.
fn check_no_std_features() -> Result<(), String> {
    let no_std = std_features_in_tree(&["--no-default-features"])?;
    if !no_std.is_empty() {
        return Err(format!("rsim-edge's no_std build enables std/alloc features:\n  {}", no_std.join("\n  ")));
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
    let mut args = vec!["tree", "-p", "rsim-edge", "--target", THUMB, "-e", "normal,no-proc-macro"];
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
