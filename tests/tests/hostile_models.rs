//! Hostile models: valid containers (correct CRC, well-formed postcard) whose shapes and parameters are
//! chosen to make a runtime loop for years or overflow its size arithmetic: zero-sized dims beside
//! u32::MAX dims, across several fields of several ops at once. Each must end in a clean error or a
//! completed inference within a time budget, never a panic or a hang.
//!
//! Every case runs on its own thread against a deadline (`RSIM_HOSTILE_BUDGET_MS`, default 2000 ms per
//! case); a case over budget fails the test naming it (its thread is left behind; the process ends with
//! the test binary). The engine gets a compute budget (`Options::max_macs`), as a board would: a valid
//! model whose inference is simply too large must be refused with `OverBudget`, not run for hours.
//! `RSIM_HOSTILE_CASES` changes the count of coordinated mutations (default 4000); rerun one with
//! `RSIM_HOSTILE_CASE=<n>`.
mod support;

use rsim_edge::{Engine, EngineError, Options};
use rsim_model::write::{encode, input_spec, WeightsBuilder};
use rsim_model::*;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{Aligned, Rng};

const BASE_SEED: u64 = 0x0517_c0de_0000_0011;
/// Largest arena a case is given; a model planning more must be refused with ArenaTooSmall.
const ARENA_CAP: usize = 1 << 24;
/// The compute budget every case's engine runs under (a board's would be far lower).
const MAX_MACS: u64 = 1 << 26;

fn budget() -> Duration {
    let ms = std::env::var("RSIM_HOSTILE_BUDGET_MS").ok().and_then(|s| s.parse().ok()).unwrap_or(2000);
    Duration::from_millis(ms)
}

/// Where a case ended.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Parse(String),
    Prepare(EngineError),
    Eval(EngineError),
    Ran,
}

/// Parse, `Engine::with_options` (full and lean), invoke: what a board or `rsim eval` does.
fn exercise(bytes: &[u8], lean: bool) -> Outcome {
    let model = Aligned::copy_of(bytes);
    let info = match Model::parse(model.bytes()) {
        Err(e) => return Outcome::Parse(e.to_string()),
        Ok(m) => m.info,
    };
    let opts = Options { lean, max_macs: Some(MAX_MACS), ..Options::default() };
    let need = rsim_edge::required_arena_with(model.bytes(), &opts).unwrap_or(info.arena_size as usize);
    let mut arena = Aligned::zeroed(need.min(ARENA_CAP));
    let mut engine = match Engine::with_options(model.bytes(), arena.bytes_mut(), opts) {
        Err(e) => return Outcome::Prepare(e),
        Ok(e) => e,
    };
    assert!(engine.macs() <= MAX_MACS, "an engine over its budget was built");
    for (i, b) in engine.input_mut().iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37);
    }
    match engine.invoke() {
        Err(e) => Outcome::Eval(e),
        Ok(()) => Outcome::Ran,
    }
}

/// Runs `exercise` on a thread; `Err` names a panic or a blown deadline.
fn timed(bytes: Vec<u8>, lean: bool) -> Result<(Outcome, Duration), String> {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(|| exercise(&bytes, lean));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(budget()) {
        Ok(Ok(o)) => Ok((o, start.elapsed())),
        Ok(Err(p)) => Err(format!(
            "PANIC {}",
            p.downcast_ref::<String>().cloned().or(p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
        )),
        Err(_) => Err(format!("still running after {:?} (hang)", budget())),
    }
}

fn q(scale: f32) -> Quant {
    Quant::PerTensor { scale, zero_point: 0 }
}

fn t8(id: u16, dims: &[u32], offset: u32) -> Tensor {
    Tensor { id, dtype: DType::I8, shape: Shape::new(dims), storage: Storage::Arena { offset }, quant: q(0.05) }
}

const NO_PAD: Padding = Padding { top: 0, bottom: 0, left: 0, right: 0 };
const PAD1: Padding = Padding { top: 1, bottom: 1, left: 1, right: 1 };

fn info<'a>(name: &'a str, input: Tensor, output: Tensor, arena_size: u32) -> ModelInfo<'a> {
    ModelInfo {
        name,
        class_names: "a\nb\nc\nd",
        input_spec: input_spec(4, 4, &[0.0; 2], &[1.0; 2]),
        input,
        output,
        arena_size,
        op_count: 0,
        provenance: Provenance { method: "hostile (tests/tests/hostile_models.rs)", data: "", commit: "", metrics: "" },
    }
}

fn requant() -> Requant {
    Requant { multiplier: Multiplier::PerTensor { mult: 1 << 30, shift: 0 }, act_min: -128, act_max: 127 }
}

fn binary_quant() -> BinaryQuant {
    BinaryQuant {
        left_shift: 20,
        a_mult: 1 << 30,
        a_shift: 0,
        b_mult: 1 << 30,
        b_shift: 0,
        out_mult: 1 << 30,
        out_shift: -19,
        act_min: -128,
        act_max: 127,
    }
}

/// An int8 graph with one op of every int8 kind the hand-built classifier lacks: pools, concat, add,
/// mul, transpose, global pool, lut, reshape, softmax, dequantize. Input [1, 4, 4, 2].
fn int8_zoo() -> Vec<u8> {
    let mut w = WeightsBuilder::default();
    let table: Vec<u8> = (0..=255u8).map(|v| v.wrapping_mul(3)).collect();
    let table = w.push_bytes(&table);
    let x = t8(0, &[1, 4, 4, 2], 0);
    let maxp = t8(1, &[1, 2, 2, 2], 32);
    let avgp = t8(2, &[1, 4, 4, 2], 64);
    let cat = t8(3, &[1, 4, 4, 4], 96);
    let add = t8(4, &[1, 4, 4, 2], 160);
    let mul = t8(5, &[1, 4, 4, 2], 192);
    let tr = t8(6, &[1, 4, 4, 4], 224);
    let gap = t8(7, &[1, 1, 1, 4], 288);
    let lut = t8(8, &[1, 1, 1, 4], 304);
    let flat = t8(9, &[1, 4], 320);
    let sm = Tensor { quant: Quant::PerTensor { scale: 1.0 / 256.0, zero_point: -128 }, ..t8(10, &[1, 4], 336) };
    let out = Tensor {
        id: 11,
        dtype: DType::F32,
        shape: Shape::new(&[1, 4]),
        storage: Storage::Arena { offset: 352 },
        quant: Quant::None,
    };
    let ops = [
        Op::MaxPool2d {
            input: x,
            output: maxp,
            params: PoolParams { kernel: [2, 2], stride: [2, 2], padding: NO_PAD },
            act_min: -128,
            act_max: 127,
        },
        Op::AvgPool2d {
            input: x,
            output: avgp,
            params: PoolParams { kernel: [3, 3], stride: [1, 1], padding: PAD1 },
            act_min: -128,
            act_max: 127,
        },
        Op::Concat { inputs: [Some(x), Some(avgp), None, None], output: cat, axis: 3 },
        Op::Add { a: x, b: avgp, output: add, activation: Activation::None, quant: Some(binary_quant()) },
        Op::Mul { a: add, b: x, output: mul, activation: Activation::None, quant: Some(binary_quant()) },
        Op::Transpose { input: cat, output: tr, perm: [0, 2, 1, 3] },
        Op::GlobalAvgPool { input: tr, output: gap, requant: Some(requant()) },
        Op::Lut { input: gap, output: lut, table },
        Op::Reshape { input: lut, output: flat },
        Op::Softmax { input: flat, output: sm, beta: 1.0, quant: Some(support::softmax_quant(0.05)) },
        Op::Dequantize { input: sm, output: out },
    ];
    encode(&info("int8-zoo", x, out, 384), &ops, &w.bytes, None)
}

/// The models, each named: every one must be refused by `Engine::new` (prepare).
fn named_cases() -> Vec<(&'static str, Vec<u8>)> {
    let conv = |i: &[u32], wd: &[u32], o: &[u32], arena: u32| {
        let mut w = WeightsBuilder::default();
        let n: usize = wd.iter().map(|&d| d as usize).product::<usize>().min(64);
        let weights = w.tensor(1, DType::I8, wd, &vec![1u8; n], q(0.01));
        let input = t8(0, i, 0);
        let output = t8(2, o, 64);
        let op = Op::Conv2d {
            input,
            weights,
            bias: None,
            output,
            params: Conv2dParams {
                stride: [1, 1],
                dilation: [1, 1],
                padding: NO_PAD,
                groups: 1,
                activation: Activation::None,
            },
            requant: Some(requant()),
        };
        encode(&info("hostile conv", input, output, arena), &[op], &w.bytes, None)
    };
    let one = |name: &'static str, input: Tensor, output: Tensor, op: Op| {
        (name, encode(&info(name, input, output, 1 << 12), &[op], &[], None))
    };
    let m = u32::MAX;
    let pool = |i: &[u32], o: &[u32], k: u16, s: u16| {
        let (input, output) = (t8(0, i, 0), t8(1, o, 64));
        let params = PoolParams { kernel: [k, k], stride: [s, s], padding: NO_PAD };
        (input, output, Op::MaxPool2d { input, output, params, act_min: -128, act_max: 127 })
    };
    let (pi, po, pop) = pool(&[1, m, m, 0], &[m, m, m, 0], 1, 1);
    let (ai, ao, aop) = pool(&[1, 1 << 16, 1 << 16, 0], &[1, 1 << 16, 1 << 16, 0], 1, 1);
    let (ci, co) = (t8(0, &[m, m, 1, 0], 0), t8(1, &[m, m, 2, 0], 64));
    let concat = Op::Concat { inputs: [Some(ci), Some(ci), None, None], output: co, axis: 2 };
    let (ei, eo) = (t8(0, &[m, m, m, 0], 0), t8(1, &[m, m, m, 0], 64));
    let add = Op::Add { a: ei, b: ei, output: eo, activation: Activation::None, quant: Some(binary_quant()) };
    let (ti, to) = (t8(0, &[m, 0, m, m], 0), t8(1, &[m, m, 0, m], 64));
    let tr = Op::Transpose { input: ti, output: to, perm: [0, 2, 1, 3] };
    let (gi, go) = (t8(0, &[m, m, m, 0], 0), t8(1, &[m, 1, 1, 0], 64));
    let gap = Op::GlobalAvgPool { input: gi, output: go, requant: None };
    let (fi, fo) = (t8(0, &[1, 16], 0), t8(1, &[m, 0], 64));
    let mut w = WeightsBuilder::default();
    let fw = w.tensor(2, DType::I8, &[0, m], &[], q(0.01));
    let fc = Op::FullyConnected {
        input: fi,
        weights: fw,
        bias: None,
        output: fo,
        activation: Activation::None,
        requant: Some(requant()),
    };
    vec![
        // Zero-sized channels and inner dims (the 368-byte model: 2^24 empty conv taps).
        (
            "conv: zero in/out channels, 4096x4096 kernel",
            conv(&[1, 4096, 4096, 0], &[0, 4096, 4096, 0], &[1, 1, 1, 0], 256),
        ),
        ("conv: u32::MAX dims with a zero channel", conv(&[m, m, m, 0], &[0, 1, 1, 0], &[m, m, m, 0], 256)),
        ("conv: u32::MAX everywhere", conv(&[m, m, m, m], &[m, 1, 1, m], &[m, m, m, m], m)),
        one("maxpool: u32::MAX windows of zero channels", pi, po, pop),
        one("maxpool: 2^32 windows of zero channels", ai, ao, aop),
        one("concat: u32::MAX^2 rows of zero inner size", ci, co, concat),
        one("add: u32::MAX^3 positions of zero channels", ei, eo, add),
        one("transpose: zero dims between u32::MAX dims", ti, to, tr),
        one("global pool: u32::MAX^3 zero-channel images", gi, go, gap),
        (
            "fully connected: zero-depth weights, u32::MAX units",
            encode(&info("fc", fi, fo, 1 << 12), &[fc], &w.bytes, None),
        ),
    ]
}

#[test]
fn named_hostile_models_get_a_clean_error_in_bounded_time() {
    let mut failures = Vec::new();
    let mut worst = Duration::ZERO;
    let cases = named_cases();
    for (name, bytes) in &cases {
        for lean in [false, true] {
            match timed(bytes.clone(), lean) {
                Ok((Outcome::Parse(_) | Outcome::Prepare(_), took)) => worst = worst.max(took),
                Ok((o, _)) => failures.push(format!("{name} (lean {lean}): must be refused before invoke, got {o:?}")),
                Err(e) => failures.push(format!("{name} (lean {lean}): {e}")),
            }
        }
    }
    eprintln!("{} named hostile models x 2 modes: worst time to a clean error {worst:?}", cases.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn zoo_and_sources_run_within_budget() {
    for (name, bytes) in sources() {
        let model = Aligned::copy_of(&bytes);
        let need = rsim_edge::required_arena(model.bytes()).unwrap();
        let mut arena = Aligned::zeroed(need);
        let mut e = Engine::new(model.bytes(), arena.bytes_mut()).unwrap_or_else(|e| panic!("{name}: {e}"));
        e.invoke().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(e.macs() > 0 && e.macs() <= MAX_MACS, "{name}: {} MACs", e.macs());
        assert_eq!(Model::parse(model.bytes()).unwrap().macs().unwrap(), e.macs(), "{name}");
        // One MAC under the model's own count is refused, naming both numbers.
        let mut arena = Aligned::zeroed(need);
        let opts = Options { max_macs: Some(e.macs() - 1), ..Options::default() };
        let err = Engine::with_options(model.bytes(), arena.bytes_mut(), opts).err();
        assert_eq!(err, Some(EngineError::OverBudget { macs: e.macs(), limit: e.macs() - 1 }), "{name}");
    }
}

fn sources() -> Vec<(&'static str, Vec<u8>)> {
    vec![("int8 zoo", int8_zoo()), ("hand-int8", support::int8_model(1).0), ("hand-f32", support::f32_model(3).0)]
}

/// A value for one dim: zero, one, the original, or huge.
fn dim(rng: &mut Rng, orig: u32) -> u32 {
    match rng.below(8) {
        0 | 1 => 0,
        2 => 1,
        3 => orig,
        4 => u32::MAX,
        5 => 1 << 16,
        6 => 1 << (20 + rng.below(12)),
        _ => 1 + rng.below(64) as u32,
    }
}

fn big_u16(rng: &mut Rng) -> u16 {
    [0, 1, 2, u16::MAX, 1 << 15, 4096][rng.below(6) as usize]
}

/// Case `n`: a source with 1 to 4 tensors rewritten everywhere they appear (same id: producer and
/// consumers stay consistent, so later ops are reached), zero and huge dims mixed in each, and often
/// op parameters (kernels, strides, padding, axis, groups) and the arena size pushed to extremes.
fn coordinated_case(n: u64, sources: &[(&'static str, Vec<u8>)]) -> (String, Vec<u8>) {
    let mut rng = Rng(BASE_SEED ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let (name, bytes) = &sources[rng.below(sources.len() as u64) as usize];
    let model = Model::parse(bytes).unwrap();
    let mut ops: Vec<Op> = model.ops().map(|o| o.unwrap()).collect();
    let mut info = model.info;
    let mut ids = Vec::new();
    for op in &ops {
        op.for_each_tensor(|t| ids.push(t.id));
    }
    let mut edits = Vec::new();
    for _ in 0..1 + rng.below(4) {
        let id = ids[rng.below(ids.len() as u64) as usize];
        let mut shape: Option<Shape> = None;
        ops.iter().for_each(|op| {
            op.for_each_tensor(|t| {
                if t.id == id {
                    shape = Some(t.shape)
                }
            })
        });
        let mut s = shape.unwrap();
        for d in 0..s.rank as usize {
            s.dims[d] = dim(&mut rng, s.dims[d]);
        }
        // Most cases: one zero and one huge dim at once (the combination that empties a tensor while
        // its other dims drive loop counts).
        if s.rank >= 2 && rng.below(4) != 0 {
            let (a, b) = (rng.below(s.rank as u64) as usize, rng.below(s.rank as u64) as usize);
            s.dims[a] = u32::MAX >> rng.below(16);
            s.dims[b] = 0;
        }
        edits.push((id, s));
    }
    let apply = |t: &mut Tensor| {
        for (id, s) in &edits {
            if t.id == *id {
                t.shape = *s;
            }
        }
    };
    for op in ops.iter_mut() {
        op.for_each_tensor_mut(apply);
        if rng.below(3) == 0 {
            match op {
                Op::Conv2d { params, .. } => {
                    params.stride = [big_u16(&mut rng), big_u16(&mut rng)];
                    params.dilation = [big_u16(&mut rng), big_u16(&mut rng)];
                    let p = big_u16(&mut rng);
                    params.padding = Padding { top: p, bottom: p, left: p, right: p };
                }
                Op::AvgPool2d { params, .. } | Op::MaxPool2d { params, .. } => {
                    params.kernel = [big_u16(&mut rng), big_u16(&mut rng)];
                    params.stride = [big_u16(&mut rng), big_u16(&mut rng)];
                    let p = big_u16(&mut rng);
                    params.padding = Padding { top: p, bottom: p, left: p, right: p };
                }
                Op::Concat { axis, .. } => *axis = rng.below(5) as u8,
                _ => {}
            }
        }
    }
    apply(&mut info.input);
    apply(&mut info.output);
    if rng.below(4) == 0 {
        info.arena_size = [1 << 16, 1 << 24, u32::MAX][rng.below(3) as usize];
    }
    let desc = format!("case {n} ({name}, {} tensors rewritten: {edits:?})", edits.len());
    (desc, encode(&info, &ops, model.weights, None))
}

#[test]
fn coordinated_mutations_error_or_run_within_budget() {
    let sources = sources();
    let only: Option<u64> = std::env::var("RSIM_HOSTILE_CASE").ok().and_then(|s| s.parse().ok());
    let count: u64 = std::env::var("RSIM_HOSTILE_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(4000);
    let cases: Vec<u64> = only.map_or_else(|| (0..count).collect(), |n| vec![n]);
    let (mut parse, mut prepare, mut over_budget, mut eval, mut ran) = (0, 0, 0, 0, 0);
    let (mut worst, mut worst_case) = (Duration::ZERO, String::new());
    let mut failures = Vec::new();
    for &n in &cases {
        let (what, bytes) = coordinated_case(n, &sources);
        match timed(bytes, n % 3 == 0) {
            Ok((o, took)) => {
                if took > worst {
                    (worst, worst_case) = (took, what.clone());
                }
                match o {
                    Outcome::Parse(_) => parse += 1,
                    Outcome::Prepare(EngineError::OverBudget { .. }) => over_budget += 1,
                    Outcome::Prepare(_) => prepare += 1,
                    Outcome::Eval(_) => eval += 1,
                    Outcome::Ran => ran += 1,
                }
            }
            Err(e) => failures.push(format!("{what}: {e}")),
        }
    }
    eprintln!(
        "{} coordinated hostile cases: parse error {parse}, prepare error {prepare}, over the MAC budget \
         {over_budget}, eval error {eval}, ran {ran}; worst {worst:?} ({worst_case})",
        cases.len()
    );
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
    if only.is_none() {
        // Not vacuous: mutations must reach the engine's prepare, not all die in the decoder.
        assert!(prepare + over_budget > cases.len() / 10, "too few cases reach Engine::new");
    }
}
