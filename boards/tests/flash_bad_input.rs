//! Bad input gets a clear refusal and leaves a clean state: the old model active, no transfer
//! pending, and the next good update goes through.

mod common;
use common::*;
use rsim_boards::flash::host::{Outcome, Sender, SenderConfig};
use rsim_boards::sim::{run_flash, Faults, Rng, Wire};
use rsim_boards::wire::{encode, FlashErrorCode, FrameReader, Msg, MAX_FRAME};
use rsim_model::Model;

fn flash(dev: &mut Dev, image: &[u8]) -> Outcome {
    let mut s = Sender::new(image, sha(image), SenderConfig::default());
    let (mut a, mut b) = (Wire::new(115_200, Faults::default(), 1), Wire::new(115_200, Faults::default(), 2));
    run_flash(&mut s, dev, &mut a, &mut b, 60_000_000).outcome
}

fn assert_clean(dev: &mut Dev, old: &[u8]) {
    assert!(!dev.busy(), "a refused transfer must not stay pending");
    assert_eq!(booted_image(dev).unwrap(), old, "old model must stay active");
    let good = echo_model(4, 64, 500, 42, true);
    assert!(matches!(flash(dev, &good), Outcome::Done { .. }), "next good update must go through");
    assert_eq!(booted_image(dev).unwrap(), good);
}

fn with_old() -> (Dev, Vec<u8>) {
    let mut dev = device();
    let old = echo_model(4, 64, 1000, 1, true);
    assert!(matches!(flash(&mut dev, &old), Outcome::Done { slot: 0, seq: 1 }));
    (dev, old)
}

#[test]
fn model_too_large_for_slot_is_refused_before_any_write() {
    let (mut dev, old) = with_old();
    let big = echo_model(4, 64, 40_000, 2, true); // slots are 32 KiB
    let touched = dev.flash().bytes_touched;
    assert_eq!(flash(&mut dev, &big), Outcome::Refused(FlashErrorCode::TooLarge));
    assert_eq!(dev.flash().bytes_touched, touched, "nothing may be written for an oversized image");
    assert_clean(&mut dev, &old);
}

#[test]
fn model_for_a_bigger_board_is_refused() {
    let (mut dev, old) = with_old();
    // Arena 128 KiB on a board with 64 KiB.
    assert_eq!(flash(&mut dev, &echo_model(4, 128 * 1024, 100, 3, true)), Outcome::Refused(FlashErrorCode::WrongBoard));
    assert_clean(&mut dev, &old);
    let (mut dev, old) = with_old();
    // Input tensor of 8 KiB on a board whose input buffer is 4 KiB.
    assert_eq!(flash(&mut dev, &echo_model(8192, 8192, 100, 3, true)), Outcome::Refused(FlashErrorCode::WrongBoard));
    assert_clean(&mut dev, &old);
}

#[test]
fn failing_self_test_and_non_model_bytes_are_refused() {
    let (mut dev, old) = with_old();
    assert_eq!(flash(&mut dev, &echo_model(4, 64, 100, 4, false)), Outcome::Refused(FlashErrorCode::SelfTestFailed));
    assert_clean(&mut dev, &old);
    let (mut dev, old) = with_old();
    let junk: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(flash(&mut dev, &junk), Outcome::Refused(FlashErrorCode::BadModel));
    assert_clean(&mut dev, &old);
}

#[test]
fn wrong_announced_hash_is_refused() {
    let (mut dev, old) = with_old();
    let img = echo_model(4, 64, 700, 5, true);
    let mut wrong = sha(&img);
    wrong[0] ^= 1;
    let mut s = Sender::new(&img, wrong, SenderConfig::default());
    let (mut a, mut b) = (Wire::new(115_200, Faults::default(), 1), Wire::new(115_200, Faults::default(), 2));
    assert_eq!(
        run_flash(&mut s, &mut dev, &mut a, &mut b, 60_000_000).outcome,
        Outcome::Refused(FlashErrorCode::HashMismatch)
    );
    assert_clean(&mut dev, &old);
}

#[test]
fn garbage_on_the_link_changes_nothing() {
    let (mut dev, old) = with_old();
    let mut r: FrameReader = FrameReader::new();
    let mut rng = Rng::new(5);
    let mut replies = 0;
    for _ in 0..100_000 {
        let b = if rng.chance(0.01) { 0 } else { rng.next_u64() as u8 };
        if let Some(Ok(m)) = r.push(b) {
            replies += dev.handle(&m).is_some() as u32;
        }
    }
    assert!(r.bad_frames > 500, "garbage must be seen as bad frames: {}", r.bad_frames);
    assert_eq!(replies, 0);
    assert_clean(&mut dev, &old);
}

#[test]
fn interrupted_transfer_resumes_from_last_ack() {
    let (mut dev, _old) = with_old();
    let img = echo_model(4, 64, 20_000, 6, true);
    let digest = sha(&img);
    // First session: the host dies after ~8 KiB were acknowledged.
    let mut s = Sender::new(&img, digest, SenderConfig::default());
    let mut buf = [0u8; MAX_FRAME];
    let mut rx: FrameReader = FrameReader::new();
    let mut now = 0;
    while s.progress().0 < 8192 {
        let Some(m) = s.poll(now) else {
            now += 1;
            continue;
        };
        let n = encode(&m, &mut buf).unwrap();
        let mut reply = None;
        for &b in &buf[..n] {
            if let Some(Ok(m)) = rx.push(b) {
                reply = dev.handle(&m);
            }
        }
        if let Some(r) = reply {
            s.on_msg(&r, now);
        }
    }
    let done_before = s.progress().0;
    assert!(dev.busy());
    // Second session: FlashBegin for the same image is answered with the resume offset.
    let reply = dev.handle(&Msg::FlashBegin(rsim_boards::wire::FlashBegin { size: img.len() as u32, sha256: digest }));
    assert_eq!(reply, Some(Msg::FlashAck { next: done_before }));
    let mut s2 = Sender::new(&img, digest, SenderConfig::default());
    let (mut a, mut b) = (Wire::new(115_200, Faults::default(), 1), Wire::new(115_200, Faults::default(), 2));
    let run = run_flash(&mut s2, &mut dev, &mut a, &mut b, 60_000_000);
    assert!(matches!(run.outcome, Outcome::Done { .. }));
    // Only the remainder crossed the link the second time (plus small frame overhead).
    let remaining = (img.len() as u32 - done_before) as u64;
    assert!(
        a.counts.bytes < remaining + remaining / 5 + 200,
        "resent {} bytes for {remaining} remaining",
        a.counts.bytes
    );
    assert_eq!(booted_image(&mut dev).unwrap(), img);
}

#[test]
fn model_over_the_boards_compute_budget_is_refused() {
    // The echo model's one Reshape of 4 elements costs 4 (Model::macs); a board allowing 3 refuses it
    // before activation, one allowing 4 takes it.
    let image = echo_model(4, 64, 100, 9, true);
    assert_eq!(Model::parse(&image).unwrap().macs().unwrap(), 4);
    for (limit, accepted) in [(3u64, false), (4, true)] {
        let flash_mem = Flash::new(2 * 1024 + 2 * 32 * 1024);
        let layout = rsim_boards::flash::Layout::split(0, flash_mem.mem().len() as u32, 1024).unwrap();
        let limits = rsim_boards::flash::BoardLimits { max_macs: Some(limit), ..LIMITS };
        let mut dev = rsim_boards::flash::Updater::new(flash_mem, layout, limits, EchoSelfTest::default()).unwrap();
        let got = flash(&mut dev, &image);
        if accepted {
            assert!(matches!(got, Outcome::Done { .. }), "limit {limit}: {got:?}");
        } else {
            assert_eq!(got, Outcome::Refused(FlashErrorCode::WrongBoard), "limit {limit}");
            assert!(booted_image(&mut dev).is_none(), "nothing may become active");
        }
    }
}
