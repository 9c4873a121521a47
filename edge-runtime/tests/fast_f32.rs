//! Seeded property tests: the fast f32 kernels (GEMM for dense conv and fully connected, depthwise
//! multiplier 1; portable, and AVX2 + FMA
//! where the CPU has them; one thread and several) agrees with the reference float kernels within
//! f32 rounding, the documented tolerance: `|fast - reference| <= 2e-6 * k + 1e-5 * |reference|` for
//! a reduction of `k` products of inputs and weights in [-1, 1] (sums run in another order, fused).

mod common;
use common::Rng;
use rsim_edge::{required_arena_with, Engine, Kernels, Options};
use rsim_model::write::{encode, input_spec, WeightsBuilder};
use rsim_model::*;

struct Built {
    bytes: Vec<u8>,
    input_len: usize,
    k: usize,
    fast_expected: bool,
}

fn range(rng: &mut Rng, lo: i64, hi: i64) -> i64 {
    lo + (rng.next_u64() % (hi - lo + 1) as u64) as i64
}

fn act_t(id: u16, dims: &[u32], offset: u32) -> Tensor {
    Tensor { id, dtype: DType::F32, shape: Shape::new(dims), storage: Storage::Arena { offset }, quant: Quant::None }
}

fn constant(wb: &mut WeightsBuilder, rng: &mut Rng, id: u16, dims: &[u32], f16: bool) -> Tensor {
    let n: u32 = dims.iter().product();
    let v = rng.vec(n as usize);
    if f16 {
        let b: Vec<u8> = v.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect();
        wb.tensor(id, DType::F16, dims, &b, Quant::None)
    } else {
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        wb.tensor(id, DType::F32, dims, &b, Quant::None)
    }
}

fn activation(rng: &mut Rng) -> Activation {
    [
        Activation::None,
        Activation::Relu,
        Activation::Relu6,
        Activation::HardSwish,
        Activation::Sigmoid,
        Activation::Gelu,
    ][rng.next_u64() as usize % 6]
}

fn finish(
    op: Op,
    input: Tensor,
    output: Tensor,
    wb: WeightsBuilder,
    arena: u32,
    k: usize,
    fast_expected: bool,
) -> Built {
    let info = ModelInfo {
        name: "fast-f32",
        class_names: "",
        input_spec: input_spec(1, 1, &[0.0], &[1.0]),
        input,
        output,
        arena_size: arena,
        op_count: 0,
        provenance: Provenance { method: "test", data: "", commit: "", metrics: "" },
    };
    Built {
        bytes: encode(&info, &[op], &wb.bytes, None),
        input_len: input.shape.checked_len().unwrap(),
        k,
        fast_expected,
    }
}

fn out_dim(i: usize, pa: usize, pb: usize, k: usize, s: usize, d: usize) -> Option<usize> {
    (i + pa + pb).checked_sub(d * (k - 1) + 1).map(|v| v / s + 1)
}

fn conv_case(rng: &mut Rng, big: bool) -> Built {
    loop {
        // Dense mostly, depthwise; grouped convs stay on the reference (compared all the same).
        let kind = rng.next_u64() % 6;
        let n = range(rng, 1, 2) as usize;
        let (h, w) =
            (range(rng, 1, if big { 14 } else { 9 }) as usize, range(rng, 1, if big { 14 } else { 9 }) as usize);
        let c = if big { range(rng, 64, 200) as usize } else { range(rng, 1, 24) as usize };
        let groups = match kind {
            0 if c > 1 => c,
            1 if c % 2 == 0 => 2,
            _ => 1,
        };
        let o = if groups == c && c > 1 { c } else { groups * range(rng, 1, if big { 40 } else { 20 }) as usize };
        // Pointwise convs often: the GEMM reads their input rows in place.
        let pointwise = rng.next_u64().is_multiple_of(4);
        let k = if pointwise { [1, 1] } else { [range(rng, 1, 4) as usize, range(rng, 1, 4) as usize] };
        let stride = if pointwise { [1, 1] } else { [range(rng, 1, 3) as usize, range(rng, 1, 3) as usize] };
        let dil = [range(rng, 1, 2) as usize, range(rng, 1, 2) as usize];
        let pad = [0, 1, 2, 3].map(|i| range(rng, 0, (k[i / 2] - 1) as i64) as usize);
        let (Some(oh), Some(ow)) =
            (out_dim(h, pad[0], pad[1], k[0], stride[0], dil[0]), out_dim(w, pad[2], pad[3], k[1], stride[1], dil[1]))
        else {
            continue;
        };
        let mut wb = WeightsBuilder { bytes: vec![] };
        let f16 = rng.next_u64().is_multiple_of(3);
        let dw = groups == c && c > 1;
        let wdims = if dw { [1, k[0], k[1], o] } else { [o, k[0], k[1], c / groups] };
        let weights = constant(&mut wb, rng, 1, &wdims.map(|v| v as u32), f16);
        let bias = (!rng.next_u64().is_multiple_of(4)).then(|| constant(&mut wb, rng, 2, &[o as u32], f16));
        let in_len = (n * h * w * c * 4) as u32;
        let out_off = in_len.next_multiple_of(16);
        let input = act_t(0, &[n as u32, h as u32, w as u32, c as u32], 0);
        let output = act_t(3, &[n as u32, oh as u32, ow as u32, o as u32], out_off);
        let params = Conv2dParams {
            stride: stride.map(|v| v as u16),
            dilation: dil.map(|v| v as u16),
            padding: Padding { top: pad[0] as u16, bottom: pad[1] as u16, left: pad[2] as u16, right: pad[3] as u16 },
            groups: groups as u32,
            activation: activation(rng),
        };
        let op = Op::Conv2d { input, weights, bias, output, params, requant: None };
        let kk = k[0] * k[1] * c / groups;
        return finish(op, input, output, wb, out_off + (n * oh * ow * o * 4) as u32, kk, groups == 1 || dw);
    }
}

fn fc_case(rng: &mut Rng, big: bool) -> Built {
    let batches = range(rng, 1, 4) as usize;
    let depth = if big { range(rng, 4000, 9000) as usize } else { range(rng, 1, 300) as usize };
    let units = range(rng, 1, 70) as usize;
    let mut wb = WeightsBuilder { bytes: vec![] };
    let f16 = rng.next_u64().is_multiple_of(3);
    let weights = constant(&mut wb, rng, 1, &[units as u32, depth as u32], f16);
    let bias = (!rng.next_u64().is_multiple_of(4)).then(|| constant(&mut wb, rng, 2, &[units as u32], f16));
    let out_off = ((batches * depth * 4) as u32).next_multiple_of(16);
    let input = act_t(0, &[batches as u32, depth as u32], 0);
    let output = act_t(3, &[batches as u32, units as u32], out_off);
    let op = Op::FullyConnected { input, weights, bias, output, activation: activation(rng), requant: None };
    finish(op, input, output, wb, out_off + (batches * units * 4) as u32, depth, true)
}

fn run(m: &Built, x: &[f32], opts: Options) -> (Vec<f32>, usize) {
    let mut arena = vec![0u8; required_arena_with(&m.bytes, &opts).unwrap() + 16];
    let mut e = Engine::with_options(&m.bytes, &mut arena, opts).expect("the engine accepts the generated op");
    e.run_f32(x).expect("run");
    let mut out = vec![0f32; e.output_len()];
    e.output_f32(&mut out).unwrap();
    (out, e.report().fast_ops)
}

fn check(m: &Built, rng: &mut Rng, what: &str) {
    let x = rng.vec(m.input_len);
    let (want, fast) = run(m, &x, Options { kernels: Kernels::Reference, ..Options::default() });
    assert_eq!(fast, 0, "{what}: the reference engine ran a fast kernel");
    for (kernels, threads) in [(Kernels::Portable, 1), (Kernels::Native, 1), (Kernels::Native, 3)] {
        let (got, fast) = run(m, &x, Options { kernels, threads, lean: false, max_macs: None });
        if m.fast_expected {
            assert_eq!(fast, 1, "{what}: no fast kernel took a dense/depthwise f32 conv or fc ({kernels:?})");
        }
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            let tol = 2e-6 * m.k as f32 + 1e-5 * w.abs();
            assert!(
                (g - w).abs() <= tol,
                "{what}: {kernels:?} x{threads} element {i}: {g} vs reference {w} (tolerance {tol})"
            );
        }
    }
}

#[test]
fn fast_f32_conv_agrees_with_the_reference() {
    let mut rng = Rng::new(0xF32);
    for i in 0..300 {
        check(&conv_case(&mut rng, false), &mut rng, &format!("conv case {i}"));
    }
    for i in 0..8 {
        check(&conv_case(&mut rng, true), &mut rng, &format!("large conv case {i}"));
    }
}

#[test]
fn fast_f32_fully_connected_agrees_with_the_reference() {
    let mut rng = Rng::new(0xFC32);
    for i in 0..200 {
        check(&fc_case(&mut rng, false), &mut rng, &format!("fc case {i}"));
    }
    for i in 0..4 {
        check(&fc_case(&mut rng, true), &mut rng, &format!("long fc case {i}"));
    }
}
