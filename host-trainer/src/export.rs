//! `rsim export`: a classifier checkpoint to an `.rsm` (f32 or f16 weights, BatchNorm folded) with its
//! classes, normalisation and provenance (method, data + split + label budget, git commit, host
//! metrics), or to ONNX (f32) through the `.rsm` graph so both files describe the same model. An
//! existing `.rsm` converts to ONNX too: a float one to a float graph, an int8 one (`rsim quantize`)
//! to a QDQ graph with int8 input and output (docs/ONNX.md). Every file goes through a temp file +
//! rename, so a failed export leaves nothing behind.
use std::path::{Path, PathBuf};

use rsim_model::graph_builder::{self, ExportOptions, WeightMap, Weights};
use rsim_model::{DType, Model};
use tch::Kind;

use crate::classifier::{self, ClassifierMeta};

#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {
    /// A classifier checkpoint directory (model.safetensors + classifier.json), or an `.rsm` file with
    /// --format onnx (f32/f16 -> float ONNX; int8 from `rsim quantize` -> QDQ ONNX with int8 input/output).
    #[arg(long)]
    pub ckpt: PathBuf,
    /// rsm or onnx.
    #[arg(long, default_value = "rsm")]
    pub format: String,
    /// Weight type of the `.rsm`: f32 or f16 (biases stay f32). ONNX of a checkpoint is always f32; for an
    /// int8 ONNX, run `rsim quantize` and export that `.rsm` with --format onnx.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Append a softmax so the model outputs probabilities instead of logits.
    #[arg(long)]
    pub softmax: bool,
    /// Model name stored in the file (default: ARCH-SIZE).
    #[arg(long)]
    pub name: Option<String>,
    /// Output file.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
}

/// What was written.
#[derive(Debug)]
pub struct ExportReport {
    pub bytes: usize,
    pub arena: usize,
    pub ops: usize,
}

/// `git rev-parse HEAD` of the working directory's repository, if there is one.
pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Float weights of a safetensors file as PyTorch-named row-major arrays (integer counters such as
/// BatchNorm's `num_batches_tracked` are left out: nothing in the graph reads them).
pub fn weight_map(path: &Path) -> Result<WeightMap, String> {
    let mut map = WeightMap::new();
    for (k, t) in crate::checkpoint::load_tensors(path)? {
        if !matches!(t.kind(), Kind::Float | Kind::Half | Kind::Double | Kind::BFloat16) {
            continue;
        }
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let values = Vec::<f32>::try_from(t.to_kind(Kind::Float).flatten(0, -1))
            .map_err(|e| format!("{}: tensor '{k}': {e}", path.display()))?;
        map.insert(k.strip_prefix("backbone.").map(str::to_string).unwrap_or(k), (shape, values));
    }
    Ok(map)
}

/// The exporter's options for a checkpoint, provenance included.
pub fn options(dir: &Path, meta: &ClassifierMeta, dtype: DType) -> Result<ExportOptions, String> {
    let arch = meta.arch()?;
    let labels = meta.labels.map(|l| format!("; labels {l}")).unwrap_or_default();
    Ok(ExportOptions {
        name: format!("{}-{}", arch.name(), meta.size),
        arch,
        bands: meta.bands,
        height: meta.size,
        width: meta.size,
        num_classes: meta.has_head().then_some(meta.classes.len()),
        class_names: meta.classes.clone(),
        weights: Weights::Given(weight_map(&dir.join(classifier::WEIGHTS))?),
        weight_dtype: dtype,
        softmax: false,
        mean: meta.mean.clone(),
        std: meta.std.clone(),
        resize_shorter: 0,
        method: meta.method.clone(),
        data: format!("{} ({}{labels})", meta.data, meta.split),
        commit: git_commit(),
        metrics: serde_json::Value::Object(meta.metrics.clone()).to_string(),
    })
}

/// The `.rsm` bytes of a checkpoint (nothing written).
pub fn rsm_bytes(
    dir: &Path,
    dtype: DType,
    softmax: bool,
    name: Option<&str>,
) -> Result<graph_builder::Exported, String> {
    let meta = classifier::read_meta(dir)?;
    let mut opts = options(dir, &meta, dtype)?;
    opts.softmax = softmax;
    if let Some(n) = name {
        opts.name = n.to_string();
    }
    let out = graph_builder::export(&opts).map_err(|e| format!("{}: {e}", dir.display()))?;
    let unused: Vec<&String> = out.unused_weights.iter().filter(|k| !k.ends_with("num_batches_tracked")).collect();
    if !unused.is_empty() {
        return Err(format!(
            "{}: {} tensor(s) the {} graph does not use, e.g. '{}' (checkpoint of another architecture?)",
            dir.display(),
            unused.len(),
            meta.arch,
            unused[0]
        ));
    }
    Ok(out)
}

pub fn export(a: &ExportArgs) -> Result<ExportReport, String> {
    let dtype = match a.dtype.as_str() {
        "f32" => DType::F32,
        "f16" => DType::F16,
        o => return Err(format!("unknown --dtype '{o}' (f32 or f16; int8 comes from `rsim quantize`)")),
    };
    let onnx = match a.format.as_str() {
        "rsm" => false,
        "onnx" => true,
        o => return Err(format!("unknown --format '{o}' (rsm or onnx)")),
    };
    if onnx && dtype != DType::F32 {
        return Err("ONNX export writes f32 weights; leave --dtype at f32".into());
    }
    if a.ckpt.is_file() {
        // An existing model file: only the ONNX conversion makes sense.
        if !onnx {
            return Err(format!(
                "{} is a file; --format rsm needs a classifier checkpoint directory",
                a.ckpt.display()
            ));
        }
        let bytes = std::fs::read(&a.ckpt).map_err(|e| format!("reading {}: {e}", a.ckpt.display()))?;
        let r = write_onnx(&bytes, &a.output).map_err(|e| format!("{}: {e}", a.ckpt.display()))?;
        eprintln!("rsim: wrote {} ({} bytes ONNX)", a.output.display(), r.bytes);
        return Ok(r);
    }
    let out = rsm_bytes(&a.ckpt, dtype, a.softmax, a.name.as_deref())?;
    let report = ExportReport { bytes: out.bytes.len(), arena: out.plan.arena_size, ops: out.op_count };
    if onnx {
        let r = write_onnx(&out.bytes, &a.output)?;
        eprintln!("rsim: wrote {} ({} bytes ONNX, f32)", a.output.display(), r.bytes);
        return Ok(r);
    }
    rsim_model::write::write_atomic(&a.output, &out.bytes)
        .map_err(|e| format!("writing {}: {e}", a.output.display()))?;
    eprintln!(
        "rsim: wrote {} ({} bytes, {:?} weights, {} ops, arena {} bytes)",
        a.output.display(),
        report.bytes,
        dtype,
        report.ops,
        report.arena
    );
    Ok(report)
}

/// ONNX from `.rsm` bytes: float models as float graphs, int8 models as QDQ graphs.
fn write_onnx(rsm: &[u8], path: &Path) -> Result<ExportReport, String> {
    let model = Model::parse(rsm).map_err(|e| format!("not a valid .rsm model: {e}"))?;
    let bytes = rsim_model::onnx::to_onnx(&model).map_err(|e| e.to_string())?;
    rsim_model::write::write_atomic(path, &bytes).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(ExportReport { bytes: bytes.len(), arena: model.info.arena_size as usize, ops: model.info.op_count as usize })
}
