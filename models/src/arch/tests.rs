//! Checks the architecture functions against torchvision's published parameter counts, with a
//! builder that only tracks shapes and counts parameters.

use super::*;
use std::collections::BTreeSet;

/// [C, H, W] per value; counts trainable parameters the way `sum(p.numel())` does in PyTorch.
#[derive(Default)]
struct Counter {
    params: usize,
    names: BTreeSet<String>,
}

impl Counter {
    fn name(&mut self, n: &str) {
        assert!(self.names.insert(n.to_string()), "module name {n} used twice");
    }
}

impl NetBuilder for Counter {
    type Value = [usize; 3];
    fn conv2d(&mut self, name: &str, x: &[usize; 3], s: ConvSpec) -> [usize; 3] {
        self.name(name);
        assert_eq!(x[0], s.in_channels, "{name}: input channels");
        self.params +=
            s.out_channels * s.in_channels / s.groups * s.kernel * s.kernel + if s.bias { s.out_channels } else { 0 };
        let o = |d: usize| (d + 2 * s.padding - s.dilation * (s.kernel - 1) - 1) / s.stride + 1;
        [s.out_channels, o(x[1]), o(x[2])]
    }
    fn batch_norm(&mut self, name: &str, x: &[usize; 3], c: usize) -> [usize; 3] {
        self.name(name);
        assert_eq!(x[0], c, "{name}: channels");
        self.params += 2 * c;
        *x
    }
    fn activation(&mut self, x: &[usize; 3], _: Activation) -> [usize; 3] {
        *x
    }
    fn add(&mut self, a: &[usize; 3], b: &[usize; 3]) -> [usize; 3] {
        assert_eq!(a, b);
        *a
    }
    fn mul(&mut self, a: &[usize; 3], b: &[usize; 3]) -> [usize; 3] {
        assert_eq!(a[0], b[0]);
        *a
    }
    fn max_pool2d(&mut self, x: &[usize; 3], k: usize, s: usize, p: usize) -> [usize; 3] {
        [x[0], (x[1] + 2 * p - k) / s + 1, (x[2] + 2 * p - k) / s + 1]
    }
    fn avg_pool2d(&mut self, x: &[usize; 3], k: usize, s: usize) -> [usize; 3] {
        [x[0], (x[1] - k) / s + 1, (x[2] - k) / s + 1]
    }
    fn global_avg_pool(&mut self, x: &[usize; 3]) -> [usize; 3] {
        [x[0], 1, 1]
    }
    fn flatten(&mut self, x: &[usize; 3]) -> [usize; 3] {
        assert_eq!((x[1], x[2]), (1, 1));
        *x
    }
    fn linear(&mut self, name: &str, x: &[usize; 3], i: usize, o: usize) -> [usize; 3] {
        self.name(name);
        assert_eq!(x[0], i, "{name}: in features");
        self.params += i * o + o;
        [o, 1, 1]
    }
}

fn count(arch: Arch, classes: usize) -> (usize, [usize; 3]) {
    let mut c = Counter::default();
    let (f, l) = build(&mut c, arch, 3, Some(classes), &[3, 224, 224]);
    assert_eq!(f[0], arch.feature_dim());
    assert_eq!(l.unwrap(), [classes, 1, 1]);
    (c.params, f)
}

#[test]
fn parameter_counts_match_torchvision() {
    // `sum(p.numel() for p in torchvision.models.X().parameters())` (1000 classes), as published in
    // torchvision's model documentation.
    assert_eq!(count(Arch::ResNet18, 1000).0, 11_689_512);
    assert_eq!(count(Arch::ResNet50, 1000).0, 25_557_032);
    assert_eq!(count(Arch::MobileNetV2 { width: 1.0 }, 1000).0, 3_504_872);
    assert_eq!(count(Arch::MobileNetV3Small, 1000).0, 2_542_856);
}

#[test]
fn resnet8_matches_mlperf_tiny_shape() {
    // MLPerf Tiny's Keras model reports 78,666 parameters with 10 classes. That total includes the
    // BatchNorms' moving mean/variance (2 x 240 channels) and the biases of the seven convs a
    // BatchNorm follows (240), neither of which a PyTorch parameter count has.
    assert_eq!(count(Arch::ResNet8, 10).0, 78_666 - 480 - 240);
}

#[test]
fn names_round_trip() {
    for a in [Arch::ResNet8, Arch::ResNet18, Arch::ResNet50, Arch::MobileNetV2 { width: 0.35 }, Arch::MobileNetV3Small]
    {
        assert_eq!(Arch::parse(&a.name()).unwrap(), a);
    }
    assert!(Arch::parse("vgg16").unwrap_err().contains("vgg16"));
}

#[test]
fn mobilenet_v2_035_features_and_names() {
    let mut c = Counter::default();
    let (f, _) = build(&mut c, Arch::MobileNetV2 { width: 0.35 }, 4, None, &[4, 64, 64]);
    assert_eq!(f, [1280, 1, 1]);
    for n in ["features.0.0", "features.1.conv.0.0", "features.1.conv.1", "features.2.conv.3", "features.18.1"] {
        assert!(c.names.contains(n), "missing {n}");
    }
}
