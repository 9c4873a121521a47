//! Full-int8 `.tflite` -> `.rsm` conversion (std).
//!
//! Reads the TFLite flatbuffer with a small checked reader ([`fb`]), maps each builtin op to the
//! rsim graph IR (`ops`), computes TFLM's `Prepare`-time parameters offline (multipliers, SAME
//! padding, clamps; see [`crate::quant`]), plans the arena and encodes the container. Tensor ids
//! in the `.rsm` are the TFLite tensor indices, so dumps line up with TFLite tooling.

pub mod fb;
mod ops;

use crate::graph::*;
use crate::write::{encode, WeightsBuilder};
use std::collections::HashMap;
use std::fmt;

/// What went wrong converting a `.tflite` file.
#[derive(Clone, Debug, PartialEq)]
pub enum TfliteError {
    /// The flatbuffer is truncated or inconsistent; the text says which part.
    Malformed(String),
    /// Op number `index` (TFLite operator order) of type `op` cannot be expressed in rsim.
    Unsupported { index: usize, op: String, reason: String },
    /// The arena planner refused the graph.
    Plan(String),
}

impl fmt::Display for TfliteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TfliteError::Malformed(what) => write!(f, "malformed .tflite file: {what}"),
            TfliteError::Unsupported { index, op, reason } => {
                write!(f, "TFLite op #{index} ({op}) is not supported: {reason}")
            }
            TfliteError::Plan(e) => write!(f, "arena planning failed: {e}"),
        }
    }
}

impl std::error::Error for TfliteError {}

fn malformed(what: &str) -> TfliteError {
    TfliteError::Malformed(what.to_string())
}

/// Caller-provided metadata; everything else comes from the file.
#[derive(Clone, Debug, Default)]
pub struct ConvertOptions {
    /// Model name (default: "tflite-import").
    pub name: Option<String>,
    /// Class names in output order (default: none).
    pub class_names: Vec<String>,
    /// Overrides the input spec derived from the input tensor's quantization.
    pub input_spec: Option<InputSpec>,
    /// Free text for provenance `data` (e.g. the source file name and hash).
    pub source: String,
}

/// A converted model plus facts about it for reports.
#[derive(Clone, Debug)]
pub struct Converted {
    pub bytes: Vec<u8>,
    pub arena_size: usize,
    /// Liveness lower bound of the arena (largest sum of simultaneously live activations).
    pub arena_lower_bound: usize,
    pub op_count: usize,
}

/// One TFLite tensor as read from the file.
#[derive(Clone, Debug)]
pub(crate) struct TfTensor {
    pub name: String,
    pub dtype: Option<DType>,
    pub dims: Vec<i32>,
    pub data: Option<Vec<u8>>,
    pub scales: Vec<f32>,
    pub zero_points: Vec<i64>,
    pub quant_dim: i32,
}

/// TFLite TensorType codes.
fn dtype_of(code: u8) -> Option<DType> {
    match code {
        0 => Some(DType::F32),
        1 => Some(DType::F16),
        2 => Some(DType::I32),
        3 => Some(DType::U8),
        9 => Some(DType::I8),
        _ => None,
    }
}

/// Conversion state: the file's tensors and the weights blob being assembled.
pub(crate) struct Ctx {
    pub tensors: Vec<TfTensor>,
    pub weights: WeightsBuilder,
    consts: HashMap<usize, Tensor>,
}

impl Ctx {
    pub fn tf(&self, idx: i32) -> Result<&TfTensor, String> {
        usize::try_from(idx)
            .ok()
            .and_then(|i| self.tensors.get(i))
            .ok_or_else(|| format!("tensor index {idx} out of range"))
    }

    /// The rsim descriptor of TFLite tensor `idx`: constants go into the weights blob (once),
    /// everything else is an activation to be placed by the planner.
    pub fn tensor(&mut self, idx: i32) -> Result<Tensor, String> {
        let i = usize::try_from(idx).map_err(|_| "optional tensor is missing".to_string())?;
        if let Some(t) = self.consts.get(&i) {
            return Ok(*t);
        }
        let t = self.tf(idx)?.clone();
        let id = u16::try_from(i).map_err(|_| format!("tensor index {i} above 65535"))?;
        let dtype = t.dtype.ok_or_else(|| format!("tensor {i} ({}) has an unsupported type", t.name))?;
        if t.dims.len() > 4 {
            return Err(format!("tensor {i} ({}) has rank {} > 4", t.name, t.dims.len()));
        }
        let dims: Vec<u32> = t
            .dims
            .iter()
            .map(|&d| u32::try_from(d).map_err(|_| format!("tensor {i} has a negative dim")))
            .collect::<Result<_, _>>()?;
        let quant = match t.scales.len() {
            0 => Quant::None,
            1 => Quant::PerTensor { scale: t.scales[0], zero_point: *t.zero_points.first().unwrap_or(&0) as i32 },
            n => {
                let axis = u8::try_from(t.quant_dim).map_err(|_| format!("tensor {i}: bad quantized_dimension"))?;
                if dims.get(axis as usize).copied() != Some(n as u32) {
                    return Err(format!("tensor {i}: {n} scales for a quantized dim of another size"));
                }
                if t.zero_points.iter().any(|&z| z != 0) {
                    return Err(format!("tensor {i}: per-channel quantization with non-zero zero points"));
                }
                Quant::PerChannel { axis, scales: self.weights.push_f32(&t.scales) }
            }
        };
        let shape = Shape::new(&dims);
        match &t.data {
            Some(data) => {
                let want = shape.checked_len().and_then(|n| n.checked_mul(dtype.size()));
                if want != Some(data.len()) {
                    return Err(format!("tensor {i} ({}): {} data bytes for its shape", t.name, data.len()));
                }
                let tensor = self.weights.tensor(id, dtype, &dims, data, quant);
                self.consts.insert(i, tensor);
                Ok(tensor)
            }
            None => Ok(Tensor { id, dtype, shape, storage: Storage::Arena { offset: 0 }, quant }),
        }
    }

    /// Little-endian i32 contents of a constant int32 tensor (axes, permutations).
    pub fn const_i32s(&self, idx: i32) -> Result<Vec<i32>, String> {
        let t = self.tf(idx)?;
        let d = t.data.as_ref().ok_or_else(|| format!("tensor {idx} must be a constant"))?;
        if t.dtype != Some(DType::I32) {
            return Err(format!("tensor {idx} must be int32"));
        }
        Ok(d.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
}

fn read_tensors(model: &fb::Table<'_>, sub: &fb::Table<'_>) -> Result<Vec<TfTensor>, TfliteError> {
    let buffers = model.vector(4, 4).ok_or_else(|| malformed("no buffers"))?;
    let tensors = sub.vector(0, 4).ok_or_else(|| malformed("subgraph has no tensors"))?;
    let mut out = Vec::with_capacity(tensors.len());
    for i in 0..tensors.len() {
        let t = tensors.table(i).ok_or_else(|| malformed("tensor table"))?;
        let buf_idx = t.u32(2, 0) as usize;
        let buffer = buffers
            .table(buf_idx)
            .ok_or_else(|| TfliteError::Malformed(format!("tensor {i}: buffer {buf_idx} missing")))?;
        if buffer.vector(0, 1).is_none() && buffer.u32(1, 0) != 0 {
            return Err(TfliteError::Malformed(format!(
                "tensor {i}: data stored outside the flatbuffer is not supported"
            )));
        }
        let data = buffer.vector(0, 1).map(|v| v.bytes().to_vec()).filter(|d| !d.is_empty());
        let q = t.table(4);
        out.push(TfTensor {
            name: t.string(3).unwrap_or("").to_string(),
            dtype: dtype_of(t.u8(1, 0)),
            dims: t.vector(0, 4).map(|v| v.i32s()).unwrap_or_default(),
            data,
            scales: q.and_then(|q| q.vector(2, 4)).map(|v| v.f32s()).unwrap_or_default(),
            zero_points: q.and_then(|q| q.vector(3, 8)).map(|v| v.i64s()).unwrap_or_default(),
            quant_dim: q.map(|q| q.i32(6, 0)).unwrap_or(0),
        });
    }
    Ok(out)
}

/// The input spec for an image-like input: pixels 0..255 map linearly onto the int8 input's real
/// range, so the runtime's (p/255 - mean)/std reproduces it (ResNet-8 IC: real = pixel).
fn derive_input_spec(input: &Tensor) -> InputSpec {
    let d = input.shape.nhwc();
    let (h, w, c) = (d[1] as u32, d[2] as u32, (d[3] as u32).clamp(1, MAX_BANDS as u32));
    let (mean, std) = match input.quant {
        Quant::PerTensor { scale, zero_point } => {
            let lo = scale as f64 * (-128 - zero_point) as f64;
            let span = scale as f64 * 255.0;
            ((-lo / span) as f32, (1.0 / span) as f32)
        }
        _ => (0.0, 1.0),
    };
    let c = c as usize;
    crate::write::input_spec(h.max(1), w.max(1), &vec![mean; c], &vec![std; c])
}

/// Converts a `.tflite` flatbuffer (schema 3, one subgraph used) into `.rsm` bytes.
pub fn convert(tflite: &[u8], opts: &ConvertOptions) -> Result<Converted, TfliteError> {
    let model = fb::root(tflite, Some(b"TFL3"))
        .ok_or_else(|| malformed("not a TFLite flatbuffer (identifier TFL3 missing)"))?;
    let version = model.u32(0, 0);
    if version != 3 {
        return Err(TfliteError::Malformed(format!("schema version {version}, expected 3")));
    }
    let codes = model.vector(1, 4).ok_or_else(|| malformed("no operator codes"))?;
    let sub = model.vector(2, 4).and_then(|s| s.table(0)).ok_or_else(|| malformed("no subgraph"))?;
    let tensors = read_tensors(&model, &sub)?;
    let mut ctx = Ctx { tensors, weights: WeightsBuilder::default(), consts: HashMap::new() };

    let operators = sub.vector(3, 4).ok_or_else(|| malformed("subgraph has no operators"))?;
    let mut graph = Vec::new();
    for i in 0..operators.len() {
        let op = operators.table(i).ok_or_else(|| malformed("operator table"))?;
        let code_idx = op.u32(0, 0) as usize;
        let code = codes
            .table(code_idx)
            .ok_or_else(|| TfliteError::Malformed(format!("op #{i}: opcode {code_idx} missing")))?;
        // deprecated_builtin_code (byte) and builtin_code (int): the larger is the real one.
        let builtin = (code.u8(0, 0) as i32).max(code.i32(3, 0));
        let io = ops::OpIo {
            inputs: op.vector(1, 4).map(|v| v.i32s()).unwrap_or_default(),
            outputs: op.vector(2, 4).map(|v| v.i32s()).unwrap_or_default(),
            options: op.table(4),
        };
        let unsupported = |reason: String| TfliteError::Unsupported { index: i, op: ops::op_name(builtin), reason };
        let mapped = ops::map_op(&mut ctx, builtin, &io).map_err(unsupported)?;
        graph.push(mapped);
    }

    let first = |v: Option<fb::Vector<'_>>, what: &str| v.and_then(|v| v.i32(0)).ok_or_else(|| malformed(what));
    let in_idx = first(sub.vector(1, 4), "subgraph has no input")?;
    let out_idx = first(sub.vector(2, 4), "subgraph has no output")?;
    let mut input = ctx.tensor(in_idx).map_err(TfliteError::Malformed)?;
    let mut output = ctx.tensor(out_idx).map_err(TfliteError::Malformed)?;
    let plan = crate::plan::plan(&mut graph, &mut input, &mut output).map_err(|e| TfliteError::Plan(e.to_string()))?;

    let name = opts.name.clone().unwrap_or_else(|| "tflite-import".to_string());
    let classes = opts.class_names.join("\n");
    let info = ModelInfo {
        name: &name,
        class_names: &classes,
        input_spec: opts.input_spec.unwrap_or_else(|| derive_input_spec(&input)),
        input,
        output,
        arena_size: u32::try_from(plan.arena_size).map_err(|_| TfliteError::Plan("arena above 4 GiB".into()))?,
        op_count: graph.len() as u32,
        provenance: Provenance {
            method: "tflite-import",
            data: &opts.source,
            commit: env!("CARGO_PKG_VERSION"),
            metrics: "",
        },
    };
    let bytes = encode(&info, &graph, &ctx.weights.bytes, None);
    Ok(Converted { bytes, arena_size: plan.arena_size, arena_lower_bound: plan.lower_bound, op_count: graph.len() })
}
