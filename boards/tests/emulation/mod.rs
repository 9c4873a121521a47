//! Emulated boards for the acceptance test (`tests/emulated_boards.rs`) and the loop benchmark
//! (`benches/boards.rs`): finding the model and tiles, building the Cortex-M firmware and the
//! aarch64 agent, and running them under QEMU with a time limit.
#![allow(dead_code)] // the test and the bench use different subsets

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub use rsim_test_support::emulator::workspace;
use rsim_test_support::emulator::{cargo, check, run_with_timeout};

pub const AARCH64: &str = "aarch64-unknown-linux-gnu";
/// EuroSAT tiles are 64x64 RGB; the loop cuts each into four 32x32 tiles (ResNet-8's input).
pub const FRAME: u32 = 64;
pub const TILE: u32 = 32;
pub const TOP_K: u8 = 5;
/// Deadlines far beyond any emulated tile time: a loaded CI machine must not drop tiles.
pub const DEADLINE_MS: u64 = 600_000;

/// An emulated microcontroller board the firmware builds for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Board {
    /// mps2-an386, Cortex-M4.
    M4,
    /// mps3-an547, Cortex-M55 (firmware feature `an547`).
    M55,
}

impl Board {
    pub fn target(self) -> &'static str {
        match self {
            Board::M4 => "thumbv7em-none-eabihf",
            Board::M55 => "thumbv8m.main-none-eabihf",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Board::M4 => "Cortex-M4 mps2-an386",
            Board::M55 => "Cortex-M55 mps3-an547",
        }
    }
    fn machine(self) -> &'static [&'static str] {
        match self {
            Board::M4 => &["-machine", "mps2-an386", "-cpu", "cortex-m4"],
            Board::M55 => &["-machine", "mps3-an547"],
        }
    }
}

/// What of qemu, the aarch64 linker and the rustup targets (for `boards`) is missing.
pub fn missing_tools(boards: &[Board]) -> Vec<String> {
    let targets: Vec<&str> = boards.iter().map(|b| b.target()).chain([AARCH64]).collect();
    rsim_test_support::emulator::missing(&["qemu-aarch64", "qemu-system-arm", "aarch64-linux-gnu-gcc"], &targets)
}

/// A hint naming the packages and targets that provide `missing`.
pub fn install_hint(missing: &[String]) -> String {
    format!(
        "needs {} (apt-get install qemu-system-arm qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross; \
         rustup target add {AARCH64} thumbv7em-none-eabihf thumbv8m.main-none-eabihf)",
        missing.join(", ")
    )
}

/// The MLPerf Tiny int8 ResNet-8 converted from `$RSIM_MODELS/mlperf-tiny-ic`, else the hand-built
/// int8 model (said loudly).
pub fn model() -> (&'static str, Vec<u8>) {
    let dir = rsim_test_support::peer_models_dir().join("mlperf-tiny-ic");
    let Ok(tflite) = std::fs::read(dir.join("pretrainedResnet_quant.tflite")) else {
        assert!(
            !rsim_test_support::in_ci(),
            "MLPerf Tiny ResNet-8 not found under {} (required under CI)",
            dir.display()
        );
        eprintln!(
            "\n*** NOTE: MLPerf Tiny ResNet-8 not found under {}; using the hand-built int8 model\n",
            dir.display()
        );
        return ("hand-built int8 conv/dw/fc/softmax", rsim_boards::demo::tiny_int8_model());
    };
    let opts =
        rsim_model::tflite::ConvertOptions { source: "pretrainedResnet_quant.tflite".into(), ..Default::default() };
    ("mlperf-tiny ResNet-8", rsim_model::tflite::convert(&tflite, &opts).expect("convert ResNet-8").bytes)
}

/// 64x64 RGB frames: the first `per_class` tiles of each EuroSAT class in `$RSIM_DATA/eurosat-rgb-ci20`
/// (sorted names), else seeded synthetic frames (said loudly).
pub fn frames(per_class: usize) -> Vec<Vec<u8>> {
    let root = rsim_test_support::datasets_dir().join("eurosat-rgb-ci20");
    let mut classes: Vec<PathBuf> = std::fs::read_dir(&root)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    classes.sort();
    let mut out = Vec::new();
    for class in classes {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(&class).expect("read class dir").filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files.iter().filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("jpg"))).take(per_class) {
            let img = image::open(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())).to_rgb8();
            assert_eq!((img.width(), img.height()), (FRAME, FRAME), "{}", f.display());
            out.push(img.into_raw());
        }
    }
    if out.is_empty() {
        assert!(
            !rsim_test_support::in_ci(),
            "EuroSAT ci20 tiles not found under {} (required under CI)",
            root.display()
        );
        eprintln!("\n*** NOTE: EuroSAT ci20 tiles not found under {}; using synthetic frames\n", root.display());
        let mut rng = rsim_test_support::Rng::new(0x2545_f491_4f6c_dd1d);
        for _ in 0..6 * per_class {
            let mut frame = vec![0u8; (FRAME * FRAME * 3) as usize];
            rng.fill(&mut frame);
            out.push(frame);
        }
    }
    out
}

/// Writes the model, the frames (raw, for the firmware) and one PNG per frame (for the agent: the
/// same pixels losslessly, so its image decoder need not match the host's) under `dir`.
pub fn stage(dir: &Path, model: &[u8], frames: &[Vec<u8>]) {
    // PNGs of an earlier, longer run would reach the agent too.
    let _ = std::fs::remove_dir_all(dir.join("frames"));
    std::fs::create_dir_all(dir.join("frames")).expect("create staging dir");
    rsim_model::write::write_atomic(&dir.join("model.rsm"), model).expect("write model");
    rsim_model::write::write_atomic(&dir.join("frames.bin"), &frames.concat()).expect("write frames");
    for (i, f) in frames.iter().enumerate() {
        let p = dir.join("frames").join(format!("f{i:03}.png"));
        image::save_buffer(&p, f, FRAME, FRAME, image::ExtendedColorType::Rgb8).expect("write PNG");
    }
}

/// Builds the firmware for `board` around `dir`'s model and frames (release: fat LTO, opt-level 3).
/// `repeat` passes over the frames; `hex` adds the RSIM_OUTPUT semihosting lines.
pub fn build_firmware(board: Board, dir: &Path, repeat: u32, hex: bool) -> PathBuf {
    let target_dir = rsim_test_support::emulator::cross_target_dir("firmware");
    let mut cmd = cargo();
    cmd.current_dir(workspace().join("boards/firmware-mps2"))
        .args(["build", "--release", "--target", board.target(), "--target-dir"])
        .arg(&target_dir)
        .env("RSIM_FW_MODEL", dir.join("model.rsm"))
        .env("RSIM_FW_FRAMES", dir.join("frames.bin"))
        .env("RSIM_FW_FRAME", format!("{FRAME}x{FRAME}x3"))
        .env("RSIM_FW_TILE", TILE.to_string())
        .env("RSIM_FW_TOP_K", TOP_K.to_string())
        .env("RSIM_FW_DEADLINE_MS", DEADLINE_MS.to_string())
        .env("RSIM_FW_REPEAT", repeat.to_string())
        .env("RSIM_FW_HEX", if hex { "1" } else { "0" })
        .env_remove("RSIM_FW_INPUT")
        .env_remove("RSIM_FW_STRIDE");
    if board == Board::M55 {
        cmd.args(["--features", "an547"]);
    }
    check(&mut cmd, &format!("building the {} firmware", board.name()));
    // Copied out at once: the receiver test builds into the same target directory meanwhile.
    let elf = dir.join(format!("firmware-{board:?}.elf"));
    std::fs::copy(target_dir.join(board.target()).join("release/rsim-firmware-mps2"), &elf).expect("copy the firmware");
    elf
}

/// Builds the receiver firmware for `board` (feature `receiver`: no model built in, one build for
/// every model it is flashed with), trusting the public key file `key` (`RSIM_FW_KEYS`).
/// Shares the target directory of [`build_firmware`] (the same dependencies for the same targets,
/// compiled once); the ELF is copied to `out` at once, before another build can replace it.
pub fn build_receiver(board: Board, key: &Path, out: &Path) -> PathBuf {
    let target_dir = rsim_test_support::emulator::cross_target_dir("firmware");
    let mut cmd = cargo();
    cmd.current_dir(workspace().join("boards/firmware-mps2"))
        .args(["build", "--release", "--target", board.target(), "--target-dir"])
        .arg(&target_dir);
    for v in ["RSIM_FW_MODEL", "RSIM_FW_FRAMES", "RSIM_FW_INPUT"] {
        cmd.env_remove(v);
    }
    cmd.env("RSIM_FW_KEYS", key);
    cmd.args(["--features", if board == Board::M55 { "receiver an547" } else { "receiver" }]);
    check(&mut cmd, &format!("building the {} receiver firmware", board.name()));
    std::fs::copy(target_dir.join(board.target()).join("release/rsim-firmware-mps2"), out)
        .expect("copy the receiver firmware");
    out.to_path_buf()
}

/// The machine arguments of `board` for qemu-system-arm.
pub fn machine_args(board: Board) -> &'static [&'static str] {
    board.machine()
}

/// Runs the firmware with UART0 written to `uart`; returns its semihosting output. `icount`: QEMU
/// counts one instruction per virtual nanosecond, so the SysTick clock measures instructions.
pub fn run_firmware(board: Board, elf: &Path, uart: &Path, icount: bool) -> String {
    let mut cmd = Command::new("qemu-system-arm");
    cmd.args(board.machine()).args(["-display", "none", "-monitor", "none"]);
    if icount {
        cmd.args(["-icount", "shift=0"]);
    }
    cmd.arg("-serial")
        .arg(format!("file:{}", uart.display()))
        .args(["-semihosting-config", "enable=on,target=native", "-kernel"])
        .arg(elf);
    let what = format!("{} firmware under qemu-system-arm", board.name());
    let (ok, out) = run_with_timeout(&mut cmd, Duration::from_secs(300), &what);
    assert!(ok && out.contains("RSIM_DONE"), "{what} failed:\n{out}");
    out
}

pub fn build_agent() -> PathBuf {
    let target_dir = rsim_test_support::emulator::cross_target_dir("cross");
    check(
        cargo()
            .current_dir(workspace())
            .args(["build", "--release", "-p", "rsim-agent", "--target", AARCH64, "--target-dir"])
            .arg(&target_dir),
        "building rsim-agent for aarch64",
    );
    target_dir.join(AARCH64).join("release/rsim-agent")
}

/// Runs the agent under qemu-aarch64 on `dir`'s PNG frames, results CSV at `csv`; returns the
/// telemetry it sent over TCP to a listener here.
pub fn run_agent(exe: &Path, dir: &Path, csv: &Path) -> Vec<u8> {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
    let addr = l.local_addr().expect("local address").to_string();
    let ground = std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("agent connects");
        let mut bytes = Vec::new();
        s.read_to_end(&mut bytes).expect("read telemetry");
        bytes
    });
    let (ok, out) = run_with_timeout(
        Command::new("qemu-aarch64")
            .args(["-L", "/usr/aarch64-linux-gnu"])
            .arg(exe)
            .arg("--model")
            .arg(dir.join("model.rsm"))
            .arg("--input")
            .arg(dir.join("frames"))
            .arg("--csv")
            .arg(csv)
            .args([
                "--tile",
                &TILE.to_string(),
                "--top-k",
                &TOP_K.to_string(),
                "--deadline-ms",
                &DEADLINE_MS.to_string(),
                "--raw-output",
                "--tcp",
                &addr,
            ]),
        Duration::from_secs(300),
        "rsim-agent under qemu-aarch64",
    );
    assert!(ok, "rsim-agent under qemu-aarch64 failed:\n{out}");
    ground.join().expect("ground thread")
}
