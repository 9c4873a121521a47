//! aarch64 NEON inner loop of the int8 GEMM behind the [`Neon`] token (NEON is part of every aarch64
//! target rsim builds for). Each 16-byte weight pair group `[c0 k0, c0 k1, ..., c7 k1]` is widened to
//! i16 and multiplied with the row's `(x_k0, x_k1)` pair repeated across lanes (`smlal`/`smlal2`); lane
//! pairs are added (`addp`) at the end, giving each channel's sum. Wrapping i32 arithmetic: the
//! reference's bits.
//!
//! Safety: NEON is enabled at compile time wherever this module is compiled; pointer reads rely on
//! the slice lengths [`check_micro`] checked on entry.

use crate::{check_micro, KResult, Neon, MR};
use core::arch::aarch64::*;

impl Neon {
    /// The int8 GEMM micro-kernel, as [`Avx2::gemm_micro`](crate::Avx2::gemm_micro): errors (touching
    /// nothing) unless [`check_micro`] accepts the shapes.
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
        for b in 0..nb {
            // SAFETY: rows 0..MR of `a` hold `kc` i16 at stride `lda`; block `b < nb <= 2` of `w` starts
            // at `b * bstride` and holds `kc / 2` 16-byte groups (`check_micro` above); NEON is enabled.
            unsafe { block(a.as_ptr(), lda, kc / 2, w.as_ptr().add(b * bstride), b, first, acc) };
        }
        Ok(())
    }
}

/// One 8-channel block for all MR rows: 4 accumulators of pair partial sums per row.
///
/// # Safety
/// Rows `0..MR` of `a` (stride `lda`) have `2 * pairs` i16; `w` has `pairs` 16-byte groups; `b` is 0 or 1.
#[inline]
unsafe fn block(
    a: *const i16,
    lda: usize,
    pairs: usize,
    w: *const u8,
    b: usize,
    first: bool,
    acc: &mut [[i32; 16]; MR],
) {
    // SAFETY: (whole body) the caller's contract on `a` and `w`; `acc` is a plain array.
    unsafe {
        let z = vdupq_n_s32(0);
        let mut s = [[z; 4]; MR];
        for j in 0..pairs {
            let w8 = vld1q_s8(w.add(16 * j) as *const i8);
            let wl = vmovl_s8(vget_low_s8(w8));
            let wh = vmovl_high_s8(w8);
            for (r, sr) in s.iter_mut().enumerate() {
                let pair = (a.add(r * lda + 2 * j) as *const i32).read_unaligned();
                let x = vreinterpretq_s16_s32(vdupq_n_s32(pair));
                sr[0] = vmlal_s16(sr[0], vget_low_s16(wl), vget_low_s16(x));
                sr[1] = vmlal_high_s16(sr[1], wl, x);
                sr[2] = vmlal_s16(sr[2], vget_low_s16(wh), vget_low_s16(x));
                sr[3] = vmlal_high_s16(sr[3], wh, x);
            }
        }
        for (r, sr) in s.iter().enumerate() {
            let dst = acc[r][b * 8..].as_mut_ptr();
            let (lo, hi) = (vpaddq_s32(sr[0], sr[1]), vpaddq_s32(sr[2], sr[3]));
            let (lo, hi) =
                if first { (lo, hi) } else { (vaddq_s32(vld1q_s32(dst), lo), vaddq_s32(vld1q_s32(dst.add(4)), hi)) };
            vst1q_s32(dst, lo);
            vst1q_s32(dst.add(4), hi);
        }
    }
}
