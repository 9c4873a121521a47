//! Malformed models: seeded mutations of valid `.rsm` bytes must each end in an error or a completed
//! inference, never a panic (a bounds-check panic is how an out-of-bounds read shows up in safe Rust).
//!
//! Half of the cases get their CRC re-fixed after mutating, so they reach the decoder, the validator,
//! `Engine::new` (prepare) and `invoke` (eval) instead of stopping at the checksum. Failures name the
//! case number; rerun one with `RSIM_MALFORMED_CASE=<n>`; its bytes are saved for `cargo fuzz` triage.
//! `RSIM_MALFORMED_CASES` changes the case count (default 12,000).
mod support;

use rsim_edge::{Engine, EngineError, ModelError};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;
use support::mutate::{fix_crc, mutate, KINDS};
use support::{Aligned, Rng};

const BASE_SEED: u64 = 0x2026_1126_0000_5eed;
/// Arenas above this are not allocated: the engine must refuse a smaller arena instead.
const ARENA_CAP: usize = 1 << 24;

/// Valid models to mutate: hand-built int8 and f32 graphs, builder exports (f32 and f16 weights,
/// MobileNetV3's squeeze-excite and hard-swish), and the converted MLPerf Tiny int8 peer models.
fn sources() -> Vec<(String, Vec<u8>)> {
    use rsim_model::arch::Arch;
    use rsim_model::graph_builder::{export, ExportOptions};
    let mut v = vec![
        ("hand-int8 seed 1".to_string(), support::int8_model(1).0),
        ("hand-int8 seed 2".to_string(), support::int8_model(2).0),
        ("hand-f32 seed 3".to_string(), support::f32_model(3).0),
    ];
    let mut mnv3 = ExportOptions::random(Arch::MobileNetV3Small, 3, 32, Some(5), 4);
    mnv3.softmax = true;
    let mut r8 = ExportOptions::random(Arch::ResNet8, 3, 16, Some(4), 5);
    r8.weight_dtype = rsim_model::DType::F16;
    for o in [mnv3, r8] {
        let name = format!("builder {} {:?}", o.name, o.weight_dtype);
        v.push((name.clone(), export(&o).unwrap_or_else(|e| panic!("{name}: {e:?}")).bytes));
    }
    for (folder, file) in
        [("mlperf-tiny-ic", "pretrainedResnet_quant.tflite"), ("mlperf-tiny-kws", "kws_ref_model.tflite")]
    {
        let Some(dir) = rsim_test_support::peer_model(folder) else { continue };
        let tflite = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{folder}/{file}: {e}"));
        let opts = rsim_model::tflite::ConvertOptions { source: file.into(), ..Default::default() };
        let model = rsim_model::tflite::convert(&tflite, &opts).unwrap_or_else(|e| panic!("{file}: {e}"));
        v.push((format!("{folder} (converted)"), model.bytes));
    }
    v
}

#[derive(Default, Debug)]
struct Tally {
    crc: usize,
    parse: usize,
    prepare: usize,
    eval: usize,
    ran: usize,
}

/// What one case did. `Err` carries a panic message.
fn exercise(bytes: &[u8], rng: &mut Rng, tally: &mut Tally) {
    let model = Aligned::copy_of(bytes);
    let info = match rsim_edge::Model::parse(model.bytes()) {
        Err(ModelError::CrcMismatch { .. }) => return tally.crc += 1,
        Err(_) => return tally.parse += 1,
        Ok(m) => m.info,
    };
    // The whole arena with its persistent part, so hostile bytes also reach the fast kernels' planning.
    let need = rsim_edge::required_arena(model.bytes()).unwrap_or(info.arena_size as usize);
    let mut arena = Aligned::zeroed(need.min(ARENA_CAP));
    let mut engine = match Engine::new(model.bytes(), arena.bytes_mut()) {
        Err(_) => return tally.prepare += 1,
        Ok(e) => e,
    };
    for b in engine.input_mut() {
        *b = rng.next_u64() as u8;
    }
    match engine.invoke() {
        Err(_) => tally.eval += 1,
        Ok(()) => {
            let _ = engine.output();
            tally.ran += 1
        }
    }
}

static LAST_PANIC: Mutex<String> = Mutex::new(String::new());

/// Builds case `n` deterministically from its number: source, mutation, CRC fix-up.
fn case(n: u64, sources: &[(String, Vec<u8>)]) -> (String, Vec<u8>, Rng) {
    let mut rng = Rng(BASE_SEED ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    // The hand-built models are tiny; the larger ones get one share each so a run stays short.
    let shares: Vec<u64> = sources.iter().map(|(name, _)| if name.starts_with("hand") { 4 } else { 1 }).collect();
    let mut pick = rng.below(shares.iter().sum());
    let mut i = 0;
    while pick >= shares[i] {
        pick -= shares[i];
        i += 1;
    }
    let (name, valid) = &sources[i];
    let kind = rng.below(KINDS.len() as u64) as usize;
    let mut bytes = valid.clone();
    // Stack a second mutation now and then: single edits miss interactions between fields.
    let rounds = if rng.below(8) == 0 { 2 } else { 1 };
    for _ in 0..rounds {
        if !bytes.is_empty() {
            mutate(kind, &mut bytes, &mut rng);
        }
    }
    let fixed = n.is_multiple_of(2);
    if fixed {
        fix_crc(&mut bytes);
    }
    (
        format!("case {n} ({name}, {} x{rounds}, crc {})", KINDS[kind], if fixed { "re-fixed" } else { "as mutated" }),
        bytes,
        rng,
    )
}

#[test]
fn mutated_models_error_or_run_never_panic() {
    let sources = sources();
    let only: Option<u64> = std::env::var("RSIM_MALFORMED_CASE").ok().and_then(|s| s.parse().ok());
    let count: u64 = std::env::var("RSIM_MALFORMED_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(12_000);
    let cases: Vec<u64> = match only {
        Some(n) => vec![n],
        None => (0..count).collect(),
    };

    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = info.to_string()));
    let (mut tally, mut fixed_tally, mut failures) = (Tally::default(), Tally::default(), Vec::new());
    let dump = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("malformed");
    for &n in &cases {
        let (what, bytes, mut rng) = case(n, &sources);
        let t = if n % 2 == 0 { &mut fixed_tally } else { &mut tally };
        if catch_unwind(AssertUnwindSafe(|| exercise(&bytes, &mut rng, t))).is_err() {
            let msg = LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let _ = std::fs::create_dir_all(&dump);
            let path = dump.join(format!("case-{n}.rsm"));
            let _ = std::fs::write(&path, &bytes);
            failures.push(format!("{what}: PANIC {msg}\n    bytes saved to {}", path.display()));
        }
    }
    std::panic::set_hook(prev);

    eprintln!("{} cases; CRC left as mutated: {tally:?}; CRC re-fixed: {fixed_tally:?}", cases.len());
    assert!(failures.is_empty(), "{} of {} cases panicked:\n{}", failures.len(), cases.len(), failures.join("\n"));
    if only.is_none() {
        assert!(cases.len() >= 10_000 || std::env::var("RSIM_MALFORMED_CASES").is_ok(), "at least 10,000 cases");
        // Guard against a vacuous run: the CRC-fixed half must get past the checksum and, in part,
        // through prepare into a full inference.
        let fixed = cases.len() / 2;
        assert_eq!(fixed_tally.crc, 0, "re-fixed cases must never fail the CRC");
        assert!(
            fixed_tally.prepare + fixed_tally.eval + fixed_tally.ran > fixed / 10,
            "too few cases reach the engine"
        );
        assert!(fixed_tally.ran > fixed / 50, "too few mutated models run to completion");
    }
}

#[test]
fn sources_are_valid_and_run() {
    // Also seeds for `cargo fuzz run parse_run` (fuzz/README.md): a control byte, then the model.
    let seeds = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-seeds");
    std::fs::create_dir_all(&seeds).expect("create fuzz-seeds");
    for (i, (name, bytes)) in sources().into_iter().enumerate() {
        let seed: Vec<u8> = [1u8].into_iter().chain(bytes.iter().copied()).collect();
        rsim_model::write::write_atomic(&seeds.join(format!("source-{i}.bin")), &seed).expect("write fuzz seed");
        let model = Aligned::copy_of(&bytes);
        let need = rsim_edge::required_arena(model.bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut arena = Aligned::zeroed(need);
        let mut engine = Engine::new(model.bytes(), arena.bytes_mut()).unwrap_or_else(|e| panic!("{name}: {e}"));
        engine.invoke().unwrap_or_else(|e| panic!("{name}: {e}"));
        // One byte short of the plan is a clean error, never a run on a short arena.
        let mut short = Aligned::zeroed(need - 1);
        assert!(
            matches!(Engine::new(model.bytes(), short.bytes_mut()), Err(EngineError::ArenaTooSmall { .. })),
            "{name}: an arena one byte short must be refused"
        );
    }
}
