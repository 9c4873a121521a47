//! ResNets: torchvision's ResNet-18/50 (module paths as in its `state_dict`) and MLPerf Tiny's
//! CIFAR-style ResNet-8 (16/32/64 channels).

use super::{ConvSpec, NetBuilder};
use crate::graph::Activation;

/// Feature width of ResNet-8 (its last stack).
pub const RESNET8_FEATURES: usize = 64;

fn conv_bn<B: NetBuilder>(b: &mut B, conv: &str, bn: &str, x: &B::Value, spec: ConvSpec) -> B::Value {
    let y = b.conv2d(conv, x, spec);
    b.batch_norm(bn, &y, spec.out_channels)
}

/// torchvision `BasicBlock`: two 3x3 convs, projection shortcut `downsample.{0,1}` when the shape changes.
fn basic_block<B: NetBuilder>(
    b: &mut B,
    name: &str,
    x: &B::Value,
    inp: usize,
    planes: usize,
    stride: usize,
) -> B::Value {
    let y = conv_bn(b, &format!("{name}.conv1"), &format!("{name}.bn1"), x, ConvSpec::new(inp, planes, 3, stride));
    let y = b.activation(&y, Activation::Relu);
    let y = conv_bn(b, &format!("{name}.conv2"), &format!("{name}.bn2"), &y, ConvSpec::new(planes, planes, 3, 1));
    let identity = if stride != 1 || inp != planes {
        let spec = ConvSpec::new(inp, planes, 1, stride);
        conv_bn(b, &format!("{name}.downsample.0"), &format!("{name}.downsample.1"), x, spec)
    } else {
        x.clone()
    };
    let s = b.add(&y, &identity);
    b.activation(&s, Activation::Relu)
}

/// torchvision `Bottleneck` (ResNet v1.5: the stride sits on the 3x3 conv), expansion 4.
fn bottleneck<B: NetBuilder>(
    b: &mut B,
    name: &str,
    x: &B::Value,
    inp: usize,
    planes: usize,
    stride: usize,
) -> B::Value {
    let out = planes * 4;
    let y = conv_bn(b, &format!("{name}.conv1"), &format!("{name}.bn1"), x, ConvSpec::new(inp, planes, 1, 1));
    let y = b.activation(&y, Activation::Relu);
    let y = conv_bn(b, &format!("{name}.conv2"), &format!("{name}.bn2"), &y, ConvSpec::new(planes, planes, 3, stride));
    let y = b.activation(&y, Activation::Relu);
    let y = conv_bn(b, &format!("{name}.conv3"), &format!("{name}.bn3"), &y, ConvSpec::new(planes, out, 1, 1));
    let identity = if stride != 1 || inp != out {
        let spec = ConvSpec::new(inp, out, 1, stride);
        conv_bn(b, &format!("{name}.downsample.0"), &format!("{name}.downsample.1"), x, spec)
    } else {
        x.clone()
    };
    let s = b.add(&y, &identity);
    b.activation(&s, Activation::Relu)
}

/// The ImageNet ResNet trunk shared by 18 and 50: 7x7/2 stem, 3x3/2 max pool, four layers, global
/// average pool, `fc` head.
fn resnet<B: NetBuilder>(
    b: &mut B,
    bottleneck_blocks: bool,
    blocks: [usize; 4],
    bands: usize,
    num_classes: Option<usize>,
    input: &B::Value,
) -> (B::Value, Option<B::Value>) {
    let stem = ConvSpec::new(bands, 64, 7, 2);
    let x = conv_bn(b, "conv1", "bn1", input, stem);
    let x = b.activation(&x, Activation::Relu);
    let mut x = b.max_pool2d(&x, 3, 2, 1);
    let expansion = if bottleneck_blocks { 4 } else { 1 };
    let mut inp = 64;
    for (i, &n) in blocks.iter().enumerate() {
        let planes = 64 << i;
        for j in 0..n {
            let stride = if i > 0 && j == 0 { 2 } else { 1 };
            let name = format!("layer{}.{j}", i + 1);
            x = if bottleneck_blocks {
                bottleneck(b, &name, &x, inp, planes, stride)
            } else {
                basic_block(b, &name, &x, inp, planes, stride)
            };
            inp = planes * expansion;
        }
    }
    let pooled = b.global_avg_pool(&x);
    let features = b.flatten(&pooled);
    let logits = num_classes.map(|k| b.linear("fc", &features, inp, k));
    (features, logits)
}

pub fn resnet18<B: NetBuilder>(
    b: &mut B,
    bands: usize,
    num_classes: Option<usize>,
    input: &B::Value,
) -> (B::Value, Option<B::Value>) {
    resnet(b, false, [2, 2, 2, 2], bands, num_classes, input)
}

pub fn resnet50<B: NetBuilder>(
    b: &mut B,
    bands: usize,
    num_classes: Option<usize>,
    input: &B::Value,
) -> (B::Value, Option<B::Value>) {
    resnet(b, true, [3, 4, 6, 3], bands, num_classes, input)
}

/// MLPerf Tiny's image-classification ResNet-8 (`resnet_v1_eembc`): 3x3 stem with 16 filters, three
/// stacks of one residual block (16, 32/2, 64/2), global average pool, dense head. The stacks that
/// downsample use a 1x1/2 conv with bias and no BatchNorm as shortcut, exactly as the reference.
/// Names follow torchvision's ResNet scheme (`conv1`, `layerN.0.conv1`, `layerN.0.downsample.0`).
/// One deliberate difference: padding is PyTorch's symmetric 1 where Keras's "same" pads stride-2
/// convs only at the bottom/right, since the trainer is PyTorch.
pub fn resnet8<B: NetBuilder>(
    b: &mut B,
    bands: usize,
    num_classes: Option<usize>,
    input: &B::Value,
) -> (B::Value, Option<B::Value>) {
    let x = conv_bn(b, "conv1", "bn1", input, ConvSpec::new(bands, 16, 3, 1));
    let mut x = b.activation(&x, Activation::Relu);
    let mut inp = 16;
    for (i, planes) in [16usize, 32, 64].into_iter().enumerate() {
        let name = format!("layer{}.0", i + 1);
        let stride = if i == 0 { 1 } else { 2 };
        let y = conv_bn(b, &format!("{name}.conv1"), &format!("{name}.bn1"), &x, ConvSpec::new(inp, planes, 3, stride));
        let y = b.activation(&y, Activation::Relu);
        let y = conv_bn(b, &format!("{name}.conv2"), &format!("{name}.bn2"), &y, ConvSpec::new(planes, planes, 3, 1));
        let identity = if stride != 1 || inp != planes {
            b.conv2d(&format!("{name}.downsample.0"), &x, ConvSpec::new(inp, planes, 1, stride).with_bias())
        } else {
            x.clone()
        };
        let s = b.add(&y, &identity);
        x = b.activation(&s, Activation::Relu);
        inp = planes;
    }
    let pooled = b.global_avg_pool(&x);
    let features = b.flatten(&pooled);
    let logits = num_classes.map(|k| b.linear("fc", &features, RESNET8_FEATURES, k));
    (features, logits)
}
