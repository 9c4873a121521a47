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

/// Trial boot and signed images under power cuts: a cut anywhere in a trial commit, in the
/// confirm's record write, or in the boot-time revert leaves the old or the new model bootable,
/// never none; an unconfirmed image never survives a reset.
#[test]
fn power_cut_in_trial_commit_confirm_and_revert_leaves_old_or_new() {
    use rsim_boards::field::trust::sign_image;
    use rsim_boards::flash::sign::TrustPolicy;
    use rsim_boards::flash::BoardLimits;
    let seed = [3u8; 32];
    let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    let keys: &'static [[u8; 32]] = Box::leak(Box::new([public]));
    let l = BoardLimits { trust: TrustPolicy { keys, allow_downgrade: false }, confirm_after: Some(2), ..LIMITS };
    let old = sign_image(&echo_model(4, 64, 4_000, 11, true), &seed, 1, 0).unwrap();
    let new = sign_image(&echo_model(4, 64, 6_000, 12, true), &seed, 2, 0).unwrap();
    let confirmed_old = || {
        let mut dev = device_with(blank_flash(), l);
        install(&mut dev, &old);
        dev.inference_ok().unwrap();
        assert!(dev.inference_ok().unwrap().is_some(), "old model confirmed");
        dev
    };
    let on_trial = || {
        let mut dev = confirmed_old();
        install(&mut dev, &new);
        dev
    };
    let mut rng = Rng::new(2024);
    let mut tally = [(0u32, 0u32); 3]; // (old booted, new booted) per phase
                                       // Storage bytes of each phase, measured on an uncut run.
    let mut probe = confirmed_old();
    let t0 = probe.flash().bytes_touched;
    install(&mut probe, &new);
    let commit_bytes = probe.flash().bytes_touched - t0;
    let t1 = probe.flash().bytes_touched;
    probe.confirm().unwrap().unwrap();
    let confirm_bytes = probe.flash().bytes_touched - t1;
    let mut probe = device_with(on_trial().into_flash(), l);
    let t2 = probe.flash().bytes_touched;
    assert!(probe.boot().unwrap().reverted);
    let revert_bytes = probe.flash().bytes_touched - t2;
    let runs = 80u64;
    for i in 0..runs {
        // Phase 0: the trial commit (transfer, verification, record write).
        let mut dev = confirmed_old();
        let cut = if i % 3 == 0 { commit_bytes - 1 - rng.below(200) } else { rng.below(commit_bytes) };
        dev.flash_mut().cut_power_after(cut);
        let mut s = Sender::new(&new, sha(&new), cfg());
        let (mut a, mut b) = (Wire::new(BAUD, Faults::default(), 5), Wire::new(BAUD, Faults::default(), 6));
        run_flash(&mut s, &mut dev, &mut a, &mut b, 60_000_000);
        let mut fl = dev.into_flash();
        fl.revive();
        let booted = booted_image(&mut device_with(fl, l)).expect("cut in a trial commit left no model");
        assert!(booted == old, "cut {cut}/{commit_bytes}: a reset before confirmation must leave the old model");
        tally[0].0 += 1;

        // Phase 1: the confirm's record write.
        let mut dev = on_trial();
        let cut = rng.below(confirm_bytes);
        dev.flash_mut().cut_power_after(cut);
        assert!(dev.confirm().is_err(), "confirm cannot finish with the power cut at {cut}");
        let mut fl = dev.into_flash();
        fl.revive();
        let booted = booted_image(&mut device_with(fl, l)).expect("cut in a confirm left no model");
        if booted == new {
            tally[1].1 += 1;
        } else {
            assert_eq!(booted, old, "cut {cut}/{confirm_bytes} in confirm: neither image");
            tally[1].0 += 1;
        }

        // Phase 2: the boot-time revert of an unconfirmed image.
        let mut dev = device_with(on_trial().into_flash(), l);
        let cut = rng.below(revert_bytes);
        dev.flash_mut().cut_power_after(cut);
        assert!(dev.boot().is_err(), "revert cannot finish with the power cut at {cut}");
        let mut fl = dev.into_flash();
        fl.revive();
        let booted = booted_image(&mut device_with(fl, l)).expect("cut in a revert left no model");
        assert_eq!(booted, old, "cut {cut}/{revert_bytes} in revert");
        tally[2].0 += 1;
    }
    println!(
        "power cuts with trial boot: {runs} cuts per phase; trial commit ({commit_bytes} storage bytes): old {} new {}; \
         confirm ({confirm_bytes} bytes): old {} new {}; boot revert ({revert_bytes} bytes): old {} new {}; none: 0",
        tally[0].0, tally[0].1, tally[1].0, tally[1].1, tally[2].0, tally[2].1
    );
}
