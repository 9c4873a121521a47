//! The Cortex-M4 DSP int8 kernel (`rsim_edge::kernels::fast::cortex_m`, `SMLAD`/`SXTB16` inline
//! assembly, compiled only for `thumbv7em`) against the TFLM-exact reference kernels, on the emulated
//! Cortex-M4 itself: builds `tests/firmware-dsp` (seeded random convs and FCs: shapes, strides,
//! paddings, dilations, zero points, bias, per-tensor/per-channel and hostile multipliers, clamps; long
//! reductions that are chunked) and runs it under `qemu-system-arm -machine mps2-an386`. Every output
//! byte must match; the firmware also runs mutants (wrong input offset, a flipped weight bit) that the
//! same comparison must catch, so a broken kernel cannot pass by comparing nothing.
//!
//! Needs qemu-system-arm and the rustup target thumbv7em-none-eabihf. Locally a missing tool skips
//! loudly; with `CI=1` or `RSIM_REQUIRE_QEMU=1` it fails.

use rsim_test_support::emulator::{self, cargo, check, run_with_timeout, workspace};
use std::process::Command;
use std::time::Duration;

const THUMB: &str = "thumbv7em-none-eabihf";

/// `Some(())` when qemu-system-arm and the thumbv7em target are present; otherwise skips loudly, or
/// panics when CI requires them.
fn prerequisites() -> Option<()> {
    emulator::prerequisites(
        "Cortex-M DSP kernel test",
        &["qemu-system-arm"],
        &[THUMB],
        &format!("apt-get install qemu-system-arm; rustup target add {THUMB}"),
    )
}

/// `key=value` of a `PREFIX k=v ...` line, as a number.
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{key}= is not a number in {line:?}"))
}

#[test]
fn dsp_int8_conv_matches_the_reference_on_cortex_m4() {
    if prerequisites().is_none() {
        return;
    }
    let fw = workspace().join("tests/firmware-dsp");
    let target_dir = workspace().join("target/firmware-dsp");
    check(
        cargo().current_dir(&fw).args(["build", "--release", "--target", THUMB, "--target-dir"]).arg(&target_dir),
        "building tests/firmware-dsp",
    );
    let elf = target_dir.join(THUMB).join("release/rsim-dsp-check");
    let (ok, out) = run_with_timeout(
        Command::new("qemu-system-arm")
            .args([
                "-machine",
                "mps2-an386",
                "-cpu",
                "cortex-m4",
                "-display",
                "none",
                "-monitor",
                "none",
                "-serial",
                "null",
            ])
            .args(["-semihosting-config", "enable=on,target=native", "-kernel"])
            .arg(&elf),
        Duration::from_secs(300),
        "DSP check firmware under qemu-system-arm",
    );
    eprintln!("{out}");
    let summary =
        out.lines().find(|l| l.starts_with("DSP_SUMMARY ")).unwrap_or_else(|| panic!("no DSP_SUMMARY line:\n{out}"));
    let mutants =
        out.lines().find(|l| l.starts_with("DSP_MUTANTS ")).unwrap_or_else(|| panic!("no DSP_MUTANTS line:\n{out}"));
    assert!(out.lines().any(|l| l == "DSP_DONE"), "firmware did not finish:\n{out}");
    assert_eq!(field(summary, "mismatches"), 0, "the DSP kernel differs from the reference:\n{out}");
    assert!(ok, "firmware exited with failure:\n{out}");
    // The comparison compared something, over every path of the kernel.
    assert!(field(summary, "cases") >= 300, "{summary}");
    assert!(field(summary, "conv") >= 200 && field(summary, "fc") >= 20, "{summary}");
    assert!(field(summary, "chunked") >= 20, "too few long (chunked) reductions: {summary}");
    assert!(field(summary, "unclamped") >= field(summary, "bytes") / 10, "outputs mostly clamped: {summary}");
    // Mutated kernels (whose output the reference says must differ) are all caught.
    let (tried, caught) = (field(mutants, "tried"), field(mutants, "caught"));
    assert!(tried >= 20, "too few effective mutants: {mutants}");
    assert_eq!(caught, tried, "a mutated kernel went unnoticed: {mutants}");
}
