//! Issue 5 acceptance: the Cortex-M firmware (mps2-an386 Cortex-M4, and mps3-an547 Cortex-M55 when
//! its rustup target is installed; under qemu-system-arm, telemetry over the emulated UART) and
//! `rsim-agent` built for aarch64 (under qemu-aarch64, telemetry over TCP) run the onboard loop on the same EuroSAT tiles as the host-side runtime, and their telemetry, decoded
//! by the ground station (`rsim ground --replay`), carries identical frame ids, tile positions,
//! classes, int8 outputs and confidences. Only latencies may differ.
//!
//! Model: MLPerf Tiny's int8 ResNet-8 converted from `$RSIM_MODELS/mlperf-tiny-ic`, else the
//! hand-built int8 model of `rsim_boards::demo`. Frames: the first 64x64 tile of each EuroSAT class
//! in `$RSIM_DATA/eurosat-rgb-ci20`, else seeded synthetic frames; each is cut into four 32x32 tiles.
//!
//! Needs qemu-system-arm, qemu-aarch64, the aarch64 linker and the rustup targets. Locally a
//! missing tool skips loudly; with `CI=1` or `RSIM_REQUIRE_QEMU=1` it fails (`.ci/run` installs them).

mod emulation;
/// The receiver firmware and the agent's model store flashed over their links (issue 11 item 0).
#[path = "emulation/receivers.rs"]
mod receivers;

use emulation::{Board, DEADLINE_MS, FRAME, TILE, TOP_K};
use rsim_boards::clock::FakeClock;
use rsim_boards::field::ground::{run_ground, GroundArgs, GroundReport};
use rsim_boards::field::link::LinkArgs;
use rsim_boards::onboard::{EngineClassifier, FrameInfo, FrameSource, LoopConfig, OnboardLoop};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn loop_config() -> LoopConfig {
    LoopConfig {
        tile: TILE,
        stride: TILE,
        top_k: TOP_K,
        deadline_us: DEADLINE_MS * 1000,
        heartbeat_us: 1_000_000,
        smoothing: None,
        send_raw_output: true,
    }
}

struct Frames<'a>(std::slice::Iter<'a, Vec<u8>>);
impl FrameSource for Frames<'_> {
    type Error = ();
    fn next_frame(&mut self, buf: &mut [u8]) -> Result<Option<FrameInfo>, ()> {
        let Some(f) = self.0.next() else { return Ok(None) };
        buf.get_mut(..f.len()).ok_or(())?.copy_from_slice(f);
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
    let mut src = Frames(frames.iter());
    let mut link = Vec::new();
    while lp.step(&mut src, &mut frame, &mut clf, &mut link).expect("host loop") {}
    link
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
        map_max_side: rsim_boards::field::ground::DEFAULT_MAP_MAX_SIDE,
        max_reports: rsim_boards::field::ground::DEFAULT_MAX_REPORTS,
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
    let missing = emulation::missing_tools(&[Board::M4]);
    if !missing.is_empty() {
        let msg = format!("emulated boards test {}", emulation::install_hint(&missing));
        assert!(!rsim_test_support::emulator::qemu_required(), "{msg}; required because CI/RSIM_REQUIRE_QEMU is set");
        eprintln!("\n*** SKIPPED: {msg}\n");
        return;
    }
    // The Cortex-M55 joins when its target is installed (always in CI: .ci/run adds it).
    let mut boards = vec![Board::M4];
    if rsim_test_support::emulator::has_target(Board::M55.target()) || rsim_test_support::emulator::qemu_required() {
        boards.push(Board::M55);
    } else {
        eprintln!("\n*** NOTE: rustup target {} missing: Cortex-M55 (mps3-an547) not checked\n", Board::M55.target());
    }
    let t0 = Instant::now();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("emulated_boards");
    let (name, model) = emulation::model();
    let frames = emulation::frames(1);
    emulation::stage(&dir, &model, &frames);

    let host = ground(&host_stream(&model, &frames), &dir, "host");
    let mut reports = Vec::new();
    for board in boards {
        let elf = emulation::build_firmware(board, &dir, 1, false);
        let uart = dir.join(format!("uart-{board:?}.bin"));
        let log = emulation::run_firmware(board, &elf, &uart, false);
        eprintln!("{}: {}", board.name(), log.lines().last().unwrap_or(""));
        let bytes = std::fs::read(&uart).expect("read UART capture");
        reports.push((board.name(), ground(&bytes, &dir, &format!("{board:?}"))));
    }
    let agent_exe = emulation::build_agent();
    let agent = ground(&emulation::run_agent(&agent_exe, &dir, &dir.join("agent.csv")), &dir, "aarch64");
    reports.push(("aarch64 agent under qemu-aarch64", agent));
    eprintln!("{name}: {} frames, builds and runs took {:?}", frames.len(), t0.elapsed());

    let tiles = frames.len() * ((FRAME / TILE) * (FRAME / TILE)) as usize;
    assert_eq!(host.telemetry.len(), tiles, "host: one telemetry frame per tile");
    assert_eq!(host.raw_outputs.len(), tiles, "host: one raw output per tile");
    // The host's own telemetry is consistent: top-1 and its q are the raw output's argmax and byte.
    for (t, (fid, idx, raw)) in host.telemetry.iter().zip(&host.raw_outputs) {
        assert_eq!((t.frame_id, t.tile_index), (*fid, *idx));
        let best = raw
            .iter()
            .enumerate()
            .max_by(|a, b| (*a.1 as i8).cmp(&(*b.1 as i8)).then(b.0.cmp(&a.0)))
            .map(|(i, _)| i as u16);
        assert_eq!(Some(t.top[0].class), best, "host top-1 vs raw output {raw:?}");
        assert_eq!(t.top[0].q, raw[t.top[0].class as usize] as i8);
    }
    for (board, rep) in &reports {
        assert_eq!(rep.bad_frames, 0, "{board}: corrupt frames on the link");
        assert!(rep.heartbeats >= 1, "{board}: no heartbeat");
        assert_eq!(rows(rep), rows(&host), "{board}: telemetry differs from the host runtime ({name})");
        assert_eq!(rep.raw_outputs, host.raw_outputs, "{board}: int8 outputs differ from the host runtime ({name})");
        let arena = host.telemetry[0].arena_hwm;
        assert!(
            rep.telemetry.iter().all(|t| t.arena_hwm == arena),
            "{board}: arena high-water mark differs from the host's {arena}"
        );
    }
    // Not every tile lands in one class: the comparison covers more than a constant answer.
    let mut classes: Vec<u16> = host.telemetry.iter().map(|t| t.top[0].class).collect();
    classes.sort_unstable();
    classes.dedup();
    assert!(classes.len() >= 2, "{name}: every tile classified as {classes:?}");
}
