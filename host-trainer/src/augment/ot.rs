//! STICL's optimal-transport colour transfer (G-RSIM `T-SC-STICL/moco/loader.py::ST_transf`,
//! which calls POT's `EMDTransport`): sample pixels of the content and the style image, solve the
//! exact assignment under squared-Euclidean colour cost, move each content pixel by the offset
//! of its nearest sampled pixel ("ferradans" out-of-sample map). Differences from STICL, on
//! purpose: images stay at their own size (no 256x256 resize), and the sampled positions come
//! from the per-sample RNG rather than a fixed `RandomState(42)`.
use super::lap::assign;
use crate::data::rng::Rng;
use crate::data::Img;

/// Draws `k` distinct positions in [0, n) (partial Fisher-Yates).
pub fn sample_positions(n: usize, k: usize, rng: &mut Rng) -> Vec<usize> {
    let k = k.min(n);
    let mut pos: Vec<usize> = (0..n).collect();
    for i in 0..k {
        let j = i + rng.below(n - i);
        pos.swap(i, j);
    }
    pos.truncate(k);
    pos
}

fn pixel(img: &Img, p: usize) -> &[f32] {
    &img.data[p * img.c..(p + 1) * img.c]
}

fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Transfer with explicit sampled positions (same count in both). Returns the new image and
/// `assignment[i]` = index into `tgt_pos` given to the pixel at `src_pos[i]`. Sampled content
/// pixels receive their assigned style colour exactly; all other pixels follow their nearest
/// sampled pixel's displacement, clipped to [0, 1].
pub fn transfer_with_samples(content: &Img, src_pos: &[usize], style: &Img, tgt_pos: &[usize]) -> (Img, Vec<usize>) {
    let n = src_pos.len().min(tgt_pos.len());
    let c = content.c;
    if n == 0 || style.c != c {
        return (content.clone(), Vec::new());
    }
    let xs: Vec<&[f32]> = src_pos[..n].iter().map(|&p| pixel(content, p)).collect();
    let xt: Vec<&[f32]> = tgt_pos[..n].iter().map(|&p| pixel(style, p)).collect();
    let mut cost = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            cost[i * n + j] = sq_dist(xs[i], xt[j]) as f64;
        }
    }
    let sigma = assign(&cost, n);
    // Displacement of each sampled source colour.
    let shift: Vec<Vec<f32>> = (0..n).map(|i| xt[sigma[i]].iter().zip(xs[i]).map(|(t, s)| t - s).collect()).collect();
    let mut out = content.clone();
    let npx = content.h * content.w;
    for p in 0..npx {
        let px = pixel(content, p);
        let mut best = 0usize;
        let mut bd = f32::INFINITY;
        for (i, s) in xs.iter().enumerate() {
            let d = sq_dist(px, s);
            if d < bd {
                bd = d;
                best = i;
                if d == 0.0 {
                    break;
                }
            }
        }
        let dst = &mut out.data[p * c..(p + 1) * c];
        for b in 0..c {
            dst[b] = (px[b] + shift[best][b]).clamp(0.0, 1.0);
        }
    }
    for (i, &p) in src_pos[..n].iter().enumerate() {
        out.data[p * c..(p + 1) * c].copy_from_slice(xt[sigma[i]]);
    }
    (out, sigma)
}

/// Moves `content`'s colour distribution onto `style`'s using `samples` pixels of each.
pub fn ot_colour_transfer(content: &Img, style: &Img, samples: usize, rng: &mut Rng) -> Img {
    let k = samples.min(content.h * content.w).min(style.h * style.w);
    let src = sample_positions(content.h * content.w, k, rng);
    let tgt = sample_positions(style.h * style.w, k, rng);
    transfer_with_samples(content, &src, style, &tgt).0
}
