//! SSL methods over a backbone: SimCLR, MoCo v2 (momentum encoder + queue), BYOL (predictor + EMA
//! target). Heads live in their own VarStore (`projector.*`, `predictor.*`) so the backbone's keys
//! stay torchvision's.
use std::rc::Rc;

use rsim_model::arch::{Arch, NetBuilder};
use rsim_model::graph::Activation;
use tch::{nn, Device, Kind, Tensor};

use crate::loss::{self, FalseCfg};
use crate::net::{named_sorted, unwrap_val, Net, TchBuilder};

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum MethodKind {
    SimClr,
    MoCo,
    Byol,
}

impl MethodKind {
    pub fn parse(s: &str) -> Result<MethodKind, String> {
        match s.to_ascii_lowercase().replace('-', "").as_str() {
            "simclr" => Ok(MethodKind::SimClr),
            "moco" | "mocov2" => Ok(MethodKind::MoCo),
            "byol" => Ok(MethodKind::Byol),
            o => Err(format!("unknown method '{o}' (expected simclr, moco or byol)")),
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            MethodKind::SimClr => "simclr",
            MethodKind::MoCo => "moco",
            MethodKind::Byol => "byol",
        }
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct MethodCfg {
    pub kind: MethodKind,
    /// Contrastive temperature (SimCLR, MoCo).
    pub tau: f64,
    pub proj_hidden: usize,
    pub proj_dim: usize,
    /// MoCo queue length.
    pub queue: usize,
    /// MoCo momentum (constant); BYOL's base EMA rate (cosine-increased to 1).
    pub momentum: f64,
    pub false_cfg: Option<FalseCfg>,
}

impl MethodCfg {
    pub fn defaults(kind: MethodKind) -> Self {
        let (tau, hidden, dim, momentum) = match kind {
            MethodKind::SimClr => (0.2, 512, 128, 0.0),
            MethodKind::MoCo => (0.2, 512, 128, 0.99),
            MethodKind::Byol => (0.0, 1024, 256, 0.99),
        };
        MethodCfg { kind, tau, proj_hidden: hidden, proj_dim: dim, queue: 4096, momentum, false_cfg: None }
    }
}

/// Linear -> BN1d -> ReLU -> Linear, named like `nn.Sequential` (`{name}.0`, `{name}.1`, `{name}.3`).
fn mlp(b: &mut TchBuilder, name: &str, x: &Tensor, dims: [usize; 3]) -> Tensor {
    let x = Rc::new(x.shallow_clone());
    let h = b.linear(&format!("{name}.0"), &x, dims[0], dims[1]);
    let h = b.batch_norm(&format!("{name}.1"), &h, dims[1]);
    let h = b.activation(&h, Activation::Relu);
    unwrap_val(b.linear(&format!("{name}.3"), &h, dims[1], dims[2]))
}

/// A momentum copy of backbone + projector, updated by EMA of the online parameters.
struct Target {
    net: Net,
    heads: nn::VarStore,
    /// (target, online) trainable pairs in a fixed order.
    pairs: Vec<(Tensor, Tensor)>,
}

pub struct SslModel {
    pub cfg: MethodCfg,
    pub backbone: Net,
    pub heads: nn::VarStore,
    target: Option<Target>,
    queue: Option<Tensor>,
    queue_ptr: i64,
}

impl SslModel {
    pub fn new(arch: Arch, bands: usize, cfg: MethodCfg, device: Device) -> SslModel {
        let backbone = Net::new(arch, bands, None, device);
        let feat = backbone.feature_dim();
        let heads = nn::VarStore::new(device);
        let proj = [feat, cfg.proj_hidden, cfg.proj_dim];
        tch::no_grad(|| {
            let root = heads.root();
            let mut b = TchBuilder::new(&root, false);
            let z = mlp(&mut b, "projector", &Tensor::zeros([2, feat as i64], (Kind::Float, device)), proj);
            if cfg.kind == MethodKind::Byol {
                let _ = mlp(&mut b, "predictor", &z, [cfg.proj_dim, cfg.proj_hidden, cfg.proj_dim]);
            }
        });
        let mut m = SslModel { cfg, backbone, heads, target: None, queue: None, queue_ptr: 0 };
        if m.cfg.kind != MethodKind::SimClr {
            m.target = Some(m.make_target(device, proj));
        }
        if m.cfg.kind == MethodKind::MoCo {
            let q = Tensor::randn([m.cfg.queue as i64, m.cfg.proj_dim as i64], (Kind::Float, device));
            m.queue = Some(loss::l2_normalize(&q));
        }
        m
    }

    fn make_target(&self, device: Device, proj: [usize; 3]) -> Target {
        let mut net = Net::new(self.backbone.arch, self.backbone.bands, None, device);
        let mut heads = nn::VarStore::new(device);
        tch::no_grad(|| {
            let root = heads.root();
            let mut b = TchBuilder::new(&root, false);
            let _ = mlp(&mut b, "projector", &Tensor::zeros([2, proj[0] as i64], (Kind::Float, device)), proj);
        });
        net.vs.copy(&self.backbone.vs).expect("target backbone has the online backbone's variables");
        heads.copy(&self.heads).expect("target projector has the online projector's variables");
        net.vs.freeze();
        heads.freeze();
        let online: std::collections::HashMap<String, Tensor> = self
            .backbone
            .vs
            .variables()
            .into_iter()
            .chain(self.heads.variables().into_iter().map(|(k, v)| (format!("heads.{k}"), v)))
            .collect();
        let mut pairs = Vec::new();
        let tv = named_sorted(&net.vs)
            .into_iter()
            .chain(named_sorted(&heads).into_iter().map(|(k, v)| (format!("heads.{k}"), v)));
        for (name, t) in tv {
            // EMA over parameters; BN running statistics follow the target's own forward passes.
            if name.ends_with("running_mean") || name.ends_with("running_var") || name.ends_with("num_batches_tracked")
            {
                continue;
            }
            let o = online.get(&name).expect("online and target share variable names");
            pairs.push((t, o.shallow_clone()));
        }
        Target { net, heads, pairs }
    }

    /// Trainable parameters with unique names (`backbone.*`, `heads.*`).
    pub fn params(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> =
            named_sorted(&self.backbone.vs).into_iter().map(|(k, t)| (format!("backbone.{k}"), t)).collect();
        v.extend(named_sorted(&self.heads).into_iter().map(|(k, t)| (format!("heads.{k}"), t)));
        v
    }

    fn project(&self, heads: &nn::VarStore, f: &Tensor, name: &str, dims: [usize; 3]) -> Tensor {
        let root = heads.root();
        let mut b = TchBuilder::new(&root, true);
        mlp(&mut b, name, f, dims)
    }

    fn proj_dims(&self) -> [usize; 3] {
        [self.backbone.feature_dim(), self.cfg.proj_hidden, self.cfg.proj_dim]
    }

    /// The method's loss on two views [N, bands, H, W].
    pub fn loss(&mut self, x1: &Tensor, x2: &Tensor) -> Tensor {
        let pd = self.proj_dims();
        match self.cfg.kind {
            MethodKind::SimClr => {
                let z1 = self.project(&self.heads, &self.backbone.forward(x1, true).0, "projector", pd);
                let z2 = self.project(&self.heads, &self.backbone.forward(x2, true).0, "projector", pd);
                loss::nt_xent(&z1, &z2, self.cfg.tau, self.cfg.false_cfg)
            }
            MethodKind::MoCo => {
                let q =
                    loss::l2_normalize(&self.project(&self.heads, &self.backbone.forward(x1, true).0, "projector", pd));
                let t = self.target.as_ref().expect("MoCo has a momentum encoder");
                let k = tch::no_grad(|| {
                    loss::l2_normalize(&self.project(&t.heads, &t.net.forward(x2, true).0, "projector", pd))
                });
                // A copy: the loss graph keeps the queue for backward, and enqueue writes it in place.
                let queue = self.queue.as_ref().expect("MoCo has a queue").copy();
                let l = loss::moco_infonce(&q, &k, &queue, self.cfg.tau, self.cfg.false_cfg);
                self.enqueue(&k);
                l
            }
            MethodKind::Byol => {
                let qd = [self.cfg.proj_dim, self.cfg.proj_hidden, self.cfg.proj_dim];
                let p1 = self.project(
                    &self.heads,
                    &self.project(&self.heads, &self.backbone.forward(x1, true).0, "projector", pd),
                    "predictor",
                    qd,
                );
                let p2 = self.project(
                    &self.heads,
                    &self.project(&self.heads, &self.backbone.forward(x2, true).0, "projector", pd),
                    "predictor",
                    qd,
                );
                let t = self.target.as_ref().expect("BYOL has a target network");
                let (z1, z2) = tch::no_grad(|| {
                    (
                        self.project(&t.heads, &t.net.forward(x1, true).0, "projector", pd),
                        self.project(&t.heads, &t.net.forward(x2, true).0, "projector", pd),
                    )
                });
                loss::byol_regression(&p1, &z2) + loss::byol_regression(&p2, &z1)
            }
        }
    }

    fn enqueue(&mut self, k: &Tensor) {
        let Some(queue) = self.queue.as_mut() else { return };
        let len = queue.size()[0];
        let n = k.size()[0];
        let idx = (Tensor::arange(n, (Kind::Int64, k.device())) + self.queue_ptr).remainder(len);
        tch::no_grad(|| {
            let _ = queue.index_copy_(0, &idx, &k.detach().to_kind(Kind::Float));
        });
        self.queue_ptr = (self.queue_ptr + n) % len;
    }

    /// After the optimiser step: EMA of the target. `progress` in [0, 1] drives BYOL's schedule.
    pub fn after_step(&mut self, progress: f64) {
        let m = match self.cfg.kind {
            MethodKind::SimClr => return,
            MethodKind::MoCo => self.cfg.momentum,
            MethodKind::Byol => 1.0 - (1.0 - self.cfg.momentum) * ((std::f64::consts::PI * progress).cos() + 1.0) / 2.0,
        };
        if let Some(t) = &mut self.target {
            tch::no_grad(|| {
                for (tp, op) in &mut t.pairs {
                    let _ = tp.g_mul_scalar_(m).g_add_(&(&*op * (1.0 - m)));
                }
            });
        }
    }

    /// Method state beyond the online weights: target network, queue and its pointer.
    pub fn extra_state(&self) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        if let Some(t) = &self.target {
            v.extend(named_sorted(&t.net.vs).into_iter().map(|(k, x)| (format!("target.backbone.{k}"), x)));
            v.extend(named_sorted(&t.heads).into_iter().map(|(k, x)| (format!("target.heads.{k}"), x)));
        }
        if let Some(q) = &self.queue {
            v.push(("queue".into(), q.shallow_clone()));
            v.push(("queue_ptr".into(), Tensor::from(self.queue_ptr)));
        }
        v
    }

    /// All weights (online, heads, target, queue) as one named list, for checkpoints.
    pub fn all_state(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> =
            named_sorted(&self.backbone.vs).into_iter().map(|(k, t)| (format!("backbone.{k}"), t)).collect();
        v.extend(named_sorted(&self.heads).into_iter().map(|(k, t)| (format!("heads.{k}"), t)));
        v.extend(self.extra_state());
        v
    }

    pub fn load_all_state(&mut self, state: Vec<(String, Tensor)>) -> Result<(), String> {
        let mut map: std::collections::HashMap<String, Tensor> = state.into_iter().collect();
        let mut dests: Vec<(String, Tensor)> = self.all_state();
        tch::no_grad(|| -> Result<(), String> {
            for (name, dst) in dests.iter_mut() {
                if name == "queue_ptr" {
                    continue;
                }
                let src = map.remove(name.as_str()).ok_or_else(|| format!("checkpoint lacks '{name}'"))?;
                if src.size() != dst.size() {
                    return Err(format!("checkpoint '{name}' has shape {:?}, model {:?}", src.size(), dst.size()));
                }
                dst.copy_(&src.to_device(dst.device()));
            }
            Ok(())
        })?;
        if let Some(p) = map.remove("queue_ptr") {
            self.queue_ptr = p.int64_value(&[]);
        }
        if let Some(k) = map.keys().next() {
            return Err(format!("checkpoint has an entry the model lacks: '{k}' (another method or architecture?)"));
        }
        Ok(())
    }
}
