//! Properties of the augmentations and of the exact assignment behind the OT colour transfer.
use rsim_train::augment::{blur, color, geometric, lap, ot, Jitter, ViewAug};
use rsim_train::data::rng::Rng;
use rsim_train::data::Img;

fn random_img(h: usize, w: usize, c: usize, seed: u64) -> Img {
    let mut r = Rng::new(seed);
    let mut img = Img::new(h, w, c);
    for v in img.data.iter_mut() {
        *v = r.uniform() as f32;
    }
    img
}

fn max_diff(a: &Img, b: &Img) -> f32 {
    assert_eq!((a.h, a.w, a.c), (b.h, b.w, b.c));
    a.data.iter().zip(&b.data).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn flips_are_involutions_and_move_pixels() {
    let img = random_img(5, 7, 3, 1);
    let mut a = img.clone();
    geometric::hflip(&mut a);
    assert_eq!(a.at(2, 0, 1), img.at(2, 6, 1));
    geometric::hflip(&mut a);
    assert_eq!(a, img);
    let mut b = img.clone();
    geometric::vflip(&mut b);
    assert_eq!(b.at(0, 3, 2), img.at(4, 3, 2));
    geometric::vflip(&mut b);
    assert_eq!(b, img);
}

#[test]
fn rot90_composes_like_torch() {
    let img = random_img(4, 6, 2, 2);
    let r1 = geometric::rot90(&img, 1);
    assert_eq!((r1.h, r1.w), (6, 4));
    // torch.rot90(x, 1): out[i][j] = x[j][W-1-i] (counter-clockwise).
    assert_eq!(r1.at(0, 0, 0), img.at(0, 5, 0));
    assert_eq!(r1.at(5, 3, 1), img.at(3, 0, 1));
    let mut r = img.clone();
    for _ in 0..4 {
        r = geometric::rot90(&r, 1);
    }
    assert_eq!(r, img);
    // Two quarter turns equal both flips.
    let mut both = img.clone();
    geometric::hflip(&mut both);
    geometric::vflip(&mut both);
    assert_eq!(geometric::rot90(&img, 2), both);
    assert_eq!(geometric::rot90(&geometric::rot90(&img, 1), 1), geometric::rot90(&img, 2));
}

#[test]
fn rrc_window_respects_scale_ratio_and_bounds() {
    let mut rng = Rng::new(3);
    for _ in 0..2000 {
        let w = geometric::rrc_window(64, 48, (0.2, 1.0), (0.75, 4.0 / 3.0), &mut rng);
        assert!(w.top + w.height <= 64 && w.left + w.width <= 48);
        let area = (w.height * w.width) as f64 / (64.0 * 48.0);
        assert!(area > 0.17 && area < 1.05, "area {area}");
    }
    // Impossible ratio: falls back to a centred crop with the ratio clamped.
    let w = geometric::rrc_window(10, 100, (0.9, 1.0), (1.0, 1.0), &mut rng);
    assert!(w.width <= 100 && w.height <= 10);
}

#[test]
fn crop_resize_identity_and_constant() {
    let img = random_img(8, 8, 3, 4);
    assert!(max_diff(&geometric::resize(&img, 8, 8), &img) == 0.0);
    let full = geometric::Window { top: 0, left: 0, height: 8, width: 8 };
    assert!(max_diff(&geometric::crop_resize(&img, full, 8, 8), &img) < 1e-6);
    let flat = Img::from_fn(5, 9, 3, |_, _, b| 0.1 * (b + 1) as f32);
    let up = geometric::resize(&flat, 17, 3);
    assert!(up.data.chunks(3).all(|p| (p[0] - 0.1).abs() < 1e-6 && (p[2] - 0.3).abs() < 1e-6));
    // A 2x downsample of a horizontal ramp averages neighbours.
    let ramp = Img::from_fn(2, 4, 1, |_, x, _| x as f32);
    let half = geometric::resize(&ramp, 2, 2);
    assert!((half.at(0, 0, 0) - 0.5).abs() < 1e-6 && (half.at(0, 1, 0) - 2.5).abs() < 1e-6);
}

#[test]
fn jitter_zero_strength_is_identity() {
    let img = random_img(6, 6, 3, 5);
    let j = Jitter { brightness: 0.0, contrast: 0.0, saturation: 0.0, hue: 0.0 };
    let mut a = img.clone();
    j.apply(&mut a, &mut Rng::new(9));
    assert_eq!(a, img);
    // Factor 1 adjustments are identity up to rounding too.
    let mut b = img.clone();
    color::adjust_brightness(&mut b, 1.0);
    color::adjust_contrast(&mut b, 1.0);
    color::adjust_saturation(&mut b, 1.0);
    color::adjust_hue(&mut b, 0.0);
    assert!(max_diff(&b, &img) < 1e-5);
}

#[test]
fn colour_adjustments_have_their_defining_effect() {
    let img = random_img(6, 6, 3, 6);
    let mut g = img.clone();
    color::adjust_saturation(&mut g, 0.0);
    assert!(g.data.chunks(3).all(|p| (p[0] - p[1]).abs() < 1e-6 && (p[1] - p[2]).abs() < 1e-6));
    let mut c = img.clone();
    color::adjust_contrast(&mut c, 0.0);
    let first = c.data[0];
    assert!(c.data.iter().all(|v| (v - first).abs() < 1e-6), "zero contrast is a flat image");
    let mut h = img.clone();
    color::adjust_hue(&mut h, 0.5);
    color::adjust_hue(&mut h, 0.5);
    assert!(max_diff(&h, &img) < 1e-4, "a full hue turn returns the colours");
    let mut br = img.clone();
    color::adjust_brightness(&mut br, 0.5);
    assert!(br.data.iter().zip(&img.data).all(|(a, b)| (a - b * 0.5).abs() < 1e-7));
    // HSV round trip.
    for p in img.data.chunks(3) {
        let (hh, s, v) = color::rgb_to_hsv(p[0], p[1], p[2]);
        let (r, gg, b) = color::hsv_to_rgb(hh, s, v);
        assert!((r - p[0]).abs() < 1e-5 && (gg - p[1]).abs() < 1e-5 && (b - p[2]).abs() < 1e-5);
    }
}

#[test]
fn grayscale_and_solarize() {
    let img = Img::from_fn(1, 1, 3, |_, _, b| [1.0, 0.0, 0.0][b]);
    let mut g = img.clone();
    color::grayscale(&mut g);
    assert!(g.data.iter().all(|v| (v - 0.299).abs() < 1e-6));
    let ramp = Img::from_fn(1, 4, 1, |_, x, _| [0.1, 0.49, 0.5, 0.9][x]);
    let mut s = ramp.clone();
    color::solarize(&mut s, 0.5);
    assert_eq!(s.data, vec![0.1, 0.49, 0.5, 1.0 - 0.9]);
    // Everything is now below 0.5 except the 0.5 that mapped to itself, so it stays put.
    let before = s.clone();
    color::solarize(&mut s, 0.51);
    assert_eq!(s, before);
}

#[test]
fn blur_keeps_constants_and_mass() {
    let flat = Img::from_fn(9, 9, 2, |_, _, b| 0.25 + b as f32 * 0.5);
    assert!(max_diff(&blur::gaussian_blur(&flat, 1.3), &flat) < 1e-6);
    let k = blur::gaussian_kernel(1.0, 3);
    assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    assert!(k[3] > k[2] && k[2] > k[1] && (k[2] - k[4]).abs() < 1e-7);
    // A single bright pixel spreads out and its peak drops.
    let dot = Img::from_fn(11, 11, 1, |y, x, _| if y == 5 && x == 5 { 1.0 } else { 0.0 });
    let b = blur::gaussian_blur(&dot, 1.0);
    assert!(b.at(5, 5, 0) < 0.5 && b.at(5, 6, 0) > 0.0);
    assert!((b.data.iter().sum::<f32>() - 1.0).abs() < 1e-4, "no mass lost away from borders");
}

#[test]
fn view_output_shape_and_determinism() {
    let img = random_img(64, 64, 3, 7);
    let v = ViewAug::simclr(32);
    let a = v.apply(&img, &mut Rng::new(11));
    let b = v.apply(&img, &mut Rng::new(11));
    let c = v.apply(&img, &mut Rng::new(12));
    assert_eq!((a.h, a.w, a.c), (32, 32, 3));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

fn brute_force(cost: &[f64], n: usize) -> f64 {
    fn go(i: usize, n: usize, used: &mut Vec<bool>, acc: f64, cost: &[f64], best: &mut f64) {
        if i == n {
            *best = best.min(acc);
            return;
        }
        for j in 0..n {
            if !used[j] {
                used[j] = true;
                go(i + 1, n, used, acc + cost[i * n + j], cost, best);
                used[j] = false;
            }
        }
    }
    let mut best = f64::INFINITY;
    go(0, n, &mut vec![false; n], 0.0, cost, &mut best);
    best
}

/// Reference O(n^3) Hungarian algorithm (potentials, e-maxx formulation), independent of `lap`.
fn hungarian(cost: &[f64], n: usize) -> f64 {
    let inf = f64::INFINITY;
    let (mut u, mut v) = (vec![0.0; n + 1], vec![0.0; n + 1]);
    let (mut p, mut way) = (vec![0usize; n + 1], vec![0usize; n + 1]);
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![inf; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = inf;
            let mut j1 = 0;
            for j in 1..=n {
                if !used[j] {
                    let cur = cost[(i0 - 1) * n + j - 1] - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    (1..=n).map(|j| cost[(p[j] - 1) * n + j - 1]).sum()
}

fn total(cost: &[f64], n: usize, a: &[usize]) -> f64 {
    a.iter().enumerate().map(|(i, &j)| cost[i * n + j]).sum()
}

fn is_permutation(a: &[usize]) -> bool {
    let mut s = a.to_vec();
    s.sort_unstable();
    s.iter().enumerate().all(|(i, &v)| i == v)
}

#[test]
fn assignment_is_optimal_small() {
    let mut rng = Rng::new(21);
    for n in 1..=7 {
        for t in 0..30 {
            // Integer costs give many ties, the hard case for the scan logic.
            let cost: Vec<f64> =
                (0..n * n).map(|_| if t % 2 == 0 { rng.below(5) as f64 } else { rng.uniform() }).collect();
            let a = lap::assign(&cost, n);
            assert!(is_permutation(&a));
            assert!((total(&cost, n, &a) - brute_force(&cost, n)).abs() < 1e-9, "n={n} t={t}");
        }
    }
}

#[test]
fn assignment_matches_hungarian_on_colour_costs() {
    let mut rng = Rng::new(22);
    for &n in &[40usize, 150] {
        let pts = |rng: &mut Rng| (0..n).map(|_| [rng.uniform(), rng.uniform(), rng.uniform()]).collect::<Vec<_>>();
        let (xs, xt) = (pts(&mut rng), pts(&mut rng));
        let cost: Vec<f64> = (0..n * n).map(|k| (0..3).map(|d| (xs[k / n][d] - xt[k % n][d]).powi(2)).sum()).collect();
        let a = lap::assign(&cost, n);
        assert!(is_permutation(&a));
        assert!((total(&cost, n, &a) - hungarian(&cost, n)).abs() < 1e-9);
    }
}

#[test]
fn ot_transfer_gives_sampled_pixels_the_target_colours() {
    let content = random_img(32, 32, 3, 30);
    // A style image with a clearly different palette (reddish).
    let style = Img::from_fn(40, 24, 3, |y, x, b| {
        if b == 0 {
            0.6 + 0.4 * ((y * 24 + x) % 97) as f32 / 97.0
        } else {
            0.2 * ((y + x) % 5) as f32 / 5.0
        }
    });
    let mut rng = Rng::new(31);
    let src = ot::sample_positions(32 * 32, 200, &mut rng);
    let tgt = ot::sample_positions(40 * 24, 200, &mut rng);
    let (out, sigma) = ot::transfer_with_samples(&content, &src, &style, &tgt);
    assert!(is_permutation(&sigma));
    let key = |p: &[f32]| p.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let mut got: Vec<_> = src.iter().map(|&p| key(&out.data[p * 3..p * 3 + 3])).collect();
    let mut want: Vec<_> = tgt.iter().map(|&p| key(&style.data[p * 3..p * 3 + 3])).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "sampled pixels carry exactly the style's sampled colours");
    // The whole image moves toward the style's palette.
    let mean_r = |img: &Img| img.data.chunks(3).map(|p| p[0]).sum::<f32>() / (img.h * img.w) as f32;
    assert!(mean_r(&out) > mean_r(&content) + 0.1);
    assert!(out.data.iter().all(|v| (0.0..=1.0).contains(v)));
}

#[test]
fn ot_transfer_of_an_image_onto_itself_is_identity() {
    let img = random_img(16, 16, 3, 40);
    let pos: Vec<usize> = (0..256).collect();
    let (out, _) = ot::transfer_with_samples(&img, &pos, &img, &pos);
    assert!(max_diff(&out, &img) < 1e-6);
}
