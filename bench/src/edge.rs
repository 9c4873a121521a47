//! `rsim-bench edge`: rsim-edge against tract, ONNX Runtime and LiteRT, side by side in one run
//! (method in the crate doc).

use crate::peak::{self, Peak};
use crate::peers::{self, Worker};
use crate::timing::{self, median};
use crate::zoo::{self, Aligned};
use rsim_edge::tract_backend::TractModel;
use rsim_edge::Engine;
use rsim_model::arch::Arch;
use rsim_model::tflite::{convert, ConvertOptions};
use rsim_model::Model;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

const HELP: &str = "\
usage: cargo xtask bench edge [--quick] [--min-time SECONDS] [--models A,B] [--no-python] [--json PATH]
       (or: cargo run --release -p rsim-bench -- edge [flags])

Single-thread inference time of rsim-edge (int8 and f32) against tract (f32, ONNX export),
ONNX Runtime (f32 ONNX export, int8 QDQ export) and LiteRT with XNNPACK (the int8 .tflite), on
  ic-resnet8          MLPerf Tiny image classification, int8 .tflite from $RSIM_MODELS
  kws-dscnn           MLPerf Tiny keyword spotting, int8 .tflite from $RSIM_MODELS
  mobilenetv2-1.0-224 random weights, f32 and int8 PTQ, 1000 classes
  resnet18-224        random weights, f32 and int8 PTQ, 1000 classes
  mobilenetv2-0.35-64 random weights, f32 and int8 PTQ, 10 classes (the EuroSAT student's shape)
Prints median and min ms, the ratio to the fastest peer engine on the same model, and the % of this
CPU's int8 MAC/s or f32 FLOP/s peak (measured in the same run); writes every row as JSON.
ONNX Runtime and LiteRT run from <repo>/.venv (created, and the packages pip-installed, when
missing); a peer that cannot be set up prints a SKIPPED line and the rest still runs.

flags:
  --quick             only ic-resnet8, kws-dscnn and mobilenetv2-0.35-64
  --min-time SECONDS  per model, the fastest engine's timed runs last at least this long (default 1);
                      every engine of the model gets the same number of runs (at least 10; capped
                      where the slowest engine would take over 10x this)
  --models A,B        only these models (names above; combines with --quick)
  --no-python         skip the Python peers (ONNX Runtime, LiteRT)
  --json PATH         where the JSON goes (default <repo>/target/bench/edge.json)
  --threads N         also time rsim-edge with N threads (1..=16) as `rsim-edge-mt` rows; every
                      other row stays single-threaded (default 1: no such rows)
  -h, --help          this text

Environment: RSIM_MODELS (default <repo>/../shared/models), PYTHON (creates .venv, default python3).";

/// Warm-up inferences per engine (also the speed estimate that sets the run count).
const WARMUP: usize = 3;
/// Fewest timed inferences per engine.
const MIN_RUNS: usize = 10;
/// The slowest engine's timed runs are capped at about this many times --min-time.
const CAP_FACTOR: f64 = 10.0;
/// Rounds the timed runs are spread over, visiting the engines in turn.
const ROUNDS: usize = 5;
/// Weight / input seed.
const SEED: u64 = 1;

#[derive(Debug)]
struct Args {
    quick: bool,
    min_time: f64,
    models: Option<Vec<String>>,
    python: bool,
    json: Option<PathBuf>,
    threads: usize,
}

fn parse(args: &[String]) -> Result<Option<Args>, String> {
    let mut a = Args { quick: false, min_time: 1.0, models: None, python: true, json: None, threads: 1 };
    let mut it = args.iter();
    while let Some(f) = it.next() {
        let mut value = || it.next().ok_or(format!("{f} needs a value (see --help)"));
        match f.as_str() {
            "-h" | "--help" => return Ok(None),
            "--quick" => a.quick = true,
            "--no-python" => a.python = false,
            "--threads" => {
                let v = value()?;
                a.threads = v
                    .parse()
                    .ok()
                    .filter(|t| (1..=16).contains(t))
                    .ok_or(format!("--threads: '{v}' is not a count in 1..=16"))?;
            }
            "--min-time" => {
                let v = value()?;
                let s: f64 = v.parse().map_err(|_| format!("--min-time: '{v}' is not a number of seconds"))?;
                if !(s.is_finite() && s > 0.0) {
                    return Err(format!("--min-time must be positive, got {v}"));
                }
                a.min_time = s;
            }
            "--models" => {
                let names: Vec<String> =
                    value()?.split(',').map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect();
                for n in &names {
                    if !SPECS.iter().any(|s| s.name == n) {
                        let known: Vec<&str> = SPECS.iter().map(|s| s.name).collect();
                        return Err(format!("--models: unknown model `{n}` (known: {})", known.join(", ")));
                    }
                }
                a.models = Some(names);
            }
            "--json" => a.json = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown flag `{other}` (see rsim-bench edge --help)")),
        }
    }
    Ok(Some(a))
}

enum Source {
    Tflite { folder: &'static str, file: &'static str },
    Random { arch: Arch, size: usize, classes: usize },
}

struct Spec {
    name: &'static str,
    what: &'static str,
    quick: bool,
    source: Source,
}

const SPECS: &[Spec] = &[
    Spec {
        name: "ic-resnet8",
        what: "MLPerf Tiny IC ResNet-8 32x32x3 (int8 .tflite)",
        quick: true,
        source: Source::Tflite { folder: "mlperf-tiny-ic", file: "pretrainedResnet_quant.tflite" },
    },
    Spec {
        name: "kws-dscnn",
        what: "MLPerf Tiny KWS DS-CNN 49x10x1 (int8 .tflite)",
        quick: true,
        source: Source::Tflite { folder: "mlperf-tiny-kws", file: "kws_ref_model.tflite" },
    },
    Spec {
        name: "mobilenetv2-0.35-64",
        what: "MobileNetV2-0.35 64x64x3, 10 classes (random weights)",
        quick: true,
        source: Source::Random { arch: Arch::MobileNetV2 { width: 0.35 }, size: 64, classes: 10 },
    },
    Spec {
        name: "mobilenetv2-1.0-224",
        what: "MobileNetV2-1.0 224x224x3, 1000 classes (random weights)",
        quick: false,
        source: Source::Random { arch: Arch::MobileNetV2 { width: 1.0 }, size: 224, classes: 1000 },
    },
    Spec {
        name: "resnet18-224",
        what: "ResNet-18 224x224x3, 1000 classes (random weights)",
        quick: false,
        source: Source::Random { arch: Arch::ResNet18, size: 224, classes: 1000 },
    },
];

/// How one engine runs one model.
enum Runner {
    /// rsim-edge: a fresh `Engine` per round (untimed); the input is restored before every invoke
    /// (the planned arena may reuse the input's bytes), only `invoke` is timed.
    Rsim { model: Aligned, input: Vec<u8>, threads: usize },
    /// tract: `run_f32` (input tensor built from the slice, output copied out) is timed.
    Tract { model: Box<TractModel>, input: Vec<f32> },
    /// A Python peer loaded in the worker under this id.
    Py { id: String },
}

impl Runner {
    fn run(&mut self, py: &mut Option<Worker>, n: usize) -> Result<Vec<f64>, String> {
        match self {
            Runner::Rsim { model, input, threads } => {
                let mut arena = zoo::arena_for(model.bytes())?;
                let opts = rsim_edge::Options { threads: *threads, ..Default::default() };
                let mut engine = Engine::with_options(model.bytes(), &mut arena, opts).map_err(|e| e.to_string())?;
                let mut times = Vec::with_capacity(n);
                for _ in 0..n {
                    engine.input_mut().copy_from_slice(input);
                    let t = Instant::now();
                    engine.invoke().map_err(|e| e.to_string())?;
                    times.push(t.elapsed().as_secs_f64());
                }
                Ok(times)
            }
            Runner::Tract { model, input } => {
                let mut times = Vec::with_capacity(n);
                for _ in 0..n {
                    let t = Instant::now();
                    let out = model.run_f32(input).map_err(|e| e.to_string())?;
                    times.push(t.elapsed().as_secs_f64());
                    std::hint::black_box(out);
                }
                Ok(times)
            }
            Runner::Py { id } => py.as_mut().ok_or("the Python worker is gone")?.run(id, n),
        }
    }
}

/// One engine on one model, before measuring.
struct Candidate {
    engine: &'static str,
    precision: &'static str,
    runner: Runner,
    macs: u64,
}

struct Row {
    model: String,
    engine: &'static str,
    precision: &'static str,
    median_s: f64,
    min_s: f64,
    runs: usize,
    macs: u64,
    ratio: Option<f64>,
    peak_pct: Option<f64>,
}

struct Skip {
    model: String,
    engine: String,
    reason: String,
}

/// Collects skips and says each one loudly when it happens.
#[derive(Default)]
struct Skips(Vec<Skip>);

impl Skips {
    fn add(&mut self, model: &str, engine: &str, reason: impl Into<String>) {
        let reason = reason.into();
        eprintln!("\n*** SKIPPED {model} / {engine}: {reason}\n");
        self.0.push(Skip { model: model.into(), engine: engine.into(), reason });
    }
}

/// Python peers as far as they could be set up.
struct Python {
    worker: Option<Worker>,
    ort: Result<String, String>,
    litert: Result<String, String>,
    python: Option<String>,
}

fn start_python(repo: &Path, bench_dir: &Path, want: bool) -> Python {
    let off = |why: String| Python { worker: None, ort: Err(why.clone()), litert: Err(why), python: None };
    if !want {
        return off("--no-python".into());
    }
    let python = match peers::ensure_venv(repo) {
        Ok(p) => p,
        Err(e) => return off(format!("no Python environment: {e}")),
    };
    let script = repo.join("bench").join("peers.py");
    match Worker::start(&python, &script, &bench_dir.join("peers-stderr.log")) {
        Ok(w) => Python {
            ort: w.available("onnxruntime"),
            litert: w.available("litert"),
            python: w.hello["python"].as_str().map(String::from),
            worker: Some(w),
        },
        Err(e) => off(format!("the peers worker did not start: {e}")),
    }
}

fn models_dir(repo: &Path) -> PathBuf {
    let dir = match std::env::var_os("RSIM_MODELS") {
        Some(p) => {
            let p = PathBuf::from(p);
            if p.is_relative() {
                repo.join(p)
            } else {
                p
            }
        }
        None => repo.join("..").join("shared").join("models"),
    };
    dir.canonicalize().unwrap_or(dir)
}

pub fn run(args: &[String]) -> Result<(), String> {
    let Some(a) = parse(args)? else {
        println!("{HELP}");
        return Ok(());
    };
    let repo = crate::repo_root();
    let bench_dir = repo.join("target").join("bench");
    let tmp = bench_dir.join("edge-tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let json_path = a.json.clone().unwrap_or_else(|| bench_dir.join("edge.json"));

    let specs: Vec<&Spec> = SPECS
        .iter()
        .filter(|s| !a.quick || s.quick)
        .filter(|s| a.models.as_ref().is_none_or(|m| m.iter().any(|n| n == s.name)))
        .collect();
    if specs.is_empty() {
        return Err("no model left to measure (--models and --quick together exclude every model)".into());
    }

    let cpu = cpu_name();
    let features = peak::cpu_features();
    let load_before = loadavg();
    eprintln!("rsim-bench edge: {cpu}; measuring the single-core peak ...");
    let peak = peak::measure();
    eprintln!(
        "rsim-bench edge: peak int8 {:.1} GMAC/s ({}), f32 {:.1} GFLOP/s ({})",
        peak.int8_macs / 1e9,
        peak.int8_kernel,
        peak.f32_flops / 1e9,
        peak.f32_kernel
    );

    let mut skips = Skips::default();
    let mut py = start_python(&repo, &bench_dir, a.python);
    if let Err(e) = &py.ort {
        skips.add("all models", "onnxruntime", e.clone());
    }
    if let Err(e) = &py.litert {
        skips.add("all models", "litert", e.clone());
    }

    let models_root = models_dir(&repo);
    let mut rows = Vec::new();
    let mut model_info = Vec::new();
    for spec in &specs {
        eprintln!("rsim-bench edge: {} — {}: preparing", spec.name, spec.what);
        let t0 = Instant::now();
        let cands = match prepare(spec, &models_root, &tmp, &mut py, &mut skips) {
            Ok(c) => with_threads(c, a.threads),
            Err(e) => {
                skips.add(spec.name, "all engines", e);
                continue;
            }
        };
        eprintln!(
            "rsim-bench edge: {}: prepared in {:.1} s; measuring {} engines",
            spec.name,
            t0.elapsed().as_secs_f64(),
            cands.len()
        );
        let mut model_rows = measure(spec.name, cands, a.min_time, &mut py, &mut skips);
        finish_rows(&mut model_rows, &peak);
        model_info.push(json!({"name": spec.name, "what": spec.what, "macs": model_rows.first().map(|r| r.macs)}));
        rows.extend(model_rows);
    }
    drop(py.worker.take());
    let load_after = loadavg();

    print_table(&rows, &peak, &cpu, a.min_time);
    if !skips.0.is_empty() {
        println!("\nSKIPPED:");
        for s in &skips.0 {
            println!("  *** {} / {}: {}", s.model, s.engine, s.reason);
        }
    }

    let report = json!({
        "bench": "rsim-bench edge",
        "date": utc_now(),
        "args": args,
        "machine": {
            "cpu": cpu,
            "arch": std::env::consts::ARCH,
            "logical_cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "features": features.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "loadavg_1min_before": load_before,
            "loadavg_1min_after": load_after,
        },
        "peak": {
            "int8_macs_per_s": peak.int8_macs,
            "int8_kernel": peak.int8_kernel,
            "int8_madd_only_macs_per_s": peak.int8_madd_only_macs,
            "f32_flops_per_s": peak.f32_flops,
            "f32_kernel": peak.f32_kernel,
        },
        "protocol": {
            "threads": 1,
            "rsim_edge_mt_threads": a.threads,
            "warmup_runs": WARMUP,
            "min_time_s": a.min_time,
            "min_runs": MIN_RUNS,
            "cap_factor": CAP_FACTOR,
            "rounds": ROUNDS,
            "seed": SEED,
        },
        "versions": {
            "rsim-edge": env!("CARGO_PKG_VERSION"),
            "tract-onnx": tract_version(&repo),
            "python": py.python,
            "onnxruntime": py.ort.as_ref().ok(),
            "ai-edge-litert": py.litert.as_ref().ok(),
        },
        "models": model_info,
        "rows": rows.iter().map(|r| json!({
            "model": r.model,
            "engine": r.engine,
            "precision": r.precision,
            "median_ms": r.median_s * 1e3,
            "min_ms": r.min_s * 1e3,
            "runs": r.runs,
            "macs": r.macs,
            "ratio_to_fastest_peer": r.ratio,
            "peak_pct": r.peak_pct,
        })).collect::<Vec<_>>(),
        "skipped": skips.0.iter().map(|s| json!({"model": s.model, "engine": s.engine, "reason": s.reason})).collect::<Vec<_>>(),
    });
    if let Some(dir) = json_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&json_path, text + "\n").map_err(|e| format!("{}: {e}", json_path.display()))?;
    println!("\nJSON: {}", json_path.display());
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn onnx_of(model: &[u8]) -> Result<Vec<u8>, String> {
    let m = Model::parse(model).map_err(|e| e.to_string())?;
    rsim_model::onnx::to_onnx(&m).map_err(|e| e.to_string())
}

/// Adds a Python peer when it is available and loads; otherwise records why not.
#[allow(clippy::too_many_arguments)]
fn add_py(
    cands: &mut Vec<Candidate>,
    py: &mut Python,
    skips: &mut Skips,
    model_name: &str,
    engine: &'static str,
    precision: &'static str,
    file: Result<PathBuf, String>,
    input: &Path,
    macs: u64,
) {
    let available = if engine == "litert" { &py.litert } else { &py.ort };
    if available.is_err() {
        return; // said once for all models
    }
    let label = format!("{engine} {precision}");
    let file = match file {
        Ok(f) => f,
        Err(e) => return skips.add(model_name, &label, e),
    };
    let id = format!("{model_name}/{engine}/{precision}");
    let Some(w) = py.worker.as_mut() else { return skips.add(model_name, &label, "the Python worker is gone") };
    match w.load(&id, engine, &file, input) {
        Ok(()) => cands.push(Candidate { engine, precision, runner: Runner::Py { id }, macs }),
        Err(e) => skips.add(model_name, &label, format!("could not load {}: {e}", file.display())),
    }
}

/// With `--threads N > 1`, each rsim-edge candidate again as `rsim-edge-mt` on N threads (the peers
/// stay single-threaded: those rows show what the opt-in threads buy, not a peer comparison).
fn with_threads(mut cands: Vec<Candidate>, threads: usize) -> Vec<Candidate> {
    if threads < 2 {
        return cands;
    }
    let mt: Vec<Candidate> = cands
        .iter()
        .filter_map(|c| match &c.runner {
            Runner::Rsim { model, input, .. } => Some(Candidate {
                engine: "rsim-edge-mt",
                precision: c.precision,
                runner: Runner::Rsim { model: Aligned::new(model.bytes()), input: input.clone(), threads },
                macs: c.macs,
            }),
            _ => None,
        })
        .collect();
    cands.extend(mt);
    cands
}

/// Builds the model's forms and every engine that can run them.
fn prepare(
    spec: &Spec,
    models_root: &Path,
    tmp: &Path,
    py: &mut Python,
    skips: &mut Skips,
) -> Result<Vec<Candidate>, String> {
    let mut cands = Vec::new();
    let name = spec.name;
    match spec.source {
        Source::Tflite { folder, file } => {
            let path = models_root.join(folder).join(file);
            let tflite = std::fs::read(&path)
                .map_err(|e| format!("{}: {e} (set RSIM_MODELS to the peer models folder)", path.display()))?;
            let int8 = convert(&tflite, &ConvertOptions { source: file.into(), ..Default::default() })
                .map_err(|e| format!("{}: {e}", path.display()))?
                .bytes;
            let macs = zoo::macs(&int8)?;
            let input = zoo::random_bytes(zoo::input_len(&int8)?, SEED);
            let input_path = tmp.join(format!("{name}-int8.input"));
            write(&input_path, &input)?;
            cands.push(Candidate {
                engine: "rsim-edge",
                precision: "int8",
                runner: Runner::Rsim { model: Aligned::new(&int8), input: input.clone(), threads: 1 },
                macs,
            });
            let qdq = onnx_of(&int8).and_then(|b| {
                let p = tmp.join(format!("{name}-int8-qdq.onnx"));
                write(&p, &b).map(|_| p)
            });
            add_py(
                &mut cands,
                py,
                skips,
                name,
                "onnxruntime",
                "int8",
                qdq.map_err(|e| format!("QDQ export: {e}")),
                &input_path,
                macs,
            );
            add_py(&mut cands, py, skips, name, "litert", "int8", Ok(path), &input_path, macs);
        }
        Source::Random { arch, size, classes } => {
            let f32m = zoo::random_f32(arch, size, classes, SEED)?;
            let images = zoo::random_images(5, size, SEED ^ 0xCA1);
            // The first image is the timed input, the other four calibrate.
            let int8 = zoo::ptq_int8(&f32m, &images[1..], size).map_err(|e| format!("int8 PTQ: {e}"))?;
            let (macs_f, macs_q) = (zoo::macs(&f32m)?, zoo::macs(&int8)?);
            let in_f = zoo::input_bytes(&f32m, &images[0], size)?;
            let in_q = zoo::input_bytes(&int8, &images[0], size)?;
            let (in_f_path, in_q_path) =
                (tmp.join(format!("{name}-f32.input")), tmp.join(format!("{name}-int8.input")));
            write(&in_f_path, &in_f)?;
            write(&in_q_path, &in_q)?;
            let floats: Vec<f32> = in_f.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();

            cands.push(Candidate {
                engine: "rsim-edge",
                precision: "int8",
                runner: Runner::Rsim { model: Aligned::new(&int8), input: in_q, threads: 1 },
                macs: macs_q,
            });
            cands.push(Candidate {
                engine: "rsim-edge",
                precision: "f32",
                runner: Runner::Rsim { model: Aligned::new(&f32m), input: in_f, threads: 1 },
                macs: macs_f,
            });
            let onnx_f = onnx_of(&f32m).map_err(|e| format!("ONNX export: {e}"));
            match onnx_f
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|b| TractModel::from_onnx(b).map_err(|e| e.to_string()))
            {
                Ok(t) => cands.push(Candidate {
                    engine: "tract",
                    precision: "f32",
                    runner: Runner::Tract { model: Box::new(t), input: floats },
                    macs: macs_f,
                }),
                Err(e) => skips.add(name, "tract f32", e),
            }
            let f_path = onnx_f.and_then(|b| {
                let p = tmp.join(format!("{name}-f32.onnx"));
                write(&p, &b).map(|_| p)
            });
            add_py(&mut cands, py, skips, name, "onnxruntime", "f32", f_path, &in_f_path, macs_f);
            let q_path = onnx_of(&int8).map_err(|e| format!("QDQ export: {e}")).and_then(|b| {
                let p = tmp.join(format!("{name}-int8-qdq.onnx"));
                write(&p, &b).map(|_| p)
            });
            add_py(&mut cands, py, skips, name, "onnxruntime", "int8", q_path, &in_q_path, macs_q);
        }
    }
    Ok(cands)
}

/// Warm-up, run count, then the timed runs in rounds; engines that fail are skipped.
fn measure(model: &str, mut cands: Vec<Candidate>, min_time: f64, py: &mut Python, skips: &mut Skips) -> Vec<Row> {
    let mut estimates = Vec::new();
    let mut kept = Vec::new();
    for mut c in cands.drain(..) {
        match c.runner.run(&mut py.worker, WARMUP) {
            Ok(t) => {
                estimates.push(median(&t));
                kept.push(c);
            }
            Err(e) => {
                skips.add(model, &format!("{} {}", c.engine, c.precision), format!("warm-up failed: {e}"));
                if let (Runner::Py { id }, Some(w)) = (&c.runner, py.worker.as_mut()) {
                    w.unload(id);
                }
            }
        }
    }
    let n = timing::runs_for(&estimates, min_time, MIN_RUNS, CAP_FACTOR);
    eprintln!("rsim-bench edge: {model}: {n} timed runs per engine in {ROUNDS} rounds");
    let mut times: Vec<Option<Vec<f64>>> = kept.iter().map(|_| Some(Vec::with_capacity(n))).collect();
    for chunk in timing::chunks(n, ROUNDS) {
        for (c, t) in kept.iter_mut().zip(times.iter_mut()) {
            let Some(acc) = t else { continue };
            match c.runner.run(&mut py.worker, chunk) {
                Ok(v) => acc.extend(v),
                Err(e) => {
                    skips.add(model, &format!("{} {}", c.engine, c.precision), format!("timed run failed: {e}"));
                    *t = None;
                }
            }
        }
    }
    let mut rows = Vec::new();
    for (c, t) in kept.into_iter().zip(times) {
        if let Runner::Py { id } = &c.runner {
            if let Some(w) = py.worker.as_mut() {
                w.unload(id);
            }
        }
        let Some(t) = t else { continue };
        rows.push(Row {
            model: model.into(),
            engine: c.engine,
            precision: c.precision,
            median_s: median(&t),
            min_s: timing::min(&t),
            runs: t.len(),
            macs: c.macs,
            ratio: None,
            peak_pct: None,
        });
    }
    rows
}

/// Ratio to the fastest peer (non-rsim) median and % of peak for one model's rows.
fn finish_rows(rows: &mut [Row], peak: &Peak) {
    let fastest_peer =
        rows.iter().filter(|r| !r.engine.starts_with("rsim-edge")).map(|r| r.median_s).fold(f64::INFINITY, f64::min);
    for r in rows.iter_mut() {
        r.ratio = fastest_peer.is_finite().then(|| r.median_s / fastest_peer);
        let peak_macs = if r.precision == "int8" { peak.int8_macs } else { peak.f32_flops / 2.0 };
        r.peak_pct = (r.macs > 0 && peak_macs > 0.0).then(|| 100.0 * r.macs as f64 / r.median_s / peak_macs);
    }
}

fn print_table(rows: &[Row], peak: &Peak, cpu: &str, min_time: f64) {
    println!(
        "\nrsim-bench edge: {cpu}, single thread; {WARMUP} warm-up runs, then the same N timed runs for every engine of a model \
         (fastest engine >= {min_time} s)"
    );
    println!(
        "peak (measured): int8 {:.1} GMAC/s [{}], f32 {:.1} GFLOP/s [{}]{}\n",
        peak.int8_macs / 1e9,
        peak.int8_kernel,
        peak.f32_flops / 1e9,
        peak.f32_kernel,
        peak.int8_madd_only_macs
            .map(|m| format!("; vpmaddwd alone {:.1} GMAC/s (not used)", m / 1e9))
            .unwrap_or_default()
    );
    println!(
        "{:<20} {:>8} {:<12} {:<5} {:>11} {:>11} {:>9} {:>7} {:>6}",
        "model", "MMACs", "engine", "prec", "median ms", "min ms", "x fastest", "% peak", "runs"
    );
    let mut last = "";
    for r in rows {
        if r.model != last && !last.is_empty() {
            println!();
        }
        let first = r.model != last;
        last = &r.model;
        println!(
            "{:<20} {:>8} {:<12} {:<5} {:>11.3} {:>11.3} {:>9} {:>7} {:>6}",
            if first { r.model.as_str() } else { "" },
            if first { format!("{:.1}", r.macs as f64 / 1e6) } else { String::new() },
            r.engine,
            r.precision,
            r.median_s * 1e3,
            r.min_s * 1e3,
            r.ratio.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into()),
            r.peak_pct.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into()),
            r.runs,
        );
    }
    println!(
        "\nx fastest = median / median of the fastest non-rsim engine on that model (below 1: faster than every peer).\n\
         % peak = model MACs / median time / peak (int8 rows: int8 MAC/s; f32 rows: FLOP/s / 2)."
    );
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| format!("unknown {} CPU", std::env::consts::ARCH))
}

fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// tract-onnx's version from the workspace's Cargo.lock.
fn tract_version(repo: &Path) -> Option<String> {
    let lock = std::fs::read_to_string(repo.join("Cargo.lock")).ok()?;
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l.trim() == "name = \"tract-onnx\"" {
            return lines.next()?.trim().strip_prefix("version = \"")?.strip_suffix('"').map(String::from);
        }
    }
    None
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let a = parse(&s(&[
            "--quick",
            "--min-time",
            "0.5",
            "--models",
            "ic-resnet8,kws-dscnn",
            "--no-python",
            "--json",
            "x.json",
        ]))
        .unwrap()
        .unwrap();
        assert!(a.quick && !a.python);
        assert_eq!(a.min_time, 0.5);
        assert_eq!(a.models.unwrap(), vec!["ic-resnet8", "kws-dscnn"]);
        assert_eq!(a.json.unwrap(), PathBuf::from("x.json"));
        assert!(parse(&s(&["--help"])).unwrap().is_none());
        assert!(parse(&s(&["--models", "nope"])).unwrap_err().contains("known: ic-resnet8"));
        assert!(parse(&s(&["--min-time", "-1"])).is_err());
        assert!(parse(&s(&["--bogus"])).is_err());
    }

    #[test]
    fn date_format() {
        let d = utc_now();
        assert_eq!(d.len(), 20, "{d}");
        assert!(d.starts_with("20") && d.ends_with('Z'));
    }
}
