//! The onboard loop on a real int8 model (ResNet-8 on EuroSAT tiles, as the acceptance test) natively
//! and under emulation. Emulated latencies are QEMU's virtual time: without `-icount` it follows the
//! host clock (TCG translation speed, not the board's); with `-icount shift=0` one instruction takes
//! one virtual nanosecond, so the telemetry latency field counts executed instructions (not cycles:
//! QEMU is not cycle-accurate; real M4/M55 cycle counts differ by pipeline and memory stalls).

use crate::emulation::{self, Board, DEADLINE_MS, FRAME, TILE, TOP_K};
use rsim_boards::clock::StdClock;
use rsim_boards::onboard::{EngineClassifier, FrameInfo, FrameSource, LoopConfig, OnboardLoop};
use rsim_boards::wire::{FrameReader, Msg};
use std::path::PathBuf;
use std::time::Instant;

struct Frames<'a>(std::slice::Iter<'a, Vec<u8>>);
impl FrameSource for Frames<'_> {
    type Error = ();
    fn next_frame(&mut self, buf: &mut [u8]) -> Result<Option<FrameInfo>, ()> {
        let Some(f) = self.0.next() else { return Ok(None) };
        buf.get_mut(..f.len()).ok_or(())?.copy_from_slice(f);
        Ok(Some(FrameInfo { width: FRAME, height: FRAME, channels: 3 }))
    }
}

/// Tile latencies (µs) from a telemetry byte stream.
fn latencies(bytes: &[u8]) -> Vec<u32> {
    let mut r: FrameReader = FrameReader::new();
    let mut lat: Vec<u32> = bytes
        .iter()
        .filter_map(|&b| match r.push(b) {
            Some(Ok(Msg::Telemetry(t))) => Some(t.latency_us),
            _ => None,
        })
        .collect();
    lat.sort_unstable();
    lat
}

fn pct(lat: &[u32], q: f64) -> u32 {
    lat.get(((lat.len().saturating_sub(1)) as f64 * q).round() as usize).copied().unwrap_or(0)
}

fn report(label: &str, frames: usize, secs: f64, lat: &[u32], unit: &str) {
    println!(
        "loop {label:<44} {frames} frames ({} tiles of {TILE}x{TILE}): {:>7.2} frames/s wall, tile latency p50 {} {unit}, p99 {} {unit}",
        lat.len(), frames as f64 / secs, pct(lat, 0.5), pct(lat, 0.99)
    );
}

fn native(model: &[u8], frames: &[Vec<u8>]) {
    let mut arena = vec![0u8; rsim_edge::required_arena(model).expect("model arena") + 16];
    let mut clf = EngineClassifier::new(model, &mut arena).expect("bench model must load");
    let mut tile = vec![0u8; (TILE * TILE * 3) as usize];
    let cfg = LoopConfig {
        tile: TILE,
        stride: TILE,
        top_k: TOP_K,
        deadline_us: DEADLINE_MS * 1000,
        heartbeat_us: 1_000_000,
        smoothing: None,
        send_raw_output: true,
    };
    let mut lp = OnboardLoop::new(cfg, StdClock::default(), &mut tile, &mut []);
    let mut frame = vec![0u8; (FRAME * FRAME * 3) as usize];
    let mut src = Frames(frames.iter());
    let mut link = Vec::new();
    let t0 = Instant::now();
    while lp.step(&mut src, &mut frame, &mut clf, &mut link).expect("native loop") {}
    report("native x86_64", frames.len(), t0.elapsed().as_secs_f64(), &latencies(&link), "us");
}

pub fn run() {
    let missing = emulation::missing_tools(&[Board::M4, Board::M55]);
    let (name, model) = emulation::model();
    // One tile per class: 10 frames of 12 KiB fit beside the model in the AN547's 512 KiB ITCM.
    let frames = emulation::frames(1);
    println!("loop benchmark: {name} on {} EuroSAT frames of {FRAME}x{FRAME}", frames.len());
    native(&model, &frames);
    if !missing.is_empty() {
        println!("loop under emulation: skipped, {}", emulation::install_hint(&missing));
        return;
    }
    let dir = emulation::workspace().join("target/tmp/bench-loop");
    emulation::stage(&dir, &model, &frames);
    for board in [Board::M4, Board::M55] {
        let elf = emulation::build_firmware(board, &dir, 1, false);
        let uart: PathBuf = dir.join(format!("uart-{board:?}.bin"));
        for icount in [false, true] {
            let t0 = Instant::now();
            let log = emulation::run_firmware(board, &elf, &uart, icount);
            let secs = t0.elapsed().as_secs_f64();
            let lat = latencies(&std::fs::read(&uart).expect("read UART capture"));
            let done = log.lines().find(|l| l.starts_with("RSIM_DONE")).unwrap_or("");
            if icount {
                report(&format!("{} (qemu -icount)", board.name()), frames.len(), secs, &lat, "k-instructions");
            } else {
                report(&format!("{} (qemu)", board.name()), frames.len(), secs, &lat, "us");
            }
            println!("     firmware: {done}");
        }
    }
    let exe = emulation::build_agent();
    let t0 = Instant::now();
    let bytes = emulation::run_agent(&exe, &dir, &dir.join("agent.csv"));
    report(
        "aarch64 agent (qemu-aarch64 user mode)",
        frames.len(),
        t0.elapsed().as_secs_f64(),
        &latencies(&bytes),
        "us",
    );
}
