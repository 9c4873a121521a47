//! Seeded property tests: every fast int8 kernel (packed GEMM for dense conv and fully connected,
//! depthwise channel runs; portable and the CPU's native instruction set, one thread and several; on
//! aarch64 both the dot-product `sdot` GEMM, where the CPU has it, and the NEON `smlal` one)
//! gives exactly the bytes of the TFLM-exact reference kernels, over random shapes, strides,
//! paddings, dilations, zero points, clamps and per-tensor or per-channel multipliers (including
//! hostile multipliers and shifts no converter would write).

mod common;
use common::Rng;
use rsim_edge::{required_arena_with, Engine, Kernels, Options};
use rsim_model::write::{encode, input_spec, WeightsBuilder};
use rsim_model::*;

struct Built {
    bytes: Vec<u8>,
    input_len: usize,
    /// Whether a fast kernel must take this op (a shape the fast paths claim).
    fast_expected: bool,
}

fn act(id: u16, dims: &[u32], offset: u32, zp: i32) -> Tensor {
    Tensor {
        id,
        dtype: DType::I8,
        shape: Shape::new(dims),
        storage: Storage::Arena { offset },
        quant: Quant::PerTensor { scale: 0.05, zero_point: zp },
    }
}

fn rand_i8(rng: &mut Rng, n: usize) -> Vec<i8> {
    // Mostly uniform, sometimes the extremes (the i16 pair products' worst cases).
    (0..n)
        .map(|_| match rng.next_u64() % 16 {
            0 => -128,
            1 => 127,
            _ => rng.next_u64() as i8,
        })
        .collect()
}

fn range(rng: &mut Rng, lo: i64, hi: i64) -> i64 {
    lo + (rng.next_u64() % (hi - lo + 1) as u64) as i64
}

/// Requantization: usually converter-like multipliers, sometimes anything.
fn requant(rng: &mut Rng, wb: &mut WeightsBuilder, channels: usize) -> Requant {
    let hostile = rng.next_u64().is_multiple_of(8);
    let one = |rng: &mut Rng| -> (i32, i32) {
        if hostile {
            (rng.next_u64() as i32, range(rng, -40, 40) as i32)
        } else {
            (range(rng, 1 << 30, i32::MAX as i64) as i32, range(rng, -12, 1) as i32)
        }
    };
    let multiplier = if rng.next_u64().is_multiple_of(3) {
        let (mult, shift) = one(rng);
        Multiplier::PerTensor { mult, shift }
    } else {
        let (m, s): (Vec<i32>, Vec<i32>) = (0..channels).map(|_| one(rng)).unzip();
        Multiplier::PerChannel { mult: wb.push_i32(&m), shift: wb.push_i32(&s) }
    };
    let (act_min, act_max) = if rng.next_u64().is_multiple_of(3) {
        (range(rng, -128, 0) as i32, range(rng, 0, 127) as i32)
    } else {
        (-128, 127)
    };
    Requant { multiplier, act_min, act_max }
}

fn bias(rng: &mut Rng, wb: &mut WeightsBuilder, channels: usize, id: u16) -> Option<Tensor> {
    if rng.next_u64().is_multiple_of(5) {
        return None;
    }
    let big = rng.next_u64().is_multiple_of(6);
    let b: Vec<i32> =
        (0..channels).map(|_| if big { rng.next_u64() as i32 } else { range(rng, -40_000, 40_000) as i32 }).collect();
    let bytes: Vec<u8> = b.iter().flat_map(|v| v.to_le_bytes()).collect();
    Some(wb.tensor(id, DType::I32, &[channels as u32], &bytes, Quant::None))
}

fn finish(op: Op, input: Tensor, output: Tensor, wb: WeightsBuilder, arena: u32, fast_expected: bool) -> Built {
    let info = ModelInfo {
        name: "fast",
        class_names: "",
        input_spec: input_spec(1, 1, &[0.0], &[1.0]),
        input,
        output,
        arena_size: arena,
        op_count: 0,
        provenance: Provenance { method: "test", data: "", commit: "", metrics: "" },
    };
    Built { bytes: encode(&info, &[op], &wb.bytes, None), input_len: input.shape.checked_len().unwrap(), fast_expected }
}

fn out_dim(i: usize, pa: usize, pb: usize, k: usize, s: usize, d: usize) -> Option<usize> {
    (i + pa + pb).checked_sub(d * (k - 1) + 1).map(|v| v / s + 1)
}

/// A random Conv2d: dense, or depthwise (multiplier 1 mostly, sometimes 2: a reference-only shape).
fn conv_case(rng: &mut Rng, big: bool) -> Built {
    loop {
        let depthwise = rng.next_u64().is_multiple_of(3);
        let n = range(rng, 1, 2) as usize;
        let (h, w) = if big {
            (range(rng, 6, 14) as usize, range(rng, 6, 14) as usize)
        } else {
            (range(rng, 1, 9) as usize, range(rng, 1, 9) as usize)
        };
        // Multiples of 16 channels often: the AVX2 im2col has its own path for them.
        let c = if big {
            range(rng, 64, 300) as usize
        } else if rng.next_u64().is_multiple_of(3) {
            16 * range(rng, 1, 3) as usize
        } else {
            range(rng, 1, 40) as usize
        };
        let mult = if depthwise && rng.next_u64().is_multiple_of(4) { 2 } else { 1 };
        let o = if depthwise {
            c * mult
        } else if big {
            range(rng, 8, 80) as usize
        } else {
            range(rng, 1, 40) as usize
        };
        let k = [range(rng, 1, 5) as usize, range(rng, 1, 5) as usize];
        let stride = [range(rng, 1, 3) as usize, range(rng, 1, 3) as usize];
        let dil = [range(rng, 1, 3) as usize, range(rng, 1, 3) as usize];
        let pad = [0, 1, 2, 3].map(|i| range(rng, 0, (k[i / 2] - 1) as i64) as usize);
        let (Some(oh), Some(ow)) =
            (out_dim(h, pad[0], pad[1], k[0], stride[0], dil[0]), out_dim(w, pad[2], pad[3], k[1], stride[1], dil[1]))
        else {
            continue;
        };
        if depthwise && c == 1 {
            continue;
        }
        let mut wb = WeightsBuilder { bytes: vec![] };
        let wdims = if depthwise { [1, k[0], k[1], o] } else { [o, k[0], k[1], c] };
        let wn: usize = wdims.iter().product();
        let wdata: Vec<u8> = rand_i8(rng, wn).iter().map(|&v| v as u8).collect();
        let scales = wb.push_f32(&vec![0.01; o]);
        let weights = wb.tensor(
            1,
            DType::I8,
            &wdims.map(|v| v as u32),
            &wdata,
            Quant::PerChannel { axis: if depthwise { 3 } else { 0 }, scales },
        );
        let bias = bias(rng, &mut wb, o, 2);
        let requant = Some(requant(rng, &mut wb, o));
        let in_len = (n * h * w * c) as u32;
        let out_off = in_len.next_multiple_of(16);
        let input = act(0, &[n as u32, h as u32, w as u32, c as u32], 0, range(rng, -128, 127) as i32);
        let output = act(3, &[n as u32, oh as u32, ow as u32, o as u32], out_off, range(rng, -128, 127) as i32);
        let params = Conv2dParams {
            stride: stride.map(|v| v as u16),
            dilation: dil.map(|v| v as u16),
            padding: Padding { top: pad[0] as u16, bottom: pad[1] as u16, left: pad[2] as u16, right: pad[3] as u16 },
            groups: if depthwise { c as u32 } else { 1 },
            activation: Activation::None,
        };
        let op = Op::Conv2d { input, weights, bias, output, params, requant };
        let arena = out_off + (n * oh * ow * o) as u32;
        return finish(op, input, output, wb, arena, mult == 1);
    }
}

fn fc_case(rng: &mut Rng, big: bool) -> Built {
    let batches = range(rng, 1, 4) as usize;
    let depth = if big { range(rng, 4000, 9000) as usize } else { range(rng, 1, 300) as usize };
    let units = range(rng, 1, 70) as usize;
    let mut wb = WeightsBuilder { bytes: vec![] };
    let wdata: Vec<u8> = rand_i8(rng, units * depth).iter().map(|&v| v as u8).collect();
    let weights =
        wb.tensor(1, DType::I8, &[units as u32, depth as u32], &wdata, Quant::PerTensor { scale: 0.01, zero_point: 0 });
    let bias = bias(rng, &mut wb, units, 2);
    let requant = Some(requant(rng, &mut wb, units));
    let in_len = (batches * depth) as u32;
    let out_off = in_len.next_multiple_of(16);
    let input = act(0, &[batches as u32, depth as u32], 0, range(rng, -128, 127) as i32);
    let output = act(3, &[batches as u32, units as u32], out_off, range(rng, -128, 127) as i32);
    let op = Op::FullyConnected { input, weights, bias, output, activation: Activation::None, requant };
    finish(op, input, output, wb, out_off + (batches * units) as u32, true)
}

/// Runs `m` on `x` with the given options; returns the output bytes and whether a fast kernel ran.
fn run(m: &Built, x: &[u8], opts: Options) -> (Vec<u8>, usize) {
    let mut arena = vec![0u8; required_arena_with(&m.bytes, &opts).unwrap() + 16];
    let mut e = Engine::with_options(&m.bytes, &mut arena, opts).expect("the engine accepts the generated op");
    e.input_mut().copy_from_slice(x);
    e.invoke().expect("invoke");
    (e.output().to_vec(), e.report().fast_ops)
}

fn check(m: &Built, rng: &mut Rng, what: &str) {
    let x: Vec<u8> = rand_i8(rng, m.input_len).iter().map(|&v| v as u8).collect();
    let reference = Options { kernels: Kernels::Reference, ..Options::default() };
    let (want, fast) = run(m, &x, reference);
    assert_eq!(fast, 0, "{what}: the reference engine ran a fast kernel");
    for (kernels, threads) in
        [(Kernels::Portable, 1), (Kernels::Native, 1), (Kernels::NativeNoDotProd, 1), (Kernels::Native, 3)]
    {
        let (got, fast) = run(m, &x, Options { kernels, threads, lean: false, max_macs: None });
        if m.fast_expected {
            assert_eq!(fast, 1, "{what}: no fast kernel took a shape the fast paths claim ({kernels:?})");
        }
        assert!(got == want, "{what}: {kernels:?} x{threads} differs from the reference");
    }
}

/// The instruction set each kernel choice runs. On aarch64 `Native` takes the dot-product GEMM exactly
/// when the CPU reports the extension and `NativeNoDotProd` never does, so both are compared above on a
/// CPU with it (qemu-aarch64's default `max`), and `smlal` alone on one without (`QEMU_CPU=cortex-a57`).
/// `RSIM_EXPECT_ISA=<name>` makes a run fail unless `Native` chose that one (a CI guard that the `sdot`
/// path really ran).
#[test]
fn native_kernels_use_the_cpus_instruction_set() {
    let m = fc_case(&mut Rng::new(1), false);
    let isa = |kernels| {
        let opts = Options { kernels, ..Options::default() };
        let mut arena = vec![0u8; required_arena_with(&m.bytes, &opts).unwrap() + 16];
        let e = Engine::with_options(&m.bytes, &mut arena, opts).unwrap();
        assert_eq!(e.report().fast_ops, 1, "{kernels:?}: the fully connected op is not on a fast kernel");
        e.report().isa
    };
    let native = isa(Kernels::Native);
    eprintln!("native kernels: {native}");
    assert_eq!(isa(Kernels::Portable), "portable");
    #[cfg(target_arch = "aarch64")]
    {
        let dot = std::arch::is_aarch64_feature_detected!("dotprod");
        assert_eq!(native, if dot { "neon-dotprod" } else { "neon" });
        assert_eq!(isa(Kernels::NativeNoDotProd), "neon");
    }
    #[cfg(not(target_arch = "aarch64"))]
    assert_eq!(isa(Kernels::NativeNoDotProd), native);
    if let Ok(want) = std::env::var("RSIM_EXPECT_ISA") {
        assert_eq!(native, want, "RSIM_EXPECT_ISA");
    }
}

#[test]
fn fast_conv_kernels_equal_the_reference_bytes() {
    let mut rng = Rng::new(0xC0FFEE);
    for i in 0..400 {
        let m = conv_case(&mut rng, false);
        check(&m, &mut rng, &format!("conv case {i}"));
    }
}

#[test]
fn fast_conv_kernels_on_large_layers_chunks_and_threads() {
    // Reductions longer than one gathered chunk (k > 4608 for 5x5 taps over 300 channels), and enough
    // MACs to split over threads.
    let mut rng = Rng::new(7);
    for i in 0..12 {
        let m = conv_case(&mut rng, true);
        check(&m, &mut rng, &format!("large conv case {i}"));
    }
}

#[test]
fn fast_fully_connected_equals_the_reference_bytes() {
    let mut rng = Rng::new(0xFC);
    for i in 0..300 {
        let m = fc_case(&mut rng, false);
        check(&m, &mut rng, &format!("fc case {i}"));
    }
    for i in 0..6 {
        let m = fc_case(&mut rng, true);
        check(&m, &mut rng, &format!("long fc case {i}"));
    }
}

fn add_case(rng: &mut Rng) -> Built {
    let dims = [range(rng, 1, 2) as u32, range(rng, 1, 9) as u32, range(rng, 1, 9) as u32, range(rng, 1, 40) as u32];
    // Every fourth case broadcasts b over H and W (the reference's job; compared all the same).
    let broadcast = rng.next_u64().is_multiple_of(4);
    let bdims = if broadcast { [dims[0], 1, 1, dims[3]] } else { dims };
    let len: u32 = dims.iter().product();
    let blen: u32 = bdims.iter().product();
    let hostile = rng.next_u64().is_multiple_of(8);
    let m = |rng: &mut Rng| if hostile { rng.next_u64() as i32 } else { range(rng, 1 << 30, i32::MAX as i64) as i32 };
    let s = |rng: &mut Rng| if hostile { range(rng, -40, 40) as i32 } else { range(rng, -20, 0) as i32 };
    let (act_min, act_max) = if rng.next_u64().is_multiple_of(3) {
        (range(rng, -128, 0) as i32, range(rng, 0, 127) as i32)
    } else {
        (-128, 127)
    };
    let quant = BinaryQuant {
        left_shift: if hostile { range(rng, -5, 40) as i32 } else { 20 },
        a_mult: m(rng),
        a_shift: s(rng),
        b_mult: m(rng),
        b_shift: s(rng),
        out_mult: m(rng),
        out_shift: s(rng),
        act_min,
        act_max,
    };
    // Input: a then b packed in one tensor region; the graph input is `a` only, so b sits in the
    // weights as a constant (the kernels read both the same way).
    let mut wb = WeightsBuilder { bytes: vec![] };
    let bdata: Vec<u8> = rand_i8(rng, blen as usize).iter().map(|&v| v as u8).collect();
    let mut b = wb.tensor(
        1,
        DType::I8,
        &bdims,
        &bdata,
        Quant::PerTensor { scale: 0.05, zero_point: range(rng, -128, 127) as i32 },
    );
    b.quant = Quant::PerTensor { scale: 0.05, zero_point: range(rng, -128, 127) as i32 };
    let out_off = len.next_multiple_of(16);
    let a = act(0, &dims, 0, range(rng, -128, 127) as i32);
    let output = act(3, &dims, out_off, range(rng, -128, 127) as i32);
    let op = Op::Add { a, b, output, activation: Activation::None, quant: Some(quant) };
    finish(op, a, output, wb, out_off + len, !broadcast)
}

#[test]
fn fast_add_equals_the_reference_bytes() {
    let mut rng = Rng::new(0xADD);
    for i in 0..400 {
        let m = add_case(&mut rng);
        check(&m, &mut rng, &format!("add case {i}"));
    }
}

/// A fixed 3x3 conv of ~75 M MACs: large enough that 3 threads each get their minimum share, so the
/// split path runs (and must give the one-thread bytes).
fn large_conv(rng: &mut Rng) -> Built {
    let (h, w, c, o) = (16u32, 16u32, 256u32, 128u32);
    let mut wb = WeightsBuilder { bytes: vec![] };
    let wdata: Vec<u8> = rand_i8(rng, (o * 9 * c) as usize).iter().map(|&v| v as u8).collect();
    let scales = wb.push_f32(&vec![0.01; o as usize]);
    let weights = wb.tensor(1, DType::I8, &[o, 3, 3, c], &wdata, Quant::PerChannel { axis: 0, scales });
    let bias = bias(rng, &mut wb, o as usize, 2);
    let requant = Some(Requant {
        multiplier: Multiplier::PerTensor { mult: 1_500_000_000, shift: -9 },
        act_min: -128,
        act_max: 127,
    });
    let out_off = (h * w * c).next_multiple_of(16);
    let input = act(0, &[1, h, w, c], 0, 5);
    let output = act(3, &[1, h, w, o], out_off, -3);
    let params = Conv2dParams {
        stride: [1, 1],
        dilation: [1, 1],
        padding: Padding { top: 1, bottom: 1, left: 1, right: 1 },
        groups: 1,
        activation: Activation::None,
    };
    let op = Op::Conv2d { input, weights, bias, output, params, requant };
    finish(op, input, output, wb, out_off + h * w * o, true)
}

#[test]
fn threads_split_large_layers_bit_identically() {
    let mut rng = Rng::new(3);
    let m = large_conv(&mut rng);
    check(&m, &mut rng, "large 3x3 conv over threads");
}
