//! A tiny hand-built f32 scene classifier (std): conv3x3/2 + ReLU, global pool, FC, softmax on
//! 32x32 RGB with 10 classes. Used by the benchmark, the agent's tests and demos where no trained
//! model is at hand.

use rsim_model::format::TestVector;
use rsim_model::write::{encode, input_spec, WeightsBuilder};
use rsim_model::*;

fn arena_tensor(id: u16, dims: &[u32], offset: u32) -> Tensor {
    Tensor { id, dtype: DType::F32, shape: Shape::new(dims), storage: Storage::Arena { offset }, quant: Quant::None }
}

/// The model, with `pad` extra weight bytes to reach a given file size.
pub fn tiny_f32_model(pad: usize) -> Vec<u8> {
    let mut w = WeightsBuilder::default();
    let cw: Vec<f32> = (0..16 * 27).map(|i| ((i * 37 % 101) as f32 - 50.0) / 200.0).collect();
    let fw: Vec<f32> = (0..160).map(|i| ((i * 53 % 97) as f32 - 48.0) / 100.0).collect();
    let conv_w = Tensor {
        id: 10,
        dtype: DType::F32,
        shape: Shape::new(&[16, 3, 3, 3]),
        storage: Storage::Weights { offset: w.push_f32(&cw).offset },
        quant: Quant::None,
    };
    let conv_b = Tensor {
        id: 11,
        dtype: DType::F32,
        shape: Shape::new(&[16]),
        storage: Storage::Weights { offset: w.push_f32(&[0.01; 16]).offset },
        quant: Quant::None,
    };
    let fc_w = Tensor {
        id: 12,
        dtype: DType::F32,
        shape: Shape::new(&[10, 16]),
        storage: Storage::Weights { offset: w.push_f32(&fw).offset },
        quant: Quant::None,
    };
    let fc_b = Tensor {
        id: 13,
        dtype: DType::F32,
        shape: Shape::new(&[10]),
        storage: Storage::Weights { offset: w.push_f32(&[0.0; 10]).offset },
        quant: Quant::None,
    };
    w.push_bytes(&vec![0x5A; pad]);
    let input = arena_tensor(0, &[1, 32, 32, 3], 0); // 12,288 B
    let conv = arena_tensor(1, &[1, 16, 16, 16], 12_288); // 16,384 B
    let gap = arena_tensor(2, &[1, 1, 1, 16], 0);
    let gap2 = arena_tensor(3, &[1, 16], 0);
    let fc = arena_tensor(4, &[1, 10], 64);
    let sm = arena_tensor(5, &[1, 10], 128);
    let pad0 = Padding { top: 0, bottom: 1, left: 0, right: 1 };
    let ops = [
        Op::Conv2d {
            input,
            weights: conv_w,
            bias: Some(conv_b),
            output: conv,
            params: Conv2dParams {
                stride: [2, 2],
                dilation: [1, 1],
                padding: pad0,
                groups: 1,
                activation: Activation::Relu,
            },
            requant: None,
        },
        Op::GlobalAvgPool { input: conv, output: gap, requant: None },
        Op::Reshape { input: gap, output: gap2 },
        Op::FullyConnected {
            input: gap2,
            weights: fc_w,
            bias: Some(fc_b),
            output: fc,
            activation: Activation::None,
            requant: None,
        },
        Op::Softmax { input: fc, output: sm, beta: 1.0, quant: None },
    ];
    let info = ModelInfo {
        name: "bench-f32",
        class_names: "0\n1\n2\n3\n4\n5\n6\n7\n8\n9",
        input_spec: input_spec(32, 32, &[0.5; 3], &[0.25; 3]),
        input,
        output: sm,
        arena_size: 12_288 + 16_384,
        op_count: ops.len() as u32,
        provenance: Provenance { method: "bench", data: "synthetic", commit: "", metrics: "" },
    };
    encode(&info, &ops, &w.bytes, None::<TestVector<'_>>)
}

fn i8_arena(id: u16, dims: &[u32], offset: u32, scale: f32, zero_point: i32) -> Tensor {
    Tensor {
        id,
        dtype: DType::I8,
        shape: Shape::new(dims),
        storage: Storage::Arena { offset },
        quant: Quant::PerTensor { scale, zero_point },
    }
}

/// Deterministic weights in -63..=63 (no RNG dependency; the same bytes on every host).
fn pattern_i8(n: usize, seed: usize) -> Vec<i8> {
    (0..n).map(|i| ((i * 7919 + seed * 104_729) % 127) as i8 - 63).collect()
}

/// A tiny TFLite-style int8 scene classifier on 32x32 RGB tiles, 10 classes: conv 3x3/2 (8 ch,
/// per-channel weights, ReLU) → depthwise 3x3/2 (ReLU) → FC → int8 softmax. For tests of the
/// emulated boards when the MLPerf Tiny ResNet-8 is not at hand.
#[allow(clippy::expect_used, reason = "the scales are constants chosen in range; a failure is a bug in this function")]
pub fn tiny_int8_model() -> Vec<u8> {
    use rsim_model::quant::{conv_multiplier, fc_multiplier, softmax_params};
    let mut w = WeightsBuilder::default();
    let (s_in, s_c1, s_c2, s_fc) = (1.0f32 / 255.0, 0.02f32, 0.03f32, 0.1f32);
    let pad = Padding { top: 0, bottom: 1, left: 0, right: 1 };
    let conv = |w: &mut WeightsBuilder, ids: (u16, u16), dims: &[u32], axis: u8, s_in: f32, s_out: f32, seed: usize| {
        let ch = dims[axis as usize] as usize;
        let n = dims.iter().product::<u32>() as usize;
        let data: Vec<u8> = pattern_i8(n, seed).iter().map(|&v| v as u8).collect();
        let scales: Vec<f32> = (0..ch).map(|c| 0.004 + 0.001 * c as f32).collect();
        let blob = w.push_f32(&scales);
        let weights = w.tensor(ids.0, DType::I8, dims, &data, Quant::PerChannel { axis, scales: blob });
        let bias: Vec<u8> = (0..ch).flat_map(|c| ((c as i32 * 37 % 21 - 10) * 50).to_le_bytes()).collect();
        let bias = w.tensor(ids.1, DType::I32, &[ch as u32], &bias, Quant::None);
        let (m, s): (Vec<i32>, Vec<i32>) =
            scales.iter().map(|&sw| conv_multiplier(s_in, sw, s_out).expect("multiplier in range")).unzip();
        let requant = Requant {
            multiplier: Multiplier::PerChannel { mult: w.push_i32(&m), shift: w.push_i32(&s) },
            act_min: -128,
            act_max: 127,
        };
        (weights, bias, requant)
    };
    let input = i8_arena(0, &[1, 32, 32, 3], 0, s_in, -128); // 3,072 B
    let (c1w, c1b, c1r) = conv(&mut w, (1, 2), &[8, 3, 3, 3], 0, s_in, s_c1, 1);
    let t3 = i8_arena(3, &[1, 16, 16, 8], 3072, s_c1, -128); // 2,048 B
    let (dww, dwb, dwr) = conv(&mut w, (4, 5), &[1, 3, 3, 8], 3, s_c1, s_c2, 2);
    let t6 = i8_arena(6, &[1, 8, 8, 8], 0, s_c2, -128); // 512 B
    let t7 = i8_arena(7, &[1, 512], 1024, s_c2, -128);
    let s_fw = 0.002f32;
    let fw: Vec<u8> = pattern_i8(10 * 512, 3).iter().map(|&v| v as u8).collect();
    let fc_w = w.tensor(8, DType::I8, &[10, 512], &fw, Quant::PerTensor { scale: s_fw, zero_point: 0 });
    let fb: Vec<u8> = (0..10i32).flat_map(|c| ((c * 53 % 19 - 9) * 100).to_le_bytes()).collect();
    let fc_b = w.tensor(9, DType::I32, &[10], &fb, Quant::None);
    let (mult, shift) = fc_multiplier(s_c2, s_fw, s_fc).expect("multiplier in range");
    let t10 = i8_arena(10, &[1, 10], 2048, s_fc, 0);
    let t11 = i8_arena(11, &[1, 10], 2064, 1.0 / 256.0, -128);
    let (input_multiplier, input_left_shift, diff_min) =
        softmax_params(1.0, s_fc).expect("softmax parameters in range");
    let conv_params = |stride, groups| Conv2dParams {
        stride: [stride, stride],
        dilation: [1, 1],
        padding: pad,
        groups,
        activation: Activation::Relu,
    };
    let ops = [
        Op::Conv2d { input, weights: c1w, bias: Some(c1b), output: t3, params: conv_params(2, 1), requant: Some(c1r) },
        Op::Conv2d {
            input: t3,
            weights: dww,
            bias: Some(dwb),
            output: t6,
            params: conv_params(2, 8),
            requant: Some(dwr),
        },
        Op::Reshape { input: t6, output: t7 },
        Op::FullyConnected {
            input: t7,
            weights: fc_w,
            bias: Some(fc_b),
            output: t10,
            activation: Activation::None,
            requant: Some(Requant { multiplier: Multiplier::PerTensor { mult, shift }, act_min: -128, act_max: 127 }),
        },
        Op::Softmax {
            input: t10,
            output: t11,
            beta: 1.0,
            quant: Some(SoftmaxQuant { input_multiplier, input_left_shift, diff_min }),
        },
    ];
    let info = ModelInfo {
        name: "tiny-int8-conv-dw-fc",
        class_names: "0\n1\n2\n3\n4\n5\n6\n7\n8\n9",
        input_spec: input_spec(32, 32, &[0.0; 3], &[1.0; 3]),
        input,
        output: t11,
        arena_size: 3072 + 2048,
        op_count: ops.len() as u32,
        provenance: Provenance { method: "hand-built (rsim_boards::demo)", data: "synthetic", commit: "", metrics: "" },
    };
    encode(&info, &ops, &w.bytes, None::<TestVector<'_>>)
}
