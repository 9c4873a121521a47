//! The boot self-test over the real runtime (rsim_edge::Engine), and a flash that uses it.

mod common;
use common::*;
use rsim_boards::flash::emu::RamFlash;
use rsim_boards::flash::host::{Outcome, Sender, SenderConfig};
use rsim_boards::flash::{Layout, SelfTest, Updater};
use rsim_boards::onboard::OwnedSelfTest;
use rsim_boards::sim::{run_flash, Faults, Wire};
use rsim_model::Model;

fn tv(model: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let m = Model::parse(model).unwrap();
    let t = m.test_vector.unwrap();
    (t.input.to_vec(), t.output.to_vec())
}

#[test]
fn engine_self_test_accepts_matching_and_rejects_wrong_vectors() {
    let good = echo_model(16, 64, 100, 1, true);
    let bad = echo_model(16, 64, 100, 1, false);
    let mut st = OwnedSelfTest(vec![0u8; 128]);
    let (i, o) = tv(&good);
    assert_eq!(st.run(&good, &i, &o), Ok(()));
    let (i, o) = tv(&bad);
    assert_eq!(st.run(&bad, &i, &o), Err("output differs from the model's test vector"));
    // A board arena smaller than the model's plan fails the self-test with a clear reason.
    let big = echo_model(16, 4096, 100, 1, true);
    let (i, o) = tv(&big);
    assert_eq!(st.run(&big, &i, &o), Err("board arena too small for the model"));
}

#[test]
fn flash_verified_by_the_real_runtime() {
    let flash: RamFlash<4, 1024> = RamFlash::new(2 * 1024 + 2 * 16 * 1024);
    let layout = Layout::split(0, flash.mem().len() as u32, 1024).unwrap();
    let mut dev = Updater::new(flash, layout, LIMITS, OwnedSelfTest(vec![0u8; 256])).unwrap();
    for (img, want) in [(echo_model(8, 64, 3000, 2, true), true), (echo_model(8, 64, 3000, 3, false), false)] {
        let mut s = Sender::new(&img, sha(&img), SenderConfig::default());
        let (mut a, mut b) = (Wire::new(115_200, Faults::default(), 1), Wire::new(115_200, Faults::default(), 2));
        let out = run_flash(&mut s, &mut dev, &mut a, &mut b, 30_000_000).outcome;
        assert_eq!(matches!(out, Outcome::Done { .. }), want, "{out:?}");
    }
    let booted = dev.boot().unwrap();
    assert_eq!((booted.slot, booted.seq), (0, 1), "the failing image never became active");
}
