//! The graph IR stored in an `.rsm` file: tensors, quantization and ops.
//!
//! Every op carries full descriptors of the tensors it touches, so the runtime walks the op list once,
//! in order, with no tensor table lookups and no heap. Activations live in one arena at offsets the
//! planner chose offline; constants live in the weights blob and are read in place.
//! Layouts: activations NHWC; conv weights OHWI (TFLite's), depthwise weights 1HW(C*M);
//! fully-connected weights [out, in].

use serde::{Deserialize, Serialize};

/// Most bands an input spec can describe (multispectral Sentinel-2 has 13).
pub const MAX_BANDS: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DType {
    F32,
    F16,
    I8,
    I32,
    U8,
}

impl DType {
    pub const fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 => 2,
            DType::I8 | DType::U8 => 1,
        }
    }
}

/// A shape of rank 0..=4; unused trailing dims are 1. 4-D activations are NHWC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    pub rank: u8,
    pub dims: [u32; 4],
}

impl Shape {
    pub const fn new(dims: &[u32]) -> Shape {
        let mut d = [1u32; 4];
        let mut i = 0;
        while i < dims.len() && i < 4 {
            d[i] = dims[i];
            i += 1;
        }
        Shape { rank: if dims.len() > 4 { 4 } else { dims.len() as u8 }, dims: d }
    }
    pub fn dims(&self) -> &[u32] {
        &self.dims[..(self.rank as usize).min(4)]
    }
    /// Element count, or `None` on overflow (malformed models must not wrap).
    pub fn checked_len(&self) -> Option<usize> {
        self.dims().iter().try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
    }
    /// NHWC view of a 4-D shape (rank-2 [N, C] reads as N x 1 x 1 x C).
    pub fn nhwc(&self) -> [usize; 4] {
        match self.rank {
            4 => [self.dims[0] as usize, self.dims[1] as usize, self.dims[2] as usize, self.dims[3] as usize],
            3 => [1, self.dims[0] as usize, self.dims[1] as usize, self.dims[2] as usize],
            2 => [self.dims[0] as usize, 1, 1, self.dims[1] as usize],
            1 => [1, 1, 1, self.dims[0] as usize],
            _ => [1, 1, 1, 1],
        }
    }
}

/// A byte range in the weights blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    pub offset: u32,
    pub len: u32,
}

/// Where a tensor's bytes live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Storage {
    /// Activation: `offset` into the arena, planned offline.
    Arena { offset: u32 },
    /// Constant: `offset` into the weights blob (16-byte aligned for F32/F16/I32 data).
    Weights { offset: u32 },
}

/// Quantization of a tensor. Real value = scale * (q - zero_point).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Quant {
    None,
    PerTensor {
        scale: f32,
        zero_point: i32,
    },
    /// Symmetric per-channel (zero point 0) along `axis`; `scales` holds little-endian f32s.
    PerChannel {
        axis: u8,
        scales: Blob,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    /// Graph-unique id (for liveness, names in error messages and debugging dumps).
    pub id: u16,
    pub dtype: DType,
    pub shape: Shape,
    pub storage: Storage,
    pub quant: Quant,
}

impl Tensor {
    /// Byte length, or `None` on overflow.
    pub fn byte_len(&self) -> Option<usize> {
        self.shape.checked_len()?.checked_mul(self.dtype.size())
    }
}

/// Fused activation, applied to an op's output (float graphs compute it; int8 graphs use the clamp
/// range in [`Requant`] for Relu/Relu6 and a [`Op::Lut`] for the others).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    None,
    Relu,
    Relu6,
    HardSwish,
    /// relu6(x + 3) / 6, the squeeze-excite gate of MobileNetV3.
    HardSigmoid,
    Sigmoid,
    Gelu,
}

/// TFLite requantization multipliers, precomputed offline (TFLM's Prepare step) so every target
/// runs the same integer arithmetic. `mult` is Q31, `shift` > 0 means left shift.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Multiplier {
    PerTensor {
        mult: i32,
        shift: i32,
    },
    /// Little-endian i32 arrays (one per output channel) in the weights blob.
    PerChannel {
        mult: Blob,
        shift: Blob,
    },
}

/// int8 output stage: multiplier plus the fused-activation clamp in the quantized domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requant {
    pub multiplier: Multiplier,
    pub act_min: i32,
    pub act_max: i32,
}

/// Padding as (top, bottom, left, right), resolved by the writer (TFLite SAME puts the odd extra
/// row/column at the bottom/right).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Padding {
    pub top: u16,
    pub bottom: u16,
    pub left: u16,
    pub right: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conv2dParams {
    pub stride: [u16; 2],
    pub dilation: [u16; 2],
    pub padding: Padding,
    /// 1 = dense; in_channels with weights [1, KH, KW, C*M] = depthwise (TFLite's DEPTHWISE_CONV_2D
    /// layout); otherwise grouped OHWI. [`crate::ConvGeometry`] is the one place that decides.
    pub groups: u32,
    pub activation: Activation,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolParams {
    pub kernel: [u16; 2],
    pub stride: [u16; 2],
    pub padding: Padding,
}

/// int8 ADD/MUL parameters, TFLM's `CalculateOpDataAdd`/`Mul` results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryQuant {
    pub left_shift: i32,
    pub a_mult: i32,
    pub a_shift: i32,
    pub b_mult: i32,
    pub b_shift: i32,
    pub out_mult: i32,
    pub out_shift: i32,
    pub act_min: i32,
    pub act_max: i32,
}

/// int8 SOFTMAX parameters, TFLM's `CalculateSoftmaxParams` results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoftmaxQuant {
    pub input_multiplier: i32,
    pub input_left_shift: i32,
    pub diff_min: i32,
}

/// One op. Arity and dtypes are part of the variant; the runtime's prepare step checks shapes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// Dense, grouped or depthwise convolution (see [`Conv2dParams::groups`]).
    Conv2d {
        input: Tensor,
        weights: Tensor,
        bias: Option<Tensor>,
        output: Tensor,
        params: Conv2dParams,
        requant: Option<Requant>,
    },
    /// `output[n, o] = sum_i input[n, i] * weights[o, i] + bias[o]`.
    FullyConnected {
        input: Tensor,
        weights: Tensor,
        bias: Option<Tensor>,
        output: Tensor,
        activation: Activation,
        requant: Option<Requant>,
    },
    /// Elementwise add with broadcasting of `b` over leading dims; int8 inputs may have different scales.
    Add {
        a: Tensor,
        b: Tensor,
        output: Tensor,
        activation: Activation,
        quant: Option<BinaryQuant>,
    },
    /// Elementwise multiply; `b` may be `[N,1,1,C]` (squeeze-excite gate).
    Mul {
        a: Tensor,
        b: Tensor,
        output: Tensor,
        activation: Activation,
        quant: Option<BinaryQuant>,
    },
    AvgPool2d {
        input: Tensor,
        output: Tensor,
        params: PoolParams,
        act_min: i32,
        act_max: i32,
    },
    MaxPool2d {
        input: Tensor,
        output: Tensor,
        params: PoolParams,
        act_min: i32,
        act_max: i32,
    },
    /// Mean over H and W to `[N,1,1,C]`; int8 requantizes (TFLM MEAN).
    GlobalAvgPool {
        input: Tensor,
        output: Tensor,
        requant: Option<Requant>,
    },
    /// Same bytes, new shape (may be planned in place).
    Reshape {
        input: Tensor,
        output: Tensor,
    },
    Softmax {
        input: Tensor,
        output: Tensor,
        beta: f32,
        quant: Option<SoftmaxQuant>,
    },
    /// Concatenation along `axis` of up to four inputs (unused slots are `None`).
    Concat {
        inputs: [Option<Tensor>; 4],
        output: Tensor,
        axis: u8,
    },
    /// Normalization over the last dim: (x - mean) / sqrt(var + eps) * gamma + beta.
    LayerNorm {
        input: Tensor,
        gamma: Tensor,
        beta: Tensor,
        output: Tensor,
        eps: f32,
    },
    /// Batched matrix product over the last two dims: [.., M, K] x [.., K, N].
    MatMul {
        a: Tensor,
        b: Tensor,
        output: Tensor,
    },
    /// Axis permutation of a rank-`perm.len()` tensor.
    Transpose {
        input: Tensor,
        output: Tensor,
        perm: [u8; 4],
    },
    /// Standalone elementwise activation (float graphs).
    Activation {
        input: Tensor,
        output: Tensor,
        activation: Activation,
    },
    /// int8 -> int8 lookup table of 256 entries (HardSwish, Sigmoid, GELU in int8 graphs).
    /// Entry `q + 128` holds the output for input `q` (see `quant::build_lut_i8`).
    Lut {
        input: Tensor,
        output: Tensor,
        table: Blob,
    },
    /// f32 -> int8 with the output tensor's quantization.
    Quantize {
        input: Tensor,
        output: Tensor,
    },
    /// int8 -> f32 with the input tensor's quantization.
    Dequantize {
        input: Tensor,
        output: Tensor,
    },
}

impl Op {
    /// Short stable name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv2d { .. } => "Conv2d",
            Op::FullyConnected { .. } => "FullyConnected",
            Op::Add { .. } => "Add",
            Op::Mul { .. } => "Mul",
            Op::AvgPool2d { .. } => "AvgPool2d",
            Op::MaxPool2d { .. } => "MaxPool2d",
            Op::GlobalAvgPool { .. } => "GlobalAvgPool",
            Op::Reshape { .. } => "Reshape",
            Op::Softmax { .. } => "Softmax",
            Op::Concat { .. } => "Concat",
            Op::LayerNorm { .. } => "LayerNorm",
            Op::MatMul { .. } => "MatMul",
            Op::Transpose { .. } => "Transpose",
            Op::Activation { .. } => "Activation",
            Op::Lut { .. } => "Lut",
            Op::Quantize { .. } => "Quantize",
            Op::Dequantize { .. } => "Dequantize",
        }
    }

    /// Calls `f` on every tensor the op reads, then on its output (last).
    pub fn for_each_tensor(&self, mut f: impl FnMut(&Tensor)) {
        match self {
            Op::Conv2d { input, weights, bias, output, .. }
            | Op::FullyConnected { input, weights, bias, output, .. } => {
                f(input);
                f(weights);
                if let Some(b) = bias {
                    f(b);
                }
                f(output);
            }
            Op::Add { a, b, output, .. } | Op::Mul { a, b, output, .. } | Op::MatMul { a, b, output } => {
                f(a);
                f(b);
                f(output);
            }
            Op::Concat { inputs, output, .. } => {
                for t in inputs.iter().flatten() {
                    f(t);
                }
                f(output);
            }
            Op::LayerNorm { input, gamma, beta, output, .. } => {
                f(input);
                f(gamma);
                f(beta);
                f(output);
            }
            Op::AvgPool2d { input, output, .. }
            | Op::MaxPool2d { input, output, .. }
            | Op::GlobalAvgPool { input, output, .. }
            | Op::Reshape { input, output }
            | Op::Softmax { input, output, .. }
            | Op::Transpose { input, output, .. }
            | Op::Activation { input, output, .. }
            | Op::Lut { input, output, .. }
            | Op::Quantize { input, output }
            | Op::Dequantize { input, output } => {
                f(input);
                f(output);
            }
        }
    }

    /// Like [`Op::for_each_tensor`], mutably (the planner and converters rewrite placements).
    pub fn for_each_tensor_mut<'a>(&'a mut self, mut f: impl FnMut(&'a mut Tensor)) {
        match self {
            Op::Conv2d { input, weights, bias, output, .. }
            | Op::FullyConnected { input, weights, bias, output, .. } => {
                f(input);
                f(weights);
                if let Some(b) = bias {
                    f(b);
                }
                f(output);
            }
            Op::Add { a, b, output, .. } | Op::Mul { a, b, output, .. } | Op::MatMul { a, b, output } => {
                f(a);
                f(b);
                f(output);
            }
            Op::Concat { inputs, output, .. } => {
                for t in inputs.iter_mut().flatten() {
                    f(t);
                }
                f(output);
            }
            Op::LayerNorm { input, gamma, beta, output, .. } => {
                f(input);
                f(gamma);
                f(beta);
                f(output);
            }
            Op::AvgPool2d { input, output, .. }
            | Op::MaxPool2d { input, output, .. }
            | Op::GlobalAvgPool { input, output, .. }
            | Op::Reshape { input, output }
            | Op::Softmax { input, output, .. }
            | Op::Transpose { input, output, .. }
            | Op::Activation { input, output, .. }
            | Op::Lut { input, output, .. }
            | Op::Quantize { input, output }
            | Op::Dequantize { input, output } => {
                f(input);
                f(output);
            }
        }
    }

    /// The tensor this op writes.
    pub fn output(&self) -> &Tensor {
        match self {
            Op::Conv2d { output, .. }
            | Op::FullyConnected { output, .. }
            | Op::Add { output, .. }
            | Op::Mul { output, .. }
            | Op::AvgPool2d { output, .. }
            | Op::MaxPool2d { output, .. }
            | Op::GlobalAvgPool { output, .. }
            | Op::Reshape { output, .. }
            | Op::Softmax { output, .. }
            | Op::Concat { output, .. }
            | Op::LayerNorm { output, .. }
            | Op::MatMul { output, .. }
            | Op::Transpose { output, .. }
            | Op::Activation { output, .. }
            | Op::Lut { output, .. }
            | Op::Quantize { output, .. }
            | Op::Dequantize { output, .. } => output,
        }
    }
}

/// Memory layout of the image the runtime's preprocessing accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    Hwc,
    Chw,
}

/// What the model expects as input before the graph's first op, so boards can feed camera tiles.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    pub height: u32,
    pub width: u32,
    pub channels: u32,
    pub layout: Layout,
    /// Per-channel mean and std on the 0..1 pixel scale (u8 / 255); entries past `channels` unused.
    pub mean: [f32; MAX_BANDS],
    pub std: [f32; MAX_BANDS],
    /// Resize the shorter side to this before the centre crop to height x width (0 = resize straight to size).
    pub resize_shorter: u32,
}

/// Where a model came from, for audit on the board and in reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance<'a> {
    /// e.g. "simclr+distill+ptq-int8", "tflite-import", "builder:resnet18(random seed 7)".
    pub method: &'a str,
    /// Dataset and split used (e.g. "eurosat-rgb train 80/20").
    pub data: &'a str,
    /// Source commit of the tool that wrote the file.
    pub commit: &'a str,
    /// Host metrics as JSON text (e.g. `{"oa":0.93}`); empty when none.
    pub metrics: &'a str,
}

/// Everything in the metadata section, decoded in place (strings borrow the model bytes).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo<'a> {
    pub name: &'a str,
    /// Class names separated by '\n' (no allocation needed to read them).
    pub class_names: &'a str,
    pub input_spec: InputSpec,
    /// The graph's input and output tensors (both in the arena).
    pub input: Tensor,
    pub output: Tensor,
    /// Bytes of arena the planned activations need.
    pub arena_size: u32,
    /// Number of ops in the graph section.
    pub op_count: u32,
    pub provenance: Provenance<'a>,
}

impl<'a> ModelInfo<'a> {
    pub fn classes(&self) -> impl Iterator<Item = &'a str> {
        let s = self.class_names;
        s.split('\n').filter(move |_| !s.is_empty())
    }
    pub fn class_count(&self) -> usize {
        self.classes().count()
    }
}
