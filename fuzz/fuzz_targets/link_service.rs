//! Arbitrary bytes on a board's link: the frame decoder and the device side of the flash protocol
//! (`LinkService` → `Updater`: begin, chunks, commit with verification, confirm, abort) on an
//! emulated NOR flash. Every input must return, never panic; the board must still boot whatever it
//! had (or nothing) afterwards, never a half-written image.
//!
//! The input is cut into link reads at 0xA5 bytes so frame boundaries fall anywhere.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rsim_boards::flash::emu::RamFlash;
use rsim_boards::flash::{BoardLimits, Layout, LinkService, Updater};
use rsim_boards::onboard::OwnedSelfTest;

const FLASH: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let layout = Layout::split(0, FLASH as u32, 4096).expect("layout");
    let limits = BoardLimits { confirm_after: Some(2), ..BoardLimits::new(1 << 16, 1 << 16, false) };
    let Ok(updater) = Updater::new(RamFlash::<4, 4096>::new(FLASH), layout, limits, OwnedSelfTest(vec![0; 1 << 16]))
    else {
        return;
    };
    let mut svc = LinkService::new(updater);
    let mut replies: Vec<u8> = Vec::new();
    for read in data.split(|&b| b == 0xA5) {
        let _ = svc.receive(read, &mut replies);
        let _ = svc.updater.inference_ok();
    }
    // Whatever arrived, the record names either nothing or an image that boots (verified) or is
    // rolled back; boot must return, not panic.
    let _ = svc.active();
    let _ = svc.updater.boot();
});
