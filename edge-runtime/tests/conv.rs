//! Conv2d and FullyConnected kernels against plain f64 loops written here from the layout rules
//! (NHWC activations, OHWI weights, depthwise 1HW(C*M): output channel o reads input channel o / M).

mod common;
use common::*;
use rsim_edge::kernels::float::{conv, fc, Operand};
use rsim_model::{Activation, Conv2dParams, Padding};

#[derive(Clone, Copy, Debug)]
struct Case {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    o: usize,
    k: [usize; 2],
    stride: [usize; 2],
    dil: [usize; 2],
    pad: [usize; 4], // top, bottom, left, right
    groups: usize,
}

fn out_dim(i: usize, pa: usize, pb: usize, k: usize, s: usize, d: usize) -> usize {
    (i + pa + pb - d * (k - 1) - 1) / s + 1
}

/// Weight shape for the case: depthwise when groups == c > 1.
fn wshape(t: &Case) -> [usize; 4] {
    if t.groups == t.c && t.c > 1 {
        [1, t.k[0], t.k[1], t.o]
    } else {
        [t.o, t.k[0], t.k[1], t.c / t.groups]
    }
}

fn conv_ref(t: &Case, x: &[f32], wt: &[f32], bias: &[f32]) -> Vec<f64> {
    let oh = out_dim(t.h, t.pad[0], t.pad[1], t.k[0], t.stride[0], t.dil[0]);
    let ow = out_dim(t.w, t.pad[2], t.pad[3], t.k[1], t.stride[1], t.dil[1]);
    let dw = t.groups == t.c && t.c > 1;
    let mut out = vec![0f64; t.n * oh * ow * t.o];
    for b in 0..t.n {
        for oy in 0..oh {
            for ox in 0..ow {
                for oc in 0..t.o {
                    let mut acc = bias[oc] as f64;
                    for ky in 0..t.k[0] {
                        for kx in 0..t.k[1] {
                            let iy = (oy * t.stride[0] + ky * t.dil[0]) as i64 - t.pad[0] as i64;
                            let ix = (ox * t.stride[1] + kx * t.dil[1]) as i64 - t.pad[2] as i64;
                            if iy < 0 || ix < 0 || iy >= t.h as i64 || ix >= t.w as i64 {
                                continue;
                            }
                            let px = ((b * t.h + iy as usize) * t.w + ix as usize) * t.c;
                            if dw {
                                let ic = oc / (t.o / t.c);
                                acc += x[px + ic] as f64 * wt[(ky * t.k[1] + kx) * t.o + oc] as f64;
                            } else {
                                let cpg = t.c / t.groups;
                                let g = oc / (t.o / t.groups);
                                for ci in 0..cpg {
                                    let wi = ((oc * t.k[0] + ky) * t.k[1] + kx) * cpg + ci;
                                    acc += x[px + g * cpg + ci] as f64 * wt[wi] as f64;
                                }
                            }
                        }
                    }
                    out[((b * oh + oy) * ow + ox) * t.o + oc] = acc;
                }
            }
        }
    }
    out
}

fn run_case(t: &Case, seed: u64, f16_weights: bool) {
    let mut rng = Rng::new(seed);
    let ws = wshape(t);
    let x = rng.vec(t.n * t.h * t.w * t.c);
    let mut wt = rng.vec(ws.iter().product());
    let bias = rng.vec(t.o);
    let bits = to_f16_bits(&wt);
    if f16_weights {
        wt = from_f16_bits(&bits); // the reference uses the values the kernel will see
    }
    let oh = out_dim(t.h, t.pad[0], t.pad[1], t.k[0], t.stride[0], t.dil[0]);
    let ow = out_dim(t.w, t.pad[2], t.pad[3], t.k[1], t.stride[1], t.dil[1]);
    let p = Conv2dParams {
        stride: [t.stride[0] as u16, t.stride[1] as u16],
        dilation: [t.dil[0] as u16, t.dil[1] as u16],
        padding: Padding {
            top: t.pad[0] as u16,
            bottom: t.pad[1] as u16,
            left: t.pad[2] as u16,
            right: t.pad[3] as u16,
        },
        groups: t.groups as u32,
        activation: Activation::None,
    };
    let u = |v: &[usize]| v.iter().map(|&d| d as u32).collect::<Vec<_>>();
    let g = conv::conv_geom(&shape(&u(&[t.n, t.h, t.w, t.c])), &shape(&u(&ws)), &shape(&u(&[t.n, oh, ow, t.o])), &p)
        .unwrap_or_else(|e| panic!("{t:?}: {e}"));
    let mut out = vec![0f32; t.n * oh * ow * t.o];
    let b = Some(Operand::F32(&bias));
    if f16_weights {
        conv::conv2d(&g, &x, &bits, b, Activation::None, &mut out).unwrap();
    } else {
        conv::conv2d(&g, &x, &wt, b, Activation::None, &mut out).unwrap();
    }
    assert_close(&out, &conv_ref(t, &x, &wt, &bias), &format!("{t:?} f16={f16_weights}"));
}

#[allow(clippy::too_many_arguments)]
fn case(
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    o: usize,
    k: [usize; 2],
    stride: [usize; 2],
    dil: [usize; 2],
    pad: [usize; 4],
    groups: usize,
) -> Case {
    Case { n, h, w, c, o, k, stride, dil, pad, groups }
}

#[test]
fn dense_grouped_and_depthwise_match_f64() {
    let cases = [
        case(1, 5, 5, 3, 4, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], 1),
        case(2, 7, 6, 5, 3, [3, 2], [2, 1], [1, 1], [0, 1, 1, 0], 1), // odd sizes, uneven padding
        case(1, 9, 9, 4, 6, [3, 3], [2, 2], [2, 2], [2, 2, 2, 2], 1), // dilation + stride
        case(1, 8, 7, 6, 4, [3, 3], [1, 2], [1, 1], [1, 2, 0, 1], 2), // grouped
        case(1, 6, 6, 8, 8, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], 8), // depthwise, multiplier 1
        case(1, 7, 5, 3, 6, [3, 3], [2, 2], [1, 1], [0, 1, 0, 1], 3), // depthwise, multiplier 2, TF SAME
        case(1, 9, 9, 5, 5, [3, 3], [1, 1], [2, 3], [2, 2, 3, 3], 5), // depthwise with dilation
        case(1, 4, 4, 16, 32, [1, 1], [1, 1], [1, 1], [0, 0, 0, 0], 1), // pointwise, 4-wide dot path
        case(1, 3, 3, 1, 2, [3, 3], [1, 1], [1, 1], [0, 0, 0, 0], 1), // one output pixel, one channel
    ];
    for (i, t) in cases.iter().enumerate() {
        run_case(t, 100 + i as u64, false);
        run_case(t, 200 + i as u64, true);
    }
}

#[test]
fn fused_activation_is_applied() {
    let p = Conv2dParams {
        stride: [1, 1],
        dilation: [1, 1],
        padding: Padding { top: 0, bottom: 0, left: 0, right: 0 },
        groups: 1,
        activation: Activation::Relu6,
    };
    let g = conv::conv_geom(&shape(&[1, 1, 1, 2]), &shape(&[3, 1, 1, 2]), &shape(&[1, 1, 1, 3]), &p).unwrap();
    let w = [1.0f32, 1.0, -1.0, 0.0, 10.0, 0.0];
    let mut out = [0f32; 3];
    conv::conv2d(&g, &[2.0, 1.0], &w, None, Activation::Relu6, &mut out).unwrap();
    assert_eq!(out, [3.0, 0.0, 6.0]);
}

#[test]
fn bad_conv_shapes_are_rejected() {
    let p = Conv2dParams {
        stride: [1, 1],
        dilation: [1, 1],
        padding: Padding { top: 0, bottom: 0, left: 0, right: 0 },
        groups: 1,
        activation: Activation::None,
    };
    // Output size disagrees with the geometry.
    assert!(conv::conv_geom(&shape(&[1, 5, 5, 3]), &shape(&[4, 3, 3, 3]), &shape(&[1, 5, 5, 4]), &p).is_err());
    // Weights' input channels disagree.
    assert!(conv::conv_geom(&shape(&[1, 5, 5, 3]), &shape(&[4, 3, 3, 2]), &shape(&[1, 3, 3, 4]), &p).is_err());
    // Kernel larger than the input.
    assert!(conv::conv_geom(&shape(&[1, 2, 2, 3]), &shape(&[4, 3, 3, 3]), &shape(&[1, 1, 1, 4]), &p).is_err());
    // Groups that do not divide the channels.
    let g3 = Conv2dParams { groups: 2, ..p };
    assert!(conv::conv_geom(&shape(&[1, 5, 5, 3]), &shape(&[4, 3, 3, 1]), &shape(&[1, 3, 3, 4]), &g3).is_err());
    // Slices of the wrong length are an error, not a panic.
    let g = conv::conv_geom(&shape(&[1, 3, 3, 1]), &shape(&[1, 3, 3, 1]), &shape(&[1, 1, 1, 1]), &p).unwrap();
    let mut out = [0f32; 1];
    assert!(conv::conv2d(&g, &[0.0; 8], &[0.0f32; 9], None, Activation::None, &mut out).is_err());
    assert!(
        conv::conv2d(&g, &[0.0; 9], &[0.0f32; 9], Some(Operand::F32(&[0.0, 0.0])), Activation::None, &mut out).is_err()
    );
}

#[test]
fn fully_connected_matches_f64() {
    for (seed, (batch, inf, outf)) in [(1usize, 7usize, 5usize), (3, 16, 10), (2, 33, 1)].into_iter().enumerate() {
        let mut rng = Rng::new(seed as u64 + 7);
        let x = rng.vec(batch * inf);
        let w = rng.vec(outf * inf);
        let b = rng.vec(outf);
        let want: Vec<f64> = (0..batch * outf)
            .map(|i| {
                let (r, o) = (i / outf, i % outf);
                b[o] as f64 + (0..inf).map(|k| x[r * inf + k] as f64 * w[o * inf + k] as f64).sum::<f64>()
            })
            .collect();
        let g = fc::fc_geom(
            &shape(&[batch as u32, inf as u32]),
            &shape(&[outf as u32, inf as u32]),
            &shape(&[batch as u32, outf as u32]),
        )
        .unwrap();
        let mut out = vec![0f32; batch * outf];
        fc::fully_connected(&g, &x, &w, Some(Operand::F32(&b)), Activation::None, &mut out).unwrap();
        assert_close(&out, &want, "fc f32");
        // f16 weights and bias.
        let (wb, bb) = (to_f16_bits(&w), to_f16_bits(&b));
        let (w16, b16) = (from_f16_bits(&wb), from_f16_bits(&bb));
        let want16: Vec<f64> = (0..batch * outf)
            .map(|i| {
                let (r, o) = (i / outf, i % outf);
                b16[o] as f64 + (0..inf).map(|k| x[r * inf + k] as f64 * w16[o * inf + k] as f64).sum::<f64>()
            })
            .collect();
        fc::fully_connected(&g, &x, &wb, Some(Operand::F16(&bb)), Activation::None, &mut out).unwrap();
        assert_close(&out, &want16, "fc f16");
    }
    // A [N, H, W, C] input flattens into rows of `in`.
    assert!(fc::fc_geom(&shape(&[1, 2, 2, 3]), &shape(&[4, 12]), &shape(&[1, 4])).is_ok());
    assert!(fc::fc_geom(&shape(&[1, 12]), &shape(&[4, 12]), &shape(&[1, 5])).is_err());
}

#[test]
fn seeded_random_geometries_match_f64() {
    let mut rng = Rng::new(0xC0DE);
    let mut pick = |lo: usize, hi: usize| lo + (rng.next_u64() % (hi - lo + 1) as u64) as usize;
    let mut ran = 0;
    for seed in 0..300u64 {
        let c = pick(1, 6);
        let groups = match pick(0, 2) {
            0 => 1,
            1 => c,                                        // depthwise when c > 1
            _ => (2..c).find(|g| c % g == 0).unwrap_or(1), // grouped when c has a proper divisor
        };
        let o = if groups == c && c > 1 { c * pick(1, 3) } else { groups * pick(1, 3) };
        let k = [pick(1, 4), pick(1, 4)];
        let pad = [pick(0, k[0] - 1), pick(0, k[0] - 1), pick(0, k[1] - 1), pick(0, k[1] - 1)];
        let t = case(
            pick(1, 2),
            pick(1, 9),
            pick(1, 9),
            c,
            o,
            k,
            [pick(1, 3), pick(1, 3)],
            [pick(1, 3), pick(1, 3)],
            pad,
            groups,
        );
        let fits = |i: usize, a: usize, b: usize, k: usize, d: usize| i + a + b > d * (k - 1);
        if !fits(t.h, pad[0], pad[1], k[0], t.dil[0]) || !fits(t.w, pad[2], pad[3], k[1], t.dil[1]) {
            continue;
        }
        run_case(&t, 1000 + seed, seed % 3 == 0);
        ran += 1;
    }
    assert!(ran > 100, "only {ran} random cases fit");
}
