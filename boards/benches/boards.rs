//! Boards benchmark (not a test): flash goodput over a simulated 115,200-baud link as a fraction of
//! line rate, and the onboard loop's frames/s with p50/p99 tile latency natively and under
//! emulation (Cortex-M4/M55 firmware under qemu-system-arm, the aarch64 agent under qemu-aarch64).
//! Run: `cargo bench -p rsim-boards --bench boards` (`-- --no-emulation` skips the QEMU part).

use rsim_boards::clock::StdClock;
use rsim_boards::demo::tiny_f32_model as model;
use rsim_boards::flash::emu::RamFlash;
use rsim_boards::flash::host::{Outcome, Sender, SenderConfig};
use rsim_boards::flash::{BoardLimits, Layout, SelfTest, Updater};
use rsim_boards::onboard::{EngineClassifier, FrameInfo, FrameSource, LoopConfig, OnboardLoop};
use rsim_boards::sim::{run_flash, Faults, Wire};
use rsim_boards::wire::{FrameReader, Msg};
use sha2::{Digest, Sha256};

#[path = "../tests/emulation/mod.rs"]
mod emulation;
mod loop_emulated;

/// Goodput is about the link protocol, so the device's check is not part of the timing.
struct Accept;
impl SelfTest for Accept {
    fn run(&mut self, _: &[u8], _: &[u8], _: &[u8]) -> Result<(), &'static str> {
        Ok(())
    }
}

fn goodput(image: &[u8], faults: Faults, label: &str) {
    let flash: RamFlash<4, 4096> = RamFlash::new(2 * 4096 + 2 * 256 * 1024);
    let layout = Layout::split(0, flash.mem().len() as u32, 4096).unwrap();
    let limits =
        BoardLimits { max_arena: 1 << 20, max_input_bytes: 1 << 20, require_test_vector: false, max_macs: None };
    let mut dev = Updater::new(flash, layout, limits, Accept).unwrap();
    let sha: [u8; 32] = Sha256::digest(image).into();
    let mut s = Sender::new(image, sha, SenderConfig { timeout_us: 200_000, ..SenderConfig::default() });
    let (mut a, mut b) = (Wire::new(115_200, faults, 1), Wire::new(115_200, faults, 2));
    let run = run_flash(&mut s, &mut dev, &mut a, &mut b, 3_600_000_000);
    assert!(matches!(run.outcome, Outcome::Done { .. }), "{run:?}");
    let secs = run.elapsed_us as f64 / 1e6;
    let line = 115_200.0 / 10.0; // bytes/s at 8N1
    let gp = image.len() as f64 / secs;
    println!(
        "flash {label:<22} {:>7} B in {secs:>7.2} s simulated: goodput {:>7.0} B/s = {:.1}% of the 11,520 B/s line rate ({} B on the wire, {} rewinds, {} of them early)",
        image.len(), gp, 100.0 * gp / line, a.counts.bytes, s.rewinds, s.early_rewinds
    );
}

struct Scene {
    frames: u32,
}
impl FrameSource for Scene {
    type Error = ();
    fn next_frame(&mut self, buf: &mut [u8]) -> Result<Option<FrameInfo>, ()> {
        if self.frames == 0 {
            return Ok(None);
        }
        self.frames -= 1;
        for (i, p) in buf.iter_mut().take(256 * 256 * 3).enumerate() {
            *p = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(self.frames) as u8;
        }
        Ok(Some(FrameInfo { width: 256, height: 256, channels: 3 }))
    }
}

fn loop_bench() {
    let m = model(0);
    let mut arena_buf = vec![0u8; 32 * 1024];
    let mut clf = EngineClassifier::new(&m, &mut arena_buf).expect("bench model must load");
    let mut tile = vec![0u8; 32 * 32 * 3];
    let cfg = LoopConfig {
        tile: 32,
        stride: 32,
        top_k: 3,
        deadline_us: 10_000_000,
        heartbeat_us: 1_000_000,
        smoothing: None,
        send_raw_output: false,
    };
    let mut lp = OnboardLoop::new(cfg, StdClock::default(), &mut tile, &mut []);
    let mut frame = vec![0u8; 256 * 256 * 3];
    let frames = 20;
    let mut src = Scene { frames };
    let mut link: Vec<u8> = Vec::new();
    let t0 = std::time::Instant::now();
    while lp.step(&mut src, &mut frame, &mut clf, &mut link).unwrap() {}
    let secs = t0.elapsed().as_secs_f64();
    let mut r: FrameReader = FrameReader::new();
    let mut lat: Vec<u32> = Vec::new();
    for &b in &link {
        if let Some(Ok(Msg::Telemetry(t))) = r.push(b) {
            lat.push(t.latency_us);
        }
    }
    lat.sort_unstable();
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize];
    println!(
        "loop native: {frames} frames of 256x256 RGB, 64 tiles of 32x32 each ({} tiles): {:.1} frames/s, {:.0} tiles/s, tile latency p50 {} us, p99 {} us (f32 conv+pool+fc+softmax model, {} B telemetry)",
        lat.len(), frames as f64 / secs, lat.len() as f64 / secs, p(0.5), p(0.99), link.len()
    );
}

fn main() {
    let img = model(60_000);
    goodput(&img, Faults::default(), "clean link");
    goodput(&img, Faults::uniform(0.001), "0.1% faults each");
    goodput(&img, Faults::uniform(0.01), "1% faults each");
    loop_bench();
    if !std::env::args().any(|a| a == "--no-emulation") {
        loop_emulated::run();
    }
}
