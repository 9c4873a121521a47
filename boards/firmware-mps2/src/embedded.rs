//! The embedded-model firmware: model and frames built in (see build.rs), one pass (or
//! `RSIM_FW_REPEAT`) over the frames, then `RSIM_DONE` and exit.

use crate::{board, clock, frames, msg, report_hex, uart, Aligned, Msg};
use core::fmt::Write;
use cortex_m_semihosting::hio;
use embedded_io::Write as _;
use rsim_boards::clock::Clock;
use rsim_boards::onboard::{EngineClassifier, FrameInfo, LoopConfig, OnboardLoop};

include!(concat!(env!("OUT_DIR"), "/model_consts.rs"));

static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/model.rsm")));
static FRAMES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/frames.bin"));

pub fn run() -> Result<(), Msg> {
    let cp = cortex_m::Peripherals::take().ok_or_else(|| msg(format_args!("core peripherals already taken")))?;
    let clock = clock::SysTickClock::start(cp.SYST, board::CORE_HZ);
    // SAFETY: UART0 is this board's CMSDK UART and only this function drives it.
    let mut uart = unsafe { uart::Uart::new(board::UART0, 16) };
    let mut stdout = hio::hstdout().ok();

    // Arena, frame and tile buffers live on main's stack frame, which never returns: no heap, no `static mut`.
    let mut arena = Aligned([0u8; ARENA_SIZE]);
    let mut frame = [0u8; FRAME_LEN];
    let mut tile = [0u8; TILE_BUF];
    let inner = EngineClassifier::new(&MODEL.0, &mut arena.0).map_err(|e| msg(format_args!("model refused: {e}")))?;
    let mut clf = frames::Firmware {
        inner,
        raw: RAW_TENSORS,
        report: |bytes: &[u8]| {
            if let (true, Some(out)) = (HEX_LINES, stdout.as_mut()) {
                let _ = report_hex(out, bytes);
            }
        },
    };
    let cfg = LoopConfig {
        tile: TILE,
        stride: STRIDE,
        top_k: TOP_K,
        deadline_us: DEADLINE_US,
        heartbeat_us: 1_000_000,
        smoothing: None,
        send_raw_output: true,
    };
    let info = FrameInfo { width: FRAME_W, height: FRAME_H, channels: FRAME_C };
    let mut source = frames::Embedded::new(FRAMES, info, FRAME_LEN, REPEAT);
    let mut lp = OnboardLoop::new(cfg, &clock, &mut tile, &mut []);
    let (t0, c0) = (clock.now_us(), clock.ticks());
    while lp.step(&mut source, &mut frame, &mut clf, &mut uart).map_err(|e| msg(format_args!("loop stopped: {e}")))? {}
    let (us, cycles) = (clock.now_us() - t0, clock.ticks() - c0);
    lp.send_heartbeat(&mut uart);
    let _ = uart.flush();
    let s = lp.stats;
    drop(clf);
    if let Some(out) = stdout.as_mut() {
        let _ = writeln!(
            out,
            "RSIM_DONE frames={} tiles={} late={} dropped={} tx_errors={} classify_errors={} us={us} cycles={cycles}",
            s.frames, s.tiles, s.frames_late, s.tiles_dropped, s.tx_errors, s.classify_errors
        );
    }
    if s.classify_errors > 0 {
        return Err(msg(format_args!("{} tiles failed to classify", s.classify_errors)));
    }
    Ok(())
}
