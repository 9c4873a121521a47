//! Shared by the int8 and f32 GEMMs: gathering output pixels' receptive fields into rows (im2col),
//! and splitting output pixels over threads.

use super::gemm::GemmGeom;
use crate::kernels::int8::KResult;

/// Fills `a[r * ld + j]` for rows `r < mr` with element `k0 + j` (`j < kc`) of output pixel `p0 + r`'s
/// receptive field (`k = (ky * kw + kx) * ic + ci`, the OHWI weights' order). `fill(at, dst)` converts
/// `dst.len()` input elements starting at input index `at`; taps in the padding are `pad` (zero, or the
/// input zero point where rows hold raw int8), `k >= k_total` and rows `r >= nr` are `T::default()`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn gather<T: Copy + Default>(
    g: &GemmGeom,
    k_total: usize,
    ld: usize,
    mr: usize,
    p0: usize,
    nr: usize,
    k0: usize,
    kc: usize,
    pad: T,
    a: &mut [T],
    fill: &mut impl FnMut(usize, &mut [T]) -> KResult<()>,
) -> KResult<()> {
    const E: &str = "gather block short";
    let (ih, iw, ic) = (g.in_h as usize, g.in_w as usize, g.in_c as usize);
    let (oh, ow) = (g.out_h as usize, g.out_w as usize);
    let (kh, kw) = (g.k_h as usize, g.k_w as usize);
    let (sh, sw, dh, dw) = (g.stride[0] as usize, g.stride[1] as usize, g.dilation[0] as usize, g.dilation[1] as usize);
    let (pt, pl) = (g.pad[0] as usize, g.pad[1] as usize);
    let k1 = k0 + kc;
    let (hw, w1) = ((oh * ow).max(1), ow.max(1));
    let p0_pos = (p0 / hw, (p0 % hw) / w1, p0 % w1);
    for r in 0..mr {
        let row = a.get_mut(r * ld..r * ld + kc).ok_or(E)?;
        if r >= nr {
            row.fill(T::default());
            continue;
        }
        let (b, oy, ox) = pixel_at(p0_pos, r, oh, ow);
        let (y0, x0) = (oy * sh, ox * sw);
        // Taps overlapping [k0, k1), each a run of `ic` channels; in order, so the common whole-row
        // case walks the taps once with no division.
        let mut t = k0 / ic;
        let (mut ky, mut kx) = (t / kw, t % kw);
        while ky < kh && t * ic < k1.min(k_total) {
            let (s, e) = ((t * ic).max(k0), ((t + 1) * ic).min(k1).min(k_total));
            let dst = row.get_mut(s - k0..e - k0).ok_or(E)?;
            let iy = (y0 + ky * dh).checked_sub(pt).filter(|&v| v < ih);
            let ix = (x0 + kx * dw).checked_sub(pl).filter(|&v| v < iw);
            match (iy, ix) {
                (Some(iy), Some(ix)) => fill(((b * ih + iy) * iw + ix) * ic + (s - t * ic), dst)?,
                _ => dst.fill(pad),
            }
            t += 1;
            kx += 1;
            if kx == kw {
                kx = 0;
                ky += 1;
            }
        }
        if k1 > k_total {
            row.get_mut(k_total.max(k0) - k0..).ok_or(E)?.fill(T::default());
        }
    }
    Ok(())
}

/// Fewest MACs a thread must get before a layer is split: a spawn and join cost tens of microseconds,
/// about what 2-4 M MACs take on one core, so each thread gets at least ~8x that.
pub const MIN_MACS_PER_THREAD: usize = 16_000_000;

/// Threads for a layer of `macs` MACs: at most `wanted`, at most one per block of rows, and only as
/// many as get [`MIN_MACS_PER_THREAD`] each (1 for small layers).
pub fn threads_for(macs: usize, wanted: usize, blocks: usize) -> usize {
    wanted.min(blocks).min(macs / MIN_MACS_PER_THREAD).max(1)
}

/// `(batch, oy, ox)` of the pixel `r` rows after the one at `first` (`oh * ow` pixels per image),
/// stepping instead of dividing (`r` is below the micro-kernel's row count).
pub use rsim_edge_simd::pixel_at;

/// Runs `f(first_pixel, rows_of_out)` over `pixels` output pixels of `oc` elements each, split into
/// `threads` contiguous ranges of whole `mr` blocks (std builds; one call otherwise).
pub fn split_pixels<E: Send>(
    pixels: usize,
    oc: usize,
    mr: usize,
    threads: usize,
    out: &mut [E],
    f: &(impl Fn(usize, &mut [E]) -> KResult<()> + Sync),
) -> KResult<()> {
    #[cfg(feature = "std")]
    if threads > 1 {
        const MAX: usize = 16;
        let per = pixels.div_ceil(mr).div_ceil(threads.min(MAX)) * mr;
        return std::thread::scope(|s| {
            let mut handles: [Option<std::thread::ScopedJoinHandle<'_, KResult<()>>>; MAX] = Default::default();
            let mut rest = &mut *out;
            let mut first = 0;
            for h in handles.iter_mut() {
                if first >= pixels {
                    break;
                }
                let n = per.min(pixels - first);
                let len = (n * oc).min(rest.len());
                let (mine, tail) = core::mem::take(&mut rest).split_at_mut(len);
                rest = tail;
                let at = first;
                *h = Some(s.spawn(move || f(at, mine)));
                first += n;
            }
            let mut result = Ok(());
            for h in handles.iter_mut().filter_map(Option::take) {
                let r = h.join().unwrap_or(Err("gemm worker thread failed"));
                result = result.and(r);
            }
            result
        });
    }
    let _ = (pixels, oc, mr, threads);
    f(0, out)
}
