//! Check firmware for the Cortex-M4 DSP int8 kernel (`rsim_edge::kernels::fast::cortex_m`): seeded
//! random dense convs (shapes, strides, paddings, dilations, zero points, bias, per-tensor and
//! per-channel multipliers including hostile ones, activation clamps) and fully connected layers, each
//! through the TFLM-exact reference (`kernels::int8::conv::conv`, `fc::fully_connected`) and the DSP
//! kernel; every output byte compared. Then mutants (a wrong input offset, one flipped weight bit) are
//! run on some cases to show the comparison catches a broken kernel.
//!
//! Prints over semihosting `DSP_MISMATCH ...` (first few), `DSP_SUMMARY ...`, `DSP_MUTANTS ...` and
//! `DSP_DONE`; exits with failure when any byte differs. Run by `tests/tests/cortex_m_dsp.rs`.
#![no_std]
#![no_main]

use core::fmt::Write;
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hio};
use rsim_edge::kernels::fast::cortex_m as dsp;
use rsim_edge::kernels::fast::gemm::GemmGeom;
use rsim_edge::kernels::fast::requant::split_shift;
use rsim_edge::kernels::int8::conv::{conv, ConvGeom};
use rsim_edge::kernels::int8::fc::fully_connected;
use rsim_edge::kernels::int8::fixedpoint::multiply_by_quantized_multiplier;
use rsim_edge::kernels::int8::{Mults, OutStage};

/// Cases run (`RSIM_DSP_CASES` at build time overrides) and the seed (`RSIM_DSP_SEED`).
const CASES: u32 = parse(option_env!("RSIM_DSP_CASES"), 400);
const SEED: u32 = parse(option_env!("RSIM_DSP_SEED"), 0x5eed);

const XN: usize = 16 * 1024;
const WN: usize = 40 * 1024;
const ON: usize = 8 * 1024;
const CN: usize = 96;

const fn parse(s: Option<&str>, default: u32) -> u32 {
    let Some(s) = s else { return default };
    let b = s.as_bytes();
    if b.is_empty() {
        return default;
    }
    let mut v = 0u32;
    let mut i = 0;
    while i < b.len() {
        assert!(b[i].is_ascii_digit(), "RSIM_DSP_CASES / RSIM_DSP_SEED must be decimal");
        v = v * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    v
}

/// The workspace's one seeded generator (rsim-model's SplitMix64, no_std).
use rsim_model::rng::SplitMix64 as Rng;

/// Shorthand for the sizes drawn below: uniform in `lo..=hi`.
trait Draw {
    fn u(&mut self, lo: usize, hi: usize) -> usize;
}

impl Draw for Rng {
    fn u(&mut self, lo: usize, hi: usize) -> usize {
        self.range_i64(lo as i64, hi as i64) as usize
    }
}

/// One random case's shapes (an FC is a 1x1 geometry with one pixel per batch row).
#[derive(Clone, Copy)]
struct Shape {
    fc: bool,
    n: usize,
    ih: usize,
    iw: usize,
    ic: usize,
    oh: usize,
    ow: usize,
    oc: usize,
    kh: usize,
    kw: usize,
    stride: [usize; 2],
    dil: [usize; 2],
    pad: [usize; 2],
}

impl Shape {
    fn x_len(&self) -> usize {
        self.n * self.ih * self.iw * self.ic
    }
    fn w_len(&self) -> usize {
        self.oc * self.kh * self.kw * self.ic
    }
    fn out_len(&self) -> usize {
        self.n * self.oh * self.ow * self.oc
    }
    fn gemm(&self) -> GemmGeom {
        let u = |v: usize| v as u32;
        GemmGeom {
            batch: u(self.n),
            in_h: u(self.ih),
            in_w: u(self.iw),
            in_c: u(self.ic),
            out_h: u(self.oh),
            out_w: u(self.ow),
            out_c: u(self.oc),
            k_h: u(self.kh),
            k_w: u(self.kw),
            stride: [u(self.stride[0]), u(self.stride[1])],
            dilation: [u(self.dil[0]), u(self.dil[1])],
            pad: [u(self.pad[0]), u(self.pad[1])],
        }
    }
    fn conv(&self) -> ConvGeom {
        ConvGeom {
            input: [self.n, self.ih, self.iw, self.ic],
            output: [self.n, self.oh, self.ow, self.oc],
            kernel: [self.kh, self.kw],
            stride: self.stride,
            dilation: self.dil,
            pad: self.pad,
        }
    }
}

/// Output size along one axis (TFLite's, with explicit padding), `None` when the kernel does not fit.
fn out_size(i: usize, p0: usize, p1: usize, k: usize, s: usize, d: usize) -> Option<usize> {
    let eff = d * (k - 1) + 1;
    (i + p0 + p1).checked_sub(eff).map(|v| v / s + 1)
}

fn random_shape(rng: &mut Rng, case: u32) -> Shape {
    loop {
        let kind = case % 8;
        let fc = kind == 6;
        let (n, mut ih, mut iw, ic, oc, kh, kw);
        let (mut stride, mut dil, mut pads) = ([1, 1], [1, 1], [0usize; 4]);
        match kind {
            // Long reductions: chunked over KC, channel groups over CG.
            4 => {
                n = 1;
                ih = rng.u(2, 6);
                iw = rng.u(2, 6);
                ic = rng.u(36, 90);
                oc = rng.u(1, 72);
                kh = 3;
                kw = rng.u(2, 3);
                pads = [rng.u(0, 1), rng.u(0, 1), rng.u(0, 1), rng.u(0, 1)];
                stride = [rng.u(1, 2), rng.u(1, 2)];
            }
            // MLPerf-IC-like 3x3 layers.
            5 => {
                n = 1;
                ih = rng.u(3, 8);
                iw = rng.u(3, 8);
                ic = [3, 16, 32, 8, 4][rng.u(0, 4)];
                oc = [16, 32, 8, 17][rng.u(0, 3)];
                kh = 3;
                kw = 3;
                pads = [1, 1, 1, 1];
                stride = [rng.u(1, 2); 2];
            }
            6 => {
                n = rng.u(1, 3);
                ih = 1;
                iw = 1;
                ic = rng.u(1, 700);
                oc = rng.u(1, 40);
                kh = 1;
                kw = 1;
            }
            // 1x1 convs.
            7 => {
                n = rng.u(1, 2);
                ih = rng.u(1, 9);
                iw = rng.u(1, 9);
                ic = rng.u(1, 40);
                oc = rng.u(1, 40);
                kh = 1;
                kw = 1;
                stride = [rng.u(1, 2), rng.u(1, 2)];
            }
            _ => {
                n = rng.u(1, 2);
                ih = rng.u(1, 9);
                iw = rng.u(1, 9);
                ic = rng.u(1, 13);
                oc = rng.u(1, 13);
                kh = rng.u(1, 5);
                kw = rng.u(1, 5);
                stride = [rng.u(1, 3), rng.u(1, 3)];
                dil = [rng.u(1, 3), rng.u(1, 3)];
                pads = [rng.u(0, 3), rng.u(0, 3), rng.u(0, 3), rng.u(0, 3)];
            }
        }
        if fc {
            ih = 1;
            iw = 1;
        }
        let (Some(oh), Some(ow)) = (
            out_size(ih, pads[0], pads[1], kh, stride[0], dil[0]),
            out_size(iw, pads[2], pads[3], kw, stride[1], dil[1]),
        ) else {
            continue;
        };
        let s = Shape { fc, n, ih, iw, ic, oh, ow, oc, kh, kw, stride, dil, pad: [pads[0], pads[2]] };
        if s.x_len() <= XN && s.w_len() <= WN && s.out_len() <= ON && oc <= CN {
            return s;
        }
    }
}

struct Buffers {
    x: [u8; XN],
    w: [u8; WN],
    bias: [u8; CN * 4],
    mult: [u8; CN * 4],
    shift: [u8; CN * 4],
    out_ref: [u8; ON],
    out_dsp: [u8; ON],
}

#[derive(Default)]
struct Tally {
    cases: u32,
    conv: u32,
    fc: u32,
    chunked: u32,
    bytes: u32,
    unclamped: u32,
    mismatches: u32,
    mutants_tried: u32,
    mutants_caught: u32,
}

fn fill_bytes(rng: &mut Rng, dst: &mut [u8]) {
    match rng.u(0, 11) {
        0 => dst.fill(0x80),
        1 => dst.fill(0x7f),
        _ => {
            for d in dst.iter_mut() {
                *d = rng.next_u64() as u8;
            }
        }
    }
}

fn put_i32(dst: &mut [u8], i: usize, v: i32) {
    dst[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
}

/// The reference's output for the case (conv or FC).
#[allow(clippy::too_many_arguments)]
fn reference(
    s: &Shape,
    x: &[u8],
    w: &[u8],
    in_zp: i32,
    bias: Option<&[u8]>,
    stage: &OutStage<'_>,
    out: &mut [u8],
) -> Result<(), &'static str> {
    if s.fc {
        fully_connected(s.n, s.ic, s.oc, x, in_zp, w, 0, bias, stage, out)
    } else {
        conv(&s.conv(), 1, x, in_zp, w, bias, stage, out)
    }
}

/// `dsp::requantize` (SRDHM as one rounding shift) against the reference's
/// `multiply_by_quantized_multiplier` on edge values and random ones, every shift in -40..=40.
/// Returns (pairs checked, mismatches).
#[allow(clippy::needless_range_loop)] // indices past EDGE draw random values
fn check_requantize(rng: &mut Rng) -> (u32, u32) {
    const EDGE: [i32; 12] = [0, 1, -1, 2, -2, i32::MAX, i32::MIN, i32::MIN + 1, 1 << 30, -(1 << 30), 1_552_512_760, -7];
    let (mut n, mut bad) = (0u32, 0u32);
    for shift in -40..=40 {
        let (left, right) = split_shift(shift);
        for i in 0..12 + 40 {
            for j in 0..12 + 40 {
                let x = if i < 12 { EDGE[i] } else { rng.next_u64() as i32 };
                let m = if j < 12 { EDGE[j] } else { rng.next_u64() as i32 };
                n += 1;
                if dsp::requantize(x, m, left, right) != multiply_by_quantized_multiplier(x, m, shift) {
                    bad += 1;
                }
            }
        }
    }
    (n, bad)
}

fn run(o: &mut Option<hio::HostStream>) -> Result<Tally, &'static str> {
    let mut b = Buffers {
        x: [0; XN],
        w: [0; WN],
        bias: [0; CN * 4],
        mult: [0; CN * 4],
        shift: [0; CN * 4],
        out_ref: [0; ON],
        out_dsp: [0; ON],
    };
    let mut t = Tally::default();
    let mut rng = Rng(SEED as u64);
    let (pairs, bad) = check_requantize(&mut rng);
    if let Some(o) = o.as_mut() {
        let _ = writeln!(o, "DSP_REQUANT pairs={pairs} mismatches={bad}");
    }
    t.mismatches += bad;
    for case in 0..CASES {
        let s = random_shape(&mut rng, case);
        fill_bytes(&mut rng, &mut b.x[..s.x_len()]);
        fill_bytes(&mut rng, &mut b.w[..s.w_len()]);
        let in_zp = match rng.u(0, 5) {
            0 => -128,
            1 => 127,
            2 => 0,
            _ => rng.range_i64(-128, 127) as i32,
        };
        let out_zp = rng.range_i64(-128, 127) as i32;
        // Multipliers: realistic (Q31 in [0.5, 1), right shifts), or hostile (any i32, shifts -40..40).
        let hostile = rng.one_in(4);
        let per_channel = !rng.one_in(4);
        for c in 0..s.oc {
            let (m, sh) = if hostile {
                (rng.next_u64() as i32, rng.range_i64(-40, 40) as i32)
            } else {
                (rng.range_i64(1 << 30, i32::MAX as i64) as i32, rng.range_i64(-15, 1) as i32)
            };
            put_i32(&mut b.mult, c, m);
            put_i32(&mut b.shift, c, sh);
        }
        let mult = if per_channel {
            Mults::PerChannel { mult: &b.mult[..s.oc * 4], shift: &b.shift[..s.oc * 4] }
        } else {
            let g = |a: &[u8]| i32::from_le_bytes([a[0], a[1], a[2], a[3]]);
            Mults::PerTensor(g(&b.mult), g(&b.shift))
        };
        let (act_min, act_max) = if rng.one_in(4) {
            let a = rng.range_i64(-128, 127) as i32;
            let c = rng.range_i64(-128, 127) as i32;
            (a.min(c), a.max(c))
        } else {
            (-128, 127)
        };
        let stage = OutStage { mult, out_zp, act_min, act_max };
        let bias_mode = rng.u(0, 7);
        for c in 0..s.oc {
            let v = match bias_mode {
                0 => [i32::MIN, i32::MAX, -1, 0][rng.u(0, 3)],
                1 => rng.next_u64() as i32,
                _ => rng.range_i64(-(1 << 20), 1 << 20) as i32,
            };
            put_i32(&mut b.bias, c, v);
        }
        let bias = if bias_mode == 7 { None } else { Some(&b.bias[..s.oc * 4]) };

        let len = s.out_len();
        b.out_ref[..len].fill(0x55);
        b.out_dsp[..len].fill(0xaa);
        let (x, w) = (&b.x[..s.x_len()], &b.w[..s.w_len()]);
        {
            let (r, d) = (&mut b.out_ref[..len], &mut b.out_dsp[..len]);
            reference(&s, x, w, in_zp, bias, &stage, r)?;
            dsp::conv(&s.gemm(), -in_zp, x, w, bias, &stage, d)?;
        }
        let k = s.kh * s.kw * s.ic;
        t.cases += 1;
        if s.fc {
            t.fc += 1;
        } else {
            t.conv += 1;
        }
        if k.div_ceil(4) * 4 > dsp::KC {
            t.chunked += 1;
        }
        t.bytes += len as u32;
        let mut reported = false;
        for (i, (&r, &d)) in b.out_ref[..len].iter().zip(&b.out_dsp[..len]).enumerate() {
            let v = r as i8 as i32;
            if v != act_min && v != act_max {
                t.unclamped += 1;
            }
            if r != d {
                t.mismatches += 1;
                if !reported && t.mismatches < 20 {
                    reported = true;
                    if let Some(o) = o.as_mut() {
                        let _ = writeln!(
                            o,
                            "DSP_MISMATCH case={case} fc={} n={} in={}x{}x{} out={}x{}x{} k={}x{} stride={:?} dil={:?} pad={:?} in_zp={in_zp} at={i} ref={} dsp={}",
                            s.fc, s.n, s.ih, s.iw, s.ic, s.oh, s.ow, s.oc, s.kh, s.kw, s.stride, s.dil, s.pad, r as i8, d as i8
                        );
                    }
                }
            }
        }

        // Mutants on every 4th case: the same comparison must see them. Only mutations that change the
        // reference's output count, so a correct kernel catches every one (caught == tried).
        if case % 4 == 0 {
            // (a) an input offset off by one (counted when the reference's output depends on it).
            let zp2 = if in_zp == 127 { 126 } else { in_zp + 1 };
            reference(&s, x, w, zp2, bias, &stage, &mut b.out_dsp[..len])?;
            if b.out_dsp[..len] != b.out_ref[..len] {
                t.mutants_tried += 1;
                dsp::conv(&s.gemm(), -zp2, x, w, bias, &stage, &mut b.out_dsp[..len])?;
                if b.out_dsp[..len] != b.out_ref[..len] {
                    t.mutants_caught += 1;
                }
            }
            // (b) one weight bit flipped (the reference is rerun on the mutated weights to know
            // whether the flip changes the output at all; only such flips count).
            let j = rng.u(0, s.w_len() - 1);
            let bit = 1u8 << rng.u(0, 7);
            b.w[j] ^= bit;
            let (x, w) = (&b.x[..s.x_len()], &b.w[..s.w_len()]);
            reference(&s, x, w, in_zp, bias, &stage, &mut b.out_dsp[..len])?;
            let changes = b.out_dsp[..len] != b.out_ref[..len];
            b.out_dsp[..len].fill(0);
            // DSP kernel with the flipped weight, compared against the unflipped reference.
            dsp::conv(&s.gemm(), -in_zp, x, w, bias, &stage, &mut b.out_dsp[..len])?;
            if changes {
                t.mutants_tried += 1;
                if b.out_dsp[..len] != b.out_ref[..len] {
                    t.mutants_caught += 1;
                }
            }
            b.w[j] ^= bit;
        }
    }
    Ok(t)
}

#[entry]
fn main() -> ! {
    let mut o = hio::hstdout().ok();
    let code = match run(&mut o) {
        Ok(t) => {
            if let Some(o) = o.as_mut() {
                let _ = writeln!(
                    o,
                    "DSP_SUMMARY seed={SEED} cases={} conv={} fc={} chunked={} bytes={} unclamped={} mismatches={}",
                    t.cases, t.conv, t.fc, t.chunked, t.bytes, t.unclamped, t.mismatches
                );
                let _ = writeln!(o, "DSP_MUTANTS tried={} caught={}", t.mutants_tried, t.mutants_caught);
                let _ = writeln!(o, "DSP_DONE");
            }
            if t.mismatches == 0 && t.cases > 0 {
                debug::EXIT_SUCCESS
            } else {
                debug::EXIT_FAILURE
            }
        }
        Err(msg) => {
            if let Some(o) = o.as_mut() {
                let _ = writeln!(o, "DSP_ERROR {msg}");
            }
            debug::EXIT_FAILURE
        }
    };
    debug::exit(code);
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    if let Ok(mut o) = hio::hstdout() {
        let _ = writeln!(o, "DSP_ERROR panic: {info}");
    }
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
