//! Seeded mutations of a valid float model, with the CRC (and length) fixed up afterwards so they
//! get past the container checks and reach the engine's prepare pass and kernels. Every case must
//! end in an error or a normal run: never a panic or an out-of-bounds access.

mod common;
use common::Rng;
use rsim_edge::Engine;
use rsim_model::write::{encode, input_spec, WeightsBuilder};
use rsim_model::*;

/// CRC-32 (IEEE), written here so the test does not depend on the writer's implementation.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn t(id: u16, dims: &[u32], offset: u32) -> Tensor {
    Tensor { id, dtype: DType::F32, shape: Shape::new(dims), storage: Storage::Arena { offset }, quant: Quant::None }
}

/// Conv (depthwise) -> max pool -> transpose -> matmul with a constant -> layer norm -> concat -> softmax.
fn model() -> Vec<u8> {
    let mut wb = WeightsBuilder::default();
    let dw = wb.tensor(50, DType::F32, &[1, 3, 3, 4], &[0u8; 144], Quant::None);
    let mm = wb.tensor(51, DType::F16, &[4, 4], &[0x3cu8; 32], Quant::None);
    let gm = wb.tensor(52, DType::F32, &[4], &[0u8; 16], Quant::None);
    let bt = wb.tensor(53, DType::F32, &[4], &[0u8; 16], Quant::None);
    let pad = Padding { top: 1, bottom: 1, left: 1, right: 1 };
    let cp = Conv2dParams { stride: [1, 1], dilation: [1, 1], padding: pad, groups: 4, activation: Activation::Gelu };
    let pp = PoolParams { kernel: [2, 2], stride: [2, 2], padding: Padding { top: 0, bottom: 0, left: 0, right: 0 } };
    let ops = [
        Op::Conv2d {
            input: t(0, &[1, 4, 4, 4], 0),
            weights: dw,
            bias: None,
            output: t(1, &[1, 4, 4, 4], 256),
            params: cp,
            requant: None,
        },
        Op::MaxPool2d {
            input: t(1, &[1, 4, 4, 4], 256),
            output: t(2, &[1, 2, 2, 4], 0),
            params: pp,
            act_min: 0,
            act_max: 0,
        },
        Op::Transpose { input: t(2, &[1, 2, 2, 4], 0), output: t(3, &[1, 2, 2, 4], 64), perm: [0, 2, 1, 3] },
        Op::MatMul { a: t(3, &[1, 2, 2, 4], 64), b: mm, output: t(4, &[1, 2, 2, 4], 128) },
        Op::LayerNorm {
            input: t(4, &[1, 2, 2, 4], 128),
            gamma: gm,
            beta: bt,
            output: t(5, &[1, 2, 2, 4], 192),
            eps: 1e-5,
        },
        Op::Concat {
            inputs: [Some(t(5, &[1, 2, 2, 4], 192)), Some(t(4, &[1, 2, 2, 4], 128)), None, None],
            output: t(6, &[1, 2, 2, 8], 256),
            axis: 3,
        },
        Op::Softmax { input: t(6, &[1, 2, 2, 8], 256), output: t(7, &[1, 2, 2, 8], 0), beta: 1.0, quant: None },
    ];
    let info = ModelInfo {
        name: "fuzz",
        class_names: "",
        input_spec: input_spec(4, 4, &[0.0; 4], &[1.0; 4]),
        input: t(0, &[1, 4, 4, 4], 0),
        output: t(7, &[1, 2, 2, 8], 0),
        arena_size: 512,
        op_count: 0,
        provenance: Provenance { method: "", data: "", commit: "", metrics: "" },
    };
    encode(&info, &ops, &wb.bytes, None)
}

fn fix_header(m: &mut [u8]) {
    let len = m.len() as u32;
    m[8..12].copy_from_slice(&len.to_le_bytes());
    let crc = crc32(&m[32..]);
    m[12..16].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn ten_thousand_mutations_never_panic() {
    let base = model();
    let mut words = vec![0u128; base.len() / 16 + 2];
    let mut arena = vec![0u128; 4096 / 16];
    let mut rng = Rng::new(0x5eed);
    let (mut ok, mut rejected, mut by_engine) = (0, 0, 0);
    // The unmutated model must run, or the test would prove nothing.
    {
        let buf: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        buf[..base.len()].copy_from_slice(&base);
        let mut e =
            Engine::new(&buf[..base.len()], bytemuck::cast_slice_mut(&mut arena)).expect("base model must load");
        e.run_f32(&[0.25; 64]).expect("base model must run");
    }
    for case in 0..10_000u32 {
        let mut m = base.clone();
        let body = m.len() - 32;
        let pick = |r: &mut Rng, n: usize| (r.next_u64() % n as u64) as usize;
        match case % 5 {
            0 => {
                let at = 32 + pick(&mut rng, body);
                m[at] ^= 1 << pick(&mut rng, 8);
            }
            1 => {
                let at = 32 + pick(&mut rng, body);
                m[at] = rng.next_u64() as u8;
            }
            2 => {
                // A run of 0xFF (huge varints, offsets, dims).
                let at = 32 + pick(&mut rng, body);
                let end = (at + 1 + pick(&mut rng, 4)).min(m.len());
                m[at..end].fill(0xFF);
            }
            3 => {
                let keep = 32 + pick(&mut rng, body);
                m.truncate(keep);
            }
            _ => {
                for _ in 0..3 {
                    let at = 32 + pick(&mut rng, body);
                    m[at] = m[at].wrapping_add(1 + pick(&mut rng, 3) as u8);
                }
            }
        }
        fix_header(&mut m);
        let buf: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        buf.fill(0);
        // Odd cases place the model at an odd address (constants then read as byte arrays).
        let at = (case % 2) as usize;
        buf[at..at + m.len()].copy_from_slice(&m);
        match Engine::new(&buf[at..at + m.len()], bytemuck::cast_slice_mut(&mut arena)) {
            Ok(mut e) => {
                ok += 1;
                let n = e.model().info.input.shape.checked_len().unwrap_or(0);
                let _ = e.run_f32(&vec![0.5; n.min(1 << 16)]);
                let _ = e.output_f32(&mut [0.0; 64]);
                let _ = e.top_k(&mut [(0, 0.0); 3]);
                let _ = e.run_image_u8(&[7; 48], 4, 4, 3);
            }
            Err(e) => {
                rejected += 1;
                if matches!(e, rsim_edge::EngineError::Unsupported { .. } | rsim_edge::EngineError::Aliasing { .. }) {
                    by_engine += 1;
                }
            }
        }
    }
    assert_eq!(ok + rejected, 10_000);
    eprintln!("mutations: {ok} ran, {rejected} rejected ({by_engine} by the engine's prepare pass)");
    // Some mutations (weights, names) keep the model valid; most must be caught.
    assert!(ok > 0 && rejected > 0 && by_engine > 0, "ok {ok}, rejected {rejected}, by the engine {by_engine}");
}
