//! f32 parity: rsim-edge's interpreter vs tract on the ONNX export of the same model, for every
//! builder architecture with random weights at 64x64 and 224x224.
//!
//! The parity contract: max relative error <= 1e-4, where
//! `rel = max_i |rsim_i - tract_i| / max_i |tract_i|` over the logits.

use rsim_edge::tract_backend::TractModel;
use rsim_edge::Engine;
use rsim_model::arch::Arch;
use rsim_model::graph_builder::{export, ExportOptions, Rng};
use rsim_model::{DType, Model};

const TOLERANCE: f64 = 1e-4;

fn max_rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).abs()).fold(0.0, f64::max);
    let scale = b.iter().map(|y| (*y as f64).abs()).fold(0.0, f64::max);
    assert!(scale > 0.0, "reference output is all zeros: the comparison would prove nothing");
    diff / scale
}

fn input(len: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..len).map(|_| r.normal() as f32).collect()
}

/// Runs `opts` through both backends and returns the relative error (printed).
fn parity(opts: &ExportOptions) -> f64 {
    let exported = export(opts).unwrap_or_else(|e| panic!("{}: export failed: {e}", opts.name));
    let bytes = exported.bytes;
    let model = Model::parse(&bytes).unwrap();
    let onnx = rsim_model::onnx::to_onnx(&model).unwrap_or_else(|e| panic!("{}: ONNX export failed: {e}", opts.name));

    let x = input(opts.height * opts.width * opts.bands, 42);
    let mut arena = vec![0u8; rsim_edge::required_arena(model.bytes).unwrap() + 16];
    let mut engine = Engine::new(&bytes, &mut arena).unwrap_or_else(|e| panic!("{}: Engine::new: {e}", opts.name));
    engine.run_f32(&x).unwrap_or_else(|e| panic!("{}: run: {e}", opts.name));
    let mut ours = vec![0f32; engine.output_len()];
    engine.output_f32(&mut ours).unwrap();

    let tract = TractModel::from_onnx(&onnx).unwrap_or_else(|e| panic!("{}: {e}", opts.name));
    assert_eq!(tract.input_shape(), &[1, opts.height, opts.width, opts.bands]);
    let theirs = tract.run_f32(&x).unwrap();

    let rel = max_rel_err(&ours, &theirs);
    println!(
        "{:<24} {:>3}x{:<3} {:?} weights: {} outputs, max |tract| {:.4e}, max rel err {rel:.3e}",
        opts.name,
        opts.height,
        opts.width,
        opts.weight_dtype,
        ours.len(),
        theirs.iter().fold(0f32, |m, v| m.max(v.abs()))
    );
    rel
}

fn check(arch: Arch, size: usize) {
    let opts = ExportOptions::random(arch, 3, size, Some(10), 7);
    let rel = parity(&opts);
    assert!(rel <= TOLERANCE, "{} at {size}: max relative error {rel:.3e} > {TOLERANCE:e}", arch.name());
}

#[test]
fn resnet8_64() {
    check(Arch::ResNet8, 64);
}
#[test]
fn resnet8_224() {
    check(Arch::ResNet8, 224);
}
#[test]
fn resnet18_64() {
    check(Arch::ResNet18, 64);
}
#[test]
fn resnet18_224() {
    check(Arch::ResNet18, 224);
}
#[test]
fn mobilenet_v2_1_0_64() {
    check(Arch::MobileNetV2 { width: 1.0 }, 64);
}
#[test]
fn mobilenet_v2_1_0_224() {
    check(Arch::MobileNetV2 { width: 1.0 }, 224);
}
#[test]
fn mobilenet_v2_0_35_64() {
    check(Arch::MobileNetV2 { width: 0.35 }, 64);
}
#[test]
fn mobilenet_v2_0_35_224() {
    check(Arch::MobileNetV2 { width: 0.35 }, 224);
}
#[test]
fn mobilenet_v3_small_64() {
    check(Arch::MobileNetV3Small, 64);
}
#[test]
fn mobilenet_v3_small_224() {
    check(Arch::MobileNetV3Small, 224);
}

/// F16 weights: the runtime widens them, the ONNX export carries the same widened values.
#[test]
fn f16_weights_mobilenet_v3_small_64() {
    let mut opts = ExportOptions::random(Arch::MobileNetV3Small, 3, 64, Some(10), 9);
    opts.weight_dtype = DType::F16;
    opts.name = "mobilenet_v3_small-f16".into();
    assert!(parity(&opts) <= TOLERANCE);
}

/// Multispectral input and a features-only model (no classifier head), softmax-free.
#[test]
fn resnet8_13_bands_features() {
    let opts = ExportOptions::random(Arch::ResNet8, 13, 64, None, 11);
    assert!(parity(&opts) <= TOLERANCE);
}

/// The comparison itself can fail: a perturbed output is caught.
#[test]
fn relative_error_detects_a_difference() {
    let b = [1.0f32, -2.0, 0.5];
    assert_eq!(max_rel_err(&b, &b), 0.0);
    let a = [1.0f32, -2.0, 0.5 + 2e-3];
    assert!((max_rel_err(&a, &b) - 1e-3).abs() < 1e-6);
}

/// An independent f64 evaluator of the architecture functions with PyTorch semantics (NCHW, OIHW
/// weights, BatchNorm from running statistics, nothing folded or fused). It also invents the weights,
/// under the PyTorch names, so the same map then goes through the exporter as a trained model's would.
/// The tract comparison above cannot see an exporter bug that the ONNX writer undoes; this can.
mod reference {
    use rsim_model::arch::{ConvSpec, NetBuilder, BN_EPS};
    use rsim_model::graph_builder::{Rng, WeightMap};
    use rsim_model::Activation;

    /// [C, H, W] (flattened values are [C, 1, 1]).
    #[derive(Clone, Debug)]
    pub struct T {
        pub c: usize,
        pub h: usize,
        pub w: usize,
        pub d: Vec<f64>,
    }

    impl T {
        fn at(&self, c: usize, y: isize, x: isize) -> Option<f64> {
            (y >= 0 && x >= 0 && (y as usize) < self.h && (x as usize) < self.w)
                .then(|| self.d[(c * self.h + y as usize) * self.w + x as usize])
        }
    }

    pub struct Ref {
        rng: Rng,
        pub map: WeightMap,
    }

    impl Ref {
        pub fn new(seed: u64) -> Ref {
            Ref { rng: Rng::new(seed), map: WeightMap::new() }
        }
        fn param(&mut self, name: &str, shape: &[usize], gen: impl Fn(&mut Rng) -> f64) -> Vec<f64> {
            let v: Vec<f32> = (0..shape.iter().product::<usize>()).map(|_| gen(&mut self.rng) as f32).collect();
            assert!(self.map.insert(name.to_string(), (shape.to_vec(), v.clone())).is_none(), "{name} twice");
            v.into_iter().map(f64::from).collect()
        }
        fn map_values(x: &T, f: impl Fn(f64) -> f64) -> T {
            T { d: x.d.iter().map(|&v| f(v)).collect(), ..x.clone() }
        }
    }

    fn relu6(v: f64) -> f64 {
        v.clamp(0.0, 6.0)
    }

    impl NetBuilder for Ref {
        type Value = T;
        fn conv2d(&mut self, name: &str, x: &T, s: ConvSpec) -> T {
            let (g, k) = (s.groups, s.kernel);
            let (ipg, opg) = (s.in_channels / g, s.out_channels / g);
            let std = (2.0 / (ipg * k * k) as f64).sqrt();
            let w = self.param(&format!("{name}.weight"), &[s.out_channels, ipg, k, k], |r| r.normal() * std);
            let b = if s.bias {
                self.param(&format!("{name}.bias"), &[s.out_channels], |r| r.range(-0.1, 0.1))
            } else {
                vec![0.0; s.out_channels]
            };
            let oh = (x.h + 2 * s.padding - s.dilation * (k - 1) - 1) / s.stride + 1;
            let ow = (x.w + 2 * s.padding - s.dilation * (k - 1) - 1) / s.stride + 1;
            let mut d = vec![0.0; s.out_channels * oh * ow];
            for oc in 0..s.out_channels {
                let grp = oc / opg;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = b[oc];
                        for il in 0..ipg {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let y = (oy * s.stride + ky * s.dilation) as isize - s.padding as isize;
                                    let xx = (ox * s.stride + kx * s.dilation) as isize - s.padding as isize;
                                    if let Some(v) = x.at(grp * ipg + il, y, xx) {
                                        acc += v * w[((oc * ipg + il) * k + ky) * k + kx];
                                    }
                                }
                            }
                        }
                        d[(oc * oh + oy) * ow + ox] = acc;
                    }
                }
            }
            T { c: s.out_channels, h: oh, w: ow, d }
        }
        fn batch_norm(&mut self, name: &str, x: &T, c: usize) -> T {
            self.batch_norm_eps(name, x, c, BN_EPS)
        }
        fn batch_norm_eps(&mut self, name: &str, x: &T, c: usize, eps: f64) -> T {
            let g = self.param(&format!("{name}.weight"), &[c], |r| r.range(0.5, 1.5));
            let b = self.param(&format!("{name}.bias"), &[c], |r| r.range(-0.2, 0.2));
            let m = self.param(&format!("{name}.running_mean"), &[c], |r| r.range(-0.2, 0.2));
            let v = self.param(&format!("{name}.running_var"), &[c], |r| r.range(0.5, 2.0));
            let hw = x.h * x.w;
            let d = x.d.iter().enumerate().map(|(i, &val)| {
                let ch = i / hw;
                (val - m[ch]) / (v[ch] + eps).sqrt() * g[ch] + b[ch]
            });
            T { d: d.collect(), ..x.clone() }
        }
        fn activation(&mut self, x: &T, act: Activation) -> T {
            match act {
                Activation::None => x.clone(),
                Activation::Relu => Self::map_values(x, |v| v.max(0.0)),
                Activation::Relu6 => Self::map_values(x, relu6),
                Activation::HardSwish => Self::map_values(x, |v| v * relu6(v + 3.0) / 6.0),
                Activation::HardSigmoid => Self::map_values(x, |v| relu6(v + 3.0) / 6.0),
                Activation::Sigmoid => Self::map_values(x, |v| 1.0 / (1.0 + (-v).exp())),
                Activation::Gelu => unimplemented!("no architecture uses GELU"),
            }
        }
        fn add(&mut self, a: &T, b: &T) -> T {
            T { d: a.d.iter().zip(&b.d).map(|(x, y)| x + y).collect(), ..a.clone() }
        }
        fn mul(&mut self, a: &T, b: &T) -> T {
            let hw = a.h * a.w;
            let per_channel = b.h * b.w == 1;
            let d = a.d.iter().enumerate().map(|(i, x)| x * if per_channel { b.d[i / hw] } else { b.d[i] });
            T { d: d.collect(), ..a.clone() }
        }
        fn max_pool2d(&mut self, x: &T, k: usize, s: usize, p: usize) -> T {
            let (oh, ow) = ((x.h + 2 * p - k) / s + 1, (x.w + 2 * p - k) / s + 1);
            let mut d = Vec::new();
            for c in 0..x.c {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let taps = (0..k * k).filter_map(|t| {
                            x.at(c, (oy * s + t / k) as isize - p as isize, (ox * s + t % k) as isize - p as isize)
                        });
                        d.push(taps.fold(f64::NEG_INFINITY, f64::max));
                    }
                }
            }
            T { c: x.c, h: oh, w: ow, d }
        }
        fn avg_pool2d(&mut self, _: &T, _: usize, _: usize) -> T {
            unimplemented!("no architecture uses avg_pool2d")
        }
        fn global_avg_pool(&mut self, x: &T) -> T {
            let hw = x.h * x.w;
            T { c: x.c, h: 1, w: 1, d: x.d.chunks(hw).map(|c| c.iter().sum::<f64>() / hw as f64).collect() }
        }
        fn flatten(&mut self, x: &T) -> T {
            x.clone()
        }
        fn linear(&mut self, name: &str, x: &T, i: usize, o: usize) -> T {
            let std = (2.0 / i as f64).sqrt();
            let w = self.param(&format!("{name}.weight"), &[o, i], |r| r.normal() * std);
            let b = self.param(&format!("{name}.bias"), &[o], |r| r.range(-0.1, 0.1));
            let d = (0..o).map(|r| b[r] + (0..i).map(|c| w[r * i + c] * x.d[c]).sum::<f64>());
            T { c: o, h: 1, w: 1, d: d.collect() }
        }
    }
}

/// Exporter vs PyTorch semantics: trained-style weights (a name -> tensor map) through
/// `Weights::Given`, run by rsim-edge, against the f64 reference evaluator.
fn reference_check(arch: Arch, size: usize) {
    use rsim_model::graph_builder::Weights;
    let bands = 3;
    let mut r = reference::Ref::new(5);
    let x = input(bands * size * size, 77); // NCHW for the reference
    let t = reference::T { c: bands, h: size, w: size, d: x.iter().map(|&v| v as f64).collect() };
    let (_, logits) = rsim_model::arch::build(&mut r, arch, bands, Some(10), &t);
    let want: Vec<f32> = logits.unwrap().d.iter().map(|&v| v as f32).collect();

    let mut opts = ExportOptions::random(arch, bands, size, Some(10), 0);
    opts.weights = Weights::Given(r.map.clone());
    let e = export(&opts).unwrap_or_else(|e| panic!("{}: {e}", arch.name()));
    assert!(e.unused_weights.is_empty(), "unused: {:?}", e.unused_weights);
    let nhwc: Vec<f32> = (0..size * size * bands).map(|i| x[(i % bands) * size * size + i / bands]).collect();
    let mut arena = vec![0u8; rsim_edge::required_arena(&e.bytes).unwrap() + 16];
    let mut engine = Engine::new(&e.bytes, &mut arena).unwrap();
    engine.run_f32(&nhwc).unwrap();
    let mut got = vec![0f32; engine.output_len()];
    engine.output_f32(&mut got).unwrap();
    let rel = max_rel_err(&got, &want);
    println!("{:<20} {size}: rsim-edge vs f64 PyTorch-semantics reference, max rel err {rel:.3e}", arch.name());
    assert!(rel <= TOLERANCE, "{}: {rel:.3e}", arch.name());
}

#[test]
fn exporter_matches_reference_resnet8() {
    reference_check(Arch::ResNet8, 32);
}
#[test]
fn exporter_matches_reference_resnet18() {
    reference_check(Arch::ResNet18, 64);
}
#[test]
fn exporter_matches_reference_mobilenet_v2_035() {
    reference_check(Arch::MobileNetV2 { width: 0.35 }, 64);
}
#[test]
fn exporter_matches_reference_mobilenet_v3_small() {
    reference_check(Arch::MobileNetV3Small, 64);
}

/// A missing or mis-shaped weight is an error naming the tensor.
#[test]
fn bad_weight_maps_name_the_tensor() {
    use rsim_model::graph_builder::{BuildError, Weights};
    let mut r = reference::Ref::new(1);
    let t = reference::T { c: 3, h: 32, w: 32, d: vec![0.0; 3 * 32 * 32] };
    rsim_model::arch::build(&mut r, Arch::ResNet8, 3, Some(10), &t);
    let mut opts = ExportOptions::random(Arch::ResNet8, 3, 32, Some(10), 0);

    let mut missing = r.map.clone();
    missing.remove("layer2.0.bn1.running_var");
    opts.weights = Weights::Given(missing);
    let err = export(&opts).unwrap_err();
    assert!(matches!(&err, BuildError::MissingWeight { name, .. } if name == "layer2.0.bn1.running_var"), "{err}");
    assert!(err.to_string().contains("layer2.0.bn1.running_var"));

    let mut wrong = r.map.clone();
    wrong.insert("fc.weight".into(), (vec![10, 32], vec![0.0; 320]));
    opts.weights = Weights::Given(wrong);
    let err = export(&opts).unwrap_err();
    assert_eq!(err, BuildError::WeightShape { name: "fc.weight".into(), expected: vec![10, 64], found: vec![10, 32] });
    assert!(err.to_string().contains("fc.weight"), "{err}");
}
