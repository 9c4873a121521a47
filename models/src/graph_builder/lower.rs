//! Lowering recorded nodes to `.rsm` ops (NHWC, TFLite weight layouts), planning the arena and
//! encoding the model.

use super::{BuildError, GraphBuilder, Node, VShape, Val, Weights};
use crate::arch::{self, Arch};
use crate::graph::*;
use crate::plan::{self, ArenaPlan};
use crate::write::{self, WeightsBuilder};

/// Everything [`export`] needs to write a complete model.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub name: String,
    pub arch: Arch,
    pub bands: usize,
    pub height: usize,
    pub width: usize,
    /// `None`: the model outputs backbone features [1, C].
    pub num_classes: Option<usize>,
    /// One per class; empty means `class0`, `class1`, ...
    pub class_names: Vec<String>,
    pub weights: Weights,
    /// Conv/linear weights as F32 or F16 (biases stay F32).
    pub weight_dtype: DType,
    /// Append a softmax so the model outputs probabilities.
    pub softmax: bool,
    /// Per-band normalization on the 0..1 pixel scale.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub resize_shorter: u32,
    pub method: String,
    pub data: String,
    pub commit: String,
    pub metrics: String,
}

impl ExportOptions {
    /// A random-weight model (ImageNet normalization for 3 bands, identity otherwise).
    pub fn random(arch: Arch, bands: usize, size: usize, num_classes: Option<usize>, seed: u64) -> ExportOptions {
        let (mean, std) = if bands == 3 {
            (vec![0.485, 0.456, 0.406], vec![0.229, 0.224, 0.225])
        } else {
            (vec![0.0; bands], vec![1.0; bands])
        };
        ExportOptions {
            name: format!("{}-{size}", arch.name()),
            arch,
            bands,
            height: size,
            width: size,
            num_classes,
            class_names: Vec::new(),
            weights: Weights::Random { seed },
            weight_dtype: DType::F32,
            softmax: false,
            mean,
            std,
            resize_shorter: 0,
            method: format!("builder:{}(random seed {seed})", arch.name()),
            data: String::new(),
            commit: String::new(),
            metrics: String::new(),
        }
    }
}

/// A written model and what the planner found.
#[derive(Clone, Debug)]
pub struct Exported {
    pub bytes: Vec<u8>,
    pub plan: ArenaPlan,
    pub op_count: usize,
    /// Names in a given weight map the architecture never asked for (e.g. an SSL projector).
    pub unused_weights: Vec<String>,
}

/// Builds `opts.arch` and writes a complete `.rsm` model.
pub fn export(opts: &ExportOptions) -> Result<Exported, BuildError> {
    super::check_weight_dtype(opts.weight_dtype)?;
    if opts.bands == 0 || opts.bands > MAX_BANDS {
        return Err(BuildError::BadOptions(format!("{} bands (1..={MAX_BANDS} supported)", opts.bands)));
    }
    if opts.mean.len() != opts.bands
        || opts.std.len() != opts.bands
        || opts.std.iter().any(|s| *s == 0.0 || !s.is_finite())
    {
        return Err(BuildError::BadOptions(format!("mean/std need {} finite values each (std non-zero)", opts.bands)));
    }
    let classes: Vec<String> = match opts.num_classes {
        Some(k) if opts.class_names.is_empty() => (0..k).map(|i| format!("class{i}")).collect(),
        Some(k) if opts.class_names.len() != k => {
            return Err(BuildError::BadOptions(format!("{} class names for {k} classes", opts.class_names.len())))
        }
        _ => opts.class_names.clone(),
    };
    if classes.iter().any(|c| c.contains('\n')) {
        return Err(BuildError::BadOptions("class names cannot contain a newline".into()));
    }

    let mut b = GraphBuilder::new(opts.weights.clone());
    let x = b.input(opts.bands, opts.height, opts.width);
    let (features, logits) = arch::build(&mut b, opts.arch, opts.bands, opts.num_classes, &x);
    let mut out = logits.unwrap_or(features);
    if opts.softmax {
        out = b.softmax(&out);
    }
    if let Some(e) = b.error() {
        return Err(e.clone());
    }
    let (mut ops, weights, mut input, mut output) = lower(&b, x, out, opts.weight_dtype)?;
    let plan = plan::plan(&mut ops, &mut input, &mut output).map_err(BuildError::Plan)?;

    let mut spec = write::input_spec(opts.height as u32, opts.width as u32, &opts.mean, &opts.std);
    spec.resize_shorter = opts.resize_shorter;
    let class_names = classes.join("\n");
    let info = ModelInfo {
        name: &opts.name,
        class_names: &class_names,
        input_spec: spec,
        input,
        output,
        arena_size: u32::try_from(plan.arena_size).map_err(|_| BuildError::BadOptions("arena above 4 GiB".into()))?,
        op_count: 0,
        provenance: Provenance { method: &opts.method, data: &opts.data, commit: &opts.commit, metrics: &opts.metrics },
    };
    let bytes = write::encode(&info, &ops, &weights.bytes, None);
    Ok(Exported { bytes, plan, op_count: ops.len(), unused_weights: b.unused_weights() })
}

fn shape_of(s: VShape) -> Shape {
    let d = |v: usize| v as u32;
    match s {
        VShape::Nhwc([n, h, w, c]) => Shape::new(&[d(n), d(h), d(w), d(c)]),
        VShape::Flat([n, c]) => Shape::new(&[d(n), d(c)]),
    }
}

struct Lowering<'a> {
    b: &'a GraphBuilder,
    wb: WeightsBuilder,
    next_id: usize,
    dtype: DType,
}

impl Lowering<'_> {
    fn act(&self, v: usize) -> Tensor {
        Tensor {
            id: v as u16,
            dtype: DType::F32,
            shape: shape_of(self.b.vals[v].shape),
            storage: Storage::Arena { offset: 0 },
            quant: Quant::None,
        }
    }
    fn constant(&mut self, dims: &[usize], data: &[f32], dtype: DType) -> Result<Tensor, BuildError> {
        let id = u16::try_from(self.next_id).map_err(|_| BuildError::Unsupported("more than 65535 tensors".into()))?;
        self.next_id += 1;
        let bytes: Vec<u8> = match dtype {
            DType::F16 => data.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
            _ => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        };
        let dims: Vec<u32> = dims.iter().map(|&d| d as u32).collect();
        Ok(self.wb.tensor(id, dtype, &dims, &bytes, Quant::None))
    }
}

fn pool(k: usize, s: usize, p: usize) -> PoolParams {
    let p = p as u16;
    PoolParams {
        kernel: [k as u16; 2],
        stride: [s as u16; 2],
        padding: Padding { top: p, bottom: p, left: p, right: p },
    }
}

/// Turns the nodes that feed `out` into ops. Tensor ids: value index for activations, then constants.
fn lower(
    b: &GraphBuilder,
    input: Val,
    out: Val,
    dtype: DType,
) -> Result<(Vec<Op>, WeightsBuilder, Tensor, Tensor), BuildError> {
    if b.vals.len() >= u16::MAX as usize {
        return Err(BuildError::Unsupported("more than 65535 tensors".into()));
    }
    let needed = live_nodes(b, out.0);
    let mut l = Lowering { b, wb: WeightsBuilder::default(), next_id: b.vals.len(), dtype };
    let mut ops = Vec::new();
    for (node, _) in b.nodes.iter().zip(&needed).filter(|(_, keep)| **keep) {
        ops.push(match node {
            Node::Conv { input, output, spec, w, b: bias, act } => {
                let (o, i, k) = (spec.out_channels, spec.in_channels, spec.kernel);
                let (dims, data) = if spec.groups <= 1 {
                    // OIHW -> OHWI
                    let mut v = vec![0f32; w.len()];
                    for oc in 0..o {
                        for ic in 0..i {
                            for y in 0..k {
                                for x in 0..k {
                                    v[((oc * k + y) * k + x) * i + ic] = w[((oc * i + ic) * k + y) * k + x];
                                }
                            }
                        }
                    }
                    ([o, k, k, i], v)
                } else if spec.groups == i && o % i == 0 {
                    // [C*M, 1, kh, kw] -> [1, kh, kw, C*M]
                    let mut v = vec![0f32; w.len()];
                    for oc in 0..o {
                        for y in 0..k {
                            for x in 0..k {
                                v[(y * k + x) * o + oc] = w[(oc * k + y) * k + x];
                            }
                        }
                    }
                    ([1, k, k, o], v)
                } else {
                    return Err(BuildError::Unsupported(format!(
                        "grouped conv with {} groups (only dense and depthwise)",
                        spec.groups
                    )));
                };
                let weights = l.constant(&dims, &data, l.dtype)?;
                let bias = bias.as_ref().map(|bv| l.constant(&[o], bv, DType::F32)).transpose()?;
                let p = spec.padding as u16;
                let params = Conv2dParams {
                    stride: [spec.stride as u16; 2],
                    dilation: [spec.dilation as u16; 2],
                    padding: Padding { top: p, bottom: p, left: p, right: p },
                    groups: if spec.groups <= 1 { 1 } else { spec.groups as u32 },
                    activation: *act,
                };
                Op::Conv2d { input: l.act(*input), weights, bias, output: l.act(*output), params, requant: None }
            }
            Node::Linear { input, output, w, b: bias, act } => {
                let (o, i) = (bias.len(), w.len() / bias.len().max(1));
                let weights = l.constant(&[o, i], w, l.dtype)?;
                let bias = Some(l.constant(&[o], bias, DType::F32)?);
                Op::FullyConnected {
                    input: l.act(*input),
                    weights,
                    bias,
                    output: l.act(*output),
                    activation: *act,
                    requant: None,
                }
            }
            Node::Add { a, b, output, act } => {
                Op::Add { a: l.act(*a), b: l.act(*b), output: l.act(*output), activation: *act, quant: None }
            }
            Node::Mul { a, b, output, act } => {
                Op::Mul { a: l.act(*a), b: l.act(*b), output: l.act(*output), activation: *act, quant: None }
            }
            Node::MaxPool { input, output, k, s, p } => Op::MaxPool2d {
                input: l.act(*input),
                output: l.act(*output),
                params: pool(*k, *s, *p),
                act_min: i32::MIN,
                act_max: i32::MAX,
            },
            Node::AvgPool { input, output, k, s } => Op::AvgPool2d {
                input: l.act(*input),
                output: l.act(*output),
                params: pool(*k, *s, 0),
                act_min: i32::MIN,
                act_max: i32::MAX,
            },
            Node::GlobalAvgPool { input, output } => {
                Op::GlobalAvgPool { input: l.act(*input), output: l.act(*output), requant: None }
            }
            Node::Reshape { input, output } => Op::Reshape { input: l.act(*input), output: l.act(*output) },
            Node::Act { input, output, act } => {
                Op::Activation { input: l.act(*input), output: l.act(*output), activation: *act }
            }
            Node::Softmax { input, output } => {
                Op::Softmax { input: l.act(*input), output: l.act(*output), beta: 1.0, quant: None }
            }
        });
    }
    if ops.is_empty() {
        return Err(BuildError::Unsupported("the network has no ops".into()));
    }
    let (tin, tout) = (l.act(input.0), l.act(out.0));
    Ok((ops, l.wb, tin, tout))
}

/// Marks the nodes `out` depends on (heads the caller did not ask for are dropped).
fn live_nodes(b: &GraphBuilder, out: usize) -> Vec<bool> {
    let mut needed = vec![false; b.nodes.len()];
    let mut stack = vec![out];
    while let Some(v) = stack.pop() {
        let Some(n) = b.vals[v].producer else { continue };
        if std::mem::replace(&mut needed[n], true) {
            continue;
        }
        match &b.nodes[n] {
            Node::Add { a, b, .. } | Node::Mul { a, b, .. } => stack.extend([*a, *b]),
            Node::Conv { input, .. }
            | Node::Linear { input, .. }
            | Node::MaxPool { input, .. }
            | Node::AvgPool { input, .. }
            | Node::GlobalAvgPool { input, .. }
            | Node::Reshape { input, .. }
            | Node::Act { input, .. }
            | Node::Softmax { input, .. } => stack.push(*input),
        }
    }
    needed
}
