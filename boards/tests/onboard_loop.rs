//! The onboard loop on the host with a fake clock: tiling, telemetry decoded from the link bytes,
//! deadlines with counted drops, heartbeats, smoothing.

use rsim_boards::clock::FakeClock;
use rsim_boards::onboard::{Classifier, FrameInfo, FrameSource, LoopConfig, OnboardLoop, Output};
use rsim_boards::wire::{FrameReader, Heartbeat, Msg, Telemetry};

/// Frames whose pixel values encode the tile position: tile (tx, ty) of 8x8 is filled with 10*ty+tx.
struct Checker {
    w: u32,
    h: u32,
    left: u32,
}

impl FrameSource for Checker {
    type Error = ();
    fn next_frame(&mut self, buf: &mut [u8]) -> Result<Option<FrameInfo>, ()> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        for y in 0..self.h {
            for x in 0..self.w {
                let v = (10 * (y / 8) + x / 8) as u8;
                let i = ((y * self.w + x) * 3) as usize;
                buf[i..i + 3].copy_from_slice(&[v, v, v]);
            }
        }
        Ok(Some(FrameInfo { width: self.w, height: self.h, channels: 3 }))
    }
}

/// Classifier double: 4 int8 "logits"; class = mean pixel % 4 wins with q = 100, others q = -100.
/// Each call costs `cost_us` on the fake clock.
struct Fake<'c> {
    clock: &'c FakeClock,
    cost_us: u64,
    out: [u8; 4],
    calls: u32,
}

impl Classifier for Fake<'_> {
    type Error = ();
    fn classify(&mut self, px: &[u8], w: u32, h: u32, c: u32) -> Result<(), ()> {
        assert_eq!(px.len(), (w * h * c) as usize);
        self.calls += 1;
        self.clock.advance(self.cost_us);
        let mean = px.iter().map(|&p| p as u32).sum::<u32>() / px.len() as u32;
        self.out = [(-100i8) as u8; 4];
        self.out[(mean % 4) as usize] = 100;
        Ok(())
    }
    fn output(&self) -> Output<'_> {
        Output::I8 { data: &self.out, scale: 0.05, zero_point: 0 }
    }
    fn arena_high_water(&self) -> u32 {
        1234
    }
}

fn cfg() -> LoopConfig {
    LoopConfig {
        tile: 8,
        stride: 8,
        top_k: 2,
        deadline_us: 1_000_000,
        heartbeat_us: 50_000,
        smoothing: None,
        send_raw_output: true,
    }
}

fn decode(bytes: &[u8]) -> (Vec<Telemetry>, Vec<Heartbeat>, Vec<Vec<u8>>) {
    let mut r: FrameReader = FrameReader::new();
    let (mut t, mut h, mut raw) = (vec![], vec![], vec![]);
    for &b in bytes {
        match r.push(b) {
            Some(Ok(Msg::Telemetry(x))) => t.push(x),
            Some(Ok(Msg::Heartbeat(x))) => h.push(x),
            Some(Ok(Msg::RawOutput { data, .. })) => raw.push(data.to_vec()),
            Some(other) => panic!("unexpected {other:?}"),
            None => {}
        }
    }
    assert_eq!(r.bad_frames, 0);
    (t, h, raw)
}

#[test]
fn tiles_classify_and_report_over_the_link() {
    let clock = FakeClock::new(0);
    let (mut tile, mut smooth) = ([0u8; 8 * 8 * 3], [0f32; 0]);
    let mut lp = OnboardLoop::new(cfg(), &clock, &mut tile, &mut smooth);
    let mut src = Checker { w: 24, h: 16, left: 2 };
    let mut frame = vec![0u8; 24 * 16 * 3];
    let mut clf = Fake { clock: &clock, cost_us: 3_000, out: [0; 4], calls: 0 };
    let mut link = Vec::new();
    while lp.step(&mut src, &mut frame, &mut clf, &mut link).unwrap() {}
    let (tel, hb, raw) = decode(&link);
    assert_eq!(tel.len(), 12, "2 frames x 3x2 tiles");
    for (i, t) in tel.iter().enumerate() {
        let (tx, ty) = ((i % 6) as u32 % 3, (i % 6) as u32 / 3);
        assert_eq!(
            (t.frame_id, t.tile_index, t.tile_x, t.tile_y, t.tile_size),
            (1 + i as u32 / 6, (i % 6) as u16, (tx * 8) as u16, (ty * 8) as u16, 8)
        );
        let class = (10 * ty + tx) % 4;
        assert_eq!(t.count, 2);
        assert_eq!((t.top[0].class as u32, t.top[0].q), (class, 100));
        assert!(t.top[0].confidence > 0.99, "softmax of logits 5 vs -5: {}", t.top[0].confidence);
        assert_eq!(t.top[1].q, -100);
        assert_eq!(t.latency_us, 3_000, "latency comes from the clock");
        assert_eq!(t.arena_hwm, 1234);
        let mut expect = [(-100i8) as u8; 4];
        expect[class as usize] = 100;
        assert_eq!(raw[i], expect);
    }
    // 36 ms of work: heartbeats at t=18ms (first, after frame 1) and none again before 50 ms.
    assert_eq!(hb.len(), 1);
    assert_eq!((hb[0].frames, hb[0].tiles, hb[0].uptime_ms), (1, 6, 18));
}

#[test]
fn deadline_drops_remaining_tiles_and_counts_them() {
    let clock = FakeClock::new(0);
    let (mut tile, mut smooth) = ([0u8; 8 * 8 * 3], [0f32; 0]);
    let mut c = cfg();
    c.deadline_us = 25_000; // tiles cost 10 ms: tiles start at 0, 10, 20 ms; the 4th (30 ms) is late
    c.heartbeat_us = 1;
    let mut lp = OnboardLoop::new(c, &clock, &mut tile, &mut smooth);
    let mut src = Checker { w: 24, h: 16, left: 3 };
    let mut frame = vec![0u8; 24 * 16 * 3];
    let mut clf = Fake { clock: &clock, cost_us: 10_000, out: [0; 4], calls: 0 };
    let mut link = Vec::new();
    while lp.step(&mut src, &mut frame, &mut clf, &mut link).unwrap() {}
    assert_eq!(clf.calls, 9);
    let (tel, hb, _) = decode(&link);
    assert_eq!(tel.len(), 9);
    assert_eq!((lp.stats.frames, lp.stats.frames_late, lp.stats.tiles_dropped), (3, 3, 9));
    let last = hb.last().unwrap();
    assert_eq!((last.frames_late, last.tiles_dropped, last.tiles), (3, 9, 9));
}

#[test]
fn smoothing_averages_confidence_per_tile_over_frames() {
    struct Flip(u32);
    impl FrameSource for Flip {
        type Error = ();
        fn next_frame(&mut self, buf: &mut [u8]) -> Result<Option<FrameInfo>, ()> {
            if self.0 == 0 {
                return Ok(None);
            }
            self.0 -= 1;
            // mean pixel 1 (class 1) on odd frames, 2 (class 2) on even ones
            buf[..8 * 8 * 3].fill(1 + (self.0 % 2) as u8);
            Ok(Some(FrameInfo { width: 8, height: 8, channels: 3 }))
        }
    }
    let clock = FakeClock::new(0);
    let mut tile = [0u8; 8 * 8 * 3];
    let mut smooth = [0f32; 4];
    let mut c = cfg();
    c.smoothing = Some(0.25);
    c.top_k = 4;
    let mut lp = OnboardLoop::new(c, &clock, &mut tile, &mut smooth);
    let mut clf = Fake { clock: &clock, cost_us: 1, out: [0; 4], calls: 0 };
    let mut link = Vec::new();
    let mut src = Flip(2);
    while lp.step(&mut src, &mut [0u8; 192], &mut clf, &mut link).unwrap() {}
    let (tel, _, _) = decode(&link);
    // Frame 1: class 2 alone (p ≈ 1). Frame 2: class 1 fresh, smoothed 0.25*p1 + 0.75*old: class 2 still leads.
    let p = 1.0 / (1.0 + 3.0 * (-10f32).exp());
    assert_eq!(tel[0].top[0].class, 2);
    assert!(tel[1].smoothed);
    assert_eq!(tel[1].top[0].class, 2, "{:?}", tel[1].top);
    assert!((tel[1].top[0].confidence - (0.75 * p + 0.25 * (1.0 - p) / 3.0)).abs() < 1e-4);
    assert_eq!(tel[1].top[1].class, 1);
}
