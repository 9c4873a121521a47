//! Emulated boards for the acceptance test (`tests/emulated_boards.rs`) and the loop benchmark
//! (`benches/boards.rs`): finding the model and tiles, building the Cortex-M firmware and the
//! aarch64 agent, and running them under QEMU with a time limit.
#![allow(dead_code)] // the test and the bench use different subsets

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("boards/ sits in the workspace").to_path_buf()
}

fn shared(var: &str, sub: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| workspace().join("../shared").join(sub))
}

pub fn qemu_required() -> bool {
    let on = |v: &str| std::env::var(v).is_ok_and(|s| !s.is_empty() && s != "0" && s != "false");
    on("CI") || on("RSIM_REQUIRE_QEMU")
}

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

/// Whether the rustup target is installed.
pub fn has_target(target: &str) -> bool {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    sysroot.is_ok_and(|s| Path::new(&s).join("lib/rustlib").join(target).exists())
}

/// What of qemu, the aarch64 linker and the rustup targets (for `boards`) is missing.
pub fn missing_tools(boards: &[Board]) -> Vec<String> {
    let mut missing: Vec<String> = ["qemu-aarch64", "qemu-system-arm", "aarch64-linux-gnu-gcc"]
        .into_iter()
        .filter(|b| !on_path(b))
        .map(|b| format!("`{b}` on PATH"))
        .collect();
    for t in boards.iter().map(|b| b.target()).chain([AARCH64]) {
        if !has_target(t) {
            missing.push(format!("rustup target {t}"));
        }
    }
    missing
}

/// A hint naming the packages and targets that provide `missing`.
pub fn install_hint(missing: &[String]) -> String {
    format!(
        "needs {} (apt-get install qemu-system-arm qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross; \
         rustup target add {AARCH64} thumbv7em-none-eabihf thumbv8m.main-none-eabihf)",
        missing.join(", ")
    )
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    // The outer cargo may export settings meant for the host build; the cross builds set their own.
    c.env_remove("CARGO_TARGET_DIR").env_remove("CARGO_BUILD_TARGET");
    c
}

fn check(cmd: &mut Command, what: &str) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(status.success(), "{what} failed ({status})");
}

/// Runs `cmd` and kills it after `limit` (a hung emulator must not hang CI); returns success and stdout.
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

/// The MLPerf Tiny int8 ResNet-8 converted from `$RSIM_MODELS/mlperf-tiny-ic`, else the hand-built
/// int8 model (said loudly).
pub fn model() -> (&'static str, Vec<u8>) {
    let dir = shared("RSIM_MODELS", "models").join("mlperf-tiny-ic");
    let Ok(tflite) = std::fs::read(dir.join("pretrainedResnet_quant.tflite")) else {
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
    let root = shared("RSIM_DATA", "datasets").join("eurosat-rgb-ci20");
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
        eprintln!("\n*** NOTE: EuroSAT ci20 tiles not found under {}; using synthetic frames\n", root.display());
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..6 * per_class {
            out.push(
                (0..FRAME * FRAME * 3)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect(),
            );
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
    let target_dir = workspace().join("target/firmware");
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
    target_dir.join(board.target()).join("release/rsim-firmware-mps2")
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
    let target_dir = workspace().join("target/cross");
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
