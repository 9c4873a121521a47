//! torchvision's MobileNetV3-small (`features.N.block.M...`, `classifier.{0,3}`): hardswish, and
//! squeeze-excite with a hardsigmoid gate. BatchNorm eps is 1e-3 as in torchvision.

use super::mobilenet_v2::make_divisible;
use super::{conv_bn_act, ConvSpec, NetBuilder};
use crate::graph::Activation;

/// torchvision builds MobileNetV3's BatchNorm with `eps=0.001`.
pub const BN_EPS_V3: f64 = 1e-3;
/// Channels of the last 1x1 conv (6 x 96), the backbone feature width.
pub const LASTCONV_CHANNELS: usize = 576;
/// Hidden width of the classifier head.
pub const LAST_CHANNEL: usize = 1024;

/// One bneck row: input, kernel, expanded, output channels, squeeze-excite, hardswish, stride.
struct Bneck {
    inp: usize,
    kernel: usize,
    exp: usize,
    out: usize,
    se: bool,
    hs: bool,
    stride: usize,
}

const fn bn(inp: usize, kernel: usize, exp: usize, out: usize, se: bool, hs: bool, stride: usize) -> Bneck {
    Bneck { inp, kernel, exp, out, se, hs, stride }
}

/// `_mobilenet_v3_conf("mobilenet_v3_small")` at width 1.0.
const SMALL: [Bneck; 11] = [
    bn(16, 3, 16, 16, true, false, 2),
    bn(16, 3, 72, 24, false, false, 2),
    bn(24, 3, 88, 24, false, false, 1),
    bn(24, 5, 96, 40, true, true, 2),
    bn(40, 5, 240, 40, true, true, 1),
    bn(40, 5, 240, 40, true, true, 1),
    bn(40, 5, 120, 48, true, true, 1),
    bn(48, 5, 144, 48, true, true, 1),
    bn(48, 5, 288, 96, true, true, 2),
    bn(96, 5, 576, 96, true, true, 1),
    bn(96, 5, 576, 96, true, true, 1),
];

/// torchvision `SqueezeExcitation`: pool, `fc1` (1x1 conv + bias), ReLU, `fc2`, hardsigmoid, scale.
fn squeeze_excite<B: NetBuilder>(b: &mut B, name: &str, x: &B::Value, channels: usize) -> B::Value {
    let squeeze = make_divisible((channels / 4) as f64, 8);
    let s = b.global_avg_pool(x);
    let s = b.conv2d(&format!("{name}.fc1"), &s, ConvSpec::new(channels, squeeze, 1, 1).with_bias());
    let s = b.activation(&s, Activation::Relu);
    let s = b.conv2d(&format!("{name}.fc2"), &s, ConvSpec::new(squeeze, channels, 1, 1).with_bias());
    let s = b.activation(&s, Activation::HardSigmoid);
    b.mul(x, &s)
}

fn inverted_residual<B: NetBuilder>(b: &mut B, idx: usize, x: &B::Value, c: &Bneck) -> B::Value {
    let act = if c.hs { Activation::HardSwish } else { Activation::Relu };
    let base = format!("features.{idx}.block");
    let mut k = 0;
    let mut y = x.clone();
    if c.exp != c.inp {
        y = conv_bn_act(b, &format!("{base}.{k}"), &y, ConvSpec::new(c.inp, c.exp, 1, 1), act, BN_EPS_V3);
        k += 1;
    }
    y = conv_bn_act(b, &format!("{base}.{k}"), &y, ConvSpec::depthwise(c.exp, c.kernel, c.stride), act, BN_EPS_V3);
    k += 1;
    if c.se {
        y = squeeze_excite(b, &format!("{base}.{k}"), &y, c.exp);
        k += 1;
    }
    y = conv_bn_act(b, &format!("{base}.{k}"), &y, ConvSpec::new(c.exp, c.out, 1, 1), Activation::None, BN_EPS_V3);
    if c.stride == 1 && c.inp == c.out {
        b.add(&y, x)
    } else {
        y
    }
}

pub fn mobilenet_v3_small<B: NetBuilder>(
    b: &mut B,
    bands: usize,
    num_classes: Option<usize>,
    input: &B::Value,
) -> (B::Value, Option<B::Value>) {
    let first = SMALL[0].inp;
    let mut x =
        conv_bn_act(b, "features.0", input, ConvSpec::new(bands, first, 3, 2), Activation::HardSwish, BN_EPS_V3);
    for (i, c) in SMALL.iter().enumerate() {
        x = inverted_residual(b, i + 1, &x, c);
    }
    let last_in = SMALL[SMALL.len() - 1].out;
    let idx = SMALL.len() + 1;
    let spec = ConvSpec::new(last_in, LASTCONV_CHANNELS, 1, 1);
    let x = conv_bn_act(b, &format!("features.{idx}"), &x, spec, Activation::HardSwish, BN_EPS_V3);
    let pooled = b.global_avg_pool(&x);
    let features = b.flatten(&pooled);
    let logits = num_classes.map(|k| {
        let h = b.linear("classifier.0", &features, LASTCONV_CHANNELS, LAST_CHANNEL);
        let h = b.activation(&h, Activation::HardSwish);
        let h = b.dropout(&h, 0.2);
        b.linear("classifier.3", &h, LAST_CHANNEL, k)
    });
    (features, logits)
}
