//! Issue 5 acceptance: the Cortex-M4 firmware (mps2-an386 under qemu-system-arm, telemetry over its
//! emulated UART) and `rsim-agent` built for aarch64 (under qemu-aarch64, telemetry over TCP) run
//! the onboard loop on the same EuroSAT tiles as the host-side runtime, and their telemetry, decoded
//! by the ground station (`rsim ground --replay`), carries identical frame ids, tile positions,
//! classes, int8 outputs and confidences. Only latencies may differ.
//!
//! Model: MLPerf Tiny's int8 ResNet-8 converted from `$RSIM_MODELS/mlperf-tiny-ic`, else the
//! hand-built int8 model of `rsim_boards::demo`. Frames: the first 64x64 tile of each EuroSAT class
//! in `$RSIM_DATA/eurosat-rgb-ci20`, else seeded synthetic frames; each is cut into four 32x32 tiles.
//!
//! Needs qemu-system-arm, qemu-aarch64, the aarch64 linker and the two rustup targets. Locally a
//! missing tool skips loudly; with `CI=1` or `RSIM_REQUIRE_QEMU=1` it fails (`.ci/run` installs them).

use rsim_boards::clock::FakeClock;
use rsim_boards::field::ground::{run_ground, GroundArgs, GroundReport};
use rsim_boards::field::link::LinkArgs;
use rsim_boards::onboard::{EngineClassifier, FrameInfo, FrameSource, LoopConfig, OnboardLoop};
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const AARCH64: &str = "aarch64-unknown-linux-gnu";
const THUMB: &str = "thumbv7em-none-eabihf";
const FRAME: u32 = 64;
const TILE: u32 = 32;
const TOP_K: u8 = 5;
/// Deadlines far beyond any emulated tile time: a loaded CI machine must not drop tiles.
const DEADLINE_MS: u64 = 600_000;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("boards/ sits in the workspace").to_path_buf()
}

fn shared(var: &str, sub: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| workspace().join("../shared").join(sub))
}

fn qemu_required() -> bool {
    let on = |v: &str| std::env::var(v).is_ok_and(|s| !s.is_empty() && s != "0" && s != "false");
    on("CI") || on("RSIM_REQUIRE_QEMU")
}

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

/// `true` when every tool is present; otherwise skips loudly, or panics when CI requires them.
fn prerequisites() -> bool {
    let mut missing: Vec<String> = ["qemu-aarch64", "qemu-system-arm", "aarch64-linux-gnu-gcc"]
        .into_iter()
        .filter(|b| !on_path(b))
        .map(|b| format!("`{b}` on PATH"))
        .collect();
    let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    for t in [AARCH64, THUMB] {
        if !sysroot.as_ref().is_ok_and(|s| Path::new(s).join("lib/rustlib").join(t).exists()) {
            missing.push(format!("rustup target {t}"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "emulated boards test needs {} (apt-get install qemu-system-arm qemu-user gcc-aarch64-linux-gnu \
         libc6-dev-arm64-cross; rustup target add {AARCH64} {THUMB})",
        missing.join(", ")
    );
    if qemu_required() {
        panic!("{msg}; required because CI/RSIM_REQUIRE_QEMU is set");
    }
    eprintln!("\n*** SKIPPED: {msg}\n");
    false
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    // The outer `cargo test` may export settings meant for the host build; the cross builds set their own.
    c.env_remove("CARGO_TARGET_DIR").env_remove("CARGO_BUILD_TARGET");
    c
}

fn check(cmd: &mut Command, what: &str) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(status.success(), "{what} failed ({status})");
}

/// Runs `cmd` and kills it after `limit` (a hung emulator must not hang CI); returns success and stdout.
fn run_with_timeout(cmd: &mut Command, limit: Duration, what: &str) -> (bool, String) {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
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

/// The ResNet-8 when the peer models are present, else the hand-built int8 model.
fn model() -> (&'static str, Vec<u8>) {
    let dir = shared("RSIM_MODELS", "models").join("mlperf-tiny-ic");
    let Ok(tflite) = std::fs::read(dir.join("pretrainedResnet_quant.tflite")) else {
        eprintln!("\n*** NOTE: MLPerf Tiny ResNet-8 not found under {}; using the hand-built int8 model\n", dir.display());
        return ("hand-built int8 conv/dw/fc/softmax", rsim_boards::demo::tiny_int8_model());
    };
    let opts = rsim_model::tflite::ConvertOptions { source: "pretrainedResnet_quant.tflite".into(), ..Default::default() };
    ("mlperf-tiny ResNet-8", rsim_model::tflite::convert(&tflite, &opts).expect("convert ResNet-8").bytes)
}

/// 64x64 RGB frames: the first tile of each EuroSAT class (sorted), else seeded synthetic ones.
fn frames() -> Vec<Vec<u8>> {
    let root = shared("RSIM_DATA", "datasets").join("eurosat-rgb-ci20");
    let mut classes: Vec<PathBuf> = std::fs::read_dir(&root).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect()).unwrap_or_default();
    classes.sort();
    let mut out = Vec::new();
    for class in classes {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&class).expect("read class dir").filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        if let Some(f) = files.iter().find(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("jpg"))) {
            let img = image::open(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())).to_rgb8();
            assert_eq!((img.width(), img.height()), (FRAME, FRAME), "{}", f.display());
            out.push(img.into_raw());
        }
    }
    if out.is_empty() {
        eprintln!("\n*** NOTE: EuroSAT ci20 tiles not found under {}; using synthetic frames\n", root.display());
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..6 {
            out.push((0..FRAME * FRAME * 3).map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }).collect());
        }
    }
    out
}

fn loop_config() -> LoopConfig {
    LoopConfig { tile: TILE, stride: TILE, top_k: TOP_K, deadline_us: DEADLINE_MS * 1000, heartbeat_us: 1_000_000, smoothing: None, send_raw_output: true }
}

struct Frames(std::vec::IntoIter<Vec<u8>>);
impl FrameSource for Frames {
    type Error = ();
    fn next_frame(&mut self, buf: &mut [u8]) -> Result<Option<FrameInfo>, ()> {
        let Some(f) = self.0.next() else { return Ok(None) };
        buf.get_mut(..f.len()).ok_or(())?.copy_from_slice(&f);
        Ok(Some(FrameInfo { width: FRAME, height: FRAME, channels: 3 }))
    }
}

/// The host-side runtime: the same loop and engine, natively, on a fake clock.
fn host_stream(model: &[u8], frames: &[Vec<u8>]) -> Vec<u8> {
    let mut arena = vec![0u8; rsim_edge::required_arena(model).expect("model arena") + 16];
    let mut clf = EngineClassifier::new(model, &mut arena).expect("host engine");
    let mut tile = vec![0u8; (TILE * TILE * 3) as usize];
    let clock = FakeClock::new(0);
    let mut lp = OnboardLoop::new(loop_config(), &clock, &mut tile, &mut []);
    let mut frame = vec![0u8; (FRAME * FRAME * 3) as usize];
    let mut src = Frames(frames.to_vec().into_iter());
    let mut link = Vec::new();
    while lp.step(&mut src, &mut frame, &mut clf, &mut link).expect("host loop") {}
    link
}

fn build_firmware(model: &Path, frames: &Path) -> PathBuf {
    let target_dir = workspace().join("target/firmware");
    check(
        cargo()
            .current_dir(workspace().join("boards/firmware-mps2"))
            .args(["build", "--release", "--target", THUMB, "--target-dir"])
            .arg(&target_dir)
            .env("RSIM_FW_MODEL", model)
            .env("RSIM_FW_FRAMES", frames)
            .env("RSIM_FW_FRAME", format!("{FRAME}x{FRAME}x3"))
            .env("RSIM_FW_TILE", TILE.to_string())
            .env("RSIM_FW_TOP_K", TOP_K.to_string())
            .env("RSIM_FW_DEADLINE_MS", DEADLINE_MS.to_string())
            .env_remove("RSIM_FW_INPUT")
            .env_remove("RSIM_FW_REPEAT")
            .env_remove("RSIM_FW_STRIDE")
            .env_remove("RSIM_FW_HEX"),
        "building the mps2-an386 firmware",
    );
    target_dir.join(THUMB).join("release/rsim-firmware-mps2")
}

/// Runs the firmware with UART0 written to `uart`; returns its semihosting output.
fn run_firmware(elf: &Path, uart: &Path) -> String {
    let (ok, out) = run_with_timeout(
        Command::new("qemu-system-arm")
            .args(["-machine", "mps2-an386", "-cpu", "cortex-m4", "-display", "none", "-monitor", "none"])
            .arg("-serial")
            .arg(format!("file:{}", uart.display()))
            .args(["-semihosting-config", "enable=on,target=native", "-kernel"])
            .arg(elf),
        Duration::from_secs(300),
        "firmware under qemu-system-arm",
    );
    assert!(ok && out.contains("RSIM_DONE"), "firmware under qemu-system-arm failed:\n{out}");
    out
}

fn build_agent() -> PathBuf {
    let target_dir = workspace().join("target/cross");
    check(
        cargo().current_dir(workspace()).args(["build", "--release", "-p", "rsim-agent", "--target", AARCH64, "--target-dir"]).arg(&target_dir),
        "building rsim-agent for aarch64",
    );
    target_dir.join(AARCH64).join("release/rsim-agent")
}

/// Runs the agent under qemu-aarch64 on a folder of PNGs; returns what it sent over TCP.
fn run_agent(exe: &Path, model: &Path, pngs: &Path, csv: &Path) -> Vec<u8> {
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
            .arg(model)
            .arg("--input")
            .arg(pngs)
            .arg("--csv")
            .arg(csv)
            .args(["--tile", &TILE.to_string(), "--top-k", &TOP_K.to_string(), "--deadline-ms", &DEADLINE_MS.to_string(), "--raw-output", "--tcp", &addr]),
        Duration::from_secs(300),
        "rsim-agent under qemu-aarch64",
    );
    assert!(ok, "rsim-agent under qemu-aarch64 failed:\n{out}");
    ground.join().expect("ground thread")
}

/// Decodes a byte capture with the ground station (`rsim ground --replay`).
fn ground(bytes: &[u8], dir: &Path, name: &str) -> GroundReport {
    let path = dir.join(format!("{name}.bin"));
    rsim_model::write::write_atomic(&path, bytes).expect("write capture");
    let args = GroundArgs {
        link: LinkArgs::default(),
        replay: Some(path),
        record: None,
        model: None,
        csv: Some(dir.join(format!("{name}.csv"))),
        map: None,
        map_scale: 8,
        seconds: 0,
        quiet: true,
    };
    run_ground(&args).unwrap_or_else(|e| panic!("ground decoding {name}: {e}"))
}

/// Everything a telemetry frame says about the classification (latency and arena are the board's).
type Row = (u32, u16, u16, u16, u16, u8, Vec<(u16, i8, u32)>, bool);

fn rows(r: &GroundReport) -> Vec<Row> {
    r.telemetry
        .iter()
        .map(|t| {
            let top = t.top[..t.count as usize].iter().map(|s| (s.class, s.q, s.confidence.to_bits())).collect();
            (t.frame_id, t.tile_index, t.tile_x, t.tile_y, t.tile_size, t.count, top, t.smoothed)
        })
        .collect()
}

#[test]
fn firmware_and_agent_telemetry_match_the_host_runtime() {
    if !prerequisites() {
        return;
    }
    let t0 = Instant::now();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("emulated_boards");
    std::fs::create_dir_all(dir.join("frames")).expect("create temp dir");
    let (name, model) = model();
    let frames = frames();
    let model_path = dir.join("model.rsm");
    rsim_model::write::write_atomic(&model_path, &model).expect("write model");
    rsim_model::write::write_atomic(&dir.join("frames.bin"), &frames.concat()).expect("write frames");
    // The agent gets the same pixels losslessly (its JPEG decoder need not match the host's).
    for (i, f) in frames.iter().enumerate() {
        let p = dir.join("frames").join(format!("f{i:02}.png"));
        image::save_buffer(&p, f, FRAME, FRAME, image::ExtendedColorType::Rgb8).expect("write PNG");
    }

    let host = ground(&host_stream(&model, &frames), &dir, "host");
    let elf = build_firmware(&model_path, &dir.join("frames.bin"));
    let agent_exe = build_agent();
    let built = t0.elapsed();
    let fw_log = run_firmware(&elf, &dir.join("uart-raw.bin"));
    let fw_bytes = std::fs::read(dir.join("uart-raw.bin")).expect("read UART capture");
    let m4 = ground(&fw_bytes, &dir, "cortex-m4");
    let agent = ground(&run_agent(&agent_exe, &model_path, &dir.join("frames"), &dir.join("agent.csv")), &dir, "aarch64");
    eprintln!("{name}: {} frames; built in {built:?}, total {:?}; firmware: {}", frames.len(), t0.elapsed(), fw_log.lines().last().unwrap_or(""));

    let tiles = frames.len() * ((FRAME / TILE) * (FRAME / TILE)) as usize;
    assert_eq!(host.telemetry.len(), tiles, "host: one telemetry frame per tile");
    assert_eq!(host.raw_outputs.len(), tiles, "host: one raw output per tile");
    // The host's own telemetry is consistent: top-1 and its q are the raw output's argmax and byte.
    for (t, (fid, idx, raw)) in host.telemetry.iter().zip(&host.raw_outputs) {
        assert_eq!((t.frame_id, t.tile_index), (*fid, *idx));
        let best = raw.iter().enumerate().max_by(|a, b| (*a.1 as i8).cmp(&(*b.1 as i8)).then(b.0.cmp(&a.0))).map(|(i, _)| i as u16);
        assert_eq!(Some(t.top[0].class), best, "host top-1 vs raw output {raw:?}");
        assert_eq!(t.top[0].q, raw[t.top[0].class as usize] as i8);
    }
    for (board, rep) in [("Cortex-M4 firmware (UART)", &m4), ("aarch64 agent (TCP)", &agent)] {
        assert_eq!(rep.bad_frames, 0, "{board}: corrupt frames on the link");
        assert!(rep.heartbeats >= 1, "{board}: no heartbeat");
        assert_eq!(rows(rep), rows(&host), "{board}: telemetry differs from the host runtime ({name})");
        assert_eq!(rep.raw_outputs, host.raw_outputs, "{board}: int8 outputs differ from the host runtime ({name})");
        let arena = host.telemetry[0].arena_hwm;
        assert!(rep.telemetry.iter().all(|t| t.arena_hwm == arena), "{board}: arena high-water mark differs from the host's {arena}");
    }
    // Not every tile lands in one class: the comparison covers more than a constant answer.
    let mut classes: Vec<u16> = host.telemetry.iter().map(|t| t.top[0].class).collect();
    classes.sort_unstable();
    classes.dedup();
    assert!(classes.len() >= 2, "{name}: every tile classified as {classes:?}");
}
