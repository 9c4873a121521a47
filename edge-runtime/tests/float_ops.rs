//! Elementwise, pooling, normalization and data-movement kernels against plain f64 loops.

mod common;
use common::*;
use rsim_edge::kernels::float::{act, binary, concat, matmul, norm, pool, transpose, Operand};
use rsim_model::{Activation, Padding, PoolParams};

/// Row-major index of a 4-D coordinate.
fn idx(d: [usize; 4], i: [usize; 4]) -> usize {
    ((i[0] * d[1] + i[1]) * d[2] + i[2]) * d[3] + i[3]
}

fn each4(d: [usize; 4], mut f: impl FnMut([usize; 4])) {
    for a in 0..d[0] {
        for b in 0..d[1] {
            for c in 0..d[2] {
                for e in 0..d[3] {
                    f([a, b, c, e]);
                }
            }
        }
    }
}

#[test]
fn add_and_mul_broadcast_like_numpy() {
    // (a dims, b dims, out dims), all written right-aligned to 4-D for the reference.
    let cases: [(&[u32], &[u32], &[u32]); 5] = [
        (&[2, 3, 4, 5], &[2, 3, 4, 5], &[2, 3, 4, 5]),
        (&[1, 4, 4, 8], &[1, 1, 1, 8], &[1, 4, 4, 8]), // squeeze-excite gate
        (&[2, 3, 5], &[5], &[2, 3, 5]),                // bias over the last dim, lower rank
        (&[2, 1, 4, 1], &[1, 3, 1, 5], &[2, 3, 4, 5]), // both sides broadcast
        (&[7, 1], &[1, 3, 7, 1], &[1, 3, 7, 1]),       // trailing dim of 1 on both
    ];
    for (ci, (da, db, dout)) in cases.iter().enumerate() {
        let pad = |d: &[u32]| {
            let mut o = [1usize; 4];
            for (k, &v) in d.iter().rev().enumerate() {
                o[3 - k] = v as usize;
            }
            o
        };
        let (a4, b4, o4) = (pad(da), pad(db), pad(dout));
        let mut rng = Rng::new(ci as u64 + 40);
        let a = rng.vec(a4.iter().product());
        let b = rng.vec(b4.iter().product());
        let g = binary::broadcast_geom(&shape(da), &shape(db), &shape(dout)).unwrap();
        for kind in [binary::BinaryKind::Add, binary::BinaryKind::Mul] {
            let mut want = vec![0f64; o4.iter().product()];
            each4(o4, |i| {
                let ai = idx(a4, [0, 1, 2, 3].map(|k| if a4[k] == 1 { 0 } else { i[k] }));
                let bi = idx(b4, [0, 1, 2, 3].map(|k| if b4[k] == 1 { 0 } else { i[k] }));
                let (x, y) = (a[ai] as f64, b[bi] as f64);
                want[idx(o4, i)] = if kind == binary::BinaryKind::Add { x + y } else { x * y };
            });
            let mut out = vec![0f32; want.len()];
            binary::binary(kind, &g, &a, &b, Activation::None, &mut out).unwrap();
            assert_close(&out, &want, &format!("{kind:?} case {ci}"));
        }
    }
    assert!(binary::broadcast_geom(&shape(&[2, 3]), &shape(&[4]), &shape(&[2, 3])).is_err());
    assert!(binary::broadcast_geom(&shape(&[2, 3]), &shape(&[3]), &shape(&[2, 4])).is_err());
}

fn pool_ref(
    x: &[f32],
    d: [usize; 4],
    k: [usize; 2],
    s: [usize; 2],
    pad: [usize; 4],
    max: bool,
) -> (Vec<f64>, [usize; 2]) {
    let oh = (d[1] + pad[0] + pad[1] - k[0]) / s[0] + 1;
    let ow = (d[2] + pad[2] + pad[3] - k[1]) / s[1] + 1;
    let mut out = vec![];
    for n in 0..d[0] {
        for oy in 0..oh {
            for ox in 0..ow {
                for c in 0..d[3] {
                    let (mut acc, mut cnt) = (if max { f64::MIN } else { 0.0 }, 0);
                    for ky in 0..k[0] {
                        for kx in 0..k[1] {
                            let iy = (oy * s[0] + ky) as i64 - pad[0] as i64;
                            let ix = (ox * s[1] + kx) as i64 - pad[2] as i64;
                            if iy >= 0 && ix >= 0 && (iy as usize) < d[1] && (ix as usize) < d[2] {
                                let v = x[idx(d, [n, iy as usize, ix as usize, c])] as f64;
                                acc = if max { acc.max(v) } else { acc + v };
                                cnt += 1;
                            }
                        }
                    }
                    out.push(if max { acc } else { acc / cnt as f64 });
                }
            }
        }
    }
    (out, [oh, ow])
}

#[test]
fn pools_match_f64_and_average_counts_in_bounds_taps() {
    let cases = [
        ([1, 6, 6, 3], [2, 2], [2, 2], [0, 0, 0, 0]),
        ([2, 7, 5, 4], [3, 3], [2, 2], [1, 1, 1, 1]),
        ([1, 5, 8, 2], [3, 2], [1, 2], [1, 2, 0, 1]),
        ([1, 112, 112, 3], [3, 3], [2, 2], [0, 1, 0, 1]), // ResNet stem pool, TF SAME
    ];
    for (ci, (d, k, s, pad)) in cases.into_iter().enumerate() {
        let x = Rng::new(ci as u64 + 60).vec(d.iter().product());
        let params = PoolParams {
            kernel: [k[0] as u16, k[1] as u16],
            stride: [s[0] as u16, s[1] as u16],
            padding: Padding { top: pad[0] as u16, bottom: pad[1] as u16, left: pad[2] as u16, right: pad[3] as u16 },
        };
        for max in [false, true] {
            let (want, [oh, ow]) = pool_ref(&x, d, k, s, pad, max);
            let dims = |v: [usize; 4]| v.map(|e| e as u32);
            let g = pool::pool_geom(&shape(&dims(d)), &shape(&dims([d[0], oh, ow, d[3]])), &params).unwrap();
            let mut out = vec![0f32; want.len()];
            if max {
                pool::max_pool(&g, &x, &mut out).unwrap();
            } else {
                pool::avg_pool(&g, &x, &mut out).unwrap();
            }
            assert_close(&out, &want, &format!("pool case {ci} max={max}"));
        }
    }
    // The corner of a padded 3x3 average over all-ones is 1, not 4/9.
    let params =
        PoolParams { kernel: [3, 3], stride: [1, 1], padding: Padding { top: 1, bottom: 1, left: 1, right: 1 } };
    let g = pool::pool_geom(&shape(&[1, 3, 3, 1]), &shape(&[1, 3, 3, 1]), &params).unwrap();
    let mut out = [0f32; 9];
    pool::avg_pool(&g, &[1.0; 9], &mut out).unwrap();
    assert_eq!(out, [1.0; 9]);
}

#[test]
fn global_avg_pool_matches_f64() {
    let (n, h, w, c) = (2, 5, 3, 7);
    let x = Rng::new(3).vec(n * h * w * c);
    let want: Vec<f64> = (0..n * c)
        .map(|i| {
            let (b, ch) = (i / c, i % c);
            (0..h * w).map(|p| x[(b * h * w + p) * c + ch] as f64).sum::<f64>() / (h * w) as f64
        })
        .collect();
    for out_dims in [&[2u32, 1, 1, 7][..], &[2, 7]] {
        let g = pool::global_geom(&shape(&[2, 5, 3, 7]), &shape(out_dims)).unwrap();
        let mut out = vec![0f32; n * c];
        pool::global_avg_pool(g, &x, &mut out).unwrap();
        assert_close(&out, &want, "global average pool");
    }
}

#[test]
fn softmax_is_stable_and_matches_f64() {
    let x = [1000.0f32, 1001.0, 999.0, -5.0, 0.0, 5.0];
    for beta in [1.0f32, 0.5] {
        let mut want = vec![];
        for row in x.chunks(3) {
            let m = row.iter().fold(f64::MIN, |a, &b| a.max(b as f64));
            let e: Vec<f64> = row.iter().map(|&v| ((v as f64 - m) * beta as f64).exp()).collect();
            let s: f64 = e.iter().sum();
            want.extend(e.iter().map(|v| v / s));
        }
        let (_, row) = norm::rows_geom(&shape(&[2, 3]), &shape(&[2, 3])).unwrap();
        let mut out = [0f32; 6];
        norm::softmax(row, beta, &x, &mut out).unwrap();
        assert_close(&out, &want, "softmax");
        assert!(out.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn layer_norm_matches_f64() {
    let (rows, d) = (3, 10);
    let mut rng = Rng::new(9);
    let x: Vec<f32> = rng.vec(rows * d).iter().map(|v| v * 4.0 + 2.0).collect();
    let (gm, bt) = (rng.vec(d), rng.vec(d));
    let eps = 1e-5f32;
    let mut want = vec![];
    for r in x.chunks(d) {
        let mean = r.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = r.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        for (i, &v) in r.iter().enumerate() {
            want.push((v as f64 - mean) / (var + eps as f64).sqrt() * gm[i] as f64 + bt[i] as f64);
        }
    }
    let mut out = vec![0f32; rows * d];
    norm::layer_norm(d, eps, &x, &gm, &bt, &mut out).unwrap();
    assert_close(&out, &want, "layer norm");
    assert!(norm::layer_norm(d, eps, &x, &gm[..9], &bt, &mut out).is_err());
}

#[test]
fn matmul_batched_with_broadcast_matches_f64() {
    // (a dims, b dims, out dims)
    let cases: [(&[u32], &[u32], &[u32]); 4] = [
        (&[3, 4], &[4, 5], &[3, 5]),
        (&[2, 3, 4], &[2, 4, 6], &[2, 3, 6]),
        (&[2, 3, 5, 4], &[4, 7], &[2, 3, 5, 7]),       // shared weights
        (&[1, 2, 3, 8], &[2, 1, 8, 3], &[2, 2, 3, 3]), // both batch dims broadcast
    ];
    for (ci, (da, db, dout)) in cases.iter().enumerate() {
        let pad = |d: &[u32]| {
            let mut o = [1usize; 4];
            for (k, &v) in d.iter().rev().enumerate() {
                o[3 - k] = v as usize;
            }
            o
        };
        let (a4, b4, o4) = (pad(da), pad(db), pad(dout));
        let mut rng = Rng::new(ci as u64 + 80);
        let a = rng.vec(a4.iter().product());
        let b = rng.vec(b4.iter().product());
        let mut want = vec![0f64; o4.iter().product()];
        each4(o4, |i| {
            let bat = |d: [usize; 4], k: usize| if d[k] == 1 { 0 } else { i[k] };
            let mut acc = 0f64;
            for k in 0..a4[3] {
                acc += a[idx(a4, [bat(a4, 0), bat(a4, 1), i[2], k])] as f64
                    * b[idx(b4, [bat(b4, 0), bat(b4, 1), k, i[3]])] as f64;
            }
            want[idx(o4, i)] = acc;
        });
        let g = matmul::matmul_geom(&shape(da), &shape(db), &shape(dout)).unwrap();
        let mut out = vec![0f32; want.len()];
        matmul::matmul(&g, &a, &b, &mut out).unwrap();
        assert_close(&out, &want, &format!("matmul case {ci}"));
    }
    assert!(matmul::matmul_geom(&shape(&[3, 4]), &shape(&[5, 6]), &shape(&[3, 6])).is_err());
}

#[test]
fn transpose_permutes_axes() {
    let dims = [2usize, 3, 4, 5];
    let x: Vec<f32> = (0..120).map(|v| v as f32).collect();
    for perm in [[0u8, 3, 1, 2], [3, 2, 1, 0], [1, 0, 2, 3], [0, 1, 2, 3]] {
        let od = perm.map(|p| dims[p as usize]);
        let mut want = vec![0f64; 120];
        each4(od, |o| {
            let mut i = [0usize; 4];
            for k in 0..4 {
                i[perm[k] as usize] = o[k];
            }
            want[idx(od, o)] = x[idx(dims, i)] as f64;
        });
        let g = transpose::transpose_geom(&shape(&[2, 3, 4, 5]), &shape(&od.map(|d| d as u32)), &perm).unwrap();
        let mut out = vec![0f32; 120];
        transpose::transpose(&g, &x, &mut out).unwrap();
        assert_close(&out, &want, &format!("transpose {perm:?}"));
    }
    // Rank 3 [T, H, D] -> [H, T, D], as in attention heads.
    let x: Vec<f32> = (0..24).map(|v| v as f32).collect();
    let g = transpose::transpose_geom(&shape(&[2, 3, 4]), &shape(&[3, 2, 4]), &[1, 0, 2, 0]).unwrap();
    let mut out = vec![0f32; 24];
    transpose::transpose(&g, &x, &mut out).unwrap();
    assert_eq!(&out[..8], &[0., 1., 2., 3., 12., 13., 14., 15.]);
    assert!(transpose::transpose_geom(&shape(&[2, 3, 4]), &shape(&[2, 3, 4]), &[1, 0, 2, 0]).is_err());
}

#[test]
fn concat_on_every_axis() {
    let base = [2usize, 3, 2, 4];
    for axis in 0..4 {
        let sizes = [1usize, 2, 3];
        let mut shapes = vec![];
        let mut data = vec![];
        let mut start = 0.0f32;
        for &s in &sizes {
            let mut d = base;
            d[axis] = s;
            let n: usize = d.iter().product();
            data.push((0..n).map(|i| start + i as f32).collect::<Vec<f32>>());
            start += 1000.0;
            shapes.push(d);
        }
        let mut od = base;
        od[axis] = sizes.iter().sum();
        let mut want = vec![0f64; od.iter().product()];
        each4(od, |o| {
            let (mut k, mut at) = (0, o[axis]);
            while at >= shapes[k][axis] {
                at -= shapes[k][axis];
                k += 1;
            }
            let mut i = o;
            i[axis] = at;
            want[idx(od, o)] = data[k][idx(shapes[k], i)] as f64;
        });
        let sh = |d: [usize; 4]| shape(&d.map(|v| v as u32));
        let g = concat::concat_geom(
            &[Some(sh(shapes[0])), Some(sh(shapes[1])), Some(sh(shapes[2])), None],
            &sh(od),
            axis as u8,
        )
        .unwrap();
        let ops = [Operand::F32(&data[0]), Operand::F32(&data[1]), Operand::F32(&data[2])];
        let mut out = vec![0f32; want.len()];
        concat::concat(&g, &ops, &[0, 1, 2], &mut out).unwrap();
        assert_close(&out, &want, &format!("concat axis {axis}"));
    }
    let s = shape(&[1, 2]);
    assert!(concat::concat_geom(&[Some(s), Some(s), None, None], &shape(&[1, 3]), 1).is_err());
}

#[test]
fn activations_match_their_formulas() {
    let xs = [-7.0f32, -3.0, -1.5, -0.2, 0.0, 0.3, 1.0, 2.9, 3.0, 6.5, 12.0];
    let f = |a: Activation, x: f64| -> f64 {
        match a {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::Relu6 => x.clamp(0.0, 6.0),
            Activation::HardSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
            Activation::HardSigmoid => (x + 3.0).clamp(0.0, 6.0) / 6.0,
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Gelu => 0.5 * x * (1.0 + libm::erf(x / 2f64.sqrt())),
        }
    };
    use Activation::*;
    for a in [None, Relu, Relu6, HardSwish, HardSigmoid, Sigmoid, Gelu] {
        let want: Vec<f64> = xs.iter().map(|&x| f(a, x as f64)).collect();
        let mut out = [0f32; 11];
        act::activation(a, &xs[..], &mut out).unwrap();
        assert_close(&out, &want, &format!("{a:?}"));
    }
}
