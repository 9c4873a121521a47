//! The receiver firmware: a board that is flashed over its UART, not rebuilt for each model.
//!
//! At reset it opens its flash (`semiflash`: a RAM mirror written through to `rsim-flash.bin` on the
//! host), runs boot verification (`rsim_boards::flash::boot`: hash, decode, limits, self-test;
//! revert of an unconfirmed trial image; rollback of one that no longer verifies) and runs the
//! active model on frames read from `rsim-frames.bin` on the host, round after round. Between
//! frames it serves the A/B flash protocol on UART0 (`rsim_boards::flash::LinkService`): while a
//! transfer is in progress it only serves the link; a commit that activates a new model makes the
//! loop load it before the next frame. A new model runs on trial and is confirmed after
//! [`CONFIRM_AFTER`] successful inferences (or `rsim confirm`); a reset before that reverts it.
//! Every verification runs under the hardware watchdog (`watchdog.rs`): one that overruns its budget
//! ([`VERIFY_BUDGET_MS`], or `verify_budget_ms=<n>` in the host file `rsim-board.txt`, the board's
//! configuration) resets the board.
//! Built with `RSIM_FW_KEYS` (public key files, see build.rs) it runs only models signed by one of
//! those keys, at or above its security counter.
//!
//! `rsim-frames.bin`: `RSFR`, then width, height and channels as little-endian u32, then u8 HWC
//! frames back to back. Without it the board serves the link and sends heartbeats only.
//!
//! Semihosting lines (the test and a developer at the console read them):
//! ```text
//! RSIM_BOOT none | slot=<A|B> seq=<n> trial=<0|1> reverted=<0|1> rolled_back=<0|1> | error=<why>
//! RSIM_MODEL slot=<A|B> seq=<n> trial=<0|1> sha256=<first 8 bytes hex> input=<w>x<h>x<c>
//! RSIM_ACTIVATED slot=<A|B> seq=<n>
//! RSIM_CONFIRMED slot=<A|B> seq=<n>
//! RSIM_WARN <message>
//! ```

use crate::semiflash::{HostFile, SemiFlash, ERASE_SIZE};
use crate::watchdog::Watched;
use crate::{board, clock, msg, uart, Msg};
use core::fmt::Write;
use cortex_m_semihosting::{hio, nr};
use rsim_boards::clock::Clock;
use rsim_boards::flash::sign::{self, TrustPolicy};
use rsim_boards::flash::{ActiveImage, BoardLimits, FlashError, Layout, LinkService, Updater};
use rsim_boards::onboard::{EngineClassifier, EngineSelfTest, FrameInfo, FrameSource, LoopConfig, OnboardLoop};

const FLASH_FILE: &str = "rsim-flash.bin\0";
const FRAMES_FILE: &str = "rsim-frames.bin\0";
const CONFIG_FILE: &str = "rsim-board.txt\0";

const MIB: usize = 1 << 20;
/// The board's model flash: two boot-record pages and two slots of (1 MiB - 8 KiB) / 2.
const FLASH_LEN: usize = MIB;
/// Arena of the running model and, apart, of the self-test that verifies an incoming one while
/// the old model keeps running.
const ARENA_LEN: usize = MIB;
/// Largest camera frame and tile.
const FRAME_MAX: usize = 768 * 1024;
const TILE_MAX: usize = 256 * 1024;

// Where they live: RAM outside the linker's regions (memory-*.x), 4 MiB from `board::BULK`.
const FLASH_AT: usize = board::BULK;
const RUN_ARENA_AT: usize = board::BULK + MIB;
const TEST_ARENA_AT: usize = board::BULK + 2 * MIB;
const FRAME_AT: usize = board::BULK + 3 * MIB;
const TILE_AT: usize = FRAME_AT + FRAME_MAX;
const _: () = assert!(TILE_AT + TILE_MAX <= board::BULK + board::BULK_LEN);

/// Successful onboard inferences that confirm a model on trial.
const CONFIRM_AFTER: u32 = 8;
/// A transfer with no byte for this long is taken as stalled: classification resumes.
const STALL_US: u64 = 200_000;

include!(concat!(env!("OUT_DIR"), "/keys.rs"));

/// Watchdog budget of one image verification (emulated boards on a loaded machine are slow; a real
/// board sets what its largest model needs).
const VERIFY_BUDGET_MS: u32 = 30_000;

const LIMITS: BoardLimits = BoardLimits {
    confirm_after: Some(CONFIRM_AFTER),
    verify_budget_ms: VERIFY_BUDGET_MS,
    trust: TrustPolicy { keys: KEYS, allow_downgrade: false },
    ..BoardLimits::new(ARENA_LEN as u32, TILE_MAX as u32, false)
};

type Service = LinkService<SemiFlash, Watched>;

/// Takes `len` bytes of RAM at `at` for one purpose.
///
/// # Safety
/// `[at, at + len)` must be RAM that no other reference covers; `run` calls this once per region.
unsafe fn region(at: usize, len: usize) -> &'static mut [u8] {
    // SAFETY: the caller guarantees exclusive use of the region, which the board maps as RAM.
    unsafe { core::slice::from_raw_parts_mut(at as *mut u8, len) }
}

pub fn run() -> Result<(), Msg> {
    let cp = cortex_m::Peripherals::take().ok_or_else(|| msg(format_args!("core peripherals already taken")))?;
    let clock = clock::SysTickClock::start(cp.SYST, board::CORE_HZ);
    // SAFETY: UART0 is this board's CMSDK UART and only this function drives it.
    let mut uart = unsafe { uart::Uart::new(board::UART0, 16) };
    let mut con = Console(hio::hstdout().ok());

    // SAFETY: the five regions are disjoint (see the constants), outside the linker's memory and
    // taken once; the flash mirror is only read through the active image (`image_bytes`).
    let (flash, test_arena, run_arena, frame_buf, tile_buf) = unsafe {
        let flash = SemiFlash::open(FLASH_AT, FLASH_LEN, FLASH_FILE).map_err(|e| msg(format_args!("flash: {e}")))?;
        (
            flash,
            region(TEST_ARENA_AT, ARENA_LEN),
            region(RUN_ARENA_AT, ARENA_LEN),
            region(FRAME_AT, FRAME_MAX),
            region(TILE_AT, TILE_MAX),
        )
    };
    let layout = Layout::split(0, FLASH_LEN as u32, ERASE_SIZE as u32).map_err(|e| msg(format_args!("{e}")))?;
    let limits = BoardLimits { verify_budget_ms: configured_budget().unwrap_or(VERIFY_BUDGET_MS), ..LIMITS };
    let updater = Updater::new(flash, layout, limits, Watched(EngineSelfTest { arena: test_arena }))
        .map_err(|e| msg(format_args!("{e}")))?;
    let mut link = LinkService::new(updater);

    match link.updater.boot() {
        Ok(b) => con.line(format_args!(
            "RSIM_BOOT slot={} seq={} trial={} reverted={} rolled_back={}",
            slot_name(b.slot),
            b.seq,
            b.trial as u8,
            b.reverted as u8,
            b.rolled_back as u8
        )),
        Err(FlashError::NoRecord) => con.line(format_args!("RSIM_BOOT none")),
        Err(e) => con.line(format_args!("RSIM_BOOT error={e}")),
    }
    let mut frames = HostFrames::open();
    loop {
        let image = link.active().map_err(|e| msg(format_args!("reading the boot record: {e}")))?;
        let Some(image) = image else {
            wait_for_model(&mut link, &mut uart, &clock, &mut con)?;
            continue;
        };
        // SAFETY: the active image lies in the flash mirror; the updater writes only the other slot
        // and the boot records, and this model is dropped before a new one is loaded.
        let bytes = unsafe { image_bytes(&image) };
        let model = match sign::split(bytes) {
            Ok(img) => img.rsm(),
            Err(e) => {
                con.line(format_args!("RSIM_WARN active image does not split: {e}"));
                wait_for_model(&mut link, &mut uart, &clock, &mut con)?;
                continue;
            }
        };
        let clf = match EngineClassifier::new(model, &mut *run_arena) {
            Ok(c) => c,
            Err(e) => {
                con.line(format_args!("RSIM_WARN active model refused by the runtime: {e}"));
                wait_for_model(&mut link, &mut uart, &clock, &mut con)?;
                continue;
            }
        };
        let spec = clf.engine.model().info.input_spec;
        let s = &image.sha256;
        con.line(format_args!(
            "RSIM_MODEL slot={} seq={} trial={} sha256={:02x}{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}{:02x} input={}x{}x{}",
            slot_name(image.slot),
            image.seq,
            image.trial as u8,
            s[0],
            s[1],
            s[2],
            s[3],
            s[4],
            s[5],
            s[6],
            s[7],
            spec.width,
            spec.height,
            spec.channels
        ));
        classify_until_activation(
            &mut link,
            &mut uart,
            &clock,
            &mut con,
            clf,
            image,
            &mut frames,
            frame_buf,
            tile_buf,
        )?;
    }
}

/// `verify_budget_ms=<n>` from the board's configuration file on the host, if it has one.
fn configured_budget() -> Option<u32> {
    let mut f = HostFile::open(CONFIG_FILE, nr::open::R_BINARY)?;
    let mut buf = [0u8; 64];
    let n = f.len()?.min(buf.len());
    if !f.read_exact(&mut buf[..n]) {
        return None;
    }
    let text = core::str::from_utf8(&buf[..n]).ok()?;
    text.lines().find_map(|l| l.trim().strip_prefix("verify_budget_ms=")?.parse().ok())
}

/// The bytes of the active image in the flash mirror.
///
/// # Safety
/// Nothing may write `[offset, offset + len)` of the flash while the slice is alive.
unsafe fn image_bytes(image: &ActiveImage) -> &'static [u8] {
    let len = (image.len as usize).min(FLASH_LEN.saturating_sub(image.offset as usize));
    // SAFETY: inside the flash mirror (clamped above); the caller keeps writers away.
    unsafe { core::slice::from_raw_parts((FLASH_AT + image.offset as usize) as *const u8, len) }
}

fn slot_name(slot: u8) -> char {
    if slot == 0 {
        'A'
    } else {
        'B'
    }
}

/// No runnable model: serve the link (and send heartbeats) until a commit activates one.
fn wait_for_model(link: &mut Service, uart: &mut uart::Uart, clock: &impl Clock, con: &mut Console) -> Result<(), Msg> {
    let mut lp = OnboardLoop::new(loop_config(0), clock, &mut [], &mut []);
    loop {
        let polled = link.poll(uart, 4096).map_err(|e| match e {})?;
        if let Some(a) = polled.activated {
            con.line(format_args!("RSIM_ACTIVATED slot={} seq={}", slot_name(a.slot), a.seq));
            return Ok(());
        }
        lp.rx_bad_frames = link.bad_frames();
        lp.heartbeat_if_due(uart);
    }
}

fn loop_config(tile: u32) -> LoopConfig {
    LoopConfig {
        tile,
        stride: tile,
        top_k: 5,
        // Emulated tiles are slow and the host machine may be loaded: nothing counts as late.
        deadline_us: 600_000_000,
        heartbeat_us: 1_000_000,
        smoothing: None,
        send_raw_output: true,
    }
}

/// Runs `clf` over the frames, serving the link between frames, until a commit activates a new
/// model (then returns so the caller loads it).
#[allow(clippy::too_many_arguments)]
fn classify_until_activation(
    link: &mut Service,
    uart: &mut uart::Uart,
    clock: &impl Clock,
    con: &mut Console,
    mut clf: EngineClassifier<'_, '_>,
    image: ActiveImage,
    frames: &mut HostFrames,
    frame_buf: &mut [u8],
    tile_buf: &mut [u8],
) -> Result<(), Msg> {
    let tile = clf.engine.model().info.input_spec.width;
    frames.rewind();
    let mut lp = OnboardLoop::new(loop_config(tile), clock, tile_buf, &mut []);
    lp.model_seq = image.seq;
    lp.active_slot = image.slot;
    let mut warned = false;
    loop {
        // The link first; during a transfer, only the link (until it stalls).
        let mut last_rx = clock.now_us();
        loop {
            let polled = link.poll(uart, 4096).map_err(|e| match e {})?;
            if let Some(a) = polled.activated {
                con.line(format_args!("RSIM_ACTIVATED slot={} seq={}", slot_name(a.slot), a.seq));
                return Ok(());
            }
            let now = clock.now_us();
            if polled.bytes > 0 {
                last_rx = now;
            }
            if !link.updater.busy() || now.saturating_sub(last_rx) > STALL_US {
                break;
            }
            lp.heartbeat_if_due(uart);
        }
        lp.rx_bad_frames = link.bad_frames();
        let before = lp.stats;
        match lp.step(frames, frame_buf, &mut clf, uart) {
            Ok(true) => {}
            Ok(false) => lp.heartbeat_if_due(uart),
            Err(e) if !warned => {
                warned = true;
                con.line(format_args!("RSIM_WARN frame skipped: {e}"));
            }
            Err(_) => {}
        }
        let ok = lp
            .stats
            .tiles
            .wrapping_sub(before.tiles)
            .saturating_sub(lp.stats.classify_errors.wrapping_sub(before.classify_errors));
        for _ in 0..ok {
            match link.updater.inference_ok() {
                Ok(Some((slot, seq))) => {
                    lp.model_seq = seq;
                    con.line(format_args!("RSIM_CONFIRMED slot={} seq={seq}", slot_name(slot)));
                }
                Ok(None) => {}
                Err(e) => con.line(format_args!("RSIM_WARN confirm failed: {e}")),
            }
        }
    }
}

/// Frames from `rsim-frames.bin` on the host, round after round.
struct HostFrames {
    file: Option<HostFile>,
    info: FrameInfo,
    count: usize,
    next: usize,
}

const FRAMES_HEADER: usize = 16;

impl HostFrames {
    fn open() -> HostFrames {
        let none = HostFrames { file: None, info: FrameInfo { width: 0, height: 0, channels: 0 }, count: 0, next: 0 };
        let Some(mut f) = HostFile::open(FRAMES_FILE, nr::open::R_BINARY) else { return none };
        let mut h = [0u8; FRAMES_HEADER];
        if !f.read_exact(&mut h) || &h[..4] != b"RSFR" {
            return none;
        }
        let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let info = FrameInfo { width: word(4), height: word(8), channels: word(12) };
        let frame = (info.width as usize).saturating_mul(info.height as usize).saturating_mul(info.channels as usize);
        let count = match f.len() {
            Some(n) if frame > 0 && frame <= FRAME_MAX => n.saturating_sub(FRAMES_HEADER) / frame,
            _ => 0,
        };
        HostFrames { file: Some(f), info, count, next: 0 }
    }
    /// Back to the first frame: each model's frame ids count the frames from the file's start.
    fn rewind(&mut self) {
        self.next = 0;
    }
    fn frame_len(&self) -> usize {
        (self.info.width * self.info.height * self.info.channels) as usize
    }
}

/// The host frame file could not be read.
#[derive(Debug)]
pub struct FrameReadFailed;

impl FrameSource for HostFrames {
    type Error = FrameReadFailed;
    fn next_frame(&mut self, buf: &mut [u8]) -> Result<Option<FrameInfo>, FrameReadFailed> {
        let len = self.frame_len();
        let (Some(f), true) = (self.file.as_mut(), self.count > 0) else { return Ok(None) };
        let dst = buf.get_mut(..len).ok_or(FrameReadFailed)?;
        if !f.seek(FRAMES_HEADER + self.next * len) || !f.read_exact(dst) {
            return Err(FrameReadFailed);
        }
        self.next = (self.next + 1) % self.count;
        Ok(Some(self.info))
    }
}

/// Semihosting console lines (dropped when the host has no console).
struct Console(Option<hio::HostStream>);

impl Console {
    fn line(&mut self, args: core::fmt::Arguments<'_>) {
        if let Some(out) = self.0.as_mut() {
            let _ = out.write_fmt(args);
            let _ = out.write_str("\n");
        }
    }
}
