//! torchvision's MobileNetV2 (`features.N...`, `classifier.1`) with a width multiplier.

use super::{conv_bn_act, ConvSpec, NetBuilder, BN_EPS};
use crate::graph::Activation;

/// torchvision's `_make_divisible`: round `v` to the nearest multiple of `divisor`, at least
/// `divisor`, never more than 10% below `v`.
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new_v = (((v + d / 2.0) as usize) / divisor * divisor).max(divisor);
    if (new_v as f64) < 0.9 * v {
        new_v += divisor;
    }
    new_v
}

/// The multiplier as Python would hold it: the f32 printed shortest (0.35), read as f64, so that
/// channel rounding matches torchvision bit for bit.
fn width_f64(width: f32) -> f64 {
    format!("{width}").parse().unwrap_or(width as f64)
}

/// Channels of the final 1x1 conv (1280, scaled up only for width > 1), i.e. the feature width.
pub fn last_channel(width: f32) -> usize {
    make_divisible(1280.0 * width_f64(width).max(1.0), 8)
}

/// (expand ratio t, channels c, repeats n, stride s) from the paper's Table 2.
const SETTING: [(usize, usize, usize, usize); 7] =
    [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];

/// torchvision `InvertedResidual` at `features.{idx}`.
fn inverted_residual<B: NetBuilder>(
    b: &mut B,
    idx: usize,
    x: &B::Value,
    inp: usize,
    oup: usize,
    stride: usize,
    t: usize,
) -> B::Value {
    let hidden = inp * t;
    let base = format!("features.{idx}.conv");
    let mut k = 0;
    let mut y = x.clone();
    if t != 1 {
        y = conv_bn_act(b, &format!("{base}.0"), &y, ConvSpec::new(inp, hidden, 1, 1), Activation::Relu6, BN_EPS);
        k += 1;
    }
    y = conv_bn_act(b, &format!("{base}.{k}"), &y, ConvSpec::depthwise(hidden, 3, stride), Activation::Relu6, BN_EPS);
    y = b.conv2d(&format!("{base}.{}", k + 1), &y, ConvSpec::new(hidden, oup, 1, 1));
    y = b.batch_norm(&format!("{base}.{}", k + 2), &y, oup);
    if stride == 1 && inp == oup {
        b.add(x, &y)
    } else {
        y
    }
}

pub fn mobilenet_v2<B: NetBuilder>(
    b: &mut B,
    width: f32,
    bands: usize,
    num_classes: Option<usize>,
    input: &B::Value,
) -> (B::Value, Option<B::Value>) {
    let w = width_f64(width);
    let mut inp = make_divisible(32.0 * w, 8);
    let mut x = conv_bn_act(b, "features.0", input, ConvSpec::new(bands, inp, 3, 2), Activation::Relu6, BN_EPS);
    let mut idx = 1;
    for (t, c, n, s) in SETTING {
        let oup = make_divisible(c as f64 * w, 8);
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            x = inverted_residual(b, idx, &x, inp, oup, stride, t);
            inp = oup;
            idx += 1;
        }
    }
    let last = last_channel(width);
    let x = conv_bn_act(b, &format!("features.{idx}"), &x, ConvSpec::new(inp, last, 1, 1), Activation::Relu6, BN_EPS);
    let pooled = b.global_avg_pool(&x);
    let features = b.flatten(&pooled);
    let logits = num_classes.map(|k| {
        let d = b.dropout(&features, 0.2);
        b.linear("classifier.1", &d, last, k)
    });
    (features, logits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_divisible_matches_torchvision() {
        // Values from torchvision.models.mobilenetv2._make_divisible(c * w, 8) in Python.
        assert_eq!(make_divisible(32.0 * 0.35, 8), 16);
        assert_eq!(make_divisible(16.0 * 0.35, 8), 8);
        assert_eq!(make_divisible(24.0 * 0.35, 8), 8);
        assert_eq!(make_divisible(320.0 * 0.35, 8), 112);
        assert_eq!(make_divisible(96.0 * 0.35, 8), 32);
        assert_eq!(make_divisible(24.0 * 0.75, 8), 24);
        assert_eq!(last_channel(0.35), 1280);
        assert_eq!(last_channel(1.4), 1792);
    }
}
