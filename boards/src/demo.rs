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
    let conv_w = Tensor { id: 10, dtype: DType::F32, shape: Shape::new(&[16, 3, 3, 3]), storage: Storage::Weights { offset: w.push_f32(&cw).offset }, quant: Quant::None };
    let conv_b = Tensor { id: 11, dtype: DType::F32, shape: Shape::new(&[16]), storage: Storage::Weights { offset: w.push_f32(&[0.01; 16]).offset }, quant: Quant::None };
    let fc_w = Tensor { id: 12, dtype: DType::F32, shape: Shape::new(&[10, 16]), storage: Storage::Weights { offset: w.push_f32(&fw).offset }, quant: Quant::None };
    let fc_b = Tensor { id: 13, dtype: DType::F32, shape: Shape::new(&[10]), storage: Storage::Weights { offset: w.push_f32(&[0.0; 10]).offset }, quant: Quant::None };
    w.push_bytes(&vec![0x5A; pad]);
    let input = arena_tensor(0, &[1, 32, 32, 3], 0); // 12,288 B
    let conv = arena_tensor(1, &[1, 16, 16, 16], 12_288); // 16,384 B
    let gap = arena_tensor(2, &[1, 1, 1, 16], 0);
    let gap2 = arena_tensor(3, &[1, 16], 0);
    let fc = arena_tensor(4, &[1, 10], 64);
    let sm = arena_tensor(5, &[1, 10], 128);
    let pad0 = Padding { top: 0, bottom: 1, left: 0, right: 1 };
    let ops = [
        Op::Conv2d { input, weights: conv_w, bias: Some(conv_b), output: conv, params: Conv2dParams { stride: [2, 2], dilation: [1, 1], padding: pad0, groups: 1, activation: Activation::Relu }, requant: None },
        Op::GlobalAvgPool { input: conv, output: gap, requant: None },
        Op::Reshape { input: gap, output: gap2 },
        Op::FullyConnected { input: gap2, weights: fc_w, bias: Some(fc_b), output: fc, activation: Activation::None, requant: None },
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
