//! Classification scores from a confusion matrix: OA, AA, Cohen's kappa, per-class accuracy.
//! Rows are true classes, columns predictions.

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Confusion {
    pub classes: usize,
    /// Row-major `classes x classes` counts: `counts[t * classes + p]`.
    pub counts: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scores {
    /// Overall accuracy: correct / total.
    pub oa: f64,
    /// Average accuracy: mean of per-class recall over classes that have samples.
    pub aa: f64,
    /// Cohen's kappa: (po - pe) / (1 - pe).
    pub kappa: f64,
    /// Recall per class; NaN for a class with no samples.
    pub per_class: Vec<f64>,
    pub total: u64,
}

impl Confusion {
    pub fn new(classes: usize) -> Self {
        Confusion { classes, counts: vec![0; classes * classes] }
    }

    /// Builds from true and predicted labels. Labels outside 0..classes are an error.
    pub fn from_labels(classes: usize, truth: &[i64], pred: &[i64]) -> Result<Self, String> {
        if truth.len() != pred.len() {
            return Err(format!("{} true labels but {} predictions", truth.len(), pred.len()));
        }
        let mut m = Confusion::new(classes);
        for (&t, &p) in truth.iter().zip(pred) {
            m.add(t, p)?;
        }
        Ok(m)
    }

    pub fn add(&mut self, truth: i64, pred: i64) -> Result<(), String> {
        let k = self.classes as i64;
        if !(0..k).contains(&truth) || !(0..k).contains(&pred) {
            return Err(format!("label pair ({truth}, {pred}) outside 0..{k}"));
        }
        self.counts[truth as usize * self.classes + pred as usize] += 1;
        Ok(())
    }

    pub fn get(&self, truth: usize, pred: usize) -> u64 {
        self.counts.get(truth * self.classes + pred).copied().unwrap_or(0)
    }

    pub fn scores(&self) -> Scores {
        let k = self.classes;
        let total: u64 = self.counts.iter().sum();
        let row = |t: usize| (0..k).map(|p| self.get(t, p)).sum::<u64>();
        let col = |p: usize| (0..k).map(|t| self.get(t, p)).sum::<u64>();
        let diag: u64 = (0..k).map(|i| self.get(i, i)).sum();
        let per_class: Vec<f64> = (0..k)
            .map(|t| {
                let r = row(t);
                if r == 0 {
                    f64::NAN
                } else {
                    self.get(t, t) as f64 / r as f64
                }
            })
            .collect();
        let present: Vec<f64> = per_class.iter().copied().filter(|v| !v.is_nan()).collect();
        let aa = if present.is_empty() { 0.0 } else { present.iter().sum::<f64>() / present.len() as f64 };
        if total == 0 {
            return Scores { oa: 0.0, aa, kappa: 0.0, per_class, total };
        }
        let n = total as f64;
        let po = diag as f64 / n;
        let pe: f64 = (0..k).map(|i| row(i) as f64 * col(i) as f64).sum::<f64>() / (n * n);
        // pe == 1 only when every sample is one class predicted as that class: agreement is perfect.
        let kappa = if (1.0 - pe).abs() < 1e-15 {
            if po >= 1.0 {
                1.0
            } else {
                0.0
            }
        } else {
            (po - pe) / (1.0 - pe)
        };
        Scores { oa: po, aa, kappa, per_class, total }
    }
}
