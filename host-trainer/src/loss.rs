//! Contrastive and regression losses: NT-Xent (SimCLR), InfoNCE over a queue (MoCo), BYOL's
//! normalised regression, and FALSE's false-negative-aware adjustment for the contrastive two.
use tch::{Kind, Tensor};

/// FALSE (GeoX-Lab/FALSE): per batch, the (anchor, negative) pair whose similarity is closest to
/// the anchor's own positive similarity is taken as a false negative when the anchor's positive cosine
/// is at least `threshold`; `alpha` of its weight moves from the negatives to the positives of that row.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct FalseCfg {
    pub alpha: f64,
    pub threshold: f64,
}

impl Default for FalseCfg {
    fn default() -> Self {
        FalseCfg { alpha: 1.0, threshold: 0.9 }
    }
}

/// Cross-entropy over rows of `logits` [R, C] whose positive column is `pos` [R] (i64), with
/// optional FALSE: `candidates` [R, C] (bool) marks where a false negative may be picked.
/// The positive stays in the denominator (SimCLR/MoCo); cells set to -inf are ignored.
pub fn contrastive_ce(
    logits: &Tensor,
    pos: &Tensor,
    candidates: &Tensor,
    false_cfg: Option<FalseCfg>,
    tau: f64,
) -> Tensor {
    let lse = logits.logsumexp(&[1i64][..], false);
    let pos_logit = logits.gather(1, &pos.unsqueeze(1), false).squeeze_dim(1);
    let Some(f) = false_cfg else {
        return (lse - pos_logit).mean(Kind::Float);
    };
    let (r, c) = (logits.size()[0], logits.size()[1]);
    // Selection is not differentiated (as in FALSE's code, which works on detached similarities).
    let (row, col, gate) = tch::no_grad(|| {
        let s = logits.detach().to_kind(Kind::Float).exp();
        let p = s.gather(1, &pos.unsqueeze(1), false);
        let d = (&s - &p).abs().masked_fill(&candidates.logical_not(), f64::INFINITY);
        let flat = d.flatten(0, -1).argmin(0, false).int64_value(&[]);
        let (row, col) = (flat / c, flat % c);
        let pos_cos = tau * pos_logit.double_value(&[row]);
        (row, col, pos_cos >= f.threshold && d.double_value(&[row, col]).is_finite())
    });
    if !gate || f.alpha <= 0.0 {
        return (lse - pos_logit).mean(Kind::Float);
    }
    // Row `row` numerator: exp(pos) + alpha * exp(neg), as a logaddexp; denominator unchanged.
    let neg = logits.get(row).get(col) + f.alpha.ln();
    let num_row = Tensor::stack(&[pos_logit.get(row), neg], 0).logsumexp(&[0i64][..], false);
    let onehot = Tensor::zeros([r], (Kind::Float, logits.device())).index_fill(
        0,
        &Tensor::from(row).to_device(logits.device()),
        1.0,
    );
    let keep: Tensor = onehot.ones_like() - &onehot;
    let num: Tensor = &pos_logit * keep + onehot * num_row;
    let per_row: Tensor = lse - num;
    per_row.mean(Kind::Float)
}

/// SimCLR's NT-Xent over two views [N, D] (positive in the denominator, self excluded).
pub fn nt_xent(z1: &Tensor, z2: &Tensor, tau: f64, false_cfg: Option<FalseCfg>) -> Tensor {
    let n = z1.size()[0];
    let dev = z1.device();
    let z = Tensor::cat(&[z1, z2], 0).to_kind(Kind::Float);
    let z = &z / z.norm_scalaropt_dim(2.0, &[1i64][..], true).clamp_min(1e-12);
    let eye = Tensor::eye(2 * n, (Kind::Bool, dev));
    let logits = (z.matmul(&z.tr()) / tau).masked_fill(&eye, f64::NEG_INFINITY);
    let idx = Tensor::arange(2 * n, (Kind::Int64, dev));
    let pos = (&idx + n).remainder(2 * n);
    let candidates = if false_cfg.is_some() {
        // Upper triangle, minus self and the positive (FALSE's search space).
        let upper = Tensor::ones([2 * n, 2 * n], (Kind::Bool, dev)).triu(1);
        let is_pos = idx.unsqueeze(1).eq_tensor(&(idx.unsqueeze(0) + n).remainder(2 * n));
        upper.logical_and(&is_pos.logical_not())
    } else {
        Tensor::zeros([1], (Kind::Bool, dev))
    };
    contrastive_ce(&logits, &pos, &candidates, false_cfg, tau)
}

/// MoCo's InfoNCE: query q [N, D] against its key k [N, D] (positive, column 0) and the queue
/// [K, D] of past keys (negatives). All inputs L2-normalised by the caller.
pub fn moco_infonce(q: &Tensor, k: &Tensor, queue: &Tensor, tau: f64, false_cfg: Option<FalseCfg>) -> Tensor {
    let n = q.size()[0];
    let dev = q.device();
    let l_pos = (q * k).sum_dim_intlist(&[1i64][..], true, Kind::Float);
    let l_neg = q.matmul(&queue.tr());
    let logits = Tensor::cat(&[l_pos, l_neg], 1) / tau;
    let pos = Tensor::zeros([n], (Kind::Int64, dev));
    let candidates = if false_cfg.is_some() {
        let c = Tensor::ones(logits.size(), (Kind::Bool, dev));
        let _ = c.narrow(1, 0, 1).fill_(0);
        c
    } else {
        Tensor::zeros([1], (Kind::Bool, dev))
    };
    contrastive_ce(&logits, &pos, &candidates, false_cfg, tau)
}

/// BYOL: 2 - 2 cos(p, z), mean over the batch (z from the target network, no gradient).
pub fn byol_regression(p: &Tensor, z: &Tensor) -> Tensor {
    let pn = p / p.norm_scalaropt_dim(2.0, &[1i64][..], true).clamp_min(1e-12);
    let zn = z / z.norm_scalaropt_dim(2.0, &[1i64][..], true).clamp_min(1e-12);
    let cos: Tensor = (pn * zn).sum_dim_intlist(&[1i64][..], false, Kind::Float);
    let per: Tensor = cos * -2.0 + 2.0;
    per.mean(Kind::Float)
}

pub fn l2_normalize(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2.0, &[1i64][..], true).clamp_min(1e-12)
}
