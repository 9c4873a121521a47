//! Exact-byte wire tests. Expected frames were computed independently with Python's zlib.crc32 and
//! a hand-written COBS encoder (script in docs/WIRE.md "Golden frames"), not by this crate.

use rsim_boards::wire::{
    encode, FrameReader, Heartbeat, Msg, Score, Telemetry, WireError, MAX_FRAME, TOP_K_MAX, WIRE_VERSION,
};
use rsim_boards::{error::Error, ErrorKind};

fn check(msg: Msg<'_>, expected: &[u8]) {
    let mut out = [0u8; MAX_FRAME];
    let n = encode(&msg, &mut out).unwrap();
    assert_eq!(&out[..n], expected, "encoding of {msg:?}");
    let mut r: FrameReader = FrameReader::new();
    let mut got = None;
    for &b in expected {
        if let Some(m) = r.push(b) {
            got = Some(format!("{:?}", m.unwrap()));
        }
    }
    assert_eq!(got, Some(format!("{msg:?}")), "round trip");
}

#[test]
fn golden_flash_frames() {
    assert_eq!(WIRE_VERSION, 1);
    check(Msg::FlashAck { next: 5 }, &[0x08, 0x01, 0x06, 0x05, 0x2c, 0xe0, 0xb3, 0xd8, 0x00]);
    check(Msg::FlashCommit, &[0x07, 0x01, 0x04, 0xa7, 0xe7, 0xaf, 0x5f, 0x00]);
    check(
        Msg::FlashChunk { offset: 1024, data: &[0x00, 0xAB, 0x00] },
        &[0x06, 0x01, 0x03, 0x80, 0x08, 0x03, 0x02, 0xab, 0x05, 0xbf, 0x50, 0xe6, 0xe9, 0x00],
    );
}

#[test]
fn golden_heartbeat_and_telemetry() {
    let hb = Heartbeat {
        uptime_ms: 300,
        frames: 2,
        tiles: 8,
        frames_late: 1,
        tiles_dropped: 3,
        tx_errors: 0,
        rx_bad_frames: 0,
        model_seq: 7,
        active_slot: 1,
    };
    check(
        Msg::Heartbeat(hb),
        &[0x02, 0x01, 0x07, 0xac, 0x02, 0x02, 0x08, 0x01, 0x03, 0x01, 0x07, 0x07, 0x01, 0xe7, 0x0e, 0x92, 0xb8, 0x00],
    );
    let mut top = [Score::default(); TOP_K_MAX];
    top[0] = Score { class: 3, q: -5, confidence: 0.5 };
    let t = Telemetry {
        frame_id: 1,
        tile_index: 2,
        tile_x: 64,
        tile_y: 0,
        tile_size: 64,
        count: 1,
        top,
        latency_us: 1000,
        arena_hwm: 4096,
        smoothed: false,
    };
    check(
        Msg::Telemetry(t),
        &[
            0x06, 0x01, 0x01, 0x01, 0x02, 0x40, 0x05, 0x40, 0x01, 0x03, 0xfb, 0x01, 0x01, 0x02, 0x3f, 0x01, 0x01, 0x01,
            0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
            0x01, 0x01, 0x05, 0xe8, 0x07, 0x80, 0x20, 0x05, 0x0a, 0xca, 0x31, 0x81, 0x00,
        ],
    );
}

fn feed_all(r: &mut FrameReader, bytes: &[u8]) -> Vec<Result<String, WireError>> {
    let mut v = Vec::new();
    for &b in bytes {
        if let Some(m) = r.push(b) {
            v.push(m.map(|m| format!("{m:?}")));
        }
    }
    v
}

#[test]
fn corrupt_frames_are_rejected_and_reader_resyncs() {
    let good = [0x08, 0x01, 0x06, 0x05, 0x2c, 0xe0, 0xb3, 0xd8, 0x00];
    // A flipped bit in the payload fails the CRC.
    let mut bad = good;
    bad[3] ^= 0x10;
    let mut r = FrameReader::new();
    let out = feed_all(&mut r, &bad);
    assert!(matches!(out[..], [Err(WireError::Crc { .. })]), "{out:?}");
    assert_eq!(r.push(0), None, "empty frame is ignored");
    // The next good frame decodes: the reader resynchronised at the delimiter.
    let out = feed_all(&mut r, &good);
    assert_eq!(out, vec![Ok("FlashAck { next: 5 }".to_string())]);
    assert_eq!((r.bad_frames, r.good_frames), (1, 1));

    // A frame from a future wire version (valid CRC) is refused with a version error.
    let payload = [2u8, 6, 5];
    let mut body = payload.to_vec();
    body.extend(crc32fast::hash(&payload).to_le_bytes());
    let mut framed = vec![0u8; 16];
    let n = cobs::encode(&body, &mut framed);
    framed.truncate(n);
    framed.push(0);
    let out = feed_all(&mut r, &framed);
    assert_eq!(out, vec![Err(WireError::Version { found: 2 })]);
    assert_eq!(WireError::Version { found: 2 }.kind(), ErrorKind::Framing);

    // An unknown message type (tag 200) from a newer peer is a decode error, not a crash.
    let payload = [1u8, 0xC8, 0x01];
    let mut body = payload.to_vec();
    body.extend(crc32fast::hash(&payload).to_le_bytes());
    let mut framed = vec![0u8; 16];
    let n = cobs::encode(&body, &mut framed);
    framed.truncate(n);
    framed.push(0);
    assert_eq!(feed_all(&mut r, &framed), vec![Err(WireError::Decode)]);
}

#[test]
fn oversized_and_random_garbage_never_panics() {
    let mut r = FrameReader::new();
    let long = vec![0x55u8; MAX_FRAME * 2];
    assert!(feed_all(&mut r, &long).is_empty());
    assert_eq!(r.push(0), Some(Err(WireError::Overflow)));
    // 200k bytes of seeded noise: every frame is either rejected or decodes to some message.
    let mut rng = rsim_boards::sim::Rng::new(42);
    let mut decoded = 0;
    let mut rejected = 0;
    for _ in 0..200_000 {
        let b = if rng.chance(0.02) { 0 } else { rng.next_u64() as u8 };
        match r.push(b) {
            Some(Ok(_)) => decoded += 1,
            Some(Err(_)) => rejected += 1,
            None => {}
        }
    }
    println!("noise: {rejected} frames rejected, {decoded} decoded");
    assert!(rejected > 1000);
    assert_eq!(decoded, 0, "a random frame passing CRC32 is a ~2^-32 event");
}
