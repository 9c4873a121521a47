//! A tiny hand-built model through the whole Engine: conv (f32 weights, f16 bias) + relu, global
//! pool, add of a constant, reshape (copy and in place), FC (f16 weights), softmax; checked against
//! f64 arithmetic written here. Plus the arena, alignment, aliasing and input contracts, and top-k.

mod common;
use common::*;
use rsim_edge::engine::top_k_into;
use rsim_edge::{required_arena, required_arena_with, Engine, EngineError, Options};
use rsim_model::write::{encode, input_spec, WeightsBuilder};
use rsim_model::*;

const ARENA: u32 = 448;

fn act_t(id: u16, dims: &[u32], offset: u32) -> Tensor {
    Tensor { id, dtype: DType::F32, shape: Shape::new(dims), storage: Storage::Arena { offset }, quant: Quant::None }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn f16_bytes(v: &[f32]) -> Vec<u8> {
    to_f16_bits(v).iter().flat_map(|x| x.to_le_bytes()).collect()
}

struct Tiny {
    conv_w: Vec<f32>, // [4, 3, 3, 3]
    conv_b: Vec<f32>, // [4], stored as f16
    add_c: Vec<f32>,  // [4]
    fc_w: Vec<f32>,   // [3, 4], stored as f16
    fc_b: Vec<f32>,   // [3]
}

impl Tiny {
    fn new() -> Tiny {
        let mut r = Rng::new(2024);
        Tiny { conv_w: r.vec(108), conv_b: r.vec(4), add_c: r.vec(4), fc_w: r.vec(12), fc_b: r.vec(3) }
    }

    /// Encodes the model; `edit` may change the ops (to build invalid plans).
    fn encode(&self, edit: impl FnOnce(&mut Vec<Op>)) -> Vec<u8> {
        let mut wb = WeightsBuilder::default();
        let cw = wb.tensor(100, DType::F32, &[4, 3, 3, 3], &f32_bytes(&self.conv_w), Quant::None);
        let cb = wb.tensor(101, DType::F16, &[4], &f16_bytes(&self.conv_b), Quant::None);
        let ac = wb.tensor(102, DType::F32, &[4], &f32_bytes(&self.add_c), Quant::None);
        let fw = wb.tensor(103, DType::F16, &[3, 4], &f16_bytes(&self.fc_w), Quant::None);
        let fb = wb.tensor(104, DType::F32, &[3], &f32_bytes(&self.fc_b), Quant::None);
        let pad1 = Padding { top: 1, bottom: 1, left: 1, right: 1 };
        let params =
            Conv2dParams { stride: [2, 2], dilation: [1, 1], padding: pad1, groups: 1, activation: Activation::Relu };
        let input = act_t(0, &[1, 5, 5, 3], 0);
        let output = act_t(7, &[1, 3], 96);
        let mut ops = vec![
            Op::Conv2d {
                input,
                weights: cw,
                bias: Some(cb),
                output: act_t(1, &[1, 3, 3, 4], 304),
                params,
                requant: None,
            },
            Op::GlobalAvgPool {
                input: act_t(1, &[1, 3, 3, 4], 304),
                output: act_t(2, &[1, 1, 1, 4], 0),
                requant: None,
            },
            Op::Add {
                a: act_t(2, &[1, 1, 1, 4], 0),
                b: ac,
                output: act_t(3, &[1, 1, 1, 4], 16),
                activation: Activation::None,
                quant: None,
            },
            Op::Reshape { input: act_t(3, &[1, 1, 1, 4], 16), output: act_t(4, &[1, 4], 64) },
            Op::Reshape { input: act_t(4, &[1, 4], 64), output: act_t(5, &[4], 64) },
            Op::FullyConnected {
                input: act_t(5, &[4], 64),
                weights: fw,
                bias: Some(fb),
                output: act_t(6, &[1, 3], 80),
                activation: Activation::None,
                requant: None,
            },
            Op::Softmax { input: act_t(6, &[1, 3], 80), output, beta: 1.0, quant: None },
        ];
        edit(&mut ops);
        let info = ModelInfo {
            name: "tiny",
            class_names: "forest\nriver\nurban",
            input_spec: input_spec(5, 5, &[0.5, 0.4, 0.3], &[0.2, 0.25, 0.5]),
            input,
            output,
            arena_size: ARENA,
            op_count: 0,
            provenance: Provenance { method: "test", data: "", commit: "", metrics: "" },
        };
        encode(&info, &ops, &wb.bytes, None)
    }

    /// (global-pool output, softmax output) in f64 for a 5x5x3 input.
    fn reference(&self, x: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let cb: Vec<f64> = from_f16_bits(&to_f16_bits(&self.conv_b)).iter().map(|&v| v as f64).collect();
        let fw: Vec<f64> = from_f16_bits(&to_f16_bits(&self.fc_w)).iter().map(|&v| v as f64).collect();
        let mut gap = vec![0f64; 4];
        for oy in 0..3 {
            for ox in 0..3 {
                for o in 0..4 {
                    let mut acc = cb[o];
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (iy, ix) = ((oy * 2 + ky) as i32 - 1, (ox * 2 + kx) as i32 - 1);
                            if !(0..5).contains(&iy) || !(0..5).contains(&ix) {
                                continue;
                            }
                            for c in 0..3 {
                                let xv = x[((iy * 5 + ix) * 3) as usize + c] as f64;
                                acc += xv * self.conv_w[((o * 3 + ky) * 3 + kx) * 3 + c] as f64;
                            }
                        }
                    }
                    gap[o] += acc.max(0.0) / 9.0;
                }
            }
        }
        let added: Vec<f64> = gap.iter().zip(&self.add_c).map(|(g, &c)| g + c as f64).collect();
        let logits: Vec<f64> =
            (0..3).map(|o| self.fc_b[o] as f64 + (0..4).map(|i| added[i] * fw[o * 4 + i]).sum::<f64>()).collect();
        let m = logits.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
        let s: f64 = e.iter().sum();
        (gap, e.iter().map(|v| v / s).collect())
    }
}

/// Model bytes copied into 16-byte-aligned memory at `offset` (to test both cases).
struct Buf {
    words: Vec<u128>,
    offset: usize,
    len: usize,
}
impl Buf {
    fn new(bytes: &[u8], offset: usize) -> Buf {
        let mut words = vec![0u128; (bytes.len() + offset) / 16 + 1];
        bytemuck::cast_slice_mut::<u128, u8>(&mut words)[offset..offset + bytes.len()].copy_from_slice(bytes);
        Buf { words, offset, len: bytes.len() }
    }
    fn zeroed(len: usize, offset: usize) -> Buf {
        Buf::new(&vec![0u8; len], offset)
    }
    fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[self.offset..self.offset + self.len]
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.words)[self.offset..self.offset + self.len]
    }
}

#[test]
fn tiny_model_matches_f64_end_to_end() {
    let tiny = Tiny::new();
    let model = Buf::new(&tiny.encode(|_| {}), 0);
    // Activations as planned; the prepared ops (and any fast-kernel data) follow them, 16-aligned.
    let lean = Options { lean: true, ..Options::default() };
    assert_eq!(required_arena_with(model.bytes(), &lean).unwrap(), ARENA as usize);
    let need = required_arena(model.bytes()).unwrap();
    assert!(need > ARENA as usize, "prepared ops live after the activations");
    let mut arena = Buf::zeroed(need, 0);
    let mut engine = Engine::new(model.bytes(), arena.bytes_mut()).unwrap();
    assert_eq!(engine.arena_used(), 448);
    assert_eq!(engine.report().ops, engine.kernels().count());
    let x = Rng::new(5).vec(75);
    let (gap, probs) = tiny.reference(&x);

    engine.run_f32(&x).unwrap();
    let mut out = [0f32; 3];
    assert_eq!(engine.output_f32(&mut out).unwrap(), 3);
    assert_close(&out, &probs, "softmax output");

    // Every op reports its output; the pool output matches the reference. The input shares arena
    // bytes with later tensors (it is dead after the conv), so it is set again before the run.
    let mut seen = vec![];
    engine.set_input_f32(&x).unwrap();
    engine
        .invoke_observed(&mut |i: u32, op: &Op, bytes: &[u8]| {
            seen.push((i, op.name(), bytes.len()));
            if i == 1 {
                let v: Vec<f32> = bytes.chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
                assert_close(&v, &gap, "global pool output");
            }
        })
        .unwrap();
    let names: Vec<_> = seen.iter().map(|s| s.1).collect();
    assert_eq!(names, ["Conv2d", "GlobalAvgPool", "Add", "Reshape", "Reshape", "FullyConnected", "Softmax"]);
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), (0..7).collect::<Vec<_>>());
    assert_eq!(seen[1].2, 16);

    // top-k follows the probabilities.
    let mut order: Vec<usize> = (0..3).collect();
    order.sort_by(|&a, &b| probs[b].partial_cmp(&probs[a]).unwrap());
    let mut top = [(0u16, 0f32); 2];
    assert_eq!(engine.top_k(&mut top), 2);
    assert_eq!([top[0].0 as usize, top[1].0 as usize], [order[0], order[1]]);
    assert_eq!(top[0].1, out[order[0]]);

    assert_eq!(engine.input_mut().len(), 300);
    assert_eq!(engine.output().len(), 12);
}

#[test]
fn arena_one_byte_short_is_an_error() {
    let model = Buf::new(&Tiny::new().encode(|_| {}), 0);
    let need = required_arena(model.bytes()).unwrap();
    let mut short = Buf::zeroed(need - 1, 0);
    match Engine::new(model.bytes(), short.bytes_mut()) {
        Err(EngineError::ArenaTooSmall { needed, given }) => assert_eq!((needed, given), (need, need - 1)),
        other => panic!("expected ArenaTooSmall, got {:?}", other.err()),
    }
    let mut exact = Buf::zeroed(need, 0);
    assert!(Engine::new(model.bytes(), exact.bytes_mut()).is_ok());
    // An arena starting 1 byte past alignment loses 15 bytes to alignment.
    let mut unaligned = Buf::zeroed(need + 15, 1);
    assert!(Engine::new(model.bytes(), unaligned.bytes_mut()).is_ok());
    let mut unaligned_short = Buf::zeroed(need + 14, 1);
    assert!(matches!(Engine::new(model.bytes(), unaligned_short.bytes_mut()), Err(EngineError::ArenaTooSmall { .. })));
    let mut empty: [u8; 0] = [];
    assert!(matches!(Engine::new(model.bytes(), &mut empty), Err(EngineError::ArenaTooSmall { .. })));
    // Lean mode (microcontrollers): the planned activations exactly, one byte short refused.
    let lean = Options { lean: true, ..Options::default() };
    let mut exact = Buf::zeroed(ARENA as usize, 0);
    assert!(Engine::with_options(model.bytes(), exact.bytes_mut(), lean).is_ok());
    let mut short = Buf::zeroed(ARENA as usize - 1, 0);
    assert!(matches!(
        Engine::with_options(model.bytes(), short.bytes_mut(), lean),
        Err(EngineError::ArenaTooSmall { .. })
    ));
}

#[test]
fn misaligned_model_bytes_give_identical_results_and_bad_bytes_are_model_errors() {
    let bytes = Tiny::new().encode(|_| {});
    let x = Rng::new(11).vec(75);
    let mut arena = Buf::zeroed(required_arena(&Tiny::new().encode(|_| {})).unwrap(), 0);
    let mut outputs = vec![];
    // Offset 0: f32 and f16 constants read as slices; 2: f16 as slices, f32 as bytes; 1: all as bytes.
    for offset in [0, 2, 1] {
        let model = Buf::new(&bytes, offset);
        let mut engine = Engine::new(model.bytes(), arena.bytes_mut()).unwrap();
        engine.run_f32(&x).unwrap();
        outputs.push(engine.output().to_vec());
    }
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);
    let truncated = Buf::new(&bytes[..bytes.len() - 3], 0);
    assert!(matches!(Engine::new(truncated.bytes(), arena.bytes_mut()), Err(EngineError::Model(_))));
    assert!(matches!(required_arena(&bytes[..10]), Err(EngineError::Model(ModelError::TooShort { .. }))));
}

#[test]
fn invalid_plans_and_shapes_are_refused_at_new() {
    let tiny = Tiny::new();
    let mut arena = Buf::zeroed(required_arena(&Tiny::new().encode(|_| {})).unwrap(), 0);
    // Conv output overlapping its input.
    let aliased = Buf::new(
        &tiny.encode(|ops| {
            if let Op::Conv2d { output, .. } = &mut ops[0] {
                output.storage = Storage::Arena { offset: 200 };
            }
        }),
        0,
    );
    assert_eq!(Engine::new(aliased.bytes(), arena.bytes_mut()).err(), Some(EngineError::Aliasing { op: 0 }));
    // Conv output shape that the geometry cannot produce.
    let bad_shape = Buf::new(
        &tiny.encode(|ops| {
            if let Op::Conv2d { output, .. } = &mut ops[0] {
                output.shape = Shape::new(&[1, 2, 2, 4]);
            }
        }),
        0,
    );
    let e = Engine::new(bad_shape.bytes(), arena.bytes_mut()).err();
    assert!(matches!(e, Some(EngineError::Unsupported { op: 0, name: "Conv2d", .. })), "{e:?}");
    // An f32 tensor at an offset that is not a multiple of 4.
    let odd = Buf::new(
        &tiny.encode(|ops| {
            if let Op::Softmax { output, .. } = &mut ops[6] {
                output.storage = Storage::Arena { offset: 98 };
            }
        }),
        0,
    );
    assert!(matches!(Engine::new(odd.bytes(), arena.bytes_mut()), Err(EngineError::Unsupported { op: 6, .. })));
}

#[test]
fn run_inputs_are_checked_and_images_are_preprocessed() {
    let tiny = Tiny::new();
    let model = Buf::new(&tiny.encode(|_| {}), 0);
    let mut arena = Buf::zeroed(required_arena(&Tiny::new().encode(|_| {})).unwrap(), 0);
    let mut engine = Engine::new(model.bytes(), arena.bytes_mut()).unwrap();
    assert!(matches!(engine.run_f32(&[0.0; 74]), Err(EngineError::BadInput { .. })));
    assert!(matches!(engine.output_f32(&mut [0.0; 2]), Err(EngineError::BadInput { .. })));

    // A 5x5 RGB image at the model's size: no resampling, only (p/255 - mean) / std.
    let pixels: Vec<u8> = (0..75).map(|i| (i * 37 % 256) as u8).collect();
    let (mean, std) = ([0.5f32, 0.4, 0.3], [0.2f32, 0.25, 0.5]);
    let x: Vec<f32> = pixels.iter().enumerate().map(|(i, &p)| (p as f32 / 255.0 - mean[i % 3]) / std[i % 3]).collect();
    engine.set_input_image_u8(&pixels, 5, 5, 3).unwrap();
    let got: Vec<f32> = engine.input_mut().chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_close(&got, &x.iter().map(|&v| v as f64).collect::<Vec<_>>(), "preprocessed input");
    engine.run_image_u8(&pixels, 5, 5, 3).unwrap();
    let mut out = [0f32; 3];
    engine.output_f32(&mut out).unwrap();
    assert_close(&out, &tiny.reference(&x).1, "output from image");
    assert!(matches!(engine.run_image_u8(&pixels, 5, 5, 1), Err(EngineError::BadInput { .. })));
    assert!(matches!(engine.run_image_u8(&pixels[..74], 5, 5, 3), Err(EngineError::BadInput { .. })));
}

#[test]
fn top_k_orders_by_score_then_lower_index() {
    let scores = [0.5f32, 0.9, 0.5, f32::NAN, 0.9, -1.0];
    let mut out = [(0u16, 0f32); 4];
    assert_eq!(top_k_into(scores.iter().copied(), &mut out), 4);
    assert_eq!(out.map(|e| e.0), [1, 4, 0, 2]);
    let mut all = [(0u16, 0f32); 10];
    assert_eq!(top_k_into(scores.iter().copied(), &mut all), 6);
    assert_eq!(all[..6].iter().map(|e| e.0).collect::<Vec<_>>(), [1, 4, 0, 2, 5, 3]);
    assert_eq!(top_k_into(scores.iter().copied(), &mut []), 0);
    let mut one = [(0u16, 0f32); 1];
    assert_eq!(top_k_into([3.0f32, 7.0, 7.0].into_iter(), &mut one), 1);
    assert_eq!(one[0], (1, 7.0));
}

#[test]
fn int8_graph_input_and_output_are_quantized_and_routed_to_int8_kernels() {
    // i8 input (scale 0.5, zp -3) -> Dequantize -> f32 -> Quantize (scale 0.25, zp 10) -> Reshape in place.
    let q = |id, dims: &[u32], offset, scale, zero_point| Tensor {
        id,
        dtype: DType::I8,
        shape: Shape::new(dims),
        storage: Storage::Arena { offset },
        quant: Quant::PerTensor { scale, zero_point },
    };
    let input = q(0, &[1, 4], 0, 0.5, -3);
    let output = q(3, &[4], 32, 0.25, 10);
    let ops = [
        Op::Dequantize { input, output: act_t(1, &[1, 4], 16) },
        Op::Quantize { input: act_t(1, &[1, 4], 16), output: q(2, &[1, 4], 32, 0.25, 10) },
        Op::Reshape { input: q(2, &[1, 4], 32, 0.25, 10), output },
    ];
    let info = ModelInfo {
        name: "q",
        class_names: "",
        input_spec: input_spec(1, 4, &[0.0], &[1.0]),
        input,
        output,
        arena_size: 48,
        op_count: 0,
        provenance: Provenance { method: "test", data: "", commit: "", metrics: "" },
    };
    let model = Buf::new(&encode(&info, &ops, &[], None), 0);
    let mut arena = Buf::zeroed(required_arena(model.bytes()).unwrap(), 0);
    let mut engine = Engine::new(model.bytes(), arena.bytes_mut()).unwrap();
    // round(x / 0.5) - 3, saturated: 1.0 -> -1, -2.24 -> -7, 100 -> 127, 0.26 -> -2.
    engine.set_input_f32(&[1.0, -2.24, 100.0, 0.26]).unwrap();
    assert_eq!(engine.input_mut(), &[-1i8 as u8, -7i8 as u8, 127, -2i8 as u8]);
    engine.invoke().unwrap();
    // Dequantized [1, -2, 65, 0.5] -> round(x / 0.25) + 10 saturated = [14, 2, 127, 12].
    assert_eq!(engine.output(), &[14, 2, 127, 12]);
    let mut out = [0f32; 4];
    engine.output_f32(&mut out).unwrap();
    assert_eq!(out, [1.0, -2.0, 29.25, 0.5]);
    let mut top = [(0u16, 0f32); 2];
    assert_eq!(engine.top_k(&mut top), 2);
    assert_eq!(top, [(2, 29.25), (0, 1.0)]);
}
