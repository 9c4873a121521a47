//! SGD, LARS and AdamW over plain tensors, with state that goes into checkpoints.
//!
//! tch's optimisers live in C++ and cannot save their state, so resume would not be exact; these
//! follow PyTorch's update rules (SGD/AdamW) and solo-learn's LARS (bias and norm parameters are
//! neither decayed nor adapted).
use std::collections::BTreeMap;
use std::f64::consts::PI;

use tch::{Kind, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum OptKind {
    Sgd,
    Lars,
    AdamW,
}

impl OptKind {
    pub fn parse(s: &str) -> Result<OptKind, String> {
        match s.to_ascii_lowercase().as_str() {
            "sgd" => Ok(OptKind::Sgd),
            "lars" => Ok(OptKind::Lars),
            "adamw" => Ok(OptKind::AdamW),
            o => Err(format!("unknown optimizer '{o}' (expected sgd, lars or adamw)")),
        }
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct OptConfig {
    pub kind: OptKind,
    pub weight_decay: f64,
    /// SGD/LARS momentum.
    pub momentum: f64,
    /// LARS trust coefficient.
    pub eta: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl OptConfig {
    pub fn new(kind: OptKind, weight_decay: f64) -> Self {
        OptConfig { kind, weight_decay, momentum: 0.9, eta: 0.02, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

struct Param {
    name: String,
    t: Tensor,
    /// Biases and norm weights (1-D): no weight decay, no LARS adaptation.
    is_1d: bool,
    m: Option<Tensor>,
    v: Option<Tensor>,
}

pub struct Optimizer {
    pub cfg: OptConfig,
    params: Vec<Param>,
    pub steps: i64,
}

impl Optimizer {
    /// `params`: (unique name, trainable tensor); order is kept, names key the saved state.
    pub fn new(cfg: OptConfig, params: Vec<(String, Tensor)>) -> Self {
        let params = params
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(name, t)| Param { is_1d: t.dim() <= 1, name, t, m: None, v: None })
            .collect();
        Optimizer { cfg, params, steps: 0 }
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.t.grad();
            if g.defined() {
                let _ = g.detach_();
                let _ = g.zero_();
            }
        }
    }

    #[allow(
        clippy::assign_op_pattern,
        reason = "tch tensors: `a = a op b` makes a new tensor; `a op= b` would write in place into a tensor autograd or another owner still holds"
    )]
    pub fn step(&mut self, lr: f64) {
        let c = self.cfg.clone();
        self.steps += 1;
        let t = self.steps as f64;
        tch::no_grad(|| {
            for p in &mut self.params {
                let g = p.t.grad();
                if !g.defined() {
                    continue;
                }
                let wd = if p.is_1d { 0.0 } else { c.weight_decay };
                match c.kind {
                    OptKind::Sgd | OptKind::Lars => {
                        let mut d = if wd != 0.0 { &g + &p.t * wd } else { g.shallow_clone() };
                        if c.kind == OptKind::Lars && !p.is_1d {
                            // trust = eta * |w| / |g|, 1 where either norm is 0 (kept on device: no sync).
                            let wn = p.t.norm();
                            let gn = d.norm();
                            let ratio = (&wn * c.eta) / &gn;
                            let ok = wn.gt(0.0).logical_and(&gn.gt(0.0));
                            let trust = ratio.where_self(&ok, &Tensor::ones_like(&ratio));
                            d = d * trust;
                        }
                        let m = p.m.get_or_insert_with(|| Tensor::zeros_like(&p.t));
                        let _ = m.g_mul_scalar_(c.momentum).g_add_(&d);
                        let _ = p.t.g_sub_(&(&*m * lr));
                    }
                    OptKind::AdamW => {
                        if wd != 0.0 {
                            let _ = p.t.g_mul_scalar_(1.0 - lr * wd);
                        }
                        let m = p.m.get_or_insert_with(|| Tensor::zeros_like(&p.t));
                        let _ = m.g_mul_scalar_(c.beta1).g_add_(&(&g * (1.0 - c.beta1)));
                        let v = p.v.get_or_insert_with(|| Tensor::zeros_like(&p.t));
                        let _ = v.g_mul_scalar_(c.beta2).g_add_(&(g.square() * (1.0 - c.beta2)));
                        let bc1 = 1.0 - c.beta1.powf(t);
                        let bc2 = 1.0 - c.beta2.powf(t);
                        let denom = (&*v / bc2).sqrt() + c.eps;
                        let _ = p.t.g_sub_(&(&*m / denom * (lr / bc1)));
                    }
                }
            }
        });
    }

    /// State tensors keyed `m.<param>` / `v.<param>`, plus the step count.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("steps".to_string(), Tensor::from(self.steps))];
        for p in &self.params {
            if let Some(m) = &p.m {
                out.push((format!("m.{}", p.name), m.shallow_clone()));
            }
            if let Some(v) = &p.v {
                out.push((format!("v.{}", p.name), v.shallow_clone()));
            }
        }
        out
    }

    pub fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<(), String> {
        let mut map: BTreeMap<String, Tensor> = state.into_iter().collect();
        let steps = map.remove("steps").ok_or("optimizer state has no 'steps' entry")?;
        self.steps = steps.int64_value(&[]);
        for p in &mut self.params {
            let dev = p.t.device();
            let fetch = |t: Tensor, what: &str| -> Result<Tensor, String> {
                if t.size() != p.t.size() {
                    return Err(format!(
                        "optimizer state {what}.{} has shape {:?}, parameter {:?}",
                        p.name,
                        t.size(),
                        p.t.size()
                    ));
                }
                Ok(t.to_kind(Kind::Float).to_device(dev))
            };
            p.m = map.remove(&format!("m.{}", p.name)).map(|t| fetch(t, "m")).transpose()?;
            p.v = map.remove(&format!("v.{}", p.name)).map(|t| fetch(t, "v")).transpose()?;
        }
        if let Some(k) = map.keys().next() {
            return Err(format!("optimizer state has an entry for an unknown parameter: {k}"));
        }
        Ok(())
    }
}

/// Linear warm-up from ~0 to `base`, then cosine decay to `base * final_frac`.
pub fn lr_at(step: usize, total: usize, warmup: usize, base: f64, final_frac: f64) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1);
    let prog = ((step - warmup) as f64 / span as f64).min(1.0);
    let lo = base * final_frac;
    lo + (base - lo) * 0.5 * (1.0 + (PI * prog).cos())
}
