//! Seeded fault tests of flashing: a lossy link, power cuts at random storage bytes, bit flips at
//! rest. Invariant everywhere: the board boots either the new verified image or the old one.

mod common;
use common::*;
use rsim_boards::flash::host::{Outcome, Sender, SenderConfig};
use rsim_boards::sim::{run_flash, FaultCounts, Faults, Rng, Wire};

const BAUD: u32 = 115_200;

fn cfg() -> SenderConfig {
    SenderConfig { chunk: 256, window: 512, timeout_us: 50_000, max_retries: 60 }
}

/// Flashes `image` over a clean link; panics unless it is activated.
fn install(dev: &mut Dev, image: &[u8]) {
    let mut s = Sender::new(image, sha(image), cfg());
    let (mut a, mut b) = (Wire::new(BAUD, Faults::default(), 1), Wire::new(BAUD, Faults::default(), 2));
    let run = run_flash(&mut s, dev, &mut a, &mut b, 60_000_000);
    assert!(matches!(run.outcome, Outcome::Done { .. }), "clean install failed: {run:?}");
}

#[test]
fn lossy_link_always_ends_new_active_or_old_active() {
    let old = echo_model(4, 64, 6_000, 1, true);
    let new = echo_model(4, 64, 9_000, 2, true);
    let (runs, mut done, mut kept, mut unconfirmed) = (60u64, 0u64, 0u64, 0u64);
    let mut faults = FaultCounts::default();
    for seed in 0..runs {
        let mut dev = device();
        install(&mut dev, &old);
        let mut rng = Rng::new(seed);
        // 1% to 2% of bytes dropped, corrupted, duplicated and delayed, in each direction.
        let p = 0.01 + rng.below(100) as f64 / 10_000.0;
        let (mut h2d, mut d2h) =
            (Wire::new(BAUD, Faults::uniform(p), seed * 2 + 11), Wire::new(BAUD, Faults::uniform(p), seed * 2 + 12));
        let mut s = Sender::new(&new, sha(&new), cfg());
        let run = run_flash(&mut s, &mut dev, &mut h2d, &mut d2h, 120_000_000);
        faults.add(&h2d.counts);
        faults.add(&d2h.counts);
        // Reboot: a fresh device over the same storage.
        let mut dev = device_on(dev.into_flash());
        let booted = booted_image(&mut dev).expect("a model must always boot");
        match run.outcome {
            Outcome::Done { .. } => {
                assert_eq!(booted, new, "seed {seed}: done but new image not active");
                done += 1;
            }
            // The commit went out but its answer was lost: either image may be active, never another.
            Outcome::Unconfirmed { .. } => {
                assert!(booted == new || booted == old, "seed {seed}: unconfirmed commit left neither image active");
                unconfirmed += 1;
            }
            other => {
                assert_eq!(booted, old, "seed {seed}: {other:?} but old image not active");
                kept += 1;
            }
        }
    }
    println!(
        "lossy link: {runs} runs, {done} new active, {kept} old kept, {unconfirmed} unconfirmed commits; {} bytes sent, faults injected: {} dropped, {} corrupted, {} duplicated, {} delayed ({} total)",
        faults.bytes, faults.dropped, faults.corrupted, faults.duplicated, faults.delayed, faults.total()
    );
    assert!(faults.dropped * 100 >= faults.bytes && faults.delayed * 100 >= faults.bytes, "fault rate below 1%");
    // With go-back-N and retries the protocol should get through nearly every time at these rates.
    assert!(done * 10 >= runs * 9, "only {done}/{runs} transfers completed");
}

#[test]
fn power_cut_at_random_storage_byte_keeps_old_model_booting() {
    let old = echo_model(4, 64, 5_000, 3, true);
    let new = echo_model(4, 64, 7_000, 4, true);
    // Storage bytes a complete update of `new` touches (erases + writes + record).
    let mut probe = device();
    install(&mut probe, &old);
    let before = probe.flash().bytes_touched;
    install(&mut probe, &new);
    let total = probe.flash().bytes_touched - before;
    let runs = 300u64;
    let (mut new_active, mut old_active) = (0, 0);
    let mut rng = Rng::new(99);
    for i in 0..runs {
        let mut dev = device();
        install(&mut dev, &old);
        // Cut points cover the whole update, with extra weight on the boot-record write at the end.
        let cut = if i % 3 == 0 { total - 1 - rng.below(200.min(total)) } else { rng.below(total) };
        dev.flash_mut().cut_power_after(cut);
        let mut s = Sender::new(&new, sha(&new), cfg());
        let (mut a, mut b) = (Wire::new(BAUD, Faults::default(), 5), Wire::new(BAUD, Faults::default(), 6));
        let run = run_flash(&mut s, &mut dev, &mut a, &mut b, 60_000_000);
        assert!(!matches!(run.outcome, Outcome::Done { .. }), "cut at {cut}/{total}: the update cannot complete");
        let mut flash = dev.into_flash();
        assert!(flash.is_dead(), "the cut at {cut} must have happened");
        flash.revive();
        let mut dev = device_on(flash);
        let booted = booted_image(&mut dev).expect("power cut left no bootable model");
        if booted == new {
            new_active += 1; // only possible if the record landed whole; it never does before the cut
        } else {
            assert_eq!(booted, old, "cut at {cut}: booted neither image");
            old_active += 1;
        }
        // Clean state: the same update now goes through.
        install(&mut dev, &new);
        assert_eq!(booted_image(&mut dev).unwrap(), new);
    }
    println!("power cuts: {runs} runs over {total} storage bytes per update; old booted {old_active}, new booted {new_active}");
    assert_eq!(new_active, 0);
}

#[test]
fn flipped_bit_in_active_image_is_detected_at_boot_and_rolled_back() {
    let old = echo_model(4, 64, 3_000, 5, true);
    let new = echo_model(4, 64, 4_000, 6, true);
    let runs = 100;
    let mut rng = Rng::new(7);
    for _ in 0..runs {
        let mut dev = device();
        install(&mut dev, &old);
        install(&mut dev, &new);
        let b = dev.boot().unwrap();
        assert!(!b.rolled_back);
        let at = b.offset as usize + rng.below(new.len() as u64) as usize;
        dev.flash_mut().mem_mut()[at] ^= 1 << rng.below(8);
        let mut dev = device_on(dev.into_flash());
        let r = dev.boot().unwrap();
        assert!(r.rolled_back && r.slot != b.slot && r.seq == b.seq + 1, "{r:?}");
        assert_eq!(booted_image(&mut dev).unwrap(), old);
        // The rollback is persisted: the next boot takes the old image without a rollback.
        let again = device_on(dev.into_flash()).boot().unwrap();
        assert!(!again.rolled_back && again.slot == r.slot);
    }
    println!("bit flips: {runs} runs, every flip detected and rolled back");
}

#[test]
fn both_slots_corrupt_is_a_clear_error() {
    let mut dev = device();
    install(&mut dev, &echo_model(4, 64, 100, 1, true));
    install(&mut dev, &echo_model(4, 64, 200, 2, true));
    let l = *dev.layout();
    dev.flash_mut().mem_mut()[l.slot(0) as usize + 40] ^= 4;
    dev.flash_mut().mem_mut()[l.slot(1) as usize + 40] ^= 4;
    let e = dev.boot().unwrap_err();
    assert!(e.to_string().contains("no slot holds a valid model"), "{e}");
    assert!(e.to_string().contains("SHA-256"), "{e}");
}

#[test]
fn power_cut_during_rollback_still_rolls_back_next_boot() {
    let old = echo_model(4, 64, 2_000, 7, true);
    let new = echo_model(4, 64, 2_500, 8, true);
    let mut rng = Rng::new(3);
    for _ in 0..50 {
        let mut dev = device();
        install(&mut dev, &old);
        install(&mut dev, &new);
        let b = dev.boot().unwrap();
        dev.flash_mut().mem_mut()[b.offset as usize + 100] ^= 0x20;
        // The rollback erases and writes one record page (1 KiB + 92 bytes); cut somewhere in it.
        let cut = rng.below(1024 + 92);
        dev.flash_mut().cut_power_after(cut);
        assert!(dev.boot().is_err(), "boot cannot finish with the power cut at {cut}");
        let mut flash = dev.into_flash();
        flash.revive();
        let mut dev = device_on(flash);
        let r = dev.boot().unwrap();
        assert!(r.rolled_back && r.slot != b.slot, "cut at {cut}: {r:?}");
        assert_eq!(booted_image(&mut dev).unwrap(), old);
    }
}
