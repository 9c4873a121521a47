//! aarch64 NEON inner loops of the int8 GEMM.
//!
//! [`Neon`] (NEON is part of every aarch64 target rsim builds for): each 16-byte weight pair group `[c0 k0, c0 k1, ..., c7 k1]` is widened to
//! i16 and multiplied with the row's `(x_k0, x_k1)` pair repeated across lanes (`smlal`/`smlal2`); lane
//! pairs are added (`addp`) at the end, giving each channel's sum. Wrapping i32 arithmetic: the
//! reference's bits.
//!
//! [`NeonDot`] (FEAT_DotProd, detected at run time): rows are raw int8 bytes (the input offset is folded
//! into the bias by the caller), and weights come in 32-byte groups of 4 `k` for 8 channels
//! `[c0 k0..k3, c1 k0..k3, ..., c7 k0..k3]` (then, when `kc % 4 == 2`, one 16-byte pair group as the
//! `smlal` kernel's), so one `sdot` against the row's 4 bytes repeated across lanes adds 4 products to
//! each of 4 channels. Every product fits i16 and the i32 lanes wrap: the reference's bits.
//!
//! Safety: NEON is enabled at compile time wherever this module is compiled, the dot-product code only
//! behind a [`NeonDot`] token; pointer reads rely on the slice lengths [`check_micro`] and
//! [`check_micro_dot`] checked on entry.

use crate::{check_micro, check_micro_dot, KResult, Neon, NeonDot, MR};
use core::arch::aarch64::*;

impl Neon {
    /// The int8 GEMM micro-kernel, as `Avx2::gemm_micro` (x86_64): errors (touching
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

impl NeonDot {
    /// The dot-product int8 GEMM micro-kernel: `acc[r][l] (+)= sum_k a[r * lda + k] * w(l, k)` over raw
    /// int8 bytes `a` (rows `r < MR`, `k < kc`) and packed weights (block `b` of 8 channels at
    /// `b * bstride`, lanes `l < 8 * nb`; per 4 `k` 32 bytes `[c0 k0..k3, ..., c7 k0..k3]`, then when
    /// `kc % 4 == 2` 16 bytes `[c0 k0, c0 k1, ..., c7 k1]`), wrapping i32; `first` overwrites the lanes
    /// instead of adding. Errors (touching nothing) unless [`check_micro_dot`] accepts the shapes.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_micro_dot(
        self,
        a: &[u8],
        lda: usize,
        kc: usize,
        w: &[u8],
        bstride: usize,
        nb: usize,
        first: bool,
        acc: &mut [[i32; 16]; MR],
    ) -> KResult<()> {
        check_micro_dot(a, lda, kc, w, bstride, nb)?;
        // SAFETY: rows 0..MR of `a` hold `kc` bytes at stride `lda`; block `b < nb <= 2` of `w` starts at
        // `b * bstride` and holds `kc * 8` bytes (`check_micro_dot` above); the token proves the CPU has
        // the dot-product instructions the callee is compiled with.
        unsafe {
            if nb == 2 {
                dot_blocks::<2>(a.as_ptr(), lda, kc, w.as_ptr(), bstride, first, acc)
            } else {
                dot_blocks::<1>(a.as_ptr(), lda, kc, w.as_ptr(), bstride, first, acc)
            }
        }
        Ok(())
    }
}

/// `acc += w x` per 32-bit lane over 4 byte products (`sdot`; `vdotq_s32` is not stable Rust).
///
/// # Safety
/// The CPU has the dot-product instructions.
#[inline]
#[target_feature(enable = "dotprod")]
unsafe fn sdot(acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: a register-only instruction the caller's contract says the CPU has.
    unsafe {
        core::arch::asm!(
            "sdot {acc:v}.4s, {w:v}.16b, {x:v}.16b",
            acc = inout(vreg) acc,
            w = in(vreg) w,
            x = in(vreg) x,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// `NB` 8-channel blocks for all MR rows: `2 * NB` accumulators of 4 channels per row, summed whole.
///
/// # Safety
/// The CPU has the dot-product instructions; `kc` is even; rows `0..MR` of `a` (stride `lda`) have `kc`
/// bytes; `w` has `NB` blocks of `kc * 8` bytes at stride `bstride`.
#[target_feature(enable = "dotprod")]
unsafe fn dot_blocks<const NB: usize>(
    a: *const u8,
    lda: usize,
    kc: usize,
    w: *const u8,
    bstride: usize,
    first: bool,
    acc: &mut [[i32; 16]; MR],
) {
    // SAFETY: (whole body) the caller's contract on `a`, `w` and the CPU; `acc` is a plain array. Group
    // `g < kc / 4` reads bytes `4g .. 4g + 4` of each row and `32g .. 32g + 32` of each block; the pair
    // tail (`kc % 4 == 2`) reads the rows' last 2 bytes and the blocks' last 16.
    unsafe {
        let z = vdupq_n_s32(0);
        let mut s = [[z; 4]; MR];
        let groups = kc / 4;
        let mut wv = [vdupq_n_s8(0); 4];
        for g in 0..groups {
            for b in 0..NB {
                let wb = w.add(b * bstride + 32 * g) as *const i8;
                wv[2 * b] = vld1q_s8(wb);
                wv[2 * b + 1] = vld1q_s8(wb.add(16));
            }
            for (r, sr) in s.iter_mut().enumerate() {
                let quad = (a.add(r * lda + 4 * g) as *const i32).read_unaligned();
                let x = vreinterpretq_s8_s32(vdupq_n_s32(quad));
                for v in 0..2 * NB {
                    sr[v] = sdot(sr[v], wv[v], x);
                }
            }
        }
        if kc % 4 == 2 {
            // `[c0 k0, c0 k1, c1 k0, ...]` pairs spread to `[c0 k0, c0 k1, 0, 0, c1 k0, ...]` quads.
            let zero = vdupq_n_u16(0);
            for b in 0..NB {
                let pairs = vreinterpretq_u16_u8(vld1q_u8(w.add(b * bstride + 32 * groups)));
                wv[2 * b] = vreinterpretq_s8_u16(vzip1q_u16(pairs, zero));
                wv[2 * b + 1] = vreinterpretq_s8_u16(vzip2q_u16(pairs, zero));
            }
            for (r, sr) in s.iter_mut().enumerate() {
                let pair = (a.add(r * lda + 4 * groups) as *const u16).read_unaligned();
                let x = vreinterpretq_s8_u32(vdupq_n_u32(pair as u32));
                for v in 0..2 * NB {
                    sr[v] = sdot(sr[v], wv[v], x);
                }
            }
        }
        for (r, sr) in s.iter().enumerate() {
            let dst = acc[r].as_mut_ptr();
            for (v, &sv) in sr.iter().enumerate().take(2 * NB) {
                let d = dst.add(4 * v);
                vst1q_s32(d, if first { sv } else { vaddq_s32(vld1q_s32(d), sv) });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// The dot-product layout's weight for channel `l` of a block and `k`, read from its packed bytes.
    fn packed_w(block: &[u8], kc: usize, l: usize, k: usize) -> i32 {
        let quads = kc / 4 * 4;
        let byte = if k < quads { 32 * (k / 4) + 4 * l + k % 4 } else { 32 * (k / 4) + 2 * l + k % 2 };
        block[byte] as i8 as i32
    }

    fn bytes(seed: &mut u64, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                match *seed % 8 {
                    0 => 0x80,
                    1 => 0x7f,
                    _ => (*seed >> 24) as u8,
                }
            })
            .collect()
    }

    /// The `sdot` kernel against a scalar sum over its documented layout, for every tail and block count.
    #[test]
    fn dot_micro_kernel_equals_the_scalar_sums() {
        let Some(t) = NeonDot::detect() else {
            std::eprintln!("SKIPPED: no dot-product instructions on this CPU");
            return;
        };
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for kc in [0usize, 2, 4, 6, 8, 10, 30, 64, 258] {
            for nb in 1..=2 {
                for first in [true, false] {
                    let lda = kc + 6;
                    let bstride = kc * 8 + 32;
                    let a = bytes(&mut seed, (MR - 1) * lda + kc);
                    let w = bytes(&mut seed, (nb - 1) * bstride + kc * 8);
                    let init = bytes(&mut seed, MR * 64);
                    let mut acc = [[0i32; 16]; MR];
                    for (i, v) in acc.iter_mut().flatten().enumerate() {
                        *v = i32::from_le_bytes([init[4 * i], init[4 * i + 1], init[4 * i + 2], init[4 * i + 3]]);
                    }
                    let mut want = acc;
                    for (r, row) in want.iter_mut().enumerate() {
                        for (l, lane) in row.iter_mut().enumerate().take(8 * nb) {
                            let block = &w[(l / 8) * bstride..];
                            let sum = (0..kc).fold(0i32, |s, k| {
                                s.wrapping_add(a[r * lda + k] as i8 as i32 * packed_w(block, kc, l % 8, k))
                            });
                            *lane = if first { sum } else { lane.wrapping_add(sum) };
                        }
                    }
                    t.gemm_micro_dot(&a, lda, kc, &w, bstride, nb, first, &mut acc).unwrap();
                    assert_eq!(acc, want, "kc {kc} nb {nb} first {first}");
                }
            }
        }
    }

    /// Shapes that do not fit are errors that touch nothing.
    #[test]
    fn dot_micro_kernel_refuses_bad_shapes() {
        let Some(t) = NeonDot::detect() else {
            return;
        };
        let mut acc = [[7i32; 16]; MR];
        let (a, w) = ([0u8; 64], [0u8; 256]);
        assert!(t.gemm_micro_dot(&a, 16, 3, &w, 32, 1, true, &mut acc).is_err(), "odd kc");
        assert!(t.gemm_micro_dot(&a, 4, 8, &w, 64, 1, true, &mut acc).is_err(), "lda < kc");
        assert!(t.gemm_micro_dot(&a, 20, 16, &w, 128, 1, true, &mut acc).is_err(), "a short");
        assert!(t.gemm_micro_dot(&a, 16, 8, &w, 200, 2, true, &mut acc).is_err(), "w short");
        assert!(t.gemm_micro_dot(&a, 16, 8, &w, 64, 3, true, &mut acc).is_err(), "nb 3");
        assert!(t.gemm_micro_dot(&a, 16, 8, &w, usize::MAX, 2, true, &mut acc).is_err(), "overflow");
        assert_eq!(acc, [[7i32; 16]; MR]);
    }
}
