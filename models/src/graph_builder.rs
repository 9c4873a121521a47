//! A [`NetBuilder`] that emits `.rsm` graph ops instead of running anything.
//!
//! The architecture functions speak PyTorch (NCHW, OIHW weights, separate BatchNorm); this builder
//! records them as nodes and `lower` turns those into the runtime's form: NHWC activations, OHWI
//! (depthwise 1HW(C*M)) weights, BatchNorm folded into the conv before it, activations fused into the
//! op that produces their input. Weights come from a map in PyTorch names and layouts (what the
//! trainer exports) or from a seeded random init that exercises the folding.

mod init;
mod lower;

pub use init::Rng;
pub use lower::{export, ExportOptions, Exported};

use crate::arch::{ConvSpec, NetBuilder, BN_EPS};
use crate::graph::{Activation, DType};
use crate::plan::PlanError;
use std::collections::{HashMap, HashSet};
use std::fmt;

/// Named PyTorch tensors: name -> (shape, row-major values), e.g. `layer1.0.conv1.weight`.
pub type WeightMap = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// Where parameters come from.
#[derive(Clone, Debug)]
pub enum Weights {
    /// He-style conv/linear init and randomized BatchNorm statistics, from this seed.
    Random { seed: u64 },
    /// Trained parameters under their PyTorch `state_dict` names.
    Given(WeightMap),
}

#[derive(Clone, Debug, PartialEq)]
pub enum BuildError {
    MissingWeight {
        name: String,
        shape: Vec<usize>,
    },
    WeightShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// The weight's value count disagrees with its own shape.
    WeightLength {
        name: String,
        shape: Vec<usize>,
        len: usize,
    },
    /// Something the graph IR cannot express (named).
    Unsupported(String),
    /// Options that cannot describe a model (band count, class names, input size).
    BadOptions(String),
    Plan(PlanError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::MissingWeight { name, shape } => {
                write!(f, "weight '{name}' (shape {shape:?}) is missing from the weights")
            }
            BuildError::WeightShape { name, expected, found } => {
                write!(f, "weight '{name}' has shape {found:?}, the architecture needs {expected:?}")
            }
            BuildError::WeightLength { name, shape, len } => {
                write!(f, "weight '{name}' has {len} values for shape {shape:?}")
            }
            BuildError::Unsupported(what) => write!(f, "cannot export: {what}"),
            BuildError::BadOptions(what) => write!(f, "bad export options: {what}"),
            BuildError::Plan(e) => write!(f, "arena planning failed: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}

/// A value in the graph being built: an index into the builder's value table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Val(usize);

/// Shape of a value, NHWC for 4-D (`[N, H, W, C]`) or `[N, C]` after flatten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VShape {
    Nhwc([usize; 4]),
    Flat([usize; 2]),
}

impl VShape {
    fn channels(&self) -> usize {
        match self {
            VShape::Nhwc(d) => d[3],
            VShape::Flat(d) => d[1],
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct ValInfo {
    pub shape: VShape,
    producer: Option<usize>,
    readers: usize,
    /// Replaced by a fused successor (BatchNorm or activation); reading it again would be wrong.
    superseded: bool,
}

/// A recorded op, still in PyTorch terms.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    /// `w` is OIHW; `b` per output channel.
    Conv {
        input: usize,
        output: usize,
        spec: ConvSpec,
        w: Vec<f32>,
        b: Option<Vec<f32>>,
        act: Activation,
    },
    /// `w` is [out, in].
    Linear {
        input: usize,
        output: usize,
        w: Vec<f32>,
        b: Vec<f32>,
        act: Activation,
    },
    Add {
        a: usize,
        b: usize,
        output: usize,
        act: Activation,
    },
    Mul {
        a: usize,
        b: usize,
        output: usize,
        act: Activation,
    },
    MaxPool {
        input: usize,
        output: usize,
        k: usize,
        s: usize,
        p: usize,
    },
    AvgPool {
        input: usize,
        output: usize,
        k: usize,
        s: usize,
    },
    GlobalAvgPool {
        input: usize,
        output: usize,
    },
    Reshape {
        input: usize,
        output: usize,
    },
    Act {
        input: usize,
        output: usize,
        act: Activation,
    },
    Softmax {
        input: usize,
        output: usize,
    },
}

impl Node {
    fn output_mut(&mut self) -> &mut usize {
        match self {
            Node::Conv { output, .. }
            | Node::Linear { output, .. }
            | Node::Add { output, .. }
            | Node::Mul { output, .. }
            | Node::MaxPool { output, .. }
            | Node::AvgPool { output, .. }
            | Node::GlobalAvgPool { output, .. }
            | Node::Reshape { output, .. }
            | Node::Act { output, .. }
            | Node::Softmax { output, .. } => output,
        }
    }
}

/// Records an architecture as nodes. Errors are kept (the trait returns plain values) and reported by
/// [`GraphBuilder::error`]; after the first one, the remaining calls still return well-shaped values.
pub struct GraphBuilder {
    pub(crate) vals: Vec<ValInfo>,
    pub(crate) nodes: Vec<Node>,
    weights: Weights,
    rng: Rng,
    used: HashSet<String>,
    error: Option<BuildError>,
}

impl GraphBuilder {
    pub fn new(weights: Weights) -> GraphBuilder {
        let seed = match &weights {
            Weights::Random { seed } => *seed,
            Weights::Given(_) => 0,
        };
        GraphBuilder {
            vals: Vec::new(),
            nodes: Vec::new(),
            weights,
            rng: Rng::new(seed),
            used: HashSet::new(),
            error: None,
        }
    }

    /// The graph input: one image of `bands` x `height` x `width` (NHWC inside).
    pub fn input(&mut self, bands: usize, height: usize, width: usize) -> Val {
        self.new_val(VShape::Nhwc([1, height, width, bands]), None)
    }

    /// The first error met while building, if any.
    pub fn error(&self) -> Option<&BuildError> {
        self.error.as_ref()
    }

    /// Names in a given weight map that no module asked for (`num_batches_tracked` excepted).
    pub fn unused_weights(&self) -> Vec<String> {
        let Weights::Given(map) = &self.weights else { return Vec::new() };
        let mut v: Vec<String> =
            map.keys().filter(|k| !self.used.contains(*k) && !k.ends_with("num_batches_tracked")).cloned().collect();
        v.sort();
        v
    }

    /// Appends a softmax over the classes.
    pub fn softmax(&mut self, x: &Val) -> Val {
        let shape = self.read(x);
        self.push(shape, |input, output| Node::Softmax { input, output }, x.0)
    }

    pub fn shape(&self, v: &Val) -> [usize; 4] {
        match self.vals[v.0].shape {
            VShape::Nhwc(d) => d,
            VShape::Flat([n, c]) => [n, 1, 1, c],
        }
    }

    fn fail(&mut self, e: BuildError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    fn new_val(&mut self, shape: VShape, producer: Option<usize>) -> Val {
        self.vals.push(ValInfo { shape, producer, readers: 0, superseded: false });
        Val(self.vals.len() - 1)
    }

    /// Marks a read of `v` and returns its shape.
    fn read(&mut self, v: &Val) -> VShape {
        let info = &mut self.vals[v.0];
        info.readers += 1;
        let (shape, superseded) = (info.shape, info.superseded);
        if superseded {
            self.fail(BuildError::Unsupported(format!(
                "value #{} is read after a BatchNorm or activation was fused into it",
                v.0
            )));
        }
        shape
    }

    fn push(&mut self, shape: VShape, node: impl FnOnce(usize, usize) -> Node, input: usize) -> Val {
        let out = self.new_val(shape, Some(self.nodes.len()));
        self.nodes.push(node(input, out.0));
        out
    }

    /// If `x` is the unread output of a node, gives that node a fresh output value (so the old handle
    /// cannot be misused) and returns the node index and new value.
    fn take_for_fusion(&mut self, x: &Val) -> Option<(usize, Val)> {
        let info = &self.vals[x.0];
        if info.readers != 0 || info.superseded {
            return None;
        }
        let n = info.producer?;
        let shape = info.shape;
        self.vals[x.0].superseded = true;
        let new = self.new_val(shape, Some(n));
        *self.nodes[n].output_mut() = new.0;
        Some((n, new))
    }

    /// A parameter of `shape` named `name`, from the map (checked) or the random init.
    fn param(&mut self, name: &str, shape: &[usize], init: init::Init) -> Vec<f32> {
        let len: usize = shape.iter().product();
        match &self.weights {
            Weights::Random { .. } => init.sample(&mut self.rng, len),
            Weights::Given(map) => {
                self.used.insert(name.to_string());
                let err = match map.get(name) {
                    None => BuildError::MissingWeight { name: name.into(), shape: shape.to_vec() },
                    Some((s, v)) if s.iter().product::<usize>() != v.len() => {
                        BuildError::WeightLength { name: name.into(), shape: s.clone(), len: v.len() }
                    }
                    // A trailing [.., 1, 1] on a linear weight or a squeezed conv is not the same module.
                    Some((s, v)) if s.as_slice() == shape => return v.clone(),
                    Some((s, _)) => {
                        BuildError::WeightShape { name: name.into(), expected: shape.to_vec(), found: s.clone() }
                    }
                };
                self.fail(err);
                vec![0.0; len]
            }
        }
    }

    fn binary(&mut self, a: &Val, b: &Val, mul: bool) -> Val {
        let (sa, sb) = (self.read(a), self.read(b));
        let ok = if mul { sa == sb || (sa.channels() == sb.channels() && self.is_gate(sb)) } else { sa == sb };
        if !ok {
            self.fail(BuildError::Unsupported(format!(
                "{} of shapes {sa:?} and {sb:?}",
                if mul { "mul" } else { "add" }
            )));
        }
        let node = |a: usize, b: usize, output| {
            if mul {
                Node::Mul { a, b, output, act: Activation::None }
            } else {
                Node::Add { a, b, output, act: Activation::None }
            }
        };
        let out = self.new_val(sa, Some(self.nodes.len()));
        self.nodes.push(node(a.0, b.0, out.0));
        out
    }

    fn is_gate(&self, s: VShape) -> bool {
        matches!(s, VShape::Nhwc([_, 1, 1, _]))
    }

    fn conv_out(&mut self, x: VShape, s: &ConvSpec) -> VShape {
        let VShape::Nhwc([n, h, w, c]) = x else {
            self.fail(BuildError::Unsupported("conv2d on a flattened value".into()));
            return VShape::Nhwc([1, 1, 1, s.out_channels]);
        };
        if c != s.in_channels {
            self.fail(BuildError::Unsupported(format!(
                "conv2d expects {} input channels, value has {c}",
                s.in_channels
            )));
        }
        let reach = s.dilation * (s.kernel.max(1) - 1) + 1;
        let o = |d: usize| (d + 2 * s.padding).checked_sub(reach).map(|r| r / s.stride.max(1) + 1);
        match (o(h), o(w)) {
            (Some(oh), Some(ow)) => VShape::Nhwc([n, oh, ow, s.out_channels]),
            _ => {
                self.fail(BuildError::BadOptions(format!(
                    "input of {h}x{w} is too small for a {}x{} conv",
                    s.kernel, s.kernel
                )));
                VShape::Nhwc([n, 1, 1, s.out_channels])
            }
        }
    }

    fn pool_out(&mut self, x: VShape, k: usize, s: usize, p: usize) -> VShape {
        let VShape::Nhwc([n, h, w, c]) = x else {
            self.fail(BuildError::Unsupported("pooling on a flattened value".into()));
            return x;
        };
        let o = |d: usize| (d + 2 * p).checked_sub(k).map(|r| r / s.max(1) + 1);
        match (o(h), o(w)) {
            (Some(oh), Some(ow)) => VShape::Nhwc([n, oh, ow, c]),
            _ => {
                self.fail(BuildError::BadOptions(format!("input of {h}x{w} is too small for a {k}x{k} pool")));
                VShape::Nhwc([n, 1, 1, c])
            }
        }
    }
}

impl NetBuilder for GraphBuilder {
    type Value = Val;

    fn conv2d(&mut self, name: &str, x: &Val, spec: ConvSpec) -> Val {
        let shape = self.read(x);
        let out = self.conv_out(shape, &spec);
        let groups = spec.groups.max(1);
        let fan_in = spec.in_channels / groups * spec.kernel * spec.kernel;
        let wshape = [spec.out_channels, spec.in_channels / groups, spec.kernel, spec.kernel];
        let w = self.param(&format!("{name}.weight"), &wshape, init::Init::He { fan_in });
        let b = spec.bias.then(|| self.param(&format!("{name}.bias"), &[spec.out_channels], init::Init::Bias));
        self.push(out, |input, output| Node::Conv { input, output, spec, w, b, act: Activation::None }, x.0)
    }

    fn batch_norm(&mut self, name: &str, x: &Val, channels: usize) -> Val {
        self.batch_norm_eps(name, x, channels, BN_EPS)
    }

    fn batch_norm_eps(&mut self, name: &str, x: &Val, channels: usize, eps: f64) -> Val {
        let gamma = self.param(&format!("{name}.weight"), &[channels], init::Init::BnGamma);
        let beta = self.param(&format!("{name}.bias"), &[channels], init::Init::BnBeta);
        let mean = self.param(&format!("{name}.running_mean"), &[channels], init::Init::BnMean);
        let var = self.param(&format!("{name}.running_var"), &[channels], init::Init::BnVar);
        let Some((n, new)) = self.take_for_fusion(x) else {
            self.fail(BuildError::Unsupported(format!("BatchNorm '{name}' does not directly follow a conv")));
            return *x;
        };
        match &mut self.nodes[n] {
            Node::Conv { w, b, spec, act: Activation::None, .. } if spec.out_channels == channels => {
                let per_out = w.len() / channels.max(1);
                let mut folded = vec![0f32; channels];
                for c in 0..channels {
                    // In f64 so folding adds no error beyond the final f32 rounding.
                    let scale = gamma[c] as f64 / (var[c] as f64 + eps).sqrt();
                    for v in &mut w[c * per_out..(c + 1) * per_out] {
                        *v = (*v as f64 * scale) as f32;
                    }
                    let b0 = b.as_ref().map_or(0.0, |b| b[c] as f64);
                    folded[c] = ((b0 - mean[c] as f64) * scale + beta[c] as f64) as f32;
                }
                *b = Some(folded);
            }
            _ => self.fail(BuildError::Unsupported(format!(
                "BatchNorm '{name}' does not directly follow a conv of {channels} channels"
            ))),
        }
        new
    }

    fn activation(&mut self, x: &Val, act: Activation) -> Val {
        if act == Activation::None {
            return *x;
        }
        let fusable = self.vals[x.0].producer.is_some_and(|n| {
            matches!(
                self.nodes[n],
                Node::Conv { act: Activation::None, .. }
                    | Node::Linear { act: Activation::None, .. }
                    | Node::Add { act: Activation::None, .. }
                    | Node::Mul { act: Activation::None, .. }
            )
        });
        if fusable {
            if let Some((n, new)) = self.take_for_fusion(x) {
                match &mut self.nodes[n] {
                    Node::Conv { act: a, .. }
                    | Node::Linear { act: a, .. }
                    | Node::Add { act: a, .. }
                    | Node::Mul { act: a, .. } => *a = act,
                    _ => {}
                }
                return new;
            }
        }
        let shape = self.read(x);
        self.push(shape, |input, output| Node::Act { input, output, act }, x.0)
    }

    fn add(&mut self, a: &Val, b: &Val) -> Val {
        self.binary(a, b, false)
    }

    fn mul(&mut self, a: &Val, b: &Val) -> Val {
        self.binary(a, b, true)
    }

    fn max_pool2d(&mut self, x: &Val, kernel: usize, stride: usize, padding: usize) -> Val {
        let shape = self.read(x);
        let out = self.pool_out(shape, kernel, stride, padding);
        self.push(out, |input, output| Node::MaxPool { input, output, k: kernel, s: stride, p: padding }, x.0)
    }

    fn avg_pool2d(&mut self, x: &Val, kernel: usize, stride: usize) -> Val {
        let shape = self.read(x);
        let out = self.pool_out(shape, kernel, stride, 0);
        self.push(out, |input, output| Node::AvgPool { input, output, k: kernel, s: stride }, x.0)
    }

    fn global_avg_pool(&mut self, x: &Val) -> Val {
        let shape = self.read(x);
        let out = match shape {
            VShape::Nhwc([n, _, _, c]) => VShape::Nhwc([n, 1, 1, c]),
            flat => flat,
        };
        self.push(out, |input, output| Node::GlobalAvgPool { input, output }, x.0)
    }

    fn flatten(&mut self, x: &Val) -> Val {
        let shape = self.read(x);
        let out = match shape {
            VShape::Nhwc([n, 1, 1, c]) => VShape::Flat([n, c]),
            VShape::Flat(d) => VShape::Flat(d),
            VShape::Nhwc(d) => {
                // NCHW flatten order differs from NHWC; only the pooled [N, C, 1, 1] case is layout-free.
                self.fail(BuildError::Unsupported(format!("flatten of an unpooled {d:?} (NHWC) value")));
                VShape::Flat([d[0], d[1] * d[2] * d[3]])
            }
        };
        self.push(out, |input, output| Node::Reshape { input, output }, x.0)
    }

    fn linear(&mut self, name: &str, x: &Val, in_features: usize, out_features: usize) -> Val {
        let shape = self.read(x);
        let n = match shape {
            VShape::Flat([n, c]) if c == in_features => n,
            other => {
                self.fail(BuildError::Unsupported(format!(
                    "linear '{name}' expects [N, {in_features}], got {other:?}"
                )));
                1
            }
        };
        let w =
            self.param(&format!("{name}.weight"), &[out_features, in_features], init::Init::He { fan_in: in_features });
        let b = self.param(&format!("{name}.bias"), &[out_features], init::Init::Bias);
        self.push(
            VShape::Flat([n, out_features]),
            |input, output| Node::Linear { input, output, w, b, act: Activation::None },
            x.0,
        )
    }
}

/// Which dtype conv and linear weights are stored in.
pub fn check_weight_dtype(d: DType) -> Result<(), BuildError> {
    match d {
        DType::F32 | DType::F16 => Ok(()),
        other => Err(BuildError::BadOptions(format!(
            "weights can be stored as F32 or F16, not {other:?} (int8 goes through quantization)"
        ))),
    }
}
