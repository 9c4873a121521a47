//! The ground station never panics on what arrives over a link: seeded random and mutated frames go
//! through the telemetry decoder and the whole report path (table rows, CSV, class map) of
//! `rsim ground --replay`. Failures name the case; rerun one with `RSIM_GROUND_CASE=<n>`.
//! `RSIM_GROUND_CASES` changes the count (default 20,000).

use rsim_boards::field::classmap::{map_size, write_png, TileClass};
use rsim_boards::field::ground::{self, consume, csv_field, row, run_ground, GroundArgs, GroundReport};
use rsim_boards::field::link::LinkArgs;
use rsim_boards::sim::Rng;
use rsim_boards::wire::{encode, FrameReader, Heartbeat, Msg, Score, Telemetry, WireError, MAX_FRAME};
use std::panic::{catch_unwind, AssertUnwindSafe};

const BASE_SEED: u64 = 0x6a0d_f00d_0000_0006;

fn telemetry(rng: &mut Rng, count: u8) -> Telemetry {
    let mut top = [Score::default(); 5];
    for s in &mut top {
        *s = Score { class: rng.below(12) as u16, q: rng.i8(), confidence: rng.unit_f32() };
    }
    Telemetry {
        frame_id: rng.next_u64() as u32,
        tile_index: rng.next_u64() as u16,
        tile_x: rng.next_u64() as u16,
        tile_y: rng.next_u64() as u16,
        tile_size: rng.next_u64() as u16,
        count,
        top,
        latency_us: rng.next_u64() as u32,
        arena_hwm: rng.next_u64() as u32,
        smoothed: rng.one_in(2),
    }
}

fn frame(msg: &Msg<'_>) -> Vec<u8> {
    let mut out = [0u8; MAX_FRAME];
    let n = encode(msg, &mut out).unwrap();
    out[..n].to_vec()
}

#[test]
fn telemetry_with_count_above_top_k_is_a_decode_error_not_a_panic() {
    let mut rng = Rng(BASE_SEED);
    for count in 6..=255u8 {
        let bytes = frame(&Msg::Telemetry(telemetry(&mut rng, count)));
        let mut r: FrameReader = FrameReader::new();
        let got: Vec<_> = bytes.iter().filter_map(|&b| r.push(b).map(|m| m.map(|_| ()))).collect();
        assert_eq!(got, vec![Err(WireError::Decode)], "count {count}");
        // The whole report path on it: counted as bad, nothing kept.
        let mut rep = GroundReport::default();
        consume(&bytes, &mut FrameReader::new(), &mut rep, &[], true, 10);
        assert_eq!((rep.telemetry.len(), rep.bad_frames), (0, 1), "count {count}");
    }
    // 0..=5 still decode.
    for count in 0..=5u8 {
        let t = telemetry(&mut rng, count);
        let mut rep = GroundReport::default();
        consume(&frame(&Msg::Telemetry(t)), &mut FrameReader::new(), &mut rep, &[], true, 10);
        assert_eq!(rep.telemetry, vec![t]);
        assert_eq!(row(&t, &[]).matches(':').count(), count as usize, "one class:confidence per entry");
    }
    // A Telemetry built in code (not decoded) with a bad count is clamped by the table row.
    assert_eq!(row(&telemetry(&mut rng, 200), &[]).matches(':').count(), 5);
}

/// Case `n`: a capture of valid frames (telemetry, heartbeats, raw outputs), then mutated.
fn capture(n: u64) -> Vec<u8> {
    let mut rng = Rng(BASE_SEED ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut cap = Vec::new();
    for _ in 0..1 + rng.below(6) {
        let msg = match rng.below(4) {
            0 => Msg::Heartbeat(Heartbeat::default()),
            1 => Msg::RawOutput { frame_id: 1, tile_index: 2, data: &[1, 2, 3, 255] },
            _ => {
                let count = rng.below(6) as u8;
                Msg::Telemetry(telemetry(&mut rng, count))
            }
        };
        cap.extend(frame(&msg));
    }
    match rng.below(5) {
        // Pure noise, with delimiters now and then.
        0 => {
            cap = (0..rng.below(3000)).map(|_| if rng.one_in(40) { 0 } else { rng.next_u64() as u8 }).collect();
        }
        // Bit flips.
        1 => {
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(cap.len() as u64) as usize;
                cap[at] ^= 1 << rng.below(8);
            }
        }
        // Byte overwrites with extreme values (counts, lengths, tags).
        2 => {
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(cap.len() as u64) as usize;
                cap[at] = [0, 1, 5, 6, 0x7f, 0x80, 0xff][rng.below(7) as usize];
            }
        }
        // Truncation and splicing.
        3 => {
            let cut = rng.below(cap.len() as u64) as usize;
            let tail = cap.split_off(cut);
            cap.extend(tail.iter().rev());
        }
        // A long run without a delimiter (overflow), then the rest.
        _ => {
            let mut long = vec![7u8; MAX_FRAME + rng.below(100) as usize];
            long.extend(&cap);
            cap = long;
        }
    }
    cap
}

#[test]
fn random_and_mutated_frames_never_panic_the_decoder_or_the_report_path() {
    let only: Option<u64> = std::env::var("RSIM_GROUND_CASE").ok().and_then(|s| s.parse().ok());
    let count: u64 = std::env::var("RSIM_GROUND_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let cases: Vec<u64> = only.map_or_else(|| (0..count).collect(), |n| vec![n]);
    let names: Vec<String> = ["water", "a,b", "say \"hi\"", "multi\nline"].map(String::from).to_vec();
    let (mut kept, mut bad) = (0usize, 0u64);
    let mut failures = Vec::new();
    let mut all = Vec::new();
    for &n in &cases {
        let cap = capture(n);
        let r = catch_unwind(AssertUnwindSafe(|| {
            let mut rep = GroundReport::default();
            consume(&cap, &mut FrameReader::new(), &mut rep, &names, true, 4);
            for t in &rep.telemetry {
                assert!(t.count as usize <= 5, "decoded telemetry with count {}", t.count);
                let _ = row(t, &names);
            }
            assert!(rep.telemetry.len() <= 4 && rep.raw_outputs.len() <= 4, "--max-reports not applied");
            rep
        }));
        match r {
            Ok(rep) => {
                kept += rep.telemetry.len();
                bad += u64::from(rep.bad_frames);
            }
            Err(_) => failures.push(format!("case {n}")),
        }
        if all.len() < 4 << 20 {
            all.extend(&cap);
        }
    }
    eprintln!("{} ground cases: {kept} telemetry frames kept, {bad} bad frames counted", cases.len());
    assert!(failures.is_empty(), "panicked: {}", failures.join(", "));
    if only.is_none() {
        assert!(kept > cases.len() / 4 && bad > cases.len() as u64 / 4, "cases must exercise both outcomes");
    }

    // End to end: `rsim ground --replay` over every case's bytes with CSV and map; a map too large
    // for --map-max-side is a clean error, anything else must succeed.
    let dir = std::env::temp_dir().join(format!("rsim-ground-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cap.bin"), &all).unwrap();
    let args = GroundArgs {
        link: LinkArgs::default(),
        replay: Some(dir.join("cap.bin")),
        record: None,
        model: None,
        csv: Some(dir.join("out.csv")),
        map: Some(dir.join("map.png")),
        map_scale: 64,
        map_max_side: ground::DEFAULT_MAP_MAX_SIDE,
        max_reports: 1000,
        seconds: 0,
        quiet: true,
    };
    match run_ground(&args) {
        Ok(rep) => assert!(rep.telemetry.len() <= 1000 && rep.not_kept > 0, "{} kept", rep.telemetry.len()),
        Err(e) => assert!(e.contains("--map-max-side"), "{e}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn oversized_class_map_is_refused_before_allocating() {
    // Two u16 fields from the link: a tile at (65535, 65535) of side 65535 at scale 1.
    let tiles = [TileClass { x: 65535, y: 65535, size: 65535, class: 1 }];
    assert_eq!(map_size(&tiles, 1), (131070, 131070));
    let path = std::env::temp_dir().join(format!("rsim-map-{}.png", std::process::id()));
    let e = write_png(&path, &tiles, 1, 16_384).unwrap_err();
    assert!(e.contains("131070x131070") && e.contains("--map-max-side 16384"), "{e}");
    assert!(!path.exists());
    // Within the cap it is written, at the size asked.
    assert_eq!(write_png(&path, &tiles, 64, 16_384).unwrap(), (2048, 2048));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn class_names_are_escaped_in_csv() {
    assert_eq!(csv_field("water"), "water");
    assert_eq!(csv_field("a,b"), "\"a,b\"");
    assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
}
