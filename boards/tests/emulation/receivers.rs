//! Issue 11 item 0: a Cortex-M board that really receives flashes. The receiver firmware
//! (mps2-an386 Cortex-M4, and mps3-an547 Cortex-M55 when its target is installed), built to trust
//! one public key, runs under qemu-system-arm with its UART0 on a local TCP port and its flash in a
//! host file. The user's commands drive it: `rsim keygen` and `rsim sign` make signed models;
//! `rsim flash` of an unsigned model is refused; the signed first model installs on the empty board
//! and `rsim ground` shows its telemetry; a second `rsim flash` is cut off by stopping QEMU in the
//! middle of the transfer; after the restart the board still runs the first model, the same command
//! then installs the second one (on trial, confirmed by its own inferences), `rsim ground` shows its
//! telemetry, and re-flashing the older first model is refused (anti-rollback). The board's int8
//! outputs must equal the host runtime's for the same frames and model, byte for byte.
//!
//! The commands are run as `rsim-field` (the field tools of `rsim` without the trainer: the same
//! code, in this crate). Needs qemu-system-arm and the rustup targets: locally a missing tool skips
//! loudly; with `CI=1` or `RSIM_REQUIRE_QEMU=1` it fails.
//!
//! A module of the `emulated_boards` test binary, so its tests run beside the telemetry test (the
//! emulators wait on sockets and timers as much as they compute).

use super::emulation::{self, Board, FRAME};
use rsim_boards::clock::FakeClock;
use rsim_boards::field::ground::GroundReport;
use rsim_boards::onboard::{EngineClassifier, LoopConfig, OnboardLoop};
use std::collections::HashMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FIELD: &str = env!("CARGO_BIN_EXE_rsim-field");

/// One emulated board: the receiver firmware under qemu-system-arm (UART0 on `port`, semihosting
/// files in `dir`) or the agent under qemu-aarch64; its console lines go to `dir/console-<n>.txt`.
struct Qemu {
    child: Child,
    console: PathBuf,
}

impl Qemu {
    fn start(board: Board, elf: &Path, dir: &Path, port: u16, run: usize) -> Qemu {
        let console = dir.join(format!("console-{run}.txt"));
        let out = std::fs::File::create(&console).expect("create console file");
        let child = Command::new("qemu-system-arm")
            .current_dir(dir)
            .args(emulation::machine_args(board))
            .args(["-display", "none", "-monitor", "none", "-chardev"])
            .arg(format!("socket,id=uart0,host=127.0.0.1,port={port},server=on,wait=off"))
            .args(["-serial", "chardev:uart0", "-semihosting-config", "enable=on,target=native", "-kernel"])
            .arg(elf)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start qemu-system-arm");
        Qemu { child, console }
    }

    /// `rsim-agent --flash` under qemu-aarch64, listening on `port`, frames from `dir/frames`.
    fn agent(exe: &Path, dir: &Path, key: &Path, port: u16, run: usize) -> Qemu {
        let console = dir.join(format!("console-{run}.txt"));
        let out = std::fs::File::create(&console).expect("create console file");
        let child = Command::new("qemu-aarch64")
            .current_dir(dir)
            .args(["-L", "/usr/aarch64-linux-gnu"])
            .arg(exe)
            .args(["--flash", "store.bin", "--flash-size-mib", "4", "--trust"])
            .arg(key)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--input", "frames", "--tile", "32", "--raw-output"])
            .args(["--rounds", "0", "--csv", "agent.csv"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start qemu-aarch64");
        Qemu { child, console }
    }

    /// Waits until the console has a line containing `text`; returns it.
    fn wait_line(&mut self, text: &str, limit: Duration) -> String {
        let t0 = Instant::now();
        loop {
            let all = std::fs::read_to_string(&self.console).unwrap_or_default();
            // Whole lines only: the board may be in the middle of writing the last one.
            let complete = &all[..all.rfind('\n').map_or(0, |i| i + 1)];
            if let Some(l) = complete.lines().find(|l| l.contains(text)) {
                return l.to_string();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the board exited ({status}) before printing {text:?}; console:\n{all}");
            }
            assert!(t0.elapsed() < limit, "no {text:?} line within {limit:?}; console:\n{all}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn console(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// Stops the emulator as a power cut would: no warning to the firmware.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a local port").local_addr().expect("local address").port()
}

/// `rsim flash --tcp 127.0.0.1:<port> --model <model>` (retrying the connection while QEMU opens its socket).
fn flash_command(port: u16, model: &Path) -> Command {
    let mut c = Command::new(FIELD);
    c.args(["flash", "--tcp", &format!("127.0.0.1:{port}"), "--model"]).arg(model).args(["--timeout-ms", "3000"]);
    c
}

fn flash(port: u16, model: &Path) {
    let out = flash_command(port, model).output().expect("run rsim-field flash");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rsim flash {} failed:\n{err}", model.display());
    assert!(err.contains("verified and active"), "rsim flash did not report activation:\n{err}");
}

/// `rsim flash` that the board must refuse with `code` (e.g. "Unsigned", "Rollback").
fn flash_refused(port: u16, model: &Path, code: &str) {
    let out = flash_command(port, model).output().expect("run rsim-field flash");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "rsim flash {} succeeded; the board should refuse it ({code}):\n{err}",
        model.display()
    );
    assert!(err.contains(&format!("({code})")), "rsim flash {}: expected a {code} refusal:\n{err}", model.display());
}

/// Runs `rsim <args>` and asserts it succeeds.
fn field(args: &[&std::ffi::OsStr]) {
    let out = Command::new(FIELD).args(args).output().expect("run rsim-field");
    assert!(out.status.success(), "rsim {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// The fleet key pair (`rsim keygen`), kept between runs so the firmware build stays cached.
fn fleet_key() -> (PathBuf, PathBuf) {
    // Both tests of this file ask at once: one of them makes the pair.
    static KEY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = KEY.lock().unwrap_or_else(|e| e.into_inner());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("firmware_receiver_keys");
    std::fs::create_dir_all(&dir).expect("create key dir");
    let prefix = dir.join("fleet");
    let (key, public) = (dir.join("fleet.key"), dir.join("fleet.pub"));
    if !key.is_file() || !public.is_file() {
        field(&["keygen".as_ref(), "--force".as_ref(), "--out".as_ref(), prefix.as_os_str()]);
    }
    (key, public)
}

fn sign(model: &Path, key: &Path, version: u32, out: &Path) {
    let v = version.to_string();
    field(&[
        "sign".as_ref(),
        "--model".as_ref(),
        model.as_os_str(),
        "--key".as_ref(),
        key.as_os_str(),
        "--version".as_ref(),
        v.as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
}

/// `rsim ground --tcp ... --seconds <s> --record <capture>`, then the capture decoded.
fn ground(port: u16, dir: &Path, name: &str, seconds: u64) -> GroundReport {
    let capture = dir.join(format!("{name}-live.bin"));
    let out = Command::new(FIELD)
        .args(["ground", "--tcp", &format!("127.0.0.1:{port}"), "--quiet", "--seconds", &seconds.to_string()])
        .arg("--record")
        .arg(&capture)
        .output()
        .expect("run rsim-field ground");
    assert!(out.status.success(), "rsim ground failed:\n{}", String::from_utf8_lossy(&out.stderr));
    super::ground(&std::fs::read(&capture).expect("read the ground capture"), dir, &format!("{name}-replay"))
}

/// The host runtime's int8 output for every (frame index, tile index): the same loop and engine.
fn host_outputs(model: &[u8], frames: &[Vec<u8>]) -> HashMap<(u32, u16), Vec<u8>> {
    let mut arena = vec![0u8; rsim_edge::required_arena(model).expect("model arena") + 16];
    let mut clf = EngineClassifier::new(model, &mut arena).expect("host engine");
    let tile = clf.engine.model().info.input_spec.width;
    let cfg = LoopConfig {
        tile,
        stride: tile,
        top_k: 5,
        deadline_us: u64::MAX / 4,
        heartbeat_us: 1_000_000,
        smoothing: None,
        send_raw_output: true,
    };
    let mut tile_buf = vec![0u8; (tile * tile * 3) as usize];
    let clock = FakeClock::new(0);
    let mut lp = OnboardLoop::new(cfg, &clock, &mut tile_buf, &mut []);
    let mut frame = vec![0u8; (FRAME * FRAME * 3) as usize];
    let mut src = super::Frames(frames.iter());
    let mut link = Vec::new();
    while lp.step(&mut src, &mut frame, &mut clf, &mut link).expect("host loop") {}
    let mut reader: rsim_boards::wire::FrameReader = rsim_boards::wire::FrameReader::new();
    let mut out = HashMap::new();
    for b in link {
        if let Some(Ok(rsim_boards::wire::Msg::RawOutput { frame_id, tile_index, data })) = reader.push(b) {
            out.insert((frame_id - 1, tile_index), data.to_vec());
        }
    }
    out
}

/// Every raw output the board sent equals the host's for that frame (ids count from 1, round after
/// round over the frame file) and tile; returns how many were compared.
fn check_outputs(
    board: &str,
    what: &str,
    rep: &GroundReport,
    host: &HashMap<(u32, u16), Vec<u8>>,
    frames: usize,
) -> usize {
    // `rsim ground` may connect in the middle of a frame: that one frame does not decode.
    assert!(rep.bad_frames <= 1, "{board} {what}: {} corrupt frames on the link", rep.bad_frames);
    for (fid, idx, data) in &rep.raw_outputs {
        let key = ((fid - 1) % frames as u32, *idx);
        let want = host.get(&key).unwrap_or_else(|| panic!("{board} {what}: no host output for {key:?}"));
        assert_eq!(data, want, "{board} {what}: frame {fid} tile {idx} differs from the host runtime");
    }
    rep.raw_outputs.len()
}

/// Whether `rsim flash` printed progress between 20 % and 99 %.
fn past_a_fifth(stderr: &str) -> bool {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("flash:")?.trim_start().split('%').next()?.parse::<u32>().ok())
        .any(|p| (20..100).contains(&p))
}

fn frames_file(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut f = b"RSFR".to_vec();
    for v in [FRAME, FRAME, 3] {
        f.extend(v.to_le_bytes());
    }
    frames.iter().for_each(|fr| f.extend(fr));
    f
}

#[test]
fn receiver_firmware_takes_models_over_its_uart_and_survives_a_restart_mid_transfer() {
    let missing = rsim_test_support::emulator::missing(&["qemu-system-arm"], &[Board::M4.target()]);
    if !missing.is_empty() {
        let msg = format!(
            "receiver firmware test needs {} (apt-get install qemu-system-arm; rustup target add)",
            missing.join(", ")
        );
        assert!(!rsim_test_support::emulator::qemu_required(), "{msg}; required because CI/RSIM_REQUIRE_QEMU is set");
        eprintln!("\n*** SKIPPED: {msg}\n");
        return;
    }
    let mut boards = vec![Board::M4];
    if rsim_test_support::emulator::has_target(Board::M55.target()) || rsim_test_support::emulator::qemu_required() {
        boards.push(Board::M55);
    } else {
        eprintln!("\n*** NOTE: rustup target {} missing: Cortex-M55 (mps3-an547) not checked\n", Board::M55.target());
    }
    let (name_a, model_a) = emulation::model();
    let model_b = rsim_boards::demo::tiny_int8_model();
    let frames = emulation::frames(1);
    let host_a = host_outputs(&model_a, &frames);
    let host_b = host_outputs(&model_b, &frames);
    assert_ne!(host_a, host_b, "the two models must be told apart by their outputs");

    let (key, public) = fleet_key();
    let models = Models { a: model_a, b: model_b, name_a, host_a, host_b, frames: frames.len() };
    for board in boards {
        let dir = fresh_dir(&format!("firmware_receiver_{board:?}"));
        let elf = emulation::build_receiver(board, &public, &dir.join("receiver.elf"));
        std::fs::write(dir.join("rsim-frames.bin"), frames_file(&frames)).expect("write frames");
        let marks = Marks {
            empty: "RSIM_BOOT none",
            running_a: "RSIM_MODEL slot=A",
            boot: "RSIM_BOOT",
            booted_a: "RSIM_BOOT slot=A",
            running_b: "RSIM_MODEL slot=B",
            confirmed_b: "RSIM_CONFIRMED slot=B",
        };
        scenario(board.name(), &dir, &key, &models, &marks, |port, run| Qemu::start(board, &elf, &dir, port, run));
    }
}

/// Issue 11 item 3: the receiver firmware verifies every image under its hardware watchdog (the
/// CMSDK watchdog of mps2-an386). With a 1 ms budget (the board's configuration file) every commit
/// overruns it: the board resets, keeps no half-activated image, and `rsim flash` stops after three
/// such resets with a message saying so. With the default budget the same image then installs.
#[test]
fn receiver_watchdog_resets_a_verification_over_its_budget() {
    let missing = rsim_test_support::emulator::missing(&["qemu-system-arm"], &[Board::M4.target()]);
    if !missing.is_empty() {
        let msg = format!("receiver watchdog test needs {}", missing.join(", "));
        assert!(!rsim_test_support::emulator::qemu_required(), "{msg}; required because CI/RSIM_REQUIRE_QEMU is set");
        eprintln!("\n*** SKIPPED: {msg}\n");
        return;
    }
    let (key, public) = fleet_key();
    let dir = fresh_dir("receiver_watchdog");
    let elf = emulation::build_receiver(Board::M4, &public, &dir.join("receiver.elf"));
    std::fs::write(dir.join("rsim-frames.bin"), frames_file(&emulation::frames(1))).expect("write frames");
    let (plain, signed) = (dir.join("m.rsm"), dir.join("m.signed.rsm"));
    std::fs::write(&plain, rsim_boards::demo::tiny_int8_model()).expect("write model");
    sign(&plain, &key, 1, &signed);
    let port = free_port();
    let wait = Duration::from_secs(120);

    std::fs::write(dir.join("rsim-board.txt"), "verify_budget_ms=1\n").expect("write board config");
    let mut q = Qemu::start(Board::M4, &elf, &dir, port, 1);
    q.wait_line("RSIM_BOOT none", wait);
    let out = flash_command(port, &signed).output().expect("run rsim-field flash");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a verification over its watchdog budget activated the model:\n{err}");
    assert!(err.contains("board reset 3 times while verifying"), "rsim flash did not say why:\n{err}");
    let console = q.console();
    let boots = console.lines().filter(|l| l.starts_with("RSIM_BOOT none")).count();
    assert!(boots >= 4, "expected a reset per commit (3) after the first boot, saw {boots} boots:\n{console}");
    assert!(!console.contains("RSIM_MODEL"), "a model ran although no verification finished:\n{console}");
    q.kill();

    // The default budget: the same image verifies and runs.
    std::fs::remove_file(dir.join("rsim-board.txt")).expect("remove board config");
    let mut q = Qemu::start(Board::M4, &elf, &dir, port, 2);
    q.wait_line("RSIM_BOOT none", wait);
    flash(port, &signed);
    q.wait_line("RSIM_MODEL slot=A", wait);
    q.kill();
}

/// Issue 11 item 0, the Linux half: `rsim-agent --flash` built for aarch64 under qemu-aarch64 keeps
/// its models in an A/B store file and takes new ones over TCP, through the same scenario.
#[test]
fn agent_takes_models_over_tcp_into_its_store_and_survives_a_restart_mid_transfer() {
    let missing = emulation::missing_tools(&[]);
    if !missing.is_empty() {
        let msg = format!("agent receiver test {}", emulation::install_hint(&missing));
        assert!(!rsim_test_support::emulator::qemu_required(), "{msg}; required because CI/RSIM_REQUIRE_QEMU is set");
        eprintln!("\n*** SKIPPED: {msg}\n");
        return;
    }
    let (name_a, model_a) = emulation::model();
    let model_b = rsim_boards::demo::tiny_int8_model();
    let frames = emulation::frames(1);
    let (host_a, host_b) = (host_outputs(&model_a, &frames), host_outputs(&model_b, &frames));
    let (key, public) = fleet_key();
    let exe = emulation::build_agent();
    let dir = fresh_dir("agent_receiver");
    emulation::stage(&dir, &model_a, &frames); // frames/ as PNGs, the agent's camera
    let models = Models { a: model_a, b: model_b, name_a, host_a, host_b, frames: frames.len() };
    let marks = Marks {
        empty: "is empty: waiting",
        running_a: "running the model in slot A",
        boot: "model store store.bin",
        booted_a: "store.bin: slot A",
        running_b: "running the model in slot B",
        confirmed_b: "model in slot B confirmed",
    };
    scenario("aarch64 agent", &dir, &key, &models, &marks, |port, run| Qemu::agent(&exe, &dir, &public, port, run));
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create board dir");
    dir
}

/// The two models and the host runtime's outputs for them.
struct Models {
    a: Vec<u8>,
    b: Vec<u8>,
    name_a: &'static str,
    host_a: HashMap<(u32, u16), Vec<u8>>,
    host_b: HashMap<(u32, u16), Vec<u8>>,
    frames: usize,
}

/// What the board prints at each point of the scenario.
struct Marks {
    empty: &'static str,
    running_a: &'static str,
    boot: &'static str,
    booted_a: &'static str,
    running_b: &'static str,
    confirmed_b: &'static str,
}

/// Unsigned refused, signed A installed on the empty board and seen through `rsim ground`, the board
/// stopped in the middle of B's transfer, restarted on A, B installed, seen, confirmed by inferences,
/// and the older A refused.
fn scenario(what: &str, dir: &Path, key: &Path, m: &Models, marks: &Marks, start: impl Fn(u16, usize) -> Qemu) {
    let t0 = Instant::now();
    let (a_plain, b_plain) = (dir.join("a.rsm"), dir.join("b.rsm"));
    std::fs::write(&a_plain, &m.a).expect("write model A");
    std::fs::write(&b_plain, &m.b).expect("write model B");
    let (a, b) = (dir.join("a.signed.rsm"), dir.join("b.signed.rsm"));
    sign(&a_plain, key, 1, &a);
    sign(&b_plain, key, 2, &b);
    let port = free_port();
    let wait = Duration::from_secs(120);

    // An empty board takes its first model.
    let mut q = start(port, 1);
    q.wait_line(marks.empty, wait);
    flash_refused(port, &a_plain, "Unsigned");
    flash(port, &a);
    q.wait_line(marks.running_a, wait);
    let rep = ground(port, dir, "ground-a", 4);
    let n = check_outputs(what, m.name_a, &rep, &m.host_a, m.frames);
    assert!(n >= 2, "{what}: only {n} outputs of model A in 4 s; console:\n{}", q.console());
    assert!(rep.heartbeats >= 1, "{what}: no heartbeat");

    // The second model: the board stops in the middle of the transfer.
    let mut child = flash_command(port, &b).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().expect("rsim flash");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    while !past_a_fifth(&seen) {
        let k = stderr.read(&mut buf).expect("read rsim flash output");
        assert!(k > 0, "rsim flash ended before a fifth of the transfer:\n{seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..k]));
    }
    q.kill();
    let status = child.wait().expect("rsim flash exits");
    stderr.read_to_string(&mut seen).ok();
    assert!(!status.success(), "rsim flash reported success although the board stopped mid-transfer:\n{seen}");

    // After the restart the first model still runs; the same command then installs the second.
    let mut q = start(port, 2);
    let boot = q.wait_line(marks.boot, wait);
    assert!(boot.contains(marks.booted_a), "{what}: after the cut: {boot}");
    q.wait_line(marks.running_a, wait);
    flash(port, &b);
    q.wait_line(marks.running_b, wait);
    let rep = ground(port, dir, "ground-b", 4);
    let n = check_outputs(what, "model B", &rep, &m.host_b, m.frames);
    assert!(n >= 2, "{what}: only {n} outputs of model B in 4 s; console:\n{}", q.console());
    // Model B runs on trial and is confirmed by its own successful inferences.
    q.wait_line(marks.confirmed_b, wait);
    // Confirmed, B's version 2 is the board's security counter: the older A is refused.
    flash_refused(port, &a, "Rollback");
    q.kill();
    eprintln!("{what}: flashed, cut, restarted and reflashed in {:?}", t0.elapsed());
}
