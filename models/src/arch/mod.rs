//! Architectures described once, interpreted twice.
//!
//! Each architecture is a plain function over a [`NetBuilder`]. The host trainer implements the trait
//! with tch modules (names match torchvision's `state_dict` keys); [`graph_builder`](crate::graph_builder) implements it by
//! emitting `.rsm` graph ops with given or random weights. Because both sides walk the same function,
//! an exported model maps 1:1 onto the trained network.

use crate::graph::Activation;

pub mod mobilenet_v2;
pub mod mobilenet_v3;
pub mod resnet;

/// A convolution as PyTorch declares it (symmetric padding, NCHW semantics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
    pub bias: bool,
}

impl ConvSpec {
    /// `k x k` conv with "same"-style padding `(k - 1) / 2`, no bias (a BatchNorm follows).
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize, stride: usize) -> ConvSpec {
        ConvSpec {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding: (kernel - 1) / 2,
            dilation: 1,
            groups: 1,
            bias: false,
        }
    }
    pub fn depthwise(channels: usize, kernel: usize, stride: usize) -> ConvSpec {
        ConvSpec { groups: channels, ..ConvSpec::new(channels, channels, kernel, stride) }
    }
    pub fn with_bias(self) -> ConvSpec {
        ConvSpec { bias: true, ..self }
    }
    pub fn with_padding(self, padding: usize) -> ConvSpec {
        ConvSpec { padding, ..self }
    }
}

/// The operations architectures are written in. `name` arguments are the PyTorch module paths
/// (`layer1.0.conv1`, `features.3.conv.0.0`), so weights map by name in both directions.
pub trait NetBuilder {
    /// A value flowing through the network (a tensor handle).
    type Value: Clone;

    fn conv2d(&mut self, name: &str, x: &Self::Value, spec: ConvSpec) -> Self::Value;
    /// BatchNorm2d over `channels` (eval: running statistics; the exporter folds it into the conv).
    fn batch_norm(&mut self, name: &str, x: &Self::Value, channels: usize) -> Self::Value;
    fn activation(&mut self, x: &Self::Value, act: Activation) -> Self::Value;
    fn add(&mut self, a: &Self::Value, b: &Self::Value) -> Self::Value;
    /// `a * b` where `b` is [N, C, 1, 1] (squeeze-excite gate) or the same shape as `a`.
    fn mul(&mut self, a: &Self::Value, b: &Self::Value) -> Self::Value;
    fn max_pool2d(&mut self, x: &Self::Value, kernel: usize, stride: usize, padding: usize) -> Self::Value;
    fn avg_pool2d(&mut self, x: &Self::Value, kernel: usize, stride: usize) -> Self::Value;
    /// Mean over H and W, keeping dims ([N, C, 1, 1]).
    fn global_avg_pool(&mut self, x: &Self::Value) -> Self::Value;
    /// [N, C, 1, 1] -> [N, C].
    fn flatten(&mut self, x: &Self::Value) -> Self::Value;
    fn linear(&mut self, name: &str, x: &Self::Value, in_features: usize, out_features: usize) -> Self::Value;

    /// BatchNorm2d with a non-default epsilon (torchvision's MobileNetV3 uses 1e-3; everything else
    /// PyTorch's 1e-5). Implementations should override this; the default ignores `eps`.
    fn batch_norm_eps(&mut self, name: &str, x: &Self::Value, channels: usize, eps: f64) -> Self::Value {
        let _ = eps;
        self.batch_norm(name, x, channels)
    }
    /// Dropout with probability `p` (torchvision's classifier heads). Identity at inference, which is
    /// the default; a training builder overrides it.
    fn dropout(&mut self, x: &Self::Value, p: f64) -> Self::Value {
        let _ = p;
        x.clone()
    }
}

/// PyTorch's BatchNorm2d default epsilon.
pub const BN_EPS: f64 = 1e-5;

/// The architectures rsim knows, by the names the CLI and model files use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arch {
    /// MLPerf Tiny's ResNet-8 (CIFAR-style, 16/32/64 channels).
    ResNet8,
    ResNet18,
    ResNet50,
    /// MobileNetV2 with a width multiplier (0.35, 0.5, 0.75, 1.0, ...).
    MobileNetV2 {
        width: f32,
    },
    MobileNetV3Small,
}

impl Arch {
    /// Stable name used by the CLI and in model provenance (`resnet18`, `mobilenet_v2_0.35`, ...).
    pub fn name(&self) -> String {
        match self {
            Arch::ResNet8 => "resnet8".into(),
            Arch::ResNet18 => "resnet18".into(),
            Arch::ResNet50 => "resnet50".into(),
            Arch::MobileNetV2 { width } => format!("mobilenet_v2_{width:?}"),
            Arch::MobileNetV3Small => "mobilenet_v3_small".into(),
        }
    }

    /// Parses the names [`Arch::name`] writes; `mobilenet_v2` alone means width 1.0.
    pub fn parse(s: &str) -> Result<Arch, String> {
        let lower = s.trim().to_ascii_lowercase().replace('-', "_");
        match lower.as_str() {
            "resnet8" => Ok(Arch::ResNet8),
            "resnet18" => Ok(Arch::ResNet18),
            "resnet50" => Ok(Arch::ResNet50),
            "mobilenet_v2" | "mobilenetv2" => Ok(Arch::MobileNetV2 { width: 1.0 }),
            "mobilenet_v3_small" | "mobilenetv3_small" => Ok(Arch::MobileNetV3Small),
            other => match other.strip_prefix("mobilenet_v2_").map(str::parse::<f32>) {
                Some(Ok(width)) if width > 0.0 && width.is_finite() => Ok(Arch::MobileNetV2 { width }),
                _ => Err(format!(
                    "unknown architecture '{s}' (expected resnet8, resnet18, resnet50, mobilenet_v2[_WIDTH], mobilenet_v3_small)"
                )),
            },
        }
    }

    /// Width of the backbone feature vector [`build`] returns.
    pub fn feature_dim(&self) -> usize {
        match self {
            Arch::ResNet8 => resnet::RESNET8_FEATURES,
            Arch::ResNet18 => 512,
            Arch::ResNet50 => 2048,
            Arch::MobileNetV2 { width } => mobilenet_v2::last_channel(*width),
            Arch::MobileNetV3Small => mobilenet_v3::LASTCONV_CHANNELS,
        }
    }
}

/// Builds `arch` over `input` ([N, bands, H, W]): returns the backbone features [N, C]
/// (C = [`Arch::feature_dim`]) and, with `num_classes`, the classifier logits [N, num_classes] under
/// torchvision's head names (`fc`, `classifier.1`, `classifier.{0,3}`).
pub fn build<B: NetBuilder>(
    b: &mut B,
    arch: Arch,
    bands: usize,
    num_classes: Option<usize>,
    input: &B::Value,
) -> (B::Value, Option<B::Value>) {
    match arch {
        Arch::ResNet8 => resnet::resnet8(b, bands, num_classes, input),
        Arch::ResNet18 => resnet::resnet18(b, bands, num_classes, input),
        Arch::ResNet50 => resnet::resnet50(b, bands, num_classes, input),
        Arch::MobileNetV2 { width } => mobilenet_v2::mobilenet_v2(b, width, bands, num_classes, input),
        Arch::MobileNetV3Small => mobilenet_v3::mobilenet_v3_small(b, bands, num_classes, input),
    }
}

/// BatchNorm through the plain trait method when `eps` is PyTorch's default, so builders that do not
/// override [`NetBuilder::batch_norm_eps`] are only affected where torchvision itself deviates.
pub(crate) fn bn<B: NetBuilder>(b: &mut B, name: &str, x: &B::Value, channels: usize, eps: f64) -> B::Value {
    if eps == BN_EPS {
        b.batch_norm(name, x, channels)
    } else {
        b.batch_norm_eps(name, x, channels, eps)
    }
}

/// Conv, BatchNorm and an optional activation: torchvision's `Conv2dNormActivation` (children
/// `{name}.0` conv, `{name}.1` norm).
pub(crate) fn conv_bn_act<B: NetBuilder>(
    b: &mut B,
    name: &str,
    x: &B::Value,
    spec: ConvSpec,
    act: Activation,
    eps: f64,
) -> B::Value {
    let y = b.conv2d(&format!("{name}.0"), x, spec);
    let y = bn(b, &format!("{name}.1"), &y, spec.out_channels, eps);
    if act == Activation::None {
        y
    } else {
        b.activation(&y, act)
    }
}

#[cfg(test)]
mod tests;
