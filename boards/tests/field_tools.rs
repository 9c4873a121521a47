//! The field tools end to end: `flash` over real TCP to an emulated board, and `ground` decoding a
//! recorded telemetry capture into CSV and a class-map PNG.

mod common;
use common::*;
use rsim_boards::field::classmap::PALETTE;
use rsim_boards::field::link::LinkArgs;
use rsim_boards::field::{run_confirm, run_flash, run_ground, ConfirmArgs, FlashArgs, GroundArgs};
use rsim_boards::flash::host::Outcome;
use rsim_boards::flash::BoardLimits;
use rsim_boards::wire::{encode, FrameReader, Msg, Score, Telemetry, MAX_FRAME, TOP_K_MAX};
use std::io::{Read, Write};
use std::net::TcpListener;

/// Serves one TCP client as a board: decodes frames, answers through the device updater.
fn board_on_tcp(mut dev: Dev) -> (String, std::thread::JoinHandle<Dev>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut r: FrameReader = FrameReader::new();
        let (mut buf, mut out) = ([0u8; 4096], [0u8; MAX_FRAME]);
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                if let Some(Ok(m)) = r.push(b) {
                    if let Some(reply) = dev.handle(&m) {
                        let k = encode(&reply, &mut out).unwrap();
                        s.write_all(&out[..k]).unwrap();
                    }
                }
            }
        }
        dev
    });
    (addr, h)
}

fn flash_args(addr: String, model: std::path::PathBuf) -> FlashArgs {
    FlashArgs {
        link: LinkArgs { tcp: Some(addr), ..Default::default() },
        model,
        chunk: 1024,
        window: 4096,
        timeout_ms: 500,
        retries: 5,
        no_local_check: false,
    }
}

#[test]
fn flash_over_tcp_activates_the_model_and_reports_refusals() {
    let dir = std::env::temp_dir().join(format!("rsim-field-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = echo_model(4, 64, 20_000, 9, true);
    let p = dir.join("good.rsm");
    std::fs::write(&p, &good).unwrap();
    let (addr, h) = board_on_tcp(device());
    assert_eq!(run_flash(&flash_args(addr, p)).unwrap(), Outcome::Done { slot: 0, seq: 1 });
    let mut dev = h.join().unwrap();
    assert_eq!(booted_image(&mut dev).unwrap(), good);

    let bad = echo_model(4, 64, 100, 9, false);
    let p = dir.join("bad.rsm");
    std::fs::write(&p, &bad).unwrap();
    let (addr, h) = board_on_tcp(dev);
    let e = run_flash(&flash_args(addr, p)).unwrap_err();
    assert!(e.contains("SelfTestFailed") && e.contains("previous model stays active"), "{e}");
    let mut dev = h.join().unwrap();
    assert_eq!(booted_image(&mut dev).unwrap(), good);

    // A file that is not a model is refused on the host before anything is sent.
    let p = dir.join("junk.rsm");
    std::fs::write(&p, b"not a model").unwrap();
    let e = run_flash(&flash_args("127.0.0.1:9".into(), p)).unwrap_err();
    assert!(e.contains("is not a valid model"), "{e}");
}

/// `confirm` over TCP: a flashed model on trial is confirmed by its file's hash and then survives a
/// reset; a confirm naming another model is refused with the reason.
#[test]
fn confirm_over_tcp_keeps_the_trial_model_across_a_reset() {
    let dir = std::env::temp_dir().join(format!("rsim-confirm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (first, second) = (echo_model(4, 64, 3000, 1, true), echo_model(4, 64, 4000, 2, true));
    let (p1, p2) = (dir.join("first.rsm"), dir.join("second.rsm"));
    std::fs::write(&p1, &first).unwrap();
    std::fs::write(&p2, &second).unwrap();
    // Trial boot with confirmation by the ground only (n = 0).
    let dev = device_with(blank_flash(), BoardLimits { confirm_after: Some(0), ..LIMITS });
    let (addr, h) = board_on_tcp(dev);
    run_flash(&flash_args(addr, p1.clone())).unwrap();
    let (addr, h) = board_on_tcp(h.join().unwrap());
    run_confirm(&confirm_args(addr, &p1)).unwrap();
    let (addr, h) = board_on_tcp(h.join().unwrap());
    run_flash(&flash_args(addr, p2.clone())).unwrap();
    let mut dev = h.join().unwrap();
    assert!(dev.record().unwrap().unwrap().trial, "the second model must be on trial");
    // Confirming a model that is not the active one is refused.
    let (addr, h) = board_on_tcp(dev);
    let e = run_confirm(&confirm_args(addr, &p1)).unwrap_err();
    assert!(e.contains("NotActive") && e.contains("not the board's active model"), "{e}");
    let (addr, h) = board_on_tcp(h.join().unwrap());
    run_confirm(&confirm_args(addr, &p2)).unwrap();
    let mut dev = h.join().unwrap();
    assert!(!dev.record().unwrap().unwrap().trial);
    assert_eq!(booted_image(&mut dev).unwrap(), second, "a confirmed model survives the reset");
}

fn confirm_args(addr: String, model: &std::path::Path) -> ConfirmArgs {
    ConfirmArgs {
        link: LinkArgs { tcp: Some(addr), ..Default::default() },
        model: model.to_path_buf(),
        timeout_ms: 500,
        retries: 3,
    }
}

#[test]
fn ground_replay_writes_csv_and_class_map() {
    let dir = std::env::temp_dir().join(format!("rsim-ground-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A 2x2 grid of 16-px tiles with classes 0, 1, 2, 3, plus one corrupt frame in between.
    let mut cap = Vec::new();
    let mut buf = [0u8; MAX_FRAME];
    for i in 0..4u16 {
        let mut top = [Score::default(); TOP_K_MAX];
        top[0] = Score { class: i, q: 90, confidence: 0.9 };
        let t = Telemetry {
            frame_id: 1,
            tile_index: i,
            tile_x: (i % 2) * 16,
            tile_y: (i / 2) * 16,
            tile_size: 16,
            count: 1,
            top,
            latency_us: 100,
            arena_hwm: 10,
            smoothed: false,
        };
        let n = encode(&Msg::Telemetry(t), &mut buf).unwrap();
        cap.extend_from_slice(&buf[..n]);
        if i == 1 {
            cap.extend_from_slice(&[1, 2, 3, 0]);
        }
    }
    let model = dir.join("m.rsm");
    std::fs::write(&model, echo_model(4, 64, 10, 1, true)).unwrap(); // classes a, b, c, d
    std::fs::write(dir.join("cap.bin"), &cap).unwrap();
    let args = GroundArgs {
        link: LinkArgs::default(),
        replay: Some(dir.join("cap.bin")),
        record: None,
        model: Some(model),
        csv: Some(dir.join("out.csv")),
        map: Some(dir.join("map.png")),
        map_scale: 8,
        map_max_side: rsim_boards::field::ground::DEFAULT_MAP_MAX_SIDE,
        max_reports: rsim_boards::field::ground::DEFAULT_MAX_REPORTS,
        seconds: 0,
        quiet: true,
    };
    let rep = run_ground(&args).unwrap();
    assert_eq!((rep.telemetry.len(), rep.bad_frames), (4, 1));
    let csv = std::fs::read_to_string(dir.join("out.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[4], "1,3,16,16,16,3,d,0.900000,90,100,10");
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(dir.join("map.png")).unwrap()));
    let mut r = dec.read_info().unwrap();
    let mut px = vec![0u8; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut px).unwrap();
    assert_eq!((info.width, info.height), (4, 4));
    // Pixel (3, 0) is the top-right tile (class 1); (0, 3) bottom-left (class 2).
    assert_eq!(&px[3 * 3..3 * 3 + 3], &PALETTE[1]);
    assert_eq!(&px[(3 * 4) * 3..(3 * 4) * 3 + 3], &PALETTE[2]);
}
