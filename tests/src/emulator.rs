//! Running cross-built programs under QEMU from tests: tool checks that skip loudly locally and fail
//! under `CI`/`RSIM_REQUIRE_QEMU`, and a runner with a time limit (a hung emulator cannot hang CI).
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root (the `tests/` crate sits one level below it).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf()
}

/// Whether a missing emulator or target must fail the test instead of skipping it.
pub fn qemu_required() -> bool {
    let on = |v: &str| std::env::var(v).is_ok_and(|s| !s.is_empty() && s != "0" && s != "false");
    on("CI") || on("RSIM_REQUIRE_QEMU")
}

pub fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

/// `Some(())` when every binary is on PATH and every rustup target installed; otherwise prints a
/// loud skip naming what is missing and `how` to get it, or panics when CI requires them.
pub fn prerequisites(what: &str, bins: &[&str], targets: &[&str], how: &str) -> Option<()> {
    let mut missing: Vec<String> = bins.iter().filter(|b| !on_path(b)).map(|b| format!("`{b}` on PATH")).collect();
    let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output().ok()?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    missing.extend(
        targets.iter().filter(|t| !sysroot.join("lib/rustlib").join(t).exists()).map(|t| format!("rustup target {t}")),
    );
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
