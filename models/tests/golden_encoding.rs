//! Exact bytes of every `Op` variant and of the types inside them. The postcard encoding IS the
//! `.rsm` file format (docs/FORMAT.md): a change here is a format change, not a refactor.
//!
//! The expected bytes were produced by the encoder once, then checked by hand against postcard's
//! rules (docs/FORMAT.md, "Postcard encoding rules used"), e.g.:
//! - `Tensor { id: 300, .. }` starts `ac 02`: 300 = 0b10_0101100, LEB128 puts the low 7 bits first
//!   with the continuation bit (0x2c | 0x80 = 0xac), then 300 >> 7 = 2.
//! - `zero_point: -3` is `05` (zig-zag: -3 -> 5) and `act_min: -128` is `ff 01` (zig-zag 255, varint).
//! - `scale: 0.5` is `00 00 00 3f` (f32 0x3f000000, little-endian); `Quant::PerTensor` is tag `01`.
//! - `Op::Dequantize` starts `10` (variant 16, declaration order); `Option::Some` is `01`, `None` `00`.
//!
//! When a variant is added, the `*_tag` matches below stop compiling until it has a golden entry.

use rsim_model::format::decode_op;
use rsim_model::write::encode_op;
use rsim_model::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

/// `bytes` as lowercase hex pairs separated by spaces.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// Parses hex pairs, ignoring whitespace (so expectations may wrap over lines).
fn unhex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits in {s:?}");
    digits.chunks(2).map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap()).collect()
}

/// Encodes `v` as the writer does, compares with `want`, and decodes it back.
fn golden<T: Serialize + DeserializeOwned + PartialEq + Debug>(what: &str, v: &T, want: &str) {
    let got = postcard::to_allocvec(v).unwrap();
    assert_eq!(hex(&got), hex(&unhex(want)), "{what}: encoding changed (got the left bytes)");
    assert_eq!(&postcard::from_bytes::<T>(&got).unwrap(), v, "{what}: decode differs");
}

// Representative tensors: multi-byte varints (id 300, dims 640), a negative zero point, each storage.
const X: Tensor = Tensor {
    id: 1,
    dtype: DType::I8,
    shape: Shape::new(&[1, 4, 4, 3]),
    storage: Storage::Arena { offset: 0 },
    quant: Quant::PerTensor { scale: 0.5, zero_point: -3 },
};
const W: Tensor = Tensor {
    id: 2,
    dtype: DType::I8,
    shape: Shape::new(&[8, 3, 3, 3]),
    storage: Storage::Weights { offset: 16 },
    quant: Quant::PerChannel { axis: 0, scales: Blob { offset: 256, len: 32 } },
};
const B: Tensor = Tensor {
    id: 3,
    dtype: DType::I32,
    shape: Shape::new(&[8]),
    storage: Storage::Weights { offset: 240 },
    quant: Quant::None,
};
const Y: Tensor = Tensor {
    id: 300,
    dtype: DType::I8,
    shape: Shape::new(&[1, 2, 2, 8]),
    storage: Storage::Arena { offset: 64 },
    quant: Quant::PerTensor { scale: 0.25, zero_point: 5 },
};
const F: Tensor = Tensor {
    id: 4,
    dtype: DType::F32,
    shape: Shape::new(&[1, 640]),
    storage: Storage::Arena { offset: 128 },
    quant: Quant::None,
};
const H: Tensor = Tensor {
    id: 5,
    dtype: DType::F16,
    shape: Shape::new(&[640]),
    storage: Storage::Weights { offset: 0 },
    quant: Quant::None,
};
const PAD: Padding = Padding { top: 1, bottom: 2, left: 0, right: 300 };
const RQ: Requant = Requant {
    multiplier: Multiplier::PerChannel { mult: Blob { offset: 288, len: 32 }, shift: Blob { offset: 320, len: 32 } },
    act_min: -128,
    act_max: 127,
};
const BQ: BinaryQuant = BinaryQuant {
    left_shift: 20,
    a_mult: 1 << 30,
    a_shift: -1,
    b_mult: 1_500_000_000,
    b_shift: -2,
    out_mult: 1_200_000_000,
    out_shift: -19,
    act_min: -128,
    act_max: 127,
};

/// Variant index of each op: the encoding's first byte. Exhaustive on purpose (see the module docs).
fn op_tag(op: &Op) -> u8 {
    match op {
        Op::Conv2d { .. } => 0,
        Op::FullyConnected { .. } => 1,
        Op::Add { .. } => 2,
        Op::Mul { .. } => 3,
        Op::AvgPool2d { .. } => 4,
        Op::MaxPool2d { .. } => 5,
        Op::GlobalAvgPool { .. } => 6,
        Op::Reshape { .. } => 7,
        Op::Softmax { .. } => 8,
        Op::Concat { .. } => 9,
        Op::LayerNorm { .. } => 10,
        Op::MatMul { .. } => 11,
        Op::Transpose { .. } => 12,
        Op::Activation { .. } => 13,
        Op::Lut { .. } => 14,
        Op::Quantize { .. } => 15,
        Op::Dequantize { .. } => 16,
    }
}
const OP_VARIANTS: u8 = 17;

/// One representative instance of every op, with its exact bytes.
fn golden_ops() -> Vec<(Op, &'static str)> {
    let conv =
        Conv2dParams { stride: [2, 1], dilation: [1, 3], padding: PAD, groups: 1, activation: Activation::Relu6 };
    let pool = PoolParams { kernel: [3, 3], stride: [2, 2], padding: PAD };
    vec![
        (
            Op::Conv2d { input: X, weights: W, bias: Some(B), output: Y, params: conv, requant: Some(RQ) },
            "00 01 02 04 01 04 04 03 00 00 01 00 00 00 3f 05 02 02 04 08 03 03 03 01 \
            10 02 00 80 02 20 01 03 03 01 08 01 01 01 01 f0 01 00 ac 02 02 04 01 02 \
            02 08 00 40 01 00 00 80 3e 0a 02 01 01 03 01 02 00 ac 02 01 02 01 01 a0 \
            02 20 c0 02 20 ff 01 fe 01",
        ),
        (
            Op::FullyConnected {
                input: F,
                weights: H,
                bias: None,
                output: F,
                activation: Activation::Gelu,
                requant: None,
            },
            "01 04 00 02 01 80 05 01 01 00 80 01 00 05 01 01 80 05 01 01 01 01 00 00 \
            00 04 00 02 01 80 05 01 01 00 80 01 00 06 00",
        ),
        (
            Op::Add { a: X, b: Y, output: Y, activation: Activation::None, quant: Some(BQ) },
            "02 01 02 04 01 04 04 03 00 00 01 00 00 00 3f 05 ac 02 02 04 01 02 02 08 \
            00 40 01 00 00 80 3e 0a ac 02 02 04 01 02 02 08 00 40 01 00 00 80 3e 0a \
            00 01 28 80 80 80 80 08 01 80 bc c1 96 0b 03 80 b0 b4 f8 08 25 ff 01 fe \
            01",
        ),
        (
            Op::Mul { a: F, b: F, output: F, activation: Activation::Sigmoid, quant: None },
            "03 04 00 02 01 80 05 01 01 00 80 01 00 04 00 02 01 80 05 01 01 00 80 01 \
            00 04 00 02 01 80 05 01 01 00 80 01 00 05 00",
        ),
        (
            Op::AvgPool2d { input: X, output: Y, params: pool, act_min: -128, act_max: 127 },
            "04 01 02 04 01 04 04 03 00 00 01 00 00 00 3f 05 ac 02 02 04 01 02 02 08 \
            00 40 01 00 00 80 3e 0a 03 03 02 02 01 02 00 ac 02 ff 01 fe 01",
        ),
        (
            Op::MaxPool2d { input: X, output: Y, params: pool, act_min: -3, act_max: 100 },
            "05 01 02 04 01 04 04 03 00 00 01 00 00 00 3f 05 ac 02 02 04 01 02 02 08 \
            00 40 01 00 00 80 3e 0a 03 03 02 02 01 02 00 ac 02 05 c8 01",
        ),
        (
            Op::GlobalAvgPool {
                input: X,
                output: Y,
                requant: Some(Requant {
                    multiplier: Multiplier::PerTensor { mult: 1_073_741_824, shift: -3 },
                    act_min: -128,
                    act_max: 127,
                }),
            },
            "06 01 02 04 01 04 04 03 00 00 01 00 00 00 3f 05 ac 02 02 04 01 02 02 08 \
            00 40 01 00 00 80 3e 0a 01 00 80 80 80 80 08 05 ff 01 fe 01",
        ),
        (
            Op::Reshape { input: Y, output: F },
            "07 ac 02 02 04 01 02 02 08 00 40 01 00 00 80 3e 0a 04 00 02 01 80 05 01 \
            01 00 80 01 00",
        ),
        (
            Op::Softmax {
                input: X,
                output: Y,
                beta: 1.0,
                quant: Some(SoftmaxQuant { input_multiplier: 1_717_986_918, input_left_shift: 26, diff_min: -3968 }),
            },
            "08 01 02 04 01 04 04 03 00 00 01 00 00 00 3f 05 ac 02 02 04 01 02 02 08 \
            00 40 01 00 00 80 3e 0a 00 00 80 3f 01 cc 99 b3 e6 0c 34 ff 3d",
        ),
        (
            Op::Concat { inputs: [Some(X), None, Some(Y), None], output: Y, axis: 3 },
            "09 01 01 02 04 01 04 04 03 00 00 01 00 00 00 3f 05 00 01 ac 02 02 04 01 \
            02 02 08 00 40 01 00 00 80 3e 0a 00 ac 02 02 04 01 02 02 08 00 40 01 00 \
            00 80 3e 0a 03",
        ),
        (
            Op::LayerNorm { input: F, gamma: H, beta: H, output: F, eps: 1e-5 },
            "0a 04 00 02 01 80 05 01 01 00 80 01 00 05 01 01 80 05 01 01 01 01 00 00 \
            05 01 01 80 05 01 01 01 01 00 00 04 00 02 01 80 05 01 01 00 80 01 00 ac \
            c5 27 37",
        ),
        (
            Op::MatMul { a: F, b: H, output: F },
            "0b 04 00 02 01 80 05 01 01 00 80 01 00 05 01 01 80 05 01 01 01 01 00 00 \
            04 00 02 01 80 05 01 01 00 80 01 00",
        ),
        (
            Op::Transpose { input: X, output: Y, perm: [0, 3, 1, 2] },
            "0c 01 02 04 01 04 04 03 00 00 01 00 00 00 3f 05 ac 02 02 04 01 02 02 08 \
            00 40 01 00 00 80 3e 0a 00 03 01 02",
        ),
        (
            Op::Activation { input: F, output: F, activation: Activation::HardSwish },
            "0d 04 00 02 01 80 05 01 01 00 80 01 00 04 00 02 01 80 05 01 01 00 80 01 \
            00 03",
        ),
        (
            Op::Lut { input: X, output: Y, table: Blob { offset: 4096, len: 256 } },
            "0e 01 02 04 01 04 04 03 00 00 01 00 00 00 3f 05 ac 02 02 04 01 02 02 08 \
            00 40 01 00 00 80 3e 0a 80 20 80 02",
        ),
        (
            Op::Quantize { input: F, output: X },
            "0f 04 00 02 01 80 05 01 01 00 80 01 00 01 02 04 01 04 04 03 00 00 01 00 \
            00 00 3f 05",
        ),
        (
            Op::Dequantize { input: X, output: F },
            "10 01 02 04 01 04 04 03 00 00 01 00 00 00 3f 05 04 00 02 01 80 05 01 01 \
            00 80 01 00",
        ),
    ]
}

#[test]
fn every_op_variant_has_golden_bytes() {
    let cases = golden_ops();
    let mut seen = [false; OP_VARIANTS as usize];
    let mut report = String::new();
    for (op, want) in &cases {
        let tag = op_tag(op);
        seen[tag as usize] = true;
        let got = encode_op(op);
        assert_eq!(got[0], tag, "{}: the first byte is the variant index", op.name());
        if hex(&got) != hex(&unhex(want)) {
            report += &format!("{}:\n{}\n", op.name(), hex(&got));
        }
        // Decoded by the reader's own function, to the same op, consuming every byte.
        let (back, rest) = decode_op(&got).unwrap();
        assert_eq!((&back, rest.len()), (op, 0), "{}: decode differs", op.name());
    }
    assert!(report.is_empty(), "op encodings changed (the format!):\n{report}");
    assert!(seen.iter().all(|&s| s), "a variant has no golden entry: {seen:?}");
}

/// The GRAPH section is ops back to back: the reader finds each op's end by decoding it.
#[test]
fn ops_decode_back_to_back() {
    let cases = golden_ops();
    let graph: Vec<u8> = cases.iter().flat_map(|(op, _)| encode_op(op)).collect();
    let mut rest = &graph[..];
    for (op, _) in &cases {
        let (back, r) = decode_op(rest).unwrap();
        assert_eq!(&back, op);
        rest = r;
    }
    assert!(rest.is_empty());
}

fn dtype_tag(d: DType) -> u8 {
    match d {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::I8 => 2,
        DType::I32 => 3,
        DType::U8 => 4,
    }
}

fn activation_tag(a: Activation) -> u8 {
    match a {
        Activation::None => 0,
        Activation::Relu => 1,
        Activation::Relu6 => 2,
        Activation::HardSwish => 3,
        Activation::HardSigmoid => 4,
        Activation::Sigmoid => 5,
        Activation::Gelu => 6,
    }
}

fn storage_tag(s: Storage) -> u8 {
    match s {
        Storage::Arena { .. } => 0,
        Storage::Weights { .. } => 1,
    }
}

fn quant_tag(q: Quant) -> u8 {
    match q {
        Quant::None => 0,
        Quant::PerTensor { .. } => 1,
        Quant::PerChannel { .. } => 2,
    }
}

fn multiplier_tag(m: Multiplier) -> u8 {
    match m {
        Multiplier::PerTensor { .. } => 0,
        Multiplier::PerChannel { .. } => 1,
    }
}

fn layout_tag(l: Layout) -> u8 {
    match l {
        Layout::Hwc => 0,
        Layout::Chw => 1,
    }
}

/// Every value of a field-less enum is one byte, its declaration index.
#[test]
fn small_enums_are_their_index() {
    for d in [DType::F32, DType::F16, DType::I8, DType::I32, DType::U8] {
        golden("DType", &d, &format!("{:02x}", dtype_tag(d)));
    }
    let acts = [
        Activation::None,
        Activation::Relu,
        Activation::Relu6,
        Activation::HardSwish,
        Activation::HardSigmoid,
        Activation::Sigmoid,
        Activation::Gelu,
    ];
    for a in acts {
        golden("Activation", &a, &format!("{:02x}", activation_tag(a)));
    }
    for l in [Layout::Hwc, Layout::Chw] {
        golden("Layout", &l, &format!("{:02x}", layout_tag(l)));
    }
}

#[test]
fn inner_types_have_golden_bytes() {
    golden("Shape", &Shape::new(&[1, 640]), "02 01 80 05 01 01");
    golden("Blob", &Blob { offset: 256, len: 32 }, "80 02 20");
    let storages = [(Storage::Arena { offset: 64 }, "00 40"), (Storage::Weights { offset: 70_000 }, "01 f0 a2 04")];
    for (s, want) in storages {
        assert_eq!(postcard::to_allocvec(&s).unwrap()[0], storage_tag(s));
        golden("Storage", &s, want);
    }
    let quants = [
        (Quant::None, "00"),
        (Quant::PerTensor { scale: 0.5, zero_point: -3 }, "01 00 00 00 3f 05"),
        (Quant::PerChannel { axis: 3, scales: Blob { offset: 256, len: 32 } }, "02 03 80 02 20"),
    ];
    for (q, want) in quants {
        assert_eq!(postcard::to_allocvec(&q).unwrap()[0], quant_tag(q));
        golden("Quant", &q, want);
    }
    let mults = [
        (Multiplier::PerTensor { mult: 1_073_741_824, shift: -3 }, "00 80 80 80 80 08 05"),
        (
            Multiplier::PerChannel { mult: Blob { offset: 288, len: 32 }, shift: Blob { offset: 320, len: 32 } },
            "01 a0 02 20 c0 02 20",
        ),
    ];
    for (m, want) in mults {
        assert_eq!(postcard::to_allocvec(&m).unwrap()[0], multiplier_tag(m));
        golden("Multiplier", &m, want);
    }
    golden("Tensor", &Y, "ac 02 02 04 01 02 02 08 00 40 01 00 00 80 3e 0a");
    golden("Requant", &RQ, "01 a0 02 20 c0 02 20 ff 01 fe 01");
    golden("Padding", &PAD, "01 02 00 ac 02");
    golden(
        "Conv2dParams",
        &Conv2dParams { stride: [2, 1], dilation: [1, 3], padding: PAD, groups: 1, activation: Activation::Relu6 },
        "02 01 01 03 01 02 00 ac 02 01 02",
    );
    golden("PoolParams", &PoolParams { kernel: [3, 3], stride: [2, 2], padding: PAD }, "03 03 02 02 01 02 00 ac 02");
    golden("BinaryQuant", &BQ, "28 80 80 80 80 08 01 80 bc c1 96 0b 03 80 b0 b4 f8 08 25 ff 01 fe 01");
    golden(
        "SoftmaxQuant",
        &SoftmaxQuant { input_multiplier: 1_717_986_918, input_left_shift: 26, diff_min: -3968 },
        "cc 99 b3 e6 0c 34 ff 3d",
    );
}
