//! `NetBuilder` over tch: the architecture functions in `rsim_model::arch` run directly as the
//! forward pass. Variables are created on first use under exactly the builder's `name`s, so a
//! VarStore's keys are torchvision's `state_dict` keys and map 1:1 onto the `.rsm` exporter.
use std::rc::Rc;

use rsim_model::arch::{self, Arch, ConvSpec, NetBuilder};
use rsim_model::graph::Activation;
use tch::{nn, Kind, Tensor};

/// A tensor handle for the builder (tch tensors are not `Clone`; `Rc` makes clones free).
pub type Val = Rc<Tensor>;

/// Runs one forward pass, creating missing variables (torchvision's initialisation) as it goes.
pub struct TchBuilder<'a> {
    root: &'a nn::Path<'a>,
    /// Training mode: BatchNorm uses batch statistics and updates its running ones; dropout is live.
    pub train: bool,
}

impl<'a> TchBuilder<'a> {
    pub fn new(root: &'a nn::Path<'a>, train: bool) -> Self {
        TchBuilder { root, train }
    }

    fn path(&self, name: &str) -> nn::Path<'a> {
        name.split('.').fold(self.root.clone(), |p, part| p.sub(part))
    }
}

fn get_or<F: FnOnce() -> Tensor>(p: &nn::Path, name: &str, trainable: bool, init: F) -> Tensor {
    match p.get(name) {
        Some(t) => t,
        None => p.add(name, init(), trainable),
    }
}

impl NetBuilder for TchBuilder<'_> {
    type Value = Val;

    fn conv2d(&mut self, name: &str, x: &Val, s: ConvSpec) -> Val {
        let p = self.path(name);
        let (o, i, k) = (s.out_channels as i64, (s.in_channels / s.groups.max(1)) as i64, s.kernel as i64);
        let dev = p.device();
        // torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu").
        let std = (2.0 / (o * k * k) as f64).sqrt();
        let w = get_or(&p, "weight", true, || Tensor::randn([o, i, k, k], (Kind::Float, dev)) * std);
        let b = s.bias.then(|| get_or(&p, "bias", true, || Tensor::zeros([o], (Kind::Float, dev))));
        let (st, pa, di) = (s.stride as i64, s.padding as i64, s.dilation as i64);
        Rc::new(x.conv2d(&w, b.as_ref(), [st, st], [pa, pa], [di, di], s.groups as i64))
    }

    fn batch_norm(&mut self, name: &str, x: &Val, channels: usize) -> Val {
        self.batch_norm_eps(name, x, channels, arch::BN_EPS)
    }

    fn batch_norm_eps(&mut self, name: &str, x: &Val, channels: usize, eps: f64) -> Val {
        let p = self.path(name);
        let (c, dev) = (channels as i64, p.device());
        let w = get_or(&p, "weight", true, || Tensor::ones([c], (Kind::Float, dev)));
        let b = get_or(&p, "bias", true, || Tensor::zeros([c], (Kind::Float, dev)));
        let rm = get_or(&p, "running_mean", false, || Tensor::zeros([c], (Kind::Float, dev)));
        let rv = get_or(&p, "running_var", false, || Tensor::ones([c], (Kind::Float, dev)));
        let nb = get_or(&p, "num_batches_tracked", false, || Tensor::zeros([], (Kind::Int64, dev)));
        if self.train {
            tch::no_grad(|| {
                let _ = nb.shallow_clone().g_add_scalar_(1);
            });
        }
        Rc::new(Tensor::batch_norm(x, Some(&w), Some(&b), Some(&rm), Some(&rv), self.train, 0.1, eps, true))
    }

    fn activation(&mut self, x: &Val, act: Activation) -> Val {
        Rc::new(match act {
            Activation::None => x.shallow_clone(),
            Activation::Relu => x.relu(),
            Activation::Relu6 => x.clamp(0.0, 6.0),
            Activation::HardSwish => x.hardswish(),
            Activation::HardSigmoid => x.hardsigmoid(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Gelu => x.gelu("none"),
        })
    }

    fn add(&mut self, a: &Val, b: &Val) -> Val {
        Rc::new(a.as_ref() + b.as_ref())
    }

    fn mul(&mut self, a: &Val, b: &Val) -> Val {
        Rc::new(a.as_ref() * b.as_ref())
    }

    fn max_pool2d(&mut self, x: &Val, k: usize, s: usize, p: usize) -> Val {
        let (k, s, p) = (k as i64, s as i64, p as i64);
        Rc::new(x.max_pool2d([k, k], [s, s], [p, p], [1, 1], false))
    }

    fn avg_pool2d(&mut self, x: &Val, k: usize, s: usize) -> Val {
        let (k, s) = (k as i64, s as i64);
        Rc::new(x.avg_pool2d([k, k], [s, s], [0, 0], false, true, None::<i64>))
    }

    fn global_avg_pool(&mut self, x: &Val) -> Val {
        Rc::new(x.mean_dim(&[-1i64, -2][..], true, Kind::Float))
    }

    fn flatten(&mut self, x: &Val) -> Val {
        Rc::new(x.flatten(1, -1))
    }

    fn linear(&mut self, name: &str, x: &Val, inf: usize, outf: usize) -> Val {
        let p = self.path(name);
        let dev = p.device();
        // nn.Linear's default: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
        let bound = 1.0 / (inf as f64).sqrt();
        let w = get_or(&p, "weight", true, || {
            Tensor::empty([outf as i64, inf as i64], (Kind::Float, dev)).uniform_(-bound, bound)
        });
        let b = get_or(&p, "bias", true, || Tensor::empty([outf as i64], (Kind::Float, dev)).uniform_(-bound, bound));
        Rc::new(x.linear(&w, Some(&b)))
    }

    fn dropout(&mut self, x: &Val, p: f64) -> Val {
        Rc::new(x.dropout(p, self.train))
    }
}

/// A backbone (and optional classifier) living in its own VarStore, keys = torchvision keys.
pub struct Net {
    pub vs: nn::VarStore,
    pub arch: Arch,
    pub bands: usize,
    pub num_classes: Option<usize>,
}

impl Net {
    /// Creates the variables by one eval-mode pass over a small dummy input.
    pub fn new(arch: Arch, bands: usize, num_classes: Option<usize>, device: tch::Device) -> Net {
        let net = Net { vs: nn::VarStore::new(device), arch, bands, num_classes };
        tch::no_grad(|| {
            let x = Tensor::zeros([2, bands as i64, 32, 32], (Kind::Float, device));
            let _ = net.forward(&x, false);
        });
        net
    }

    /// Features [N, C] and, with a classifier, logits.
    pub fn forward(&self, x: &Tensor, train: bool) -> (Tensor, Option<Tensor>) {
        let root = self.vs.root();
        let mut b = TchBuilder::new(&root, train);
        let (f, logits) = arch::build(&mut b, self.arch, self.bands, self.num_classes, &Rc::new(x.shallow_clone()));
        (unwrap_val(f), logits.map(unwrap_val))
    }

    pub fn feature_dim(&self) -> usize {
        self.arch.feature_dim()
    }
}

pub fn unwrap_val(v: Val) -> Tensor {
    Rc::try_unwrap(v).unwrap_or_else(|rc| rc.shallow_clone())
}

/// Sorted (name, tensor) pairs of a VarStore: a stable order for optimisers and checkpoints.
pub fn named_sorted(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}
