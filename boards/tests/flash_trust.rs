//! Signed images, anti-rollback and trial boot, through the device state machine over the simulated
//! link (`sim::run_flash`) on RAM flash. Every refusal must leave the old model active.

mod common;
use common::*;
use rsim_boards::field::trust::sign_image;
use rsim_boards::flash::host::{Outcome, Sender, SenderConfig};
use rsim_boards::flash::sign::{self, SignError, TrustPolicy, FLAG_DOWNGRADE};
use rsim_boards::flash::{BoardLimits, BootRecord, FlashError, VerifyError};
use rsim_boards::sim::{run_flash, Faults, Rng, Wire};
use rsim_boards::wire::{FlashErrorCode, Msg};

const SEED_A: [u8; 32] = [7; 32];
const SEED_B: [u8; 32] = [9; 32];

fn public(seed: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(seed).verifying_key().to_bytes()
}

fn keys(seeds: &[[u8; 32]]) -> &'static [[u8; 32]] {
    Box::leak(seeds.iter().map(public).collect::<Vec<_>>().into_boxed_slice())
}

fn keyed(confirm_after: Option<u32>, allow_downgrade: bool) -> BoardLimits {
    BoardLimits {
        trust: TrustPolicy { keys: keys(&[SEED_A]), allow_downgrade },
        confirm_after,
        verify_budget_ms: 250,
        ..LIMITS
    }
}

/// An echo model (distinct per `seed`) signed with `key` at `version`.
fn signed(seed: u8, key: &[u8; 32], version: u32, flags: u16) -> Vec<u8> {
    sign_image(&echo_model(4, 64, 1500 + seed as usize * 10, seed, true), key, version, flags).unwrap()
}

fn flash(dev: &mut Dev, image: &[u8]) -> Outcome {
    let mut s = Sender::new(image, sha(image), SenderConfig::default());
    let (mut a, mut b) = (Wire::new(115_200, Faults::default(), 1), Wire::new(115_200, Faults::default(), 2));
    run_flash(&mut s, dev, &mut a, &mut b, 60_000_000).outcome
}

fn reboot(dev: Dev, limits: BoardLimits) -> Dev {
    device_with(dev.into_flash(), limits)
}

fn rec(dev: &mut Dev) -> BootRecord {
    dev.record().unwrap().unwrap()
}

#[test]
fn signed_image_is_accepted_and_boots() {
    let l = keyed(None, false);
    let mut dev = device_with(blank_flash(), l);
    let img = signed(1, &SEED_A, 5, 0);
    assert!(matches!(flash(&mut dev, &img), Outcome::Done { .. }));
    assert_eq!(booted_image(&mut dev).unwrap(), img);
    assert_eq!(rec(&mut dev).counter, 5, "without trial boot the commit confirms and raises the counter");
    // Several keys: an image signed by the second one is accepted too.
    let two = BoardLimits { trust: TrustPolicy { keys: keys(&[SEED_A, SEED_B]), allow_downgrade: false }, ..l };
    let mut dev = reboot(dev, two);
    let img_b = signed(2, &SEED_B, 6, 0);
    assert!(matches!(flash(&mut dev, &img_b), Outcome::Done { .. }));
    assert_eq!(booted_image(&mut dev).unwrap(), img_b);
}

#[test]
fn tampered_truncated_wrong_key_and_unsigned_images_are_refused_before_activation() {
    let l = keyed(None, false);
    let mut dev = device_with(blank_flash(), l);
    let old = signed(1, &SEED_A, 1, 0);
    assert!(matches!(flash(&mut dev, &old), Outcome::Done { .. }));
    let good = signed(2, &SEED_A, 2, 0);
    let mut rng = Rng::new(11);
    // One flipped bit at positions spread over the model, the envelope head and the signature.
    let (mut tampered, mut refused) = (0u32, 0u32);
    let mut positions: Vec<usize> = (0..150).map(|_| rng.below(good.len() as u64) as usize).collect();
    positions.extend(good.len() - 80..good.len()); // every envelope byte
    for at in positions {
        let mut bad = good.clone();
        bad[at] ^= 1 << rng.below(8);
        tampered += 1;
        let o = flash(&mut dev, &bad);
        assert_eq!(o, Outcome::Refused(FlashErrorCode::BadSignature), "flip at {at}/{}", good.len());
        refused += 1;
        assert!(!dev.busy());
    }
    assert_eq!(booted_image(&mut dev).unwrap(), old, "the old model stays active");
    // Truncated: cut into the signature, the envelope head and the model.
    let mut truncated = 0u32;
    for cut in [1, 32, 64, 79, 80, 81, 500, good.len() - 40] {
        let t = &good[..good.len() - cut];
        let want = if cut == 80 { FlashErrorCode::Unsigned } else { FlashErrorCode::BadSignature };
        assert_eq!(flash(&mut dev, t), Outcome::Refused(want), "cut {cut}");
        if cut != 80 {
            assert!(matches!(sign::split(t), Err(SignError::Truncated { .. })), "cut {cut}: {:?}", sign::split(t));
        }
        truncated += 1;
    }
    // Wrong key, and an unsigned model, on a board that holds keys.
    let wrong = signed(2, &SEED_B, 2, 0);
    assert_eq!(flash(&mut dev, &wrong), Outcome::Refused(FlashErrorCode::BadSignature));
    assert_eq!(
        sign::check(&wrong, l.trust.keys, 0, false).unwrap_err(),
        SignError::BadSignature,
        "typed error for a wrong key"
    );
    let unsigned = echo_model(4, 64, 1500, 3, true);
    assert_eq!(flash(&mut dev, &unsigned), Outcome::Refused(FlashErrorCode::Unsigned));
    assert_eq!(booted_image(&mut dev).unwrap(), old);
    println!(
        "signed images: {refused}/{tampered} tampered refused, {truncated}/{truncated} truncated refused, wrong key \
         and unsigned refused; old model active after every refusal"
    );
    // The good image still goes through.
    assert!(matches!(flash(&mut dev, &good), Outcome::Done { .. }));
}

#[test]
fn board_without_keys_accepts_unsigned_and_signed_images() {
    let mut dev = device();
    let unsigned = echo_model(4, 64, 1500, 3, true);
    assert!(matches!(flash(&mut dev, &unsigned), Outcome::Done { .. }));
    let img = signed(4, &SEED_B, 9, 0);
    assert!(matches!(flash(&mut dev, &img), Outcome::Done { .. }));
    assert_eq!(rec(&mut dev).counter, 0, "unauthenticated versions never move the counter");
    // The same storage under firmware that now holds keys: the active image must be signed by one.
    let mut dev = reboot(dev, keyed(None, false));
    let e = dev.boot().unwrap_err();
    match e {
        FlashError::NoValidModel { active: VerifyError::Sign(SignError::BadSignature) } => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn older_and_replayed_images_are_refused_unless_a_signed_downgrade_is_allowed() {
    let l = keyed(None, false);
    let mut dev = device_with(blank_flash(), l);
    let v1 = signed(1, &SEED_A, 1, 0);
    let v2 = signed(2, &SEED_A, 2, 0);
    let v3 = signed(3, &SEED_A, 3, 0);
    assert!(matches!(flash(&mut dev, &v2), Outcome::Done { .. }));
    let (mut tried, mut refused) = (0, 0);
    tried += 1;
    if flash(&mut dev, &v1) == Outcome::Refused(FlashErrorCode::Rollback) {
        refused += 1;
    }
    assert!(matches!(flash(&mut dev, &v3), Outcome::Done { .. }));
    // Replays of images that were active before.
    for old in [&v1, &v2] {
        tried += 1;
        if flash(&mut dev, old) == Outcome::Refused(FlashErrorCode::Rollback) {
            refused += 1;
        }
    }
    assert_eq!(booted_image(&mut dev).unwrap(), v3);
    // The same version again (a re-signed build) is not a rollback.
    let v3b = signed(4, &SEED_A, 3, 0);
    assert!(matches!(flash(&mut dev, &v3b), Outcome::Done { .. }));
    // A downgrade flag is honoured only where the board allows downgrades.
    let down = signed(5, &SEED_A, 1, FLAG_DOWNGRADE);
    tried += 1;
    if flash(&mut dev, &down) == Outcome::Refused(FlashErrorCode::Rollback) {
        refused += 1;
    }
    assert_eq!(sign::check(&down, l.trust.keys, 3, false).unwrap_err(), SignError::Rollback { version: 1, counter: 3 });
    println!("anti-rollback: {refused}/{tried} older or replayed images refused");
    assert_eq!(refused, tried);
    let mut dev = reboot(dev, keyed(None, true));
    assert!(matches!(flash(&mut dev, &down), Outcome::Done { .. }), "allowed signed downgrade");
    assert_eq!(booted_image(&mut dev).unwrap(), down);
    assert_eq!(rec(&mut dev).counter, 3, "a downgrade never lowers the counter");
    // An unflagged old image is still refused on that board.
    assert_eq!(flash(&mut dev, &v1), Outcome::Refused(FlashErrorCode::Rollback));
}

#[test]
fn trial_image_reverts_after_a_reset_before_confirmation() {
    let l = keyed(Some(3), false);
    let mut dev = device_with(blank_flash(), l);
    let v1 = signed(1, &SEED_A, 1, 0);
    let v2 = signed(2, &SEED_A, 2, 0);
    assert!(matches!(flash(&mut dev, &v1), Outcome::Done { .. }));
    // The first image has nothing to revert to: it keeps booting, on trial, until confirmed.
    let b = dev.boot().unwrap();
    assert!(b.trial && !b.reverted);
    for _ in 0..2 {
        assert_eq!(dev.inference_ok().unwrap(), None);
    }
    assert!(dev.inference_ok().unwrap().is_some(), "third inference confirms");
    assert_eq!((rec(&mut dev).trial, rec(&mut dev).counter), (false, 1));
    // v2 runs on trial: the counter waits for confirmation.
    assert!(matches!(flash(&mut dev, &v2), Outcome::Done { .. }));
    assert!(dev.take_activated().is_some());
    let r = rec(&mut dev);
    assert!(r.trial && r.counter == 1, "{r:?}");
    dev.inference_ok().unwrap();
    dev.inference_ok().unwrap(); // two of three: not yet confirmed
                                 // Flashing another image now would overwrite the trial image's fallback.
    assert_eq!(flash(&mut dev, &signed(3, &SEED_A, 3, 0)), Outcome::Refused(FlashErrorCode::TrialPending));
    // Reset before confirmation: back to v1, and v2 is forgotten.
    let mut dev = reboot(dev, l);
    let b = dev.boot().unwrap();
    assert!(b.reverted && !b.trial, "{b:?}");
    assert_eq!(booted_image(&mut dev).unwrap(), v1);
    assert_eq!(rec(&mut dev).slots.iter().filter(|s| s.len != 0).count(), 1);
    // Not confirmed means the counter never moved: v2 may be flashed again, and confirmed this time.
    assert!(matches!(flash(&mut dev, &v2), Outcome::Done { .. }));
    for _ in 0..3 {
        dev.inference_ok().unwrap();
    }
    let r = rec(&mut dev);
    assert!(!r.trial && r.counter == 2, "{r:?}");
    let mut dev = reboot(dev, l);
    let b = dev.boot().unwrap();
    assert!(!b.reverted && !b.trial);
    assert_eq!(booted_image(&mut dev).unwrap(), v2, "a confirmed model stays");
    // And now v1 is a rollback.
    assert_eq!(flash(&mut dev, &v1), Outcome::Refused(FlashErrorCode::Rollback));
}

#[test]
fn ground_confirm_message_confirms_only_the_active_image() {
    let l = keyed(Some(0), false); // 0: only the ground confirms
    let mut dev = device_with(blank_flash(), l);
    let v1 = signed(1, &SEED_A, 1, 0);
    let v2 = signed(2, &SEED_A, 2, 0);
    assert!(matches!(flash(&mut dev, &v1), Outcome::Done { .. }));
    assert!(matches!(dev.handle(&Msg::FlashConfirm { sha256: sha(&v1) }), Some(Msg::FlashDone { .. })));
    assert!(matches!(flash(&mut dev, &v2), Outcome::Done { .. }));
    for _ in 0..100 {
        assert_eq!(dev.inference_ok().unwrap(), None, "confirm_after = 0 never confirms by count");
    }
    assert_eq!(
        dev.handle(&Msg::FlashConfirm { sha256: sha(&v1) }),
        Some(Msg::FlashNack { code: FlashErrorCode::NotActive, next: 0 })
    );
    assert!(rec(&mut dev).trial);
    let done = dev.handle(&Msg::FlashConfirm { sha256: sha(&v2) });
    assert!(matches!(done, Some(Msg::FlashDone { .. })), "{done:?}");
    assert_eq!(dev.handle(&Msg::FlashConfirm { sha256: sha(&v2) }), done, "repeat confirm: same answer");
    let r = rec(&mut dev);
    assert!(!r.trial && r.counter == 2);
    let mut dev = reboot(dev, l);
    assert_eq!(booted_image(&mut dev).unwrap(), v2);
}

#[test]
fn every_verification_builds_the_runtime_under_the_watchdog_budget() {
    // No test vector (allowed here): the runtime is still built.
    let l = BoardLimits { require_test_vector: false, verify_budget_ms: 40, ..LIMITS };
    let mut dev = device_with(blank_flash(), l);
    let base = echo_model(4, 64, 800, 1, true);
    let info = rsim_model::Model::parse(&base).unwrap().info;
    let op = rsim_model::Op::Reshape { input: info.input, output: info.output };
    let no_tv = rsim_model::write::encode(&info, &[op], &[0u8; 32], None);
    assert!(matches!(flash(&mut dev, &no_tv), Outcome::Done { .. }));
    dev.boot().unwrap();
    let mut dev2 = device_with(dev.into_flash(), l);
    dev2.boot().unwrap();
    // Reach the self-test double through a fresh boot: one build per verification, arms = disarms.
    let st = dev2.selftest();
    assert!(st.builds >= 1 && st.runs == 0, "builds {} runs {}", st.builds, st.runs);
    assert_eq!((st.arms, st.disarms, st.last_budget_ms), (1, 1, 40));
}

#[test]
fn version_1_boot_records_still_read() {
    // A record written by the previous firmware (format version 1, 92 bytes).
    let mut dev = device();
    let img = echo_model(4, 64, 1200, 1, true);
    assert!(matches!(flash(&mut dev, &img), Outcome::Done { slot: 0, seq: 1 }));
    let mut v1 = [0u8; 92];
    v1[0..4].copy_from_slice(b"RSBR");
    v1[4] = 1;
    v1[5] = 0;
    v1[8..12].copy_from_slice(&7u32.to_le_bytes());
    v1[12..16].copy_from_slice(&(img.len() as u32).to_le_bytes());
    v1[16..48].copy_from_slice(&sha(&img));
    v1[48..84].fill(0);
    let crc = crc32fast::hash(&v1[..88]);
    v1[88..92].copy_from_slice(&crc.to_le_bytes());
    let r = BootRecord::decode(&v1).expect("v1 record decodes");
    assert_eq!((r.seq, r.active, r.counter, r.trial), (7, Some(0), 0, false));
    // On flash: both copies replaced by the v1 record; the board boots it and the next update writes v2.
    let l = *dev.layout();
    let mut fl = dev.into_flash();
    for i in 0..2 {
        let at = l.record(i) as usize;
        fl.mem_mut()[at..at + 1024].fill(0xFF);
        fl.mem_mut()[at..at + 92].copy_from_slice(&v1);
    }
    let mut dev = device_on(fl);
    assert_eq!(booted_image(&mut dev).unwrap(), img);
    let next = echo_model(4, 64, 1300, 2, true);
    assert!(matches!(flash(&mut dev, &next), Outcome::Done { slot: 1, seq: 8 }));
    let versions: Vec<u8> = (0..2).map(|i| dev.flash().mem()[l.record(i) as usize + 4]).collect();
    assert!(versions.contains(&2), "the update wrote a version-2 record: {versions:?}");
    assert_eq!(rec(&mut dev).seq, 8);
}
