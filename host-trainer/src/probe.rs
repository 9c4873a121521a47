//! Few-label evaluation of a backbone: linear probe on frozen features (eval-mode BatchNorm, so its
//! statistics stay frozen), weighted kNN (k = 20, cosine), and full fine-tuning (also used from a
//! random initialisation as the supervised-from-scratch baseline).
use tch::nn::Module;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

use crate::bank::Bank;
use crate::metrics::{Confusion, Scores};
use crate::net::{named_sorted, Net};
use crate::optim::{lr_at, OptConfig, OptKind, Optimizer};
use crate::views::{ViewCfg, ViewStream};

/// L2-normalised backbone features [N, D] of the whole bank, BatchNorm in eval mode, no gradient.
pub fn features(net: &Net, bank: &Bank, device: Device, batch: i64) -> Tensor {
    tch::no_grad(|| {
        let n = bank.len() as i64;
        let mut out = Vec::new();
        let mut i = 0;
        while i < n {
            let len = batch.min(n - i);
            let idx = Tensor::arange_start(i, i + len, (Kind::Int64, Device::Cpu));
            let x = bank.batch(&idx, device, 0.5, 0.5);
            out.push(net.forward(&x, false).0.to_device(Device::Cpu));
            i += len;
        }
        crate::loss::l2_normalize(&Tensor::cat(&out, 0))
    })
}

/// Logistic regression on fixed features (full batch, Adam, `steps` steps); returns test predictions.
pub fn linear_probe(ftr: &Tensor, ytr: &Tensor, fte: &Tensor, classes: usize, steps: usize, seed: i64) -> Vec<i64> {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let lin = nn::linear(vs.root(), ftr.size()[1], classes as i64, Default::default());
    let mut opt = nn::Adam { wd: 1e-4, ..Default::default() }.build(&vs, 1e-2).expect("Adam over a linear layer");
    // Features are unit vectors: scale them so logits can become confident.
    let (xtr, xte) = (ftr * 10.0, fte * 10.0);
    for _ in 0..steps {
        let loss = lin.forward(&xtr).cross_entropy_for_logits(ytr);
        opt.backward_step(&loss);
    }
    tch::no_grad(|| Vec::<i64>::try_from(lin.forward(&xte).argmax(1, false)).expect("i64 predictions"))
}

/// Weighted kNN (solo-learn/InstDisc): the top-`k` cosine neighbours vote with weight exp(s / T).
pub fn knn(ftr: &Tensor, ytr: &Tensor, fte: &Tensor, classes: usize, k: i64, t: f64) -> Vec<i64> {
    tch::no_grad(|| {
        let k = k.min(ftr.size()[0]);
        let sim = fte.matmul(&ftr.tr());
        let (s, i) = sim.topk(k, 1, true, true);
        let labels = ytr.index_select(0, &i.flatten(0, -1)).view([-1, k]);
        let w = (s / t).exp();
        let votes =
            Tensor::zeros([fte.size()[0], classes as i64], (Kind::Float, Device::Cpu)).scatter_add(1, &labels, &w);
        Vec::<i64>::try_from(votes.argmax(1, false)).expect("i64 predictions")
    })
}

pub fn score(classes: usize, truth: &Tensor, pred: &[i64]) -> Result<Scores, String> {
    let t = Vec::<i64>::try_from(truth).map_err(|e| e.to_string())?;
    Ok(Confusion::from_labels(classes, &t, pred)?.scores())
}

/// A bank restricted to `idx` (shares nothing mutable with the original).
pub fn subset(bank: &Bank, idx: &[i64]) -> Bank {
    let t = Tensor::from_slice(idx);
    Bank {
        images: bank.images.index_select(0, &t),
        labels: bank.labels.index_select(0, &t),
        classes: bank.classes.clone(),
        skipped: 0,
    }
}

#[derive(Clone, Debug)]
pub struct FinetuneCfg {
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub seed: u64,
}

/// Trains backbone + classifier on `train` (mild views: crop 0.8-1, flips, rot90) and predicts `test`.
/// `net` may hold pretrained weights (fine-tune) or a random initialisation (supervised baseline).
pub fn finetune(net: &Net, train: &Bank, test: &Bank, cfg: &FinetuneCfg, device: Device) -> Result<Vec<i64>, String> {
    let classes = train.classes.len();
    tch::manual_seed(cfg.seed as i64);
    let head_vs = nn::VarStore::new(device);
    let head = nn::linear(head_vs.root().sub("fc"), net.feature_dim() as i64, classes as i64, Default::default());
    let mut params: Vec<(String, Tensor)> =
        named_sorted(&net.vs).into_iter().map(|(k, t)| (format!("backbone.{k}"), t)).collect();
    params.extend(named_sorted(&head_vs).into_iter().map(|(k, t)| (format!("head.{k}"), t)));
    fit(params, train, cfg, device, |x| head.forward(&net.forward(x, true).0))?;
    predict_with(test, device, |x| head.forward(&net.forward(x, false).0))
}

/// The views [`finetune`] trains on (crop 0.8-1, flips, rot90, no colour changes).
pub fn finetune_views(size: usize) -> ViewCfg {
    let mut vc = ViewCfg::ssl(size);
    vc.crop_scale = (0.8, 1.0);
    vc.jitter_p = 0.0;
    vc.gray_p = 0.0;
    vc
}

/// The supervised loop shared by [`finetune`] and the classifier checkpoints (`rsim finetune`):
/// AdamW over `params` with warm-up + cosine, cross-entropy of `logits(view)` against the labels.
/// Returns the loss of every step.
pub fn fit(
    params: Vec<(String, Tensor)>,
    train: &Bank,
    cfg: &FinetuneCfg,
    device: Device,
    logits: impl Fn(&Tensor) -> Tensor,
) -> Result<Vec<f64>, String> {
    let mut opt = Optimizer::new(OptConfig::new(OptKind::AdamW, cfg.weight_decay), params);
    let batch = cfg.batch.min(train.len());
    let mut stream = ViewStream::new(train, finetune_views(train.images.size()[2] as usize), batch, cfg.seed, device)?;
    let mut losses = Vec::with_capacity(cfg.steps);
    for step in 0..cfg.steps {
        let idx = stream.indices(step as u64);
        let (x, _) = stream.views(step as u64);
        let y = train.labels.index_select(0, &Tensor::from_slice(&idx)).to_device(device);
        let loss = logits(&x).cross_entropy_for_logits(&y);
        opt.zero_grad();
        loss.backward();
        opt.step(lr_at(step, cfg.steps, cfg.steps / 10, cfg.lr, 0.0));
        losses.push(loss.double_value(&[]));
    }
    Ok(losses)
}

/// Predicted classes of every image in `test` (batches of 256, no gradient).
pub fn predict_with(test: &Bank, device: Device, logits: impl Fn(&Tensor) -> Tensor) -> Result<Vec<i64>, String> {
    tch::no_grad(|| {
        let n = test.len() as i64;
        let mut preds = Vec::new();
        let mut i = 0;
        while i < n {
            let len = 256.min(n - i);
            let idx = Tensor::arange_start(i, i + len, (Kind::Int64, Device::Cpu));
            let x = test.batch(&idx, device, 0.5, 0.5);
            let p = logits(&x).argmax(1, false).to_device(Device::Cpu);
            preds.extend(Vec::<i64>::try_from(p).map_err(|e| e.to_string())?);
            i += len;
        }
        Ok(preds)
    })
}
