//! What the tests need from the machine: rustup targets and components (installed here, no root
//! needed) and system packages (named with the exact `apt-get` line, never installed from here).
use std::path::Path;
use std::process::Command;

/// Every target CI builds for: the no_std gate (Cortex-M0+/M4/M33-M55) and the aarch64 boards.
pub const TARGETS: &[&str] =
    &["thumbv6m-none-eabi", "thumbv7em-none-eabihf", "thumbv8m.main-none-eabihf", "aarch64-unknown-linux-gnu"];
const COMPONENTS: &[&str] = &["rustfmt", "clippy"];

/// A system tool the tests use, how to detect it and the Debian package that provides it.
struct SystemTool {
    what: &'static str,
    present: fn() -> bool,
    package: &'static str,
}

const SYSTEM: &[SystemTool] = &[
    SystemTool {
        what: "qemu-system-arm (emulated Cortex-M boards)",
        present: || on_path("qemu-system-arm"),
        package: "qemu-system-arm",
    },
    SystemTool {
        what: "qemu-aarch64 (aarch64 user-mode emulation)",
        present: || on_path("qemu-aarch64"),
        package: "qemu-user",
    },
    SystemTool {
        what: "aarch64-linux-gnu-gcc (aarch64 linker)",
        present: || on_path("aarch64-linux-gnu-gcc"),
        package: "gcc-aarch64-linux-gnu",
    },
    SystemTool {
        what: "the aarch64 C library (qemu-aarch64 -L /usr/aarch64-linux-gnu)",
        present: || Path::new("/usr/aarch64-linux-gnu/lib/libc.so").exists(),
        package: "libc6-dev-arm64-cross",
    },
    SystemTool { what: "c++ (the trainer's autocast shim)", present: || on_path("c++"), package: "g++" },
];

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

pub fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

fn rustup_list(args: &[&str]) -> Option<Vec<String>> {
    let out = Command::new("rustup").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().to_string()).collect())
}

/// Installs the missing rustup targets and components of the active toolchain. Without rustup,
/// says exactly what is missing and fails.
pub fn ensure_rust() -> Result<(), String> {
    let Some(targets) = rustup_list(&["target", "list", "--installed"]) else {
        return Err(format!(
            "rustup not found: the tests need the targets {} and the components {} (https://rustup.rs)",
            TARGETS.join(", "),
            COMPONENTS.join(", ")
        ));
    };
    let missing: Vec<&str> = TARGETS.iter().copied().filter(|t| !targets.iter().any(|i| i == t)).collect();
    if !missing.is_empty() {
        eprintln!("xtask: rustup target add {}", missing.join(" "));
        run(Command::new("rustup").args(["target", "add"]).args(&missing), "rustup target add")?;
    }
    let installed = rustup_list(&["component", "list", "--installed"]).unwrap_or_default();
    let missing: Vec<&str> =
        COMPONENTS.iter().copied().filter(|c| !installed.iter().any(|i| i.starts_with(&format!("{c}-")))).collect();
    if !missing.is_empty() {
        eprintln!("xtask: rustup component add {}", missing.join(" "));
        run(Command::new("rustup").args(["component", "add"]).args(&missing), "rustup component add")?;
    }
    Ok(())
}

/// Names missing system packages with the command that installs them. Under CI that is an error
/// (`.ci/run` installs them first); locally the tests that need them skip loudly.
pub fn check_system() -> Result<(), String> {
    let missing: Vec<&SystemTool> = SYSTEM.iter().filter(|t| !(t.present)()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
    packages.dedup();
    let msg = format!(
        "missing: {}.\n  Install with: sudo apt-get install -y --no-install-recommends {}",
        missing.iter().map(|t| t.what).collect::<Vec<_>>().join("; "),
        packages.join(" ")
    );
    if in_ci() {
        return Err(msg);
    }
    eprintln!("\n*** xtask: {msg}\n*** The tests that need them will be SKIPPED (with CI=1 they fail).\n");
    Ok(())
}

/// The toolchain named by `rust-version` in the workspace's Cargo.toml, installed (minimal profile)
/// when missing. `Err` when it cannot be had (no network, no rustup).
pub fn msrv_toolchain(root: &Path) -> Result<String, String> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).map_err(|e| format!("Cargo.toml: {e}"))?;
    let version = manifest
        .lines()
        .find_map(|l| {
            l.trim().strip_prefix("rust-version").map(|r| r.trim_start_matches([' ', '=']).trim().trim_matches('"'))
        })
        .ok_or("no rust-version in the workspace Cargo.toml")?
        .to_string();
    let have = rustup_list(&["toolchain", "list"]).unwrap_or_default();
    if !have.iter().any(|t| t.starts_with(&format!("{version}-")) || t == &version) {
        eprintln!("xtask: rustup toolchain install {version} --profile minimal (the MSRV build)");
        run(
            Command::new("rustup").args(["toolchain", "install", &version, "--profile", "minimal"]),
            "rustup toolchain install",
        )?;
    }
    Ok(version)
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("{what}: cannot start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}
