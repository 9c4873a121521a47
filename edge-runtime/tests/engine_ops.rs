//! Every float op through the Engine's dispatch (operand order, constants vs activations, fused
//! activations), on a small attention-like graph checked against f64 arithmetic written here:
//! LayerNorm -> MatMul (const, f16) -> Transpose -> MatMul (two activations) -> Softmax ->
//! Concat -> Gelu -> Mul (const) -> Reshape -> MaxPool -> AvgPool.

mod common;
use common::*;
use rsim_edge::Engine;
use rsim_model::write::{encode, input_spec, WeightsBuilder};
use rsim_model::*;

/// Hands out arena offsets one after another (no reuse: this test is about dispatch, not planning).
struct Arena(u32);
impl Arena {
    fn t(&mut self, id: u16, dims: &[u32]) -> Tensor {
        let shape = Shape::new(dims);
        let offset = self.0;
        self.0 += (shape.checked_len().unwrap() * 4).next_multiple_of(16) as u32;
        Tensor { id, dtype: DType::F32, shape, storage: Storage::Arena { offset }, quant: Quant::None }
    }
}

fn bytes_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn ln_ref(x: &[f64], g: &[f32], b: &[f32]) -> Vec<f64> {
    let d = g.len();
    x.chunks(d)
        .flat_map(|r| {
            let m = r.iter().sum::<f64>() / d as f64;
            let v = r.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / d as f64;
            (0..d).map(move |i| (r[i] - m) / (v + 1e-5).sqrt() * g[i] as f64 + b[i] as f64).collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn attention_like_graph_matches_f64() {
    let (t, d) = (4usize, 6usize);
    let mut rng = Rng::new(77);
    let (gamma, beta) = (rng.vec(d), rng.vec(d));
    let wq = from_f16_bits(&to_f16_bits(&rng.vec(d * d))); // stored as f16
    let gate = rng.vec(t + d);
    let x = rng.vec(t * d);

    let mut wb = WeightsBuilder::default();
    let g_t = wb.tensor(100, DType::F32, &[d as u32], &bytes_f32(&gamma), Quant::None);
    let b_t = wb.tensor(101, DType::F32, &[d as u32], &bytes_f32(&beta), Quant::None);
    let wq_bytes: Vec<u8> = to_f16_bits(&wq).iter().flat_map(|v| v.to_le_bytes()).collect();
    let wq_t = wb.tensor(102, DType::F16, &[d as u32, d as u32], &wq_bytes, Quant::None);
    let gate_t = wb.tensor(103, DType::F32, &[(t + d) as u32], &bytes_f32(&gate), Quant::None);

    let (tu, du) = (t as u32, d as u32);
    let mut a = Arena(0);
    let input = a.t(0, &[1, tu, du]);
    let ln = a.t(1, &[1, tu, du]);
    let q = a.t(2, &[1, tu, du]);
    let qt = a.t(3, &[1, du, tu]);
    let s = a.t(4, &[1, tu, tu]);
    let p = a.t(5, &[1, tu, tu]);
    let c = a.t(6, &[1, tu, tu + du]);
    let g = a.t(7, &[1, tu, tu + du]);
    let m = a.t(8, &[1, tu, tu + du]);
    let r = Tensor { id: 9, shape: Shape::new(&[1, 2, 2, tu + du]), ..m };
    let mp = a.t(10, &[1, 1, 2, tu + du]);
    let ap = a.t(11, &[1, 1, 1, tu + du]);
    let none = Padding { top: 0, bottom: 0, left: 0, right: 0 };
    let ops = [
        Op::LayerNorm { input, gamma: g_t, beta: b_t, output: ln, eps: 1e-5 },
        Op::MatMul { a: ln, b: wq_t, output: q },
        Op::Transpose { input: q, output: qt, perm: [0, 2, 1, 0] },
        Op::MatMul { a: ln, b: qt, output: s },
        Op::Softmax { input: s, output: p, beta: 0.5, quant: None },
        Op::Concat { inputs: [Some(p), Some(ln), None, None], output: c, axis: 2 },
        Op::Activation { input: c, output: g, activation: Activation::Gelu },
        Op::Mul { a: g, b: gate_t, output: m, activation: Activation::Relu, quant: None },
        Op::Reshape { input: m, output: r },
        Op::MaxPool2d {
            input: r,
            output: mp,
            params: PoolParams { kernel: [2, 1], stride: [1, 1], padding: none },
            act_min: 0,
            act_max: 0,
        },
        Op::AvgPool2d {
            input: mp,
            output: ap,
            params: PoolParams { kernel: [1, 2], stride: [1, 1], padding: none },
            act_min: 0,
            act_max: 0,
        },
    ];
    let info = ModelInfo {
        name: "attn",
        class_names: "",
        input_spec: input_spec(tu, du, &[0.0], &[1.0]),
        input,
        output: ap,
        arena_size: a.0,
        op_count: 0,
        provenance: Provenance { method: "test", data: "", commit: "", metrics: "" },
    };
    let model = encode(&info, &ops, &wb.bytes, None);
    let mut arena = vec![0u8; rsim_edge::required_arena(&model).unwrap() + 15];
    let mut engine = Engine::new(&model, &mut arena).unwrap();
    engine.set_input_f32(&x).unwrap();
    let mut outs: Vec<Vec<f32>> = vec![];
    engine
        .invoke_observed(&mut |_, _, b: &[u8]| {
            outs.push(b.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
        })
        .unwrap();

    // f64 reference, op by op.
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let ln_w = ln_ref(&x64, &gamma, &beta);
    assert_close(&outs[0], &ln_w, "layer norm");
    let q_w: Vec<f64> =
        (0..t * d).map(|i| (0..d).map(|k| ln_w[i / d * d + k] * wq[k * d + i % d] as f64).sum()).collect();
    assert_close(&outs[1], &q_w, "matmul with f16 constant");
    let qt_w: Vec<f64> = (0..d * t).map(|i| q_w[(i % t) * d + i / t]).collect();
    assert_close(&outs[2], &qt_w, "transpose");
    let s_w: Vec<f64> = (0..t * t).map(|i| (0..d).map(|k| ln_w[i / t * d + k] * qt_w[k * t + i % t]).sum()).collect();
    assert_close(&outs[3], &s_w, "matmul of activations");
    let p_w: Vec<f64> = s_w
        .chunks(t)
        .flat_map(|row| {
            let mx = row.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = row.iter().map(|v| ((v - mx) * 0.5).exp()).collect();
            let sum: f64 = e.iter().sum();
            e.into_iter().map(move |v| v / sum)
        })
        .collect();
    assert_close(&outs[4], &p_w, "softmax");
    let w = t + d;
    let c_w: Vec<f64> =
        (0..t * w).map(|i| if i % w < t { p_w[i / w * t + i % w] } else { ln_w[i / w * d + i % w - t] }).collect();
    assert_close(&outs[5], &c_w, "concat");
    let g_w: Vec<f64> = c_w.iter().map(|&v| 0.5 * v * (1.0 + libm::erf(v / 2f64.sqrt()))).collect();
    assert_close(&outs[6], &g_w, "gelu");
    let m_w: Vec<f64> = g_w.iter().enumerate().map(|(i, &v)| (v * gate[i % w] as f64).max(0.0)).collect();
    assert_close(&outs[7], &m_w, "mul + relu");
    assert_close(&outs[8], &m_w, "reshape");
    // [1,2,2,w]: max over the two rows, then mean over the two columns.
    let at = |y: usize, xx: usize, ch: usize| m_w[(y * 2 + xx) * w + ch];
    let mp_w: Vec<f64> = (0..2 * w).map(|i| at(0, i / w, i % w).max(at(1, i / w, i % w))).collect();
    assert_close(&outs[9], &mp_w, "max pool");
    let ap_w: Vec<f64> = (0..w).map(|ch| (mp_w[ch] + mp_w[w + ch]) / 2.0).collect();
    assert_close(&outs[10], &ap_w, "avg pool");
    let mut out = vec![0f32; w];
    engine.output_f32(&mut out).unwrap();
    assert_close(&out, &ap_w, "graph output");
}
