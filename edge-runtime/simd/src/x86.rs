//! x86_64 AVX2 inner loops behind the [`Avx2`] token: the int8 GEMM micro-kernel (`vpmaddwd` on i16
//! pairs, 4 rows x 16 channels in registers), im2col widening, TFLM's double-rounding requantization
//! on 8 lanes, the depthwise and ADD sweeps, the f32 GEMM micro-kernel (`vfmadd`), and
//! [`Avx2::vectorize`] / [`Avx2::vectorize_fma`], which compile a caller's safe driver with AVX2.
//!
//! Safety: every `unsafe` block here runs with an [`Avx2`] in hand (so the CPU has AVX2 and FMA), and
//! after the public entry checked every length and index its pointer accesses rely on.

use crate::geom::{pixel_at, AddPlan, DwGeom, GemmGeom, MAX_TAPS};
use crate::requant::{requant_scalar, ChannelData};
use crate::{check_micro, check_operands, Avx2, KResult, MR};
use core::arch::x86_64::*;

/// One safe entry into code compiled with `$features`: the public method runs `f` inside an inner
/// `#[target_feature]` function (see [`Avx2::vectorize`]). The features must be ones
/// [`Avx2::detect`] checks.
macro_rules! entry {
    ($(#[$doc:meta])* $name:ident, $features:literal) => {
        $(#[$doc])*
        #[inline]
        #[allow(clippy::too_many_arguments)]
        pub fn $name<P: ?Sized, X: ?Sized, W: ?Sized, C: ?Sized, O: ?Sized, R>(
            self,
            p: &P,
            first: usize,
            x: &X,
            w: &W,
            c: &C,
            out: &mut O,
            f: impl FnOnce(Avx2, &P, usize, &X, &W, &C, &mut O) -> R,
        ) -> R {
            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            fn with_features<P: ?Sized, X: ?Sized, W: ?Sized, C: ?Sized, O: ?Sized, R>(
                t: Avx2,
                p: &P,
                first: usize,
                x: &X,
                w: &W,
                c: &C,
                out: &mut O,
                f: impl FnOnce(Avx2, &P, usize, &X, &W, &C, &mut O) -> R,
            ) -> R {
                f(t, p, first, x, w, c, out)
            }
            // SAFETY: an `Avx2` exists only when the CPU has AVX2 and FMA (`Avx2::detect`), which cover
            // every feature an `entry!` enables.
            unsafe { with_features(self, p, first, x, w, c, out, f) }
        }
    };
}

impl Avx2 {
    entry! {
        /// Runs `f(self, p, first, x, w, c, out)` inside a function compiled with AVX2, so that the token's
        /// `#[inline(always)]` methods (and `f`'s own loops) inline into it as AVX2 code: pass an
        /// `#[inline(always)]` function or closure. The operands go through that function's own
        /// parameters rather than captures, so the compiler keeps their no-alias facts (a captured
        /// `&mut` output costs reloads after every store). Safe for any `f`: it only changes which
        /// instructions the compiler may use, and the token proves the CPU has them.
        vectorize, "avx2"
    }

    entry! {
        /// [`vectorize`](Self::vectorize) with AVX2 and FMA (the f32 kernels).
        vectorize_fma, "avx2,fma"
    }

    /// The int8 GEMM micro-kernel: `acc[r][l] (+)= sum_j a[r * lda + 2j] * w[j][l][0] +
    /// a[r * lda + 2j + 1] * w[j][l][1]` for rows `r < MR`, lanes `l < 8 * nb` (block `b` of `w`, 16-byte
    /// groups `[c0 k0, c0 k1, ..., c7 k1]`, at `b * bstride`), pairs `j < kc / 2`, in wrapping i32;
    /// `first` overwrites the lanes instead of adding. Errors (touching nothing) unless
    /// [`check_micro`] accepts the shapes.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_micro(
        self,
        a: &[i16],
        lda: usize,
        kc: usize,
        w: &[u8],
        bstride: usize,
        nb: usize,
        first: bool,
        acc: &mut [[i32; 16]; MR],
    ) -> KResult<()> {
        check_micro(a, lda, kc, w, bstride, nb)?;
        // SAFETY: AVX2 present (token); `a` holds MR rows of `kc` i16 at stride `lda` and `w` holds `nb`
        // blocks of `kc / 2` 16-byte pairs at stride `bstride` (`check_micro` above).
        unsafe { micro_avx2(a.as_ptr(), lda, kc / 2, w.as_ptr(), bstride, nb, first, acc) };
        Ok(())
    }

    /// Requantizes `n <= 16` lanes of `acc` (bias added) for channels `c0 .. c0 + n` into `out[..n]`:
    /// whole groups of 8 channels the arrays hold on 8 lanes, the rest scalar. Errors when `n > 16`,
    /// `out` is shorter than `n` or a channel is missing from the arrays.
    #[inline(always)]
    pub fn requant16(self, acc: &[i32; 16], ch: &ChannelData<'_>, c0: usize, n: usize, out: &mut [u8]) -> KResult<()> {
        if n > 16 {
            return Err("more than 16 lanes to requantize");
        }
        let out = out.get_mut(..n).ok_or("gemm output short")?;
        let mut done = 0;
        // Whole groups of 8 channels go straight to the output; a partial group through a buffer.
        while done + 8 <= n && ch.has8(c0.saturating_add(done)) {
            // SAFETY: AVX2 present (token); `done + 8 <= n <= 16` lanes of `acc` and bytes of `out`, and
            // 8 channels of every array from `c0 + done` (`has8`), exist (checked above).
            unsafe { requant8_store(acc.as_ptr().add(done), ch, c0 + done, out.as_mut_ptr().add(done)) };
            done += 8;
        }
        if done < n {
            let mut tmp = [0u8; 8];
            let c = c0.saturating_add(done);
            let rest = acc.get(done..).unwrap_or_default();
            if done + 8 <= 16 && ch.has8(c) {
                // SAFETY: as above, 8 lanes of `acc` from `done` (`done + 8 <= 16`) into an 8-byte buffer.
                unsafe { requant8_store(acc.as_ptr().add(done), ch, c, tmp.as_mut_ptr()) };
            } else {
                requant_scalar(rest, ch, c, n - done, &mut tmp)?;
            }
            out.get_mut(done..)
                .unwrap_or_default()
                .copy_from_slice(tmp.get(..n - done).ok_or("more than 16 lanes to requantize")?);
        }
        Ok(())
    }

    /// im2col of whole receptive fields: rows `r < MR` of `a` (stride `kp`) get output pixel `p0 + r`'s
    /// `k = k_h * k_w * in_c` elements (`k = (ky * kw + kx) * ic + ci`) widened to i16 plus
    /// `in_offset`, zeros for taps in the padding, past `k` and for rows `r >= nr`. Returns `false`
    /// (writing nothing) unless `x` holds the whole input, `a` holds `MR * kp` i16, `k <= kp`,
    /// `nr <= MR` and the pixels exist; the caller then takes its generic path.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn gather_whole(
        self,
        g: &GemmGeom,
        kp: usize,
        in_offset: i32,
        p0: usize,
        nr: usize,
        x: &[u8],
        a: &mut [i16],
    ) -> bool {
        let fits = || -> Option<bool> {
            let input = (g.batch as usize)
                .checked_mul(g.in_h as usize)?
                .checked_mul(g.in_w as usize)?
                .checked_mul(g.in_c as usize)?;
            let pixels = (g.batch as usize).checked_mul(g.out_h as usize)?.checked_mul(g.out_w as usize)?;
            let k = (g.k_h as usize).checked_mul(g.k_w as usize)?.checked_mul(g.in_c as usize)?;
            Some(
                x.len() >= input
                    && a.len() >= MR.checked_mul(kp)?
                    && k <= kp
                    && nr <= MR
                    && p0.checked_add(nr)? <= pixels,
            )
        };
        if fits() != Some(true) {
            return false;
        }
        // SAFETY: AVX2 present (token); the sizes `gather_whole_avx2` requires were checked just above.
        unsafe { gather_whole_avx2(g, kp, in_offset, p0, nr, x.as_ptr(), a.as_mut_ptr()) };
        true
    }

    /// `dst[i] = src[i] as i8 + off` for `i < min(dst.len(), src.len())`.
    #[inline(always)]
    pub fn widen(self, src: &[u8], off: i16, dst: &mut [i16]) {
        let n = dst.len().min(src.len());
        let vec = n - n % 16;
        // SAFETY: AVX2 present (token); `vec <= n` elements of both slices exist.
        unsafe { widen_avx2(src.as_ptr(), off, dst.as_mut_ptr(), vec) };
        for (d, &v) in dst.iter_mut().zip(src).take(n).skip(vec) {
            *d = (v as i8 as i16).wrapping_add(off);
        }
    }

    /// int8 depthwise convolution (multiplier 1) of a whole batch: `out[b, oy, ox, c] =
    /// requant(sum over taps of w[tap, c] * (x[tap pixel, c] + in_offset))`, 16 channels x 2 taps per
    /// `vpmaddwd` against `pairs` (the weights packed as rsim-edge's `depthwise::pack_pairs` lays them
    /// out), then 8-channel vectors, then scalar channels. Errors (writing nothing) when a buffer is
    /// shorter than the geometry, the channel arrays hold fewer than `channels` rounded up to 8, or
    /// there are more than [`MAX_TAPS`] taps.
    pub fn depthwise(
        self,
        g: &DwGeom,
        x: &[u8],
        w: &[u8],
        pairs: &[u8],
        ch: &ChannelData<'_>,
        out: &mut [u8],
    ) -> KResult<()> {
        const E: &str = "depthwise tensors shorter than their shapes";
        let c = g.channels as usize;
        let taps = (g.k_h as usize).checked_mul(g.k_w as usize).ok_or(E)?;
        let (input, weights, output) = g.lens().ok_or(E)?;
        let pairs_len = (c / 16).checked_mul(taps.div_ceil(2)).and_then(|v| v.checked_mul(64)).ok_or(E)?;
        if ch.len() < c.next_multiple_of(8)
            || taps > MAX_TAPS
            || pairs.len() < pairs_len
            || x.len() < input
            || w.len() < weights
            || out.len() < output
        {
            return Err(E);
        }
        // SAFETY: AVX2 present (token); every length the sweep relies on was checked above.
        unsafe { depthwise_avx2(g, x, w, pairs, ch, out) };
        Ok(())
    }

    /// int8 ADD of same-shape tensors on 8 lanes at a time (TFLM's `AddElementwise` arithmetic, `p`'s
    /// shifts and multipliers); returns how many leading elements it wrote (a multiple of 8, at most
    /// the shortest of `a`, `b` and `out`): the caller does the rest.
    pub fn add(self, p: &AddPlan, a: &[u8], b: &[u8], out: &mut [u8]) -> usize {
        let n = a.len().min(b.len()).min(out.len());
        let vec = n - n % 8;
        // SAFETY: AVX2 present (token); `vec` elements of each slice exist.
        unsafe { add_avx2(p, a.as_ptr(), b.as_ptr(), out.as_mut_ptr(), vec) };
        vec
    }

    /// The f32 GEMM micro-kernel: `acc[r][l] += sum_j a[r * lda + j] * w[j * 8 + l]` (block `b` of `w`
    /// at `b * bstride`, lanes `l < 8 * nb`, `j < kc`), fused multiply-adds. Errors (touching nothing)
    /// unless `nb` is 1 or 2, `lda >= kc`, and `a` / `w` hold MR rows / `nb` blocks.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_f32_micro(
        self,
        a: &[f32],
        lda: usize,
        kc: usize,
        w: &[f32],
        bstride: usize,
        nb: usize,
        acc: &mut [[f32; 16]; MR],
    ) -> KResult<()> {
        if !(1..=2).contains(&nb) || lda < kc {
            return Err("gemm micro-kernel called with a bad shape");
        }
        check_operands(a.len(), lda, kc, w.len(), bstride, nb, 8)?;
        // SAFETY: AVX2 and FMA present (token); lengths checked above.
        unsafe { micro_f32(a.as_ptr(), lda, kc, w.as_ptr(), bstride, nb, acc) };
        Ok(())
    }
}

/// im2col of whole receptive fields: each tap is `ic / 16` widening stores and a scalar tail, with no
/// per-tap bounds checks (the caller checked the input length and the geometry once).
///
/// # Safety
/// AVX2 present; `x` holds the whole input (`batch * in_h * in_w * in_c`, not overflowing); `a` holds
/// `MR * kp` i16; `k_h * k_w * in_c <= kp`; `nr <= MR` and `p0 + nr <= batch * out_h * out_w`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn gather_whole_avx2(g: &GemmGeom, kp: usize, in_offset: i32, p0: usize, nr: usize, x: *const u8, a: *mut i16) {
    let (ih, iw, ic) = (g.in_h as usize, g.in_w as usize, g.in_c as usize);
    let (oh, ow) = (g.out_h as usize, g.out_w as usize);
    let (kh, kw) = (g.k_h as usize, g.k_w as usize);
    let (sh, sw, dh, dw) = (g.stride[0] as usize, g.stride[1] as usize, g.dilation[0] as usize, g.dilation[1] as usize);
    let (pt, pl) = (g.pad[0] as usize, g.pad[1] as usize);
    let off = _mm256_set1_epi16(in_offset as i16);
    let zero = _mm256_setzero_si256();
    let (hw, w1) = ((oh * ow).max(1), ow.max(1));
    let p0_pos = (p0 / hw, (p0 % hw) / w1, p0 % w1);
    for r in 0..MR {
        // SAFETY: (loop body) row r < MR of `a` spans kp i16 and gets k <= kp elements then zeros; a
        // row r < nr is pixel p0 + r < batch * out_h * out_w, so its image index b < batch and each tap
        // read (iy < ih, ix < iw, ic elements) lies inside `x` (contract above).
        unsafe {
            let row = a.add(r * kp);
            if r >= nr {
                core::ptr::write_bytes(row, 0, kp);
                continue;
            }
            // Row r's pixel from the block's first one without a division per row (a 64-bit divide
            // costs tens of cycles, as much as widening a small layer's taps).
            let (b, oy, ox) = pixel_at(p0_pos, r, oh, ow);
            let (y0, x0) = (oy.wrapping_mul(sh), ox.wrapping_mul(sw));
            let mut pos = 0;
            for ky in 0..kh {
                let iy = y0.wrapping_add(ky.wrapping_mul(dh)).wrapping_sub(pt);
                for kx in 0..kw {
                    let ix = x0.wrapping_add(kx.wrapping_mul(dw)).wrapping_sub(pl);
                    let dst = row.add(pos);
                    if iy < ih && ix < iw {
                        let src = x.add(((b * ih + iy) * iw + ix) * ic);
                        let mut j = 0;
                        while j + 16 <= ic {
                            let v = _mm256_cvtepi8_epi16(_mm_loadu_si128(src.add(j) as *const __m128i));
                            _mm256_storeu_si256(dst.add(j) as *mut __m256i, _mm256_add_epi16(v, off));
                            j += 16;
                        }
                        while j < ic {
                            *dst.add(j) = (*src.add(j) as i8 as i16).wrapping_add(in_offset as i16);
                            j += 1;
                        }
                    } else {
                        let mut j = 0;
                        while j + 16 <= ic {
                            _mm256_storeu_si256(dst.add(j) as *mut __m256i, zero);
                            j += 16;
                        }
                        core::ptr::write_bytes(dst.add(j), 0, ic - j);
                    }
                    pos += ic;
                }
            }
            // The odd-k pad of the last pair.
            core::ptr::write_bytes(row.add(pos), 0, kp - pos);
        }
    }
}

/// # Safety
/// AVX2 present; `src` has `n` bytes and `dst` `n` i16 (`n` a multiple of 16).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn widen_avx2(src: *const u8, off: i16, dst: *mut i16, n: usize) {
    let o = _mm256_set1_epi16(off);
    let mut i = 0;
    while i < n {
        // SAFETY: i + 16 <= n by the loop bound and the contract.
        unsafe {
            let v = _mm256_cvtepi8_epi16(_mm_loadu_si128(src.add(i) as *const __m128i));
            _mm256_storeu_si256(dst.add(i) as *mut __m256i, _mm256_add_epi16(v, o));
        }
        i += 16;
    }
}

/// # Safety
/// AVX2 present; rows `0..MR` of `a` (stride `lda`) have `2 * pairs` i16; `nb` (1 or 2) weight blocks
/// at stride `bstride` have `pairs` 16-byte groups.
#[target_feature(enable = "avx2")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_avx2(
    a: *const i16,
    lda: usize,
    pairs: usize,
    w: *const u8,
    bstride: usize,
    nb: usize,
    first: bool,
    acc: &mut [[i32; 16]; MR],
) {
    // SAFETY: (whole body) the caller checked that rows 0..MR of `a` have `2 * pairs` i16 and that
    // `nb` weight blocks have `pairs` 16-byte groups; accumulators are plain arrays.
    unsafe {
        // Macros, not closures: the loads must be compiled with this function's AVX2.
        // The first chunk starts from zero in registers (no store/reload of a zeroed array).
        macro_rules! ld {
            ($r:expr, $h:expr) => {
                if first {
                    _mm256_setzero_si256()
                } else {
                    _mm256_loadu_si256(acc[$r][$h * 8..].as_ptr() as *const __m256i)
                }
            };
        }
        let (mut c00, mut c10, mut c20, mut c30) = (ld!(0, 0), ld!(1, 0), ld!(2, 0), ld!(3, 0));
        let (mut c01, mut c11, mut c21, mut c31) = (ld!(0, 1), ld!(1, 1), ld!(2, 1), ld!(3, 1));
        let (a0, a1, a2, a3) = (a, a.add(lda), a.add(2 * lda), a.add(3 * lda));
        macro_rules! pair {
            ($row:expr, $j:expr) => {
                _mm256_set1_epi32(($row.add(2 * $j) as *const i32).read_unaligned())
            };
        }
        if nb == 2 {
            let w1 = w.add(bstride);
            for j in 0..pairs {
                let wa = _mm256_cvtepi8_epi16(_mm_loadu_si128(w.add(16 * j) as *const __m128i));
                let wb = _mm256_cvtepi8_epi16(_mm_loadu_si128(w1.add(16 * j) as *const __m128i));
                let x0 = pair!(a0, j);
                c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(x0, wa));
                c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(x0, wb));
                let x1 = pair!(a1, j);
                c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(x1, wa));
                c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(x1, wb));
                let x2 = pair!(a2, j);
                c20 = _mm256_add_epi32(c20, _mm256_madd_epi16(x2, wa));
                c21 = _mm256_add_epi32(c21, _mm256_madd_epi16(x2, wb));
                let x3 = pair!(a3, j);
                c30 = _mm256_add_epi32(c30, _mm256_madd_epi16(x3, wa));
                c31 = _mm256_add_epi32(c31, _mm256_madd_epi16(x3, wb));
            }
        } else {
            for j in 0..pairs {
                let wa = _mm256_cvtepi8_epi16(_mm_loadu_si128(w.add(16 * j) as *const __m128i));
                c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(pair!(a0, j), wa));
                c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(pair!(a1, j), wa));
                c20 = _mm256_add_epi32(c20, _mm256_madd_epi16(pair!(a2, j), wa));
                c30 = _mm256_add_epi32(c30, _mm256_madd_epi16(pair!(a3, j), wa));
            }
        }
        for (r, (lo, hi)) in [(c00, c01), (c10, c11), (c20, c21), (c30, c31)].into_iter().enumerate() {
            _mm256_storeu_si256(acc[r].as_mut_ptr() as *mut __m256i, lo);
            _mm256_storeu_si256(acc[r][8..].as_mut_ptr() as *mut __m256i, hi);
        }
    }
}

/// `trunc((p + nudge) / 2^31)` of the i64 products in each 64-bit lane (`srdhm`'s core), low 32 bits.
#[target_feature(enable = "avx2")]
#[inline]
fn high_mul_lane(p: __m256i) -> __m256i {
    let zero = _mm256_setzero_si256();
    let neg = _mm256_cmpgt_epi64(zero, p);
    let nudge = _mm256_blendv_epi8(_mm256_set1_epi64x(1 << 30), _mm256_set1_epi64x(1 - (1 << 30)), neg);
    let s = _mm256_add_epi64(p, nudge);
    // Logical and arithmetic shifts agree on the low 32 bits of the quotient; C's division truncates,
    // so negative non-exact quotients move up by one.
    let q = _mm256_srli_epi64(s, 31);
    let s_neg = _mm256_cmpgt_epi64(zero, s);
    let exact = _mm256_cmpeq_epi64(_mm256_and_si256(s, _mm256_set1_epi64x(0x7fff_ffff)), zero);
    _mm256_sub_epi64(q, _mm256_andnot_si256(exact, s_neg))
}

/// TFLM's `MultiplyByQuantizedMultiplier` with pre-split shifts on 8 lanes, then zero point and clamp.
/// `srdhm(x, m)` on 8 lanes for multipliers `m >= 0`: the product's sign is `x`'s, so
/// `srdhm = sign(x) * ((|x| m + 2^30 - [x < 0]) >> 31)`, computed as the high bits of `|x| m` plus the
/// carry of the nudge into them (no 64-bit sign handling; `|i32::MIN|` = 2^31 as unsigned).
#[target_feature(enable = "avx2")]
#[inline]
fn srdhm_nonneg(x: __m256i, m: __m256i) -> __m256i {
    let ax = _mm256_abs_epi32(x);
    let pe = _mm256_mul_epu32(ax, m);
    let po = _mm256_mul_epu32(_mm256_srli_epi64::<32>(ax), _mm256_srli_epi64::<32>(m));
    let high = _mm256_blend_epi32::<0b1010_1010>(
        _mm256_srli_epi64::<31>(pe),
        _mm256_slli_epi64::<32>(_mm256_srli_epi64::<31>(po)),
    );
    let low = _mm256_and_si256(
        _mm256_blend_epi32::<0b1010_1010>(pe, _mm256_slli_epi64::<32>(po)),
        _mm256_set1_epi32(0x7fff_ffff),
    );
    let neg = _mm256_cmpgt_epi32(_mm256_setzero_si256(), x);
    let threshold = _mm256_sub_epi32(_mm256_set1_epi32((1 << 30) - 1), neg);
    let q = _mm256_sub_epi32(high, _mm256_cmpgt_epi32(low, threshold));
    _mm256_sign_epi32(q, x)
}

/// `srdhm(x, m)` on 8 lanes for any multipliers (64-bit signed products, C's truncation, saturation).
#[target_feature(enable = "avx2")]
#[inline]
fn srdhm_any(x: __m256i, mult: __m256i) -> __m256i {
    let even = high_mul_lane(_mm256_mul_epi32(x, mult));
    let odd = high_mul_lane(_mm256_mul_epi32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(mult, 32)));
    let q = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0b1010_1010);
    let min = _mm256_set1_epi32(i32::MIN);
    let sat = _mm256_and_si256(_mm256_cmpeq_epi32(x, min), _mm256_cmpeq_epi32(mult, min));
    _mm256_blendv_epi8(q, _mm256_set1_epi32(i32::MAX), sat)
}

#[target_feature(enable = "avx2")]
#[inline]
#[allow(clippy::too_many_arguments)]
fn requant8<const NONNEG: bool>(
    v: __m256i,
    mult: __m256i,
    left: __m256i,
    right: __m256i,
    zp: __m256i,
    lo: __m256i,
    hi: __m256i,
) -> __m256i {
    let x = _mm256_sllv_epi32(v, left);
    let q = if NONNEG { srdhm_nonneg(x, mult) } else { srdhm_any(x, mult) };
    // rounding_divide_by_pot(q, right), right in 0..=31.
    let one = _mm256_set1_epi32(1);
    let mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, right), one);
    let rem = _mm256_and_si256(q, mask);
    let q_neg = _mm256_cmpgt_epi32(_mm256_setzero_si256(), q);
    let threshold = _mm256_sub_epi32(_mm256_srai_epi32::<1>(mask), q_neg);
    let r = _mm256_sub_epi32(_mm256_srav_epi32(q, right), _mm256_cmpgt_epi32(rem, threshold));
    _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(r, zp), lo), hi)
}

/// Requantizes 8 accumulators (bias added here) for channels `c..c + 8` and stores 8 bytes at `out`.
///
/// # Safety
/// AVX2 present; `acc` has 8 i32; each channel array of `ch` has 8 entries from `c`; `out` has 8 bytes.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn requant8_store(acc: *const i32, ch: &ChannelData<'_>, c: usize, out: *mut u8) {
    // SAFETY: lengths as the contract above.
    unsafe {
        macro_rules! ld {
            ($b:expr) => {
                _mm256_loadu_si256($b.as_ptr().add(c * 4) as *const __m256i)
            };
        }
        let v = _mm256_add_epi32(_mm256_loadu_si256(acc as *const __m256i), ld!(ch.bias));
        let (m, l, r, zp) = (ld!(ch.mult), ld!(ch.left), ld!(ch.right), _mm256_set1_epi32(ch.out_zp));
        let (lo, hi) = (_mm256_set1_epi32(ch.act_min), _mm256_set1_epi32(ch.act_max));
        let r = if ch.nonneg {
            requant8::<true>(v, m, l, r, zp, lo, hi)
        } else {
            requant8::<false>(v, m, l, r, zp, lo, hi)
        };
        store8(r, out);
    }
}

/// Stores 8 i32 lanes already in -128..=127 as 8 bytes.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn store8(r: __m256i, out: *mut u8) {
    let w = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256::<1>(r));
    let b = _mm_packs_epi16(w, w);
    // SAFETY: the caller provides 8 writable bytes at `out`.
    unsafe { _mm_storel_epi64(out as *mut __m128i, b) };
}

/// # Safety
/// AVX2 present; the lengths [`Avx2::depthwise`] checks.
#[target_feature(enable = "avx2")]
unsafe fn depthwise_avx2(p: &DwGeom, x: &[u8], w: &[u8], pairs: &[u8], ch: &ChannelData<'_>, out: &mut [u8]) {
    let c = p.channels as usize;
    let (n, oh, ow) = (p.batch as usize, p.out_h as usize, p.out_w as usize);
    let (kh, kw) = (p.k_h as usize, p.k_w as usize);
    let taps = kh * kw;
    let npairs = taps.div_ceil(2);
    let off = _mm256_set1_epi32(p.in_offset);
    let off16 = _mm256_set1_epi16(p.in_offset as i16);
    let vec_end = c - c % 8;
    // Per output pixel: each tap's input offset (channel 0), or None in the padding.
    let mut at = [None::<usize>; MAX_TAPS];
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let o_at = ((b * oh + oy) * ow + ox) * c;
                for ky in 0..kh {
                    for kx in 0..kw {
                        at[ky * kw + kx] = p.tap(b, oy, ox, ky, kx);
                    }
                }
                let mut c0 = 0;
                while c0 + 16 <= c {
                    // SAFETY: tap offsets + c0 + 16 <= c lie in `x` (checked length, taps inside the
                    // image); the pair block of channels c0.. exists (checked); out has c bytes from o_at.
                    unsafe {
                        let (mut lo, mut hi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                        let wb = pairs.as_ptr().add((c0 / 16) * npairs * 64);
                        macro_rules! input {
                            ($t:expr) => {
                                match at.get($t).copied().flatten() {
                                    Some(a) => _mm256_add_epi16(
                                        _mm256_cvtepi8_epi16(_mm_loadu_si128(x.as_ptr().add(a + c0) as *const __m128i)),
                                        off16,
                                    ),
                                    None => _mm256_setzero_si256(),
                                }
                            };
                        }
                        for j in 0..npairs {
                            let xt = input!(2 * j);
                            let xu = if 2 * j + 1 < taps { input!(2 * j + 1) } else { _mm256_setzero_si256() };
                            let wl = _mm256_loadu_si256(wb.add(j * 64) as *const __m256i);
                            let wh = _mm256_loadu_si256(wb.add(j * 64 + 32) as *const __m256i);
                            lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(xt, xu), wl));
                            hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(xt, xu), wh));
                        }
                        // lo holds channels 0-3 | 8-11, hi 4-7 | 12-15 (unpack works per 128-bit lane).
                        let mut lanes = [0i32; 16];
                        _mm256_storeu_si256(
                            lanes.as_mut_ptr() as *mut __m256i,
                            _mm256_permute2x128_si256::<0x20>(lo, hi),
                        );
                        _mm256_storeu_si256(
                            lanes[8..].as_mut_ptr() as *mut __m256i,
                            _mm256_permute2x128_si256::<0x31>(lo, hi),
                        );
                        requant8_store(lanes.as_ptr(), ch, c0, out.as_mut_ptr().add(o_at + c0));
                        requant8_store(lanes[8..].as_ptr(), ch, c0 + 8, out.as_mut_ptr().add(o_at + c0 + 8));
                    }
                    c0 += 16;
                }
                while c0 < vec_end {
                    // SAFETY: as above for 8 channels from c0 (c0 + 8 <= c); weights at tap * c + c0 + 8 <= taps * c.
                    unsafe {
                        let mut acc = _mm256_setzero_si256();
                        for (t, a) in at.iter().take(taps).enumerate() {
                            let Some(a) = *a else { continue };
                            let xv = _mm256_cvtepi8_epi32(_mm_loadl_epi64(x.as_ptr().add(a + c0) as *const __m128i));
                            let wv =
                                _mm256_cvtepi8_epi32(_mm_loadl_epi64(w.as_ptr().add(t * c + c0) as *const __m128i));
                            acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(wv, _mm256_add_epi32(xv, off)));
                        }
                        let mut lanes = [0i32; 8];
                        _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, acc);
                        requant8_store(lanes.as_ptr(), ch, c0, out.as_mut_ptr().add(o_at + c0));
                    }
                    c0 += 8;
                }
                // Tail channels: the scalar sum.
                for cc in vec_end..c {
                    let mut acc = 0i32;
                    for (t, a) in at.iter().take(taps).enumerate() {
                        let Some(a) = *a else { continue };
                        let xv = x[a + cc] as i8 as i32;
                        let wv = w[t * c + cc] as i8 as i32;
                        acc = acc.wrapping_add(wv.wrapping_mul(xv.wrapping_add(p.in_offset)));
                    }
                    let mut one = [0u8; 1];
                    let _ = requant_scalar(&[acc], ch, cc, 1, &mut one);
                    out[o_at + cc] = one[0];
                }
            }
        }
    }
}

/// # Safety
/// AVX2 present; `a`, `b` and `out` have `n` elements, `n` a multiple of 8.
#[target_feature(enable = "avx2")]
unsafe fn add_avx2(p: &AddPlan, a: *const u8, b: *const u8, out: *mut u8, n: usize) {
    let s = _mm256_set1_epi32;
    let (zero, min, max) = (s(0), s(i32::MIN), s(i32::MAX));
    let (zpa, zpb, zpo) = (s(p.zp[0]), s(p.zp[1]), s(p.zp[2]));
    let left = s(p.left);
    let (am, ar, bm, br, om, or) = (s(p.a.0), s(p.a.1), s(p.b.0), s(p.b.1), s(p.out.0), s(p.out.1));
    let (lo, hi) = (s(p.act_min), s(p.act_max));
    // The shorter exact product form when no multiplier is negative (all a converter writes).
    let nonneg = p.a.0 >= 0 && p.b.0 >= 0 && p.out.0 >= 0;
    let mut i = 0;
    while i < n {
        // SAFETY: i + 8 <= n elements of a, b and out (the caller's contract).
        unsafe {
            let x = _mm256_sub_epi32(_mm256_cvtepi8_epi32(_mm_loadl_epi64(a.add(i) as *const __m128i)), zpa);
            let y = _mm256_sub_epi32(_mm256_cvtepi8_epi32(_mm_loadl_epi64(b.add(i) as *const __m128i)), zpb);
            let r = if nonneg {
                let xs = requant8::<true>(x, am, left, ar, zero, min, max);
                let ys = requant8::<true>(y, bm, left, br, zero, min, max);
                requant8::<true>(_mm256_add_epi32(xs, ys), om, zero, or, zpo, lo, hi)
            } else {
                let xs = requant8::<false>(x, am, left, ar, zero, min, max);
                let ys = requant8::<false>(y, bm, left, br, zero, min, max);
                requant8::<false>(_mm256_add_epi32(xs, ys), om, zero, or, zpo, lo, hi)
            };
            store8(r, out.add(i));
        }
        i += 8;
    }
}

/// # Safety
/// AVX2 and FMA present; rows `0..MR` of `a` (stride `lda`) have `kc` floats; `nb` (1 or 2) weight
/// blocks at stride `bstride` have `kc * 8` floats.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn micro_f32(
    a: *const f32,
    lda: usize,
    kc: usize,
    w: *const f32,
    bstride: usize,
    nb: usize,
    acc: &mut [[f32; 16]; MR],
) {
    // SAFETY: (whole body) rows 0..MR of `a` have `kc` floats at stride `lda`, `nb` weight blocks have
    // `kc * 8` floats at stride `bstride` (checked by the caller).
    unsafe {
        macro_rules! ld {
            ($r:expr, $h:expr) => {
                _mm256_loadu_ps(acc[$r][$h * 8..].as_ptr())
            };
        }
        let (mut c00, mut c10, mut c20, mut c30) = (ld!(0, 0), ld!(1, 0), ld!(2, 0), ld!(3, 0));
        let (mut c01, mut c11, mut c21, mut c31) = (ld!(0, 1), ld!(1, 1), ld!(2, 1), ld!(3, 1));
        let (a0, a1, a2, a3) = (a, a.add(lda), a.add(2 * lda), a.add(3 * lda));
        if nb == 2 {
            let w1 = w.add(bstride);
            for j in 0..kc {
                let wa = _mm256_loadu_ps(w.add(8 * j));
                let wb = _mm256_loadu_ps(w1.add(8 * j));
                let x0 = _mm256_broadcast_ss(&*a0.add(j));
                c00 = _mm256_fmadd_ps(x0, wa, c00);
                c01 = _mm256_fmadd_ps(x0, wb, c01);
                let x1 = _mm256_broadcast_ss(&*a1.add(j));
                c10 = _mm256_fmadd_ps(x1, wa, c10);
                c11 = _mm256_fmadd_ps(x1, wb, c11);
                let x2 = _mm256_broadcast_ss(&*a2.add(j));
                c20 = _mm256_fmadd_ps(x2, wa, c20);
                c21 = _mm256_fmadd_ps(x2, wb, c21);
                let x3 = _mm256_broadcast_ss(&*a3.add(j));
                c30 = _mm256_fmadd_ps(x3, wa, c30);
                c31 = _mm256_fmadd_ps(x3, wb, c31);
            }
        } else {
            for j in 0..kc {
                let wa = _mm256_loadu_ps(w.add(8 * j));
                c00 = _mm256_fmadd_ps(_mm256_broadcast_ss(&*a0.add(j)), wa, c00);
                c10 = _mm256_fmadd_ps(_mm256_broadcast_ss(&*a1.add(j)), wa, c10);
                c20 = _mm256_fmadd_ps(_mm256_broadcast_ss(&*a2.add(j)), wa, c20);
                c30 = _mm256_fmadd_ps(_mm256_broadcast_ss(&*a3.add(j)), wa, c30);
            }
        }
        for (r, (lo, hi)) in [(c00, c01), (c10, c11), (c20, c21), (c30, c31)].into_iter().enumerate() {
            _mm256_storeu_ps(acc[r].as_mut_ptr(), lo);
            _mm256_storeu_ps(acc[r][8..].as_mut_ptr(), hi);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixedpoint::srdhm;
    use std::vec::Vec;
    use std::{eprintln, vec};

    /// Both vector forms of `srdhm` against the scalar one on edge and random values.
    #[test]
    fn vector_srdhm_equals_the_scalar_one() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            eprintln!("SKIPPED: no AVX2 on this CPU");
            return;
        }
        let edges =
            [0, 1, -1, 2, -2, i32::MAX, i32::MIN, i32::MIN + 1, 1 << 30, -(1 << 30), (1 << 30) - 1, 12345, -98765];
        let mut vals: Vec<i32> = edges.to_vec();
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..4000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            vals.push(s as i32);
        }
        for chunk in vals.chunks_exact(8) {
            for &m in edges.iter().chain(&vals[..64]) {
                let (mut any, mut nn) = ([0i32; 8], [0i32; 8]);
                // SAFETY: AVX2 detected above; 8-lane arrays.
                unsafe {
                    let x = _mm256_loadu_si256(chunk.as_ptr() as *const __m256i);
                    let mv = _mm256_set1_epi32(m);
                    _mm256_storeu_si256(any.as_mut_ptr() as *mut __m256i, srdhm_any(x, mv));
                    _mm256_storeu_si256(nn.as_mut_ptr() as *mut __m256i, srdhm_nonneg(x, mv));
                }
                for (i, &x) in chunk.iter().enumerate() {
                    assert_eq!(any[i], srdhm(x, m), "any: x {x} m {m}");
                    if m >= 0 {
                        assert_eq!(nn[i], srdhm(x, m), "nonneg: x {x} m {m}");
                    }
                }
            }
        }
    }

    fn token() -> Option<Avx2> {
        let t = Avx2::detect();
        if t.is_none() {
            eprintln!("SKIPPED: no AVX2 + FMA on this CPU");
        }
        t
    }

    fn geom(batch: u32, hw: u32, c: u32, k: u32, stride: u32, pad: u32) -> GemmGeom {
        let out = (hw + 2 * pad - k) / stride + 1;
        GemmGeom {
            batch,
            in_h: hw,
            in_w: hw,
            in_c: c,
            out_h: out,
            out_w: out,
            out_c: 8,
            k_h: k,
            k_w: k,
            stride: [stride; 2],
            dilation: [1; 2],
            pad: [pad; 2],
        }
    }

    /// The micro-kernel against the plain sum, and every malformed shape refused before any access.
    #[test]
    fn gemm_micro_equals_the_plain_sum_and_refuses_short_operands() {
        let Some(t) = token() else { return };
        let kc = 22;
        let lda = 24;
        let a: Vec<i16> = (0..(MR - 1) * lda + kc).map(|i| (i as i16 * 37) % 300 - 150).collect();
        let bstride = kc * 8 + 16;
        let w: Vec<u8> = (0..bstride + kc * 8).map(|i| (i * 91 % 256) as u8).collect();
        let mut acc = [[7i32; 16]; MR];
        t.gemm_micro(&a, lda, kc, &w, bstride, 2, true, &mut acc).unwrap();
        for (r, acc_r) in acc.iter().enumerate() {
            for (l, &v) in acc_r.iter().enumerate() {
                let (b, lane) = (l / 8, l % 8);
                let want = (0..kc).fold(0i32, |s, kk| {
                    let wv = w[b * bstride + (kk / 2) * 16 + lane * 2 + kk % 2] as i8 as i32;
                    s.wrapping_add(a[r * lda + kk] as i32 * wv)
                });
                assert_eq!(v, want, "row {r} lane {l}");
            }
        }
        let before = acc;
        for (a_len, lda, kc, w_len, bstride, nb) in [
            (a.len() - 1, lda, kc, w.len(), bstride, 2),
            (a.len(), lda, kc, w.len() - 1, bstride, 2),
            (a.len(), lda, kc + 1, w.len(), bstride, 2),
            (a.len(), kc - 2, kc, w.len(), bstride, 2),
            (a.len(), lda, kc, w.len(), bstride, 3),
            (a.len(), lda, kc, w.len(), bstride, 0),
            (a.len(), usize::MAX / 2, kc, w.len(), bstride, 2),
            (a.len(), lda, kc, w.len(), usize::MAX, 2),
        ] {
            let r = t.gemm_micro(&a[..a_len], lda, kc, &w[..w_len], bstride, nb, false, &mut acc);
            assert!(r.is_err(), "accepted a_len {a_len} lda {lda} kc {kc} w_len {w_len} bstride {bstride} nb {nb}");
        }
        assert_eq!(acc, before);
        let mut facc = [[0f32; 16]; MR];
        let af = vec![1f32; 3 * 8 + 8];
        let wf = vec![1f32; 8 * 8];
        assert!(t.gemm_f32_micro(&af, 8, 8, &wf, 0, 1, &mut facc).is_ok());
        assert!(t.gemm_f32_micro(&af[1..], 8, 8, &wf, 0, 1, &mut facc).is_err());
        assert!(t.gemm_f32_micro(&af, 8, 8, &wf[1..], 0, 1, &mut facc).is_err());
        assert!(t.gemm_f32_micro(&af, 8, 8, &wf, usize::MAX, 2, &mut facc).is_err());
        assert!(t.gemm_f32_micro(&af, usize::MAX, 8, &wf, 0, 1, &mut facc).is_err());
    }

    /// The vector im2col against a plain one, and geometries that do not fit refused.
    #[test]
    fn gather_whole_equals_the_plain_im2col_and_refuses_what_does_not_fit() {
        let Some(t) = token() else { return };
        for (c, k, stride, pad) in [(3, 3, 1, 1), (16, 3, 2, 1), (35, 1, 1, 0), (20, 5, 2, 2)] {
            let g = geom(2, 9, c, k, stride, pad);
            let kk = (k * k * c) as usize;
            let kp = kk + (kk & 1);
            let x: Vec<u8> = (0..g.input_len()).map(|i| (i * 13 % 256) as u8).collect();
            let pixels = g.pixels();
            for p0 in (0..pixels).step_by(MR) {
                let nr = MR.min(pixels - p0);
                let mut a = vec![-1i16; MR * kp];
                assert!(t.gather_whole(&g, kp, -5, p0, nr, &x, &mut a));
                for r in 0..MR {
                    for e in 0..kp {
                        let want = if r >= nr || e >= kk {
                            0
                        } else {
                            let p = p0 + r;
                            let (b, oy, ox) = (
                                p / (g.out_h * g.out_w) as usize,
                                (p / g.out_w as usize) % g.out_h as usize,
                                p % g.out_w as usize,
                            );
                            let (tap, ci) = (e / c as usize, e % c as usize);
                            let (ky, kx) = (tap / k as usize, tap % k as usize);
                            let iy = (oy * stride as usize + ky) as isize - pad as isize;
                            let ix = (ox * stride as usize + kx) as isize - pad as isize;
                            if iy < 0 || ix < 0 || iy >= 9 || ix >= 9 {
                                0
                            } else {
                                let at = ((b * 9 + iy as usize) * 9 + ix as usize) * c as usize + ci;
                                x[at] as i8 as i16 - 5
                            }
                        };
                        assert_eq!(a[r * kp + e], want, "c {c} k {k} p0 {p0} r {r} e {e}");
                    }
                }
            }
            let mut a = vec![0i16; MR * kp];
            assert!(!t.gather_whole(&g, kp, 0, 0, MR, &x[1..], &mut a), "short input");
            assert!(!t.gather_whole(&g, kp, 0, 0, MR, &x, &mut a[1..]), "short block");
            assert!(!t.gather_whole(&g, kk - 1, 0, 0, MR, &x, &mut a), "k > kp");
            assert!(!t.gather_whole(&g, kp, 0, pixels - 1, 2, &x, &mut a), "pixels past the output");
            assert!(!t.gather_whole(&g, kp, 0, 0, MR + 1, &x, &mut a), "more rows than MR");
            assert!(!t.gather_whole(&g, kp, 0, usize::MAX, 1, &x, &mut a), "overflowing pixel");
            let huge = GemmGeom { batch: u32::MAX, in_h: u32::MAX, in_w: u32::MAX, ..g };
            assert!(!t.gather_whole(&huge, kp, 0, 0, MR, &x, &mut a), "overflowing input size");
        }
    }

    fn channels(n: usize) -> Vec<u8> {
        let mut d = Vec::new();
        for v in [0i32, 1 << 30, 0, 0] {
            for _ in 0..n {
                d.extend_from_slice(&v.to_le_bytes());
            }
        }
        d
    }

    fn view(d: &[u8], n: usize) -> ChannelData<'_> {
        ChannelData {
            bias: &d[..4 * n],
            mult: &d[4 * n..8 * n],
            left: &d[8 * n..12 * n],
            right: &d[12 * n..16 * n],
            out_zp: 0,
            act_min: -128,
            act_max: 127,
            nonneg: true,
        }
    }

    /// Requantization of 16 lanes: vector, partial and scalar groups give the scalar bytes; more than
    /// 16 lanes, short outputs and missing channels are errors.
    #[test]
    fn requant16_matches_the_scalar_form_and_refuses_out_of_range_lanes() {
        let Some(t) = token() else { return };
        let mut acc = [0i32; 16];
        for (i, a) in acc.iter_mut().enumerate() {
            *a = (i as i32 - 8) * 37;
        }
        for n in 0..=16 {
            for n_ch in [n, n + 3, 24] {
                let d = channels(n_ch);
                let ch = view(&d, n_ch);
                let (mut got, mut want) = ([0u8; 16], [0u8; 16]);
                t.requant16(&acc, &ch, 0, n, &mut got).unwrap();
                requant_scalar(&acc, &ch, 0, n, &mut want).unwrap();
                assert_eq!(got, want, "n {n} channels {n_ch}");
            }
        }
        let d = channels(24);
        let ch = view(&d, 24);
        let mut out = [0u8; 32];
        assert!(t.requant16(&acc, &ch, 0, 17, &mut out).is_err());
        assert!(t.requant16(&acc, &ch, 0, 16, &mut out[..15]).is_err());
        assert!(t.requant16(&acc, &ch, 20, 16, &mut out).is_err());
        assert!(t.requant16(&acc, &ch, usize::MAX - 3, 16, &mut out).is_err());
    }

    /// Depthwise geometries that do not fit their buffers (or overflow) are refused; ADD never writes
    /// past the shortest slice.
    #[test]
    fn depthwise_and_add_refuse_what_does_not_fit() {
        let Some(t) = token() else { return };
        let g = DwGeom {
            batch: 1,
            in_h: 4,
            in_w: 4,
            channels: 16,
            out_h: 4,
            out_w: 4,
            k_h: 3,
            k_w: 3,
            stride: [1; 2],
            dilation: [1; 2],
            pad: [1; 2],
            in_offset: 3,
        };
        let d = channels(16);
        let ch = view(&d, 16);
        let (x, w, pairs) = (vec![1u8; 256], vec![1u8; 9 * 16], vec![0u8; 5 * 64]);
        let mut out = vec![0u8; 256];
        assert!(t.depthwise(&g, &x, &w, &pairs, &ch, &mut out).is_ok());
        assert!(t.depthwise(&g, &x[1..], &w, &pairs, &ch, &mut out).is_err());
        assert!(t.depthwise(&g, &x, &w[1..], &pairs, &ch, &mut out).is_err());
        assert!(t.depthwise(&g, &x, &w, &pairs[1..], &ch, &mut out).is_err());
        let d15 = channels(15);
        assert!(t.depthwise(&g, &x, &w, &pairs, &view(&d15, 15), &mut out).is_err());
        assert!(t.depthwise(&g, &x, &w, &pairs, &ch, &mut out[1..]).is_err());
        assert!(t.depthwise(&DwGeom { k_h: 9, k_w: 8, ..g }, &x, &w, &pairs, &ch, &mut out).is_err());
        let huge = DwGeom { batch: u32::MAX, in_h: u32::MAX, in_w: u32::MAX, ..g };
        assert!(t.depthwise(&huge, &x, &w, &pairs, &ch, &mut out).is_err());
        let p = AddPlan {
            len: 0,
            zp: [0; 3],
            left: 20,
            a: (1 << 30, 0),
            b: (1 << 30, 0),
            out: (1 << 30, 0),
            act_min: -128,
            act_max: 127,
        };
        let mut o = [0u8; 40];
        assert_eq!(t.add(&p, &[1; 37], &[2; 30], &mut o), 24);
        assert_eq!(t.add(&p, &[1; 37], &[2; 40], &mut o[..5]), 0);
    }
}
