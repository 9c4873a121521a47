//! Architectures described once, interpreted twice.
//!
//! Each architecture is a plain function over a [`NetBuilder`]. The host trainer implements the trait
//! with tch modules (names match torchvision's `state_dict` keys); [`graph_builder`] implements it by
//! emitting `.rsm` graph ops with given or random weights. Because both sides walk the same function,
//! an exported model maps 1:1 onto the trained network.

use crate::graph::Activation;

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
        ConvSpec { in_channels, out_channels, kernel, stride, padding: (kernel - 1) / 2, dilation: 1, groups: 1, bias: false }
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
}

/// The architectures rsim knows, by the names the CLI and model files use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arch {
    /// MLPerf Tiny's ResNet-8 (CIFAR-style, 16/32/64 channels).
    ResNet8,
    ResNet18,
    ResNet50,
    /// MobileNetV2 with a width multiplier (0.35, 0.5, 0.75, 1.0, ...).
    MobileNetV2 { width: f32 },
    MobileNetV3Small,
}
