//! Shared by the cross-target and malformed-model tests: a hand-built int8 model (conv, depthwise conv,
//! reshape, fully connected, softmax) with seeded random weights, and a seeded RNG.
#![allow(dead_code)] // each test binary uses a different subset

pub mod mutate;

use rsim_model::write::{encode, input_spec, WeightsBuilder};
use rsim_model::*;

pub use rsim_test_support::Rng;

/// TFLite's `QuantizeMultiplier`: `m = q * 2^shift` with `q` a Q31 in [0.5, 1).
pub fn quantize_multiplier(m: f64) -> (i32, i32) {
    if m == 0.0 {
        return (0, 0);
    }
    let (mut shift, mut frac) = (0i32, m);
    while frac >= 1.0 {
        frac /= 2.0;
        shift += 1;
    }
    while frac < 0.5 {
        frac *= 2.0;
        shift -= 1;
    }
    let mut q = (frac * (1u64 << 31) as f64).round() as i64;
    if q == 1i64 << 31 {
        q /= 2;
        shift += 1;
    }
    if shift < -31 {
        return (0, 0);
    }
    (q as i32, shift)
}

fn arena(id: u16, dims: &[u32], offset: u32, scale: f32, zero_point: i32) -> Tensor {
    Tensor {
        id,
        dtype: DType::I8,
        shape: Shape::new(dims),
        storage: Storage::Arena { offset },
        quant: Quant::PerTensor { scale, zero_point },
    }
}

const PAD1: Padding = Padding { top: 1, bottom: 1, left: 1, right: 1 };

/// Per-channel int8 weights, int32 bias and requantization blobs for a conv with `out_ch` channels.
struct ConvParts {
    weights: Tensor,
    bias: Tensor,
    requant: Requant,
}

fn conv_parts(
    w: &mut WeightsBuilder,
    rng: &mut Rng,
    ids: (u16, u16),
    dims: &[u32],
    axis: u8,
    s_in: f32,
    s_out: f32,
) -> ConvParts {
    let out_ch = dims[axis as usize] as usize;
    let n: u32 = dims.iter().product();
    let data: Vec<i8> = (0..n).map(|_| (rng.i8() / 2).max(-127)).collect();
    let scales: Vec<f32> = (0..out_ch).map(|c| 0.004 + 0.001 * c as f32).collect();
    let scales_blob = w.push_f32(&scales);
    let weights = w.tensor(
        ids.0,
        DType::I8,
        dims,
        &data.iter().map(|&v| v as u8).collect::<Vec<_>>(),
        Quant::PerChannel { axis, scales: scales_blob },
    );
    let bias: Vec<i32> = (0..out_ch).map(|_| rng.below(2001) as i32 - 1000).collect();
    let bias_bytes: Vec<u8> = bias.iter().flat_map(|v| v.to_le_bytes()).collect();
    let bias = w.tensor(ids.1, DType::I32, &[out_ch as u32], &bias_bytes, Quant::None);
    let (mult, shift): (Vec<i32>, Vec<i32>) =
        scales.iter().map(|&s| quantize_multiplier(s_in as f64 * s as f64 / s_out as f64)).unzip();
    let multiplier = Multiplier::PerChannel { mult: w.push_i32(&mult), shift: w.push_i32(&shift) };
    // Fused ReLU with output zero point -128 clamps at -128, the int8 minimum.
    ConvParts { weights, bias, requant: Requant { multiplier, act_min: -128, act_max: 127 } }
}

/// TFLite's softmax preprocessing (`PreprocessSoftmaxScaling` with 5 integer bits, and
/// `CalculateInputRadius`) for beta = 1.
pub fn softmax_quant(input_scale: f32) -> SoftmaxQuant {
    let real = (input_scale as f64 * (1u64 << 26) as f64).min(((1u64 << 31) - 1) as f64);
    let (input_multiplier, input_left_shift) = quantize_multiplier(real);
    let max_input_rescaled = ((1i64 << 5) - 1) as f64 * (1i64 << (31 - 5)) as f64 / (1i64 << input_left_shift) as f64;
    SoftmaxQuant { input_multiplier, input_left_shift, diff_min: -(max_input_rescaled.floor() as i32) }
}

/// An int8 classifier for 8x8x3 inputs and 4 classes, weights drawn from `seed`. Returns the model
/// bytes and one input of the right size (int8 NHWC, also drawn from `seed`).
pub fn int8_model(seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng(seed);
    let mut w = WeightsBuilder::default();
    let (s_img, s_c1, s_c2, s_fc) = (1.0 / 255.0, 0.02, 0.03, 0.1);

    let input = arena(0, &[1, 8, 8, 3], 0, s_img, -128);
    let c1 = conv_parts(&mut w, &mut rng, (1, 2), &[8, 3, 3, 3], 0, s_img, s_c1);
    let t3 = arena(3, &[1, 4, 4, 8], 192, s_c1, -128);
    let conv1 = Op::Conv2d {
        input,
        weights: c1.weights,
        bias: Some(c1.bias),
        output: t3,
        params: Conv2dParams {
            stride: [2, 2],
            dilation: [1, 1],
            padding: PAD1,
            groups: 1,
            activation: Activation::Relu,
        },
        requant: Some(c1.requant),
    };
    let dw = conv_parts(&mut w, &mut rng, (4, 5), &[1, 3, 3, 8], 3, s_c1, s_c2);
    let t6 = arena(6, &[1, 4, 4, 8], 0, s_c2, -128);
    let conv2 = Op::Conv2d {
        input: t3,
        weights: dw.weights,
        bias: Some(dw.bias),
        output: t6,
        params: Conv2dParams {
            stride: [1, 1],
            dilation: [1, 1],
            padding: PAD1,
            groups: 8,
            activation: Activation::Relu,
        },
        requant: Some(dw.requant),
    };
    let t7 = arena(7, &[1, 128], 128, s_c2, -128);
    let reshape = Op::Reshape { input: t6, output: t7 };

    let s_fw = 0.005f32;
    let fw: Vec<u8> = (0..4 * 128).map(|_| (rng.i8() / 2) as u8).collect();
    let fc_w = w.tensor(8, DType::I8, &[4, 128], &fw, Quant::PerTensor { scale: s_fw, zero_point: 0 });
    let fb: Vec<u8> = (0..4).flat_map(|_| (rng.below(4001) as i32 - 2000).to_le_bytes()).collect();
    let fc_b = w.tensor(9, DType::I32, &[4], &fb, Quant::None);
    let (mult, shift) = quantize_multiplier(s_c2 as f64 * s_fw as f64 / s_fc as f64);
    let t10 = arena(10, &[1, 4], 0, s_fc, 0);
    let fc = Op::FullyConnected {
        input: t7,
        weights: fc_w,
        bias: Some(fc_b),
        output: t10,
        activation: Activation::None,
        requant: Some(Requant { multiplier: Multiplier::PerTensor { mult, shift }, act_min: -128, act_max: 127 }),
    };
    let t11 = arena(11, &[1, 4], 16, 1.0 / 256.0, -128);
    let softmax = Op::Softmax { input: t10, output: t11, beta: 1.0, quant: Some(softmax_quant(s_fc)) };

    let info = ModelInfo {
        name: "hand-int8-conv-dw-fc",
        class_names: "a\nb\nc\nd",
        input_spec: input_spec(8, 8, &[0.0; 3], &[1.0; 3]),
        input,
        output: t11,
        arena_size: 320,
        op_count: 0,
        provenance: Provenance { method: "hand-built (tests/tests/support)", data: "", commit: "", metrics: "" },
    };
    let bytes = encode(&info, &[conv1, conv2, reshape, fc, softmax], &w.bytes, None);
    (bytes, rng.bytes(8 * 8 * 3))
}

/// A float classifier for 6x6x3 inputs and 3 classes: conv 3x3 + ReLU, global average pool,
/// reshape, fully connected, softmax. Weights drawn from `seed`; returns model bytes and an input.
pub fn f32_model(seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng(seed);
    let mut w = WeightsBuilder::default();
    let floats = |n: usize, rng: &mut Rng| -> Vec<u8> {
        (0..n).flat_map(|_| ((rng.below(2001) as f32 - 1000.0) / 1000.0).to_le_bytes()).collect()
    };
    let f = |id, dims: &[u32], offset| Tensor {
        id,
        dtype: DType::F32,
        shape: Shape::new(dims),
        storage: Storage::Arena { offset },
        quant: Quant::None,
    };
    let input = f(0, &[1, 6, 6, 3], 0);
    let cw = floats(4 * 3 * 3 * 3, &mut rng);
    let cb = floats(4, &mut rng);
    let conv = Op::Conv2d {
        input,
        weights: w.tensor(1, DType::F32, &[4, 3, 3, 3], &cw, Quant::None),
        bias: Some(w.tensor(2, DType::F32, &[4], &cb, Quant::None)),
        output: f(3, &[1, 6, 6, 4], 448),
        params: Conv2dParams {
            stride: [1, 1],
            dilation: [1, 1],
            padding: PAD1,
            groups: 1,
            activation: Activation::Relu,
        },
        requant: None,
    };
    let gap = Op::GlobalAvgPool { input: f(3, &[1, 6, 6, 4], 448), output: f(4, &[1, 1, 1, 4], 0), requant: None };
    let reshape = Op::Reshape { input: f(4, &[1, 1, 1, 4], 0), output: f(5, &[1, 4], 16) };
    let fw = floats(3 * 4, &mut rng);
    let fb = floats(3, &mut rng);
    let fc = Op::FullyConnected {
        input: f(5, &[1, 4], 16),
        weights: w.tensor(6, DType::F32, &[3, 4], &fw, Quant::None),
        bias: Some(w.tensor(7, DType::F32, &[3], &fb, Quant::None)),
        output: f(8, &[1, 3], 32),
        activation: Activation::None,
        requant: None,
    };
    let output = f(9, &[1, 3], 48);
    let softmax = Op::Softmax { input: f(8, &[1, 3], 32), output, beta: 1.0, quant: None };
    let info = ModelInfo {
        name: "hand-f32-conv-gap-fc",
        class_names: "x\ny\nz",
        input_spec: input_spec(6, 6, &[0.5; 3], &[0.25; 3]),
        input,
        output,
        arena_size: 1024,
        op_count: 0,
        provenance: Provenance { method: "hand-built (tests/tests/support)", data: "", commit: "", metrics: "" },
    };
    let bytes = encode(&info, &[conv, gap, reshape, fc, softmax], &w.bytes, None);
    (bytes, floats(6 * 6 * 3, &mut rng))
}

/// A zeroed byte buffer starting 16-byte aligned, as model bytes sit in flash (backed by `u128`s).
pub struct Aligned {
    words: Vec<u128>,
    len: usize,
}

impl Aligned {
    pub fn zeroed(len: usize) -> Aligned {
        Aligned { words: vec![0; len.div_ceil(16)], len }
    }
    pub fn copy_of(bytes: &[u8]) -> Aligned {
        let mut a = Aligned::zeroed(bytes.len());
        a.bytes_mut().copy_from_slice(bytes);
        a
    }
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: u128 has no padding and any byte pattern is a valid u8; len <= 16 * words.len().
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and the borrow is unique.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

/// One inference through the real engine: model bytes aligned as in flash, arena of the planned size.
pub fn run_engine(model: &[u8], input: &[u8]) -> Result<Vec<u8>, rsim_edge::EngineError> {
    let model = Aligned::copy_of(model);
    let need = rsim_edge::required_arena(model.bytes())?;
    let mut arena = Aligned::zeroed(need);
    let mut engine = rsim_edge::Engine::new(model.bytes(), arena.bytes_mut())?;
    let dst = engine.input_mut();
    if dst.len() != input.len() {
        return Err(rsim_edge::EngineError::BadInput { reason: "input size differs from the model's input tensor" });
    }
    dst.copy_from_slice(input);
    engine.invoke()?;
    Ok(engine.output().to_vec())
}
