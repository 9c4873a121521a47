//! Same int8 model, same inputs: byte-identical outputs on x86_64 (in process), aarch64 Linux
//! (`rsim-run` under qemu-aarch64) and a Cortex-M4 (the mps2-an386 firmware under qemu-system-arm).
//! Models: MLPerf Tiny's int8 ResNet-8 converted from its `.tflite` (outputs must also equal the
//! TFLite Micro reference outputs shipped with it), and a hand-built conv/depthwise/FC/softmax model.
//!
//! Needs qemu-aarch64, qemu-system-arm, the aarch64 linker and the two rustup targets. Locally a
//! missing tool skips loudly; with `CI=1` or `RSIM_REQUIRE_QEMU=1` it fails (`.ci/run` installs them).
mod support;

use rsim_test_support::emulator::{self, cargo, check, run_with_timeout, workspace};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const AARCH64: &str = "aarch64-unknown-linux-gnu";
const THUMB: &str = "thumbv7em-none-eabihf";

/// `Some(())` when every tool is present; otherwise skips loudly, or panics when CI requires them.
fn prerequisites() -> Option<()> {
    emulator::prerequisites(
        "cross-target test",
        &["qemu-aarch64", "qemu-system-arm", "aarch64-linux-gnu-gcc"],
        &[AARCH64, THUMB],
        &format!("apt-get install qemu-system-arm qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross; rustup target add {AARCH64} {THUMB}"),
    )
}

/// Every `RSIM_OUTPUT <hex>` line printed by `rsim-run` or the firmware, decoded, in order.
fn parse_outputs(stdout: &str, what: &str) -> Vec<Vec<u8>> {
    let outs: Vec<Vec<u8>> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("RSIM_OUTPUT "))
        .map(|hex| {
            let hex = hex.trim();
            assert!(hex.len() % 2 == 0, "{what}: odd-length hex {hex:?}");
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or_else(|_| panic!("{what}: bad hex {hex:?}")))
                .collect()
        })
        .collect();
    assert!(!outs.is_empty(), "{what}: no RSIM_OUTPUT line in its output:\n{stdout}");
    outs
}

/// x86_64, in process: the same engine the other targets run, linked into this test.
fn run_host(model: &[u8], inputs: &[Vec<u8>]) -> Vec<Vec<u8>> {
    inputs.iter().map(|i| support::run_engine(model, i).unwrap_or_else(|e| panic!("x86_64 engine: {e}"))).collect()
}

fn build_aarch64_runner() -> PathBuf {
    let target_dir = workspace().join("target/cross");
    check(
        cargo()
            .current_dir(workspace())
            .args([
                "build",
                "--release",
                "-p",
                "rsim-edge",
                "--example",
                "rsim-run",
                "--target",
                AARCH64,
                "--target-dir",
            ])
            .arg(&target_dir),
        "building rsim-run for aarch64",
    );
    target_dir.join(AARCH64).join("release/examples/rsim-run")
}

fn run_aarch64(exe: &Path, model: &Path, inputs: &Path) -> Vec<Vec<u8>> {
    let (ok, out) = run_with_timeout(
        Command::new("qemu-aarch64").args(["-L", "/usr/aarch64-linux-gnu"]).arg(exe).arg(model).arg(inputs),
        Duration::from_secs(300),
        "rsim-run under qemu-aarch64",
    );
    assert!(ok, "rsim-run under qemu-aarch64 failed:\n{out}");
    parse_outputs(&out, "qemu-aarch64")
}

/// Builds the firmware around this model and these inputs, then runs it on the emulated Cortex-M4.
fn run_cortex_m4(model: &Path, inputs: &Path) -> Vec<Vec<u8>> {
    let fw = workspace().join("boards/firmware-mps2");
    let target_dir = workspace().join("target/firmware");
    check(
        cargo()
            .current_dir(&fw)
            .args(["build", "--release", "--target", THUMB, "--target-dir"])
            .arg(&target_dir)
            .env("RSIM_FW_MODEL", model)
            .env("RSIM_FW_INPUT", inputs),
        "building the mps2-an386 firmware",
    );
    let elf = target_dir.join(THUMB).join("release/rsim-firmware-mps2");
    let (ok, out) = run_with_timeout(
        Command::new("qemu-system-arm")
            // UART0 carries binary telemetry frames; only the semihosting lines belong on stdout.
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
        "firmware under qemu-system-arm",
    );
    assert!(ok, "firmware under qemu-system-arm failed:\n{out}");
    parse_outputs(&out, "qemu-system-arm mps2-an386")
}

struct Case {
    name: &'static str,
    model: Vec<u8>,
    inputs: Vec<Vec<u8>>,
    /// Outputs from an independent implementation (TFLite Micro), when there is one.
    reference: Option<Vec<Vec<u8>>>,
}

/// MLPerf Tiny ResNet-8 via the `.tflite` converter, on random and edge-case inputs (black, white,
/// mid-grey, checkerboard), with TFLM's outputs for them.
fn resnet8_case() -> Option<Case> {
    let dir = rsim_test_support::require(
        rsim_test_support::peer_models_dir().join("mlperf-tiny-ic"),
        "peer model mlperf-tiny-ic",
    )?;
    let read = |p: PathBuf| std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let tflite = read(dir.join("pretrainedResnet_quant.tflite"));
    let opts =
        rsim_model::tflite::ConvertOptions { source: "pretrainedResnet_quant.tflite".into(), ..Default::default() };
    let model = rsim_model::tflite::convert(&tflite, &opts).expect("convert ResNet-8").bytes;
    let ids = ["000", "001", "046", "047", "048", "049"];
    Some(Case {
        name: "mlperf-tiny ResNet-8",
        model,
        inputs: ids.iter().map(|n| read(dir.join(format!("inputs/{n}.bin")))).collect(),
        reference: Some(ids.iter().map(|n| read(dir.join(format!("outputs/{n}.bin")))).collect()),
    })
}

fn hand_case() -> Case {
    let (model, first) = support::int8_model(7);
    let mut rng = support::Rng(77);
    let inputs = vec![
        first.clone(),
        {
            let mut b = vec![0; first.len()];
            rng.fill(&mut b);
            b
        },
        vec![0x80; first.len()],
        vec![0x7f; first.len()],
    ];
    Case { name: "hand-built int8 conv/dw/fc/softmax", model, inputs, reference: None }
}

#[test]
fn int8_outputs_are_byte_identical_across_targets() {
    if prerequisites().is_none() {
        return;
    }
    let mut cases = vec![hand_case()];
    cases.extend(resnet8_case());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cross_targets");
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let runner = build_aarch64_runner();
    // One case at a time: each rebuilds the firmware around its own model.
    for (i, case) in cases.iter().enumerate() {
        let (model_path, inputs_path) = (dir.join(format!("case{i}.rsm")), dir.join(format!("case{i}-inputs.bin")));
        rsim_model::write::write_atomic(&model_path, &case.model).expect("write model");
        rsim_model::write::write_atomic(&inputs_path, &case.inputs.concat()).expect("write inputs");

        let host = run_host(&case.model, &case.inputs);
        let aarch64 = run_aarch64(&runner, &model_path, &inputs_path);
        let m4 = run_cortex_m4(&model_path, &inputs_path);
        eprintln!("{}: {} inputs, first output {:?}", case.name, host.len(), host[0]);
        assert_eq!(host.len(), case.inputs.len(), "{}: x86_64 output count", case.name);
        assert_eq!(aarch64, host, "{}: qemu-aarch64 outputs differ from x86_64", case.name);
        assert_eq!(m4, host, "{}: Cortex-M4 (mps2-an386) outputs differ from x86_64", case.name);
        if let Some(reference) = &case.reference {
            assert_eq!(&host, reference, "{}: outputs differ from the TFLite Micro reference", case.name);
        }
    }
}
