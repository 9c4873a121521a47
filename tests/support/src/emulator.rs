//! Running cross-built programs under QEMU from tests: tool checks that skip loudly locally and fail
//! under `CI`/`RSIM_REQUIRE_QEMU`, cross builds with a clean cargo environment, and a runner with a
//! time limit (a hung emulator cannot hang CI).
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use crate::workspace;

/// Whether a missing emulator or target must fail the test instead of skipping it.
pub fn qemu_required() -> bool {
    crate::in_ci() || std::env::var("RSIM_REQUIRE_QEMU").is_ok_and(|s| !s.is_empty() && s != "0" && s != "false")
}

/// Whether `bin` is an executable file in a `PATH` directory.
pub fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

/// Whether the rustup target's standard library is installed.
pub fn has_target(target: &str) -> bool {
    let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output();
    sysroot
        .is_ok_and(|o| Path::new(String::from_utf8_lossy(&o.stdout).trim()).join("lib/rustlib").join(target).exists())
}

/// What of `bins` (on PATH) and `targets` (rustup) is missing, one line each.
pub fn missing(bins: &[&str], targets: &[&str]) -> Vec<String> {
    let mut missing: Vec<String> = bins.iter().filter(|b| !on_path(b)).map(|b| format!("`{b}` on PATH")).collect();
    missing.extend(targets.iter().filter(|t| !has_target(t)).map(|t| format!("rustup target {t}")));
    missing
}

/// `Some(())` when every binary is on PATH and every rustup target installed; otherwise prints a
/// loud skip naming what is missing and `how` to get it, or panics when CI requires them.
pub fn prerequisites(what: &str, bins: &[&str], targets: &[&str], how: &str) -> Option<()> {
    let missing = missing(bins, targets);
    if missing.is_empty() {
        return Some(());
    }
    let msg = format!("{what} needs {} ({how})", missing.join(", "));
    if qemu_required() {
        panic!("{msg}; required because CI/RSIM_REQUIRE_QEMU is set");
    }
    eprintln!("\n*** SKIPPED: {msg}\n");
    None
}

/// `cargo` for a cross build: the outer cargo may export settings meant for the host build, and
/// `cargo xtask test` lints the workspace through clippy-driver, which the firmware build must not get.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for var in ["CARGO_TARGET_DIR", "CARGO_BUILD_TARGET", "RUSTFLAGS", "RUSTC_WORKSPACE_WRAPPER", "CLIPPY_ARGS"] {
        c.env_remove(var);
    }
    c
}

/// Runs `cmd` to completion and panics, naming `what`, unless it succeeds.
#[track_caller]
pub fn check(cmd: &mut Command, what: &str) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(status.success(), "{what} failed ({status})");
}

/// Runs `cmd`, kills it after `limit`; returns (success, stdout).
pub fn run_with_timeout(cmd: &mut Command, limit: Duration, what: &str) -> (bool, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait on child") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.success(), reader.join().expect("stdout reader"))
}

/// Where cross builds put their outputs (beside the host's, never mixed with it).
pub fn cross_target_dir(name: &str) -> PathBuf {
    workspace().join("target").join(name)
}
